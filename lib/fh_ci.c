#include "fh_ci.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fh_sign.h"
#include "fh_util.h"

/* Steps of one GitHub job mapped at most (the rest are left out). */
#define MAX_STEPS 250
/* A step's id is base + job id * 1000 + its number (1-999): only jobs below this id can number
 * their steps so; their steps are left out otherwise. */
#define STEP_JOB_LIMIT (FH_CI_ID_BASE / 1000)
#define NAME_MAX_BYTES 1000

typedef struct mapper {
    fh_ci_system sys;
    const char *repo_field;
    fh_ci_why *why;
    json_t *out; /* this delivery's events; handed to the caller only when all is well */
    long long prefix;
    char master[65];  /* the CI system's host, "github.com" */
    char source[80];  /* "github://github.com" */
    char idbase[128]; /* "github:github.com:job:29679449"; an event id adds ":" and its part */
    json_t *ctx;      /* the context of the request the events are about (owned) */
    long long reqid, buildid;
    char cb[72]; /* clip()'s buffer for messages */
} mapper;

/* Context fields read from the payload; every pointer borrows from it. */
typedef struct source_ctx {
    const char *web_url; /* the repository's web page: the master's host, revlinks */
    const char *repository, *project, *owner;
} source_ctx;

enum { OK = 0, BAD = -1, IGNORED = 1 };

/* ---- errors ------------------------------------------------------------------------------- */

static int bad(mapper *x, const char *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(mapper *x, const char *at, const char *key, const char *fmt, ...)
{
    va_list ap;
    if (key)
        snprintf(x->why->param, sizeof(x->why->param), "%s.%s", at, key);
    else
        snprintf(x->why->param, sizeof(x->why->param), "%s", at);
    va_start(ap, fmt);
    vsnprintf(x->why->msg, sizeof(x->why->msg), fmt, ap);
    va_end(ap);
    return BAD;
}

static int oom(mapper *x)
{
    x->why->param[0] = '\0';
    snprintf(x->why->msg, sizeof(x->why->msg), "out of memory");
    return BAD;
}

static int ignored(mapper *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ignored(mapper *x, const char *fmt, ...)
{
    va_list ap;
    x->why->param[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(x->why->msg, sizeof(x->why->msg), fmt, ap);
    va_end(ap);
    return IGNORED;
}

/* s for a message: at most 64 bytes, anything but printable ASCII as '?', so the message is
 * text whatever the payload or header held (it goes into a JSON answer). */
static const char *clip(const char *s, char buf[72])
{
    size_t n = 0;
    for (; s[n] && n < 64; n++)
        buf[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
    buf[n] = '\0';
    return buf;
}

/* ---- reading the payload ------------------------------------------------------------------ */

/* A string member, NULL when absent, null or not a string. */
static const char *opt_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = opt_str(o, key);
    return s ? s : dflt;
}

static int get_obj(mapper *x, const json_t *o, const char *at, const char *key, const json_t **out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_object(v))
        return bad(x, at, key, "expected an object");
    *out = v;
    return OK;
}

static int get_str(mapper *x, const json_t *o, const char *at, const char *key, int nonempty,
                   const char **out)
{
    const char *s = opt_str(o, key);
    if (!s || (nonempty && !*s))
        return bad(x, at, key, nonempty ? "expected a non-empty string" : "expected a string");
    *out = s;
    return OK;
}

/* An id the CI system gives: an integer from 1 to FH_CI_ID_BASE - 1. */
static int get_id(mapper *x, const json_t *o, const char *at, const char *key, long long *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) >= FH_CI_ID_BASE)
        return bad(x, at, key, "expected an id (an integer from 1 to %lld)", FH_CI_ID_BASE - 1);
    *out = json_integer_value(v);
    return OK;
}

/* 1 and *ms when the member holds a timestamp, 0 when it is absent or null, -1 otherwise. */
static int opt_time(const json_t *o, const char *key, int64_t *ms)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    return json_is_string(v) && fh_ci_time_parse(json_string_value(v), ms) == 0 ? 1 : -1;
}

static int get_time(mapper *x, const json_t *o, const char *at, const char *key, int64_t *ms)
{
    if (opt_time(o, key, ms) != 1)
        return bad(x, at, key, "expected a timestamp (RFC 3339, or \"YYYY-MM-DD hh:mm:ss UTC\")");
    return OK;
}

/* A present but unreadable timestamp is an error; absent is *found 0. */
static int maybe_time(mapper *x, const json_t *o, const char *at, const char *key, int64_t *ms,
                      int *found)
{
    int r = opt_time(o, key, ms);
    if (r < 0)
        return bad(x, at, key, "expected a timestamp or null");
    *found = r;
    return OK;
}

