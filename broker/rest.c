/* rest: see rest.h. Every answer is one JSON object: the endpoint's members, then "as_of". The
 * cache holds the members' text; "as_of" is appended per request because its "behind" and
 * "lag_ms" describe the moment of the request. */
#include "rest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_lastgreen.h"
#include "fh_log.h"
#include "fh_param.h"
#include "view/view.h"

#define MAX_PARAM_BYTES 512

/* A render function writes the answer's members into out. Returns 0, an HTTP status it has
 * already set on resp with fh_http_error (4xx; not cached), or -1 on an internal error. */
typedef int (*render_fn)(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                         fh_http_response *resp);

/* Reader statement slots (0 and 1 are the view's). */
enum {
    S_PENDING = 2,
    S_PENDING_TOTAL,
    S_RUNNING,
    S_RUNNING_TOTAL,
    S_BUILDS,
    S_BUILD,
    S_BUILDERS,
    S_REPOS,
    S_REVS,
    S_REQUIRED,
    S_LG_BUILDS,
    S_CHANGE,
    S_MATRIX,
    S_MATRIX_BUILDERS,
    S_STEP_STATS,
    S_BUILD_STATS,
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void put_double(fh_buf *out, double v)
{
    if (isfinite(v))
        fh_buf_printf(out, "%.15g", v);
    else
        fh_buf_printf(out, "null");
}

/* Appends the JSON text a query produced (a json_* function result). */
static void put_json_col(fh_buf *out, sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    if (s)
        fh_buf_append(out, s, (size_t)sqlite3_column_bytes(st, i));
    else
        fh_buf_printf(out, "null");
}

static void put_rfc3339(fh_buf *out, double epoch_s)
{
    char t[32];
    fh_buf_printf(out, "\"%s\"", fh_time_rfc3339((int64_t)llround(epoch_s * 1000.0), t, sizeof(t)));
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

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

/* Serves key from the cache, or renders it with fn. */
static void serve(fh_http_response *resp, const char *key, render_fn fn, const void *args,
                  int ttl_ms)
{
    char err[512];
    view_asof a;
    fh_buf tmp;
    unsigned long long hash = 0;
    if (view_enter()) {
        fh_http_error(resp, 503, "unavailable", NULL,
                      "the view is stopping or disabled (view.enabled=false)");
        return;
    }
    resp->max_age = 0;
    fh_buf_printf(&resp->body, "{");
    enum view_cache_result cr = view_cache_get(key, &resp->body, &a, &hash);
    if (cr == VIEW_CACHE_HIT || cr == VIEW_CACHE_STALE)
        goto finish;
    fh_buf_init(&tmp, resp->body.max);
    view_reader *r = view_reader_get(&a, err, sizeof(err));
    int rc = -1;
    if (r) {
        rc = fn(r, &a, args, &tmp, resp);
        if (rc < 0)
            snprintf(err, sizeof(err), "%s", sqlite3_errmsg(view_reader_db(r)));
        view_reader_put(r);
    }
    if (rc == 0 && fh_buf_append(&resp->body, tmp.data ? tmp.data : "", tmp.len)) {
        snprintf(err, sizeof(err), "the answer is over http.max_response_bytes");
        rc = -1;
    }
    if (rc == 0) {
        hash = fnv(tmp.data ? tmp.data : "", tmp.len, 1469598103934665603ULL);
        view_cache_put(key, tmp.data ? tmp.data : "", tmp.len, hash, &a, ttl_ms);
    } else {
        if (cr == VIEW_CACHE_RENDER)
            view_cache_abandon(key);
        if (rc < 0) {
            {
                char qk[160], qe[600];
                fh_log(FH_LOG_ERROR, "rest.render", "key=%s error=%s",
                       fh_log_quote(qk, sizeof(qk), key), fh_log_quote(qe, sizeof(qe), err));
            }
            fh_http_error(resp, 500, "internal", NULL, "%s", err);
        }
    }
    fh_buf_free(&tmp);
    if (rc)
        goto out;
finish:;
    size_t tail = resp->body.len;
    fh_buf_printf(&resp->body, ",");
    view_asof_json(&a, &resp->body);
    fh_buf_printf(&resp->body, "}\n");
    resp->etag = fnv(resp->body.data + tail, resp->body.len - tail, hash);
    resp->etag_given = 1;
out:
    view_leave();
}

/* Steps a statement that yields one row with one JSON column; appends it. */
static int one_json(sqlite3_stmt *st, fh_buf *out)
{
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        put_json_col(out, st, 0);
        return 0;
    }
    return rc == SQLITE_DONE ? 1 : -1;
}

static long long one_int(sqlite3_stmt *st)
{
    if (!st || sqlite3_step(st) != SQLITE_ROW)
        return -1;
    return sqlite3_column_int64(st, 0);
}

/* ---- pending ---------------------------------------------------------------------------- */

typedef struct list_args {
    const char *builder, *branch, *project, *owner, *repository, *worker;
    long long limit;
} list_args;

#define BR_FILTER                                                                                  \
    " claimed = 0 AND complete = 0 AND submitted_at IS NOT NULL AND (?1 IS NULL OR builder = ?1)"  \
    " AND (?2 IS NULL OR branch = ?2) AND (?3 IS NULL OR project = ?3)"                            \
    " AND (?4 IS NULL OR owner = ?4) AND (?5 IS NULL OR repository = ?5)"

static void bind_list(sqlite3_stmt *st, const list_args *l)
{
    bind_opt(st, 1, l->builder);
    bind_opt(st, 2, l->branch);
    bind_opt(st, 3, l->project);
    bind_opt(st, 4, l->owner);
    bind_opt(st, 5, l->repository);
}

static int render_pending(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                          fh_http_response *resp)
{
    const list_args *l = args;
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_PENDING,
        "SELECT json_group_array(json_object('buildrequestid', buildrequestid, 'builder', builder,"
        " 'builderid', builderid, 'branch', branch, 'revision', revision, 'repository', repository,"
        " 'project', project, 'codebase', codebase, 'owner', owner, 'buildsetid', buildsetid,"
        " 'priority', priority, 'submitted_at', submitted_at,"
        " 'waiting_s', round(max(0, ?7 - submitted_at), 3), 'reason', reason))"
        " FROM (SELECT * FROM buildrequests WHERE" BR_FILTER
        " ORDER BY submitted_at, buildrequestid LIMIT ?6)");
    if (!st)
        return -1;
    bind_list(st, l);
    sqlite3_bind_int64(st, 6, l->limit);
    sqlite3_bind_double(st, 7, (double)fh_now_ms() / 1000.0);
    fh_buf_printf(out, "\"pending\":");
    if (one_json(st, out))
        return -1;
    st = view_reader_stmt(r, S_PENDING_TOTAL, "SELECT count(*) FROM buildrequests WHERE" BR_FILTER);
    if (!st)
        return -1;
    bind_list(st, l);
    long long total = one_int(st);
    if (total < 0)
        return -1;
    fh_buf_printf(out, ",\"total\":%lld,\"limit\":%lld", total, l->limit);
    return 0;
}

