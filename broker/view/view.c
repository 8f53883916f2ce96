/* view: see view.h. Thread model: the view thread owns the Kafka consumer, the writer
 * connection and the partition table; REST threads own the readers they borrow; the pool, the
 * cache and the published position (atomics) are what crosses between them. This file starts
 * and stops the view; view/internal.h lists the files and what each owns. */
#include "internal.h"

#include "cimetrics.h"
#include "derive.h"

/* The freshness buckets' labels (fh_metric_new keeps the pointer), as view_fresh_le. */
static const char *const fresh_labels[FRESH_BUCKETS + 1] = {
    "le=\"1\"",    "le=\"2\"",     "le=\"3\"",   "le=\"5\"",   "le=\"7\"",    "le=\"10\"",
    "le=\"15\"",   "le=\"20\"",    "le=\"30\"",  "le=\"50\"",  "le=\"75\"",   "le=\"100\"",
    "le=\"150\"",  "le=\"200\"",   "le=\"300\"", "le=\"500\"", "le=\"1000\"", "le=\"2000\"",
    "le=\"5000\"", "le=\"10000\"", "le=\"+Inf\""};

/* Freshness is a promise and every reader depends on the one writer: on two cores shared with
 * Kafka and busy REST threads, the view thread at the default priority waits behind them and
 * freshness p99 grows to hundreds of ms. A lower niceness lets it run when it has records;
 * readers then get what is left. Without the privilege the thread keeps the process's. */
void view_thread_nice(fh_view *v, const char *who)
{
    if (v->nice && fh_thread_nice(v->nice))
        fh_log(FH_LOG_INFO, "view.nice", "thread=%s nice=%d applied=false error=\"%s\"", who,
               v->nice, strerror(errno));
}

int view_running(fh_view *v)
{
    return !atomic_load(&v->stop) && *v->b->run;
}

static const fh_metric_row view_metrics[] = {
    FH_METRIC_ROW(fh_view, m_applied, "firehose_view_events_applied_total", NULL,
                  "Events applied to the materialised view.", 0),
    FH_METRIC_ROW(fh_view, m_dups, "firehose_view_duplicates_total", NULL,
                  "Events the view dropped as already applied (same id).", 0),
    FH_METRIC_ROW(fh_view, m_invalid, "firehose_view_invalid_total", NULL,
                  "Records the view could not decode or apply (skipped).", 0),
    FH_METRIC_ROW(fh_view, m_skipped, "firehose_view_skipped_total", NULL,
                  "Valid events the view does not store (log.chunk, master.*).", 0),
    FH_METRIC_ROW(fh_view, m_batches, "firehose_view_batches_total", NULL,
                  "Transactions the view committed.", 0),
    FH_METRIC_ROW(fh_view, m_errors, "firehose_view_errors_total", NULL,
                  "SQLite errors in the view (batches rolled back, events skipped).", 0),
    FH_METRIC_ROW(fh_view, m_version, "firehose_view_version", NULL, "The view's version.", 1),
    FH_METRIC_ROW(fh_view, m_behind, "firehose_view_behind_records", NULL,
                  "Records on the topics the view has not applied yet (-1: not known yet).", 1),
    FH_METRIC_ROW(fh_view, m_checkpoints, "firehose_view_checkpoints_total",
                  "thread=\"checkpointer\"", "WAL checkpoints, by the thread that ran them.", 0),
    FH_METRIC_ROW(fh_view, m_checkpoints_tail, "firehose_view_checkpoints_total", "thread=\"view\"",
                  "WAL checkpoints, by the thread that ran them.", 0),
    FH_METRIC_ROW(fh_view, m_pruned, "firehose_view_pruned_rows_total", NULL,
                  "Rows removed by retention.", 0),
    FH_METRIC_ROW(fh_view, m_hits, "firehose_rest_cache_total", "result=\"hit\"",
                  "REST answers by cache result.", 0),
    FH_METRIC_ROW(fh_view, m_stale, "firehose_rest_cache_total", "result=\"stale\"",
                  "REST answers by cache result.", 0),
    FH_METRIC_ROW(fh_view, m_misses, "firehose_rest_cache_total", "result=\"render\"",
                  "REST answers by cache result.", 0),
};

/* The freshness histogram's buckets come between view_metrics and view_fresh_metrics (their
 * order is the order /metrics lists them in). */
static const fh_metric_row view_fresh_metrics[] = {
    FH_METRIC_ROW(fh_view, m_fresh_count, "firehose_view_freshness_ms_count", NULL,
                  "Records measured for freshness.", 0),
    FH_METRIC_ROW(fh_view, m_fresh_sum, "firehose_view_freshness_ms_sum", NULL,
                  "Sum of produce-to-committed times, ms.", 0),
};

