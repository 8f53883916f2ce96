/* firehose-broker: consumes the event topics, sends malformed records to the dead-letter topic
 * and serves HTTP (health, metrics; REST, stream and dashboard build on it) on one port. With
 * kafka.brokers=embedded it first starts librdkafka's in-memory mock cluster and says where. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "fh_consumer.h"
#include "fh_fdlimit.h"
#include "fh_log.h"
#include "fh_lost.h"
#include "fh_util.h"
#include "dashboard.h"
#include "dlq.h"
#include "health.h"
#include "http.h"
#include "ingest_ci.h"
#include "memory.h"
#include "rest/rest.h"
#include "view/cimetrics.h"
#include "view/derive.h"
#include "view/view.h"
#include "statuspush.h"
#include "stream/stream.h"
#include "webhooks/webhooks.h"

#define MAX_ROUTES 64

static const fh_cfg_opt broker_opts[] = {
    FH_CFG_COMMON,
    {"kafka.group", "group", FH_CFG_STR, "firehose-broker", 0, 0,
     "consumer group id of the ingest consumer"},
    FH_CONSUMER_CFG, /* kafka.partition_check_ms */
    {"topics.partitions", NULL, FH_CFG_INT, "6", 1, 10000,
     "partitions of each topic the broker creates (embedded, or topics.create on a real cluster)"},
    {"topics.create", NULL, FH_CFG_BOOL, "true", 0, 0,
     "create missing topics on a real cluster at start-up"},
    {"topics.replication", NULL, FH_CFG_INT, "1", 1, 16, "replication factor of created topics"},
    {"broker.stats_interval_ms", NULL, FH_CFG_INT, "5000", 100, 3600000,
     "how often the per-type counts are logged (when they changed)"},
    {"broker.malloc_arenas", NULL, FH_CFG_INT, "2", 0, 1024,
     "glibc malloc arenas at most (M_ARENA_MAX; 0: glibc's default, 8 per core): each arena "
     "keeps what was freed in it"},
    {"broker.malloc_trim_bytes", NULL, FH_CFG_INT, "16777216", 0, 68719476736LL,
     "after a burst (at a look every 5 s, the port's connections are 64 and a quarter fewer than "
     "their peak since the last such fall), if the allocator holds more than this free, its free "
     "pages go back to the system (malloc_trim); 0: never"},
    {"broker.malloc_mmap_threshold", NULL, FH_CFG_INT, "262144", 0, 33554432,
     "allocations of at least this many bytes get their own mapping, returned to the system "
     "when freed (M_MMAP_THRESHOLD; 0: glibc's default, which rises to 32 MiB)"},
    {"http.listen", "listen", FH_CFG_STR, "127.0.0.1:8080", 0, 0,
     "address of REST, stream, SSE and dashboard (HOST:PORT, [V6]:PORT; port 0 picks one)"},
    {"http.threads", NULL, FH_CFG_INT, "2", 1, 64, "HTTP worker threads"},
    {"http.max_connections", NULL, FH_CFG_INT, "24576", 1, 1000000,
     "open connections on the HTTP port at most, stream ones included (keep it above "
     "stream.max_connections); past it new connections wait in the listen queue; lowered at "
     "start-up to what RLIMIT_NOFILE allows"},
    {"http.max_body_bytes", NULL, FH_CFG_INT, "65536", 1024, 16777216,
     "largest request body; larger ones get 413"},
    {"http.max_response_bytes", NULL, FH_CFG_INT, "16777216", 65536, 1073741824,
     "largest response a handler may build"},
    {"http.cors_origin", NULL, FH_CFG_STR, "*", 0, 0,
     "Access-Control-Allow-Origin for browsers; empty disables CORS headers"},
    {"http.tls_cert", NULL, FH_CFG_STR, "", 0, 0,
     "PEM certificate (chain) file: serve REST, stream, SSE and dashboard over TLS (https, wss)"},
    {"http.tls_key", NULL, FH_CFG_STR, "", 0, 0, "PEM private key file of http.tls_cert"},
    {"auth.admin_token", NULL, FH_CFG_STR, "", 0, 0,
     "bearer token with the admin scope (webhook management); empty: none"},
    {"auth.tokens_file", NULL, FH_CFG_STR, "", 0, 0,
     "JSON file of tokens with scopes and filter constraints (docs/security.md)"},
    {"auth.anonymous_read", NULL, FH_CFG_BOOL, "false", 0, 0,
     "let requests without a token read (REST, stream, SSE)"},
    FH_VIEW_CFG, /* view.* keys */
    FH_CIMETRICS_CFG,
    FH_DERIVE_CFG, /* derive.* keys (the view's derived events) */
    FH_STREAM_CFG,
    FH_STATUSPUSH_CFG,
    FH_INGEST_CI_CFG, /* ingest.github.*, ingest.gitlab.*, ingest.ci.* */

    FH_WEBHOOK_CFG,
};