static int list_params(fh_http_request *req, fh_http_response *resp, list_args *l, int worker)
{
    memset(l, 0, sizeof(*l));
    if (check_constraint(req, resp) || param_str(req, resp, "builder", &l->builder) ||
        param_str(req, resp, "branch", &l->branch) ||
        param_str(req, resp, "project", &l->project) || param_str(req, resp, "owner", &l->owner) ||
        param_str(req, resp, "repository", &l->repository) ||
        (worker && param_str(req, resp, "worker", &l->worker)) ||
        param_int(req, resp, "limit", 100, 1, 10000, &l->limit))
        return -1;
    return 0;
}

static void list_key(fh_buf *k, const char *what, const list_args *l)
{
    fh_buf_printf(k, "%s|", what);
    key_add(k, "builder", l->builder);
    key_add(k, "branch", l->branch);
    key_add(k, "project", l->project);
    key_add(k, "owner", l->owner);
    key_add(k, "repository", l->repository);
    key_add(k, "worker", l->worker);
    fh_buf_printf(k, "limit=%lld", l->limit);
}

static void h_pending(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    list_args l;
    fh_buf k;
    (void)ctx;
    if (list_params(req, resp, &l, 0))
        return;
    fh_buf_init(&k, 8192);
    list_key(&k, "pending", &l);
    serve(resp, k.data, render_pending, &l, 1000);
    fh_buf_free(&k);
}

/* ---- running ---------------------------------------------------------------------------- */

#define RUN_FILTER                                                                                 \
    " finished = 0 AND started_at IS NOT NULL AND (?1 IS NULL OR builder = ?1)"                    \
    " AND (?2 IS NULL OR branch = ?2) AND (?3 IS NULL OR project = ?3)"                            \
    " AND (?4 IS NULL OR owner = ?4) AND (?5 IS NULL OR repository = ?5)"                          \
    " AND (?6 IS NULL OR worker = ?6)"

static int render_running(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                          fh_http_response *resp)
{
    const list_args *l = args;
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_RUNNING,
        "SELECT json_group_array(json_object('buildid', b.buildid,"
        " 'buildrequestid', b.buildrequestid, 'builder', b.builder, 'builderid', b.builderid,"
        " 'number', b.number, 'worker', b.worker, 'master', b.master, 'branch', b.branch,"
        " 'revision', b.revision, 'repository', b.repository, 'project', b.project,"
        " 'codebase', b.codebase, 'owner', b.owner, 'started_at', b.started_at,"
        " 'elapsed_s', round(max(0, ?8 - b.started_at), 3), 'state_string', b.state_string,"
        " 'current_step', json((SELECT json_object('stepid', s.stepid, 'number', s.number,"
        "   'name', s.name, 'started_at', s.started_at) FROM steps s"
        "   WHERE s.buildid = b.buildid AND s.finished = 0 AND s.started_at IS NOT NULL"
        "   ORDER BY s.number DESC LIMIT 1))))"
        " FROM (SELECT * FROM builds WHERE" RUN_FILTER " ORDER BY started_at, buildid LIMIT ?7) b");
    if (!st)
        return -1;
    bind_list(st, l);
    bind_opt(st, 6, l->worker);
    sqlite3_bind_int64(st, 7, l->limit);
    sqlite3_bind_double(st, 8, (double)fh_now_ms() / 1000.0);
    fh_buf_printf(out, "\"running\":");
    if (one_json(st, out))
        return -1;
    st = view_reader_stmt(r, S_RUNNING_TOTAL, "SELECT count(*) FROM builds WHERE" RUN_FILTER);
    if (!st)
        return -1;
    bind_list(st, l);
    bind_opt(st, 6, l->worker);
    long long total = one_int(st);
    if (total < 0)
        return -1;
    fh_buf_printf(out, ",\"total\":%lld,\"limit\":%lld", total, l->limit);
    return 0;
}

static void h_running(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    list_args l;
    fh_buf k;
    (void)ctx;
    if (list_params(req, resp, &l, 1))
        return;
    fh_buf_init(&k, 8192);
    list_key(&k, "running", &l);
    serve(resp, k.data, render_running, &l, 1000);
    fh_buf_free(&k);
}

/* ---- builds ----------------------------------------------------------------------------- */

#define BUILD_JSON(b)                                                                              \
    "json_object('buildid', " b ".buildid, 'buildrequestid', " b ".buildrequestid,"                \
    " 'builder', " b ".builder, 'builderid', " b ".builderid, 'number', " b ".number,"             \
    " 'branch', " b ".branch, 'revision', " b ".revision, 'repository', " b ".repository,"         \
    " 'project', " b ".project, 'codebase', " b ".codebase, 'owner', " b ".owner,"                 \
    " 'worker', " b ".worker, 'master', " b ".master, 'started_at', " b ".started_at,"             \
    " 'complete_at', " b ".complete_at, 'finished', json(CASE " b ".finished WHEN 1 THEN 'true'"   \
    " ELSE 'false' END), 'results', " b ".results, 'state_string', " b ".state_string,"            \
    " 'duration_s', " b ".duration_s"

