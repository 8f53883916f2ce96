/* view/derive_rules: what the view derives from an applied event (docs/events.md, "Derived
 * events"): builder.broken and builder.fixed (a state machine per builder and branch, in build
 * completion order), test.flaky (builder-level per build.finished, test-level when view/tests.c
 * sees a test flip), lkgr.advanced
 * (last-green of the branches a batch touched, by the REST layer's own code) and request.stale
 * (time-driven, from derive_tick). View thread only, inside the view's transactions. */
#include "derive_int.h"

#include "rest/internal.h"

static const char *const ctx_fields[] = {"buildrequestid", "builder",  "builderid",
                                         "branch",         "revision", "repository",
                                         "project",        "codebase", "owner"};

/* A new data object with the context fields of src (an event's data). */
static json_t *ctx_of(const json_t *src)
{
    json_t *d = json_object();
    for (size_t i = 0; d && i < sizeof(ctx_fields) / sizeof(ctx_fields[0]); i++) {
        json_t *v = json_object_get(src, ctx_fields[i]);
        if (v)
            json_object_set(d, ctx_fields[i], v);
    }
    return d;
}

/* The fields of a build's reference in derived events (build, last_green, broken_since). */
static const char *const ref_fields[] = {"buildid", "number", "revision", "results", "complete_at"};
#define NREF (sizeof(ref_fields) / sizeof(ref_fields[0]))

static json_t *build_ref(const fh_event *ev)
{
    json_t *r = json_object();
    for (size_t i = 0; r && i < NREF; i++)
        json_object_set(r, ref_fields[i], json_object_get(ev->data, ref_fields[i]));
    return r;
}

static json_t *parse_col(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? json_loads(s, 0, NULL) : NULL;
}

