/* firehose-emit: NDJSON events in, validated, onto the right Kafka topic with the right key.
 * Batched, compressed, idempotent; waits for every delivery report before it exits. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fh_config.h"
#include "fh_event.h"
#include "fh_kafka.h"
#include "fh_lines.h"
#include "fh_log.h"
#include "fh_util.h"

#define EXIT_DELIVERY 1
#define EXIT_REJECTED 2
#define EXIT_USAGE 64
#define MAX_MASTERS 1024

static const fh_cfg_opt emit_opts[] = {
    FH_CFG_COMMON,
    {"emit.dry_run", "dry-run", FH_CFG_BOOL, "false", 0, 0,
     "validate only; do not connect to Kafka"},
    {"emit.skip_invalid", "skip-invalid", FH_CFG_BOOL, "false", 0, 0,
     "report invalid lines and send the valid rest (exit status is still 2)"},
    {"emit.fill_id", "fill-id", FH_CFG_BOOL, "false", 0, 0,
     "give events without an id a random one"},
    {"emit.fill_time", "fill-time", FH_CFG_BOOL, "false", 0, 0,
     "give events without a time the current time"},
    {"emit.fill_seq", "fill-seq", FH_CFG_BOOL, "false", 0, 0,
     "give events without a seq the next number for their master, from 1"},
    {"emit.dlq", "dlq", FH_CFG_BOOL, "false", 0, 0,
     "also send rejected lines to the dead-letter topic, with the reason"},
    {"emit.flush_timeout_ms", NULL, FH_CFG_INT, "120000", 100, 86400000,
     "how long to wait for outstanding delivery reports at the end"},
    {"emit.quiet", "q", FH_CFG_BOOL, "false", 0, 0, "print no summary"},
};

/* Producer defaults; --kafka.* overrides them. */
static const char *const producer_defaults[] = {
    "enable.idempotence=true",
    "acks=all",
    "compression.type=lz4",
    "linger.ms=10",
    "batch.size=1000000",
    "queue.buffering.max.kbytes=262144",
    "log_level=4",
    NULL,
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct emit_stats {
    long long valid, rejected, delivered, failed;
    long long bytes;
    char first_failure[256];
} emit_stats;

typedef struct master_seq {
    char *name;
    long long next;
} master_seq;

typedef struct emitter {
    fh_config cfg;
    fh_contract *contract;
    fh_json_doc doc; /* reused for every record checked without jansson */
    rd_kafka_t *rk;
    rd_kafka_topic_t *topics[4];
    emit_stats st;
    master_seq masters[MAX_MASTERS];
    size_t nmasters;
    int fill_id, fill_time, fill_seq, dry_run, skip_invalid, dlq;
    int embedded; /* the cluster is a broker's embedded one: max_bytes is capped for it */
    size_t max_bytes;
} emitter;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    emitter *e = opaque;
    (void)rk;
    if (m->_private) /* dead-letter copies carry a marker and are not counted as sent */
        return;
    if (m->err) {
        if (!e->st.failed)
            snprintf(e->st.first_failure, sizeof(e->st.first_failure), "%s",
                     rd_kafka_err2str(m->err));
        e->st.failed++;
    } else {
        e->st.delivered++;
    }
}

static long long *seq_for(emitter *e, const char *master)
{
    for (size_t i = 0; i < e->nmasters; i++)
        if (strcmp(e->masters[i].name, master) == 0)
            return &e->masters[i].next;
    if (e->nmasters == MAX_MASTERS)
        return NULL;
    e->masters[e->nmasters].name = strdup(master);
    if (!e->masters[e->nmasters].name)
        return NULL;
    e->masters[e->nmasters].next = 1;
    return &e->masters[e->nmasters++].next;
}

