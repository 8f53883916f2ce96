/* rest: see rest.h. Every answer is one JSON object: the endpoint's members, then "as_of". The
 * cache holds the members' text; "as_of" is appended per request because its "behind" and
 * "lag_ms" describe the moment of the request.
 *
 * The endpoints are a table (endpoints[] below): each row names its path, the query parameters
 * it accepts and how each is checked, the render function and how long an answer may live. One
 * handler serves every row: the token's constraint, the path's id, each parameter in the row's
 * order (the first bad one gets the 400), the row's own check, then the cache key (the row's
 * name and every parameter) and the answer from the cache or a fresh render. */
#include "internal.h"

#include <stddef.h>

#include "fh_log.h"
#include "fh_param.h"

#define MAX_PARAM_BYTES 512
#define MAX_PARAMS 12

enum param_kind {
    P_END = 0,
    P_STR,      /* 1 to MAX_PARAM_BYTES bytes; NULL when absent */
    P_INT,      /* an integer in [min, max]; def when absent */
    P_DURATION, /* seconds, or a number with s, m, h or d, in [min, max]; def when absent */
};

typedef struct rest_param {
    const char *name;
    enum param_kind kind;
    size_t off; /* of the field in rest_args */
    long long def, min, max;
} rest_param;

typedef struct rest_endpoint {
    const char *path;
    const char *query; /* the query parameters the route accepts (http.c refuses others) */
    const char *key;   /* the cache key's first field */
    int path_id;       /* the path's {} is a build id */
    rest_param params[MAX_PARAMS]; /* checked in this order; every one is part of the key */
    /* checks across parameters, after them; NULL when none. 0, or -1 after a 400 */
    int (*check)(rest_args *q, fh_http_response *resp);
    rest_render_fn render;
    int ttl_ms; /* > 0: the answer has wall-clock fields and lives at most this long */
} rest_endpoint;

/* Appends "name=<len>:value|" to a cache key (lengths make keys unambiguous). */
static void key_add(fh_buf *k, const char *name, const char *v)
{
    if (v)
        fh_buf_printf(k, "%s=%zu:%s|", name, strlen(v), v);
    else
        fh_buf_printf(k, "%s=-|", name);
}

