#include "ingest_ci.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fh_ci.h"
#include "fh_dedup.h"
#include "fh_log.h"
#include "fh_seq.h"

#define MAX_MASTERS 256           /* CI hosts with a seq of their own */
#define DELIVERY_WAIT_MS 15000    /* librdkafka gives up on a record after message.timeout.ms */
#define BUSY_WAIT_MS 15000        /* a redelivery waits this long for its first copy to end */
#define UNAUTHORIZED_LOG_MS 60000 /* one warning a minute per system for refused signatures */

static const char *const producer_defaults[] = {
    "enable.idempotence=true",  "acks=all", "compression.type=lz4", "linger.ms=1", "log_level=4",
    "message.timeout.ms=10000", NULL,
};

struct fh_ingest_ci;

typedef struct ci_system {
    struct fh_ingest_ci *ci; /* the handle it belongs to */
    fh_ci_system sys;
    const char *name;       /* "github" */
    char path[32];          /* "/api/v1/ingest/github" */
    const char *secret_key; /* the config key of secret, for messages */
    const char *sig_header; /* X-Hub-Signature-256, X-Gitlab-Token */
    const char *event_header;
    const char *secret; /* "" when the endpoint is off */
    fh_ci_opts opts;
    fh_metric *posts, *rejected, *events, *ignored, *duplicates;
    _Atomic long long last_unauthorized_log;
} ci_system;

/* The handle. mu guards the delivery-id memory and the seq table; cv wakes a redelivery that
 * waits for its first copy. The producer is shared by every HTTP thread; each request waits for
 * its own records' delivery reports (delivery below), whichever thread's poll serves them. */
struct fh_ingest_ci {
    fh_broker *b;
    rd_kafka_t *rk;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int cv_made; /* cv exists (made when an endpoint is on) */
    fh_dedup *dedup;
    fh_seq_table seqs; /* over masters, under mu */
    fh_seq_entry masters[MAX_MASTERS];
    ci_system systems[2];
    fh_http_body_cap caps[2];
    fh_metric *dedup_entries, *dedup_evicted;
};

/* One request's records in flight. The request and each record hold a reference, so a request
 * that gives up waiting leaves it to the last delivery report to free. */
typedef struct delivery {
    _Atomic int refs, left, failed;
    _Atomic int have_failure;
    char failure[160]; /* the first error, written once (have_failure) */
} delivery;

static void delivery_unref(delivery *d)
{
    if (atomic_fetch_sub(&d->refs, 1) == 1)
        free(d);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    delivery *d = m->_private;
    (void)rk;
    (void)opaque;
    if (!d)
        return;
    if (m->err) {
        atomic_fetch_add(&d->failed, 1);
        if (!atomic_exchange(&d->have_failure, 1))
            snprintf(d->failure, sizeof(d->failure), "%s", rd_kafka_err2str(m->err));
    }
    atomic_fetch_sub(&d->left, 1);
    delivery_unref(d);
}

static fh_err start(fh_ingest_ci *ci, fh_broker *b, char *errbuf, size_t errsize);

fh_err ingest_ci_start(fh_broker *b, fh_ingest_ci **out, char *errbuf, size_t errsize)
{
    *out = NULL;
    fh_ingest_ci *ci = calloc(1, sizeof(*ci));
    if (!ci)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "ingest_ci: out of memory");
    pthread_mutex_init(&ci->mu, NULL);
    ci->seqs = (fh_seq_table){ci->masters, 0, MAX_MASTERS};
    fh_err rc = start(ci, b, errbuf, errsize);
    if (rc) {
        ingest_ci_free(ci);
        return rc;
    }
    *out = ci;
    return FH_OK;
}

