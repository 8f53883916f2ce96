/* webhooks/store.c: the SQLite file behind webhooks (webhooks.path); see internal.h for its
 * tables and functions. */
#include "internal.h"

#include "fh_log.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bumped when the tables change shape. Unlike the view, this file is not derived data (it holds
 * endpoints and undelivered events), so an unknown version refuses to start instead of rebuilding.
 */
#define WHS_SCHEMA 1

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS wh_meta(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " schema INTEGER NOT NULL, endpoints_version INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO wh_meta(id, schema) VALUES(1, 1) ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS endpoints(id TEXT PRIMARY KEY, url TEXT NOT NULL,"
    " filter TEXT NOT NULL, format TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',"
    " secret TEXT NOT NULL, old_secret TEXT, old_secret_until_ms INTEGER,"
    " enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT, ordered INTEGER NOT NULL DEFAULT 0,"
    " failing_since_ms INTEGER, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS payloads(id INTEGER PRIMARY KEY, event_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, body BLOB NOT NULL, created_ms INTEGER NOT NULL,"
    " UNIQUE (event_id, kind));"
    "CREATE TABLE IF NOT EXISTS deliveries(id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE,"
    " endpoint_id TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,"
    " payload_id INTEGER NOT NULL, part INTEGER NOT NULL, kafka_offset INTEGER NOT NULL,"
    " produced_ms INTEGER NOT NULL, build_key TEXT NOT NULL DEFAULT '',"
    " state INTEGER NOT NULL DEFAULT 0, tries INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, last_status INTEGER,"
    " last_error TEXT, last_latency_ms INTEGER, last_response TEXT, last_instance TEXT,"
    /* Bumped by every redelivery and recovery: the result of an attempt that was in flight
     * meanwhile must not mark the re-queued delivery done. */
    " requeued INTEGER NOT NULL DEFAULT 0);"
    /* Due work per endpoint; rows leave it when they are delivered or dead. */
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(endpoint_id, next_ms) WHERE state = 0;"
    /* Ordered endpoints: the earliest pending delivery of a build blocks the later ones. */
    "CREATE INDEX IF NOT EXISTS deliveries_order ON deliveries(endpoint_id, build_key, id)"
    " WHERE state = 0 AND build_key <> '';"
    "CREATE INDEX IF NOT EXISTS deliveries_log ON deliveries(endpoint_id, id);"
    "CREATE INDEX IF NOT EXISTS deliveries_payload ON deliveries(payload_id);"
    /* Failed attempts; the successful one is described by its delivery's last_* columns (one
     * row fewer per delivery on the hot path). */
    "CREATE TABLE IF NOT EXISTS attempts(id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL,"
    " at_ms INTEGER NOT NULL, status INTEGER NOT NULL, latency_ms INTEGER NOT NULL,"
    " error TEXT, response TEXT, instance TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id);";

/* The Kafka cluster whose events the file's deliveries came from (FH_SQLITE_META_CLUSTER). A file
 * of another cluster is refused: its pending deliveries are not this cluster's to make (nor are
 * its partition numbers and offsets this cluster's). An embedded Kafka's id is new at every start
 * and its events die with its process: a file last used with an embedded Kafka, opened with an
 * embedded Kafka again, keeps its endpoints and drops the earlier run's pending deliveries, as
 * the view starts empty there. */
static fh_err check_cluster(sqlite3 *db, const char *path, const char *cluster_id, char *errbuf,
                            size_t errsize)
{
    char was[256], err[256];
    int rc = fh_sqlite_cluster_check(db, cluster_id, was, sizeof(was), err, sizeof(err));
    if (rc < 0)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "webhooks.path: %s: %s", path, err);
    if (rc != FH_SQLITE_CLUSTER_OTHER)
        return FH_OK;
    if (!fh_kafka_id_is_mock(was) || !fh_kafka_id_is_mock(cluster_id))
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                       "webhooks.path: %s holds the webhook state of Kafka cluster %s, but this "
                       "broker reads cluster %s; webhooks will not deliver the other cluster's "
                       "deliveries. Move or delete %s (with its -wal and -shm files) or set "
                       "webhooks.path to another file (endpoints must then be created again)",
                       path, was, cluster_id, path);
    int dropped = -1;
    if (fh_sqlite_exec(db,
                       "BEGIN IMMEDIATE; DELETE FROM attempts WHERE delivery_id IN"
                       " (SELECT id FROM deliveries WHERE state = 0);"
                       " DELETE FROM deliveries WHERE state = 0;",
                       err, sizeof(err)) == 0) {
        dropped = sqlite3_changes(db); /* the deliveries: the last statement */
        if (fh_sqlite_meta_set(db, FH_SQLITE_META_CLUSTER, cluster_id, err, sizeof(err)) ||
            fh_sqlite_exec(db, "COMMIT", err, sizeof(err)))
            dropped = -1;
    }
    if (dropped < 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "webhooks.path: %s: %s", path, err);
    }
    fh_log(dropped ? FH_LOG_WARN : FH_LOG_INFO, "webhook.cluster",
           "path=%s cluster_id=%s was=%s dropped=%d note=\"the file was last used with another "
           "embedded Kafka, whose events are gone: its pending deliveries are dropped, endpoints "
           "kept\"",
           path, cluster_id, was, dropped);
    return FH_OK;
}