static const char *const consumer_defaults[] = {
    "enable.auto.commit=true",
    "enable.auto.offset.store=false",
    "auto.offset.reset=earliest",
    "log_level=4",
    /* it only judges records, but after an outage it reads the backlog flat out: the prefetch
     * bounds how fast (bench/ingest_drain.sh, 300,000 status events: 12,100 events/s with 4 MiB
     * and 2 MiB fetches, 36,800 with librdkafka's 64 MiB and 50 MiB, at a quarter less CPU). A
     * consumer that keeps up holds next to nothing of it. */
    "queued.max.messages.kbytes=65536",
    "queued.min.messages=5000",
    "fetch.max.bytes=52428800",
    /* nothing waits on it: fetch in batches of 64 KiB or 20 ms, not a fetch per record */
    "fetch.min.bytes=65536",
    "fetch.wait.max.ms=20",
    NULL,
};

static volatile sig_atomic_t run = 1;
/* The main thread's loop once it runs; the signal handler stops it (fh_loop_stop is an atomic
 * store and a write(2) to an eventfd: both async-signal-safe). */
static fh_loop *volatile main_loop;

static void on_signal(int sig)
{
    (void)sig;
    run = 0;
    if (main_loop)
        fh_loop_stop(main_loop);
}

typedef struct ingest {
    fh_broker *b;
    fh_consumer *kc; /* the ingest consumer (group policy); consumer is its handle */
    rd_kafka_t *consumer;
    fh_dlq *dlq; /* the records the contract refuses; its producer also creates the topics */
    long long logged_total, logged_dlq;
    size_t max_bytes;
    fh_json_doc doc;     /* each record is validated in it, in place */
    fh_lost_table next;  /* per partition, the next offset the group still needs */
    fh_loop *loop;       /* the main thread's (ingest_loop_open) */
    broker_memory *mem;  /* its free heap is trimmed on this loop */
    fh_consumer_watch w; /* the consumer queue's eventfd on it */
} ingest;

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ingest *in = opaque;
    fh_kafka_rebalance_cb(rk, err, parts, opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* records below the committed offsets that Kafka deleted meanwhile are lost to us */
        fh_lost_table_assigned(&in->next, rk, parts, 5000);
        atomic_store(&in->b->ready, 1);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        fh_lost_table_revoked(&in->next, parts);
    }
}

/* Runs on the main thread (inside rd_kafka_consumer_poll). Kafka being away is not fatal: the
 * broker stays up, /readyz says why it is not ready, and the main loop probes for its return. */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    fh_broker *b = ((ingest *)opaque)->b;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !atomic_exchange(&b->kafka_down, 1))
        fh_log(FH_LOG_WARN, "kafka.down", "reason=\"%s\"", reason);
    else if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        fh_log(FH_LOG_WARN, "kafka.error", "error=\"%s\" reason=\"%s\"",
               rd_kafka_err2str((rd_kafka_resp_err_t)err), reason);
}