/* Fills missing envelope members as asked. Returns 1 when root changed. */
static int fill_missing(emitter *e, json_t *root)
{
    int changed = 0;
    if (e->fill_id && !json_object_get(root, "id")) {
        char id[37];
        fh_uuid4(id);
        json_object_set_new(root, "id", json_string(id));
        changed = 1;
    }
    if (e->fill_time && !json_object_get(root, "time")) {
        char ts[32];
        fh_time_rfc3339(fh_now_ms(), ts, sizeof(ts));
        json_object_set_new(root, "time", json_string(ts));
        changed = 1;
    }
    if (e->fill_seq && !json_object_get(root, "seq")) {
        const char *m = json_string_value(json_object_get(root, "master"));
        long long *next = m ? seq_for(e, m) : NULL;
        if (next) {
            json_object_set_new(root, "seq", json_integer((*next)++));
            changed = 1;
        }
    }
    return changed;
}

static void produce(emitter *e, rd_kafka_topic_t *rkt, const char *key, size_t keylen,
                    const char *payload, size_t len, const char *reason)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    rd_kafka_header_add(hdrs, "content-type", -1, "application/cloudevents+json", -1);
    if (reason)
        rd_kafka_header_add(hdrs, "firehose-error", -1, reason, -1);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            e->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(reason ? (void *)1 : NULL), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return; /* librdkafka owns hdrs now */
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(e->rk, 50); /* backpressure: wait for delivery reports */
            continue;
        }
        if (!e->st.failed)
            snprintf(e->st.first_failure, sizeof(e->st.first_failure), "%s", rd_kafka_err2str(err));
        if (!reason)
            e->st.failed++;
        rd_kafka_headers_destroy(hdrs);
        return;
    }
}

static void reject(emitter *e, const char *where, long lineno, const char *line, size_t len,
                   const char *why)
{
    char reason[512];
    e->st.rejected++;
    snprintf(reason, sizeof(reason), "line %ld: %s", lineno, why);
    fprintf(stderr, "%s%s%s\n", where ? where : "", where ? ": " : "", reason);
    if (e->dlq && !e->dry_run)
        produce(e, e->topics[FH_TOPIC_DLQ], NULL, 0, line, len, reason);
}

/* Returns 0 to go on, 1 to stop reading (an invalid line without --skip-invalid). */
static int handle_line(emitter *e, const char *where, long lineno, const char *line, size_t len)
{
    char err[384], key[128];
    fh_event ev;
    fh_event_view view;
    char *encoded = NULL;
    const char *payload = line;
    size_t plen = len, klen = 0;
    fh_topic_kind topic = FH_TOPIC_EVENTS;
    fh_err rc;

    if (len > e->max_bytes) {
        if (e->embedded)
            snprintf(err, sizeof(err),
                     "record is over the %zu-byte limit of the embedded Kafka (it keeps %d bytes "
                     "per partition and drops the oldest records past that, read or not)",
                     e->max_bytes, FH_KAFKA_EMBEDDED_PARTITION_BYTES);
        else
            snprintf(err, sizeof(err), "record is over the %zu-byte limit (events.max_bytes)",
                     e->max_bytes);
        reject(e, where, lineno, line, e->max_bytes, err);
        return !e->skip_invalid;
    }
    if (e->fill_id || e->fill_time || e->fill_seq) {
        /* Filling rewrites the record, so it goes through jansson. */
        json_error_t jerr;
        json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
            snprintf(err, sizeof(err), "not JSON: %s (column %d)", jerr.text, jerr.column);
            rc = FH_ERR_PARSE;
        } else {
            if (json_is_object(root) && fill_missing(e, root)) {
                encoded = json_dumps(root, JSON_COMPACT);
                payload = encoded;
                plen = encoded ? strlen(encoded) : 0;
            }
            rc = fh_event_from_json(e->contract, root, &ev, err, sizeof(err));
            json_decref(root);
        }
        if (!rc) {
            topic = fh_event_topic(&ev);
            klen = fh_event_key(&ev, key, sizeof(key));
            fh_event_clear(&ev);
        }
    } else {
        /* The hot path: parse and validate in place, no jansson tree. */
        rc = fh_event_check(e->contract, &e->doc, line, len, e->max_bytes, &view, err, sizeof(err));
        if (!rc) {
            topic = fh_event_view_topic(&view);
            klen = fh_event_view_key(&view, key, sizeof(key));
        }
    }
    if (rc) {
        reject(e, where, lineno, line, len, err);
        free(encoded);
        return !e->skip_invalid;
    }
    e->st.valid++;
    e->st.bytes += (long long)plen;
    if (!e->dry_run) {
        produce(e, e->topics[topic], key, klen, payload, plen, NULL);
        rd_kafka_poll(e->rk, 0);
    }
    free(encoded);
    return 0;
}