static char *dump(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

static const char *time_of(const fh_event *ev)
{
    return json_string_value(json_object_get(ev->root, "time"));
}

/* ---- suspects --------------------------------------------------------------------------- */

/* The position of revision rev on the branch: 1 and *pos, or 0 when the view has no such
 * revision (or rev is NULL). */
static int rev_pos(struct derive *dr, const char *repo, const char *branch, const char *rev,
                   double *pos)
{
    sqlite3_stmt *st = dr->st[D_REV_POS];
    int found = 0;
    if (!rev)
        return 0;
    view_bind_text(st, 1, repo);
    view_bind_text(st, 2, branch);
    view_bind_text(st, 3, rev);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *pos = sqlite3_column_double(st, 0);
        found = 1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return found;
}

/* How many of the branch's revisions come before bad (at pos) in the newest-first order: those
 * at the same position with a greater revision. */
static long long revs_above(struct derive *dr, const char *repo, const char *branch, double pos,
                            const char *bad)
{
    sqlite3_stmt *st = dr->st[D_REV_ABOVE];
    long long n = 0;
    view_bind_text(st, 1, repo);
    view_bind_text(st, 2, branch);
    sqlite3_bind_double(st, 3, pos);
    view_bind_text(st, 4, bad);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return n;
}

/* The suspects array of a break at bad after green (both revisions, either may be NULL): what
 * fh_derive_suspects picks from the branch's newest view.max_revisions revisions at or below
 * bad (newest first: pos, then revision, descending), read from bad down and no further than
 * derive.max_suspects + 1 rows, so a break costs its suspects, not the branch's history. */
static json_t *suspects(fh_view *v, const char *repo, const char *branch, const char *green,
                        const char *bad, int *truncated)
{
    struct derive *dr = v->derive;
    json_t *out = json_array();
    size_t max = (size_t)dr->max_suspects, n = 0;
    char **revs = calloc(max + 1, sizeof(*revs));
    long long *cid = calloc(max + 1, sizeof(*cid)), above = 0;
    double bpos = 0, gpos = 0;
    *truncated = 0;
    if (!out || !revs || !cid)
        goto done;
    int have_bad = rev_pos(dr, repo, branch, bad, &bpos);
    if (have_bad)
        above = revs_above(dr, repo, branch, bpos, bad);
    if (!have_bad || above >= v->max_revisions) { /* bad is not among them: bad alone */
        json_array_append_new(
            out, json_pack("{s:s,s:n,s:n,s:[]}", "revision", bad, "changeid", "author", "owners"));
        goto done;
    }
    /* green tied with bad and sorting before it: a green at or after bad, no suspects */
    if (rev_pos(dr, repo, branch, green, &gpos) && gpos == bpos && strcmp(green, bad) > 0)
        goto done;
    long long window = v->max_revisions - above; /* rows from bad down among the newest */
    sqlite3_stmt *st = dr->st[D_REVS];
    view_bind_text(st, 1, repo);
    view_bind_text(st, 2, branch);
    sqlite3_bind_double(st, 3, bpos);
    view_bind_text(st, 4, bad);
    sqlite3_bind_int64(st, 5, (long long)max + 1 < window ? (long long)max + 1 : window);
    while (n <= max && sqlite3_step(st) == SQLITE_ROW) {
        revs[n] = strdup((const char *)sqlite3_column_text(st, 0));
        cid[n] = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 1);
        if (!revs[n])
            break;
        n++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (size_t i = 0; i < n / 2; i++) { /* oldest first, as fh_derive_suspects reads */
        size_t k = n - 1 - i;
        char *r = revs[i];
        long long c = cid[i];
        revs[i] = revs[k];
        cid[i] = cid[k];
        revs[k] = r;
        cid[k] = c;
    }
    size_t from, to;
    if (fh_derive_suspects((const char *const *)revs, n, green, bad, max, &from, &to, truncated))
        goto done; /* bad was not read (out of memory) */
    for (size_t k = from; k < to; k++) {
        json_t *owners = json_array(), *author = json_null();
        if (cid[k]) {
            st = dr->st[D_AUTHOR];
            sqlite3_bind_int64(st, 1, cid[k]);
            if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
                author = json_string((const char *)sqlite3_column_text(st, 0));
            sqlite3_reset(st);
        }
        st = dr->st[D_OWNERS];
        view_bind_text(st, 1, repo);
        view_bind_text(st, 2, branch);
        view_bind_text(st, 3, revs[k]);
        while (sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(owners, json_string((const char *)sqlite3_column_text(st, 0)));
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        json_array_append_new(out, json_pack("{s:s,s:o,s:o,s:o}", "revision", revs[k], "changeid",
                                             cid[k] ? json_integer(cid[k]) : json_null(), "author",
                                             author ? author : json_null(), "owners", owners));
    }
done:
    for (size_t i = 0; revs && i < n; i++)
        free(revs[i]);
    free(revs);
    free(cid);
    return out;
}

/* ---- builder.broken / builder.fixed ----------------------------------------------------- */

/* Column i of a row as JSON (NULL: null). */
static json_t *col_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return json_string((const char *)sqlite3_column_text(st, i));
    default:
        return json_null();
    }
}

/* Starts a builder-level event's fields on d (the context fields): the build's id and ref. */
static void put_build(json_t *d, long long buildid, json_t *build)
{
    json_object_set_new(d, "buildid", json_integer(buildid));
    json_object_set(d, "build", build);
}

/* Emits a builder-level event of type for build buildid of ev's builder and branch, its id made
 * of the three; d holds the fields and is taken. SQLITE_OK or the error. */
static int emit_for_build(fh_view *v, const fh_event *ev, const char *type, json_t *d,
                          long long buildid)
{
    char idtext[32];
    snprintf(idtext, sizeof(idtext), "%lld", buildid);
    const char *parts[] = {fh_event_str(ev, "builder"), fh_event_str(ev, "branch"), idtext};
    return derive_emit(v, type, parts, 3, d, time_of(ev), "builds");
}

/* Emits builder.broken for build (its ref; buildid, on revision bad of repo) with the
 * builder's last green build: d holds the context fields and is taken (repo and bad are read
 * before it is let go). SQLITE_OK or the error. */
static int emit_broken(fh_view *v, const fh_event *ev, json_t *d, long long buildid,
                       const char *repo, const char *bad, json_t *build, json_t *green)
{
    int trunc;
    json_t *s = suspects(v, repo, fh_event_str(ev, "branch"),
                         json_string_value(json_object_get(green, "revision")), bad, &trunc);
    put_build(d, buildid, build);
    json_object_set(d, "last_green", green);
    json_object_set_new(d, "suspects", s);
    json_object_set_new(d, "suspects_truncated", json_boolean(trunc));
    return emit_for_build(v, ev, "builder.broken", d, buildid);
}

