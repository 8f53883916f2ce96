/* view/derive: see derive.h. This file holds the state, the emission (ids, outbox, producer)
 * and reading the derived topic back; derive_rules.c decides what to derive. */
#include "derive_int.h"

#include "fh_config.h"
#include "fh_consumer.h"
#include "fh_kafka.h"

static const char tables_sql[] =
    "CREATE TABLE IF NOT EXISTS derive_meta(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seeded INTEGER NOT NULL DEFAULT 0);"
    "INSERT OR IGNORE INTO derive_meta(id, seeded) VALUES(1, 0);"
    "CREATE TABLE IF NOT EXISTS derive_seen(id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS derive_seen_at ON derive_seen(at);"
    "CREATE TABLE IF NOT EXISTS derive_outbox(seq INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " payload TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS derive_builder(builder TEXT NOT NULL, branch TEXT NOT NULL,"
    " state INTEGER NOT NULL, last_t REAL NOT NULL, last_id INTEGER NOT NULL, green TEXT,"
    " broken TEXT, PRIMARY KEY (builder, branch)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS derive_flaky(builder TEXT NOT NULL, test TEXT NOT NULL,"
    " branch TEXT NOT NULL, revision TEXT NOT NULL, seen INTEGER NOT NULL, passed TEXT,"
    " failed TEXT, at REAL NOT NULL, PRIMARY KEY (builder, test, branch, revision)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS derive_flaky_at ON derive_flaky(at);"
    "CREATE TABLE IF NOT EXISTS derive_lkgr(repository TEXT NOT NULL, branch TEXT NOT NULL,"
    " revision TEXT NOT NULL, position REAL NOT NULL, PRIMARY KEY (repository, branch))"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS derive_stale(buildrequestid INTEGER PRIMARY KEY, at REAL NOT NULL);"
    /* Branches whose last-green is due for a look, with the newest build.finished on each:
     * in the file, so a crash between a batch and the look loses nothing. */
    "CREATE TABLE IF NOT EXISTS derive_dirty(repository TEXT NOT NULL, branch TEXT NOT NULL,"
    " trigger TEXT NOT NULL, PRIMARY KEY (repository, branch)) WITHOUT ROWID;"
    /* D_OWNERS looks up each suspect's requests by revision: without this index that is a scan
     * of every build request the view holds, per suspect of every builder.broken. */
    "CREATE INDEX IF NOT EXISTS derive_br_owner ON buildrequests(repository, branch, revision,"
    " owner) WHERE owner <> '';";

static const char *const dsql[D__COUNT] = {
    [D_SEEN] = "INSERT INTO derive_seen(id, at) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
    [D_OUTBOX] = "INSERT INTO derive_outbox(key, payload) VALUES(?1, ?2)",
    [D_OUTBOX_COUNT] = "SELECT count(*) FROM derive_outbox",
    [D_OUTBOX_READ] = "SELECT seq, key, payload FROM derive_outbox ORDER BY seq LIMIT 256",
    [D_OUTBOX_DEL] = "DELETE FROM derive_outbox WHERE seq = ?1",
    [D_BUILDER_GET] = "SELECT state, last_t, last_id, green, broken FROM derive_builder"
                      " WHERE builder = ?1 AND branch = ?2",
    [D_BUILDER_PUT] = "INSERT OR REPLACE INTO derive_builder(builder, branch, state, last_t,"
                      " last_id, green, broken) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [D_FLAKY_GET] = "SELECT seen, passed, failed FROM derive_flaky WHERE builder = ?1 AND"
                    " test = ?2 AND branch = ?3 AND revision = ?4",
    [D_FLAKY_PUT] = "INSERT OR REPLACE INTO derive_flaky(builder, test, branch, revision, seen,"
                    " passed, failed, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* suspects: where bad (or green) is, how many revisions tie with bad's position and sort
     * before it, and the revisions from bad down (the newest first), by revisions_order */
    [D_REV_POS] = "SELECT pos FROM revisions WHERE repository = ?1 AND branch = ?2 AND"
                  " revision = ?3",
    [D_REV_ABOVE] = "SELECT count(*) FROM revisions WHERE repository = ?1 AND branch = ?2 AND"
                    " pos = ?3 AND revision > ?4",
    [D_REVS] = "SELECT revision, changeid FROM revisions WHERE repository = ?1 AND branch = ?2"
               " AND (pos, revision) <= (?3, ?4) ORDER BY pos DESC, revision DESC LIMIT ?5",
    [D_AUTHOR] = "SELECT author FROM changes WHERE changeid = ?1",
    [D_OWNERS] = "SELECT owner FROM builds WHERE repository = ?1 AND branch = ?2 AND"
                 " revision = ?3 AND owner <> '' UNION SELECT owner FROM buildrequests WHERE"
                 " repository = ?1 AND branch = ?2 AND revision = ?3 AND owner <> ''"
                 " ORDER BY 1 LIMIT 20",
    [D_LKGR_GET] = "SELECT revision, position FROM derive_lkgr WHERE repository = ?1 AND"
                   " branch = ?2",
    [D_LKGR_PUT] = "INSERT OR REPLACE INTO derive_lkgr(repository, branch, revision, position)"
                   " VALUES(?1, ?2, ?3, ?4)",
    [D_STALE_SCAN] = "SELECT buildrequestid, builderid, builder, branch, revision, repository,"
                     " project, codebase, owner, submitted_at FROM buildrequests b WHERE"
                     " claimed = 0 AND complete = 0 AND submitted_at IS NOT NULL AND"
                     " submitted_at <= ?1 AND NOT EXISTS (SELECT 1 FROM derive_stale s WHERE"
                     " s.buildrequestid = b.buildrequestid) ORDER BY submitted_at LIMIT 500",
    [D_DIRTY_PUT] = "INSERT OR REPLACE INTO derive_dirty(repository, branch, trigger)"
                    " VALUES(?1, ?2, ?3)",
    /* one turn of a last-green round: the branches after the round's cursor, in key order */
    [D_DIRTY_FIRST] = "SELECT repository, branch, trigger FROM derive_dirty ORDER BY repository,"
                      " branch LIMIT ?1",
    [D_DIRTY_NEXT] = "SELECT repository, branch, trigger FROM derive_dirty WHERE (repository,"
                     " branch) > (?2, ?3) ORDER BY repository, branch LIMIT ?1",
    [D_DIRTY_ANY] = "SELECT 1 FROM derive_dirty LIMIT 1",
    [D_DIRTY_DEL] = "DELETE FROM derive_dirty WHERE repository = ?1 AND branch = ?2",
    [D_STALE_PUT] = "INSERT OR IGNORE INTO derive_stale(buildrequestid, at) VALUES(?1, ?2)",
    /* The first build in which test ?2 of builder ?1 had outcome ?4 at revision ?3. */
    [D_TEST_OTHER] = "SELECT r.buildid FROM tests t JOIN test_runs r ON r.testid = t.testid"
                     " WHERE t.builder = ?1 AND t.name = ?2 AND r.revision = ?3 AND"
                     " r.outcome = ?4 AND r.buildid IS NOT NULL ORDER BY r.runid LIMIT 1",
    [D_BUILD_REF] = "SELECT number, results, complete_at FROM builds WHERE buildid = ?1",
    /* The first build with a verdict (results 0, 1, 2 or 4: fh_derive_verdict) of builder ?1
     * on branch ?2 that completed after (complete_at ?3, buildid ?4), in builder_step's order:
     * the context fields in ctx_fields' order, then the build as build_ref makes it. */
    [D_NEXT_VERDICT] = "SELECT buildrequestid, builder, builderid, branch, revision, repository,"
                       " project, codebase, owner, buildid, number, revision, results, complete_at"
                       " FROM builds WHERE builder = ?1 AND branch = ?2 AND finished = 1 AND"
                       " results IN (0, 1, 2, 4) AND (complete_at, buildid) > (?3, ?4)"
                       " ORDER BY complete_at, buildid LIMIT 1",
};

/* ---- emission --------------------------------------------------------------------------- */

/* RFC 3339 UTC with milliseconds, as the envelope wants it. */
void derive_time_text(double epoch_s, char out[48])
{
    time_t s = (time_t)epoch_s;
    int ms = (int)((epoch_s - (double)s) * 1000.0);
    struct tm tm;
    if (ms < 0 || ms > 999)
        ms = 0;
    gmtime_r(&s, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

int derive_emit(fh_view *v, const char *type, const char *const *parts, size_t nparts, json_t *data,
                const char *time, const char *subject)
{
    struct derive *dr = v->derive;
    char id[FH_DERIVE_ID_SIZE], key[64], subj[64];
    long long brid = 0;
    int rc;
    fh_derive_id(type, parts, nparts, id);
    sqlite3_stmt *st = dr->st[D_SEEN];
    view_bind_text(st, 1, id);
    /* Wall time: the view clock may still be 0 or far behind while a history replays. */
    sqlite3_bind_double(st, 2, (double)fh_now_ms() / 1000.0);
    if ((rc = view_wrun(st))) {
        json_decref(data);
        return rc;
    }
    if (sqlite3_changes(v->db) == 0) {
        json_decref(data); /* emitted before (this run, an earlier one, or read back) */
        return SQLITE_OK;
    }
    st = dr->st[D_OUTBOX_COUNT];
    rc = sqlite3_step(st);
    long long queued = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (queued >= dr->outbox_max) {
        json_decref(data);
        fh_log(FH_LOG_WARN, "derive.outbox_full", "queued=%lld", queued);
        return SQLITE_FULL; /* not one event's fault: the batch is retried */
    }
    /* "builds/<buildid>" or "buildrequests/<buildrequestid>", as masters name them */
    snprintf(subj, sizeof(subj), "%s/%lld", subject,
             (long long)json_integer_value(json_object_get(
                 data, strcmp(subject, "builds") == 0 ? "buildid" : "buildrequestid")));
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:o}", "specversion", "1.0", "id",
                           id, "source", "firehose://derive", "type", type, "time", time, "subject",
                           subj, "datacontenttype", "application/json", "master", "firehose.derive",
                           "seq", 0, "data", data);
    if (!ev)
        return SQLITE_NOMEM;
    json_int_t b = json_integer_value(json_object_get(data, "buildrequestid"));
    brid = (long long)b;
    snprintf(key, sizeof(key), "buildrequest/%lld", brid);
    char *text = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    if (!text)
        return SQLITE_NOMEM;
    st = dr->st[D_OUTBOX];
    view_bind_text(st, 1, key);
    view_bind_text(st, 2, text);
    free(text);
    if ((rc = view_wrun(st)))
        return rc;
    dr->outbox_pending = 1;
    fh_log(FH_LOG_INFO, "derive.emitted", "type=%s id=%s key=%s", type, id, key);
    return SQLITE_OK;
}

/* ---- the producer ----------------------------------------------------------------------- */

static const char *const producer_defaults[] = {"acks=all", "enable.idempotence=true",
                                                "linger.ms=0", "log_level=4", NULL};

/* Runs inside rd_kafka_poll on the view thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    fh_view *v = opaque;
    struct derive *dr = v->derive;
    (void)rk;
    intptr_t i = (intptr_t)m->_private;
    if (i >= 0 && i < dr->ninflight) {
        dr->delivered[i] = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
        dr->nreported++;
    }
}

/* Produces up to DERIVE_FLUSH_MAX outbox rows without waiting: the view thread never blocks on
 * Kafka. One round at a time: the next starts once every report of this one is in and the
 * acknowledged rows are deleted (derive_outbox_settle), so a row is never in flight twice. */
static void produce_outbox(fh_view *v)
{
    struct derive *dr = v->derive;
    int n = 0, rc = SQLITE_DONE;
    char q[420];
    if (!dr->producer || dr->ninflight || !dr->outbox_pending)
        return;
    sqlite3_stmt *st = dr->st[D_OUTBOX_READ];
    dr->nreported = 0;
    while (n < DERIVE_FLUSH_MAX && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 1);
        const void *val = sqlite3_column_text(st, 2);
        size_t vlen = (size_t)sqlite3_column_bytes(st, 2);
        dr->inflight[n] = sqlite3_column_int64(st, 0);
        dr->delivered[n] = 0;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            dr->producer, RD_KAFKA_V_TOPIC(dr->topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
            RD_KAFKA_V_OPAQUE((void *)(intptr_t)n), RD_KAFKA_V_END);
        if (e) {
            fh_log(FH_LOG_WARN, "derive.produce", "error=%s",
                   fh_log_quote(q, sizeof(q), rd_kafka_err2str(e)));
            break;
        }
        n++;
    }
    sqlite3_reset(st);
    dr->ninflight = n;
    if (n < DERIVE_FLUSH_MAX && rc != SQLITE_ROW)
        dr->outbox_pending = 0; /* every row is in flight; derive_emit sets it again */
}

