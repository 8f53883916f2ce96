#include "statuspush.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_log.h"
#include "fh_seq.h"

#define MAX_MASTERS 1024
#define MAX_EVENTS 3 /* property.set + build.started or build.finished, per post */
#define DELIVERY_TIMEOUT_MS 10000

static const char *const producer_defaults[] = {
    "enable.idempotence=true",
    "acks=all",
    "compression.type=lz4",
    "linger.ms=1",
    "log_level=4",
    NULL,
};

/* The handle: one producer for every HTTP worker thread; posts are serialised by mu so each
 * waits for exactly its own delivery reports (HttpStatusPush sends a few posts a second at most).
 */
struct fh_statuspush {
    fh_broker *b;
    rd_kafka_t *rk;
    pthread_mutex_t mu;
    fh_seq_table seqs; /* over masters, under mu */
    fh_seq_entry masters[MAX_MASTERS];
    int outstanding, failed; /* this post's delivery reports still due, and failures among them */
    char failure[256];
    fh_metric *posts, *rejected, *produced;
};

/* The handle is the producer's opaque (rd_kafka_conf_set_opaque). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    fh_statuspush *sp = opaque;
    (void)rk;
    if (m->err) {
        if (!sp->failed++)
            snprintf(sp->failure, sizeof(sp->failure), "%s", rd_kafka_err2str(m->err));
    }
    sp->outstanding--;
}

static const fh_metric_row statuspush_metrics[] = {
    FH_METRIC_ROW(fh_statuspush, posts, "firehose_statuspush_posts_total", NULL,
                  "HttpStatusPush posts received at /api/v1/ingest/buildbot", 0),
    FH_METRIC_ROW(fh_statuspush, rejected, "firehose_statuspush_rejected_total", NULL,
                  "HttpStatusPush posts refused with a 4xx", 0),
    FH_METRIC_ROW(fh_statuspush, produced, "firehose_statuspush_events_total", NULL,
                  "events produced from HttpStatusPush posts", 0),
};

fh_err statuspush_start(fh_broker *b, fh_statuspush **out, char *errbuf, size_t errsize)
{
    char err[512];
    *out = NULL;
    fh_statuspush *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "statuspush: out of memory");
    sp->b = b;
    pthread_mutex_init(&sp->mu, NULL);
    sp->seqs = (fh_seq_table){sp->masters, 0, MAX_MASTERS};
    *out = sp;
    if (!fh_config_bool(&b->cfg, "ingest.statuspush"))
        return FH_OK; /* the route answers 503 */
    fh_err e = fh_kafka_producer(&b->cfg, b->bootstrap, producer_defaults, on_delivery, sp, &sp->rk,
                                 err, sizeof(err));
    if (e) {
        *out = NULL;
        statuspush_free(sp);
        return fh_errf(errbuf, errsize, e, "statuspush producer: %s", err);
    }
    fh_metrics_register(sp, statuspush_metrics,
                        sizeof(statuspush_metrics) / sizeof(statuspush_metrics[0]));
    return FH_OK;
}

void statuspush_free(fh_statuspush *sp)
{
    if (!sp)
        return;
    fh_kafka_producer_free(sp->rk, 5000);
    pthread_mutex_destroy(&sp->mu);
    free(sp);
}

static int master_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= '0' && s[n] <= '9') || s[n] == '-' || s[n] == '_' || s[n] == '.'))
            return 0;
    return n > 0 && n <= 64;
}

/* A string member, "" when absent or null (the contract wants strings for the context). */
static const char *str_or_empty(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : "";
}

/* The first value of a property ({name: [value, source]}), when it is a string. */
static const char *prop_str(const json_t *props, const char *name)
{
    json_t *pair = json_object_get(props, name), *v = json_array_get(pair, 0);
    if (json_is_array(v)) /* "owners": [["Alice <alice@example.org>"], "Build"] */
        v = json_array_get(v, 0);
    return json_string_value(v);
}

/* The build's owner as firehose_buildbot finds it (docs/buildbot.md, "Context"): the "owner"
 * property as it is (ForceScheduler, try), else the e-mail address in the first of "owners"
 * (Buildbot's blamelist, change authors such as "Alice <alice@example.org>"), else the author
 * trimmed of white space; "" when neither is set. Points into props; *len gets the length. */