/* While Kafka is down, asks for metadata every probe (bounded wait): an answer means it is back. */
static void probe_kafka(fh_broker *b, rd_kafka_t *consumer)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(consumer, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        if (atomic_exchange(&b->kafka_down, 0))
            fh_log(FH_LOG_INFO, "kafka.up", "bootstrap=%s", b->bootstrap);
    }
}

static long long total_in(fh_broker *b)
{
    long long t = 0;
    for (int i = 0; i < FH_EV__COUNT; i++)
        t += fh_metric_get(b->events_in[i]);
    return t;
}

static void log_counts(ingest *in, const char *event)
{
    fh_broker *b = in->b;
    char line[2048];
    size_t o = 0;
    for (int t = 0; t < FH_EV__COUNT; t++) {
        long long n = fh_metric_get(b->events_in[t]);
        if (!n)
            continue;
        int k = snprintf(line + o, sizeof(line) - o, " %s=%lld", fh_event_type_name(t), n);
        if (k < 0 || (size_t)k >= sizeof(line) - o)
            break;
        o += (size_t)k;
    }
    line[o] = '\0';
    in->logged_total = total_in(b);
    in->logged_dlq = fh_metric_get(b->dlq_total);
    fh_log(FH_LOG_INFO, event, "total=%lld dlq=%lld%s", in->logged_total, in->logged_dlq, line);
}

static void handle_message(ingest *in, rd_kafka_message_t *m)
{
    char err[384], q[420];
    fh_event_view ev;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fh_log(FH_LOG_WARN, "kafka.consume", "error=%s",
                   fh_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
        return;
    }
    int64_t from, to;
    if (fh_lost_table_check(&in->next, in->consumer, m, &from, &to))
        health_records_lost("ingest", rd_kafka_topic_name(m->rkt), m->partition, from, to);
    if (fh_event_check(in->b->contract, &in->doc, m->payload, m->len, in->max_bytes, &ev, err,
                       sizeof(err))) {
        fh_log(FH_LOG_WARN, "event.invalid", "topic=%s partition=%d offset=%lld reason=%s",
               rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), err));
        /* waits until the record is durable there, so its offset is stored only once it is
         * safe (invalid records are rare; the wait is cheap) */
        if (fh_dlq_send(in->dlq, m, err))
            return; /* not stored: the record is consumed again after a restart */
    } else {
        fh_metric_add(in->b->events_in[ev.type], 1);
    }
    rd_kafka_offset_store(m->rkt, m->partition, m->offset);
}

/* ---- the main thread's loop -------------------------------------------------------------------
 *
 * The ingest consumer's queue wakes the loop through its eventfd (fh_consumer_watch); after each
 * pass the records it holds are judged, at most INGEST_PASS_MAX a pass so the timers keep their
 * turn (the rest are taken on the next pass, without sleeping). Timers: the Kafka probe (while
 * Kafka is down) and the per-type counts log. Every pass polls the consumer, so an idle group
 * member still polls well within max.poll.interval.ms. SIGINT and SIGTERM stop the loop through
 * its wake-up. */

#define INGEST_PASS_MAX 1000
#define PROBE_MS 2000

static void ingest_consume(ingest *in)
{
    for (int n = 0; n < INGEST_PASS_MAX && run; n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(in->consumer, 0);
        if (!m)
            return;
        handle_message(in, m);
        rd_kafka_message_destroy(m);
    }
}

static void ingest_before_sleep(fh_loop *l, void *arg)
{
    ingest *in = arg;
    if (rd_kafka_queue_length(in->kc->q) > 0)
        fh_loop_no_sleep(l);
}

static void ingest_after_pass(fh_loop *l, void *arg)
{
    ingest_consume(arg);
    if (!run)
        fh_loop_stop(l);
}

static int64_t probe_timer(fh_loop *l, void *arg)
{
    ingest *in = arg;
    (void)l;
    if (atomic_load(&in->b->kafka_down))
        probe_kafka(in->b, in->consumer);
    return PROBE_MS;
}

#define TRIM_MS 5000