/* Reads an optional text parameter. Returns 0 (value or NULL in *out), or -1 after a 400. */
static int param_str(fh_http_request *req, fh_http_response *resp, const char *name,
                     const char **out)
{
    const char *v = fh_http_query(req, name);
    if (v && (strlen(v) > MAX_PARAM_BYTES || !*v)) {
        fh_http_error(resp, 400, "bad_parameter", name, "%s: expected 1 to %d bytes", name,
                      MAX_PARAM_BYTES);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads an optional integer parameter within [min, max]; def when absent. */
static int param_int(fh_http_request *req, fh_http_response *resp, const char *name, long long def,
                     long long min, long long max, long long *out)
{
    const char *v = fh_http_query(req, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (fh_param_int(v, min, max, out)) {
        fh_http_error(resp, 400, "bad_parameter", name, "%s: expected an integer from %lld to %lld",
                      name, min, max);
        return -1;
    }
    return 0;
}

/* A duration: seconds, or a number with s, m, h or d. */
static int param_duration(fh_http_request *req, fh_http_response *resp, const char *name,
                          long long def, long long min, long long max, long long *out)
{
    const char *v = fh_http_query(req, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (fh_param_duration(v, min, max, out)) {
        fh_http_error(resp, 400, "bad_parameter", name,
                      "%s: expected a duration from %llds to %llds: seconds, or a number with s, "
                      "m, h or d (\"90m\")",
                      name, min, max);
        return -1;
    }
    return 0;
}

static int check_constraint(fh_http_request *req, fh_http_response *resp)
{
    if (req->who && req->who->constrained) {
        fh_http_error(resp, 403, "forbidden", NULL,
                      "this token is restricted by a filter; the REST view serves only "
                      "unrestricted tokens (use the stream or SSE)");
        return -1;
    }
    return 0;
}

/* FNV-1a, continuing from h (the answer's ETag: the members' hash is kept in the cache, so a
 * request hashes only its own "as_of"). */
static unsigned long long fnv(const char *p, size_t n, unsigned long long h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Appends "as_of" and the closing brace to an answer whose members (hashed to hash) are in
 * resp->body, and sets its ETag. */
static void finish(fh_view *v, fh_http_response *resp, const view_asof *a, unsigned long long hash)
{
    size_t tail = resp->body.len;
    fh_buf_printf(&resp->body, ",");
    view_asof_json(v, a, &resp->body);
    fh_buf_printf(&resp->body, "}\n");
    resp->etag = fnv(resp->body.data + tail, resp->body.len - tail, hash);
    resp->etag_given = 1;
}

/* Renders key with fn into resp (whose body holds the opening brace), stores it in the cache and
 * finishes it; cr is what the cache said (VIEW_CACHE_RENDER: this caller owns the render). The
 * caller is inside the view (view_enter). */
static void render(fh_view *v, fh_http_response *resp, const char *key, rest_render_fn fn,
                   const rest_args *args, int ttl_ms, enum view_cache_result cr)
{
    char err[512];
    view_asof a;
    fh_buf tmp;
    fh_buf_init(&tmp, resp->body.max);
    view_reader *r = view_reader_get(v, &a, err, sizeof(err));
    int rc = -1;
    if (r) {
        rc = fn(r, &a, args, &tmp, resp);
        if (rc < 0)
            snprintf(err, sizeof(err), "%s", sqlite3_errmsg(view_reader_db(r)));
        view_reader_put(v, r);
    }
    if (rc == 0 && fh_buf_append(&resp->body, tmp.data ? tmp.data : "", tmp.len)) {
        snprintf(err, sizeof(err), "the answer is over http.max_response_bytes");
        rc = -1;
    }
    if (rc == 0) {
        unsigned long long hash = fnv(tmp.data ? tmp.data : "", tmp.len, 1469598103934665603ULL);
        view_cache_put(v, key, tmp.data ? tmp.data : "", tmp.len, hash, &a, ttl_ms);
        finish(v, resp, &a, hash);
    } else {
        if (cr == VIEW_CACHE_RENDER)
            view_cache_abandon(v, key);
        if (rc < 0) {
            char qk[160], qe[600];
            fh_log(FH_LOG_ERROR, "rest.render", "key=%s error=%s",
                   fh_log_quote(qk, sizeof(qk), key), fh_log_quote(qe, sizeof(qe), err));
            fh_http_error(resp, 500, "internal", NULL, "%s", err);
        }
    }
    fh_buf_free(&tmp);
}

static void unavailable(fh_http_response *resp)
{
    fh_http_error(resp, 503, "unavailable", NULL,
                  "the view is stopping or disabled (view.enabled=false)");
}

/* A render handed to http.c's answer threads (fh_http_response.defer): what render needs, the
 * key included. The parameters' text stays the request's, which lives until it is answered. */
typedef struct render_job {
    fh_view *v;
    rest_render_fn fn;
    rest_args args;
    int ttl_ms;
    enum view_cache_result cr;
    char key[];
} render_job;

static void render_job_run(void *arg, fh_http_response *resp)
{
    render_job *j = arg;
    if (view_enter(j->v)) {
        if (j->cr == VIEW_CACHE_RENDER)
            view_cache_abandon(j->v, j->key);
        unavailable(resp);
    } else {
        render(j->v, resp, j->key, j->fn, &j->args, j->ttl_ms, j->cr);
        view_leave(j->v);
    }
    free(j);
}

/* Serves key from the cache, or renders it with fn: on an answer thread when can_defer (the
 * libmicrohttpd thread goes on serving its other connections, cached answers included, while
 * this one waits), else here. */
static void serve(fh_view *v, fh_http_response *resp, const char *key, rest_render_fn fn,
                  const rest_args *args, int ttl_ms, int can_defer)
{
    view_asof a;
    unsigned long long hash = 0;
    if (view_enter(v)) {
        unavailable(resp);
        return;
    }
    resp->max_age = 0;
    fh_buf_printf(&resp->body, "{");
    enum view_cache_result cr = view_cache_get(v, key, &resp->body, &a, &hash);
    render_job *j = NULL;
    if (cr == VIEW_CACHE_HIT || cr == VIEW_CACHE_STALE)
        finish(v, resp, &a, hash);
    else if (can_defer && (j = malloc(sizeof(*j) + strlen(key) + 1))) {
        *j = (render_job){v, fn, *args, ttl_ms, cr};
        strcpy(j->key, key);
        resp->defer = render_job_run;
        resp->defer_arg = j;
    } else {
        render(v, resp, key, fn, args, ttl_ms, cr);
    }
    view_leave(v);
}

/* ---- the table ------------------------------------------------------------------------ */

static int need_branch(rest_args *q, fh_http_response *resp)
{
    if (!q->branch) {
        fh_http_error(resp, 400, "missing_parameter", "branch", "branch: required");
        return -1;
    }
    return 0;
}

static int builds_check(rest_args *q, fh_http_response *resp)
{
    if (q->state && strcmp(q->state, "running") && strcmp(q->state, "finished")) {
        fh_http_error(resp, 400, "bad_parameter", "state",
                      "state: expected \"running\" or \"finished\"");
        return -1;
    }
    q->cursor = -1;
    if (q->cursor_text && fh_param_cursor(q->cursor_text, &q->cursor)) {
        fh_http_error(resp, 400, "bad_parameter", "cursor",
                      "cursor: expected a next_cursor value from an earlier answer");
        return -1;
    }
    return 0;
}

static int bucket_check(rest_args *q, fh_http_response *resp)
{
    if (q->window / q->bucket > 1000) {
        fh_http_error(resp, 400, "bad_parameter", "bucket",
                      "bucket: window/bucket must be at most 1000 buckets");
        return -1;
    }
    return 0;
}

static int state_check(rest_args *q, fh_http_response *resp)
{
    if (q->state && strcmp(q->state, "green") && strcmp(q->state, "broken")) {
        fh_http_error(resp, 400, "bad_parameter", "state",
                      "state: expected \"green\" or \"broken\"");
        return -1;
    }
    return 0;
}

/* clang-format off */
#define STR(n, f) {n, P_STR, offsetof(rest_args, f), 0, 0, 0}
#define INT(n, f, d, lo, hi) {n, P_INT, offsetof(rest_args, f), d, lo, hi}
#define DUR(n, f, d, lo, hi) {n, P_DURATION, offsetof(rest_args, f), d, lo, hi}
/* clang-format on */
#define LIST_PARAMS                                                                                \
    STR("builder", builder), STR("branch", branch), STR("project", project), STR("owner", owner),  \
        STR("repository", repository)
#define MAX_WINDOW (366LL * 86400)

static const rest_endpoint endpoints[FH_REST_ROUTES] = {
    {.path = "/api/v1/pending",
     .query = "builder,branch,project,owner,repository,limit,access_token",
     .key = "pending",
     .params = {LIST_PARAMS, INT("limit", limit, 100, 1, 10000)},
     .render = rest_render_pending,
     .ttl_ms = 1000},
    {.path = "/api/v1/running",
     .query = "builder,branch,project,owner,repository,worker,limit,access_token",
     .key = "running",
     .params = {LIST_PARAMS, STR("worker", worker), INT("limit", limit, 100, 1, 10000)},
     .render = rest_render_running,
     .ttl_ms = 1000},
    {.path = "/api/v1/last-green",
     .query = "branch,repository,access_token",
     .key = "last-green",
     .params = {STR("branch", branch), STR("repository", repository)},
     .check = need_branch,
     .render = rest_render_last_green},
    {.path = "/api/v1/revisions",
     .query = "branch,repository,limit,access_token",
     .key = "revisions",
     .params = {STR("branch", branch), STR("repository", repository),
                INT("limit", limit, 20, 1, 200)},
     .check = need_branch,
     .render = rest_render_revisions},
    {.path = "/api/v1/builds",
     .query = "builder,branch,repository,project,owner,worker,revision,results,state,"
              "buildrequestid,limit,cursor,access_token",
     .key = "builds",
     .params = {LIST_PARAMS, STR("worker", worker), STR("revision", revision), STR("state", state),
                INT("results", results, -1, 0, 6),
                INT("buildrequestid", buildrequestid, -1, 1, 1LL << 62),
                INT("limit", limit, 50, 1, 1000), STR("cursor", cursor_text)},
     .check = builds_check,
     .render = rest_render_builds},
    {.path = "/api/v1/builds/{}",
     .query = "access_token",
     .key = "build",
     .path_id = 1,
     .render = rest_render_build},
    {.path = "/api/v1/builders",
     .query = "access_token",
     .key = "builders",
     .render = rest_render_builders},
    {.path = "/api/v1/builders/state",
     .query = "builder,branch,state,limit,access_token",
     .key = "builders-state",
     .params = {STR("builder", builder), STR("branch", branch), STR("state", state),
                INT("limit", limit, 1000, 1, 10000)},
     .check = state_check,
     .render = rest_render_state},
    {.path = "/api/v1/stats/steps",
     .query = "builder,window,limit,access_token",
     .key = "stats-steps",
     .params = {STR("builder", builder), DUR("window", window, 86400, 1, MAX_WINDOW),
                INT("limit", limit, 50, 1, 1000)},
     .render = rest_render_step_stats},
    {.path = "/api/v1/stats/builds",
     .query = "builder,window,bucket,access_token",
     .key = "stats-builds",
     .params = {STR("builder", builder), DUR("window", window, 86400, 1, MAX_WINDOW),
                DUR("bucket", bucket, 3600, 1, MAX_WINDOW)},
     .check = bucket_check,
     .render = rest_render_build_stats},
    {.path = "/api/v1/stats/tests",
     .query = "builder,window,limit,access_token",
     .key = "stats-tests",
     .params = {STR("builder", builder), DUR("window", window, 86400, 1, MAX_WINDOW),
                INT("limit", limit, 20, 1, 1000)},
     .render = rest_render_test_stats},
    {.path = "/api/v1/flaky",
     .query = "builder,window,limit,access_token",
     .key = "flaky",
     .params = {STR("builder", builder), DUR("window", window, 86400, 1, MAX_WINDOW),
                INT("limit", limit, 50, 1, 1000)},
     .render = rest_render_flaky},
};

/* Reads one parameter into q as p says. Returns 0, or -1 after a 400. */
static int param_read(const rest_param *p, fh_http_request *req, fh_http_response *resp,
                      rest_args *q)
{
    void *field = (char *)q + p->off;
    switch (p->kind) {
    case P_STR:
        return param_str(req, resp, p->name, (const char **)field);
    case P_INT:
        return param_int(req, resp, p->name, p->def, p->min, p->max, (long long *)field);
    case P_DURATION:
        return param_duration(req, resp, p->name, p->def, p->min, p->max, (long long *)field);
    case P_END:
        break;
    }
    return 0;
}

/* The one handler, for row e of endpoints[]. */
static void handle(fh_view *v, const rest_endpoint *e, fh_http_request *req, fh_http_response *resp)
{
    rest_args q;
    fh_buf k;
    memset(&q, 0, sizeof(q));
    if (check_constraint(req, resp))
        return;
    if (e->path_id && fh_param_id(req->path_params[0], &q.id)) {
        fh_http_error(resp, 400, "bad_parameter", "buildid",
                      "buildid: expected a positive integer");
        return;
    }
    for (const rest_param *p = e->params; p->kind != P_END; p++)
        if (param_read(p, req, resp, &q))
            return;
    if (e->check && e->check(&q, resp))
        return;
    fh_buf_init(&k, 8192);
    fh_buf_printf(&k, "%s|", e->key);
    if (e->path_id)
        fh_buf_printf(&k, "id=%lld|", q.id);
    for (const rest_param *p = e->params; p->kind != P_END; p++) {
        const void *field = (const char *)&q + p->off;
        if (p->kind == P_STR)
            key_add(&k, p->name, *(const char *const *)field);
        else
            fh_buf_printf(&k, "%s=%lld|", p->name, *(const long long *)field);
    }
    serve(v, resp, k.data, e->render, &q, e->ttl_ms, req->can_defer);
    fh_buf_free(&k);
}

/* One entry point per row: a route's ctx is the view, so each binds its own row. */
#define REST_ROW(i)                                                                                \
    static void row_##i(void *ctx, fh_http_request *req, fh_http_response *resp)                   \
    {                                                                                              \
        handle(ctx, &endpoints[i], req, resp);                                                     \
    }
REST_ROW(0)
REST_ROW(1)
REST_ROW(2)
REST_ROW(3)
REST_ROW(4)
REST_ROW(5)
REST_ROW(6)
REST_ROW(7)
REST_ROW(8)
REST_ROW(9)
REST_ROW(10)
REST_ROW(11)
static const fh_http_handler rows[] = {row_0, row_1, row_2, row_3, row_4,  row_5,
                                       row_6, row_7, row_8, row_9, row_10, row_11};
_Static_assert(sizeof(rows) / sizeof(rows[0]) == FH_REST_ROUTES, "one entry point per row");

size_t rest_routes(fh_view *v, fh_http_route *routes)
{
    /* Registered even when view.enabled is false: they answer 503 saying so. */
    for (size_t i = 0; i < FH_REST_ROUTES; i++)
        routes[i] = (fh_http_route){
            "GET", endpoints[i].path, FH_SCOPE_READ, endpoints[i].query, rows[i], v};
    return FH_REST_ROUTES;
}