static const char *owner_of(const json_t *props, size_t *len)
{
    const char *s = prop_str(props, "owner");
    if (s && *s) {
        *len = strlen(s);
        return s;
    }
    if (!(s = prop_str(props, "owners")))
        s = "";
    for (const char *lt = strchr(s, '<'); lt; lt = strchr(lt + 1, '<')) {
        const char *p = lt + 1, *at;
        while (*p && !strchr("<>@", *p) && !isspace((unsigned char)*p))
            p++;
        if (p == lt + 1 || *p != '@')
            continue;
        at = p++;
        while (*p && !strchr("<>", *p) && !isspace((unsigned char)*p))
            p++;
        if (p == at + 1 || *p != '>')
            continue;
        *len = (size_t)(p - lt - 1);
        return lt + 1;
    }
    while (isspace((unsigned char)*s))
        s++;
    *len = strlen(s);
    while (*len && isspace((unsigned char)s[*len - 1]))
        (*len)--;
    return s;
}

/* The source stamp that fills the context: the default codebase's ("") when there is one, else
 * the first by codebase name; firehose_buildbot's rule, so both give one build the same context. */
static const json_t *context_sourcestamp(const json_t *sourcestamps)
{
    const json_t *best = NULL;
    for (size_t i = 0; i < json_array_size(sourcestamps); i++) {
        const json_t *ss = json_array_get(sourcestamps, i);
        if (!best || strcmp(str_or_empty(ss, "codebase"), str_or_empty(best, "codebase")) < 0)
            best = ss;
    }
    return best;
}

typedef struct post {
    const json_t *build, *props;
    const char *master;
    json_t *ctx; /* the build context, copied into each event's data */
    double started_at, complete_at;
    int complete;
} post;

/* Fills p from the build dictionary or names the bad member in msg. Returns 0 or -1. */
static int post_read(post *p, const json_t *build, char *param, size_t psize, char *msg,
                     size_t msize)
{
    static const char *const ints[] = {"buildid", "number", "builderid", "buildrequestid"};
    const json_t *builder = json_object_get(build, "builder");
    const json_t *bset = json_object_get(build, "buildset");
    const json_t *ss = context_sourcestamp(json_object_get(bset, "sourcestamps"));
    p->build = build;
    p->props = json_object_get(build, "properties");
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        json_t *v = json_object_get(build, ints[i]);
        if (!json_is_integer(v) || json_integer_value(v) < (i == 1 ? 0 : 1)) {
            snprintf(param, psize, "body.%s", ints[i]);
            snprintf(msg, msize, "expected %s integer", i == 1 ? "a non-negative" : "a positive");
            return -1;
        }
    }
    if (!json_is_number(json_object_get(build, "started_at"))) {
        snprintf(param, psize, "body.started_at");
        snprintf(msg, msize, "expected epoch seconds (a number)");
        return -1;
    }
    p->started_at = json_number_value(json_object_get(build, "started_at"));
    p->complete = json_is_true(json_object_get(build, "complete"));
    if (p->complete) {
        if (!json_is_number(json_object_get(build, "complete_at")) ||
            !json_is_integer(json_object_get(build, "results"))) {
            snprintf(param, psize, "body.%s",
                     json_is_number(json_object_get(build, "complete_at")) ? "results"
                                                                           : "complete_at");
            snprintf(msg, msize,
                     "a complete build needs complete_at (epoch seconds) and results (0-6)");
            return -1;
        }
        p->complete_at = json_number_value(json_object_get(build, "complete_at"));
    }
    if (p->props && !json_is_object(p->props)) {
        snprintf(param, psize, "body.properties");
        snprintf(msg, msize, "expected an object of name: [value, source]");
        return -1;
    }
    const char *name = json_string_value(json_object_get(builder, "name"));
    char fallback[64];
    if (!name) {
        snprintf(fallback, sizeof(fallback), "builder-%lld",
                 (long long)json_integer_value(json_object_get(build, "builderid")));
        name = fallback;
    }
    size_t owner_len;
    const char *owner = owner_of(p->props, &owner_len);
    p->ctx = json_pack("{s:O,s:O,s:s,s:O,s:s,s:s,s:s,s:s,s:s,s:s%}", "buildrequestid",
                       json_object_get(build, "buildrequestid"), "buildid",
                       json_object_get(build, "buildid"), "builder", name, "builderid",
                       json_object_get(build, "builderid"), "branch", str_or_empty(ss, "branch"),
                       "revision", str_or_empty(ss, "revision"), "repository",
                       str_or_empty(ss, "repository"), "project", str_or_empty(ss, "project"),
                       "codebase", str_or_empty(ss, "codebase"), "owner", owner, owner_len);
    if (!p->ctx) {
        snprintf(param, psize, "body");
        snprintf(msg, msize, "out of memory");
        return -1;
    }
    return 0;
}

/* A v1 event around data (stolen). id is stable for the build and phase, so a retried post is the
 * same event downstream. Returns NULL on allocation failure. */
