/* webhooks: see webhooks.h and docs/webhooks.md. This file is the handle (config, start, stop)
 * and the webhook thread's loop. The thread owns the webhook consumer (consumer.c), its SQLite
 * connection (statements, the temp table of owned partitions), the in-memory endpoint table
 * (endpoints.c), the curl multi handle and every transfer (delivery.c). It runs on lib/fh_loop:
 *   watches: curl's sockets (delivery.c), the consumer queue's eventfd; the loop's own eventfd
 *   wakes it for the API's pokes
 *   timers: curl's timer (delivery.c), the endpoint scan, the pending recount, pruning, and the
 *   next endpoint look (a retry coming due)
 *   after each pass: finish transfers (attempt rows, retry or dead-letter, endpoint health)
 *   -> COMMIT -> consume records (one delivery row per matching endpoint and body, render.c)
 *   -> COMMIT, then store the offsets of the records that COMMIT covers
 *   -> start due deliveries of owned partitions, within the concurrency caps.
 * So a delivery is durable before the offset of its record can be committed (at-least-once),
 * and a partition's deliveries are sent only by the instance the group gave the partition to.
 *
 * No file-scope mutable state: every callback (curl's, librdkafka's rebalance, the thread, the
 * HTTP handlers) gets the handle through its user pointer; the one static buffer is api.c's
 * per-thread Location header of a 201. */
#include "internal.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fh_log.h"

static const char *const stmt_sql[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_VERSION] = "SELECT endpoints_version FROM wh_meta WHERE id = 1",
    [S_EPS] = "SELECT id, url, filter, format, secret, old_secret, old_secret_until_ms, enabled,"
              " ordered, failing_since_ms FROM endpoints ORDER BY created_ms, id",
    [S_PAYLOAD] = "INSERT INTO payloads(event_id, kind, body, created_ms) VALUES(?1, ?2, ?3, ?4)"
                  " ON CONFLICT(event_id, kind) DO UPDATE SET kind = excluded.kind RETURNING id",
    [S_INSERT] =
        "INSERT INTO deliveries(msg_id, endpoint_id, event_id, event_type, payload_id, part,"
        " kafka_offset, produced_ms, build_key, next_ms, created_ms, updated_ms)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)"
        " ON CONFLICT(msg_id) DO NOTHING",
    [S_DUE] =
        "SELECT d.id, d.msg_id, d.part, d.tries, d.build_key, d.produced_ms, p.body, d.requeued,"
        " d.attempts"
        " FROM deliveries d JOIN payloads p ON p.id = d.payload_id"
        " WHERE d.endpoint_id = ?1 AND d.state = 0 AND d.next_ms <= ?2"
        " AND d.part IN (SELECT part FROM temp.owned) ORDER BY d.next_ms LIMIT ?3",
    /* A build's later deliveries wait while an earlier one is pending (in flight included). */
    [S_DUE_ORDERED] =
        "SELECT d.id, d.msg_id, d.part, d.tries, d.build_key, d.produced_ms, p.body, d.requeued,"
        " d.attempts"
        " FROM deliveries d JOIN payloads p ON p.id = d.payload_id"
        " WHERE d.endpoint_id = ?1 AND d.state = 0 AND d.next_ms <= ?2"
        " AND d.part IN (SELECT part FROM temp.owned) AND (d.build_key = '' OR NOT EXISTS ("
        "  SELECT 1 FROM deliveries e WHERE e.endpoint_id = d.endpoint_id AND e.state = 0"
        "  AND e.build_key = d.build_key AND e.build_key <> '' AND e.id < d.id))"
        " ORDER BY d.next_ms LIMIT ?3",
    [S_NEXT_DUE] = "SELECT min(next_ms) FROM deliveries WHERE endpoint_id = ?1 AND state = 0"
                   " AND next_ms > ?2 AND part IN (SELECT part FROM temp.owned)",
    [S_DONE] =
        "UPDATE deliveries SET state = ?2, tries = ?3, attempts = attempts + 1, next_ms = ?4,"
        " updated_ms = ?5, last_status = ?6, last_error = ?7, last_latency_ms = ?8,"
        " last_response = ?9, last_instance = ?10 WHERE id = ?1 AND state = 0 AND requeued = ?11",
    [S_ATTEMPT] = "INSERT OR IGNORE INTO attempts(delivery_id, at_ms, status, latency_ms, error,"
                  " response, instance, n) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_EP_OK] = "UPDATE endpoints SET failing_since_ms = NULL WHERE id = ?1"
                " AND failing_since_ms IS NOT NULL",
    [S_EP_FAIL] = "UPDATE endpoints SET failing_since_ms = ?2 WHERE id = ?1"
                  " AND failing_since_ms IS NULL",
    [S_EP_DISABLE] = "UPDATE endpoints SET enabled = 0, disabled_reason = ?2, updated_ms = ?3"
                     " WHERE id = ?1 AND enabled = 1",
    [S_OWN_ADD] = "INSERT OR IGNORE INTO temp.owned(part) VALUES(?1)",
    [S_OWN_DEL] = "DELETE FROM temp.owned WHERE part = ?1",
    [S_PENDING] = "SELECT count(*) FROM deliveries WHERE state = 0"
                  " AND part IN (SELECT part FROM temp.owned)",
};