/* Returns 0 after the whole input, 1 when stopped early, -1 on a read error. */
static int emit_fd(emitter *e, int fd, const char *where)
{
    fh_lines r;
    const char *line;
    size_t len;
    int got, rc = 0;
    if (fh_lines_open(&r, fd, e->max_bytes)) {
        fprintf(stderr, "firehose-emit: out of memory\n");
        return -1;
    }
    while (!stop_requested && (got = fh_lines_next(&r, &line, &len)) == 1) {
        if (len == 0)
            continue;
        if (handle_line(e, where, r.lineno, line, len)) {
            rc = 1;
            break;
        }
    }
    if (got < 0) {
        fprintf(stderr, "firehose-emit: %s: %s\n", where ? where : "stdin", strerror(errno));
        rc = -1;
    }
    fh_lines_close(&r);
    return rc;
}

static int start_kafka(emitter *e)
{
    char err[512];
    rd_kafka_conf_t *conf;
    const char *brokers = fh_config_str(&e->cfg, "kafka.brokers");
    if (strcmp(brokers, "embedded") == 0) {
        fprintf(stderr, "firehose-emit: kafka.brokers is \"embedded\": give --brokers HOST:PORT "
                        "(the broker logs bootstrap=HOST:PORT), or use --dry-run\n");
        return EXIT_USAGE;
    }
    if (fh_kafka_conf(&e->cfg, brokers, producer_defaults, &conf, err, sizeof(err))) {
        fprintf(stderr, "firehose-emit: %s\n", err);
        return EXIT_USAGE;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, e);
    e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!e->rk) {
        fprintf(stderr, "firehose-emit: %s\n", err);
        return EXIT_DELIVERY;
    }
    for (int k = 0; k < 4; k++)
        e->topics[k] = rd_kafka_topic_new(e->rk, fh_kafka_topic(&e->cfg, (fh_topic_kind)k), NULL);
    /* A broker's embedded Kafka drops old records to make room: a record it cannot hold would
     * push out others before the broker reads them, so it is refused here, with the reason. */
    if (fh_kafka_is_embedded(e->rk, 2000) && e->max_bytes > FH_KAFKA_EMBEDDED_MAX_RECORD) {
        e->embedded = 1;
        e->max_bytes = FH_KAFKA_EMBEDDED_MAX_RECORD;
    }
    return 0;
}

static void finish_kafka(emitter *e)
{
    int timeout = (int)fh_config_int(&e->cfg, "emit.flush_timeout_ms");
    if (rd_kafka_flush(e->rk, timeout) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        long long left = rd_kafka_outq_len(e->rk);
        if (!e->st.failed)
            snprintf(e->st.first_failure, sizeof(e->st.first_failure),
                     "%lld records still undelivered after %d ms", left, timeout);
        e->st.failed += left;
    }
    for (int k = 0; k < 4; k++)
        if (e->topics[k])
            rd_kafka_topic_destroy(e->topics[k]);
    rd_kafka_destroy(e->rk);
}

