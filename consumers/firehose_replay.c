/* firehose-replay: reads the event topics straight from Kafka, over a time window or an offset
 * range, up to the end they had when it started (so it ends), filters with the stream's filter
 * language and writes NDJSON (the records as they are), CSV, or a one-pass analytics summary.
 *
 * The NDJSON path parses as little as it can: without a filter a record is copied to the output
 * untouched; with one, only the members the filter names are located in place (jscan). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_filter.h"
#include "fh_config.h"
#include "fh_consumer.h"
#include "fh_event.h"
#include "fh_json.h"
#include "fh_kafka.h"
#include "fh_log.h"
#include "fh_util.h"
#include "fh_jscan.h"
#include "summary.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 64
#define EXIT_INTERRUPTED 130

#define MAX_TOPICS 8
#define MAX_PARTS 4096    /* partitions read at once, over every topic */
#define BATCH 4096        /* records taken from librdkafka per call */
#define OUT_BUF (1 << 20) /* bytes buffered before a write(2) */
#define FIELD_BUF 8192    /* a decoded string a filter compares */

static const fh_cfg_opt replay_opts[] = {
    FH_CFG_COMMON,
    {"replay.topics", "topics", FH_CFG_STR, "", 0, 0,
     "topics to read, comma-separated; empty: topics.events and topics.logs (the logs topic is "
     "skipped when the type filter excludes log.* and test.results, and for --summary)"},
    {"replay.since", "since", FH_CFG_STR, "", 0, 0,
     "start at the first record produced at or after this RFC 3339 time (Kafka timestamp)"},
    {"replay.until", "until", FH_CFG_STR, "", 0, 0,
     "stop before the first record produced at or after this RFC 3339 time"},
    {"replay.offset_start", "offset-start", FH_CFG_INT, "-1", -1, 9223372036854775807LL,
     "first offset of every partition read (-1: the oldest kept)"},
    {"replay.offset_end", "offset-end", FH_CFG_INT, "-1", -1, 9223372036854775807LL,
     "stop before this offset in every partition (-1: the high watermark at start)"},
    {"replay.partitions", "partitions", FH_CFG_STR, "", 0, 0,
     "only these partitions, comma-separated (empty: all)"},
    {"replay.format", "format", FH_CFG_STR, "ndjson", 0, 0,
     "ndjson (the records as they are, one per line) or csv (columns in docs/consumers.md)"},
    {"replay.summary", "summary", FH_CFG_BOOL, "false", 0, 0,
     "write the analytics summary (JSON) instead of the records"},
    {"replay.output", "output", FH_CFG_STR, "-", 0, 0, "output file; - for stdout"},
    {"replay.progress", "progress", FH_CFG_STR, "auto", 0, 0,
     "progress line on stderr: auto (when stderr is a terminal), always or never"},
    {"replay.timeout_ms", NULL, FH_CFG_INT, "30000", 100, 3600000,
     "how long metadata, watermark and offsets-for-times requests may take"},
    {"replay.quiet", "q", FH_CFG_BOOL, "false", 0, 0, "print no closing summary line on stderr"},
    {"summary.max_keys", NULL, FH_CFG_INT, "10000", 1, 10000000,
     "keys per summary table (builder+step, builder+day, builder); more go to \"(other)\""},
    {"summary.samples", NULL, FH_CFG_INT, "1024", 1, 1000000,
     "values kept per key for p50/p95 (exact up to this many, a reservoir sample beyond)"},
    {"summary.max_pending", NULL, FH_CFG_INT, "1000000", 1, 100000000,
     "build requests remembered between buildrequest.new and build.started (queue wait)"},
    FH_CLI_FILTER_OPTS,
};