static json_t *event_new(const post *p, const char *type, const char *phase, double t, json_t *data)
{
    char id[160], ts[32], subject[48];
    long long buildid = json_integer_value(json_object_get(p->build, "buildid"));
    snprintf(id, sizeof(id), "statuspush:%s:%lld:%s", p->master, buildid, phase);
    fh_time_rfc3339((int64_t)llround(t * 1000.0), ts, sizeof(ts));
    snprintf(subject, sizeof(subject), "builds/%lld", buildid);
    char source[96];
    snprintf(source, sizeof(source), "buildbot://%s", p->master);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o}", "specversion", "1.0", "id", id,
                     "source", source, "type", type, "time", ts, "subject", subject,
                     "datacontenttype", "application/json", "master", p->master, "seq",
                     (json_int_t)0, "data", data); /* seq is stamped when produced */
}

/* The worker's name: the "workername" property, else what firehose_buildbot says for a worker
 * whose name it cannot look up ("worker-<workerid>", or "unknown" without a workerid). */
static const char *worker_of(const post *p, char *buf, size_t size)
{
    const char *w = prop_str(p->props, "workername");
    const json_t *id = json_object_get(p->build, "workerid");
    if (w && *w)
        return w;
    if (!json_is_integer(id))
        return "unknown";
    snprintf(buf, size, "worker-%lld", (long long)json_integer_value(id));
    return buf;
}

/* property.set for the properties the post carries, or NULL (and *ok 0 on allocation failure). */
static json_t *props_event(const post *p, int *ok)
{
    json_t *d;
    if (!p->props || !json_object_size(p->props))
        return NULL;
    if (!(d = json_deep_copy(p->ctx)) || json_object_set(d, "properties", (json_t *)p->props)) {
        json_decref(d);
        *ok = 0;
        return NULL;
    }
    return event_new(p, "property.set", p->complete ? "properties-finished" : "properties-started",
                     p->complete ? p->complete_at : p->started_at, d);
}

/* The events a post stands for, in the order firehose_buildbot emits them: build.started, then
 * the properties; the final properties, then build.finished. Returns how many were made (0 on
 * allocation failure). */
static size_t post_events(post *p, json_t **evs)
{
    size_t n = 0;
    int ok = 1;
    char wbuf[32];
    json_t *d;
    if (p->complete && (evs[n] = props_event(p, &ok)))
        n++;
    if (!ok || !(d = json_deep_copy(p->ctx)))
        return 0;
    json_object_set(d, "number", json_object_get(p->build, "number"));
    if (!p->complete) {
        json_object_set_new(d, "worker", json_string(worker_of(p, wbuf, sizeof(wbuf))));
        json_object_set_new(d, "started_at", json_real(p->started_at));
        evs[n++] = event_new(p, "build.started", "started", p->started_at, d);
        if ((evs[n] = props_event(p, &ok)))
            n++;
    } else {
        json_object_set_new(d, "complete_at", json_real(p->complete_at));
        json_object_set(d, "results", json_object_get(p->build, "results"));
        json_object_set_new(d, "state_string", json_string(str_or_empty(p->build, "state_string")));
        /* complete_at minus started_at, unrounded: the same double firehose_buildbot computes */
        double dur = p->complete_at - p->started_at;
        json_object_set_new(d, "duration_s", json_real(dur > 0 ? dur : 0.0));
        evs[n++] = event_new(p, "build.finished", "finished", p->complete_at, d);
    }
    if (!ok)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!evs[i])
            return 0;
    return n;
}