static int64_t trim_timer(fh_loop *l, void *arg)
{
    ingest *in = arg;
    (void)l;
    memory_trim(in->mem, fh_config_int(&in->b->cfg, "broker.malloc_trim_bytes"));
    return TRIM_MS;
}

static int64_t stats_timer(fh_loop *l, void *arg)
{
    ingest *in = arg;
    (void)l;
    if (total_in(in->b) != in->logged_total || fh_metric_get(in->b->dlq_total) != in->logged_dlq)
        log_counts(in, "broker.counts");
    return fh_config_int(&in->b->cfg, "broker.stats_interval_ms");
}

/* Makes the main thread's loop and watches the consumer queue on it: at start-up, so the
 * descriptors count when the connection limits are fitted. */
static fh_err ingest_loop_open(ingest *in, char *errbuf, size_t errsize)
{
    fh_err e = fh_loop_new(&in->loop, 8, 4, errbuf, errsize);
    if (e == FH_OK)
        e = fh_consumer_watch_start(&in->w, in->loop, in->kc->q, NULL, NULL, errbuf, errsize);
    if (e == FH_OK) {
        fh_loop_before_sleep(in->loop, ingest_before_sleep, in);
        fh_loop_after_pass(in->loop, ingest_after_pass, in);
        fh_loop_timer(in->loop, PROBE_MS, probe_timer, in);
        fh_loop_timer(in->loop, TRIM_MS, trim_timer, in);
        fh_loop_timer(in->loop, fh_config_int(&in->b->cfg, "broker.stats_interval_ms"), stats_timer,
                      in);
    }
    return e;
}

/* Runs the ingest consumer on the main thread's loop until SIGINT or SIGTERM. */
static void ingest_run(ingest *in)
{
    main_loop = in->loop;
    if (!run)
        fh_loop_stop(in->loop); /* a signal came before the loop was there to stop */
    fh_loop_run(in->loop, -1);
    main_loop = NULL;
}

static int start_kafka(fh_broker *b)
{
    char err[512];
    const char *brokers = fh_config_str(&b->cfg, "kafka.brokers");
    int partitions = (int)fh_config_int(&b->cfg, "topics.partitions");

    if (strcmp(brokers, "embedded") == 0) {
        long long max = fh_config_int(&b->cfg, "events.max_bytes");
        if (max > FH_KAFKA_EMBEDDED_MAX_RECORD) {
            fh_log(FH_LOG_ERROR, "kafka.embedded",
                   "error=\"events.max_bytes=%lld is more than the embedded Kafka can hold: it "
                   "keeps %d bytes per partition and drops the oldest records past that, read or "
                   "not, so records over %d bytes are refused; set events.max_bytes to at most "
                   "%d, or kafka.brokers for a real cluster\"",
                   max, FH_KAFKA_EMBEDDED_PARTITION_BYTES, FH_KAFKA_EMBEDDED_MAX_RECORD,
                   FH_KAFKA_EMBEDDED_MAX_RECORD);
            return -1;
        }
        if (fh_kafka_embedded_start(&b->cfg, partitions, &b->embedded, err, sizeof(err))) {
            fh_log(FH_LOG_ERROR, "kafka.embedded", "error=\"%s\"", err);
            return -1;
        }
        snprintf(b->bootstrap, sizeof(b->bootstrap), "%s",
                 fh_kafka_embedded_bootstrap(b->embedded));
        fh_log(FH_LOG_WARN, "kafka.embedded",
               "bootstrap=%s partitions=%d partition_bytes=%d note=\"embedded Kafka (librdkafka "
               "mock cluster) keeps everything in memory, at most partition_bytes per partition "
               "(older records are dropped, read or not: records.lost); every event is lost when "
               "the broker stops; set kafka.brokers for a real cluster\"",
               b->bootstrap, partitions, FH_KAFKA_EMBEDDED_PARTITION_BYTES);
    } else {
        snprintf(b->bootstrap, sizeof(b->bootstrap), "%s", brokers);
    }
    return 0;
}