/* A green build (ref, completed at t) was applied after a build that completed later, while
 * the builder had no green build on the branch: records of other partitions apply in any
 * order, and a rebuild applies them in another order again. When the first build with a
 * verdict after this green one is red, the builder broke there: emits builder.broken for it
 * (the id builder_step gives it; one already emitted or read back is not emitted again) and
 * sets *red to its build; otherwise *red stays NULL. The red build found is the first the view
 * holds, so when an earlier red one is still to come, the break is named at the later one.
 * SQLITE_OK or the error. */
static int late_green_breaks(fh_view *v, const fh_event *ev, json_t *ref, double t,
                             long long buildid, json_t **red)
{
    enum { NCTX = sizeof(ctx_fields) / sizeof(ctx_fields[0]) }; /* the query's first columns */
    sqlite3_stmt *st = v->derive->st[D_NEXT_VERDICT];
    json_t *d = NULL, *b = NULL;
    long long redid = 0;
    int found = 0;
    *red = NULL;
    view_bind_text(st, 1, fh_event_str(ev, "builder"));
    view_bind_text(st, 2, fh_event_str(ev, "branch"));
    sqlite3_bind_double(st, 3, t);
    sqlite3_bind_int64(st, 4, buildid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW &&
        fh_derive_verdict(sqlite3_column_int64(st, NCTX + 3)) == FH_VERDICT_RED) {
        found = 1;
        redid = sqlite3_column_int64(st, NCTX);
        d = json_object();
        b = json_object();
        for (int i = 0; d && i < NCTX; i++)
            if (sqlite3_column_type(st, i) != SQLITE_NULL)
                json_object_set_new(d, ctx_fields[i], col_json(st, i));
        for (size_t i = 0; b && i < NREF; i++)
            json_object_set_new(b, ref_fields[i], col_json(st, NCTX + (int)i));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        goto out;
    rc = SQLITE_OK;
    if (!found)
        goto out; /* no later verdict, or a green one: nothing broke */
    if (!d || !b) {
        rc = SQLITE_NOMEM;
        goto out;
    }
    /* the repository and revision strings are d's, read before emit_broken lets d go */
    rc = emit_broken(v, ev, d, redid, json_string_value(json_object_get(d, "repository")),
                     json_string_value(json_object_get(d, "revision")), b, ref);
    d = NULL; /* taken */
    if (!rc) {
        *red = b;
        b = NULL;
    }
out:
    json_decref(d);
    json_decref(b);
    return rc;
}

/* In completion order: the state machine's step from state for ev's build (ref), emitting
 * builder.broken or builder.fixed; sets *next and keeps *green and *broken (owned references)
 * up to date. SQLITE_OK or the error. */
static int builder_next(fh_view *v, const fh_event *ev, enum fh_verdict verdict, json_t *ref,
                        long long buildid, enum fh_bstate state, enum fh_bstate *next,
                        json_t **green, json_t **broken)
{
    int rc = SQLITE_OK;
    enum fh_btransition tr = fh_derive_step(state, verdict, next);
    if (tr == FH_BT_BROKEN) {
        rc = emit_broken(v, ev, ctx_of(ev->data), buildid, fh_event_str(ev, "repository"),
                         fh_event_str(ev, "revision"), ref, *green);
    } else if (tr == FH_BT_FIXED) {
        json_t *d = ctx_of(ev->data);
        put_build(d, buildid, ref);
        json_object_set(d, "broken_since", *broken);
        rc = emit_for_build(v, ev, "builder.fixed", d, buildid);
    }
    if (rc)
        return rc;
    if (verdict == FH_VERDICT_GREEN) {
        json_decref(*green);
        *green = json_incref(ref);
        json_decref(*broken);
        *broken = NULL;
    } else if (tr == FH_BT_BROKEN) {
        json_decref(*broken);
        *broken = json_incref(ref);
    }
    return SQLITE_OK;
}

static int builder_step(fh_view *v, const fh_event *ev, enum fh_verdict verdict, json_t *ref,
                        double t, long long buildid)
{
    struct derive *dr = v->derive;
    const char *builder = fh_event_str(ev, "builder"), *branch = fh_event_str(ev, "branch");
    enum fh_bstate state = FH_BSTATE_UNKNOWN, next;
    json_t *green = NULL, *broken = NULL, *red = NULL;
    int rc = SQLITE_OK, late = 0;
    double last_t = t; /* the newest build seen, this one included */
    long long last_id = buildid;
    sqlite3_stmt *st = dr->st[D_BUILDER_GET];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, branch);
    if (sqlite3_step(st) == SQLITE_ROW) {
        double seen_t = sqlite3_column_double(st, 1);
        long long seen_id = sqlite3_column_int64(st, 2);
        state = (enum fh_bstate)sqlite3_column_int(st, 0);
        green = parse_col(st, 3);
        broken = parse_col(st, 4);
        /* Order is by completion: a build that completed before the newest one seen is late,
         * and changes nothing (the ids stay what they were), but for a green one while the
         * builder has only had red builds (late_green_breaks). */
        late = t < seen_t || (t == seen_t && buildid <= seen_id);
        if (late) {
            last_t = seen_t;
            last_id = seen_id;
        }
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (late) {
        if (state != FH_BSTATE_UNKNOWN || verdict != FH_VERDICT_GREEN ||
            (rc = late_green_breaks(v, ev, ref, t, buildid, &red)) || !red)
            goto out;
        next = FH_BSTATE_BROKEN;
        json_decref(green);
        green = json_incref(ref);
        json_decref(broken);
        broken = red;
    } else if ((rc = builder_next(v, ev, verdict, ref, buildid, state, &next, &green, &broken))) {
        goto out;
    }
    char *gt = dump(green), *bt = dump(broken);
    st = dr->st[D_BUILDER_PUT];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, branch);
    sqlite3_bind_int(st, 3, (int)next);
    sqlite3_bind_double(st, 4, last_t);
    sqlite3_bind_int64(st, 5, last_id);
    view_bind_text(st, 6, gt);
    view_bind_text(st, 7, bt);
    rc = view_wrun(st);
    free(gt);
    free(bt);
out:
    json_decref(green);
    json_decref(broken);
    return rc;
}