/* Latency histogram buckets (ms) and their labels (fh_metric_new keeps the label pointer). */
static const int lat_le[LAT_BUCKETS] = {1,   2,    3,    4,    5,     7,     10,    15,
                                        20,  30,   50,   75,   100,   150,   200,   300,
                                        500, 1000, 2000, 5000, 10000, 30000, 60000, 300000};
static const char *const lat_labels[LAT_BUCKETS + 1] = {
    "le=\"1\"",     "le=\"2\"",     "le=\"3\"",     "le=\"4\"",      "le=\"5\"",
    "le=\"7\"",     "le=\"10\"",    "le=\"15\"",    "le=\"20\"",     "le=\"30\"",
    "le=\"50\"",    "le=\"75\"",    "le=\"100\"",   "le=\"150\"",    "le=\"200\"",
    "le=\"300\"",   "le=\"500\"",   "le=\"1000\"",  "le=\"2000\"",   "le=\"5000\"",
    "le=\"10000\"", "le=\"30000\"", "le=\"60000\"", "le=\"300000\"", "le=\"+Inf\""};

/* An eventfd write: thread safe, never blocks. */
void wh_wake_thread(fh_webhooks *w)
{
    if (w->loop)
        fh_loop_wake(w->loop);
}

void wh_poke(fh_webhooks *w)
{
    atomic_store(&w->poke, 1);
    wh_wake_thread(w);
}

int wh_running(fh_webhooks *w)
{
    return !atomic_load(&w->stop) && *w->b->run;
}

/* ---- SQL helpers ------------------------------------------------------------------------- */

int wh_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int64_t wh_step_id(sqlite3_stmt *st)
{
    int64_t id = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    wh_step_done(st);
    return id;
}

void wh_sql_warn(fh_webhooks *w, const char *what)
{
    fh_log(FH_LOG_ERROR, "webhook.sql", "what=%s error=\"%s\"", what, sqlite3_errmsg(w->db));
}

void wh_observe_latency(fh_webhooks *w, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int i = 0;
    while (i < LAT_BUCKETS && ms > lat_le[i])
        i++;
    for (; i <= LAT_BUCKETS; i++) /* Prometheus buckets are cumulative */
        fh_metric_add(w->m_lat[i], 1);
    fh_metric_add(w->m_lat_count, 1);
    fh_metric_add(w->m_lat_sum, ms);
}

/* ---- housekeeping -------------------------------------------------------------------------- */