/* The host of an http(s) URL, lower-cased, into x->master: the CI system's name in events. */
static int host_of(mapper *x, const char *url, const char *at, const char *key)
{
    const char *p = strstr(url, "://");
    size_t n;
    if (!p || !((p - url == 4 && strncasecmp(url, "http", 4) == 0) ||
                (p - url == 5 && strncasecmp(url, "https", 5) == 0)))
        return bad(x, at, key, "expected an http(s) URL");
    p += 3;
    n = strcspn(p, "/?#");
    for (const char *a = memchr(p, '@', n); a; a = memchr(p, '@', n)) { /* user info */
        n -= (size_t)(a + 1 - p);
        p = a + 1;
    }
    if (n == 0 || n >= sizeof(x->master))
        return bad(x, at, key, "expected an http(s) URL with a host of 1-64 characters");
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || c == '[' || c == ']' || c == '_'))
            return bad(x, at, key,
                       "expected an http(s) URL whose host has only letters, digits and . - _ : "
                       "[ ]");
        x->master[i] = c;
    }
    x->master[n] = '\0';
    snprintf(x->source, sizeof(x->source), "%s://%s", x->sys == FH_CI_GITHUB ? "github" : "gitlab",
             x->master);
    return OK;
}

/* ---- ids, names, context ------------------------------------------------------------------ */

static uint64_t fnv1a(const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 3; i++) {
        if (!parts[i])
            continue;
        for (const char *s = parts[i]; *s; s++) {
            h ^= (unsigned char)*s;
            h *= 1099511628211ULL;
        }
        h ^= '\n'; /* a separator no name part can hide */
        h *= 1099511628211ULL;
    }
    return h;
}

/* An id derived from names (builders, changes): in this system's range, never 0 there. */
static long long hashed_id(const mapper *x, const char *a, const char *b, const char *c)
{
    return x->prefix * FH_CI_ID_BASE + 1 + (long long)(fnv1a(a, b, c) % (FH_CI_ID_BASE - 1));
}

static long long ns(const mapper *x, long long id)
{
    return x->prefix * FH_CI_ID_BASE + id;
}

/* "a / b", or b alone when a is NULL or empty; BAD past NAME_MAX_BYTES. */
static int join_name(mapper *x, char *out, size_t size, const char *a, const char *b,
                     const char *at, const char *key)
{
    int n = a && *a ? snprintf(out, size, "%s / %s", a, b) : snprintf(out, size, "%s", b);
    if (n < 0 || (size_t)n >= size)
        return bad(x, at, key, "name too long (at most %d bytes with its prefix)", NAME_MAX_BYTES);
    return OK;
}

/* Sets the context of the request the next events are about; buildid is the request's build
 * (the same id: one job is one request and one build). */
static int set_context(mapper *x, long long id, const char *builder, const char *branch,
                       const char *revision, const source_ctx *s)
{
    x->reqid = x->buildid = ns(x, id);
    json_decref(x->ctx);
    x->ctx = json_pack("{s:I,s:I,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s}", "buildrequestid",
                       (json_int_t)x->reqid, "buildid", (json_int_t)x->buildid, "builder", builder,
                       "builderid", (json_int_t)hashed_id(x, s->repository, builder, NULL),
                       "branch", branch, "revision", revision, "repository", s->repository,
                       "project", s->project, "codebase", "", "owner", s->owner);
    return x->ctx ? OK : oom(x);
}

/* A copy of the context for one event's data; without buildid for request events that come
 * before the build exists. */
static json_t *ctx_data(mapper *x, int with_build)
{
    json_t *d = json_copy(x->ctx); /* scalars only: a shallow copy is a copy */
    if (d && !with_build)
        json_object_del(d, "buildid");
    return d;
}

static json_t *epoch(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

/* Appends an event of type around data (stolen; NULL means allocation failed). */
static int emit(mapper *x, const char *type, const char *idpart, int64_t t_ms, const char *subject,
                json_t *data)
{
    char id[256], ts[32];
    json_t *ev;
    if (!data)
        return oom(x);
    snprintf(id, sizeof(id), "%s:%s", x->idbase, idpart);
    fh_time_rfc3339(t_ms, ts, sizeof(ts));
    ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o}", "specversion", "1.0", "id", id,
                   "source", x->source, "type", type, "time", ts, "subject", subject,
                   "datacontenttype", "application/json", "master", x->master, "seq", (json_int_t)0,
                   "data", data);
    if (!ev || json_array_append_new(x->out, ev))
        return oom(x);
    return OK;
}

