/* view/tests: test.results into per-test history (tables tests, test_runs, test_flaky in
 * schema.c), and test-level flakiness. View thread only, inside the open batch.
 *
 * Bounded three ways, all checked as results are applied: at most view.max_tests tests (a new
 * one evicts the least recently seen test with its history), at most view.max_test_runs results
 * (the oldest go first), and nothing older than view.retention_s by the view clock. A result is
 * stored once: (set, chunk, position) is unique, so a chunk Kafka delivers again after the
 * dedup window counts once too. */
#include "derive.h"
#include "internal.h"

/* Runs the one-row, one-integer writer statement st; *out gets the value, or 0 with no row.
 * Returns the SQLite result code. */
static int one_int(sqlite3_stmt *st, long long *out)
{
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Forgets the least recently seen test with its runs and flaky marks. */
static int evict_oldest(fh_view *v)
{
    long long victim;
    int rc = one_int(v->w[W_TEST_OLDEST], &victim);
    if (rc || !victim)
        return rc;
    static const enum wst drops[] = {W_TEST_DROP_RUNS, W_TEST_DROP_FLAKY, W_TEST_DROP};
    for (size_t i = 0; i < sizeof(drops) / sizeof(drops[0]) && !rc; i++) {
        sqlite3_bind_int64(v->w[drops[i]], 1, victim);
        rc = view_wexec(v, drops[i]);
    }
    return rc;
}

/* The id of (builder, name), created when new (evicting past view.max_tests); *id is 0 when it
 * could not be had. Returns the SQLite result code. */
static int test_id(fh_view *v, const char *builder, const char *name, double at, long long *id)
{
    sqlite3_stmt *st = v->w[W_TEST_GET];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, name);
    int rc = one_int(st, id);
    if (rc)
        return rc;
    if (*id) {
        st = v->w[W_TEST_SEEN];
        sqlite3_bind_int64(st, 1, *id);
        sqlite3_bind_double(st, 2, at);
        return view_wrun(st);
    }
    st = v->w[W_TEST_NEW];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, name);
    sqlite3_bind_double(st, 3, at);
    if ((rc = view_wrun(st)))
        return rc;
    *id = sqlite3_last_insert_rowid(v->db);
    long long n, cap = v->cfg.max_tests;
    if ((rc = one_int(v->w[W_TEST_COUNT], &n)))
        return rc;
    /* The new test itself is the most recent (unless its time is behind every other's: then it
     * goes, and its results with it). */
    for (; n > cap && !rc; n--)
        rc = evict_oldest(v);
    if (!rc) {
        st = v->w[W_TEST_GET];
        view_bind_text(st, 1, builder);
        view_bind_text(st, 2, name);
        rc = one_int(st, id);
    }
    return rc;
}

/* 1 pass, 0 fail, 2 skip; -1 a measurement (outcome null). The schema allows nothing else. */
static int outcome_code(const json_t *o)
{
    const char *s = json_string_value(o);
    if (!s)
        return -1;
    return strcmp(s, "pass") == 0 ? 1 : strcmp(s, "fail") == 0 ? 0 : 2;
}

/* Keeps the history within its caps and view.retention_s. */
static int trim(fh_view *v)
{
    int rc;
    long long runs_cap = v->cfg.max_test_runs;
    double cutoff = v->clock - (double)v->retention_s;
    sqlite3_bind_int64(v->w[W_TEST_TRIM], 1, runs_cap);
    if ((rc = view_wexec(v, W_TEST_TRIM)))
        return rc;
    if (v->clock <= 0)
        return SQLITE_OK;
    sqlite3_bind_double(v->w[W_TEST_EXPIRE], 1, cutoff);
    if ((rc = view_wexec(v, W_TEST_EXPIRE)))
        return rc;
    sqlite3_bind_double(v->w[W_TEST_EXPIRE_TESTS], 1, cutoff);
    if ((rc = view_wexec(v, W_TEST_EXPIRE_TESTS)))
        return rc;
    sqlite3_bind_double(v->w[W_TEST_EXPIRE_FLAKY], 1, cutoff);
    sqlite3_bind_int64(v->w[W_TEST_EXPIRE_FLAKY], 2, runs_cap);
    return view_wexec(v, W_TEST_EXPIRE_FLAKY);
}