/* How long start-up waits for the cluster id when Kafka does not answer. */
#define CLUSTER_ID_TIMEOUT_MS 10000

/* Learns the id of the cluster behind rk into b->cluster_id, before the view and webhooks open
 * their files. No id (a cluster that reports none, or no answer in time): the files are neither
 * recorded nor checked. */
static void learn_cluster_id(fh_broker *b, rd_kafka_t *rk)
{
    int rc = fh_kafka_cluster_id(rk, CLUSTER_ID_TIMEOUT_MS, b->cluster_id, sizeof(b->cluster_id));
    if (rc == FH_KAFKA_CLUSTER_ID_KNOWN)
        fh_log(FH_LOG_INFO, "kafka.cluster", "id=%s", b->cluster_id);
    else if (rc == FH_KAFKA_CLUSTER_ID_NONE)
        fh_log(FH_LOG_DEBUG, "kafka.cluster",
               "id=none note=\"the cluster reports no id: view.path and webhooks.path are not "
               "checked against it\"");
    else
        fh_log(FH_LOG_WARN, "kafka.cluster",
               "id=unknown timeout_ms=%d note=\"Kafka did not answer: view.path and webhooks.path "
               "are not checked against the cluster this run\"",
               CLUSTER_ID_TIMEOUT_MS);
}

static int ingest_start(ingest *in)
{
    char err[512];
    fh_broker *b = in->b;
    in->max_bytes = (size_t)fh_config_int(&b->cfg, "events.max_bytes");
    fh_json_doc_init(&in->doc, FH_EVENT_DOC_CAP(in->max_bytes));

    rd_kafka_t *producer;
    if (!(in->dlq = fh_dlq_new(b, NULL))) {
        snprintf(err, sizeof(err), "out of memory");
        goto conf_err;
    }
    if (fh_dlq_producer(in->dlq, &producer, err, sizeof(err)))
        goto conf_err;
    if (!b->embedded && fh_config_bool(&b->cfg, "topics.create") &&
        fh_kafka_create_topics(producer, &b->cfg, (int)fh_config_int(&b->cfg, "topics.partitions"),
                               (int)fh_config_int(&b->cfg, "topics.replication"), 15000, err,
                               sizeof(err)))
        fh_log(FH_LOG_WARN, "kafka.topics", "error=\"%s\"", err);

    const char *topics[2] = {fh_kafka_topic(&b->cfg, FH_TOPIC_EVENTS),
                             fh_kafka_topic(&b->cfg, FH_TOPIC_LOGS)};
    fh_consumer_opts o = {.policy = FH_CONSUMER_GROUP,
                          .bootstrap = b->bootstrap,
                          .defaults = consumer_defaults,
                          .group = fh_config_str(&b->cfg, "kafka.group"),
                          .rebalance = on_rebalance,
                          .error = on_kafka_error,
                          .opaque = in,
                          .check_ms = (int)fh_config_int(&b->cfg, "kafka.partition_check_ms"),
                          .wake_fd = -1,
                          .errors_with_records = 1};
    if (fh_consumer_new(&b->cfg, &o, &in->kc, err, sizeof(err)))
        goto conf_err;
    in->consumer = in->kc->rk;
    if (fh_consumer_subscribe(in->kc, topics, 2, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "kafka.subscribe", "error=\"%s\"", err);
        return -1;
    }
    if (ingest_loop_open(in, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "broker.loop", "error=\"%s\"", err);
        return -1;
    }
    return 0;
conf_err:
    fh_log(FH_LOG_ERROR, "kafka.config", "error=\"%s\"", err);
    return -1;
}

static void ingest_stop(ingest *in)
{
    fh_consumer_watch_stop(&in->w, in->loop);
    fh_loop_free(in->loop);
    in->loop = NULL;
    fh_consumer_free(in->kc); /* closes before it destroys */
    in->kc = NULL;
    in->consumer = NULL;
    fh_dlq_free(in->dlq); /* flushes first */
    in->dlq = NULL;
    fh_json_doc_free(&in->doc);
    fh_lost_table_free(&in->next);
}

