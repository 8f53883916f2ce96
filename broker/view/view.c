/* view: see view.h. Thread model: the view thread owns the Kafka consumer, the writer
 * connection and the partition table; REST threads own the readers they borrow; the pool, the
 * cache and the published position (atomics) are what crosses between them. This file starts
 * and stops the view; view/internal.h lists the files and what each owns. */
#include "internal.h"

#include "cimetrics.h"
#include "derive.h"

struct view view_g;

/* Freshness is a promise and every reader depends on the one writer: on two cores shared with
 * Kafka and busy REST threads, the view thread at the default priority waits behind them and
 * freshness p99 grows to hundreds of ms. A lower niceness lets it run when it has records;
 * readers then get what is left. Without the privilege the thread keeps the process's. */
void view_thread_nice(const char *who)
{
    if (view_g.nice == 0)
        return;
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (errno == 0 && cur == view_g.nice)
        return;
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), view_g.nice))
        fh_log(FH_LOG_INFO, "view.nice", "thread=%s nice=%d applied=false error=\"%s\"", who,
               view_g.nice, strerror(errno));
}

int view_running(void)
{
    return !atomic_load(&view_g.stop) && *view_g.b->run;
}

static void register_metrics(void)
{
    static char labels[FRESH_BUCKETS + 1][32];
    view_g.m_applied = fh_metric_new("firehose_view_events_applied_total", NULL,
                                     "Events applied to the materialised view.", 0);
    view_g.m_dups = fh_metric_new("firehose_view_duplicates_total", NULL,
                                  "Events the view dropped as already applied (same id).", 0);
    view_g.m_invalid = fh_metric_new("firehose_view_invalid_total", NULL,
                                     "Records the view could not decode or apply (skipped).", 0);
    view_g.m_skipped =
        fh_metric_new("firehose_view_skipped_total", NULL,
                      "Valid events the view does not store (log.chunk, master.*).", 0);
    view_g.m_batches =
        fh_metric_new("firehose_view_batches_total", NULL, "Transactions the view committed.", 0);
    view_g.m_errors =
        fh_metric_new("firehose_view_errors_total", NULL,
                      "SQLite errors in the view (batches rolled back, events skipped).", 0);
    view_g.m_version = fh_metric_new("firehose_view_version", NULL, "The view's version.", 1);
    view_g.m_behind =
        fh_metric_new("firehose_view_behind_records", NULL,
                      "Records on the topics the view has not applied yet (-1: not known yet).", 1);
    view_g.m_checkpoints =
        fh_metric_new("firehose_view_checkpoints_total", "thread=\"checkpointer\"",
                      "WAL checkpoints, by the thread that ran them.", 0);
    view_g.m_checkpoints_tail = fh_metric_new("firehose_view_checkpoints_total", "thread=\"view\"",
                                              "WAL checkpoints, by the thread that ran them.", 0);
    view_g.m_pruned =
        fh_metric_new("firehose_view_pruned_rows_total", NULL, "Rows removed by retention.", 0);
    view_g.m_hits = fh_metric_new("firehose_rest_cache_total", "result=\"hit\"",
                                  "REST answers by cache result.", 0);
    view_g.m_stale = fh_metric_new("firehose_rest_cache_total", "result=\"stale\"",
                                   "REST answers by cache result.", 0);
    view_g.m_misses = fh_metric_new("firehose_rest_cache_total", "result=\"render\"",
                                    "REST answers by cache result.", 0);
    for (int i = 0; i <= FRESH_BUCKETS; i++) {
        if (i < FRESH_BUCKETS)
            snprintf(labels[i], sizeof(labels[i]), "le=\"%d\"", view_fresh_le[i]);
        else
            snprintf(labels[i], sizeof(labels[i]), "le=\"+Inf\"");
        view_g.m_fresh[i] =
            fh_metric_new("firehose_view_freshness_ms_bucket", labels[i],
                          "Produce (Kafka timestamp) to committed in the view, ms.", 0);
    }
    view_g.m_fresh_count = fh_metric_new("firehose_view_freshness_ms_count", NULL,
                                         "Records measured for freshness.", 0);
    view_g.m_fresh_sum = fh_metric_new("firehose_view_freshness_ms_sum", NULL,
                                       "Sum of produce-to-committed times, ms.", 0);
}