/* Consumer defaults; --kafka.* overrides them. The prefetch caps bound memory per partition. */
static const char *const consumer_defaults[] = {
    "group.id=firehose-replay", /* required by librdkafka to assign; never committed */
    "enable.auto.commit=false",
    "enable.auto.offset.store=false",
    "enable.partition.eof=true",
    "auto.offset.reset=earliest",
    "queued.max.messages.kbytes=32768",
    "fetch.message.max.bytes=4194304",
    "fetch.max.bytes=33554432",
    "fetch.wait.max.ms=100",
    "log_level=4",
    NULL,
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

enum out_format { OUT_NDJSON, OUT_CSV, OUT_SUMMARY };

typedef struct part {
    int topic; /* index into replay.topics */
    int32_t partition;
    int64_t start, end; /* read [start, end) */
    int done;
} part;

typedef struct replay {
    fh_config cfg;
    fh_filter filter;
    json_t *filter_json;
    int have_filter;
    enum out_format format;
    char *topics[MAX_TOPICS];
    rd_kafka_topic_t *rkts[MAX_TOPICS]; /* for mapping messages to topics by pointer */
    int ntopics;
    part parts[MAX_PARTS];
    int nparts, nleft;
    int64_t since_ms, until_ms; /* -1: none */
    fh_consumer *kc; /* offsets policy: the positions plan_ranges found; rk is its handle */
    rd_kafka_t *rk;
    int out_fd;
    char *out;
    size_t out_len;
    int out_error; /* errno of a failed write; EPIPE stops the replay quietly */
    fh_json_doc doc;
    fh_summary *summary;
    long long records, matched, outside, undecodable, bytes;
    long long total; /* records in the ranges, for the progress line */
    char field[FIELD_BUF];
} replay;

/* ---- output -------------------------------------------------------------------------------- */

static void out_flush(replay *r)
{
    size_t o = 0;
    while (o < r->out_len && !r->out_error) {
        ssize_t n = write(r->out_fd, r->out + o, r->out_len - o);
        if (n > 0)
            o += (size_t)n;
        else if (n < 0 && errno != EINTR)
            r->out_error = errno;
    }
    r->out_len = 0;
}

static void out_put(replay *r, const void *p, size_t n)
{
    if (r->out_len + n > OUT_BUF)
        out_flush(r);
    if (n > OUT_BUF) { /* a record bigger than the buffer goes out directly */
        const char *s = p;
        while (n && !r->out_error) {
            ssize_t w = write(r->out_fd, s, n);
            if (w > 0) {
                s += w;
                n -= (size_t)w;
            } else if (w < 0 && errno != EINTR) {
                r->out_error = errno;
            }
        }
        return;
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
}

/* One record as one NDJSON line. JSON allows a line break only as whitespace between tokens, so
 * turning CR and LF into spaces keeps any valid record valid and the output one record a line. */
static void out_record(replay *r, const char *p, size_t n)
{
    if (r->out_len + n + 1 > OUT_BUF)
        out_flush(r);
    if (n + 1 > OUT_BUF) {
        out_put(r, p, n); /* rare: huge records are written as they are */
        out_put(r, "\n", 1);
        return;
    }
    char *dst = r->out + r->out_len;
    memcpy(dst, p, n);
    if (memchr(p, '\n', n) || memchr(p, '\r', n))
        for (size_t i = 0; i < n; i++)
            if (dst[i] == '\n' || dst[i] == '\r')
                dst[i] = ' ';
    dst[n] = '\n';
    r->out_len += n + 1;
}

/* ---- the filter over a raw record ---------------------------------------------------------- */

typedef struct scan_ctx {
    replay *r;
    const char *p, *end;
    const char *data, *data_end; /* the data member, once looked up */
    int data_state;              /* 0: not looked up, 1: found, -1: absent */
} scan_ctx;

static int scan_lookup(void *vctx, fh_filter_field field, const char **s, long long *n)
{
    scan_ctx *c = vctx;
    const char *v, *ve, *obj = c->p, *obj_end = c->end;
    const char *name = fh_filter_field_name(field);
    if (field != FH_F_TYPE && field != FH_F_MASTER) {
        if (c->data_state == 0) {
            c->data_state =
                fh_jscan_member(c->p, c->end, "data", 4, &c->data, &c->data_end) == 1 ? 1 : -1;
        }
        if (c->data_state < 0)
            return 0;
        obj = c->data;
        obj_end = c->data_end;
    }
    if (fh_jscan_member(obj, obj_end, name, strlen(name), &v, &ve) != 1)
        return 0;
    if (fh_filter_field_integer(field))
        return fh_jscan_int(v, ve, n) == 0;
    if (fh_jscan_str(v, ve, c->r->field, sizeof(c->r->field)) < 0)
        return 0;
    *s = c->r->field;
    return 1;
}

static int raw_match(replay *r, const char *p, size_t n)
{
    scan_ctx c = {.r = r, .p = p, .end = p + n};
    return fh_filter_match_with(&r->filter, scan_lookup, &c);
}

/* ---- CSV ----------------------------------------------------------------------------------- */

/* The columns, in order (docs/consumers.md). "topic" .. "kafka_time" come from Kafka, envelope
 * members from the event, the rest from data. */
static const char *const csv_columns[] = {
    "topic",      "partition",  "offset",         "kafka_time",   "id",      "type",   "time",
    "master",     "seq",        "buildrequestid", "buildid",      "builder", "branch", "revision",
    "owner",      "project",    "worker",         "stepid",       "name",    "number", "results",
    "duration_s", "started_at", "complete_at",    "state_string",
};
#define CSV_NCOLS (sizeof(csv_columns) / sizeof(csv_columns[0]))
#define CSV_FIRST_ENVELOPE 4
#define CSV_FIRST_DATA 9

static void csv_text(replay *r, const char *s, size_t n)
{
    int quote = n && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        out_put(r, s, n);
        return;
    }
    out_put(r, "\"", 1);
    for (const char *q = s, *e = s + n; q < e;) {
        const char *dq = memchr(q, '"', (size_t)(e - q));
        size_t run = dq ? (size_t)(dq - q) + 1 : (size_t)(e - q);
        out_put(r, q, run);
        if (dq)
            out_put(r, "\"", 1); /* "" inside a quoted field */
        q += run;
    }
    out_put(r, "\"", 1);
}

/* A JSON value as CSV text: strings as they are, numbers and booleans as JSON writes them,
 * null and containers empty (urls, files and properties are not columns). */
static void csv_value(replay *r, const fh_jv *v)
{
    char num[64];
    int n = 0;
    size_t len;
    const char *s;
    if (!v)
        return;
    switch (fh_jv_type(v)) {
    case FH_JV_STRING:
        s = fh_jv_str(v, &len);
        csv_text(r, s, len);
        return;
    case FH_JV_INT:
        n = snprintf(num, sizeof(num), "%lld", (long long)v->u.i);
        break;
    case FH_JV_REAL:
        n = (int)strlen(fh_summary_num(v->u.d, num, sizeof(num)));
        break;
    case FH_JV_TRUE:
        n = snprintf(num, sizeof(num), "true");
        break;
    case FH_JV_FALSE:
        n = snprintf(num, sizeof(num), "false");
        break;
    default:
        return;
    }
    out_put(r, num, (size_t)n);
}

static void csv_header(replay *r)
{
    for (size_t i = 0; i < CSV_NCOLS; i++) {
        if (i)
            out_put(r, ",", 1);
        out_put(r, csv_columns[i], strlen(csv_columns[i]));
    }
    out_put(r, "\r\n", 2);
}

static void csv_row(replay *r, const rd_kafka_message_t *m, const fh_jv *root)
{
    char tmp[64];
    int n;
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    const fh_jv *data = fh_jv_get(root, "data");
    const char *topic = rd_kafka_topic_name(m->rkt);

    csv_text(r, topic, strlen(topic));
    n = snprintf(tmp, sizeof(tmp), ",%d,%lld,", (int)m->partition, (long long)m->offset);
    out_put(r, tmp, (size_t)n);
    if (ts >= 0) {
        fh_time_rfc3339(ts, tmp, sizeof(tmp));
        out_put(r, tmp, strlen(tmp));
    }
    for (size_t i = CSV_FIRST_ENVELOPE; i < CSV_NCOLS; i++) {
        out_put(r, ",", 1);
        csv_value(r, fh_jv_get(i < CSV_FIRST_DATA ? root : data, csv_columns[i]));
    }
    out_put(r, "\r\n", 2);
}

/* ---- one record ---------------------------------------------------------------------------- */

static int summary_type(const char *p, size_t n)
{
    static const char *const wanted[] = {"\"step.finished\"", "\"build.finished\"",
                                         "\"buildrequest.new\"", "\"buildrequest.complete\"",
                                         "\"build.started\""};
    const char *v, *ve;
    if (fh_jscan_member(p, p + n, "type", 4, &v, &ve) != 1)
        return -1;
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
        if ((size_t)(ve - v) == strlen(wanted[i]) && memcmp(v, wanted[i], (size_t)(ve - v)) == 0)
            return 1;
    return 0;
}

static void handle(replay *r, const rd_kafka_message_t *m)
{
    const char *p = m->payload;
    size_t n = m->len;
    const fh_jv *root;
    r->records++;
    if (!p)
        return; /* a tombstone: not an event */
    if (r->since_ms >= 0 || r->until_ms >= 0) {
        rd_kafka_timestamp_type_t tst;
        int64_t ts = rd_kafka_message_timestamp(m, &tst);
        /* offsets-for-times found the range; this keeps it exact when timestamps go back */
        if ((r->since_ms >= 0 && ts < r->since_ms) || (r->until_ms >= 0 && ts >= r->until_ms)) {
            r->outside++;
            return;
        }
    }
    if (r->have_filter && !raw_match(r, p, n))
        return;
    r->matched++;
    if (r->format == OUT_NDJSON) {
        r->bytes += (long long)n;
        out_record(r, p, n);
        return;
    }
    if (r->format == OUT_SUMMARY && summary_type(p, n) == 0) {
        fh_summary_add(r->summary, NULL); /* counted as seen, nothing to compute */
        return;
    }
    fh_json_doc_reset(&r->doc);
    if (fh_json_parse(&r->doc, p, n, FH_JSON_ALLOW_DUPLICATES, &root, NULL, 0) ||
        fh_jv_type(root) != FH_JV_OBJECT) {
        if (r->undecodable++ == 0)
            fprintf(stderr,
                    "firehose-replay: %s [%d] offset %lld is not a JSON object; skipped "
                    "(further ones are only counted)\n",
                    rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
        return;
    }
    r->bytes += (long long)n;
    if (r->format == OUT_CSV)
        csv_row(r, m, root);
    else
        fh_summary_add(r->summary, root);
}

/* ---- Kafka: topics, ranges, the read loop ------------------------------------------------- */

static int want_log(int t)
{
    return fh_event_type_topic((fh_event_type)t) == FH_TOPIC_LOGS; /* log.*, test.results */
}

static int want_nonlog(int t)
{
    return !want_log(t);
}

static fh_err split_list(const char *text, char **out, int max, int *n, const char *what,
                         char *errbuf, size_t errsize)
{
    *n = 0;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        if (len) {
            if (*n == max)
                return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "%s: more than %d", what, max);
            if (!(out[*n] = strndup(p, len)))
                return FH_ERR_NOMEM;
            (*n)++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return FH_OK;
}

static fh_err choose_topics(replay *r, char *errbuf, size_t errsize)
{
    const char *list = fh_config_str(&r->cfg, "replay.topics");
    if (list && *list)
        return split_list(list, r->topics, MAX_TOPICS, &r->ntopics, "--topics", errbuf, errsize);
    int events =
        r->format != OUT_SUMMARY ? fh_cli_filter_types_possible(&r->filter, want_nonlog) : 1;
    int logs = r->format != OUT_SUMMARY && fh_cli_filter_types_possible(&r->filter, want_log);
    if (events && !(r->topics[r->ntopics++] = strdup(fh_kafka_topic(&r->cfg, FH_TOPIC_EVENTS))))
        return FH_ERR_NOMEM;
    if (logs && !(r->topics[r->ntopics++] = strdup(fh_kafka_topic(&r->cfg, FH_TOPIC_LOGS))))
        return FH_ERR_NOMEM;
    return FH_OK;
}

static int partition_wanted(const char *list, int32_t p)
{
    if (!list || !*list)
        return 1;
    for (const char *s = list; *s;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end != s && v == p)
            return 1;
        s = *end ? end + 1 : end;
    }
    return 0;
}

/* For every partition, the first offset whose timestamp is at or after ms (-1: none; the caller
 * then uses the partition's end). */
static fh_err offsets_for(replay *r, int64_t ms, int64_t *out, int timeout, char *errbuf,
                          size_t errsize)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++)
        rd_kafka_topic_partition_list_add(l, r->topics[r->parts[i].topic], r->parts[i].partition)
            ->offset = ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(r->rk, l, timeout);
    fh_err rc = FH_OK;
    if (err) {
        rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "offsets for times: %s", rd_kafka_err2str(err));
    } else {
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].err) {
                rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "offsets for times: %s [%d]: %s",
                             l->elems[i].topic, (int)l->elems[i].partition,
                             rd_kafka_err2str(l->elems[i].err));
                break;
            }
            out[i] = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static fh_err plan_ranges(replay *r, char *errbuf, size_t errsize)
{
    int timeout = (int)fh_config_int(&r->cfg, "replay.timeout_ms");
    const char *plist = fh_config_str(&r->cfg, "replay.partitions");
    int64_t ostart = fh_config_int(&r->cfg, "replay.offset_start");
    int64_t oend = fh_config_int(&r->cfg, "replay.offset_end");
    static int64_t tmp[MAX_PARTS];
    fh_err rc;

    for (int t = 0; t < r->ntopics; t++) {
        static int32_t ids[MAX_PARTS];
        int n = 0;
        /* kept for mapping messages to topics by pointer */
        if (!(r->rkts[t] = rd_kafka_topic_new(r->rk, r->topics[t], NULL)))
            return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "topic %s: %s", r->topics[t],
                           rd_kafka_err2str(rd_kafka_last_error()));
        if ((rc = fh_consumer_partitions(r->rk, r->topics[t], timeout, ids, MAX_PARTS, &n, errbuf,
                                         errsize)))
            return rc;
        for (int i = 0; i < n; i++) {
            int32_t p = ids[i];
            int64_t lo, hi;
            if (!partition_wanted(plist, p))
                continue;
            if (r->nparts == MAX_PARTS || i == MAX_PARTS)
                return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "more than %d partitions",
                               MAX_PARTS);
            rd_kafka_resp_err_t err =
                fh_consumer_watermarks(r->rk, r->topics[t], p, &lo, &hi, timeout);
            if (err)
                return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "watermarks of %s [%d]: %s",
                               r->topics[t], (int)p, rd_kafka_err2str(err));
            part *pt = &r->parts[r->nparts++];
            pt->topic = t;
            pt->partition = p;
            pt->start = ostart >= 0 && ostart > lo ? ostart : lo;
            pt->end = oend >= 0 && oend < hi ? oend : hi; /* the end is fixed now: replay ends */
        }
    }
    if (r->nparts == 0 && plist && *plist)
        return fh_errf(errbuf, errsize, FH_ERR_NOTFOUND, "--partitions %s: no such partition",
                       plist);
    if (r->since_ms >= 0) {
        if ((rc = offsets_for(r, r->since_ms, tmp, timeout, errbuf, errsize)))
            return rc;
        for (int i = 0; i < r->nparts; i++) {
            part *pt = &r->parts[i];
            int64_t o = tmp[i] < 0 ? pt->end : tmp[i]; /* nothing at or after since */
            if (o > pt->start)
                pt->start = o;
        }
    }
    if (r->until_ms >= 0) {
        if ((rc = offsets_for(r, r->until_ms, tmp, timeout, errbuf, errsize)))
            return rc;
        for (int i = 0; i < r->nparts; i++)
            if (tmp[i] >= 0 && tmp[i] < r->parts[i].end)
                r->parts[i].end = tmp[i];
    }
    for (int i = 0; i < r->nparts; i++) {
        part *pt = &r->parts[i];
        if (pt->start >= pt->end) {
            pt->done = 1;
        } else {
            r->nleft++;
            r->total += pt->end - pt->start;
        }
        fh_log(FH_LOG_DEBUG, "replay.range", "topic=%s partition=%d start=%lld end=%lld",
               r->topics[pt->topic], (int)pt->partition, (long long)pt->start, (long long)pt->end);
    }
    return FH_OK;
}