static fh_err start(fh_ingest_ci *ci, fh_broker *b, char *errbuf, size_t errsize)
{
    static const char *const labels[2] = {"system=\"github\"", "system=\"gitlab\""};
    char err[512];
    pthread_condattr_t ca;
    ci->b = b;
    static const struct {
        fh_ci_system sys;
        const char *name, *secret_key, *sig_header, *event_header;
    } known[2] = {
        {FH_CI_GITHUB, "github", "ingest.github.secret", "X-Hub-Signature-256", "X-GitHub-Event"},
        {FH_CI_GITLAB, "gitlab", "ingest.gitlab.token", "X-Gitlab-Token", "X-Gitlab-Event"},
    };
    char repo_key[32];
    for (int i = 0; i < 2; i++) {
        snprintf(repo_key, sizeof(repo_key), "ingest.%s.repository", known[i].name);
        ci->systems[i] = (ci_system){
            .ci = ci,
            .sys = known[i].sys,
            .name = known[i].name,
            .secret_key = known[i].secret_key,
            .sig_header = known[i].sig_header,
            .event_header = known[i].event_header,
            .secret = fh_config_str(&b->cfg, known[i].secret_key),
            .opts = {.repo_field = fh_config_str(&b->cfg, repo_key)},
        };
        snprintf(ci->systems[i].path, sizeof(ci->systems[i].path), "/api/v1/ingest/%s",
                 known[i].name);
    }
    for (int i = 0; i < 2; i++) {
        ci_system *s = &ci->systems[i];
        if (!fh_ci_repo_field_ok(s->sys, s->opts.repo_field))
            return fh_errf(
                errbuf, errsize, FH_ERR_CONFIG, "ingest.%s.repository: expected %s", s->name,
                i == 0 ? "html_url, clone_url or ssh_url" : "web_url, git_http_url or git_ssh_url");
        s->posts = fh_metric_new("firehose_ingest_ci_posts_total", labels[i],
                                 "GitHub and GitLab webhook deliveries received", 0);
        s->rejected = fh_metric_new("firehose_ingest_ci_rejected_total", labels[i],
                                    "GitHub and GitLab deliveries refused with a 4xx", 0);
        s->events = fh_metric_new("firehose_ingest_ci_events_total", labels[i],
                                  "events produced from GitHub and GitLab deliveries", 0);
        s->ignored = fh_metric_new(
            "firehose_ingest_ci_ignored_total", labels[i],
            "GitHub and GitLab deliveries acknowledged without events (types, actions and "
            "statuses that map to nothing)",
            0);
        s->duplicates =
            fh_metric_new("firehose_ingest_ci_duplicates_total", labels[i],
                          "GitHub and GitLab deliveries answered from the delivery-id memory", 0);
        ci->caps[i] =
            (fh_http_body_cap){s->path, (size_t)fh_config_int(&b->cfg, "ingest.ci.max_body_bytes")};
    }
    ci->dedup_entries = fh_metric_new("firehose_ingest_ci_dedup_entries", NULL,
                                      "delivery ids held by the delivery-id memory", 1);
    ci->dedup_evicted =
        fh_metric_new("firehose_ingest_ci_dedup_evicted_total", NULL,
                      "delivery ids forgotten before their TTL because the memory was full", 0);
    if (!*ci->systems[0].secret && !*ci->systems[1].secret)
        return FH_OK;
    if (!(ci->dedup = fh_dedup_new((size_t)fh_config_int(&b->cfg, "ingest.ci.dedup_entries"),
                                   fh_config_int(&b->cfg, "ingest.ci.dedup_ttl_s") * 1000)))
        return FH_ERR_NOMEM;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ci->cv, &ca);
    pthread_condattr_destroy(&ca);
    ci->cv_made = 1;
    fh_err e = fh_kafka_producer(&b->cfg, b->bootstrap, producer_defaults, on_delivery, NULL,
                                 &ci->rk, err, sizeof(err));
    if (e)
        return fh_errf(errbuf, errsize, e, "ingest_ci producer: %s", err);
    fh_log(FH_LOG_INFO, "ingest_ci.ready", "github=%s gitlab=%s",
           *ci->systems[0].secret ? "on" : "off", *ci->systems[1].secret ? "on" : "off");
    return FH_OK;
}

void ingest_ci_free(fh_ingest_ci *ci)
{
    if (!ci)
        return;
    fh_kafka_producer_free(ci->rk, 5000);
    fh_dedup_free(ci->dedup);
    if (ci->cv_made)
        pthread_cond_destroy(&ci->cv);
    pthread_mutex_destroy(&ci->mu);
    free(ci);
}

/* A header value fit to quote in an answer and to key the memory: 1-max printable ASCII. */
static int header_ok(const char *v, size_t max)
{
    size_t n = 0;
    for (; v && v[n]; n++)
        if (v[n] < 0x20 || v[n] > 0x7e)
            return 0;
    return v && n > 0 && n <= max;
}