/* Deletes delivered and failed deliveries older than webhooks.history_ms (the changelog's
 * retention: what Kafka forgets, this file forgets too), with their attempts and the bodies
 * nothing refers to any more, and deliveries whose endpoint is gone, a bounded amount per round. */
static void prune(fh_webhooks *w)
{
    char sql[1024], err[256];
    int64_t cutoff = fh_now_ms() - w->retention_ms;
    snprintf(
        sql, sizeof(sql),
        "BEGIN IMMEDIATE;"
        "CREATE TEMP TABLE IF NOT EXISTS gone(id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.gone;"
        "INSERT INTO temp.gone SELECT id FROM deliveries WHERE state <> 0 AND updated_ms < %lld"
        " LIMIT 20000;"
        /* a minute old at least: the reader may apply a delivery just before its endpoint */
        "INSERT OR IGNORE INTO temp.gone SELECT id FROM deliveries WHERE endpoint_id NOT IN"
        " (SELECT id FROM endpoints) AND created_ms < %lld LIMIT 20000;"
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM temp.gone);"
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM temp.gone);"
        "DELETE FROM payloads WHERE id IN (SELECT id FROM payloads WHERE created_ms < %lld"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.payload_id = payloads.id)"
        " LIMIT 20000);"
        "COMMIT;",
        (long long)cutoff, (long long)(fh_now_ms() - 60000), (long long)cutoff);
    if (fh_sqlite_exec(w->db, sql, err, sizeof(err))) {
        sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
        fh_log(FH_LOG_WARN, "webhook.prune", "error=\"%s\"", err);
    }
}

/* Reloads endpoints when their version moved, and looks for due work of every endpoint. */
static void look_again(fh_webhooks *w)
{
    wh_eps_reload(w, 0);
    for (size_t i = 0; i < w->neps; i++)
        w->eps[i].has_work = 1;
}

/* ---- the thread's loop ----------------------------------------------------------------------- */

/* The housekeeping chores, each on a timer of its own (first run, then every period). They wait
 * while a drain's nested pass runs (a rebalance or the stop): they would reload the endpoint
 * table under transfers being recorded, or open a transaction. */
#define DEFER_MS 100

static void recount(fh_webhooks *w)
{
    wh_recount_pending(w);
}

static int64_t chore_timer(fh_loop *l, void *arg)
{
    wh_chore *c = arg;
    (void)l;
    if (c->w->nested)
        return DEFER_MS;
    c->run(c->w);
    return c->period_ms;
}

/* The next endpoint look came due: the pass it ends dispatches. */
static int64_t due_timer(fh_loop *l, void *arg)
{
    fh_webhooks *w = arg;
    (void)l;
    w->due_timer = 0;
    return -1;
}

/* Does not sleep while work is ready (a poke, records left in the consumer queue, an endpoint
 * with due work and free slots); otherwise sleeps until the earliest endpoint look at the
 * latest (the due timer), or until curl, Kafka or a poke wakes the loop. */
static void before_sleep(fh_loop *l, void *arg)
{
    fh_webhooks *w = arg;
    if (w->nested)
        return;
    if (atomic_load(&w->poke) || rd_kafka_queue_length(w->rkq) > 0) {
        fh_loop_no_sleep(l);
        return;
    }
    if (wh_backlogged(w)) { /* attempts wait for Kafka: look again shortly */
        w->due_timer = fh_loop_timer_rearm(l, w->due_timer, 5, due_timer, w);
        return;
    }
    int64_t now = fh_now_ms(), next = -1;
    long long conc = w->cfg.endpoint_concurrency;
    for (size_t i = 0; i < w->neps; i++) {
        wh_ep *e = &w->eps[i];
        long long free_slots = conc - e->inflight;
        if (!e->enabled || free_slots <= 0)
            continue;
        /* dispatch waits for half the slots when some are busy, and for any slot when
         * webhooks.max_in_flight are busy: a finishing transfer's socket wakes the loop then */
        int waits_for_slots =
            (e->inflight > 0 && free_slots < (conc + 1) / 2) || w->inflight >= w->cfg.max_in_flight;
        if (e->has_work && !waits_for_slots) {
            fh_loop_no_sleep(l);
            return;
        }
        if (next < 0 || e->next_due_ms < next)
            next = e->next_due_ms;
    }
    if (next < 0) {
        fh_loop_timer_cancel(l, w->due_timer);
        w->due_timer = 0;
    } else {
        w->due_timer = fh_loop_timer_rearm(l, w->due_timer, next - now, due_timer, w);
    }
}

