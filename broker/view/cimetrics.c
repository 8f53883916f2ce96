/* view/cimetrics: see cimetrics.h. Thread model: the view thread observes and stages, and folds
 * the stage into the histograms at commit; HTTP threads render. ci->mu guards the builder slots
 * and the histograms; ci->render_mu serialises renders and guards the cached text, so
 * concurrent scrapes within the TTL share one set of queries. */
#include "cimetrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_log.h"
#include "internal.h"

#define NB 12
static const double le[2][NB] = {
    /* queue wait, s */
    {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200},
    /* build duration, s */
    {10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 14400},
};
enum { H_WAIT = 0, H_DURATION = 1 };

typedef struct ci_hist {
    long long bucket[NB], count;
    double sum;
} ci_hist;

typedef struct ci_builder {
    char *name;
    ci_hist h[2];
} ci_builder;

/* Names of builders in _other remembered to count them once each; past this many the count
 * stops (a lower bound; the help text says so). */
#define OTHER_NAMES 1024

typedef struct ci_obs {
    int slot; /* -1: _other */
    int kind;
    double v;
} ci_obs;

/* The view's CI metrics (v->ci), made by view_ci_init and freed by view_ci_free. */
struct view_ci {
    pthread_mutex_t mu, render_mu;
    long long max_builders, max_state, ttl_ms;
    /* under mu */
    ci_builder *b;
    size_t nb;
    ci_hist other[2];         /* _other's histograms */
    long long other_builders; /* distinct names folded into _other: exact up to OTHER_NAMES */
    char *other_seen[OTHER_NAMES];
    /* view thread only */
    ci_obs *stage;
    size_t nstage, stage_cap;
    /* under render_mu */
    fh_buf cache;
    int64_t cache_at_ms;
    int cached;
};

int view_ci_init(fh_view *v, char *errbuf, size_t errsize)
{
    view_ci *ci = calloc(1, sizeof(*ci));
    if (!ci)
        goto oom;
    v->ci = ci;
    pthread_mutex_init(&ci->mu, NULL);
    pthread_mutex_init(&ci->render_mu, NULL);
    ci->max_builders = v->cfg.ci_max_builders;
    ci->max_state = v->cfg.ci_max_state_series;
    ci->ttl_ms = v->cfg.ci_ttl_ms;
    ci->stage_cap = (size_t)v->cfg.batch_max;
    fh_buf_init(&ci->cache, 64u << 20);
    if (!(ci->b = calloc((size_t)ci->max_builders, sizeof(*ci->b))) ||
        !(ci->stage = malloc(ci->stage_cap * sizeof(*ci->stage))))
        goto oom;
    return 0;
oom:
    snprintf(errbuf, errsize, "out of memory for the CI metrics");
    return -1;
}

void view_ci_free(fh_view *v)
{
    view_ci *ci = v->ci;
    if (!ci)
        return;
    for (size_t i = 0; i < ci->nb; i++)
        free(ci->b[i].name);
    for (size_t i = 0; i < OTHER_NAMES && ci->other_seen[i]; i++)
        free(ci->other_seen[i]);
    free(ci->b);
    free(ci->stage);
    fh_buf_free(&ci->cache);
    pthread_mutex_destroy(&ci->mu);
    pthread_mutex_destroy(&ci->render_mu);
    free(ci);
    v->ci = NULL;
}

/* The slot of builder name, made when missing and room is left; -1: it goes to _other. Under
 * ci->mu. */
static int slot_of(view_ci *ci, const char *name)
{
    for (size_t i = 0; i < ci->nb; i++)
        if (strcmp(ci->b[i].name, name) == 0)
            return (int)i;
    if (ci->b && ci->nb < (size_t)ci->max_builders) {
        char *copy = strdup(name);
        if (copy) {
            memset(&ci->b[ci->nb], 0, sizeof(ci->b[0]));
            ci->b[ci->nb].name = copy;
            return (int)ci->nb++;
        }
    }
    size_t n = sizeof(ci->other_seen) / sizeof(ci->other_seen[0]), i = 0;
    while (i < n && ci->other_seen[i] && strcmp(ci->other_seen[i], name) != 0)
        i++;
    if (i < n && !ci->other_seen[i] && (ci->other_seen[i] = strdup(name)))
        ci->other_builders++;
    return -1;
}

