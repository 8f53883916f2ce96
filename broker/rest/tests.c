/* rest/tests: the slowest and most-failing tests, and the flaky ones (passed and failed on one
 * revision), over a window of the view clock. The history is view/tests.c's. */
#include "internal.h"

/* Binds the window (?1, ?2] and the builder (?3). */
static void bind_window(sqlite3_stmt *st, const view_asof *a, const rest_args *s)
{
    sqlite3_bind_double(st, 1, a->clock - (double)s->window);
    sqlite3_bind_double(st, 2, a->clock);
    rest_bind_opt(st, 3, s->builder);
}

/* Appends "builder":...,"name":... from columns 0 and 1. */
static void put_test(fh_buf *out, sqlite3_stmt *st)
{
    fh_buf_printf(out, "{\"builder\":");
    fh_buf_json_str(out, (const char *)sqlite3_column_text(st, 0));
    fh_buf_printf(out, ",\"name\":");
    fh_buf_json_str(out, (const char *)sqlite3_column_text(st, 1));
}

#define RUNS_IN_WINDOW                                                                             \
    " FROM test_runs r JOIN tests t ON t.testid = r.testid WHERE r.at > ?1 AND r.at <= ?2"         \
    " AND (?3 IS NULL OR t.builder = ?3)"

int rest_render_test_stats(view_reader *r, const view_asof *a, const rest_args *s, fh_buf *out,
                           fh_http_response *resp)
{
    int src;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_TEST_SLOWEST,
        "SELECT t.builder, t.name, count(r.duration_s), avg(r.duration_s), "
        "max(r.duration_s)" RUNS_IN_WINDOW " AND r.duration_s IS NOT NULL GROUP BY r.testid"
        " ORDER BY avg(r.duration_s) DESC, t.builder, t.name LIMIT ?4");
    if (!st)
        return -1;
    bind_window(st, a, s);
    sqlite3_bind_int64(st, 4, s->limit);
    rest_put_window(out, a, s);
    fh_buf_printf(out, ",\"slowest\":[");
    for (int n = 0; (src = sqlite3_step(st)) == SQLITE_ROW; n++) {
        if (n)
            fh_buf_printf(out, ",");
        put_test(out, st);
        fh_buf_printf(out, ",\"runs\":%lld,\"mean_s\":", sqlite3_column_int64(st, 2));
        rest_put_double(out, round(sqlite3_column_double(st, 3) * 1e6) / 1e6);
        fh_buf_printf(out, ",\"max_s\":");
        rest_put_double(out, sqlite3_column_double(st, 4));
        fh_buf_printf(out, "}");
    }
    if (src != SQLITE_DONE)
        return -1;
    st = view_reader_stmt(
        r, S_TEST_FAILING,
        "SELECT t.builder, t.name, count(*), total(r.outcome = 0), total(r.outcome = 1),"
        " max(CASE WHEN r.outcome = 0 THEN r.at END)" RUNS_IN_WINDOW
        " AND r.outcome IN (0, 1) GROUP BY r.testid HAVING total(r.outcome = 0) > 0"
        " ORDER BY 4 DESC, 6 DESC, t.builder, t.name LIMIT ?4");
    if (!st)
        return -1;
    bind_window(st, a, s);
    sqlite3_bind_int64(st, 4, s->limit);
    fh_buf_printf(out, "],\"failing\":[");
    for (int n = 0; (src = sqlite3_step(st)) == SQLITE_ROW; n++) {
        long long runs = sqlite3_column_int64(st, 2);
        double failed = sqlite3_column_double(st, 3);
        if (n)
            fh_buf_printf(out, ",");
        put_test(out, st);
        fh_buf_printf(out, ",\"runs\":%lld,\"failed\":%.0f,\"passed\":%.0f,\"failure_rate\":", runs,
                      failed, sqlite3_column_double(st, 4));
        rest_put_double(out, round(failed / (double)runs * 10000.0) / 10000.0);
        fh_buf_printf(out, ",\"last_failed\":");
        rest_put_rfc3339(out, sqlite3_column_double(st, 5));
        fh_buf_printf(out, "}");
    }
    if (src != SQLITE_DONE)
        return -1;
    st = view_reader_stmt(r, S_TEST_COUNT, "SELECT count(DISTINCT r.testid)" RUNS_IN_WINDOW);
    if (!st)
        return -1;
    bind_window(st, a, s);
    long long tests = rest_one_int(st);
    if (tests < 0)
        return -1;
    fh_buf_printf(out, "],\"tests\":%lld", tests);
    return 0;
}

int rest_render_flaky(view_reader *r, const view_asof *a, const rest_args *s, fh_buf *out,
                      fh_http_response *resp)
{
    int src;
    long long total = 0;
    (void)resp;
    /* Per test: the revisions it both passed and failed on in the window; revision and branch
     * are those of the newest such run (SQLite takes bare columns from the max() row). */
    sqlite3_stmt *st = view_reader_stmt(
        r, S_FLAKY,
        "SELECT t.builder, t.name, count(*), sum(x.p), sum(x.f), max(x.last), x.revision,"
        " x.branch FROM (SELECT testid, revision, max(branch) AS branch,"
        " total(outcome = 1) AS p, total(outcome = 0) AS f, max(at) AS last FROM test_runs"
        " WHERE at > ?1 AND at <= ?2 AND revision <> '' AND outcome IN (0, 1)"
        " GROUP BY testid, revision HAVING p > 0 AND f > 0) x"
        " JOIN tests t ON t.testid = x.testid WHERE (?3 IS NULL OR t.builder = ?3)"
        " GROUP BY x.testid ORDER BY 3 DESC, 6 DESC, t.builder, t.name");
    if (!st)
        return -1;
    bind_window(st, a, s);
    rest_put_window(out, a, s);
    fh_buf_printf(out, ",\"flaky\":[");
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (total++ >= s->limit)
            continue; /* counted for "total" */
        if (total > 1)
            fh_buf_printf(out, ",");
        put_test(out, st);
        fh_buf_printf(out, ",\"revisions\":%lld,\"passed\":%.0f,\"failed\":%.0f,\"last_seen\":",
                      sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3),
                      sqlite3_column_double(st, 4));
        rest_put_rfc3339(out, sqlite3_column_double(st, 5));
        fh_buf_printf(out, ",\"last_revision\":");
        fh_buf_json_str(out, (const char *)sqlite3_column_text(st, 6));
        fh_buf_printf(out, ",\"last_branch\":");
        fh_buf_json_str(out, (const char *)sqlite3_column_text(st, 7));
        fh_buf_printf(out, "}");
    }
    if (src != SQLITE_DONE)
        return -1;
    fh_buf_printf(out, "],\"total\":%lld", total);
    return 0;
}
