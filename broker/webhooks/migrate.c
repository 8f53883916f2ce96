/* webhooks/migrate.c: the first start next to an old-design webhooks.db (schema 1: the one file
 * every instance shared) publishes its endpoints (secrets sealed) and its pending deliveries
 * (their bodies first) to the topics, once: the file is marked done (table wh_migrated) in the
 * same transaction that held it while Kafka acknowledged every record, so two instances starting
 * together migrate it once, and a failure leaves it to the next start. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fh_log.h"

/* Seals the member name of o (a clear secret) in place; 0, or -1. */
static int seal_member(fh_webhooks *w, json_t *o, const char *name, const char *id)
{
    char sealed[FH_AEAD_SEALED_SIZE(FH_SIGN_SECRET_SIZE * 2)], err[256];
    const char *clear = json_string_value(json_object_get(o, name));
    if (!clear)
        return 0;
    if (fh_aead_seal(&w->key, id, clear, strlen(clear), sealed, sizeof(sealed), err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "webhook.migrate", "endpoint=%s error=\"%s\"", id, err);
        return -1;
    }
    json_object_set_new(o, name, json_string(sealed));
    return 0;
}

static long long publish_endpoints(fh_webhooks *w, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    long long n = 0;
    char err[512];
    if (sqlite3_prepare_v2(db, "SELECT id FROM endpoints ORDER BY created_ms, id", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    while (n >= 0 && sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        json_t *o = wh_ep_row(db, id);
        if (!o || seal_member(w, o, "secret", id) || seal_member(w, o, "old_secret", id) ||
            wh_ep_publish(w, id, o, 0, err, sizeof(err)))
            n = -1;
        else
            n++;
        json_decref(o);
    }
    sqlite3_finalize(st);
    return n;
}

static long long publish_pending(fh_webhooks *w, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    long long n = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT d.id, d.part, p.event_id, p.kind, p.body, p.created_ms"
                           " FROM deliveries d JOIN payloads p ON p.id = d.payload_id"
                           " WHERE d.state = 0 ORDER BY d.id",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    while (n >= 0 && sqlite3_step(st) == SQLITE_ROW) {
        int slot = sqlite3_column_int(st, 1);
        if (wh_cl_payload(w, slot, (const char *)sqlite3_column_text(st, 2),
                          (const char *)sqlite3_column_text(st, 3), sqlite3_column_blob(st, 4),
                          (size_t)sqlite3_column_bytes(st, 4), sqlite3_column_int64(st, 5), NULL) ||
            wh_cl_delivery(w, db, sqlite3_column_int64(st, 0), NULL, 0))
            n = -1;
        else
            n++;
    }
    sqlite3_finalize(st);
    return n;
}

void wh_migrate(fh_webhooks *w, const char *path)
{
    struct stat sb;
    sqlite3 *db = NULL;
    char err[256];
    if (!path || !*path || stat(path, &sb) != 0 || whs_schema_of(path) != 1)
        return;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fh_log(FH_LOG_ERROR, "webhook.migrate", "path=%s error=\"%s\"", path,
               db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 30000);
    if (fh_sqlite_exec(db,
                       "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS wh_migrated(at_ms INTEGER,"
                       " endpoints INTEGER, deliveries INTEGER, instance TEXT)",
                       err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "webhook.migrate", "path=%s error=\"%s\"", path, err);
        sqlite3_close(db);
        return;
    }
    sqlite3_stmt *st = NULL;
    int done = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM wh_migrated", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        done = sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    long long eps = -1, dels = -1;
    if (!done) {
        eps = publish_endpoints(w, db);
        dels = eps < 0 ? -1 : publish_pending(w, db);
    }
    if (done) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    } else if (eps < 0 || dels < 0 || wh_cl_flush(w, 30000)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        fh_log(FH_LOG_ERROR, "webhook.migrate",
               "path=%s error=\"publishing to %s and %s failed; the next start tries again\"", path,
               w->ep_topic, w->cl_topic);
    } else {
        char sql[512];
        snprintf(sql, sizeof(sql), "INSERT INTO wh_migrated VALUES(%lld, %lld, %lld, '%s'); COMMIT",
                 (long long)fh_now_ms(), eps, dels, "migrated");
        if (fh_sqlite_exec(db, sql, err, sizeof(err))) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            fh_log(FH_LOG_ERROR, "webhook.migrate", "path=%s error=\"%s\"", path, err);
        } else {
            fh_log(FH_LOG_INFO, "webhook.migrated",
                   "from=%s endpoints=%lld pending_deliveries=%lld endpoints_topic=%s "
                   "changelog=%s note=\"secrets sealed with key %s; the file is marked done\"",
                   path, eps, dels, w->ep_topic, w->cl_topic, w->key.id);
        }
    }
    sqlite3_close(db);
}