fh_err whs_open(const char *path, const char *cluster_id, sqlite3 **out, char *errbuf,
                size_t errsize)
{
    sqlite3 *db = NULL;
    char err[256];
    char dir[1024];
    *out = NULL;
    if (fh_mkdirs_for(path, 0700, dir, sizeof(dir)))
        return fh_errf(errbuf, errsize, FH_ERR_IO,
                       "webhooks.path: cannot create the directory of %s: %s", path,
                       strerror(errno));
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "webhooks.path: %s: %s", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        goto err;
    }
    /* Secrets live in this file: keep it to its owner. */
    chmod(path, 0600);
    sqlite3_busy_timeout(db, 10000);
    /* WAL with synchronous=NORMAL: a commit survives the process being killed (SIGKILL); only
     * an OS crash or power loss can take the last transactions. */
    /* A 64 MiB page cache and mmap reads: the delivery thread touches the same hot pages (the
     * newest deliveries, the due index) thousands of times a second. */
    if (fh_sqlite_exec(
            db,
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
            "PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;",
            err, sizeof(err)) ||
        fh_sqlite_exec(db, "BEGIN IMMEDIATE", err, sizeof(err)))
        goto sql_err;
    if (fh_sqlite_exec(db, schema_sql, err, sizeof(err))) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        goto sql_err;
    }
    if (fh_sqlite_exec(db, "COMMIT", err, sizeof(err)))
        goto sql_err;
    sqlite3_stmt *st;
    int schema = -1;
    if (sqlite3_prepare_v2(db, "SELECT schema FROM wh_meta WHERE id = 1", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            schema = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (schema != WHS_SCHEMA) {
        fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                "webhooks.path: %s has schema %d, this broker knows %d", path, schema, WHS_SCHEMA);
        goto err;
    }
    if (check_cluster(db, path, cluster_id, errbuf, errsize))
        goto err;
    *out = db;
    return FH_OK;
sql_err:
    fh_errf(errbuf, errsize, FH_ERR_IO, "webhooks.path: %s: %s", path, err);
err:
    sqlite3_close(db);
    return FH_ERR_IO;
}

int whs_bump_version(sqlite3 *db)
{
    return sqlite3_exec(db,
                        "UPDATE wh_meta SET endpoints_version = endpoints_version + 1 WHERE id = 1",
                        NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

long long whs_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, "SELECT endpoints_version FROM wh_meta WHERE id = 1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

void whs_msg_id(const char *endpoint_id, const char *event_id, const char *variant,
                char out[WHS_ID_SIZE])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_CTX c;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    SHA256_Init(&c);
    SHA256_Update(&c, endpoint_id, strlen(endpoint_id));
    SHA256_Update(&c, "/", 1);
    SHA256_Update(&c, event_id, strlen(event_id));
    SHA256_Update(&c, "/", 1);
    SHA256_Update(&c, variant, strlen(variant));
    SHA256_Final(md, &c);
#pragma GCC diagnostic pop
    memcpy(out, "msg_", 4);
    /* 26 characters of 5 bits: 130 bits of the digest. */
    for (int i = 0; i < 26; i++) {
        int bit = i * 5, byte = bit / 8, off = bit % 8;
        unsigned v = ((unsigned)md[byte] << 8 | md[byte + 1]) >> (11 - off);
        out[4 + i] = b32[v & 31];
    }
    out[30] = '\0';
}

static const char *const state_names[] = {"pending", "delivered", "failed"};

const char *whs_state_name(int state)
{
    return state >= 0 && state <= 2 ? state_names[state] : "unknown";
}

int whs_state_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(state_names[i], name) == 0)
            return i;
    return -1;
}

int whs_schedule_parse(const char *text, int64_t *out, int max, char *errbuf, size_t errsize)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        while (*p == ' ')
            p++;
        double s = strtod(p, &end);
        if (end == p || s < 0 || s > 31536000.0) {
            fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                    "webhooks.retry_schedule: entry %d: expected seconds (0 to 31536000)", n + 1);
            return -1;
        }
        if (n == max) {
            fh_errf(errbuf, errsize, FH_ERR_CONFIG, "webhooks.retry_schedule: more than %d entries",
                    max);
            return -1;
        }
        out[n++] = (int64_t)(s * 1000.0 + 0.5);
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p) {
            fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                    "webhooks.retry_schedule: entry %d: expected a comma", n);
            return -1;
        }
    }
    if (n == 0) {
        fh_errf(errbuf, errsize, FH_ERR_CONFIG, "webhooks.retry_schedule: no entries");
        return -1;
    }
    return n;
}

fh_err whs_url_check(const char *url, const fh_netguard *guard, char *errbuf, size_t errsize)
{
    char name[256];
    struct addrinfo hints, *res = NULL;
    fh_err rc = fh_netguard_url_check(url, name, sizeof(name), errbuf, errsize);
    if (rc)
        return rc;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(name, NULL, &hints, &res);
    if (gai) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "host %.200s does not resolve: %s", name,
                     gai_strerror(gai));
        goto done;
    }
    /* Every address must pass: delivery re-checks each address it connects to anyway, but an
     * endpoint that can only fail should be refused now, with the reason. */
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        const char *why = fh_netguard_check(guard, a->ai_addr);
        if (why) {
            char addr[64];
            rc = fh_errf(errbuf, errsize, FH_ERR_INVAL,
                         "%.200s resolves to %s (%s), refused by the SSRF guard (see "
                         "webhooks.allow_cidrs)",
                         name, fh_netguard_addr_text(a->ai_addr, addr, sizeof(addr)), why);
            goto done;
        }
    }
done:
    if (res)
        freeaddrinfo(res);
    return rc;
}