int main(int argc, char **argv)
{
    static emitter e;
    char err[512];
    int help, status = 0;
    uint64_t t0;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (fh_config_init(&e.cfg, "firehose-emit", "[OPTIONS] [FILE...]",
                       "Reads NDJSON events (stdin when no FILE, or FILE is -), validates them "
                       "against the v1 contract and produces them to Kafka.",
                       emit_opts, sizeof(emit_opts) / sizeof(emit_opts[0])) ||
        fh_config_load(&e.cfg, argc, argv, &help, err, sizeof(err))) {
        fprintf(stderr, "firehose-emit: %s\n", err);
        return EXIT_USAGE;
    }
    if (help) {
        help == 2 ? fh_config_markdown(&e.cfg, stdout) : fh_config_help(&e.cfg, stdout);
        fh_config_free(&e.cfg);
        return 0;
    }
    int level = fh_log_level_parse(fh_config_str(&e.cfg, "log.level"));
    fh_log_init("firehose-emit", level < 0 ? FH_LOG_INFO : (enum fh_log_level)level);
    e.dry_run = fh_config_bool(&e.cfg, "emit.dry_run");
    e.skip_invalid = fh_config_bool(&e.cfg, "emit.skip_invalid");
    e.fill_id = fh_config_bool(&e.cfg, "emit.fill_id");
    e.fill_time = fh_config_bool(&e.cfg, "emit.fill_time");
    e.fill_seq = fh_config_bool(&e.cfg, "emit.fill_seq");
    e.dlq = fh_config_bool(&e.cfg, "emit.dlq");
    e.max_bytes = (size_t)fh_config_int(&e.cfg, "events.max_bytes");
    fh_json_doc_init(&e.doc, FH_EVENT_DOC_CAP(e.max_bytes));

    if (fh_contract_load(&e.contract, err, sizeof(err))) {
        fprintf(stderr, "firehose-emit: loading the event contract: %s\n", err);
        return EXIT_DELIVERY;
    }
    if (!e.dry_run && (status = start_kafka(&e)))
        goto out;

    t0 = fh_mono_ns();
    int rc = 0;
    if (e.cfg.nargs == 0) {
        rc = emit_fd(&e, STDIN_FILENO, NULL);
    } else {
        for (size_t i = 0; i < e.cfg.nargs && rc == 0 && !stop_requested; i++) {
            const char *path = e.cfg.args[i];
            int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY);
            if (fd < 0) {
                fprintf(stderr, "firehose-emit: %s: %s\n", path, strerror(errno));
                rc = -1;
                break;
            }
            rc = emit_fd(&e, fd, e.cfg.nargs > 1 ? path : NULL);
            if (fd != STDIN_FILENO)
                close(fd);
        }
    }
    if (!e.dry_run)
        finish_kafka(&e);
    double secs = (double)(fh_mono_ns() - t0) / 1e9;
    long long done = e.dry_run ? e.st.valid : e.st.delivered;
    if (!fh_config_bool(&e.cfg, "emit.quiet"))
        fprintf(stderr,
                "firehose-emit: %s=%lld rejected=%lld failed=%lld bytes=%lld elapsed=%.3fs "
                "rate=%.0f events/s %.1f MB/s\n",
                e.dry_run ? "valid" : "sent", done, e.st.rejected, e.st.failed, e.st.bytes, secs,
                secs > 0 ? (double)done / secs : 0.0,
                secs > 0 ? (double)e.st.bytes / secs / 1e6 : 0.0);
    if (e.st.failed)
        fprintf(stderr, "firehose-emit: %lld records not delivered: %s\n", e.st.failed,
                e.st.first_failure);
    if (rc < 0 || e.st.failed)
        status = EXIT_DELIVERY;
    else if (e.st.rejected)
        status = EXIT_REJECTED;
    else if (stop_requested)
        status = 130;
out:
    for (size_t i = 0; i < e.nmasters; i++)
        free(e.masters[i].name);
    fh_json_doc_free(&e.doc);
    fh_contract_free(e.contract);
    fh_config_free(&e.cfg);
    return status;
}