static void register_metrics(fh_broker *b)
{
    static char labels[FH_EV__COUNT][48];
    for (int t = 0; t < FH_EV__COUNT; t++) {
        snprintf(labels[t], sizeof(labels[t]), "type=\"%s\"", fh_event_type_name(t));
        b->events_in[t] = fh_metric_new("firehose_events_in_total", labels[t],
                                        "Valid events consumed, by type.", 0);
    }
    b->dlq_total = fh_metric_new("firehose_dlq_total", NULL,
                                 "Malformed records sent to the dead-letter topic.", 0);
    b->dlq_failed = fh_metric_new("firehose_dlq_failed_total", NULL,
                                  "Malformed records that could not be dead-lettered.", 0);
}

/* Fits http.max_connections and stream.max_connections into the descriptors RLIMIT_NOFILE leaves
 * (lib/fh_fdlimit.h), once every module but the HTTP server holds what it opens at start-up.
 * nofile: the soft limit before and after main raised it, and the hard limit. */
static void fit_connection_limits(fh_broker *b, fh_stream *stream, const long long nofile[3])
{
    char err[256], v[32];
    long long open = fh_fdlimit_open();
    long long http = fh_config_int(&b->cfg, "http.max_connections"),
              strm = fh_config_int(&b->cfg, "stream.max_connections"), http_was = http,
              strm_was = strm;
    /* under TLS libmicrohttpd relays each upgraded connection through a socket pair */
    int per_stream = *fh_config_str(&b->cfg, "http.tls_cert") ? 3 : 1;
    if (open < 0)
        open = 2 * FH_FDLIMIT_RESERVE; /* no /proc: about what a broker holds at start-up */
    int lowered = fh_fdlimit_fit(nofile[1], open, per_stream, &http, &strm);
    if (lowered) {
        snprintf(v, sizeof(v), "%lld", http);
        fh_config_set(&b->cfg, "http.max_connections", v, err, sizeof(err));
        snprintf(v, sizeof(v), "%lld", strm);
        fh_config_set(&b->cfg, "stream.max_connections", v, err, sizeof(err));
        fh_stream_set_max_connections(stream, (int)strm);
    }
    if (lowered || nofile[0] != nofile[1])
        fh_log(lowered ? FH_LOG_WARN : FH_LOG_INFO, "limits.adjusted",
               "nofile=%lld nofile_was=%lld nofile_hard=%lld open=%lld reserve=%d "
               "http.max_connections=%lld http.max_connections_was=%lld "
               "stream.max_connections=%lld stream.max_connections_was=%lld%s",
               nofile[1], nofile[0], nofile[2], open, FH_FDLIMIT_RESERVE, http, http_was, strm,
               strm_was,
               lowered ? " note=\"the configured connection limits need more file descriptors "
                         "than RLIMIT_NOFILE allows: raise it (LimitNOFILE, ulimit -n)\""
                       : "");
}