typedef struct builds_args {
    list_args l;
    const char *revision, *state;
    long long results, buildrequestid, cursor;
} builds_args;

static int render_builds(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                         fh_http_response *resp)
{
    const builds_args *q = args;
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILDS,
        "SELECT " BUILD_JSON(
            "b") "), b.buildid FROM builds b WHERE (?1 IS NULL OR builder = ?1)"
                 " AND (?2 IS NULL OR branch = ?2) AND (?3 IS NULL OR project = ?3)"
                 " AND (?4 IS NULL OR owner = ?4) AND (?5 IS NULL OR repository = ?5)"
                 " AND (?6 IS NULL OR worker = ?6) AND (?7 IS NULL OR revision = ?7)"
                 " AND (?8 < 0 OR (finished = 1 AND results = ?8))"
                 " AND (?9 IS NULL OR (?9 = 'running' AND finished = 0 AND started_at IS NOT NULL)"
                 "  OR (?9 = 'finished' AND finished = 1))"
                 " AND (?10 < 0 OR buildrequestid = ?10) AND (?11 < 0 OR buildid < ?11)"
                 " ORDER BY buildid DESC LIMIT ?12");
    if (!st)
        return -1;
    bind_list(st, &q->l);
    bind_opt(st, 6, q->l.worker);
    bind_opt(st, 7, q->revision);
    sqlite3_bind_int64(st, 8, q->results);
    bind_opt(st, 9, q->state);
    sqlite3_bind_int64(st, 10, q->buildrequestid);
    sqlite3_bind_int64(st, 11, q->cursor);
    sqlite3_bind_int64(st, 12, q->l.limit + 1);
    fh_buf_printf(out, "\"builds\":[");
    long long n = 0, last = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == q->l.limit) {
            n++;
            break;
        }
        if (n++)
            fh_buf_printf(out, ",");
        put_json_col(out, st, 0);
        last = sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    fh_buf_printf(out, "],\"limit\":%lld,\"next_cursor\":", q->l.limit);
    if (n > q->l.limit)
        fh_buf_printf(out, "\"b%lld\"", last);
    else
        fh_buf_printf(out, "null");
    return 0;
}

static void h_builds(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    builds_args q;
    fh_buf k;
    const char *cursor;
    (void)ctx;
    memset(&q, 0, sizeof(q));
    if (check_constraint(req, resp) || param_str(req, resp, "builder", &q.l.builder) ||
        param_str(req, resp, "branch", &q.l.branch) ||
        param_str(req, resp, "project", &q.l.project) ||
        param_str(req, resp, "owner", &q.l.owner) ||
        param_str(req, resp, "repository", &q.l.repository) ||
        param_str(req, resp, "worker", &q.l.worker) ||
        param_str(req, resp, "revision", &q.revision) || param_str(req, resp, "state", &q.state) ||
        param_int(req, resp, "results", -1, 0, 6, &q.results) ||
        param_int(req, resp, "buildrequestid", -1, 1, 1LL << 62, &q.buildrequestid) ||
        param_int(req, resp, "limit", 50, 1, 1000, &q.l.limit) ||
        param_str(req, resp, "cursor", &cursor))
        return;
    if (q.state && strcmp(q.state, "running") && strcmp(q.state, "finished")) {
        fh_http_error(resp, 400, "bad_parameter", "state",
                      "state: expected \"running\" or \"finished\"");
        return;
    }
    q.cursor = -1;
    if (cursor) {
        if (fh_param_cursor(cursor, &q.cursor)) {
            fh_http_error(resp, 400, "bad_parameter", "cursor",
                          "cursor: expected a next_cursor value from an earlier answer");
            return;
        }
    }
    fh_buf_init(&k, 8192);
    list_key(&k, "builds", &q.l);
    key_add(&k, "revision", q.revision);
    key_add(&k, "state", q.state);
    fh_buf_printf(&k, "results=%lld|brid=%lld|cursor=%lld", q.results, q.buildrequestid, q.cursor);
    serve(resp, k.data, render_builds, &q, 0);
    fh_buf_free(&k);
}

static int render_build(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                        fh_http_response *resp)
{
    const long long *id = args;
    (void)a;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILD,
        "SELECT " BUILD_JSON(
            "b") ","
                 " 'steps', json((SELECT json_group_array(json_object('stepid', s.stepid,"
                 "   'number', s.number, 'name', s.name, 'started_at', s.started_at,"
                 "   'complete_at', s.complete_at, 'finished', json(CASE s.finished WHEN 1 THEN "
                 "'true'"
                 "   ELSE 'false' END), 'results', s.results, 'state_string', s.state_string,"
                 "   'duration_s', s.duration_s, 'hidden', json(CASE s.hidden WHEN 1 THEN 'true'"
                 "   WHEN 0 THEN 'false' ELSE 'null' END), 'urls', json(coalesce(s.urls, '[]')),"
                 "   'logs', json((SELECT json_group_array(json_object('logid', g.logid, 'name', "
                 "g.name,"
                 "     'slug', g.slug, 'type', g.type, 'num_lines', g.num_lines,"
                 "     'finished', json(CASE g.finished WHEN 1 THEN 'true' ELSE 'false' END)))"
                 "     FROM logs g WHERE g.buildid = s.buildid AND g.stepid = s.stepid))))"
                 "   FROM steps s WHERE s.buildid = b.buildid)),"
                 " 'properties', json((SELECT json_group_object(p.name, json_array(json(p.value), "
                 "p.source))"
                 "   FROM properties p WHERE p.buildid = b.buildid)))"
                 " FROM builds b WHERE b.buildid = ?1");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, *id);
    fh_buf_printf(out, "\"build\":");
    int rc = one_json(st, out);
    if (rc > 0) {
        fh_http_error(resp, 404, "not_found", "buildid", "no build %lld in the view", *id);
        return 404;
    }
    return rc;
}

static void h_build(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    char key[64];
    long long id;
    (void)ctx;
    if (check_constraint(req, resp))
        return;
    if (fh_param_id(req->path_params[0], &id)) {
        fh_http_error(resp, 400, "bad_parameter", "buildid",
                      "buildid: expected a positive integer");
        return;
    }
    snprintf(key, sizeof(key), "build|%lld", id);
    serve(resp, key, render_build, &id, 0);
}