/* ---- test.flaky ------------------------------------------------------------------------- */

/* One result of builder (test NULL: the build as a whole) at the revision and branch of ev:
 * remembers whether it has passed and failed there, and emits test.flaky when this result is
 * the first flip (once per builder, test, branch and revision). ref is the build ev names.
 * A test-level detector calls this per test result. SQLITE_OK or the error. */
int derive_flaky_note(fh_view *v, const fh_event *ev, const char *test, int passed, json_t *ref)
{
    struct derive *dr = v->derive;
    const char *builder = fh_event_str(ev, "builder"), *branch = fh_event_str(ev, "branch");
    const char *rev = fh_event_str(ev, "revision");
    int seen = 0, flip, rc;
    double at = 0;
    json_t *p = NULL, *f = NULL;
    if (!rev || !*rev || !builder || !branch)
        return SQLITE_OK;
    sqlite3_stmt *st = dr->st[D_FLAKY_GET];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, test ? test : "");
    view_bind_text(st, 3, branch);
    view_bind_text(st, 4, rev);
    if (sqlite3_step(st) == SQLITE_ROW) {
        seen = sqlite3_column_int(st, 0);
        p = parse_col(st, 1);
        f = parse_col(st, 2);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    int next = fh_derive_flaky(seen, passed, &flip);
    if (passed && !p)
        p = json_incref(ref);
    if (!passed && !f)
        f = json_incref(ref);
    if (flip) {
        long long buildid = 0;
        fh_event_int(ev, "buildid", &buildid);
        const char *parts[] = {builder, test ? test : "", test ? "test" : "builder", branch, rev};
        json_t *d = ctx_of(ev->data);
        json_object_set_new(d, "buildid", json_integer(buildid));
        json_object_set_new(d, "test", test ? json_string(test) : json_null());
        json_object_set(d, "passed", p);
        json_object_set(d, "failed", f);
        if ((rc = derive_emit(v, "test.flaky", parts, 5, d, time_of(ev), "builds")))
            goto out;
    }
    if (fh_event_num(ev, "complete_at", &at))
        at = v->clock; /* a test.results chunk: no completion time of its own */
    char *pt = dump(p), *ft = dump(f);
    st = dr->st[D_FLAKY_PUT];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, test ? test : "");
    view_bind_text(st, 3, branch);
    view_bind_text(st, 4, rev);
    sqlite3_bind_int(st, 5, next);
    view_bind_text(st, 6, pt);
    view_bind_text(st, 7, ft);
    sqlite3_bind_double(st, 8, at);
    rc = view_wrun(st);
    free(pt);
    free(ft);