int view_start(fh_broker *b)
{
    char err[512], q[560];
    const fh_config *c = &b->cfg;
    if (!fh_config_bool(c, "view.enabled")) {
        fh_log(FH_LOG_INFO, "view.disabled", NULL);
        return 0;
    }
    memset(&view_g, 0, sizeof(view_g));
    view_g.b = b;
    view_g.dlq = fh_dlq_new(b, "view");
    snprintf(view_g.path, sizeof(view_g.path), "%s", fh_config_str(c, "view.path"));
    view_g.topic[TOPIC_EVENTS] = fh_kafka_topic(c, FH_TOPIC_EVENTS);
    view_g.topic[TOPIC_LOGS] = fh_kafka_topic(c, FH_TOPIC_LOGS);
    view_g.batch_max = fh_config_int(c, "view.batch_max");
    view_g.batch_ms = fh_config_int(c, "view.batch_ms");
    view_g.retention_s = fh_config_int(c, "view.retention_s");
    view_g.prune_interval_s = fh_config_int(c, "view.prune_interval_s");
    view_g.dedup_window_s = fh_config_int(c, "view.dedup_window_s");
    view_g.dedup_entries = fh_config_int(c, "view.dedup_entries");
    view_g.metadata_ms = fh_config_int(c, "view.metadata_refresh_ms");
    view_g.required_window_s = fh_config_int(c, "view.required_window_s");
    view_g.max_revisions = fh_config_int(c, "view.max_revisions");
    view_g.max_record_bytes = (size_t)fh_config_int(c, "events.max_bytes");
    view_g.pool_max = (int)fh_config_int(c, "view.read_connections");
    view_g.reader_cache_kib = (int)(fh_config_int(c, "view.sqlite_cache_kib") / 4);
    view_g.max_entries = (size_t)fh_config_int(c, "view.cache_entries");
    view_g.max_bytes = (size_t)fh_config_int(c, "view.cache_bytes");
    view_g.checkpoint_pages = fh_config_int(c, "view.checkpoint_pages");
    view_g.nice = (int)fh_config_int(c, "view.nice");
    view_g.batch_ts_cap = view_g.batch_max < 65536 ? (size_t)view_g.batch_max : 65536;
    atomic_store(&view_g.end_total, -1);
    pthread_mutex_init(&view_g.pool_mu, NULL);
    pthread_cond_init(&view_g.pool_cv, NULL);
    pthread_mutex_init(&view_g.ckpt_mu, NULL);
    pthread_cond_init(&view_g.ckpt_cv, NULL);
    fh_buf_init(&view_g.scratch, (size_t)fh_config_int(c, "events.max_bytes") * 2 + 65536);
    fh_json_doc_init(&view_g.doc, FH_EVENT_DOC_CAP(view_g.max_record_bytes));
    if (!view_g.dlq ||
        !(view_g.cache = fh_acache_new(view_g.max_entries, view_g.max_bytes, sizeof(view_asof))) ||
        !(view_g.batch_ts = malloc(view_g.batch_ts_cap * sizeof(*view_g.batch_ts)))) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (fh_lg_rules_parse(&view_g.rules, fh_config_str(c, "view.required_builders"), err,
                          sizeof(err)) ||
        view_mkdirs_for(view_g.path, err, sizeof(err)) || view_db_open(err, sizeof(err)) ||
        (view_ci_init(c) && snprintf(err, sizeof(err), "out of memory")) ||
        view_dedup_open(err, sizeof(err)) || view_kafka_open(err, sizeof(err)) ||
        derive_open(err, sizeof(err)))
        goto fail;
    register_metrics();
    view_ckpt_start();
    fh_metric_set(view_g.m_version, atomic_load(&view_g.version));
    if (pthread_create(&view_g.thread, NULL, view_main, NULL)) {
        snprintf(err, sizeof(err), "cannot start the view thread");
        goto fail;
    }
    view_g.started = 1;
    fh_log(FH_LOG_INFO, "view.started", "path=%s version=%lld batch_max=%lld batch_ms=%lld",
           view_g.path, (long long)atomic_load(&view_g.version), view_g.batch_max, view_g.batch_ms);
    return 0;
fail:
    fh_log(FH_LOG_ERROR, "view.start", "error=%s", fh_log_quote(q, sizeof(q), err));
    atomic_store(&view_g.closing, 1);
    view_stop();
    return -1;
}

void view_stop(void)
{
    if (!view_g.b)
        return;
    atomic_store(&view_g.closing, 1);
    while (atomic_load(&view_g.inflight) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (view_g.started) {
        atomic_store(&view_g.stop, 1);
        pthread_join(view_g.thread, NULL);
        view_g.started = 0;
    }
    view_ckpt_stop();
    fh_consumer_free(view_g.kc); /* closes before it destroys */
    view_g.kc = NULL;
    view_g.rk = NULL;
    while (view_g.pool_free) {
        view_reader *r = view_g.pool_free;
        view_g.pool_free = r->next;
        for (int i = 0; i < VIEW_READER_SLOTS; i++)
            sqlite3_finalize(r->st[i]);
        sqlite3_close(r->db);
        free(r);
    }
    derive_close();
    for (int i = 0; i < W__COUNT; i++)
        sqlite3_finalize(view_g.w[i]);
    if (view_g.db) {
        sqlite3_close(view_g.db);
        view_g.db = NULL;
        fh_log(FH_LOG_INFO, "view.stopped", "version=%lld",
               (long long)atomic_load(&view_g.version));
    }
    fh_acache_free(view_g.cache);
    view_g.cache = NULL;
    fh_lg_rules_free(&view_g.rules);
    for (int k = 0; k < NTOPICS; k++) {
        free(view_g.parts[k]);
        view_g.parts[k] = NULL;
        view_g.nparts[k] = 0;
    }
    free(view_g.batch_ts);
    view_g.batch_ts = NULL;
    fh_buf_free(&view_g.scratch);
    fh_json_doc_free(&view_g.doc);
    view_dedup_close();
    fh_dlq_free(view_g.dlq);
    view_g.dlq = NULL;
    pthread_mutex_destroy(&view_g.pool_mu);
    pthread_cond_destroy(&view_g.pool_cv);
    pthread_mutex_destroy(&view_g.ckpt_mu);
    pthread_cond_destroy(&view_g.ckpt_cv);
    view_g.b = NULL;
}

/* ---- configuration ---------------------------------------------------------------------- */

const fh_lg_rule *view_required_builders(const char *branch)
{
    return fh_lg_rules_find(&view_g.rules, branch);
}

long long view_required_window_s(void)
{
    return view_g.required_window_s;
}

long long view_max_revisions(void)
{
    return view_g.max_revisions;
}