/* ---- builders --------------------------------------------------------------------------- */

static int render_builders(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                           fh_http_response *resp)
{
    (void)a;
    (void)args;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILDERS,
        "WITH p AS (SELECT builderid, count(*) n FROM buildrequests WHERE claimed = 0"
        "  AND complete = 0 AND submitted_at IS NOT NULL GROUP BY builderid),"
        " q AS (SELECT builderid, count(*) n FROM builds WHERE finished = 0"
        "  AND started_at IS NOT NULL GROUP BY builderid)"
        " SELECT json_group_array(json(o)) FROM (SELECT json_object('builderid', bl.builderid,"
        " 'name', bl.name, 'project', bl.project, 'pending', coalesce(p.n, 0),"
        " 'running', coalesce(q.n, 0), 'last_build', json((SELECT json_object('buildid', b.buildid,"
        "   'number', b.number, 'results', b.results, 'complete_at', b.complete_at,"
        "   'branch', b.branch, 'revision', b.revision) FROM builds b"
        "   WHERE b.builder = bl.name AND b.finished = 1 ORDER BY b.buildid DESC LIMIT 1))) o"
        " FROM builders bl LEFT JOIN p ON p.builderid = bl.builderid"
        " LEFT JOIN q ON q.builderid = bl.builderid ORDER BY bl.name, bl.builderid)");
    fh_buf_printf(out, "\"builders\":");
    return one_json(st, out) ? -1 : 0;
}

static void h_builders(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    (void)ctx;
    if (check_constraint(req, resp))
        return;
    serve(resp, "builders", render_builders, NULL, 0);
}

/* ---- branches: repository, revision order ----------------------------------------------- */

typedef struct branch_args {
    const char *branch, *repository;
    long long limit;
} branch_args;

/* Finds the repository of a branch into repo. Returns 0, 1 when the branch has no known
 * revisions, 400 (already set on resp) when it is in several repositories, -1 on error. */
static int resolve_repo(view_reader *r, const branch_args *q, char *repo, size_t size,
                        fh_http_response *resp)
{
    if (q->repository) {
        snprintf(repo, size, "%s", q->repository);
        return 0;
    }
    sqlite3_stmt *st = view_reader_stmt(
        r, S_REPOS,
        "SELECT DISTINCT repository FROM revisions WHERE branch = ?1 ORDER BY repository LIMIT 6");
    if (!st)
        return -1;
    bind_opt(st, 1, q->branch);
    fh_buf names;
    int n = 0, rc;
    fh_buf_init(&names, 4096);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (n++ == 0)
            snprintf(repo, size, "%s", s ? s : "");
        fh_buf_printf(&names, "%s%s", n > 1 ? ", " : "", n <= 5 ? (s ? s : "") : "...");
    }
    if (rc != SQLITE_DONE) {
        fh_buf_free(&names);
        return -1;
    }
    if (n > 1) {
        fh_http_error(
            resp, 400, "bad_parameter", "repository",
            "repository: branch '%.100s' exists in several repositories (%.300s); name one",
            q->branch, names.data);
        fh_buf_free(&names);
        return 400;
    }
    fh_buf_free(&names);
    return n == 0 ? 1 : 0;
}

#define REV_ORDER_DESC "ORDER BY pos DESC, (changeid IS NULL) DESC, changeid DESC, revision DESC"

/* The newest revisions of a branch, oldest first. */
typedef struct rev_order {
    char **rev;
    double *pos;
    long long *changeid; /* 0 when none */
    size_t n;
    size_t *slots; /* hash of revision -> index + 1 */
    size_t nslots;
} rev_order;

static void rev_order_free(rev_order *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->rev[i]);
    free(o->rev);
    free(o->pos);
    free(o->changeid);
    free(o->slots);
    memset(o, 0, sizeof(*o));
}

static size_t str_hash(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

static long rev_index(const rev_order *o, const char *rev)
{
    if (!o->nslots || !rev)
        return -1;
    for (size_t i = str_hash(rev) & (o->nslots - 1);; i = (i + 1) & (o->nslots - 1)) {
        if (!o->slots[i])
            return -1;
        if (strcmp(o->rev[o->slots[i] - 1], rev) == 0)
            return (long)(o->slots[i] - 1);
    }
}

static int rev_order_load(view_reader *r, const char *repo, const char *branch, long long max,
                          rev_order *o)
{
    memset(o, 0, sizeof(*o));
    sqlite3_stmt *st =
        view_reader_stmt(r, S_REVS,
                         "SELECT revision, pos, changeid FROM revisions"
                         " WHERE repository = ?1 AND branch = ?2 " REV_ORDER_DESC " LIMIT ?3");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, max);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (o->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nr = realloc(o->rev, cap * sizeof(*nr));
            if (nr)
                o->rev = nr;
            double *np = realloc(o->pos, cap * sizeof(*np));
            if (np)
                o->pos = np;
            long long *nc = realloc(o->changeid, cap * sizeof(*nc));
            if (nc)
                o->changeid = nc;
            if (!nr || !np || !nc)
                return -1;
        }
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (!(o->rev[o->n] = strdup(s ? s : "")))
            return -1;
        o->pos[o->n] = sqlite3_column_double(st, 1);
        o->changeid[o->n] = sqlite3_column_int64(st, 2);
        o->n++;
    }
    if (rc != SQLITE_DONE)
        return -1;
    /* Newest first from SQL; keep oldest first. */
    for (size_t i = 0; i < o->n / 2; i++) {
        size_t j = o->n - 1 - i;
        char *t = o->rev[i];
        o->rev[i] = o->rev[j];
        o->rev[j] = t;
        double tp = o->pos[i];
        o->pos[i] = o->pos[j];
        o->pos[j] = tp;
        long long tc = o->changeid[i];
        o->changeid[i] = o->changeid[j];
        o->changeid[j] = tc;
    }
    o->nslots = 16;
    while (o->nslots < o->n * 2)
        o->nslots *= 2;
    if (!(o->slots = calloc(o->nslots, sizeof(*o->slots))))
        return -1;
    for (size_t i = 0; i < o->n; i++) {
        size_t h = str_hash(o->rev[i]) & (o->nslots - 1);
        while (o->slots[h])
            h = (h + 1) & (o->nslots - 1);
        o->slots[h] = i + 1;
    }
    return 0;
}

