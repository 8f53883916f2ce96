/* pacer: the fan-out benchmark's producer. Loads an NDJSON file of firehose events (validated
 * once, at load, with the v1 contract, which also gives each record its Kafka key and topic), then
 * produces them to Kafka at a fixed rate, stamping each record with its send time just before it
 * is produced: the CloudEvents extension attribute "sentns" (CLOCK_REALTIME, ns since the epoch)
 * is inserted as the record's first member. The load client subtracts it from its own receive
 * time (same machine, same clock).
 *
 *   pacer --brokers HOST:PORT --input FILE --rate R --duration S [--first N] [--linger-ms 1]
 *         [--centrifugo]
 *
 * --centrifugo adds the header centrifugo-channels: "<builder>,all" (or "all" for an event
 * without a builder), for Centrifugo's Kafka consumer in publication data mode; the firehose
 * broker ignores headers it does not know, so both read the same records. The input is used
 * from record --first on and wraps around. One line on stdout at the end:
 *   pacer: sent=N builder_events=M failed=F rate=R elapsed=S start_ns=T0 end_ns=T1 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "fh_event.h"
#include "fh_json.h"

typedef struct rec {
    const char *line; /* into the mapped file; starts with '{' */
    size_t len;
    char key[64];
    unsigned char keylen;
    unsigned char topic; /* fh_topic_kind */
    char channels[96];   /* "<builder>,all" */
    int has_builder;
} rec;

static volatile sig_atomic_t stop;
static long long failed;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static long long now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        failed++;
}