static void after_pass(fh_loop *l, void *arg)
{
    fh_webhooks *w = arg;
    wh_delivery_reap(w);
    wh_txn_commit(w);
    rd_kafka_poll(w->prod, 0); /* delivery reports: batches acknowledged */
    wh_batches_store(w);
    if (w->nested)
        return;
    if (atomic_exchange(&w->poke, 0))
        look_again(w);
    wh_catchup(w);
    fh_metric_set(w->m_pending, w->pending);
    wh_check_pause(w);
    wh_consume(w);
    wh_txn_commit(w);
    wh_dispatch(w);
    if (!wh_running(w))
        fh_loop_stop(l);
}

void wh_pump(fh_webhooks *w, int timeout_ms)
{
    w->nested++;
    fh_loop_once(w->loop, timeout_ms);
    w->nested--;
}

static void *thread_main(void *arg)
{
    fh_webhooks *w = arg;
    /* the idle tick: every wake-up that matters is an event or a timer */
    fh_loop_run(w->loop, 1000);
    fh_log(FH_LOG_INFO, "webhook.stopping", "in_flight=%lld", w->inflight);
    wh_drain(w, NULL);
    return NULL;
}

/* The loop, its watches and timers (the thread is not running yet). */
static int open_loop(fh_webhooks *w, char *err, size_t errsize)
{
    if (fh_loop_new(&w->loop, 256, 8, err, errsize) != FH_OK)
        return -1;
    fh_loop_before_sleep(w->loop, before_sleep, w);
    fh_loop_after_pass(w->loop, after_pass, w);
    /* the endpoint scan (a poke only needs a pass: after_pass takes it), the pending recount
     * (consumer.c keeps the count as it goes; this corrects drift from other instances), and
     * pruning by webhooks.retention_s */
    const wh_chore chores[WH_CHORES] = {{w, look_again, 0, w->cfg.scan_interval_ms},
                                        {w, recount, 10000, 10000},
                                        {w, prune, 0, 60000}};
    for (int i = 0; i < WH_CHORES; i++) {
        w->chores[i] = chores[i];
        fh_loop_timer(w->loop, chores[i].first_ms, chore_timer, &w->chores[i]);
    }
    return 0;
}

/* ---- start and stop -------------------------------------------------------------------------- */