static int emit_request_new(mapper *x, long long buildsetid, int64_t submitted, const char *reason)
{
    char subject[48];
    json_t *d = ctx_data(x, 0);
    snprintf(subject, sizeof(subject), "buildrequests/%lld", x->reqid);
    if (d && json_object_set_new(d, "buildsetid", json_integer(buildsetid)) == 0 &&
        json_object_set_new(d, "priority", json_integer(0)) == 0 &&
        json_object_set_new(d, "submitted_at", epoch(submitted)) == 0 &&
        json_object_set_new(d, "reason", json_string(reason)) == 0)
        return emit(x, "buildrequest.new", "requested", submitted, subject, d);
    json_decref(d);
    return oom(x);
}

/* buildrequest.claimed, build.started and property.set (props stolen; NULL for none). */
static int emit_started(mapper *x, long long number, const char *worker, int64_t started,
                        json_t *props)
{
    char subject[48];
    json_t *d = ctx_data(x, 0);
    int rc = BAD;
    snprintf(subject, sizeof(subject), "buildrequests/%lld", x->reqid);
    if (!d || json_object_set_new(d, "claimed_at", epoch(started)) ||
        json_object_set_new(d, "claimed_by_master", json_string(x->master)))
        goto oom;
    rc = emit(x, "buildrequest.claimed", "claimed", started, subject, d);
    d = NULL;
    if (rc)
        goto out;
    snprintf(subject, sizeof(subject), "builds/%lld", x->buildid);
    if (!(d = ctx_data(x, 1)) || json_object_set_new(d, "number", json_integer(number)) ||
        json_object_set_new(d, "worker", json_string(worker)) ||
        json_object_set_new(d, "started_at", epoch(started)))
        goto oom;
    rc = emit(x, "build.started", "started", started, subject, d);
    d = NULL;
    if (rc || !props || !json_object_size(props))
        goto out;
    if (!(d = ctx_data(x, 1)) || json_object_set(d, "properties", props))
        goto oom;
    rc = emit(x, "property.set", "properties", started, subject, d);
    d = NULL;
    goto out;
oom:
    rc = oom(x);
out:
    json_decref(d);
    json_decref(props);
    return rc;
}

/* build.finished (when the job ran: ran and started) then buildrequest.complete. */
static int emit_finished(mapper *x, int ran, long long number, int64_t started, int64_t done,
                         int results, const char *state)
{
    char subject[48];
    json_t *d;
    if (ran) {
        snprintf(subject, sizeof(subject), "builds/%lld", x->buildid);
        d = ctx_data(x, 1);
        if (!d || json_object_set_new(d, "number", json_integer(number)) ||
            json_object_set_new(d, "complete_at", epoch(done)) ||
            json_object_set_new(d, "results", json_integer(results)) ||
            json_object_set_new(d, "state_string", json_string(state)) ||
            json_object_set_new(d, "duration_s",
                                json_real(done > started ? (double)(done - started) / 1000.0 : 0)))
            goto oom;
        if (emit(x, "build.finished", "finished", done, subject, d))
            return BAD;
    }
    snprintf(subject, sizeof(subject), "buildrequests/%lld", x->reqid);
    d = ctx_data(x, ran);
    if (!d || json_object_set_new(d, "complete_at", epoch(done)) ||
        json_object_set_new(d, "results", json_integer(results)))
        goto oom;
    return emit(x, "buildrequest.complete", "complete", done, subject, d);
oom:
    json_decref(d);
    return oom(x);
}

/* A property pair [value, source] into props (value stolen; NULL values are left out). */
static void prop(json_t *props, const char *name, json_t *value, const char *source)
{
    if (value)
        json_object_set_new(props, name, json_pack("[o,s]", value, source));
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : NULL;
}

/* "Name <email>" as Buildbot writes change authors; either part alone when the other is
 * missing. NULL when out of memory. */
static json_t *author_of(const json_t *author)
{
    const char *name = opt_str(author, "name"), *email = opt_str(author, "email");
    if (name && *name && email && *email)
        return json_sprintf("%s <%s>", name, email);
    return json_string(name && *name ? name : email ? email : "");
}

/* change.new for a commit the CI system is about to build. Its changeid is derived from the
 * repository, branch and revision, so every workflow run or pipeline of one push names the same
 * change. */
static int emit_change(mapper *x, const source_ctx *s, const char *branch, const char *sha,
                       const json_t *commit, const char *at, int64_t t_ms, const char *revlink)
{
    char subject[48];
    const char *message = NULL;
    int64_t when = 0;
    if (get_str(x, commit, at, "message", 0, &message) ||
        get_time(x, commit, at, "timestamp", &when))
        return BAD;
    long long changeid = hashed_id(x, s->repository, branch, sha);
    snprintf(x->idbase, sizeof(x->idbase), "%s:%s:change:%lld",
             x->sys == FH_CI_GITHUB ? "github" : "gitlab", x->master, changeid);
    snprintf(subject, sizeof(subject), "changes/%lld", changeid);
    json_t *d = json_pack(
        "{s:I,s:o,s:s,s:[],s:o,s:n,s:s,s:s,s:s,s:s,s:s,s:s}", "changeid", (json_int_t)changeid,
        "author", author_of(json_object_get(commit, "author")), "comments", message, "files",
        "when", epoch(when), "category", "revlink", revlink, "branch", branch, "revision", sha,
        "repository", s->repository, "project", s->project, "codebase", "");
    return emit(x, "change.new", "new", t_ms, subject, d);
}