static fh_http *start_http(fh_broker *b, fh_http_route *routes, size_t nroutes,
                           const fh_http_body_cap *caps, size_t ncaps)
{
    char err[512];
    fh_http *h = NULL;
    long long http_max = fh_config_int(&b->cfg, "http.max_connections"),
              stream_max = fh_config_int(&b->cfg, "stream.max_connections");
    /* WebSocket and SSE connections hold HTTP connections: at http.max_connections the port stops
     * accepting (REST and health checks included) before a stream client is refused with 4029. */
    if (http_max <= stream_max)
        fh_log(FH_LOG_WARN, "http.limits",
               "http.max_connections=%lld is not above stream.max_connections=%lld: past %lld "
               "connections the port stops accepting, REST and health checks included",
               http_max, stream_max, http_max);
    fh_http_config hc = {
        .listen = fh_config_str(&b->cfg, "http.listen"),
        .threads = (int)fh_config_int(&b->cfg, "http.threads"),
        .max_connections = (int)fh_config_int(&b->cfg, "http.max_connections"),
        .max_body_bytes = (size_t)fh_config_int(&b->cfg, "http.max_body_bytes"),
        .max_response_bytes = (size_t)fh_config_int(&b->cfg, "http.max_response_bytes"),
        .cors_origin = fh_config_str(&b->cfg, "http.cors_origin"),
        .tls_cert = fh_config_str(&b->cfg, "http.tls_cert"),
        .tls_key = fh_config_str(&b->cfg, "http.tls_key"),
        .body_caps = caps,
        .nbody_caps = ncaps,
    };
    if (fh_http_start(&hc, routes, nroutes, &b->auth, &h, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "http.start", "error=\"%s\"", err);
        return NULL;
    }
    const char *listen = hc.listen;
    char host[128];
    const char *colon = strrchr(listen, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    fh_log(FH_LOG_INFO, "http.listening", "url=%s://%s:%u/ anonymous_read=%s",
           *hc.tls_cert ? "https" : "http", *host ? host : "0.0.0.0", fh_http_port(h),
           fh_config_bool(&b->cfg, "auth.anonymous_read") ? "true" : "false");
    return h;
}

/* Logs a module's failed start (event, error=err). Returns 1 when e is an error, else 0. */
static int start_failed(fh_err e, const char *event, const char *err)
{
    if (e == FH_OK)
        return 0;
    fh_log(FH_LOG_ERROR, event, "error=\"%s\"", err);
    return 1;
}

int main(int argc, char **argv)
{
    static fh_broker b;
    static ingest in;
    static fh_http_route routes[MAX_ROUTES];
    static broker_memory mem;
    fh_http *http = NULL;
    fh_stream *stream = NULL;
    fh_webhooks *webhooks = NULL;
    fh_webhooks_config webhooks_cfg;
    fh_view *view = NULL;
    fh_statuspush *statuspush = NULL;
    fh_ingest_ci *ingest_ci = NULL;
    fh_view_config view_cfg;
    health_ctx health = {&b, NULL, &mem};
    char err[512];
    int help, status = 0;
    size_t nroutes = 0, ncaps = 0;
    const fh_http_body_cap *caps = NULL;
    long long nofile[3]; /* RLIMIT_NOFILE: soft before and after raising it, hard */

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    b.run = &run;
    fh_consumer_watch_init(&in.w); /* ingest_stop runs on every path out */
    if (fh_config_init(&b.cfg, "firehose-broker", "[OPTIONS]",
                       "Consumes the firehose topics and serves them over HTTP. With no Kafka "
                       "configured it runs an embedded in-memory Kafka.",
                       broker_opts, sizeof(broker_opts) / sizeof(broker_opts[0])) ||
        fh_config_load(&b.cfg, argc, argv, &help, err, sizeof(err))) {
        fprintf(stderr, "firehose-broker: %s\n", err);
        return 64;
    }
    if (help) {
        help == 2 ? fh_config_markdown(&b.cfg, stdout) : fh_config_help(&b.cfg, stdout);
        fh_config_free(&b.cfg);
        return 0;
    }
    if (b.cfg.nargs) {
        fprintf(stderr, "firehose-broker: unexpected argument '%s' (see --help)\n", b.cfg.args[0]);
        fh_config_free(&b.cfg);
        return 64;
    }
    /* before any thread starts */
    memory_tune_malloc(fh_config_int(&b.cfg, "broker.malloc_arenas"),
                       fh_config_int(&b.cfg, "broker.malloc_mmap_threshold"));
    int level = fh_log_level_parse(fh_config_str(&b.cfg, "log.level"));
    fh_log_init("firehose-broker", level < 0 ? FH_LOG_INFO : (enum fh_log_level)level);
    /* before anything opens: every connection needs a descriptor */
    if (fh_fdlimit_raise(&nofile[0], &nofile[1], &nofile[2]))
        nofile[0] = nofile[1] = nofile[2] = 1024;
    if (fh_auth_init(&b.auth, fh_config_str(&b.cfg, "auth.admin_token"),
                     fh_config_str(&b.cfg, "auth.tokens_file"),
                     fh_config_bool(&b.cfg, "auth.anonymous_read"), err, sizeof(err))) {
        fprintf(stderr, "firehose-broker: %s\n", err);
        status = 64;
        goto out;
    }
    if (fh_contract_load(&b.contract, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "contract.load", "error=\"%s\"", err);
        status = 1;
        goto out;
    }
    register_metrics(&b);
    memory_register(&mem);
    in.b = &b;
    in.mem = &mem;
    if (start_kafka(&b) || ingest_start(&in)) {
        status = 1;
        goto out;
    }
    learn_cluster_id(&b, in.consumer);
    fh_view_config_read(&b.cfg, &view_cfg);
    fh_webhooks_config_read(&b.cfg, &webhooks_cfg);
    /* each module's threads and producers, in this order; the first that fails stops start-up */
    if (start_failed(fh_view_start(&b, &view_cfg, &view, err, sizeof(err)), "view.start", err) ||
        start_failed(fh_webhooks_start(&b, &webhooks_cfg, &webhooks, err, sizeof(err)),
                     "webhook.start", err) ||
        start_failed(fh_stream_start(&b, &stream, err, sizeof(err)), "stream.start", err) ||
        start_failed(statuspush_start(&b, &statuspush, err, sizeof(err)), "statuspush.start",
                     err) ||
        start_failed(ingest_ci_start(&b, &ingest_ci, err, sizeof(err)), /* GitHub, GitLab */
                     "ingest_ci.start", err)) {
        status = 1;
        goto out;
    }
    health.view = view;
    mem.stream = stream;
    mem.view = view;
    nroutes += statuspush_routes(statuspush, routes + nroutes);
    nroutes += ingest_ci_routes(ingest_ci, routes + nroutes);
    ncaps = ingest_ci_body_caps(ingest_ci, &caps);
    nroutes += health_routes(&health, routes + nroutes);
    nroutes += rest_routes(view, routes + nroutes); /* /api/v1 read endpoints */
    nroutes += fh_stream_routes(stream, routes + nroutes);
    nroutes += dashboard_routes(routes + nroutes);
    nroutes += fh_webhooks_routes(webhooks, routes + nroutes);
    fit_connection_limits(&b, stream, nofile);
    if (!(http = start_http(&b, routes, nroutes, caps, ncaps))) {
        status = 1;
        goto out;
    }
    mem.http = http; /* trims follow its connections (the trim timer runs in ingest_run) */
    fh_log(FH_LOG_INFO, "broker.ready", "bootstrap=%s events=%s logs=%s dlq=%s group=%s",
           b.bootstrap, fh_kafka_topic(&b.cfg, FH_TOPIC_EVENTS),
           fh_kafka_topic(&b.cfg, FH_TOPIC_LOGS), fh_kafka_topic(&b.cfg, FH_TOPIC_DLQ),
           fh_config_str(&b.cfg, "kafka.group"));

    ingest_run(&in);
    log_counts(&in, "broker.stopping");
out:
    fh_stream_stop(stream); /* closes upgraded sockets before the HTTP server stops */
    fh_view_stop(view);     /* drains REST requests, commits and closes the view */
    fh_http_stop(http);
    statuspush_free(statuspush); /* after the HTTP server: no handler is producing any more */
    ingest_ci_free(ingest_ci);   /* after the HTTP server, as statuspush */

    fh_webhooks_stop(webhooks); /* finishes transfers in flight, commits, closes */
    fh_webhooks_free(webhooks);
    fh_view_free(view); /* after the HTTP server: its REST and /readyz handlers use it */
    fh_stream_free(stream);
    ingest_stop(&in);
    fh_kafka_embedded_stop(b.embedded);
    fh_contract_free(b.contract);
    fh_auth_free(&b.auth);
    fh_config_free(&b.cfg);
    return status;
}