static void register_metrics(fh_view *v)
{
    fh_metrics_register(v, view_metrics, sizeof(view_metrics) / sizeof(view_metrics[0]));
    for (int i = 0; i <= FRESH_BUCKETS; i++)
        v->m_fresh[i] = fh_metric_new("firehose_view_freshness_ms_bucket", fresh_labels[i],
                                      "Produce (Kafka timestamp) to committed in the view, ms.", 0);
    fh_metrics_register(v, view_fresh_metrics,
                        sizeof(view_fresh_metrics) / sizeof(view_fresh_metrics[0]));
}

/* ---- config, start and stop ------------------------------------------------------------- */

void fh_view_config_read(const fh_config *c, fh_view_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = fh_config_bool(c, "view.enabled");
    cfg->path = fh_config_str(c, "view.path");
    cfg->required_builders = fh_config_str(c, "view.required_builders");
    cfg->batch_max = fh_config_int(c, "view.batch_max");
    cfg->batch_ms = fh_config_int(c, "view.batch_ms");
    cfg->retention_s = fh_config_int(c, "view.retention_s");
    cfg->prune_interval_s = fh_config_int(c, "view.prune_interval_s");
    cfg->dedup_window_s = fh_config_int(c, "view.dedup_window_s");
    cfg->dedup_entries = fh_config_int(c, "view.dedup_entries");
    cfg->required_window_s = fh_config_int(c, "view.required_window_s");
    cfg->max_revisions = fh_config_int(c, "view.max_revisions");
    cfg->cache_entries = fh_config_int(c, "view.cache_entries");
    cfg->cache_bytes = fh_config_int(c, "view.cache_bytes");
    cfg->read_connections = fh_config_int(c, "view.read_connections");
    cfg->sqlite_cache_kib = fh_config_int(c, "view.sqlite_cache_kib");
    cfg->checkpoint_pages = fh_config_int(c, "view.checkpoint_pages");
    cfg->metadata_refresh_ms = fh_config_int(c, "view.metadata_refresh_ms");
    cfg->max_tests = fh_config_int(c, "view.max_tests");
    cfg->max_test_runs = fh_config_int(c, "view.max_test_runs");
    cfg->nice = (int)fh_config_int(c, "view.nice");
    cfg->ci_max_builders = fh_config_int(c, "metrics.ci_max_builders");
    cfg->ci_max_state_series = fh_config_int(c, "metrics.ci_max_state_series");
    cfg->ci_ttl_ms = fh_config_int(c, "metrics.ci_ttl_ms");
    cfg->topic_events = fh_kafka_topic(c, FH_TOPIC_EVENTS);
    cfg->topic_logs = fh_kafka_topic(c, FH_TOPIC_LOGS);
    cfg->group = fh_config_str(c, "kafka.group");
    cfg->max_record_bytes = (size_t)fh_config_int(c, "events.max_bytes");
}