/* The context's source fields: from the payload's repository (GitHub) or project (GitLab)
 * object, the web URL that names the master, the configured repository member and the project
 * path; the owner from the user object. */
static int read_source(mapper *x, const json_t *body, source_ctx *s)
{
    int gh = x->sys == FH_CI_GITHUB;
    const char *obj = gh ? "repository" : "project", *at = gh ? "body.repository" : "body.project";
    const char *web = gh ? "html_url" : "web_url";
    const json_t *o = NULL;
    if (get_obj(x, body, "body", obj, &o) || get_str(x, o, at, web, 1, &s->web_url) ||
        host_of(x, s->web_url, at, web) || get_str(x, o, at, x->repo_field, 1, &s->repository))
        return BAD;
    s->project = str_or(o, gh ? "full_name" : "path_with_namespace", "");
    s->owner = str_or(json_object_get(body, gh ? "sender" : "user"), gh ? "login" : "username", "");
    return OK;
}

/* ---- GitHub --------------------------------------------------------------------------------- */

/* Buildbot results of a GitHub conclusion (docs/ingest.md, "Results"). */
static int gh_results(const char *conclusion)
{
    static const struct {
        const char *name;
        int results;
    } map[] = {
        {"success", 0},         {"neutral", 1}, {"failure", 2},
        {"timed_out", 2},       {"skipped", 3}, {"action_required", 4},
        {"startup_failure", 4}, {"stale", 4},   {"cancelled", 6},
    };
    for (size_t i = 0; conclusion && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(conclusion, map[i].name) == 0)
            return map[i].results;
    return 4; /* none, or one this mapping does not know: no verdict on the code */
}

static int gh_steps(mapper *x, const json_t *job, long long jobid)
{
    const json_t *steps = json_object_get(job, "steps"), *st;
    long long last = 0;
    size_t i, n = 0;
    if (!json_is_array(steps) || jobid >= STEP_JOB_LIMIT)
        return OK;
    json_array_foreach(steps, i, st)
    {
        const char *name = opt_str(st, "name"), *status = opt_str(st, "status");
        const json_t *num = json_object_get(st, "number");
        int64_t t0, t1;
        char part[48], subject[64];
        long long number = json_integer_value(num);
        /* Steps that do not fit (not completed, no times, numbers out of order) are left out:
         * the job's own result still counts. */
        if (n == MAX_STEPS || !name || !*name || !status || strcmp(status, "completed") ||
            !json_is_integer(num) || number <= last || number > 999 ||
            opt_time(st, "started_at", &t0) != 1 || opt_time(st, "completed_at", &t1) != 1)
            continue;
        last = number;
        n++;
        long long stepid = x->prefix * FH_CI_ID_BASE + jobid * 1000 + number;
        const char *conclusion = opt_str(st, "conclusion");
        snprintf(subject, sizeof(subject), "builds/%lld/steps/%lld", x->buildid, number - 1);
        json_t *d = ctx_data(x, 1);
        if (!d || json_object_set_new(d, "stepid", json_integer(stepid)) ||
            json_object_set_new(d, "number", json_integer(number - 1)) ||
            json_object_set_new(d, "name", json_string(name)) ||
            json_object_set_new(d, "started_at", epoch(t0))) {
            json_decref(d);
            return oom(x);
        }
        snprintf(part, sizeof(part), "step:%lld:started", number);
        if (emit(x, "step.started", part, t0, subject, d))
            return BAD;
        d = ctx_data(x, 1);
        if (!d || json_object_set_new(d, "stepid", json_integer(stepid)) ||
            json_object_set_new(d, "number", json_integer(number - 1)) ||
            json_object_set_new(d, "name", json_string(name)) ||
            json_object_set_new(d, "complete_at", epoch(t1)) ||
            json_object_set_new(d, "results", json_integer(gh_results(conclusion))) ||
            json_object_set_new(d, "state_string",
                                json_string(conclusion ? conclusion : "completed")) ||
            json_object_set_new(d, "duration_s",
                                json_real(t1 > t0 ? (double)(t1 - t0) / 1000.0 : 0.0)) ||
            json_object_set_new(d, "urls", json_array()) ||
            json_object_set_new(d, "hidden", json_false())) {
            json_decref(d);
            return oom(x);
        }
        snprintf(part, sizeof(part), "step:%lld:finished", number);
        if (emit(x, "step.finished", part, t1, subject, d))
            return BAD;
    }
    return OK;
}