int view_tests_apply(fh_view *v, const fh_event *ev, int *stored)
{
    long long setid, chunk, buildid;
    if (ev->type != FH_EV_TEST_RESULTS) {
        *stored = 0; /* test.result_set: its counts are in the results themselves */
        return SQLITE_OK;
    }
    const char *builder = fh_event_str(ev, "builder"), *rev = fh_event_str(ev, "revision");
    const char *branch = fh_event_str(ev, "branch");
    json_t *tests = json_object_get(ev->data, "tests");
    int64_t ms = view_event_time_ms(v, ev);
    double at = ms > 0 ? (double)ms / 1000.0 : v->clock;
    /* The schema guarantees these. */
    if (!builder || fh_event_int(ev, "test_result_setid", &setid) ||
        fh_event_int(ev, "chunk", &chunk) || fh_event_int(ev, "buildid", &buildid))
        return SQLITE_OK;
    size_t i;
    json_t *t;
    json_array_foreach(tests, i, t)
    {
        long long id;
        const char *name = json_string_value(json_object_get(t, "name"));
        json_t *dur = json_object_get(t, "duration_s");
        int rc, oc = outcome_code(json_object_get(t, "outcome"));
        if (!name)
            continue;
        if ((rc = test_id(v, builder, name, at, &id)))
            return rc;
        if (!id)
            continue;
        sqlite3_stmt *st = v->w[W_TEST_RUN];
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, setid);
        sqlite3_bind_int64(st, 3, chunk);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)i);
        sqlite3_bind_int64(st, 5, buildid);
        view_bind_text(st, 6, rev ? rev : "");
        view_bind_text(st, 7, branch ? branch : "");
        if (oc >= 0)
            sqlite3_bind_int(st, 8, oc);
        if (json_is_number(dur))
            sqlite3_bind_double(st, 9, json_number_value(dur));
        sqlite3_bind_double(st, 10, at);
        if ((rc = view_wrun(st)))
            return rc;
        /* A stored pass or fail may make the test flaky at rev (when the other outcome is
         * there and no mark yet); derive hears of flips only. */
        if ((oc == 0 || oc == 1) && sqlite3_changes(v->db) == 1 && derive_on(v) && rev && *rev) {
            long long maybe;
            st = v->w[W_TEST_FLIP_MAYBE];
            sqlite3_bind_int64(st, 1, id);
            view_bind_text(st, 2, rev);
            sqlite3_bind_int(st, 3, !oc);
            if ((rc = one_int(st, &maybe)))
                return rc;
            int first = maybe ? view_test_flaky_first(v, builder, name, rev, oc) : 0;
            if (first < 0)
                return SQLITE_ERROR;
            if (first && (rc = derive_test_flaky(v, ev, name, oc)))
                return rc;
        }
    }
    return trim(v);
}

int view_test_flaky_first(fh_view *v, const char *builder, const char *name, const char *revision,
                          int passed)
{
    if (!builder || !name || !revision || !*revision)
        return 0;
    sqlite3_stmt *st = v->w[W_TEST_OUTCOMES];
    view_bind_text(st, 1, builder);
    view_bind_text(st, 2, name);
    view_bind_text(st, 3, revision);
    int rc = sqlite3_step(st);
    long long id = 0;
    double npass = 0, nfail = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        npass = sqlite3_column_double(st, 1);
        nfail = sqlite3_column_double(st, 2);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return -1;
    if (!id || npass < 1 || nfail < 1 || (passed ? npass : nfail) < 1)
        return 0;
    st = v->w[W_TEST_FLAKY_MARK];
    sqlite3_bind_int64(st, 1, id);
    view_bind_text(st, 2, revision);
    sqlite3_bind_double(st, 3, v->clock);
    if (view_wrun(st))
        return -1;
    return sqlite3_changes(v->db) == 1;
}