static int branch_params(fh_http_request *req, fh_http_response *resp, branch_args *q, int limit)
{
    memset(q, 0, sizeof(*q));
    if (check_constraint(req, resp) || param_str(req, resp, "branch", &q->branch) ||
        param_str(req, resp, "repository", &q->repository) ||
        (limit && param_int(req, resp, "limit", 20, 1, 200, &q->limit)))
        return -1;
    if (!fh_http_query(req, "branch")) {
        fh_http_error(resp, 400, "missing_parameter", "branch", "branch: required");
        return -1;
    }
    return 0;
}

/* ---- last green ------------------------------------------------------------------------- */

static void put_lg_build(fh_buf *out, const fh_lg_verdict *v, const rev_order *o)
{
    fh_buf_printf(out, "{\"buildid\":%lld,\"number\":%lld,\"revision\":", v->build.buildid,
                  v->build.number);
    fh_buf_json_str(out, o->rev[v->rev]);
    fh_buf_printf(out, ",\"results\":%d,\"complete_at\":", v->build.results);
    put_double(out, v->build.complete_at);
    fh_buf_printf(out, "}");
}

/* The builders last-green requires on a branch: the configured ones (parsed once at start), or
 * those that finished a build on it within view.required_window_s of its newest one. *names
 * is sorted, each once; the caller frees it with free_names. Returns 0 or -1. */
static int required_builders(view_reader *r, const char *repo, const char *branch, char ***names,
                             size_t *n, int *from_config)
{
    *names = NULL;
    *n = 0;
    const fh_lg_rule *rule = view_required_builders(branch);
    *from_config = rule != NULL;
    if (rule) {
        if (!rule->n)
            return 0;
        if (!(*names = calloc(rule->n, sizeof(**names))))
            return -1;
        for (; *n < rule->n; (*n)++)
            if (!((*names)[*n] = strdup(rule->builders[*n])))
                return -1;
        return 0;
    }
    sqlite3_stmt *st = view_reader_stmt(
        r, S_REQUIRED,
        "SELECT DISTINCT builder FROM builds WHERE repository = ?1 AND branch = ?2"
        " AND finished = 1 AND complete_at >= (SELECT max(complete_at) FROM builds"
        " WHERE repository = ?1 AND branch = ?2 AND finished = 1) - ?3 ORDER BY builder");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, view_required_window_s());
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **nn = realloc(*names, (*n + 1) * sizeof(*nn));
        if (!nn)
            return -1;
        *names = nn;
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (!(nn[*n] = strdup(s ? s : "")))
            return -1;
        (*n)++;
    }
    if (rc != SQLITE_DONE)
        return -1;
    *n = fh_lg_names_sort(*names, *n);
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Feeds every finished build with a verdict on the branch to lg (RETRY and CANCELLED say
 * nothing about the code). */
static int load_builds(view_reader *r, const char *repo, const char *branch, const rev_order *o,
                       char *const *names, size_t nb, fh_lastgreen *lg)
{
    sqlite3_stmt *st = view_reader_stmt(
        r, S_LG_BUILDS,
        "SELECT builder, revision, buildid, number, results, complete_at FROM builds"
        " WHERE repository = ?1 AND branch = ?2 AND finished = 1 AND revision <> ''"
        " AND results IS NOT NULL AND results NOT IN (5, 6) ORDER BY buildid");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, branch, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name)
            continue;
        long b = fh_lg_names_find(names, nb, name);
        long idx = rev_index(o, (const char *)sqlite3_column_text(st, 1));
        if (b < 0 || idx < 0)
            continue;
        fh_lg_build x = {sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                         sqlite3_column_int(st, 4), sqlite3_column_double(st, 5)};
        if (fh_lastgreen_add(lg, (size_t)b, idx, &x))
            return -1;
    }
    return rc == SQLITE_DONE ? 0 : -1;
}