static void register_metrics(fh_webhooks *w)
{
    w->m_created = fh_metric_new("firehose_webhook_deliveries_created_total", NULL,
                                 "Deliveries recorded (one per matching endpoint and body).", 0);
    w->m_delivered = fh_metric_new("firehose_webhook_delivered_total", NULL,
                                   "Deliveries acknowledged with a 2xx.", 0);
    w->m_failed_attempts = fh_metric_new("firehose_webhook_failed_attempts_total", NULL,
                                         "Attempts that did not get a 2xx.", 0);
    w->m_dead = fh_metric_new("firehose_webhook_dead_total", NULL,
                              "Deliveries dead-lettered after the last scheduled attempt.", 0);
    w->m_refused = fh_metric_new("firehose_webhook_ssrf_refused_total", NULL,
                                 "Connections refused by the SSRF guard.", 0);
    w->m_disabled =
        fh_metric_new("firehose_webhook_endpoints_disabled_total", NULL,
                      "Endpoints disabled by delivery (410 Gone, failing too long).", 0);
    w->m_inflight = fh_metric_new("firehose_webhook_in_flight", NULL, "Attempts in flight.", 1);
    w->m_pending = fh_metric_new("firehose_webhook_pending", NULL,
                                 "Pending deliveries on this instance's partitions.", 1);
    w->m_paused = fh_metric_new("firehose_webhook_paused", NULL,
                                "1 while the webhook consumer is paused at webhooks.queue_max.", 1);
    for (int i = 0; i <= LAT_BUCKETS; i++) {
        w->m_lat[i] = fh_metric_new("firehose_webhook_latency_ms_bucket", lat_labels[i],
                                    "Produce (Kafka timestamp) to 2xx of first attempts, ms.", 0);
    }
    w->m_lat_count =
        fh_metric_new("firehose_webhook_latency_ms_count", NULL, "First attempts acknowledged.", 0);
    w->m_lat_sum = fh_metric_new("firehose_webhook_latency_ms_sum", NULL,
                                 "Sum of produce to acknowledgement, ms.", 0);
}

static int open_store(fh_webhooks *w, char *err, size_t errsize)
{
    if (whs_open(w->cfg.path, w->b->cluster_id, &w->db, err, errsize))
        return -1;
    if (fh_sqlite_exec(w->db, "CREATE TEMP TABLE owned(part INTEGER PRIMARY KEY)", err, errsize))
        return -1;
    for (int i = 0; i < S__COUNT; i++) {
        if (sqlite3_prepare_v3(w->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i],
                               NULL) != SQLITE_OK) {
            fh_errf(err, errsize, FH_ERR_IO, "webhooks.path: preparing statement %d: %s", i,
                    sqlite3_errmsg(w->db));
            return -1;
        }
    }
    return 0;
}

/* ---- config, start and stop ------------------------------------------------------------------ */

void fh_webhooks_config_read(const fh_config *c, fh_webhooks_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = fh_config_bool(c, "webhooks.enabled");
    cfg->path = fh_config_str(c, "webhooks.path");
    cfg->group = fh_config_str(c, "webhooks.group");
    cfg->instance_id = fh_config_str(c, "webhooks.instance_id");
    cfg->retry_schedule = fh_config_str(c, "webhooks.retry_schedule");
    cfg->retry_jitter_pct = (int)fh_config_int(c, "webhooks.retry_jitter_pct");
    cfg->retry_after_max_s = fh_config_int(c, "webhooks.retry_after_max_s");
    cfg->allow_cidrs = fh_config_str(c, "webhooks.allow_cidrs");
    cfg->connect_timeout_ms = fh_config_int(c, "webhooks.connect_timeout_ms");
    cfg->timeout_ms = fh_config_int(c, "webhooks.timeout_ms");
    cfg->response_max_bytes = fh_config_int(c, "webhooks.response_max_bytes");
    cfg->response_log_bytes = fh_config_int(c, "webhooks.response_log_bytes");
    cfg->endpoint_concurrency = fh_config_int(c, "webhooks.endpoint_concurrency");
    cfg->max_in_flight = fh_config_int(c, "webhooks.max_in_flight");
    cfg->queue_max = fh_config_int(c, "webhooks.queue_max");
    cfg->batch_max = fh_config_int(c, "webhooks.batch_max");
    cfg->disable_after_s = fh_config_int(c, "webhooks.disable_after_s");
    cfg->secret_overlap_s = fh_config_int(c, "webhooks.secret_overlap_s");
    cfg->retention_s = fh_config_int(c, "webhooks.retention_s");
    cfg->scan_interval_ms = fh_config_int(c, "webhooks.scan_interval_ms");
    cfg->migrate_from = fh_config_str(c, "webhooks.migrate_from");
    cfg->secret_key = fh_config_str(c, "webhooks.secret_key");
    cfg->secret_key_file = fh_config_str(c, "webhooks.secret_key_file");
    cfg->ep_topic = fh_config_str(c, "topics.webhook_endpoints");
    cfg->cl_topic = fh_config_str(c, "topics.webhook_deliveries");
    cfg->history_ms = fh_config_int(c, "webhooks.history_ms");
    /* webhooks.retention_s is the old name: it counts when it was changed and the new key was not
     */
    if (cfg->history_ms == 604800000LL && cfg->retention_s != 604800)
        cfg->history_ms = cfg->retention_s * 1000;
    cfg->api_wait_ms = fh_config_int(c, "webhooks.api_wait_ms");
    cfg->changelog_backlog_max = fh_config_int(c, "webhooks.changelog_backlog_max");
    cfg->max_endpoints = fh_config_int(c, "webhooks.max_endpoints");
    cfg->topic = fh_kafka_topic(c, FH_TOPIC_EVENTS);
    cfg->derived_topic = fh_config_bool(c, "view.enabled") && fh_config_bool(c, "derive.enabled")
                             ? fh_kafka_topic(c, FH_TOPIC_DERIVED)
                             : NULL;
    cfg->max_record_bytes = (size_t)fh_config_int(c, "events.max_bytes");
}

