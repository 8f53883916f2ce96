/* view/apply: one decoded event into SQL. Every update is written to give the same result in
 * any order (terminal states win, claims and presence go by event time, context fields take
 * only non-empty values): docs/architecture.md, "Idempotence and order". */
#include "internal.h"

void view_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void bind_str(sqlite3_stmt *st, int i, const fh_event_view *ev, const char *field)
{
    view_bind_text(st, i, fh_event_view_str(ev, field));
}

static void bind_int(sqlite3_stmt *st, int i, const fh_event_view *ev, const char *field)
{
    long long v;
    if (fh_event_view_int(ev, field, &v) == 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* Binds a number and advances the view clock with it (times in data are epoch seconds). */
static void bind_time(fh_view *v, sqlite3_stmt *st, int i, const fh_event_view *ev,
                      const char *field)
{
    double t;
    if (fh_event_view_num(ev, field, &t) == 0) {
        sqlite3_bind_double(st, i, t);
        /* A producer's clock far in the future must not prune the whole view. */
        if (t > v->clock && t < (double)fh_now_ms() / 1000.0 + 86400.0)
            v->clock = t;
    } else {
        sqlite3_bind_null(st, i);
    }
}

static void bind_num(sqlite3_stmt *st, int i, const fh_event_view *ev, const char *field)
{
    double v;
    if (fh_event_view_num(ev, field, &v) == 0)
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_json(fh_view *v, sqlite3_stmt *st, int i, const fh_event_view *ev,
                      const char *field)
{
    fh_buf_reset(&v->scratch);
    if (fh_event_view_member_json(ev, field, &v->scratch) == 0)
        sqlite3_bind_text(st, i, v->scratch.data ? v->scratch.data : "null", (int)v->scratch.len,
                          SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Binds the context as ?2..?9 (strings default to "" so rows never hold NULL context). */
static void bind_ctx(sqlite3_stmt *st, const fh_event_view *ev)
{
    static const char *const f[] = {"builder", "branch",   "revision", "repository",
                                    "project", "codebase", "owner"};
    bind_int(st, 2, ev, "builderid");
    for (int i = 0; i < 7; i++) {
        const char *s = fh_event_view_str(ev, f[i]);
        sqlite3_bind_text(st, 3 + i, s ? s : "", -1, SQLITE_TRANSIENT);
    }
}

/* Runs a bound writer statement to completion; returns the SQLite result code. */
int view_wrun(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int view_wexec(fh_view *v, enum wst w)
{
    return view_wrun(v->w[w]);
}

/* The envelope time of ev in epoch ms (orders claims and worker presence); -1 when unreadable.
 * The schema guarantees "time" is an RFC 3339 string. */
/* ms from an RFC 3339 "time", advancing the view clock with it; -1 when unreadable. */
static int64_t time_ms(fh_view *v, const char *t)
{
    int64_t ms = -1;
    if (!t || fh_time_parse(t, &ms))
        return -1;
    if (ms > 0 && ms / 1000.0 > v->clock && ms / 1000.0 < fh_now_ms() / 1000.0 + 86400.0)
        v->clock = ms / 1000.0;
    return ms;
}

int64_t view_event_time_ms(fh_view *v, const fh_event *ev)
{
    return time_ms(v, json_string_value(json_object_get(ev->root, "time")));
}

static int64_t event_time_ms(fh_view *v, const fh_event_view *ev)
{
    return time_ms(v, fh_jv_str(fh_jv_get(ev->root, "time"), NULL));
}

/* ---- applying one event ----------------------------------------------------------------- */

/* Upserts the event's builder; last_seen is the event's own time (field), so the row does not
 * depend on the order partitions are read in. */
static int put_builder(fh_view *v, const fh_event_view *ev, const char *field)
{
    long long id;
    double t = 0;
    const char *name = fh_event_view_str(ev, "builder");
    if (fh_event_view_int(ev, "builderid", &id) || !name)
        return SQLITE_OK;
    sqlite3_stmt *st = v->w[W_BUILDER];
    const char *project = fh_event_view_str(ev, "project");
    sqlite3_bind_int64(st, 1, id);
    view_bind_text(st, 2, name);
    view_bind_text(st, 3, project ? project : "");
    if (fh_event_view_num(ev, field, &t))
        sqlite3_bind_null(st, 4);
    else
        sqlite3_bind_double(st, 4, t);
    return view_wrun(st);
}

/* A revision seen in a build or request joins its branch's order (at time field of ev) unless
 * a change already placed it. */
static int put_build_revision(fh_view *v, const fh_event_view *ev, const char *field)
{
    const char *rev = fh_event_view_str(ev, "revision"), *branch = fh_event_view_str(ev, "branch");
    const char *repo = fh_event_view_str(ev, "repository");
    double t;
    if (!rev || !*rev || !branch || !repo || fh_event_view_num(ev, field, &t))
        return SQLITE_OK;
    sqlite3_stmt *st = v->w[W_REVISION];
    view_bind_text(st, 1, repo);
    view_bind_text(st, 2, branch);
    view_bind_text(st, 3, rev);
    sqlite3_bind_double(st, 4, t);
    sqlite3_bind_null(st, 5);
    return view_wrun(st);
}

static int apply_change(fh_view *v, const fh_event_view *ev)
{
    sqlite3_stmt *st = v->w[W_CHANGE];
    int rc;
    bind_int(st, 1, ev, "changeid");
    bind_str(st, 2, ev, "author");
    bind_str(st, 3, ev, "comments");
    bind_json(v, st, 4, ev, "files");
    bind_time(v, st, 5, ev, "when");
    bind_str(st, 6, ev, "category");
    bind_str(st, 7, ev, "revlink");
    bind_str(st, 8, ev, "branch");
    bind_str(st, 9, ev, "revision");
    bind_str(st, 10, ev, "repository");
    bind_str(st, 11, ev, "project");
    bind_str(st, 12, ev, "codebase");
    if ((rc = view_wrun(st)))
        return rc;
    const char *rev = fh_event_view_str(ev, "revision");
    if (!rev || !*rev)
        return SQLITE_OK;
    st = v->w[W_REVISION];
    bind_str(st, 1, ev, "repository");
    bind_str(st, 2, ev, "branch");
    view_bind_text(st, 3, rev);
    bind_num(st, 4, ev, "when");
    bind_int(st, 5, ev, "changeid");
    return view_wrun(st);
}

static int apply_buildrequest(fh_view *v, const fh_event_view *ev)
{
    sqlite3_stmt *st;
    int rc;
    switch (ev->type) {
    case FH_EV_BUILDREQUEST_NEW:
        st = v->w[W_BR_NEW];
        sqlite3_bind_int64(st, 1, ev->buildrequestid);
        bind_ctx(st, ev);
        bind_int(st, 10, ev, "buildsetid");
        bind_int(st, 11, ev, "priority");
        bind_time(v, st, 12, ev, "submitted_at");
        bind_str(st, 13, ev, "reason");
        if ((rc = view_wrun(st)) || (rc = put_builder(v, ev, "submitted_at")))
            return rc;
        return put_build_revision(v, ev, "submitted_at");
    case FH_EV_BUILDREQUEST_CLAIMED:
    case FH_EV_BUILDREQUEST_UNCLAIMED: {
        int64_t t = event_time_ms(v, ev);
        st = v->w[W_BR_CLAIM];
        sqlite3_bind_int64(st, 1, ev->buildrequestid);
        bind_ctx(st, ev);
        sqlite3_bind_int(st, 10, ev->type == FH_EV_BUILDREQUEST_CLAIMED);
        bind_time(v, st, 11, ev, "claimed_at");
        bind_str(st, 12, ev, "claimed_by_master");
        sqlite3_bind_int64(st, 13, t);
        return view_wrun(st);
    }
    default: /* complete */
        st = v->w[W_BR_COMPLETE];
        sqlite3_bind_int64(st, 1, ev->buildrequestid);
        bind_ctx(st, ev);
        bind_time(v, st, 10, ev, "complete_at");
        bind_int(st, 11, ev, "results");
        bind_int(st, 12, ev, "buildid");
        return view_wrun(st);
    }
}

static int apply_build(fh_view *v, const fh_event_view *ev)
{
    long long buildid;
    sqlite3_stmt *st;
    int rc;
    if (fh_event_view_int(ev, "buildid", &buildid))
        return SQLITE_OK;
    const char *at = "complete_at"; /* the time the builder and revision rows take */
    st = v->w[ev->type == FH_EV_BUILD_STARTED   ? W_BUILD_STARTED
              : ev->type == FH_EV_BUILD_UPDATED ? W_BUILD_UPDATED
                                                : W_BUILD_FINISHED];
    sqlite3_bind_int64(st, 1, buildid);
    bind_ctx(st, ev);
    sqlite3_bind_int64(st, 10, ev->buildrequestid);
    switch (ev->type) {
    case FH_EV_BUILD_STARTED:
        bind_int(st, 11, ev, "number");
        bind_str(st, 12, ev, "worker");
        bind_time(v, st, 13, ev, "started_at");
        view_bind_text(st, 14, ev->master);
        at = "started_at";
        break;
    case FH_EV_BUILD_UPDATED:
        bind_str(st, 11, ev, "state_string");
        return view_wrun(st);
    default: /* finished */
        bind_int(st, 11, ev, "number");
        bind_time(v, st, 12, ev, "complete_at");
        bind_int(st, 13, ev, "results");
        bind_str(st, 14, ev, "state_string");
        bind_num(st, 15, ev, "duration_s");
        view_bind_text(st, 16, ev->master);
        break;
    }
    if ((rc = view_wrun(st)) || (rc = put_builder(v, ev, at)) ||
        (rc = put_build_revision(v, ev, at)))
        return rc;
    /* The request's latest build. */
    st = v->w[W_BR_BUILD];
    sqlite3_bind_int64(st, 1, ev->buildrequestid);
    bind_ctx(st, ev);
    sqlite3_bind_int64(st, 10, buildid);
    return view_wrun(st);
}

static int apply_step(fh_view *v, const fh_event_view *ev)
{
    int started = ev->type == FH_EV_STEP_STARTED, hidden;
    const char *builder = fh_event_view_str(ev, "builder");
    sqlite3_stmt *st = v->w[started ? W_STEP_STARTED : W_STEP_FINISHED];
    bind_int(st, 1, ev, "stepid");
    bind_int(st, 2, ev, "buildid");
    view_bind_text(st, 3, builder ? builder : "");
    bind_int(st, 4, ev, "number");
    bind_str(st, 5, ev, "name");
    bind_time(v, st, 6, ev, started ? "started_at" : "complete_at");
    if (started)
        return view_wrun(st);
    bind_int(st, 7, ev, "results");
    bind_str(st, 8, ev, "state_string");
    bind_num(st, 9, ev, "duration_s");
    bind_json(v, st, 10, ev, "urls");
    if (fh_event_view_bool(ev, "hidden", &hidden) == 0)
        sqlite3_bind_int(st, 11, hidden);
    return view_wrun(st);
}

static int apply_log(fh_view *v, const fh_event_view *ev)
{
    sqlite3_stmt *st = v->w[W_LOG];
    bind_int(st, 1, ev, "logid");
    bind_int(st, 2, ev, "stepid");
    bind_int(st, 3, ev, "buildid");
    bind_str(st, 4, ev, "name");
    bind_str(st, 5, ev, "slug");
    bind_str(st, 6, ev, "type");
    bind_int(st, 7, ev, "num_lines");
    sqlite3_bind_int(st, 8, ev->type == FH_EV_LOG_FINISHED);
    return view_wrun(st);
}

static int apply_properties(fh_view *v, const fh_event_view *ev)
{
    sqlite3_stmt *st = v->w[W_PROPS];
    bind_int(st, 1, ev, "buildid");
    bind_json(v, st, 2, ev, "properties");
    return view_wrun(st);
}

static int apply_worker(fh_view *v, const fh_event_view *ev)
{
    sqlite3_stmt *st = v->w[W_WORKER];
    int64_t t = event_time_ms(v, ev);
    bind_int(st, 1, ev, "workerid");
    bind_str(st, 2, ev, "name");
    view_bind_text(st, 3, ev->master);
    sqlite3_bind_int(st, 4, ev->type == FH_EV_WORKER_CONNECTED);
    sqlite3_bind_int64(st, 5, t);
    return view_wrun(st);
}

/* Applies one valid event inside the open transaction. Returns SQLITE_OK, or the SQLite error
 * (the caller undoes the event's partial work). *stored is 0 for types the view skips. */
int view_apply_event(fh_view *v, const fh_event_view *ev, const fh_event *tree, int *stored)
{
    *stored = 1;
    switch (ev->type) {
    case FH_EV_CHANGE_NEW:
        return apply_change(v, ev);
    case FH_EV_BUILDREQUEST_NEW:
    case FH_EV_BUILDREQUEST_CLAIMED:
    case FH_EV_BUILDREQUEST_UNCLAIMED:
    case FH_EV_BUILDREQUEST_COMPLETE:
        return apply_buildrequest(v, ev);
    case FH_EV_BUILD_STARTED:
    case FH_EV_BUILD_UPDATED:
    case FH_EV_BUILD_FINISHED:
        return apply_build(v, ev);
    case FH_EV_STEP_STARTED:
    case FH_EV_STEP_FINISHED:
        return apply_step(v, ev);
    case FH_EV_LOG_NEW:
    case FH_EV_LOG_FINISHED:
        return apply_log(v, ev);
    case FH_EV_PROPERTY_SET:
        return apply_properties(v, ev);
    case FH_EV_WORKER_CONNECTED:
    case FH_EV_WORKER_DISCONNECTED:
        return apply_worker(v, ev);
    case FH_EV_TEST_RESULT_SET:
    case FH_EV_TEST_RESULTS:
        return tree ? view_tests_apply(v, tree, stored) : SQLITE_NOMEM;
    default:
        *stored = 0;
        return SQLITE_OK; /* log.chunk, master.* */
    }
}