static int gh_workflow_job(mapper *x, const json_t *body, const char *action)
{
    static const char at[] = "body.workflow_job";
    const json_t *job = NULL;
    source_ctx s = {0};
    long long id = 0, run_id = 0, attempt;
    const char *name = NULL, *sha = NULL, *wf;
    char builder[NAME_MAX_BYTES + 1], reason[NAME_MAX_BYTES + 128];
    int64_t t0 = 0, t1 = 0;
    int found = 0;

    if (strcmp(action, "queued") && strcmp(action, "waiting") && strcmp(action, "in_progress") &&
        strcmp(action, "completed"))
        return ignored(x, "workflow_job action \"%s\" is not mapped", clip(action, x->cb));
    if (get_obj(x, body, "body", "workflow_job", &job) || get_id(x, job, at, "id", &id) ||
        get_id(x, job, at, "run_id", &run_id) || get_str(x, job, at, "name", 1, &name) ||
        get_str(x, job, at, "head_sha", 0, &sha) || read_source(x, body, &s))
        return BAD;
    wf = opt_str(job, "workflow_name");
    attempt = json_is_integer(json_object_get(job, "run_attempt"))
                  ? json_integer_value(json_object_get(job, "run_attempt"))
                  : 1;
    if (join_name(x, builder, sizeof(builder), wf, name, at, "name") ||
        set_context(x, id, builder, str_or(job, "head_branch", ""), sha, &s))
        return BAD;
    snprintf(x->idbase, sizeof(x->idbase), "github:%s:job:%lld", x->master, id);

    if (!strcmp(action, "queued") || !strcmp(action, "waiting")) {
        if (get_time(x, job, at, "created_at", &t0))
            return BAD;
        snprintf(reason, sizeof(reason), "GitHub Actions: %s, run %lld attempt %lld",
                 wf && *wf ? wf : name, run_id, attempt);
        return emit_request_new(x, ns(x, run_id), t0, reason);
    }
    const char *runner = opt_str(job, "runner_name");
    if (!strcmp(action, "in_progress")) {
        json_t *props = json_object();
        if (get_time(x, job, at, "started_at", &t0)) {
            json_decref(props);
            return BAD;
        }
        if (!props)
            return oom(x);
        prop(props, "workflow_name", str_or_null(wf), "GitHub Actions");
        prop(props, "run_id", json_integer(run_id), "GitHub Actions");
        prop(props, "run_attempt", json_integer(attempt), "GitHub Actions");
        prop(props, "html_url", str_or_null(opt_str(job, "html_url")), "GitHub Actions");
        if (json_is_array(json_object_get(job, "labels")))
            prop(props, "labels", json_deep_copy(json_object_get(job, "labels")), "GitHub Actions");
        prop(props, "runner_group_name", str_or_null(opt_str(job, "runner_group_name")),
             "GitHub Actions");
        return emit_started(x, id, runner && *runner ? runner : "unknown", t0, props);
    }
    /* completed: a job that never got a runner (skipped, cancelled while queued) has no build */
    const char *conclusion = opt_str(job, "conclusion");
    int ran = runner && *runner;
    if (get_time(x, job, at, "completed_at", &t1) ||
        maybe_time(x, job, at, "started_at", &t0, &found))
        return BAD;
    if (!found || t0 > t1)
        t0 = t1;
    if (ran && gh_steps(x, job, id))
        return BAD;
    return emit_finished(x, ran, id, t0, t1, gh_results(conclusion),
                         conclusion ? conclusion : "completed");
}

static int gh_workflow_run(mapper *x, const json_t *body, const char *action)
{
    static const char at[] = "body.workflow_run";
    const json_t *run = NULL, *commit;
    source_ctx s = {0};
    const char *sha = NULL;
    char revlink[1200];
    int64_t t = 0;
    if (strcmp(action, "requested"))
        return ignored(x,
                       "workflow_run action \"%s\" is not mapped (requested maps to "
                       "change.new; jobs come from workflow_job)",
                       clip(action, x->cb));
    if (get_obj(x, body, "body", "workflow_run", &run))
        return BAD;
    if (!json_is_object(commit = json_object_get(run, "head_commit")))
        return ignored(x, "workflow_run without a head_commit");
    if (get_str(x, run, at, "head_sha", 1, &sha) || get_time(x, run, at, "created_at", &t) ||
        read_source(x, body, &s))
        return BAD;
    snprintf(revlink, sizeof(revlink), "%s/commit/%s", s.web_url, sha);
    return emit_change(x, &s, str_or(run, "head_branch", ""), sha, commit,
                       "body.workflow_run.head_commit", t, revlink);
}