/* The key that seals endpoint secrets (webhooks.secret_key or webhooks.secret_key_file); -1
 * with w->off_why saying what is missing and how to make one. */
static int load_key(fh_webhooks *w)
{
    char err[300];
    const fh_webhooks_config *c = &w->cfg;
    if (*c->secret_key && *c->secret_key_file) {
        snprintf(w->off_why, sizeof(w->off_why),
                 "webhooks are off: set webhooks.secret_key or webhooks.secret_key_file, not both");
        return -1;
    }
    if (*c->secret_key_file ? fh_aead_key_file(c->secret_key_file, &w->key, err, sizeof(err))
        : *c->secret_key    ? fh_aead_key_hex(c->secret_key, &w->key, err, sizeof(err))
                            : (snprintf(err, sizeof(err), "no key is set"), FH_ERR_CONFIG)) {
        snprintf(w->off_why, sizeof(w->off_why),
                 "webhooks are off: webhooks.secret_key%s: %s; endpoint secrets are sealed with "
                 "AES-256-GCM in Kafka and on disk, so every instance needs the same 64 hex "
                 "characters: make them with `openssl rand -hex 32` and set webhooks.secret_key "
                 "or webhooks.secret_key_file",
                 *c->secret_key_file ? "_file" : "", err);
        return -1;
    }
    return 0;
}

/* Makes webhooks.path this version's cache: an old-design file there (schema 1, the only copy of
 * its endpoints and deliveries) is moved aside to PATH.v1 and migrated from; a cache of another
 * version is deleted (the topics rebuild it). Sets w->migrate_path. */
static int prepare_file(fh_webhooks *w, char *err, size_t errsize)
{
    const char *path = w->cfg.path;
    int schema = whs_schema_of(path);
    snprintf(w->migrate_path, sizeof(w->migrate_path), "%s", w->cfg.migrate_from);
    if (schema == 1) {
        snprintf(w->migrate_path, sizeof(w->migrate_path), "%s.v1", path);
        if (rename(path, w->migrate_path)) {
            fh_errf(err, errsize, FH_ERR_IO, "webhooks.path: moving the old-design %s aside: %s",
                    path, strerror(errno));
            return -1;
        }
    } else if (schema != 0 && schema != 2) {
        fh_log(FH_LOG_WARN, "webhook.cache_rebuild", "path=%s schema=%d", path, schema);
        unlink(path);
    } else {
        return 0;
    }
    char side[1200];
    snprintf(side, sizeof(side), "%s-wal", path);
    if (schema == 1) {
        char to[1200];
        snprintf(to, sizeof(to), "%s-wal", w->migrate_path);
        rename(side, to);
    } else {
        unlink(side);
    }
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
    return 0;
}