static part *part_of(replay *r, const rd_kafka_message_t *m)
{
    int t = -1;
    for (int i = 0; i < r->ntopics; i++)
        if (m->rkt == r->rkts[i]) {
            t = i;
            break;
        }
    if (t < 0) { /* another handle for the same topic: compare names */
        const char *name = rd_kafka_topic_name(m->rkt);
        for (int i = 0; i < r->ntopics && t < 0; i++)
            if (strcmp(name, r->topics[i]) == 0)
                t = i;
    }
    for (int i = 0; i < r->nparts; i++)
        if (r->parts[i].topic == t && r->parts[i].partition == m->partition)
            return &r->parts[i];
    return NULL;
}

static void part_finish(replay *r, part *pt)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    pt->done = 1;
    r->nleft--;
    /* stop fetching past the end: what was produced after the start is not ours */
    rd_kafka_topic_partition_list_add(l, r->topics[pt->topic], pt->partition);
    rd_kafka_pause_partitions(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static void progress(replay *r, uint64_t t0, int final)
{
    double secs = (double)(fh_mono_ns() - t0) / 1e9;
    if (final) {
        fprintf(stderr, "\r\033[K");
        return;
    }
    fprintf(stderr,
            "\r\033[Kfirehose-replay: %lld of %lld records (%.0f%%), %lld matched, %.0f records/s",
            r->records, r->total, r->total ? 100.0 * (double)r->records / (double)r->total : 100.0,
            r->matched, secs > 0 ? (double)r->records / secs : 0.0);
}

static fh_err read_all(replay *r, int show_progress, uint64_t t0, char *errbuf, size_t errsize)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    static rd_kafka_message_t *msgs[BATCH];
    uint64_t next_progress = fh_mono_ns() + 250000000ull;
    fh_err rc = FH_OK;

    for (int i = 0; i < r->nparts; i++)
        if (!r->parts[i].done)
            rd_kafka_topic_partition_list_add(l, r->topics[r->parts[i].topic],
                                              r->parts[i].partition)
                ->offset = r->parts[i].start;
    rc = l->cnt ? fh_consumer_assign(r->kc, l, errbuf, errsize) : FH_OK;
    rd_kafka_topic_partition_list_destroy(l);
    if (rc)
        return rc;
    while (r->nleft > 0 && !stop_requested && !r->out_error) {
        ssize_t n = fh_consumer_batch(r->kc, 100, msgs, BATCH);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            part *pt = m->rkt ? part_of(r, m) : NULL;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* past transaction markers or compacted records the end may be unreachable */
                if (pt && !pt->done && m->offset >= pt->end)
                    part_finish(r, pt);
            } else if (m->err) {
                if (rc == FH_OK && (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                                    m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                                    m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                                    m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
                    rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "%s", rd_kafka_message_errstr(m));
                    r->nleft = 0;
                } else {
                    fh_log(FH_LOG_WARN, "kafka.consume", "error=\"%s\"",
                           rd_kafka_message_errstr(m));
                }
            } else if (pt && !pt->done && m->offset < pt->end) {
                handle(r, m);
                if (m->offset + 1 >= pt->end)
                    part_finish(r, pt);
            }
            rd_kafka_message_destroy(m);
        }
        if (show_progress && fh_mono_ns() >= next_progress) {
            progress(r, t0, 0);
            next_progress = fh_mono_ns() + 250000000ull;
        }
    }
    if (show_progress)
        progress(r, t0, 1);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