int derive_outbox_settle(fh_view *v)
{
    struct derive *dr = v->derive;
    int done = 0, rc = SQLITE_OK;
    if (!dr || !dr->on || !dr->producer)
        return SQLITE_OK;
    rd_kafka_poll(dr->producer, 0);
    if (!dr->ninflight || dr->nreported < dr->ninflight)
        return SQLITE_OK;
    for (int i = 0; i < dr->ninflight; i++) {
        if (!dr->delivered[i])
            continue;
        sqlite3_bind_int64(dr->st[D_OUTBOX_DEL], 1, dr->inflight[i]);
        if ((rc = view_wrun(dr->st[D_OUTBOX_DEL])))
            return rc;
        done++;
    }
    fh_metric_add(dr->m_emitted, done);
    if (done < dr->ninflight) {
        fh_log(FH_LOG_WARN, "derive.undelivered", "records=%d", dr->ninflight - done);
        dr->outbox_pending = 1; /* produced again (same id, same bytes) in the next round */
    }
    dr->ninflight = 0;
    return SQLITE_OK;
}

void derive_after_commit(fh_view *v)
{
    struct derive *dr = v->derive;
    if (!dr || !dr->on || !dr->producer)
        return;
    rd_kafka_poll(dr->producer, 0);
    produce_outbox(v);
}