static int gh_check_run(mapper *x, const json_t *body, const char *action)
{
    static const char at[] = "body.check_run";
    const json_t *cr = NULL, *suite = NULL, *app;
    source_ctx s = {0};
    long long id = 0, suite_id = 0;
    const char *name = NULL, *sha = NULL, *status = NULL, *slug;
    char builder[NAME_MAX_BYTES + 1], reason[NAME_MAX_BYTES + 64];
    int64_t t0 = 0, t1 = 0;
    int found = 0;

    if (strcmp(action, "created") && strcmp(action, "completed"))
        return ignored(x, "check_run action \"%s\" is not mapped", clip(action, x->cb));
    if (get_obj(x, body, "body", "check_run", &cr))
        return BAD;
    app = json_object_get(cr, "app");
    slug = opt_str(app, "slug");
    if (slug && !strcmp(slug, "github-actions"))
        return ignored(x, "check_run of GitHub Actions: its workflow_job events carry the job");
    if (get_id(x, cr, at, "id", &id) || get_str(x, cr, at, "name", 1, &name) ||
        get_str(x, cr, at, "head_sha", 0, &sha) || get_str(x, cr, at, "status", 1, &status) ||
        get_obj(x, cr, at, "check_suite", &suite) ||
        get_id(x, suite, "body.check_run.check_suite", "id", &suite_id) ||
        maybe_time(x, cr, at, "started_at", &t0, &found) || read_source(x, body, &s))
        return BAD;
    if (join_name(x, builder, sizeof(builder), opt_str(app, "name"), name, at, "name") ||
        set_context(x, id, builder, str_or(suite, "head_branch", ""), sha, &s))
        return BAD;
    snprintf(x->idbase, sizeof(x->idbase), "github:%s:check:%lld", x->master, id);
    if (!strcmp(status, "completed")) {
        const char *conclusion = opt_str(cr, "conclusion");
        if (get_time(x, cr, at, "completed_at", &t1))
            return BAD;
        if (!found || t0 > t1)
            t0 = t1;
        return emit_finished(x, 1, id, t0, t1, gh_results(conclusion),
                             conclusion ? conclusion : "completed");
    }
    if (!found)
        return bad(x, at, "started_at", "expected a timestamp");
    snprintf(reason, sizeof(reason), "GitHub check run: %s", builder);
    if (strcmp(status, "in_progress"))
        return emit_request_new(x, ns(x, suite_id), t0, reason);
    if (emit_request_new(x, ns(x, suite_id), t0, reason))
        return BAD;
    return emit_started(x, id, slug && *slug ? slug : "check-run", t0, NULL);
}

static int gh_map(mapper *x, const char *event, const json_t *body)
{
    const char *action = opt_str(body, "action");
    int known = !strcmp(event, "workflow_job") || !strcmp(event, "workflow_run") ||
                !strcmp(event, "check_run");
    if (!known)
        return ignored(x, "event \"%s\" is not mapped", clip(event, x->cb));
    if (!action)
        return bad(x, "body", "action", "expected a string");
    if (!strcmp(event, "workflow_job"))
        return gh_workflow_job(x, body, action);
    if (!strcmp(event, "workflow_run"))
        return gh_workflow_run(x, body, action);
    return gh_check_run(x, body, action);
}

/* ---- GitLab --------------------------------------------------------------------------------- */

/* Buildbot results of a finished GitLab job (docs/ingest.md, "Results"). */
static int gl_results(const char *status, int allow_failure, const char *reason)
{
    if (!strcmp(status, "success"))
        return 0;
    if (!strcmp(status, "skipped"))
        return 3;
    if (!strcmp(status, "canceled"))
        return 6;
    if (allow_failure)
        return 1;
    if (!reason || !strcmp(reason, "script_failure") || !strcmp(reason, "job_execution_timeout") ||
        !strcmp(reason, "unknown_failure"))
        return 2;
    return 4; /* the runner, the instance or the setup failed, not the code */
}