out:
    json_decref(p);
    json_decref(f);
    return rc;
}

/* A build a test-level test.flaky points at: what the view has of it (number, results and
 * complete_at are null while the build has not finished, as when its own test results flip). */
static json_t *test_build_ref(fh_view *v, long long buildid, const char *rev)
{
    struct derive *dr = v->derive;
    sqlite3_stmt *st = dr->st[D_BUILD_REF];
    json_t *r = json_pack("{s:I,s:n,s:s,s:n,s:n}", "buildid", (json_int_t)buildid, "number",
                          "revision", rev, "results", "complete_at");
    sqlite3_bind_int64(st, 1, buildid);
    if (r && sqlite3_step(st) == SQLITE_ROW) {
        static const char *const f[] = {"number", "results", "complete_at"};
        for (int i = 0; i < 3; i++)
            if (sqlite3_column_type(st, i) == SQLITE_INTEGER)
                json_object_set_new(r, f[i], json_integer(sqlite3_column_int64(st, i)));
            else if (sqlite3_column_type(st, i) == SQLITE_FLOAT)
                json_object_set_new(r, f[i], json_real(sqlite3_column_double(st, i)));
    }
    sqlite3_reset(st);
    return r;
}

int derive_on(fh_view *v)
{
    return v->derive && v->derive->on;
}

/* The flip is known (view_test_flaky_first): derive_flaky_note is told the first opposite
 * result, then this one, so its own state (per branch) flips on the second and emits with both
 * builds; a replay or a rebuild finds the id in derive_seen. */
int derive_test_flaky(fh_view *v, const fh_event *ev, const char *name, int passed)
{
    struct derive *dr = v->derive;
    const char *builder = fh_event_str(ev, "builder"), *rev = fh_event_str(ev, "revision");
    long long buildid = 0, other = 0;
    int rc;
    if (!dr || !dr->on || !builder || !rev || fh_event_int(ev, "buildid", &buildid))
        return SQLITE_OK;
    sqlite3_stmt *st = dr->st[D_TEST_OTHER];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, name);
    view_bind_text(st, 3, rev);
    sqlite3_bind_int(st, 4, !passed);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        other = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rc;
    if (!other)
        return SQLITE_OK;
    json_t *mine = test_build_ref(v, buildid, rev), *theirs = test_build_ref(v, other, rev);
    rc = mine && theirs ? derive_flaky_note(v, ev, name, !passed, theirs) : SQLITE_NOMEM;
    if (!rc)
        rc = derive_flaky_note(v, ev, name, passed, mine);
    json_decref(mine);
    json_decref(theirs);
    return rc;
}

/* ---- lkgr.advanced ---------------------------------------------------------------------- */

static void dirty_free(derive_dirty *d)
{
    free(d->repository);
    free(d->branch);
    json_decref(d->trigger);
    memset(d, 0, sizeof(*d));
}

/* Last-green of one branch by rest_render_last_green itself (on the writer connection, so it
 * sees the open batch); emits lkgr.advanced when it moved forward. */