static void stage(view_ci *ci, const char *builder, int kind, double v)
{
    if (!builder || !ci->stage || ci->nstage >= ci->stage_cap || !isfinite(v))
        return;
    if (v < 0)
        v = 0;
    pthread_mutex_lock(&ci->mu);
    int s = slot_of(ci, builder);
    pthread_mutex_unlock(&ci->mu);
    ci->stage[ci->nstage++] = (ci_obs){s, kind, v};
}

void view_ci_observe(fh_view *v, const fh_event *ev)
{
    view_ci *ci = v->ci;
    sqlite3 *db = v->db;
    double dur, started;
    if (ev->type == FH_EV_BUILD_FINISHED) {
        if (fh_event_num(ev, "duration_s", &dur) == 0)
            stage(ci, fh_event_str(ev, "builder"), H_DURATION, dur);
        return;
    }
    if (ev->type != FH_EV_BUILD_STARTED || fh_event_num(ev, "started_at", &started))
        return;
    const char *builder = fh_event_str(ev, "builder");
    /* Queue wait: from the request's submission to this build's start. The request's events
     * share the build's partition key, so buildrequest.new was applied before this. */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT submitted_at FROM buildrequests WHERE buildrequestid = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, ev->buildrequestid);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        stage(ci, builder, H_WAIT, started - sqlite3_column_double(st, 0));
    sqlite3_finalize(st);
}