static void note_unauthorized(ci_system *s, const char *why)
{
    long long now = (long long)fh_now_ms(), last = atomic_load(&s->last_unauthorized_log);
    fh_metric_add(s->rejected, 1);
    if (now - last >= UNAUTHORIZED_LOG_MS &&
        atomic_compare_exchange_strong(&s->last_unauthorized_log, &last, now))
        fh_log(FH_LOG_WARN, "ingest_ci.unauthorized", "system=%s reason=\"%s\" note=\"%s\"",
               s->name, why, "further refusals are counted, logged once a minute");
}

/* Claims the delivery key in the memory: FH_DEDUP_NEW (the caller must end it), SEEN, or BUSY
 * once BUSY_WAIT_MS passed with another request still holding it. */
static int dedup_claim(fh_ingest_ci *ci, const char *key, size_t len)
{
    struct timespec until;
    int r;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += BUSY_WAIT_MS / 1000;
    pthread_mutex_lock(&ci->mu);
    while ((r = fh_dedup_begin(ci->dedup, key, len, fh_now_ms())) == FH_DEDUP_BUSY)
        if (pthread_cond_timedwait(&ci->cv, &ci->mu, &until) == ETIMEDOUT)
            break;
    fh_metric_set(ci->dedup_entries, (long long)fh_dedup_count(ci->dedup));
    fh_metric_set(ci->dedup_evicted, (long long)fh_dedup_evicted(ci->dedup));
    pthread_mutex_unlock(&ci->mu);
    return r;
}

/* Ends a claim: kept (the events are in Kafka, or there were none) or forgotten (a retry must
 * produce them). */
static void dedup_end(fh_ingest_ci *ci, const char *key, size_t len, int keep)
{
    pthread_mutex_lock(&ci->mu);
    if (keep)
        fh_dedup_done(ci->dedup, key, len, fh_now_ms());
    else
        fh_dedup_forget(ci->dedup, key, len);
    fh_metric_set(ci->dedup_entries, (long long)fh_dedup_count(ci->dedup));
    pthread_cond_broadcast(&ci->cv);
    pthread_mutex_unlock(&ci->mu);
}

/* Produces evs (validated; keys and topics given) in order and waits for Kafka's
 * acknowledgements. Returns 0, or -1 with the reason in why. */