fh_err fh_view_start(fh_broker *b, const fh_view_config *cfg, fh_view **out, char *errbuf,
                     size_t errsize)
{
    *out = NULL;
    fh_view *v = calloc(1, sizeof(*v));
    if (!v)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "view: out of memory");
    v->b = b;
    v->cfg = *cfg;
    fh_consumer_watch_init(&v->kq);
    atomic_store(&v->end_total, -1);
    pthread_mutex_init(&v->pool_mu, NULL);
    pthread_cond_init(&v->pool_cv, NULL);
    if (!cfg->enabled) {
        atomic_store(&v->closing, 1); /* the routes answer 503 */
        fh_log(FH_LOG_INFO, "view.disabled", NULL);
        *out = v;
        return FH_OK;
    }
    v->dlq = fh_dlq_new(b, "view");
    snprintf(v->path, sizeof(v->path), "%s", cfg->path);
    v->topic[TOPIC_EVENTS] = cfg->topic_events;
    v->topic[TOPIC_LOGS] = cfg->topic_logs;
    v->batch_max = cfg->batch_max;
    v->batch_ms = cfg->batch_ms;
    v->retention_s = cfg->retention_s;
    v->prune_interval_s = cfg->prune_interval_s;
    v->dedup_window_s = cfg->dedup_window_s;
    v->dedup_entries = cfg->dedup_entries;
    v->metadata_ms = cfg->metadata_refresh_ms;
    v->required_window_s = cfg->required_window_s;
    v->max_revisions = cfg->max_revisions;
    v->max_record_bytes = cfg->max_record_bytes;
    v->pool_max = (int)cfg->read_connections;
    v->reader_cache_kib = (int)(cfg->sqlite_cache_kib / 4);
    v->max_entries = (size_t)cfg->cache_entries;
    v->max_bytes = (size_t)cfg->cache_bytes;
    v->checkpoint_pages = cfg->checkpoint_pages;
    v->nice = cfg->nice;
    v->batch_ts_cap = v->batch_max < 65536 ? (size_t)v->batch_max : 65536;
    fh_buf_init(&v->scratch, cfg->max_record_bytes * 2 + 65536);
    fh_json_doc_init(&v->doc, FH_EVENT_DOC_CAP(v->max_record_bytes));
    if (!v->dlq || !(v->cache = fh_acache_new(v->max_entries, v->max_bytes, sizeof(view_asof))) ||
        !(v->batch_ts = malloc(v->batch_ts_cap * sizeof(*v->batch_ts))) ||
        !(v->recs = malloc((size_t)v->batch_max * sizeof(*v->recs)))) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* the CI metrics, the dedup memory and derivation read the open file: after view_db_open,
     * before the thread starts */
    if (fh_lg_rules_parse(&v->rules, cfg->required_builders, errbuf, errsize) ||
        view_mkdirs_for(v->path, errbuf, errsize) || view_db_open(v, errbuf, errsize) ||
        view_ci_init(v, errbuf, errsize) || view_dedup_open(v, errbuf, errsize) ||
        view_kafka_open(v, errbuf, errsize) || derive_open(v, errbuf, errsize) ||
        view_loop_open(v, errbuf, errsize))
        goto fail;
    register_metrics(v);
    view_ckpt_start(v);
    fh_metric_set(v->m_version, atomic_load(&v->version));
    if (pthread_create(&v->thread, NULL, view_main, v)) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "cannot start the view thread");
        goto fail;
    }
    v->started = 1;
    fh_log(FH_LOG_INFO, "view.started", "path=%s version=%lld batch_max=%lld batch_ms=%lld",
           v->path, (long long)atomic_load(&v->version), v->batch_max, v->batch_ms);
    *out = v;
    return FH_OK;
fail:
    fh_view_free(v);
    return FH_ERR_IO;
}

void fh_view_stop(fh_view *v)
{
    if (!v || v->stopped)
        return;
    v->stopped = 1;
    atomic_store(&v->closing, 1);
    while (atomic_load(&v->inflight) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (v->started) {
        atomic_store(&v->stop, 1);
        fh_loop_stop(v->loop);
        pthread_join(v->thread, NULL);
        v->started = 0;
    }
    view_ckpt_stop(v);
    view_loop_close(v);
    fh_consumer_free(v->kc); /* closes before it destroys */
    v->kc = NULL;
    v->rk = NULL;
    while (v->pool_free) {
        view_reader *r = v->pool_free;
        v->pool_free = r->next;
        for (int i = 0; i < VIEW_READER_SLOTS; i++)
            sqlite3_finalize(r->st[i]);
        sqlite3_close(r->db);
        free(r);
    }
    derive_close(v);
    for (int i = 0; i < W__COUNT; i++) {
        sqlite3_finalize(v->w[i]);
        v->w[i] = NULL;
    }
    if (v->db) {
        sqlite3_close(v->db);
        v->db = NULL;
        fh_log(FH_LOG_INFO, "view.stopped", "version=%lld", (long long)atomic_load(&v->version));
    }
    fh_acache_free(v->cache);
    v->cache = NULL;
    fh_lg_rules_free(&v->rules);
    for (int k = 0; k < NTOPICS; k++) {
        free(v->parts[k]);
        v->parts[k] = NULL;
        v->nparts[k] = 0;
    }
    free(v->batch_ts);
    v->batch_ts = NULL;
    free(v->recs); /* empty: the thread committed or rolled back its batch */
    v->recs = NULL;
    fh_buf_free(&v->scratch);
    fh_json_doc_free(&v->doc);
    view_dedup_close(v);
    fh_dlq_free(v->dlq);
    v->dlq = NULL;
}

void fh_view_free(fh_view *v)
{
    if (!v)
        return;
    fh_view_stop(v);
    view_ci_free(v);
    pthread_mutex_destroy(&v->pool_mu);
    pthread_cond_destroy(&v->pool_cv);
    free(v);
}

/* ---- configuration ---------------------------------------------------------------------- */

const fh_lg_rule *view_required_builders(fh_view *v, const char *branch)
{
    return fh_lg_rules_find(&v->rules, branch);
}

long long view_required_window_s(fh_view *v)
{
    return v->required_window_s;
}

long long view_max_revisions(fh_view *v)
{
    return v->max_revisions;
}