/* Outside a batch: settles a finished round in a transaction of its own and starts the next. */
static void outbox_between_batches(fh_view *v)
{
    struct derive *dr = v->derive;
    if (!dr->producer)
        return;
    rd_kafka_poll(dr->producer, 0);
    if (dr->ninflight && dr->nreported >= dr->ninflight && !view_wexec(v, W_BEGIN)) {
        if (derive_outbox_settle(v) || view_wexec(v, W_COMMIT))
            view_wexec(v, W_ROLLBACK);
    }
    produce_outbox(v);
}

/* ---- reading the derived topic back ------------------------------------------------------ */

/* Records every id on topics.derived in derive_seen (one transaction), then marks the file
 * seeded. A new view file does this before it applies anything, so a rebuild never emits an id
 * with other content than the one already on the topic. Returns 0, or -1 with errbuf. */
static int seed_from_topic(fh_view *v, char *errbuf, size_t errsize)
{
    struct derive *dr = v->derive;
    static const char *const defaults[] = {"enable.auto.commit=false", "log_level=4", NULL};
    int32_t ids[256];
    int64_t hi[256], lo[256];
    int n = 0, rc = -1, left = 0;
    long long read = 0;
    char group[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    int64_t deadline = fh_now_ms() + 120000;
    if (fh_kafka_conf(&v->b->cfg, v->b->bootstrap, defaults, &conf, errbuf, errsize))
        return -1;
    snprintf(group, sizeof(group), "%s.derive", fh_config_str(&v->b->cfg, "kafka.group"));
    if (rd_kafka_conf_set(conf, "group.id", group, errbuf, errsize) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return -1;
    if (fh_consumer_partitions(rk, dr->topic, 5000, ids, 256, &n, errbuf, errsize))
        goto out;
    if (n > 256)
        n = 256;
    l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++) {
        rd_kafka_resp_err_t e =
            fh_consumer_watermarks(rk, dr->topic, ids[i], &lo[i], &hi[i], 15000);
        if (e) {
            snprintf(errbuf, errsize, "%s[%d]: %s", dr->topic, ids[i], rd_kafka_err2str(e));
            goto out;
        }
        rd_kafka_topic_partition_list_add(l, dr->topic, ids[i])->offset = lo[i];
        if (hi[i] > lo[i])
            left++;
    }
    if (rd_kafka_assign(rk, l) || view_wexec(v, W_BEGIN)) {
        snprintf(errbuf, errsize, "cannot assign %s or begin", dr->topic);
        goto out;
    }
    while (left > 0 && fh_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        int i = 0;
        while (i < n && ids[i] != m->partition)
            i++;
        if (!m->err && i < n && m->offset < hi[i]) {
            json_t *root = json_loadb(m->payload, m->len, 0, NULL);
            const char *id = json_string_value(json_object_get(root, "id"));
            if (id) {
                view_bind_text(dr->st[D_SEEN], 1, id);
                sqlite3_bind_double(dr->st[D_SEEN], 2, (double)fh_now_ms() / 1000.0);
                view_wrun(dr->st[D_SEEN]);
                read++;
            }
            json_decref(root);
            if (m->offset + 1 >= hi[i])
                left--;
        }
        rd_kafka_message_destroy(m);
    }
    if (left > 0 ||
        fh_sqlite_exec(v->db, "UPDATE derive_meta SET seeded = 1 WHERE id = 1", errbuf, errsize)) {
        if (left > 0)
            snprintf(errbuf, errsize, "%s: not read to its end in 120 s", dr->topic);
        view_wexec(v, W_ROLLBACK);
        goto out;
    }
    if (view_wexec(v, W_COMMIT)) {
        snprintf(errbuf, errsize, "commit: %s", sqlite3_errmsg(v->db));
        view_wexec(v, W_ROLLBACK);
        goto out;
    }
    fh_log(FH_LOG_INFO, "derive.seeded", "topic=%s ids=%lld", dr->topic, read);
    rc = 0;
out:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

static int seeded(fh_view *v)
{
    sqlite3_stmt *st = NULL;
    int s = 0;
    if (sqlite3_prepare_v2(v->db, "SELECT seeded FROM derive_meta WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        s = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return s;
}

static void release(fh_view *v);

/* ---- start, stop, tick ------------------------------------------------------------------ */

int derive_open(fh_view *v, char *errbuf, size_t errsize)
{
    const fh_config *c = &v->b->cfg;
    char q[560];
    struct derive *dr = calloc(1, sizeof(*dr));
    if (!dr) {
        snprintf(errbuf, errsize, "derive: out of memory");
        return -1;
    }
    v->derive = dr; /* derive_close frees it, also after a failure here */
    if (!fh_config_bool(c, "derive.enabled"))
        return 0;
    dr->topic = fh_kafka_topic(c, FH_TOPIC_DERIVED);
    dr->check_ms = fh_config_int(c, "derive.check_interval_ms");
    dr->max_suspects = fh_config_int(c, "derive.max_suspects");
    dr->lkgr_ms = fh_config_int(c, "derive.lkgr_interval_ms");
    dr->lkgr_per_turn = fh_config_int(c, "derive.lkgr_per_turn");
    dr->outbox_max = fh_config_int(c, "derive.outbox_max");
    if (fh_stale_rules_parse(&dr->stale, fh_config_str(c, "derive.stale_after"), errbuf, errsize))
        return -1;
    if (fh_sqlite_exec(v->db, tables_sql, errbuf, errsize))
        return -1;
    for (int i = 0; i < D__COUNT; i++)
        if (sqlite3_prepare_v3(v->db, dsql[i], -1, SQLITE_PREPARE_PERSISTENT, &dr->st[i], NULL) !=
            SQLITE_OK) {
            snprintf(errbuf, errsize, "derive: preparing statement %d: %s", i,
                     sqlite3_errmsg(v->db));
            return -1;
        }
    dr->rd.db = v->db;
    dr->rd.view = v;
    if (fh_kafka_producer(c, v->b->bootstrap, producer_defaults, on_delivery, v, &dr->producer,
                          errbuf, errsize))
        return -1;
    dr->m_emitted = fh_metric_new("firehose_derived_events_total", NULL,
                                  "Derived events Kafka acknowledged.", 0);
    dr->outbox_pending = 1; /* a previous run may have left some */
    dr->dirty_pending = 1;
    if (!seeded(v)) {
        char err[512];
        if (seed_from_topic(v, err, sizeof(err))) {
            /* Without the ids already on the topic a rebuild could emit an id twice with
             * different content: derivation stays off for this run (the next start tries
             * again). */
            fh_log(FH_LOG_ERROR, "derive.seed", "error=%s derivation=off",
                   fh_log_quote(q, sizeof(q), err));
            release(v);
            return 0;
        }
    }
    dr->on = 1;
    fh_log(FH_LOG_INFO, "derive.started", "topic=%s stale_rules=%zu", dr->topic, dr->stale.n);
    return 0;
}

/* Flushes what it can and frees what derivation holds; dr stays, off (all zero). */
static void release(fh_view *v)
{
    struct derive *dr = v->derive;
    if (dr->on && dr->producer && !v->in_txn) {
        /* at stop: the round in flight, and one more, acknowledged before the producer goes */
        for (int round = 0; round < 2 && (dr->ninflight || dr->outbox_pending); round++) {
            rd_kafka_flush(dr->producer, 5000);
            outbox_between_batches(v);
        }
        rd_kafka_flush(dr->producer, 5000);
        outbox_between_batches(v);
    }
    for (int i = 0; i < VIEW_READER_SLOTS; i++)
        sqlite3_finalize(dr->rd.st[i]);
    for (int i = 0; i < D__COUNT; i++)
        sqlite3_finalize(dr->st[i]);
    fh_kafka_producer_free(dr->producer, 5000);
    fh_stale_rules_free(&dr->stale);
    free(dr->lkgr_repo);
    free(dr->lkgr_branch);
    memset(dr, 0, sizeof(*dr));
}

void derive_close(fh_view *v)
{
    if (!v->derive)
        return;
    release(v);
    free(v->derive);
    v->derive = NULL;
}

/* 1 when every partition the view reads has been applied up to its high watermark, as the
 * loop last saw them: request.stale looks at pending requests only then, so a view replaying
 * old history does not call requests stale that a later event claims. */
static int caught_up(fh_view *v)
{
    for (int k = 0; k < NTOPICS; k++) {
        if (v->nparts[k] == 0)
            return 0;
        for (int i = 0; i < v->nparts[k]; i++) {
            vpart *p = &v->parts[k][i];
            int64_t at = p->committed > p->lo ? p->committed : p->lo;
            if (p->hi < 0 || at < p->hi)
                return 0;
        }
    }
    return 1;
}

void derive_tick(fh_view *v, int64_t now_ms)
{
    struct derive *dr = v->derive;
    if (!dr || !dr->on || v->in_txn)
        return;
    outbox_between_batches(v);
    derive_lkgr_due(v, now_ms);
    if (now_ms < dr->next_check)
        return;
    dr->next_check = now_ms + dr->check_ms;
    if (caught_up(v))
        derive_stale_check(v, now_ms);
    if (now_ms >= dr->next_prune) {
        derive_prune(v);
        dr->next_prune = now_ms + v->prune_interval_s * 1000;
    }
}