static int produce(fh_ingest_ci *ci, json_t *evs, char keys[][64], size_t *klen,
                   const char **topics, char *why, size_t wsize)
{
    size_t n = json_array_size(evs), i;
    delivery *d = calloc(1, sizeof(*d));
    int rc = 0;
    if (!d) {
        snprintf(why, wsize, "out of memory");
        return -1;
    }
    atomic_store(&d->refs, 1);
    pthread_mutex_lock(&ci->mu);
    for (i = 0; i < n; i++) {
        json_t *ev = json_array_get(evs, i);
        long long seq = fh_seq_next(&ci->seqs, json_string_value(json_object_get(ev, "master")),
                                    (long long)fh_now_ms());
        if (seq < 0)
            break;
        json_object_set_new(ev, "seq", json_integer(seq));
    }
    pthread_mutex_unlock(&ci->mu);
    if (i < n) {
        snprintf(why, wsize, "more than %d CI hosts", MAX_MASTERS);
        delivery_unref(d);
        return -1;
    }
    for (i = 0; i < n; i++) {
        char *text = json_dumps(json_array_get(evs, i), JSON_COMPACT);
        if (!text) {
            snprintf(why, wsize, "out of memory");
            rc = -1;
            break;
        }
        atomic_fetch_add(&d->refs, 1);
        atomic_fetch_add(&d->left, 1);
        rd_kafka_resp_err_t kerr = rd_kafka_producev(
            ci->rk, RD_KAFKA_V_TOPIC(topics[i]), RD_KAFKA_V_KEY(keys[i], klen[i]),
            RD_KAFKA_V_VALUE(text, strlen(text)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
            RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
        if (kerr) {
            free(text);
            atomic_fetch_sub(&d->left, 1);
            atomic_fetch_sub(&d->refs, 1);
            snprintf(why, wsize, "%s", rd_kafka_err2str(kerr));
            rc = -1;
            break;
        }
    }
    /* Answer only once Kafka has the records, so a 5xx leaves the sender's redelivery to it. */
    uint64_t deadline = fh_mono_ns() + (uint64_t)DELIVERY_WAIT_MS * 1000000ULL;
    while (atomic_load(&d->left) > 0 && fh_mono_ns() < deadline)
        rd_kafka_poll(ci->rk, 5);
    if (!rc && atomic_load(&d->left) > 0) {
        snprintf(why, wsize, "delivery timed out");
        rc = -1;
    } else if (!rc && atomic_load(&d->failed)) {
        snprintf(why, wsize, "%s", d->failure);
        rc = -1;
    }
    delivery_unref(d);
    return rc;
}

/* Validates each event against the contract and finds its key and topic. Returns 0, or sets a
 * 400 on resp (the mapping made an event the contract refuses: a bug worth reporting). */
static int check_events(fh_ingest_ci *ci, json_t *evs, char keys[][64], size_t *klen,
                        const char **topics, fh_http_response *resp)
{
    char err[384];
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        fh_event e;
        if (fh_event_from_json(ci->b->contract, ev, &e, err, sizeof(err))) {
            fh_http_error(resp, 400, "bad_body", "body",
                          "body: the %s event it maps to is invalid: %s",
                          json_string_value(json_object_get(ev, "type")), err);
            return -1;
        }
        klen[i] = fh_event_key(&e, keys[i], sizeof(keys[i]));
        topics[i] = fh_kafka_topic(&ci->b->cfg, fh_event_topic(&e));
        fh_event_clear(&e);
    }
    return 0;
}

/* The delivery id that keys the memory: GitHub's X-GitHub-Delivery (required); GitLab's
 * Idempotency-Key (stable across GitLab's retries), else X-Gitlab-Event-UUID; NULL when GitLab
 * sends neither. Sets a 400 and returns -1 for a missing or malformed one. */
static int delivery_id(const ci_system *s, fh_http_request *req, fh_http_response *resp,
                       const char **out)
{
    const char *names[2] = {"X-GitHub-Delivery", NULL};
    if (s->sys == FH_CI_GITLAB) {
        names[0] = "Idempotency-Key";
        names[1] = "X-Gitlab-Event-UUID";
    }
    *out = NULL;
    for (int i = 0; i < 2 && names[i] && !*out; i++) {
        const char *v = fh_http_header(req, names[i]);
        if (!v)
            continue;
        if (!header_ok(v, 128)) {
            fh_http_error(resp, 400, "bad_header", names[i],
                          "%s: expected 1-128 printable ASCII characters", names[i]);
            return -1;
        }
        *out = v;
    }
    if (!*out && s->sys == FH_CI_GITHUB) {
        fh_http_error(resp, 400, "bad_header", names[0],
                      "%s: required (GitHub sends it with every delivery)", names[0]);
        return -1;
    }
    return 0;
}

static void h_ingest(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    ci_system *s = ctx;
    fh_ingest_ci *ci = s->ci;
    const char *ct, *event, *did;
    char dkey[160], why[192];
    size_t dlen = 0;
    int claimed = 0, keep = 0;
    json_t *body = NULL, *evs = NULL;
    char(*keys)[64] = NULL;
    size_t *klen = NULL;
    const char **topics = NULL;
    json_error_t jerr;
    fh_ci_why w;

    resp->max_age = -1;
    resp->no_etag = 1;
    fh_metric_add(s->posts, 1);
    if (!*s->secret || !ci->rk) {
        fh_http_error(resp, 503, "disabled", NULL, "%s is not set: this endpoint is off",
                      s->secret_key);
        return;
    }
    if ((ct = fh_http_header(req, "Content-Type")) && strncasecmp(ct, "application/json", 16)) {
        fh_metric_add(s->rejected, 1);
        fh_http_error(resp, 415, "unsupported_media_type", "Content-Type",
                      "Content-Type: expected application/json (set the webhook's content type "
                      "to application/json)");
        return;
    }
    int v = s->sys == FH_CI_GITHUB
                ? fh_ci_github_verify(s->secret, fh_http_header(req, s->sig_header), req->body,
                                      req->body_len)
                : fh_ci_gitlab_verify(s->secret, fh_http_header(req, s->sig_header));
    if (v) {
        note_unauthorized(s, v == -1 ? "missing or malformed" : "mismatch");
        if (v == -1)
            fh_http_error(resp, 401, "unauthorized", s->sig_header, "%s: required%s", s->sig_header,
                          s->sys == FH_CI_GITHUB ? ", as sha256= and 64 hex digits" : "");
        else
            fh_http_error(resp, 401, "unauthorized", s->sig_header, "%s: does not match %s%s",
                          s->sig_header, s->sys == FH_CI_GITHUB ? "the body under " : "",
                          s->secret_key);
        return;
    }
    event = fh_http_header(req, s->event_header);
    if (!header_ok(event, 64)) {
        fh_metric_add(s->rejected, 1);
        fh_http_error(resp, 400, "bad_header", s->event_header,
                      "%s: required, 1-64 printable ASCII characters", s->event_header);
        return;
    }
    if (delivery_id(s, req, resp, &did)) {
        fh_metric_add(s->rejected, 1);
        return;
    }
    if (did) {
        dlen = (size_t)snprintf(dkey, sizeof(dkey), "%s:%s", s->name, did);
        int r = dedup_claim(ci, dkey, dlen);
        if (r == FH_DEDUP_SEEN) {
            fh_metric_add(s->duplicates, 1);
            resp->status = 200;
            fh_buf_printf(&resp->body, "{\"accepted\":0,\"ids\":[],\"duplicate\":");
            fh_buf_json_str(&resp->body, did);
            fh_buf_printf(&resp->body, "}\n");
            return;
        }
        if (r == FH_DEDUP_BUSY) {
            fh_http_error(resp, 409, "conflict", NULL,
                          "delivery %s is still being handled by another request; retry", did);
            return;
        }
        claimed = 1;
    }

    body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        fh_metric_add(s->rejected, 1);
        fh_http_error(resp, 400, "bad_body", "body", "body: not JSON: %s (column %d)", jerr.text,
                      jerr.column);
        goto out;
    }
    if (!(evs = json_array())) {
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        goto out;
    }
    switch (fh_ci_map(s->sys, event, body, &s->opts, evs, &w)) {
    case FH_CI_IGNORED:
        fh_metric_add(s->ignored, 1);
        keep = 1;
        resp->status = 202;
        fh_buf_printf(&resp->body, "{\"accepted\":0,\"ids\":[],\"ignored\":");
        fh_buf_json_str(&resp->body, w.msg);
        fh_buf_printf(&resp->body, "}\n");
        goto out;
    case FH_CI_BAD:
        if (!w.param[0]) {
            fh_http_error(resp, 503, "unavailable", NULL, "%s", w.msg);
            goto out;
        }
        fh_metric_add(s->rejected, 1);
        fh_http_error(resp, 400, "bad_body", w.param, "%s: %s", w.param, w.msg);
        goto out;
    case FH_CI_EVENTS:
        break;
    }
    size_t n = json_array_size(evs);
    keys = calloc(n, sizeof(*keys));
    klen = calloc(n, sizeof(*klen));
    topics = calloc(n, sizeof(*topics));
    if (!keys || !klen || !topics) {
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        goto out;
    }
    if (check_events(ci, evs, keys, klen, topics, resp)) {
        fh_metric_add(s->rejected, 1);
        goto out;
    }
    if (produce(ci, evs, keys, klen, topics, why, sizeof(why))) {
        fh_log(FH_LOG_WARN, "ingest_ci.failed", "system=%s delivery=%s error=\"%s\"", s->name,
               did ? did : "-", why);
        fh_http_error(resp, 503, "unavailable", NULL, "Kafka did not take the events: %s", why);
        goto out;
    }
    keep = 1;
    fh_metric_add(s->events, (long long)n);
    resp->status = 202;
    fh_buf_printf(&resp->body, "{\"accepted\":%zu,\"ids\":[", n);
    for (size_t i = 0; i < n; i++) {
        fh_buf_printf(&resp->body, "%s", i ? "," : "");
        fh_buf_json_str(&resp->body,
                        json_string_value(json_object_get(json_array_get(evs, i), "id")));
    }
    fh_buf_printf(&resp->body, "]}\n");
out:
    if (claimed)
        dedup_end(ci, dkey, dlen, keep);
    free(keys);
    free(klen);
    free(topics);
    json_decref(evs);
    json_decref(body);
}

size_t ingest_ci_routes(fh_ingest_ci *ci, fh_http_route *routes)
{
    for (int i = 0; i < 2; i++)
        routes[i] = (fh_http_route){"POST", ci->systems[i].path, 0, "", h_ingest, &ci->systems[i]};
    return FH_INGEST_CI_ROUTES;
}

size_t ingest_ci_body_caps(fh_ingest_ci *ci, const fh_http_body_cap **caps)
{
    *caps = ci->caps;
    return 2;
}