static int gl_job(mapper *x, const json_t *body)
{
    static const char at[] = "body";
    source_ctx s = {0};
    long long id = 0, pipeline_id = 0;
    const char *name = NULL, *status = NULL, *sha = NULL, *stage;
    char builder[NAME_MAX_BYTES + 1], reason[64];
    int64_t created = 0, t0 = 0, t1 = 0;
    int found = 0;

    if (get_str(x, body, at, "build_status", 1, &status))
        return BAD;
    int pending = !strcmp(status, "pending") || !strcmp(status, "waiting_for_resource") ||
                  !strcmp(status, "preparing");
    int finished = !strcmp(status, "success") || !strcmp(status, "failed") ||
                   !strcmp(status, "canceled") || !strcmp(status, "skipped");
    if (!pending && !finished && strcmp(status, "running"))
        return ignored(x, "Job Hook status \"%s\" is not mapped", clip(status, x->cb));
    if (get_id(x, body, at, "build_id", &id) || get_str(x, body, at, "build_name", 1, &name) ||
        get_id(x, body, at, "pipeline_id", &pipeline_id) || get_str(x, body, at, "sha", 0, &sha) ||
        get_time(x, body, at, "build_created_at", &created) || read_source(x, body, &s))
        return BAD;
    stage = opt_str(body, "build_stage");
    if (join_name(x, builder, sizeof(builder), stage, name, at, "build_name") ||
        set_context(x, id, builder, str_or(body, "ref", ""), sha, &s))
        return BAD;
    snprintf(x->idbase, sizeof(x->idbase), "gitlab:%s:job:%lld", x->master, id);

    if (pending) {
        snprintf(reason, sizeof(reason), "GitLab CI: pipeline %lld", pipeline_id);
        return emit_request_new(x, ns(x, pipeline_id), created, reason);
    }
    const json_t *runner = json_object_get(body, "runner");
    int allow_failure = json_is_true(json_object_get(body, "build_allow_failure"));
    if (maybe_time(x, body, at, "build_started_at", &t0, &found))
        return BAD;
    if (!finished) { /* running */
        char wbuf[48];
        const char *worker = opt_str(runner, "description");
        json_t *props;
        if (!found)
            return bad(x, at, "build_started_at", "expected a timestamp (the job runs)");
        if (!worker || !*worker) {
            if (json_is_integer(json_object_get(runner, "id")))
                snprintf(wbuf, sizeof(wbuf), "runner-%lld",
                         (long long)json_integer_value(json_object_get(runner, "id")));
            else
                snprintf(wbuf, sizeof(wbuf), "unknown");
            worker = wbuf;
        }
        if (!(props = json_object()))
            return oom(x);
        prop(props, "pipeline_id", json_integer(pipeline_id), "GitLab CI");
        prop(props, "build_stage", str_or_null(stage), "GitLab CI");
        prop(props, "build_allow_failure", json_boolean(allow_failure), "GitLab CI");
        if (json_is_array(json_object_get(runner, "tags")))
            prop(props, "runner_tags", json_deep_copy(json_object_get(runner, "tags")),
                 "GitLab CI");
        return emit_started(x, id, worker, t0, props);
    }
    /* Finished. A job that never started (skipped, cancelled while pending) has no build; one
     * without a finish time finished when it started, or when it was created. */
    int fin_found = 0;
    const char *failure = opt_str(body, "build_failure_reason");
    char state[160];
    if (maybe_time(x, body, at, "build_finished_at", &t1, &fin_found))
        return BAD;
    if (!fin_found)
        t1 = found ? t0 : created;
    if (!found || t0 > t1)
        t0 = t1;
    if (!strcmp(status, "failed") && (failure || allow_failure))
        snprintf(state, sizeof(state), "failed (%s%s%s)", failure ? clip(failure, x->cb) : "",
                 failure && allow_failure ? ", " : "", allow_failure ? "allowed to fail" : "");
    else
        snprintf(state, sizeof(state), "%s", status);
    return emit_finished(x, found, id, t0, t1, gl_results(status, allow_failure, failure), state);
}

static int gl_pipeline(mapper *x, const json_t *body)
{
    static const char at[] = "body.object_attributes";
    const json_t *oa = NULL, *commit;
    const char *status = NULL, *sha = NULL;
    source_ctx s = {0};
    int64_t t = 0;
    if (get_obj(x, body, "body", "object_attributes", &oa) ||
        get_str(x, oa, at, "status", 1, &status))
        return BAD;
    if (strcmp(status, "created") && strcmp(status, "waiting_for_resource") &&
        strcmp(status, "preparing") && strcmp(status, "pending"))
        return ignored(x,
                       "Pipeline Hook status \"%s\" is not mapped (a new pipeline maps to "
                       "change.new; jobs come from the Job Hook)",
                       clip(status, x->cb));
    if (!json_is_object(commit = json_object_get(body, "commit")))
        return ignored(x, "Pipeline Hook without a commit");
    if (get_str(x, oa, at, "sha", 1, &sha) || get_time(x, oa, at, "created_at", &t) ||
        read_source(x, body, &s))
        return BAD;
    return emit_change(x, &s, str_or(oa, "ref", ""), sha, commit, "body.commit", t,
                       str_or(commit, "url", ""));
}