static int lkgr_check(fh_view *v, const derive_dirty *d)
{
    struct derive *dr = v->derive;
    rest_args q;
    fh_buf out;
    int rc = SQLITE_OK, have_old = 0;
    double old_pos = 0;
    char *old_rev = NULL;
    memset(&q, 0, sizeof(q));
    q.branch = d->branch;
    q.repository = d->repository;
    fh_buf_init(&out, 64 << 20);
    fh_buf_printf(&out, "{");
    int rr = rest_render_last_green(&dr->rd, NULL, &q, &out, NULL);
    json_t *a =
        rr == 0 && fh_buf_printf(&out, "}") == 0 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    fh_buf_free(&out);
    const char *rev = json_string_value(json_object_get(a, "revision"));
    double pos = json_number_value(json_object_get(a, "position"));
    if (!rev)
        goto out;
    sqlite3_stmt *st = dr->st[D_LKGR_GET];
    view_bind_text(st, 1, d->repository);
    view_bind_text(st, 2, d->branch);
    if (sqlite3_step(st) == SQLITE_ROW) {
        have_old = 1;
        old_rev = strdup((const char *)sqlite3_column_text(st, 0));
        old_pos = sqlite3_column_double(st, 1);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (have_old && old_rev && strcmp(old_rev, rev) == 0)
        goto out;
    if (!have_old || pos > old_pos) {
        json_t *data = json_object_get(d->trigger, "data");
        json_t *e = ctx_of(data);
        const char *parts[] = {d->repository, d->branch, rev};
        json_object_set(e, "buildid", json_object_get(data, "buildid"));
        json_object_set_new(e, "old_revision", old_rev ? json_string(old_rev) : json_null());
        json_object_set_new(e, "new_revision", json_string(rev));
        json_object_set(e, "position", json_object_get(a, "position"));
        json_object_set(e, "changeid", json_object_get(a, "changeid"));
        json_object_set(e, "required_builders", json_object_get(a, "required_builders"));
        json_object_set(e, "builders", json_object_get(a, "builders"));
        if ((rc = derive_emit(v, "lkgr.advanced", parts, 3, e,
                              json_string_value(json_object_get(d->trigger, "time")), "builds")))
            goto out;
    }
    st = dr->st[D_LKGR_PUT];
    view_bind_text(st, 1, d->repository);
    view_bind_text(st, 2, d->branch);
    view_bind_text(st, 3, rev);
    sqlite3_bind_double(st, 4, pos);
    rc = view_wrun(st);
out:
    if (rr < 0)
        fh_log(FH_LOG_WARN, "derive.lkgr", "repository=%s branch=%s error=last-green failed",
               d->repository, d->branch);
    free(old_rev);
    json_decref(a);
    return rc;
}

/* Ends the round at its cursor: the next starts derive.lkgr_interval_ms from now, if a branch
 * is (still or again) dirty then. */
static void lkgr_round_end(struct derive *dr)
{
    sqlite3_stmt *st = dr->st[D_DIRTY_ANY];
    free(dr->lkgr_repo);
    free(dr->lkgr_branch);
    dr->lkgr_repo = dr->lkgr_branch = NULL;
    dr->dirty_pending = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    dr->next_lkgr = fh_now_ms() + dr->lkgr_ms;
}

/* One turn of a last-green round, inside the open transaction: the next
 * derive.lkgr_per_turn branches of derive_dirty after the round's cursor (in key order), each
 * row gone once looked at. A round ends at a turn that finds fewer; a branch marked again
 * behind the cursor waits for the next round. Bounded so that one batch's commit or one turn
 * between batches never recomputes every branch at once. */
static int lkgr_turn(fh_view *v)
{
    struct derive *dr = v->derive;
    size_t max = dr->lkgr_per_turn > 0 ? (size_t)dr->lkgr_per_turn : 1, n = 0;
    derive_dirty *d = calloc(max, sizeof(*d));
    int rc = d ? SQLITE_OK : SQLITE_NOMEM;
    sqlite3_stmt *st = dr->st[dr->lkgr_repo ? D_DIRTY_NEXT : D_DIRTY_FIRST];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    if (dr->lkgr_repo) {
        view_bind_text(st, 2, dr->lkgr_repo);
        view_bind_text(st, 3, dr->lkgr_branch);
    }
    /* read first, then look: the rows are deleted as they go */
    for (; !rc && n < max && sqlite3_step(st) == SQLITE_ROW; n++) {
        d[n].repository = strdup((const char *)sqlite3_column_text(st, 0));
        d[n].branch = strdup((const char *)sqlite3_column_text(st, 1));
        d[n].trigger = parse_col(st, 2);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (size_t i = 0; i < n; i++) {
        if (!rc && (!d[i].repository || !d[i].branch))
            rc = SQLITE_NOMEM;
        if (!rc && d[i].trigger)
            rc = lkgr_check(v, &d[i]);
        if (!rc) {
            st = dr->st[D_DIRTY_DEL];
            view_bind_text(st, 1, d[i].repository);
            view_bind_text(st, 2, d[i].branch);
            rc = view_wrun(st);
        }
        if (!rc && i + 1 == n) { /* the cursor: where the next turn goes on */
            free(dr->lkgr_repo);
            free(dr->lkgr_branch);
            dr->lkgr_repo = d[i].repository;
            dr->lkgr_branch = d[i].branch;
            d[i].repository = d[i].branch = NULL;
        }
        dirty_free(&d[i]);
    }
    free(d);
    if (!rc && n < max)
        lkgr_round_end(dr);
    else if (rc)
        dr->next_lkgr = fh_now_ms() + dr->lkgr_ms; /* the batch is retried, and so is the turn */
    return rc;
}

/* A round is due: one is in progress, or a branch is dirty and derive.lkgr_interval_ms is up. */
static int lkgr_due(const struct derive *dr, int64_t now_ms)
{
    return dr->lkgr_repo || (dr->dirty_pending && now_ms >= dr->next_lkgr);
}

int derive_batch_end(fh_view *v)
{
    struct derive *dr = v->derive;
    int rc;
    /* the acknowledged outbox rows leave with this batch's commit: no transaction of their own */
    if ((rc = derive_outbox_settle(v)))
        return rc;
    if (!dr || !dr->on || !lkgr_due(dr, fh_now_ms()))
        return SQLITE_OK;
    return lkgr_turn(v);
}

void derive_lkgr_due(fh_view *v, int64_t now_ms)
{
    struct derive *dr = v->derive;
    if (!lkgr_due(dr, now_ms) || view_wexec(v, W_BEGIN))
        return;
    if (lkgr_turn(v) || view_wexec(v, W_COMMIT)) {
        char q[420];
        fh_log(FH_LOG_ERROR, "derive.lkgr", "error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->db)));
        view_wexec(v, W_ROLLBACK);
        return;
    }
    derive_after_commit(v);
}

/* Marks ev's branch for a last-green look. The trigger kept with it is what lkgr.advanced takes
 * from the newest build.finished (lkgr_check): its time and its data's context fields and
 * buildid, not the whole event. */
static int mark_dirty(fh_view *v, const fh_event *ev)
{
    struct derive *dr = v->derive;
    const char *repo = fh_event_str(ev, "repository"), *branch = fh_event_str(ev, "branch");
    if (!repo || !branch)
        return SQLITE_OK;
    json_t *data = ctx_of(ev->data), *t = json_object();
    if (data && json_object_get(ev->data, "buildid"))
        json_object_set(data, "buildid", json_object_get(ev->data, "buildid"));
    if (t && json_object_get(ev->root, "time"))
        json_object_set(t, "time", json_object_get(ev->root, "time"));
    if (t && data)
        json_object_set(t, "data", data);
    char *text = data && t ? dump(t) : NULL;
    json_decref(data);
    json_decref(t);
    if (!text)
        return SQLITE_NOMEM;
    sqlite3_stmt *st = dr->st[D_DIRTY_PUT];
    view_bind_text(st, 1, repo);
    view_bind_text(st, 2, branch);
    view_bind_text(st, 3, text);
    free(text);
    int rc = view_wrun(st);
    if (!rc)
        dr->dirty_pending = 1;
    return rc;
}

/* ---- the hook ---------------------------------------------------------------------------- */

int derive_event(fh_view *v, const fh_event *ev)
{
    struct derive *dr = v->derive;
    long long results, buildid;
    double t;
    int rc;
    if (!dr || !dr->on || ev->type != FH_EV_BUILD_FINISHED ||
        fh_event_int(ev, "results", &results) || fh_event_int(ev, "buildid", &buildid) ||
        fh_event_num(ev, "complete_at", &t) || !fh_event_str(ev, "builder") ||
        !fh_event_str(ev, "branch"))
        return SQLITE_OK;
    enum fh_verdict verdict = fh_derive_verdict(results);
    if (verdict == FH_VERDICT_NONE)
        return SQLITE_OK;
    json_t *ref = build_ref(ev);
    if (!ref)
        return SQLITE_NOMEM;
    if (!(rc = builder_step(v, ev, verdict, ref, t, buildid)) &&
        !(rc = derive_flaky_note(v, ev, NULL, verdict == FH_VERDICT_GREEN, ref)))
        rc = mark_dirty(v, ev);
    json_decref(ref);
    return rc;
}

/* ---- request.stale ---------------------------------------------------------------------- */

void derive_stale_check(fh_view *v, int64_t now_ms)
{
    struct derive *dr = v->derive;
    static const char *const cols[] = {"buildrequestid", "builderid", "builder",
                                       "branch",         "revision",  "repository",
                                       "project",        "codebase",  "owner"};
    long long min = fh_stale_rules_min(&dr->stale);
    double now = (double)now_ms / 1000.0;
    json_t *rows = json_array();
    int rc = SQLITE_OK;
    if (min < 0 || !rows || view_wexec(v, W_BEGIN)) {
        json_decref(rows);
        return;
    }
    sqlite3_stmt *st = dr->st[D_STALE_SCAN];
    sqlite3_bind_double(st, 1, now - (double)min);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *r = json_object();
        for (int i = 0; i < 9; i++)
            json_object_set_new(r, cols[i],
                                i < 2 ? json_integer(sqlite3_column_int64(st, i))
                                      : json_string((const char *)sqlite3_column_text(st, i)));
        json_object_set_new(r, "submitted_at", json_real(sqlite3_column_double(st, 9)));
        json_array_append_new(rows, r);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        long long brid = json_integer_value(json_object_get(r, "buildrequestid"));
        double sub = json_real_value(json_object_get(r, "submitted_at"));
        long long thr =
            fh_stale_rules_find(&dr->stale, json_string_value(json_object_get(r, "builder")));
        if (thr > 0 && sub + (double)thr > now)
            continue; /* not yet */
        if (thr > 0 && json_integer_value(json_object_get(r, "builderid")) > 0) {
            char idtext[32], when[48];
            snprintf(idtext, sizeof(idtext), "%lld", brid);
            const char *parts[] = {idtext};
            json_t *d = json_deep_copy(r);
            json_object_set_new(d, "threshold_s", json_integer(thr));
            json_object_set_new(d, "stale_at", json_real(sub + (double)thr));
            derive_time_text(sub + (double)thr, when);
            if ((rc = derive_emit(v, "request.stale", parts, 1, d, when, "buildrequests")))
                break;
        }
        /* Once per request; a request no rule covers is marked too, so it is not looked at
         * again. */
        sqlite3_bind_int64(dr->st[D_STALE_PUT], 1, brid);
        sqlite3_bind_double(dr->st[D_STALE_PUT], 2, sub);
        if ((rc = view_wrun(dr->st[D_STALE_PUT])))
            break;
    }
    json_decref(rows);
    if (rc || view_wexec(v, W_COMMIT)) {
        char q[420];
        fh_log(FH_LOG_ERROR, "derive.stale", "error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->db)));
        view_wexec(v, W_ROLLBACK);
    }
}

void derive_prune(fh_view *v)
{
    char err[512], sql[512];
    if (v->clock <= 0)
        return;
    /* derive_seen goes by wall time (when an id was recorded), the others by the view clock. */
    double cutoff = v->clock - (double)v->retention_s;
    double seen_cutoff = (double)fh_now_ms() / 1000.0 - (double)v->retention_s;
    snprintf(sql, sizeof(sql),
             "BEGIN IMMEDIATE; DELETE FROM derive_seen WHERE at < %.3f;"
             " DELETE FROM derive_flaky WHERE at < %.3f; DELETE FROM derive_stale WHERE at < %.3f;"
             " COMMIT;",
             seen_cutoff, cutoff, cutoff);
    if (fh_sqlite_exec(v->db, sql, err, sizeof(err))) {
        char q[560];
        fh_log(FH_LOG_ERROR, "derive.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(v->db, "ROLLBACK", NULL, NULL, NULL);
    }
}