static int render_last_green(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                             fh_http_response *resp)
{
    const branch_args *q = args;
    char repo[1024];
    rev_order o;
    fh_lastgreen lg;
    char **names = NULL;
    size_t nb = 0;
    int rc = -1, from_config = 0;
    const char *reason = NULL;
    char reason_buf[512];
    fh_lg_answer ans = {FH_LG_NO_GREEN, -1, 0};
    (void)a;
    memset(&o, 0, sizeof(o));
    memset(&lg, 0, sizeof(lg));

    int rr = resolve_repo(r, q, repo, sizeof(repo), resp);
    if (rr < 0 || rr == 400)
        return rr;
    fh_buf_printf(out, "\"branch\":");
    fh_buf_json_str(out, q->branch);
    fh_buf_printf(out, ",\"repository\":");
    fh_buf_json_str(out, rr == 1 ? q->repository : repo);
    if (rr == 1) {
        snprintf(reason_buf, sizeof(reason_buf), "no revisions known for branch '%s'%s", q->branch,
                 q->repository ? " in this repository" : "");
        reason = reason_buf;
        goto answer;
    }
    if (rev_order_load(r, repo, q->branch, view_max_revisions(), &o))
        goto out;
    if (!o.n) {
        snprintf(reason_buf, sizeof(reason_buf), "no revisions known for branch '%.200s' in %.200s",
                 q->branch, repo);
        reason = reason_buf;
        goto answer;
    }
    if (required_builders(r, repo, q->branch, &names, &nb, &from_config))
        goto out;
    if (!nb) {
        snprintf(reason_buf, sizeof(reason_buf), "no finished builds on branch '%s'", q->branch);
        reason = reason_buf;
        goto answer;
    }
    if (fh_lastgreen_init(&lg, o.n, nb) || load_builds(r, repo, q->branch, &o, names, nb, &lg) ||
        fh_lastgreen_decide(&lg, &ans))
        goto out;
    if (ans.why != FH_LG_FOUND) {
        snprintf(reason_buf, sizeof(reason_buf),
                 ans.why == FH_LG_NO_GREEN
                     ? "builder '%s' has no green build on branch '%s'"
                     : "no revision is good for every required builder (builder '%s' has "
                       "no good revision old enough on branch '%s')",
                 names[ans.builder], q->branch);
        reason = reason_buf;
    }

answer:
    fh_buf_printf(out, ",\"revision\":");
    if (ans.rev >= 0) {
        fh_buf_json_str(out, o.rev[ans.rev]);
        fh_buf_printf(out, ",\"position\":");
        put_double(out, o.pos[ans.rev]);
        fh_buf_printf(out, ",\"changeid\":");
        if (o.changeid[ans.rev])
            fh_buf_printf(out, "%lld", o.changeid[ans.rev]);
        else
            fh_buf_printf(out, "null");
        fh_buf_printf(out, ",\"reason\":null");
    } else {
        fh_buf_printf(out, "null,\"position\":null,\"changeid\":null,\"reason\":");
        fh_buf_json_str(out, reason);
    }
    fh_buf_printf(out, ",\"required_from\":\"%s\",\"required_builders\":[",
                  from_config ? "config" : "recent_builds");
    for (size_t i = 0; i < nb; i++) {
        fh_buf_printf(out, "%s", i ? "," : "");
        fh_buf_json_str(out, names[i]);
    }
    fh_buf_printf(out, "],\"builders\":[");
    for (size_t i = 0; ans.rev >= 0 && i < nb; i++) {
        fh_lg_reason why;
        fh_lastgreen_reason(&lg, i, ans.rev, &why);
        fh_buf_printf(out, "%s{\"builder\":", i ? "," : "");
        fh_buf_json_str(out, names[i]);
        if (!why.between) {
            fh_buf_printf(out, ",\"good_by\":\"green_build\",\"build\":");
            put_lg_build(out, why.build, &o);
        } else {
            fh_buf_printf(out, ",\"good_by\":\"between_green_builds\",\"build_before\":");
            put_lg_build(out, why.before, &o);
            fh_buf_printf(out, ",\"build_after\":");
            put_lg_build(out, why.after, &o);
        }
        fh_buf_printf(out, "}");
    }
    fh_buf_printf(out, "]");
    rc = 0;
out:
    free_names(names, nb);
    fh_lastgreen_free(&lg);
    rev_order_free(&o);
    return rc;
}

static void h_last_green(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    branch_args q;
    fh_buf k;
    (void)ctx;
    if (branch_params(req, resp, &q, 0))
        return;
    fh_buf_init(&k, 8192);
    fh_buf_printf(&k, "last-green|");
    key_add(&k, "branch", q.branch);
    key_add(&k, "repository", q.repository);
    serve(resp, k.data, render_last_green, &q, 0);
    fh_buf_free(&k);
}

/* ---- revisions -------------------------------------------------------------------------- */