static void h_ingest(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_statuspush *sp = ctx;
    fh_broker *b = sp->b;
    char param[64] = "body", msg[320], err[384], keys[MAX_EVENTS][64];
    const char *topics[MAX_EVENTS];
    size_t klen[MAX_EVENTS];
    json_error_t jerr;
    json_t *evs[MAX_EVENTS] = {0}, *build = NULL;
    post p = {0};
    size_t n = 0;
    resp->max_age = -1;
    resp->no_etag = 1;
    fh_metric_add(sp->posts, 1);
    if (!sp->rk) {
        fh_http_error(resp, 503, "disabled", NULL, "ingest.statuspush is off");
        return;
    }
    p.master = fh_http_query(req, "master");
    if (!p.master || !master_name_ok(p.master)) {
        fh_metric_add(sp->rejected, 1);
        fh_http_error(resp, 400, "bad_parameter", "master",
                      "master: name the posting master (1-64 of A-Z a-z 0-9 . _ -), e.g. "
                      "?master=master-1");
        return;
    }
    build = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(build)) {
        fh_metric_add(sp->rejected, 1);
        if (build)
            fh_http_error(resp, 400, "bad_body", "body",
                          "body: expected the build object "
                          "HttpStatusPush sends");
        else
            fh_http_error(resp, 400, "bad_body", "body", "body: not JSON: %s (column %d)",
                          jerr.text, jerr.column);
        goto out;
    }
    if (post_read(&p, build, param, sizeof(param), msg, sizeof(msg))) {
        fh_metric_add(sp->rejected, 1);
        fh_http_error(resp, 400, "bad_body", param, "%s: %s", param, msg);
        goto out;
    }
    if (!(n = post_events(&p, evs))) {
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        goto out;
    }
    /* Each event must pass the contract as any producer's would; a failure names the member.
     * The key and topic come from the same decode (seq, stamped later, changes neither). */
    for (size_t i = 0; i < n; i++) {
        fh_event ev;
        if (fh_event_from_json(b->contract, evs[i], &ev, err, sizeof(err))) {
            /* "data.results: must be <= 6" came from body.results: name that member */
            size_t plen = strcspn(err, ":");
            if (strncmp(err, "data.", 5) == 0 && plen - 5 < sizeof(param) - 6)
                snprintf(param, sizeof(param), "body.%.*s", (int)(plen - 5), err + 5);
            fh_metric_add(sp->rejected, 1);
            fh_http_error(resp, 400, "bad_body", param, "%s: the %s event it makes is invalid: %s",
                          param, json_string_value(json_object_get(evs[i], "type")), err);
            goto out;
        }
        klen[i] = fh_event_key(&ev, keys[i], sizeof(keys[i]));
        topics[i] = fh_kafka_topic(&b->cfg, fh_event_topic(&ev));
        fh_event_clear(&ev);
    }

    pthread_mutex_lock(&sp->mu);
    sp->outstanding = 0;
    sp->failed = 0;
    for (size_t i = 0; i < n; i++) {
        long long seq = fh_seq_next(&sp->seqs, p.master, (long long)fh_now_ms());
        if (seq < 0) {
            sp->failed++;
            snprintf(sp->failure, sizeof(sp->failure), "more than %d masters", MAX_MASTERS);
            break;
        }
        json_object_set_new(evs[i], "seq", json_integer(seq));
        char *text = json_dumps(evs[i], JSON_COMPACT);
        if (!text) {
            sp->failed++;
            snprintf(sp->failure, sizeof(sp->failure), "out of memory");
            break;
        }
        rd_kafka_resp_err_t kerr = rd_kafka_producev(
            sp->rk, RD_KAFKA_V_TOPIC(topics[i]), RD_KAFKA_V_KEY(keys[i], klen[i]),
            RD_KAFKA_V_VALUE(text, strlen(text)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1), RD_KAFKA_V_END);
        if (kerr) {
            free(text);
            sp->failed++;
            snprintf(sp->failure, sizeof(sp->failure), "%s", rd_kafka_err2str(kerr));
            break;
        }
        sp->outstanding++;
    }
    /* Answer only once Kafka has the events, so the reporter's retry covers a failure. */
    uint64_t deadline = fh_mono_ns() + (uint64_t)DELIVERY_TIMEOUT_MS * 1000000ULL;
    while (sp->outstanding > 0 && fh_mono_ns() < deadline)
        rd_kafka_poll(sp->rk, 50);
    int failed = sp->failed || sp->outstanding > 0;
    if (failed) {
        fh_log(FH_LOG_WARN, "statuspush.failed", "master=%s error=\"%s\"", p.master,
               sp->outstanding > 0 ? "delivery timed out" : sp->failure);
        fh_http_error(resp, 503, "unavailable", NULL, "Kafka did not take the events: %s",
                      sp->outstanding > 0 ? "delivery timed out" : sp->failure);
    }
    pthread_mutex_unlock(&sp->mu);
    if (failed)
        goto out;
    fh_metric_add(sp->produced, (long long)n);
    resp->status = 202;
    fh_buf_printf(&resp->body, "{\"accepted\":%zu,\"ids\":[", n);
    for (size_t i = 0; i < n; i++) {
        fh_buf_printf(&resp->body, "%s", i ? "," : "");
        fh_buf_json_str(&resp->body, json_string_value(json_object_get(evs[i], "id")));
    }
    fh_buf_printf(&resp->body, "]}\n");
out:
    for (size_t i = 0; i < MAX_EVENTS; i++)
        json_decref(evs[i]);
    json_decref(p.ctx);
    json_decref(build);
}

size_t statuspush_routes(fh_statuspush *sp, fh_http_route *routes)
{
    routes[0] =
        (fh_http_route){"POST", "/api/v1/ingest/buildbot", FH_SCOPE_INGEST, "master", h_ingest, sp};
    return FH_STATUSPUSH_ROUTES;
}