static void hist_add(ci_hist *h, int kind, double v)
{
    for (int i = 0; i < NB; i++)
        if (v <= le[kind][i])
            h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void view_ci_commit(fh_view *v)
{
    view_ci *ci = v->ci;
    if (!ci->nstage)
        return;
    pthread_mutex_lock(&ci->mu);
    for (size_t i = 0; i < ci->nstage; i++) {
        ci_obs *o = &ci->stage[i];
        hist_add(o->slot >= 0 ? &ci->b[o->slot].h[o->kind] : &ci->other[o->kind], o->kind, o->v);
    }
    pthread_mutex_unlock(&ci->mu);
    ci->nstage = 0;
}

void view_ci_abort(fh_view *v)
{
    view_ci *ci = v->ci;
    ci->nstage = 0;
}

/* ---- rendering -------------------------------------------------------------------------- */

/* Appends v as a Prometheus label value (backslash, quote and newline escaped). */
static int label(fh_buf *out, const char *v)
{
    size_t from = 0, i = 0;
    for (; v[i]; i++) {
        const char *e = v[i] == '\\' ? "\\\\" : v[i] == '"' ? "\\\"" : v[i] == '\n' ? "\\n" : NULL;
        if (!e)
            continue;
        if (fh_buf_append(out, v + from, i - from) || fh_buf_append(out, e, 2))
            return -1;
        from = i + 1;
    }
    return fh_buf_append(out, v + from, i - from);
}

static int family(fh_buf *out, const char *name, const char *type, const char *help)
{
    return fh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One gauge sample: name{builder="b"[,branch="x"]} v. */
static int sample(fh_buf *out, const char *name, const char *builder, const char *branch, double v)
{
    return fh_buf_printf(out, "%s{builder=\"", name) || label(out, builder) ||
           (branch && (fh_buf_printf(out, "\",branch=\"") || label(out, branch))) ||
           fh_buf_printf(out, "\"} %.17g\n", v);
}

static int hist_text(fh_buf *out, const char *name, const char *builder, int kind, const ci_hist *h)
{
    int rc = 0;
    for (int i = 0; i < NB && !rc; i++)
        rc = fh_buf_printf(out, "%s_bucket{builder=\"", name) || label(out, builder) ||
             fh_buf_printf(out, "\",le=\"%g\"} %lld\n", le[kind][i], h->bucket[i]);
    return rc || fh_buf_printf(out, "%s_bucket{builder=\"", name) || label(out, builder) ||
           fh_buf_printf(out, "\",le=\"+Inf\"} %lld\n%s_sum{builder=\"", h->count, name) ||
           label(out, builder) ||
           fh_buf_printf(out, "\"} %.17g\n%s_count{builder=\"", h->sum, name) ||
           label(out, builder) || fh_buf_printf(out, "\"} %lld\n", h->count);
}

/* The gauges read from the view, per slot (index nb: _other). */
typedef struct ci_gauges {
    size_t n; /* slots + 1 */
    long long *pending, *running;
    double *oldest; /* earliest submitted_at, 0 when none */
} ci_gauges;

/* Runs sql (one builder per row: builder, count[, min time]) and adds each row to its slot. */
static int read_counts(view_ci *ci, sqlite3 *db, const char *sql, long long *count, double *oldest,
                       size_t n)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *b = (const char *)sqlite3_column_text(st, 0);
        pthread_mutex_lock(&ci->mu);
        int s = slot_of(ci, b ? b : "");
        pthread_mutex_unlock(&ci->mu);
        size_t i = s >= 0 && (size_t)s < n - 1 ? (size_t)s : n - 1;
        count[i] += sqlite3_column_int64(st, 1);
        if (oldest) {
            double t = sqlite3_column_double(st, 2);
            if (t > 0 && (oldest[i] == 0 || t < oldest[i]))
                oldest[i] = t;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Appends the state series (green and since) from the view. */
static int state_text(view_ci *ci, sqlite3 *db, fh_buf *out, fh_buf *since)
{
    sqlite3_stmt *st = NULL;
    long long n = 0, omitted = 0;
    if (sqlite3_prepare_v2(db, VIEW_CI_STATE_SQL, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *b = (const char *)sqlite3_column_text(st, 0);
        const char *br = (const char *)sqlite3_column_text(st, 1);
        pthread_mutex_lock(&ci->mu);
        int s = slot_of(ci, b ? b : "");
        pthread_mutex_unlock(&ci->mu);
        if (s < 0 || n >= ci->max_state) {
            omitted++;
            continue;
        }
        n++;
        if (sample(out, "firehose_ci_builder_green", b, br ? br : "", sqlite3_column_int(st, 2)) ||
            sample(since, "firehose_ci_builder_state_since_seconds", b, br ? br : "",
                   sqlite3_column_double(st, 10))) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return -1;
    return fh_buf_append(out, since->data ? since->data : "", since->len) ||
           family(out, "firehose_ci_state_series_omitted", "gauge",
                  "Builder/branch state series left out (builder over metrics.ci_max_builders, "
                  "or past metrics.ci_max_state_series).") ||
           fh_buf_printf(out, "firehose_ci_state_series_omitted %lld\n", omitted);
}

/* Renders everything into out. Returns 0, or -1 with errbuf saying why. */
static int render(fh_view *v, fh_buf *out, char *err, size_t errsize)
{
    view_ci *ci = v->ci;
    view_asof a;
    ci_gauges g;
    fh_buf since;
    int rc = -1;
    view_reader *r = view_reader_get(v, &a, err, errsize);
    if (!r)
        return -1;
    sqlite3 *db = view_reader_db(r);
    pthread_mutex_lock(&ci->mu);
    g.n = (size_t)ci->max_builders + 1;
    pthread_mutex_unlock(&ci->mu);
    g.pending = calloc(g.n, sizeof(long long));
    g.running = calloc(g.n, sizeof(long long));
    g.oldest = calloc(g.n, sizeof(double));
    fh_buf_init(&since, out->max);
    family(&since, "firehose_ci_builder_state_since_seconds", "gauge",
           "When the builder's current state on the branch began: completion time of the first "
           "build of that state, epoch seconds.");
    double now = (double)fh_now_ms() / 1000.0;
    if (!g.pending || !g.running || !g.oldest) {
        snprintf(err, errsize, "out of memory");
        goto out;
    }
    if (read_counts(ci, db,
                    "SELECT builder, count(*), min(submitted_at) FROM buildrequests"
                    " WHERE claimed = 0 AND complete = 0 AND submitted_at IS NOT NULL"
                    " GROUP BY builder",
                    g.pending, g.oldest, g.n) ||
        read_counts(ci, db,
                    "SELECT builder, count(*) FROM builds WHERE finished = 0"
                    " AND started_at IS NOT NULL GROUP BY builder",
                    g.running, NULL, g.n) ||
        family(out, "firehose_ci_builder_green", "gauge",
               "1 when the builder's last deciding build on the branch was green (success or "
               "warnings), 0 when it was broken (failure or exception).") ||
        state_text(ci, db, out, &since)) {
        snprintf(err, errsize, "%s", sqlite3_errmsg(db));
        goto out;
    }
    pthread_mutex_lock(&ci->mu);
    size_t nb = ci->nb;
    int other = ci->other_builders > 0;
    static const char *const gname[3] = {"firehose_ci_pending_requests",
                                         "firehose_ci_oldest_pending_seconds",
                                         "firehose_ci_running_builds"};
    static const char *const ghelp[3] = {
        "Build requests pending (neither claimed nor complete), by builder.",
        "Age of the builder's oldest pending request, seconds (0 when none).",
        "Builds running (started, not finished), by builder."};
    int bad = 0;
    for (int k = 0; k < 3 && !bad; k++) {
        bad = family(out, gname[k], "gauge", ghelp[k]);
        for (size_t i = 0; i < nb + (size_t)other && !bad; i++) {
            size_t gi = i < nb ? i : g.n - 1;
            double x = k == 0             ? (double)g.pending[gi]
                       : k == 2           ? (double)g.running[gi]
                       : g.oldest[gi] > 0 ? fmax(0, now - g.oldest[gi])
                                          : 0;
            bad = sample(out, gname[k], i < nb ? ci->b[i].name : "_other", NULL, x);
        }
    }
    static const char *const hname[2] = {"firehose_ci_queue_wait_seconds",
                                         "firehose_ci_build_duration_seconds"};
    static const char *const hhelp[2] = {
        "From a build request's submission to the start of its build, by builder (builds this "
        "process applied).",
        "Build durations (build.finished duration_s), by builder (builds this process applied)."};
    for (int k = 0; k < 2 && !bad; k++) {
        bad = family(out, hname[k], "histogram", hhelp[k]);
        for (size_t i = 0; i < nb && !bad; i++)
            bad = hist_text(out, hname[k], ci->b[i].name, k, &ci->b[i].h[k]);
        if (other && !bad)
            bad = hist_text(out, hname[k], "_other", k, &ci->other[k]);
    }
    if (!bad)
        bad = family(out, "firehose_ci_builders", "gauge",
                     "Builders with their own series (at most metrics.ci_max_builders).") ||
              fh_buf_printf(out, "firehose_ci_builders %zu\n", nb) ||
              family(out, "firehose_ci_builders_other", "gauge",
                     "Builders past metrics.ci_max_builders, summed into builder=\"_other\" "
                     "(counted up to 1024).") ||
              fh_buf_printf(out, "firehose_ci_builders_other %lld\n", ci->other_builders);
    pthread_mutex_unlock(&ci->mu);
    if (bad) {
        snprintf(err, errsize, "the answer is over its size cap");
        goto out;
    }
    rc = 0;
out:
    view_reader_put(v, r);
    fh_buf_free(&since);
    free(g.pending);
    free(g.running);
    free(g.oldest);
    return rc;
}

void view_ci_handle(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_view *v = ctx;
    char err[512], q[560];
    (void)req;
    resp->max_age = -1;
    resp->no_etag = 1;
    if (!v || view_enter(v)) {
        fh_http_error(resp, 503, "unavailable", NULL,
                      "the view is stopping or disabled (view.enabled=false)");
        return;
    }
    view_ci *ci = v->ci;
    pthread_mutex_lock(&ci->render_mu);
    int64_t now = fh_now_ms();
    int rc = 0;
    if (!ci->cached || now - ci->cache_at_ms >= ci->ttl_ms) {
        fh_buf_reset(&ci->cache);
        rc = render(v, &ci->cache, err, sizeof(err));
        ci->cached = rc == 0;
        ci->cache_at_ms = now;
    }
    if (rc == 0 &&
        fh_buf_append(&resp->body, ci->cache.data ? ci->cache.data : "", ci->cache.len)) {
        snprintf(err, sizeof(err), "the answer is over http.max_response_bytes");
        rc = -1;
    }
    pthread_mutex_unlock(&ci->render_mu);
    view_leave(v);
    if (rc) {
        fh_log(FH_LOG_ERROR, "metrics.ci", "error=%s", fh_log_quote(q, sizeof(q), err));
        fh_http_error(resp, 500, "internal", NULL, "%s", err);
        return;
    }
    resp->content_type = "text/plain; version=0.0.4";
}