/* Waits (bounded) until the reader has applied the endpoints topic up to its end as of now, so
 * the first records consumed meet every endpoint (after a rebuild the table starts empty). */
static int await_endpoints(fh_webhooks *w, char *err, size_t errsize)
{
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t kerr = fh_consumer_watermarks(w->prod, w->ep_topic, 0, &lo, &hi, 15000);
    if (kerr)
        return fh_errf(err, errsize, FH_ERR_KAFKA, "%s: %s", w->ep_topic, rd_kafka_err2str(kerr)),
               -1;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&w->rd_mu);
    while (w->ep_applied < hi && pthread_cond_timedwait(&w->rd_cond, &w->rd_mu, &dl) == 0)
        ;
    int ok = w->ep_applied >= hi;
    pthread_mutex_unlock(&w->rd_mu);
    if (!ok)
        return fh_errf(err, errsize, FH_ERR_KAFKA, "%s: not read to its end (%lld) in 30 s",
                       w->ep_topic, (long long)hi),
               -1;
    return 0;
}

fh_err fh_webhooks_start(fh_broker *b, const fh_webhooks_config *cfg, fh_webhooks **out,
                         char *errbuf, size_t errsize)
{
    char host[64] = "";
    *out = NULL;
    fh_webhooks *w = calloc(1, sizeof(*w));
    if (!w)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
    w->b = b;
    w->cfg = *cfg;
    fh_consumer_watch_init(&w->kq);
    pthread_mutex_init(&w->api_mu, NULL);
    pthread_mutex_init(&w->rd_mu, NULL);
    pthread_cond_init(&w->rd_cond, NULL);
    if (cfg->enabled && load_key(w)) {
        /* no key: webhooks stay off (the API says why); the rest of the broker runs */
        fh_log(FH_LOG_ERROR, "webhook.start", "error=\"%s\"", w->off_why);
        w->cfg.enabled = 0;
        *out = w;
        return FH_OK;
    }
    if (!cfg->enabled) {
        *out = w;
        return FH_OK;
    }
    /* Before any other thread uses curl (the API parses URLs with it). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        snprintf(errbuf, errsize, "curl_global_init failed");
        goto err;
    }
    gethostname(host, sizeof(host) - 1);
    if (*cfg->instance_id)
        snprintf(w->instance, sizeof(w->instance), "%s", cfg->instance_id);
    else
        snprintf(w->instance, sizeof(w->instance), "%s:%d", host, (int)getpid());
    w->disable_after_ms = cfg->disable_after_s * 1000;
    w->retention_ms = cfg->history_ms;
    w->history_ms = cfg->history_ms;
    w->api_wait_ms = cfg->api_wait_ms;
    w->ep_topic = cfg->ep_topic;
    /* a fresh value per process (time and pid if there is no randomness): this process's own
     * changelog records are known by it */
    if (getrandom(&w->incarnation, sizeof(w->incarnation), GRND_NONBLOCK) != sizeof(w->incarnation))
        w->incarnation = (uint64_t)fh_mono_ns() ^ ((uint64_t)getpid() << 40);
    w->cl_topic = cfg->cl_topic;
    for (int p = 0; p < MAX_PARTS; p++)
        w->catchup[p] = -1;
    for (int p = 0; p < MAX_PARTS; p++)
        w->to_store[p] = w->first_in_txn[p] = -1;
    fh_buf_init(&w->body, cfg->max_record_bytes * 4 + 65536);
    fh_json_doc_init(&w->doc, FH_EVENT_DOC_CAP(cfg->max_record_bytes));
    if (!(w->dlq = fh_dlq_new(b, "webhooks"))) {
        snprintf(errbuf, errsize, "out of memory");
        goto err;
    }
    if ((w->nschedule = whs_schedule_parse(cfg->retry_schedule, w->schedule, MAX_SCHEDULE, errbuf,
                                           errsize)) < 0 ||
        fh_netguard_init(&w->guard, cfg->allow_cidrs, errbuf, errsize))
        goto err;
    if (prepare_file(w, errbuf, errsize) || open_store(w, errbuf, errsize) ||
        wh_cl_open(w, errbuf, errsize))
        goto err;
    wh_migrate(w, w->migrate_path);
    if (wh_reader_start(w, errbuf, errsize) || await_endpoints(w, errbuf, errsize))
        goto err;
    if (open_loop(w, errbuf, errsize))
        goto err;
    if (wh_delivery_open(w, errbuf, errsize))
        goto err;
    register_metrics(w);
    wh_eps_reload(w, 1);
    wh_recount_pending(w);
    /* the consumer queue wakes the loop when it becomes non-empty: the after-pass work
     * consumes */
    if (wh_start_consumer(w, errbuf, errsize) ||
        fh_consumer_watch_start(&w->kq, w->loop, w->rkq, NULL, NULL, errbuf, errsize))
        goto err;
    w->tag_own = 1; /* from now on the thread's changelog records are known as its own */
    if (pthread_create(&w->thread, NULL, thread_main, w)) {
        snprintf(errbuf, errsize, "cannot start the webhook thread");
        goto err;
    }
    w->started = 1;
    fh_log(FH_LOG_INFO, "webhook.started",
           "path=%s group=%s instance=%s endpoints=%zu schedule_attempts=%d allow_cidrs=%zu "
           "endpoints_topic=%s changelog=%s changelog_partitions=%d key_id=%s",
           cfg->path, cfg->group, w->instance, w->neps, w->nschedule, w->guard.nallow, w->ep_topic,
           w->cl_topic, w->cl_parts, w->key.id);
    *out = w;
    return FH_OK;
err:
    fh_webhooks_free(w);
    return FH_ERR_IO;
}