static fh_err parse_time_opt(const fh_config *c, const char *key, const char *flag, int64_t *out,
                             char *errbuf, size_t errsize)
{
    const char *s = fh_config_str(c, key);
    *out = -1;
    if (!s || !*s)
        return FH_OK;
    if (fh_time_parse(s, out))
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                       "--%s: expected an RFC 3339 time (2026-11-22T05:00:00Z), got \"%s\"", flag,
                       s);
    return FH_OK;
}

static int setup(replay *r, int argc, char **argv, fh_cli_filter *cf, int *help, char *err,
                 size_t errsize)
{
    const char *fmt;
    if (fh_cli_filter_take(cf, &argc, argv, err, errsize) ||
        fh_config_init(
            &r->cfg, "firehose-replay", "[OPTIONS] [FILTER FLAGS]",
            "Reads the event topics from Kafka over a time window or an offset range, up "
            "to their end at start, and writes the matching records as NDJSON or CSV, "
            "or an analytics summary (--summary). Exit status: 0 done, 1 Kafka or output "
            "error, 64 usage, 130 interrupted.",
            replay_opts, sizeof(replay_opts) / sizeof(replay_opts[0])) ||
        fh_config_load(&r->cfg, argc, argv, help, err, errsize))
        return EXIT_USAGE;
    if (*help)
        return 0;
    if (r->cfg.nargs)
        return fh_errf(err, errsize, FH_ERR_CONFIG, "unexpected argument \"%s\" (see --help)",
                       r->cfg.args[0]),
               EXIT_USAGE;
    if (fh_cli_filter_build(cf, &r->cfg, &r->filter_json, &r->filter, err, errsize))
        return EXIT_USAGE;
    r->have_filter = r->filter.nclauses > 0;
    fmt = fh_config_str(&r->cfg, "replay.format");
    if (fh_config_bool(&r->cfg, "replay.summary"))
        r->format = OUT_SUMMARY;
    else if (strcmp(fmt, "ndjson") == 0)
        r->format = OUT_NDJSON;
    else if (strcmp(fmt, "csv") == 0)
        r->format = OUT_CSV;
    else
        return fh_errf(err, errsize, FH_ERR_CONFIG, "--format: expected ndjson or csv, got \"%s\"",
                       fmt),
               EXIT_USAGE;
    if (parse_time_opt(&r->cfg, "replay.since", "since", &r->since_ms, err, errsize) ||
        parse_time_opt(&r->cfg, "replay.until", "until", &r->until_ms, err, errsize))
        return EXIT_USAGE;
    if (r->since_ms >= 0 && r->until_ms >= 0 && r->until_ms <= r->since_ms)
        return fh_errf(err, errsize, FH_ERR_CONFIG, "--until must be after --since"), EXIT_USAGE;
    const char *pr = fh_config_str(&r->cfg, "replay.progress");
    if (strcmp(pr, "auto") && strcmp(pr, "always") && strcmp(pr, "never"))
        return fh_errf(err, errsize, FH_ERR_CONFIG, "--progress: expected auto, always or never"),
               EXIT_USAGE;
    if (strcmp(fh_config_str(&r->cfg, "kafka.brokers"), "embedded") == 0)
        return fh_errf(err, errsize, FH_ERR_CONFIG,
                       "kafka.brokers is \"embedded\": give --brokers HOST:PORT (the broker logs "
                       "bootstrap=HOST:PORT)"),
               EXIT_USAGE;
    return 0;
}