static void usage(void)
{
    fprintf(stderr, "usage: pacer --brokers HOST:PORT --input FILE --rate R --duration S "
                    "[--first N] [--linger-ms MS] [--centrifugo] [--topic T]\n");
    exit(64);
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *input = NULL, *topic_events = "firehose.events";
    const char *topic_logs = "firehose.logs";
    double rate = 0, duration = 0;
    long long first = 0;
    int linger = 1, centrifugo = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--centrifugo")) {
            centrifugo = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--brokers"))
            brokers = v;
        else if (!strcmp(a, "--input"))
            input = v;
        else if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--duration"))
            duration = atof(v);
        else if (!strcmp(a, "--first"))
            first = atoll(v);
        else if (!strcmp(a, "--linger-ms"))
            linger = atoi(v);
        else if (!strcmp(a, "--topic"))
            topic_events = v;
        else
            usage();
    }
    if (!brokers || !input || rate <= 0 || duration <= 0)
        usage();

    /* ---- load and route every record once ---- */
    int fd = open(input, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
        fprintf(stderr, "pacer: %s: %s\n", input, strerror(errno));
        return 1;
    }
    const char *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "pacer: mmap: %s\n", strerror(errno));
        return 1;
    }
    fh_contract *contract = NULL;
    char err[512];
    if (fh_contract_load(&contract, err, sizeof(err))) {
        fprintf(stderr, "pacer: contract: %s\n", err);
        return 1;
    }
    size_t cap = 1 << 20, n = 0;
    rec *recs = malloc(cap * sizeof(*recs));
    fh_json_doc doc;
    fh_json_doc_init(&doc, FH_EVENT_DOC_CAP(1 << 20));
    const char *p = map, *end = map + st.st_size;
    while (p < end && recs) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        if (len > 2 && p[0] == '{') {
            fh_event_view view;
            if (fh_event_check(contract, &doc, p, len, 1 << 20, &view, err, sizeof(err))) {
                fprintf(stderr, "pacer: record %zu refused: %s\n", n + 1, err);
                return 1;
            }
            if (n == cap) {
                cap *= 2;
                recs = realloc(recs, cap * sizeof(*recs));
                if (!recs)
                    break;
            }
            rec *r = &recs[n++];
            r->line = p;
            r->len = len;
            r->keylen = (unsigned char)fh_event_view_key(&view, r->key, sizeof(r->key));
            r->topic = (unsigned char)fh_event_view_topic(&view);
            const fh_jv *b = view.data ? fh_jv_get(view.data, "builder") : NULL;
            size_t blen = 0;
            const char *bs = b && fh_jv_type(b) == FH_JV_STRING ? fh_jv_str(b, &blen) : NULL;
            r->has_builder = bs && blen > 0 && blen < 80;
            if (r->has_builder)
                snprintf(r->channels, sizeof(r->channels), "%.*s,all", (int)blen, bs);
            else
                snprintf(r->channels, sizeof(r->channels), "all");
        }
        p = nl ? nl + 1 : end;
    }
    fh_json_doc_free(&doc);
    fh_contract_free(contract);
    if (!recs || n == 0) {
        fprintf(stderr, "pacer: no records in %s\n", input);
        return 1;
    }

    /* ---- the producer ---- */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char lg[16];
    snprintf(lg, sizeof(lg), "%d", linger);
    const char *kv[][2] = {{"bootstrap.servers", brokers},
                           {"linger.ms", lg},
                           {"compression.type", "lz4"},
                           {"acks", "all"},
                           {"enable.idempotence", "true"},
                           {"queue.buffering.max.kbytes", "262144"},
                           {"log_level", "4"}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "pacer: %s\n", err);
            return 1;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "pacer: %s\n", err);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    char *buf = malloc((1 << 20) + 64);
    long long total = (long long)(rate * duration), sent = 0, with_builder = 0;
    long long t0 = now_ns(CLOCK_MONOTONIC), start_real = now_ns(CLOCK_REALTIME);
    size_t idx = (size_t)(first % (long long)n);
    while (!stop && sent < total) {
        long long due = t0 + (long long)((double)sent * 1e9 / rate);
        long long now = now_ns(CLOCK_MONOTONIC);
        if (now < due) {
            rd_kafka_poll(rk, 0);
            now = now_ns(CLOCK_MONOTONIC);
            if (now < due) {
                struct timespec ts = {(time_t)(due / 1000000000LL), (long)(due % 1000000000LL)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
            continue;
        }
        /* Everything due by now goes out in this burst, each stamped as it is produced. */
        const rec *r = &recs[idx];
        idx = idx + 1 == n ? 0 : idx + 1;
        if (r->len > (1 << 20))
            continue;
        int hl = snprintf(buf, 64, "{\"sentns\":%lld,", now_ns(CLOCK_REALTIME));
        memcpy(buf + hl, r->line + 1, r->len - 1);
        size_t plen = (size_t)hl + r->len - 1;
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
        rd_kafka_header_add(hdrs, "content-type", -1, "application/cloudevents+json", -1);
        if (centrifugo)
            rd_kafka_header_add(hdrs, "centrifugo-channels", -1, r->channels, -1);
        const char *tn = r->topic == FH_TOPIC_LOGS ? topic_logs : topic_events;
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(tn), RD_KAFKA_V_KEY(r->key, r->keylen),
                RD_KAFKA_V_VALUE(buf, plen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
            if (!e)
                break;
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stop) {
                rd_kafka_poll(rk, 10);
                continue;
            }
            rd_kafka_headers_destroy(hdrs);
            failed++;
            break;
        }
        sent++;
        with_builder += r->has_builder;
        if ((sent & 63) == 0)
            rd_kafka_poll(rk, 0);
    }
    long long end_real = now_ns(CLOCK_REALTIME);
    double elapsed = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    rd_kafka_flush(rk, 30000);
    failed += rd_kafka_outq_len(rk);
    printf("pacer: sent=%lld builder_events=%lld failed=%lld rate=%.0f elapsed=%.3f start_ns=%lld "
           "end_ns=%lld\n",
           sent, with_builder, failed, elapsed > 0 ? (double)sent / elapsed : 0.0, elapsed,
           start_real, end_real);
    rd_kafka_destroy(rk);
    free(buf);
    free(recs);
    munmap((void *)map, (size_t)st.st_size);
    close(fd);
    return failed ? 1 : 0;
}