void fh_webhooks_stop(fh_webhooks *w)
{
    if (!w)
        return;
    if (w->started) {
        atomic_store(&w->stop, 1);
        fh_loop_stop(w->loop);
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
    if (w->kc) {
        fh_consumer_watch_stop(&w->kq, w->loop);
        fh_consumer_close(w->kc); /* the revoke drains nothing more, commits stored offsets */
        wh_txn_commit(w);
        fh_consumer_free(w->kc);
        w->kc = NULL;
        w->rk = NULL;
        w->rkq = NULL;
    }
    atomic_store(&w->stop, 1);
    wh_reader_stop(w);
    wh_cl_close(w);
    wh_delivery_close(w);
    for (size_t i = 0; i < w->neps; i++)
        wh_ep_free(&w->eps[i]);
    free(w->eps);
    w->eps = NULL;
    w->neps = 0;
    for (int i = 0; i < S__COUNT; i++)
        if (w->st[i])
            sqlite3_finalize(w->st[i]);
    memset(w->st, 0, sizeof(w->st));
    if (w->cl_st)
        sqlite3_finalize(w->cl_st);
    w->cl_st = NULL;
    if (w->db)
        sqlite3_close(w->db);
    w->db = NULL;
    fh_consumer_watch_stop(&w->kq, w->loop);
    fh_loop_free(w->loop);
    w->loop = NULL;
    fh_buf_free(&w->body);
    fh_json_doc_free(&w->doc);
    fh_lost_table_free(&w->next);
    fh_dlq_free(w->dlq);
    w->dlq = NULL;
}

void fh_webhooks_free(fh_webhooks *w)
{
    if (!w)
        return;
    fh_webhooks_stop(w);
    if (w->api_db)
        sqlite3_close(w->api_db);
    pthread_mutex_destroy(&w->api_mu);
    pthread_mutex_destroy(&w->rd_mu);
    pthread_cond_destroy(&w->rd_cond);
    free(w);
}