int main(int argc, char **argv)
{
    static replay r;
    static fh_cli_filter cf;
    char err[1024] = "";
    int help = 0, status = 0;
    uint64_t t0;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    r.out_fd = -1;
    if ((status = setup(&r, argc, argv, &cf, &help, err, sizeof(err)))) {
        fprintf(stderr, "firehose-replay: %s\n", err);
        goto out;
    }
    if (help) {
        help == 2 ? fh_config_markdown(&r.cfg, stdout) : fh_config_help(&r.cfg, stdout);
        goto out;
    }
    int level = fh_log_level_parse(fh_config_str(&r.cfg, "log.level"));
    fh_log_init("firehose-replay", level < 0 ? FH_LOG_INFO : (enum fh_log_level)level);
    if (choose_topics(&r, err, sizeof(err))) {
        fprintf(stderr, "firehose-replay: %s\n", err);
        status = EXIT_USAGE;
        goto out;
    }
    if (r.format == OUT_SUMMARY) {
        fh_summary_opts so = {
            .max_keys = (size_t)fh_config_int(&r.cfg, "summary.max_keys"),
            .samples = (unsigned)fh_config_int(&r.cfg, "summary.samples"),
            .max_pending = (size_t)fh_config_int(&r.cfg, "summary.max_pending"),
        };
        if (fh_summary_new(&so, &r.summary)) {
            fprintf(stderr, "firehose-replay: out of memory\n");
            status = EXIT_FAILED;
            goto out;
        }
    }
    fh_json_doc_init(&r.doc, FH_EVENT_DOC_CAP((size_t)fh_config_int(&r.cfg, "events.max_bytes")));
    const char *path = fh_config_str(&r.cfg, "replay.output");
    r.out_fd = strcmp(path, "-") == 0 ? STDOUT_FILENO
                                      : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r.out_fd < 0 || !(r.out = malloc(OUT_BUF))) {
        fprintf(stderr, "firehose-replay: %s: %s\n", path, strerror(errno));
        status = EXIT_FAILED;
        goto out;
    }
    fh_consumer_opts o = {.policy = FH_CONSUMER_OFFSETS,
                          .bootstrap = fh_config_str(&r.cfg, "kafka.brokers"),
                          .defaults = consumer_defaults,
                          .wake_fd = -1};
    fh_err crc = fh_consumer_new(&r.cfg, &o, &r.kc, err, sizeof(err));
    if (crc) {
        fprintf(stderr, "firehose-replay: %s\n", err);
        status = crc == FH_ERR_CONFIG ? EXIT_USAGE : EXIT_FAILED;
        goto out;
    }
    r.rk = r.kc->rk;
    t0 = fh_mono_ns();
    if (plan_ranges(&r, err, sizeof(err))) {
        fprintf(stderr, "firehose-replay: %s\n", err);
        status = EXIT_FAILED;
        goto out;
    }
    if (r.format == OUT_CSV)
        csv_header(&r);
    const char *pr = fh_config_str(&r.cfg, "replay.progress");
    int show = strcmp(pr, "always") == 0 || (strcmp(pr, "auto") == 0 && isatty(STDERR_FILENO));
    if (read_all(&r, show, t0, err, sizeof(err))) {
        fprintf(stderr, "firehose-replay: %s\n", err);
        status = EXIT_FAILED;
    }
    if (r.format == OUT_SUMMARY && !status && !stop_requested) {
        char extra[512];
        FILE *f = fdopen(dup(r.out_fd), "w");
        snprintf(
            extra, sizeof(extra),
            "\"records\":%lld,\"matched\":%lld,\"outside_window\":%lld,\"undecodable\":%lld,\n",
            r.records, r.matched, r.outside, r.undecodable);
        if (!f || fh_summary_write(r.summary, extra, f) || fclose(f)) {
            r.out_error = errno ? errno : EIO;
            f = NULL;
        }
    }
    out_flush(&r);
    double secs = (double)(fh_mono_ns() - t0) / 1e9;
    if (!fh_config_bool(&r.cfg, "replay.quiet"))
        fprintf(stderr,
                "firehose-replay: records=%lld matched=%lld outside_window=%lld undecodable=%lld "
                "bytes=%lld elapsed=%.3fs rate=%.0f records/s %.1f MB/s\n",
                r.records, r.matched, r.outside, r.undecodable, r.bytes, secs,
                secs > 0 ? (double)r.records / secs : 0.0,
                secs > 0 ? (double)r.bytes / secs / 1e6 : 0.0);
    if (r.out_error && r.out_error != EPIPE) {
        fprintf(stderr, "firehose-replay: writing %s: %s\n", path, strerror(r.out_error));
        status = EXIT_FAILED;
    } else if (stop_requested && !status) {
        status = EXIT_INTERRUPTED;
    }
out:
    if (r.kc) {
        fh_consumer_close(r.kc);
        for (int i = 0; i < r.ntopics; i++)
            if (r.rkts[i])
                rd_kafka_topic_destroy(r.rkts[i]);
        fh_consumer_free(r.kc);
    }
    if (r.out_fd > STDOUT_FILENO)
        close(r.out_fd);
    for (int i = 0; i < r.ntopics; i++)
        free(r.topics[i]);
    free(r.out);
    fh_json_doc_free(&r.doc);
    fh_summary_free(r.summary);
    fh_filter_free(&r.filter);
    json_decref(r.filter_json);
    fh_cli_filter_free(&cf);
    fh_config_free(&r.cfg);
    return status;
}