static int gl_map(mapper *x, const char *event, const json_t *body)
{
    const char *kind = opt_str(body, "object_kind");
    int job = !strcmp(event, "Job Hook"), pipeline = !strcmp(event, "Pipeline Hook");
    if (!job && !pipeline && strcmp(event, "System Hook"))
        return ignored(x, "event \"%s\" is not mapped", clip(event, x->cb));
    if (!kind)
        return bad(x, "body", "object_kind", "expected a string");
    if (job && strcmp(kind, "build"))
        return bad(x, "body", "object_kind", "expected \"build\" in a Job Hook");
    if (pipeline && strcmp(kind, "pipeline"))
        return bad(x, "body", "object_kind", "expected \"pipeline\" in a Pipeline Hook");
    if (!strcmp(kind, "build"))
        return gl_job(x, body);
    if (!strcmp(kind, "pipeline"))
        return gl_pipeline(x, body);
    return ignored(x, "System Hook object_kind \"%s\" is not mapped", clip(kind, x->cb));
}

/* ---- the API -------------------------------------------------------------------------------- */

int fh_ci_repo_field_ok(fh_ci_system sys, const char *field)
{
    static const char *const gh[] = {"html_url", "clone_url", "ssh_url", NULL};
    static const char *const gl[] = {"web_url", "git_http_url", "git_ssh_url", NULL};
    for (const char *const *f = sys == FH_CI_GITHUB ? gh : gl; field && *f; f++)
        if (!strcmp(*f, field))
            return 1;
    return 0;
}

fh_ci_result fh_ci_map(fh_ci_system sys, const char *event, const json_t *body, const fh_ci_opts *o,
                       json_t *out, fh_ci_why *why)
{
    mapper x;
    int rc;
    memset(&x, 0, sizeof(x));
    memset(why, 0, sizeof(*why));
    x.sys = sys;
    x.why = why;
    x.prefix = sys == FH_CI_GITHUB ? 1 : 2;
    x.repo_field = o && o->repo_field    ? o->repo_field
                   : sys == FH_CI_GITHUB ? "html_url"
                                         : "web_url";
    if (!json_is_object(body)) {
        bad(&x, "body", NULL, "expected a JSON object");
        return FH_CI_BAD;
    }
    if (!(x.out = json_array())) {
        oom(&x);
        return FH_CI_BAD;
    }
    rc = sys == FH_CI_GITHUB ? gh_map(&x, event ? event : "", body)
                             : gl_map(&x, event ? event : "", body);
    if (rc == OK && json_array_extend(out, x.out))
        rc = oom(&x);
    json_decref(x.ctx);
    json_decref(x.out);
    return rc == OK ? FH_CI_EVENTS : rc == IGNORED ? FH_CI_IGNORED : FH_CI_BAD;
}

/* ---- signatures and times ------------------------------------------------------------------- */

int fh_ci_github_verify(const char *secret, const char *header, const char *body, size_t len)
{
    unsigned char want[FH_HMAC_SHA256_BYTES], got[FH_HMAC_SHA256_BYTES];
    if (!header || strncmp(header, "sha256=", 7) || strlen(header + 7) != 2 * sizeof(got))
        return -1;
    for (size_t i = 0; i < sizeof(got); i++) {
        int hi = fh_hex_digit(header[7 + 2 * i]), lo = fh_hex_digit(header[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return -1;
        got[i] = (unsigned char)(hi << 4 | lo);
    }
    if (fh_hmac_sha256(secret, strlen(secret), body, len, want))
        return -2;
    return CRYPTO_memcmp(want, got, sizeof(got)) == 0 ? 0 : -2;
}

int fh_ci_gitlab_verify(const char *token, const char *header)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    if (!header)
        return -1;
    SHA256((const unsigned char *)token, strlen(token), a);
    SHA256((const unsigned char *)header, strlen(header), b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0 ? 0 : -2;
}

int fh_ci_time_parse(const char *s, int64_t *ms)
{
    char buf[48];
    size_t n = s ? strlen(s) : 0;
    if (n < 19 || n >= sizeof(buf) - 2)
        return -1;
    memcpy(buf, s, n + 1);
    if (n > 4 && !strcmp(buf + n - 4, " UTC")) { /* GitLab: "2026-11-22 05:00:00 UTC" */
        buf[n - 4] = 'Z';
        buf[n - 3] = '\0';
        n -= 3;
    } else if (n >= 24 && (buf[n - 5] == '+' || buf[n - 5] == '-')) { /* "+hhmm" */
        char sign = buf[n - 5], h1 = buf[n - 4], h2 = buf[n - 3], m1 = buf[n - 2], m2 = buf[n - 1];
        size_t at = buf[n - 6] == ' ' ? n - 6 : n - 5;
        buf[at] = sign;
        buf[at + 1] = h1;
        buf[at + 2] = h2;
        buf[at + 3] = ':';
        buf[at + 4] = m1;
        buf[at + 5] = m2;
        buf[at + 6] = '\0';
    }
    int64_t v;
    if (fh_time_parse(buf, &v) || v < 0)
        return -1;
    *ms = v;
    return 0;
}
