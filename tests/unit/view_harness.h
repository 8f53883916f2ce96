/* view_harness: the view's own sources on a SQLite file of their own, without Kafka or threads,
 * for tests/unit/test_view_tests.c and bench/view_tests_bench.c. Include it once per program. */
#ifndef FH_VIEW_HARNESS_H
#define FH_VIEW_HARNESS_H

#include <stdio.h>

/* The view's own sources, so the test drives the real statements and tables. */
#include "../../broker/view/apply.c"
#include "../../broker/view/schema.c"
#include "../../broker/view/tests.c"

/* The view handle the sources run on (no threads, no Kafka). */
static fh_view harness_view;
static fh_view *const hv = &harness_view;

/* Derivation is not linked in: these stand in for view/derive_rules.c. With harness_derive_on
 * set, tests.c asks view_test_flaky_first per stored pass or fail, and each flip it reports
 * is counted (and its test name kept) here. */
static int harness_derive_on, harness_flips;
static char harness_flip_test[64];

int derive_on(fh_view *v)
{
    (void)v;
    return harness_derive_on;
}

int derive_test_flaky(fh_view *v, const fh_event *ev, const char *name, int passed)
{
    (void)v;
    (void)ev;
    (void)passed;
    harness_flips++;
    snprintf(harness_flip_test, sizeof(harness_flip_test), "%s", name);
    return SQLITE_OK;
}

static fh_broker tb;
static fh_contract *tc;
static char tpath[64];
static int tseq;

static const fh_cfg_opt view_opts[] = {FH_VIEW_CFG};

static int open_view(const char *max_tests, const char *max_runs)
{
    char err[512];
    memset(hv, 0, sizeof(*hv));
    fh_config_init(&tb.cfg, "t", "", NULL, view_opts, sizeof(view_opts) / sizeof(view_opts[0]));
    if (fh_config_set(&tb.cfg, "view.max_tests", max_tests, err, sizeof(err)) ||
        fh_config_set(&tb.cfg, "view.max_test_runs", max_runs, err, sizeof(err)))
        return -1;
    if (!tc && fh_contract_load(&tc, err, sizeof(err)))
        return -1;
    snprintf(tpath, sizeof(tpath), "/tmp/fh-test-view-%d.db", (int)getpid());
    unlink(tpath);
    hv->b = &tb;
    hv->cfg.max_tests = fh_config_int(&tb.cfg, "view.max_tests");
    hv->cfg.max_test_runs = fh_config_int(&tb.cfg, "view.max_test_runs");
    hv->cfg.sqlite_cache_kib = fh_config_int(&tb.cfg, "view.sqlite_cache_kib");
    snprintf(hv->path, sizeof(hv->path), "%s", tpath);
    hv->retention_s = 7 * 86400;
    fh_buf_init(&hv->scratch, 1 << 20);
    if (view_db_open(hv, err, sizeof(err))) {
        printf("  %s\n", err);
        return -1;
    }
    return view_wexec(hv, W_BEGIN) ? -1 : 0;
}

static void close_view(void)
{
    char p[80];
    view_wexec(hv, W_COMMIT);
    for (int i = 0; i < W__COUNT; i++)
        sqlite3_finalize(hv->w[i]);
    sqlite3_close(hv->db);
    fh_buf_free(&hv->scratch);
    fh_config_free(&tb.cfg);
    unlink(tpath);
    snprintf(p, sizeof(p), "%s-wal", tpath);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", tpath);
    unlink(p);
}

/* Applies one test.results chunk of set setid on builder at revision; tests is the JSON array's
 * members. Returns view_apply_event's result. */
static int apply_chunk(const char *builder, const char *revision, long long setid, int chunk,
                       const char *tests)
{
    fh_buf j;
    fh_event ev;
    fh_event_view v;
    fh_json_doc doc;
    char err[384];
    int stored, rc = -1;
    fh_buf_init(&j, 1 << 20);
    fh_buf_printf(&j,
                  "{\"specversion\":\"1.0\",\"id\":\"u-%d\",\"source\":\"buildbot://m\",\"type\":"
                  "\"test.results\",\"time\":\"2026-11-22T05:00:%02d.000Z\",\"master\":\"m\","
                  "\"seq\":%d,\"data\":{\"buildrequestid\":1,\"buildid\":%lld,\"builder\":\"%s\","
                  "\"builderid\":1,\"branch\":\"trunk\",\"revision\":\"%s\",\"repository\":\"r\","
                  "\"project\":\"p\",\"codebase\":\"\",\"owner\":\"\",\"test_result_setid\":%lld,"
                  "\"stepid\":1,\"category\":\"pass_fail\",\"value_unit\":\"boolean\",\"chunk\":%d,"
                  "\"last\":true,\"tests\":[%s]}}",
                  tseq, tseq % 60, tseq + 1, setid, builder, revision, setid, chunk, tests);
    tseq++;
    fh_json_doc_init(&doc, FH_EVENT_DOC_CAP(1 << 20));
    if (fh_event_check(tc, &doc, j.data, j.len, 1 << 20, &v, err, sizeof(err)) == FH_OK &&
        fh_event_from_view(&v, &ev) == 0) {
        rc = view_apply_event(hv, &v, &ev, &stored);
        fh_event_clear(&ev);
    } else {
        printf("  decode: %s\n", err);
    }
    fh_json_doc_free(&doc);
    fh_buf_free(&j);
    return rc;
}

static long long count(const char *sql)
{
    sqlite3_stmt *st;
    long long n = -1;
    if (sqlite3_prepare_v2(hv->db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

#endif