static int render_revisions(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                            fh_http_response *resp)
{
    const branch_args *q = args;
    char repo[1024];
    (void)a;
    int rr = resolve_repo(r, q, repo, sizeof(repo), resp);
    if (rr < 0 || rr == 400)
        return rr;
    fh_buf_printf(out, "\"branch\":");
    fh_buf_json_str(out, q->branch);
    fh_buf_printf(out, ",\"repository\":");
    fh_buf_json_str(out, rr == 1 ? q->repository : repo);
    if (rr == 1) {
        fh_buf_printf(out, ",\"builders\":[],\"revisions\":[],\"limit\":%lld", q->limit);
        return 0;
    }
    sqlite3_stmt *st = view_reader_stmt(
        r, S_MATRIX_BUILDERS,
        "SELECT json_group_array(builder) FROM (SELECT DISTINCT b.builder FROM builds b"
        " WHERE b.repository = ?1 AND b.branch = ?2 AND b.revision IN (SELECT revision"
        " FROM revisions WHERE repository = ?1 AND branch = ?2 " REV_ORDER_DESC " LIMIT ?3)"
        " ORDER BY b.builder)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, q->branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, q->limit);
    fh_buf_printf(out, ",\"builders\":");
    if (one_json(st, out))
        return -1;
    /* Each cell is the builder's newest build at the revision. */
    st = view_reader_stmt(
        r, S_MATRIX,
        "SELECT json_group_array(json(o)) FROM (SELECT json_object('revision', r.revision,"
        " 'position', r.pos, 'changeid', r.changeid, 'author', c.author, 'when', c.when_ts,"
        " 'comments', c.comments, 'builds', json((SELECT json_group_object(b.builder,"
        "   json_object('buildid', b.buildid, 'number', b.number, 'finished',"
        "   json(CASE b.finished WHEN 1 THEN 'true' ELSE 'false' END), 'results', b.results,"
        "   'state_string', b.state_string)) FROM builds b"
        "   WHERE b.repository = r.repository AND b.branch = r.branch"
        "   AND b.revision = r.revision AND b.buildid = (SELECT max(b2.buildid) FROM builds b2"
        "   WHERE b2.repository = b.repository AND b2.branch = b.branch"
        "   AND b2.revision = b.revision AND b2.builder = b.builder)))) o"
        " FROM revisions r LEFT JOIN changes c ON c.changeid = r.changeid"
        " WHERE r.repository = ?1 AND r.branch = ?2"
        " ORDER BY r.pos DESC, (r.changeid IS NULL) DESC, r.changeid DESC, r.revision DESC"
        " LIMIT ?3)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, q->branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, q->limit);
    fh_buf_printf(out, ",\"revisions\":");
    if (one_json(st, out))
        return -1;
    fh_buf_printf(out, ",\"limit\":%lld", q->limit);
    return 0;
}

static void h_revisions(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    branch_args q;
    fh_buf k;
    (void)ctx;
    if (branch_params(req, resp, &q, 1))
        return;
    fh_buf_init(&k, 8192);
    fh_buf_printf(&k, "revisions|");
    key_add(&k, "branch", q.branch);
    key_add(&k, "repository", q.repository);
    fh_buf_printf(&k, "limit=%lld", q.limit);
    serve(resp, k.data, render_revisions, &q, 0);
    fh_buf_free(&k);
}

/* ---- stats ------------------------------------------------------------------------------ */

typedef struct stats_args {
    const char *builder;
    long long window, bucket, limit;
} stats_args;

/* Nearest-rank percentile of sorted v[0..n-1]. */
static double pct(const double *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct step_stat {
    char *name;
    size_t count;
    double p50, p95, max, mean;
} step_stat;

static int step_stat_cmp(const void *a, const void *b)
{
    const step_stat *x = a, *y = b;
    if (x->p95 != y->p95)
        return x->p95 > y->p95 ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void put_window(fh_buf *out, const view_asof *a, const stats_args *s)
{
    fh_buf_printf(out, "\"builder\":");
    fh_buf_json_str(out, s->builder);
    fh_buf_printf(out, ",\"window_s\":%lld,\"from\":", s->window);
    if (a->clock > 0) {
        put_rfc3339(out, a->clock - (double)s->window);
        fh_buf_printf(out, ",\"to\":");
        put_rfc3339(out, a->clock);
    } else {
        fh_buf_printf(out, "null,\"to\":null");
    }
}

static int render_step_stats(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                             fh_http_response *resp)
{
    const stats_args *s = args;
    step_stat *stats = NULL;
    size_t nstats = 0, cap = 0, nd = 0, dcap = 0;
    double *d = NULL;
    char *cur = NULL;
    int rc = -1;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_STEP_STATS,
        "SELECT name, duration_s FROM steps WHERE finished = 1 AND complete_at > ?1"
        " AND complete_at <= ?2 AND (?3 IS NULL OR builder = ?3) AND duration_s IS NOT NULL"
        " AND name IS NOT NULL ORDER BY name, duration_s");
    if (!st)
        return -1;
    sqlite3_bind_double(st, 1, a->clock - (double)s->window);
    sqlite3_bind_double(st, 2, a->clock);
    bind_opt(st, 3, s->builder);
    for (;;) {
        int src = sqlite3_step(st);
        const char *name = src == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (src != SQLITE_ROW && src != SQLITE_DONE)
            goto out;
        if (cur && (!name || strcmp(name, cur))) {
            if (nstats == cap) {
                cap = cap ? cap * 2 : 32;
                step_stat *ns = realloc(stats, cap * sizeof(*ns));
                if (!ns)
                    goto out;
                stats = ns;
            }
            double sum = 0;
            for (size_t i = 0; i < nd; i++)
                sum += d[i];
            stats[nstats++] =
                (step_stat){cur, nd, pct(d, nd, 50), pct(d, nd, 95), d[nd - 1], sum / (double)nd};
            cur = NULL;
            nd = 0;
        }
        if (!name)
            break;
        if (!cur && !(cur = strdup(name)))
            goto out;
        if (nd == dcap) {
            dcap = dcap ? dcap * 2 : 256;
            double *nd2 = realloc(d, dcap * sizeof(*d));
            if (!nd2)
                goto out;
            d = nd2;
        }
        d[nd++] = sqlite3_column_double(st, 1);
    }
    if (nstats)
        qsort(stats, nstats, sizeof(*stats), step_stat_cmp);
    put_window(out, a, s);
    fh_buf_printf(out, ",\"steps\":[");
    for (size_t i = 0; i < nstats && i < (size_t)s->limit; i++) {
        fh_buf_printf(out, "%s{\"name\":", i ? "," : "");
        fh_buf_json_str(out, stats[i].name);
        fh_buf_printf(out, ",\"count\":%zu,\"p50_s\":", stats[i].count);
        put_double(out, stats[i].p50);
        fh_buf_printf(out, ",\"p95_s\":");
        put_double(out, stats[i].p95);
        fh_buf_printf(out, ",\"max_s\":");
        put_double(out, stats[i].max);
        fh_buf_printf(out, ",\"mean_s\":");
        put_double(out, round(stats[i].mean * 1000.0) / 1000.0);
        fh_buf_printf(out, "}");
    }
    fh_buf_printf(out, "],\"total_steps\":%zu", nstats);
    rc = 0;
out:
    free(cur);
    for (size_t i = 0; i < nstats; i++)
        free(stats[i].name);
    free(stats);
    free(d);
    return rc;
}

static int stats_params(fh_http_request *req, fh_http_response *resp, stats_args *s, int bucket)
{
    memset(s, 0, sizeof(*s));
    if (check_constraint(req, resp) || param_str(req, resp, "builder", &s->builder) ||
        param_duration(req, resp, "window", 86400, 1, 366LL * 86400, &s->window) ||
        (bucket && param_duration(req, resp, "bucket", 3600, 1, 366LL * 86400, &s->bucket)) ||
        (!bucket && param_int(req, resp, "limit", 50, 1, 1000, &s->limit)))
        return -1;
    if (bucket && s->window / s->bucket > 1000) {
        fh_http_error(resp, 400, "bad_parameter", "bucket",
                      "bucket: window/bucket must be at most 1000 buckets");
        return -1;
    }
    return 0;
}

static void h_step_stats(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    stats_args s;
    fh_buf k;
    (void)ctx;
    if (stats_params(req, resp, &s, 0))
        return;
    fh_buf_init(&k, 4096);
    fh_buf_printf(&k, "stats-steps|");
    key_add(&k, "builder", s.builder);
    fh_buf_printf(&k, "window=%lld|limit=%lld", s.window, s.limit);
    serve(resp, k.data, render_step_stats, &s, 0);
    fh_buf_free(&k);
}

typedef struct bucket_acc {
    long long counts[7];
    double *dur, *wait;
    size_t ndur, nwait, cdur, cwait;
} bucket_acc;

static int push_dbl(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        double *nv = realloc(*v, c * sizeof(*nv));
        if (!nv)
            return -1;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static void put_dist(fh_buf *out, const char *name, double *v, size_t n)
{
    fh_buf_printf(out, ",\"%s\":", name);
    if (!n) {
        fh_buf_printf(out, "null");
        return;
    }
    qsort(v, n, sizeof(*v), dbl_cmp);
    fh_buf_printf(out, "{\"p50\":");
    put_double(out, pct(v, n, 50));
    fh_buf_printf(out, ",\"p95\":");
    put_double(out, pct(v, n, 95));
    fh_buf_printf(out, ",\"max\":");
    put_double(out, v[n - 1]);
    fh_buf_printf(out, "}");
}

static int render_build_stats(view_reader *r, const view_asof *a, const void *args, fh_buf *out,
                              fh_http_response *resp)
{
    static const char *const names[7] = {"success",   "warnings", "failure",  "skipped",
                                         "exception", "retry",    "cancelled"};
    const stats_args *s = args;
    double from = a->clock - (double)s->window;
    double first = floor(from / (double)s->bucket) * (double)s->bucket;
    size_t nbk = a->clock > 0 ? (size_t)((a->clock - first) / (double)s->bucket) + 1 : 0;
    bucket_acc *bk = calloc(nbk ? nbk : 1, sizeof(*bk));
    int rc = -1;
    (void)resp;
    if (!bk)
        return -1;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILD_STATS,
        "SELECT b.complete_at, b.results, b.duration_s, b.started_at - q.submitted_at"
        " FROM builds b LEFT JOIN buildrequests q ON q.buildrequestid = b.buildrequestid"
        " WHERE b.finished = 1 AND b.complete_at > ?1 AND b.complete_at <= ?2"
        " AND (?3 IS NULL OR b.builder = ?3)");
    if (!st)
        goto out;
    sqlite3_bind_double(st, 1, from);
    sqlite3_bind_double(st, 2, a->clock);
    bind_opt(st, 3, s->builder);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        double t = sqlite3_column_double(st, 0);
        size_t i = (size_t)((t - first) / (double)s->bucket);
        if (i >= nbk)
            continue;
        int res = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 1);
        if (res >= 0 && res < 7)
            bk[i].counts[res]++;
        if (sqlite3_column_type(st, 2) != SQLITE_NULL &&
            push_dbl(&bk[i].dur, &bk[i].ndur, &bk[i].cdur, sqlite3_column_double(st, 2)))
            goto out;
        if (sqlite3_column_type(st, 3) != SQLITE_NULL &&
            push_dbl(&bk[i].wait, &bk[i].nwait, &bk[i].cwait,
                     fmax(0.0, round(sqlite3_column_double(st, 3) * 1000.0) / 1000.0)))
            goto out;
    }
    if (src != SQLITE_DONE)
        goto out;
    put_window(out, a, s);
    fh_buf_printf(out, ",\"bucket_s\":%lld,\"buckets\":[", s->bucket);
    for (size_t i = 0; i < nbk; i++) {
        bucket_acc *b = &bk[i];
        long long n = 0;
        for (int k = 0; k < 7; k++)
            n += b->counts[k];
        fh_buf_printf(out, "%s{\"start\":", i ? "," : "");
        put_rfc3339(out, first + (double)i * (double)s->bucket);
        fh_buf_printf(out, ",\"builds\":%lld,\"results\":{", n);
        for (int k = 0; k < 7; k++)
            fh_buf_printf(out, "%s\"%s\":%lld", k ? "," : "", names[k], b->counts[k]);
        long long failed = b->counts[2] + b->counts[4];
        long long judged = failed + b->counts[0] + b->counts[1];
        fh_buf_printf(out, "},\"failure_rate\":");
        if (judged)
            put_double(out, round((double)failed / (double)judged * 10000.0) / 10000.0);
        else
            fh_buf_printf(out, "null");
        put_dist(out, "duration_s", b->dur, b->ndur);
        put_dist(out, "queue_wait_s", b->wait, b->nwait);
        fh_buf_printf(out, "}");
    }
    fh_buf_printf(out, "]");
    rc = 0;
out:
    for (size_t i = 0; i < nbk; i++) {
        free(bk[i].dur);
        free(bk[i].wait);
    }
    free(bk);
    return rc;
}

static void h_build_stats(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    stats_args s;
    fh_buf k;
    (void)ctx;
    if (stats_params(req, resp, &s, 1))
        return;
    fh_buf_init(&k, 4096);
    fh_buf_printf(&k, "stats-builds|");
    key_add(&k, "builder", s.builder);
    fh_buf_printf(&k, "window=%lld|bucket=%lld", s.window, s.bucket);
    serve(resp, k.data, render_build_stats, &s, 0);
    fh_buf_free(&k);
}

/* ---- routes ----------------------------------------------------------------------------- */

size_t rest_routes(fh_broker *b, fh_http_route *routes)
{
    const fh_http_route r[FH_REST_ROUTES] = {
        {"GET", "/api/v1/pending", FH_SCOPE_READ,
         "builder,branch,project,owner,repository,limit,access_token", h_pending, b},
        {"GET", "/api/v1/running", FH_SCOPE_READ,
         "builder,branch,project,owner,repository,worker,limit,access_token", h_running, b},
        {"GET", "/api/v1/last-green", FH_SCOPE_READ, "branch,repository,access_token", h_last_green,
         b},
        {"GET", "/api/v1/revisions", FH_SCOPE_READ, "branch,repository,limit,access_token",
         h_revisions, b},
        {"GET", "/api/v1/builds", FH_SCOPE_READ,
         "builder,branch,repository,project,owner,worker,revision,results,state,buildrequestid,"
         "limit,cursor,access_token",
         h_builds, b},
        {"GET", "/api/v1/builds/{}", FH_SCOPE_READ, "access_token", h_build, b},
        {"GET", "/api/v1/builders", FH_SCOPE_READ, "access_token", h_builders, b},
        {"GET", "/api/v1/stats/steps", FH_SCOPE_READ, "builder,window,limit,access_token",
         h_step_stats, b},
        {"GET", "/api/v1/stats/builds", FH_SCOPE_READ, "builder,window,bucket,access_token",
         h_build_stats, b},
    };
    /* Registered even when view.enabled is false: they answer 503 saying so. */
    for (size_t i = 0; i < FH_REST_ROUTES; i++)
        routes[i] = r[i];
    return FH_REST_ROUTES;
}
