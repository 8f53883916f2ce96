/* view/tests.c on a real SQLite file, without Kafka: results stored once, the caps hold, and
 * view_test_flaky_first reports a (builder, test, revision) exactly once, whether its pass and
 * failure come in one chunk or in two builds. The derived-events code relies on that "once". */
#include "fh_test.h"

#include "view_harness.h"

#define T(name, outcome)                                                                           \
    "{\"name\":\"" name "\",\"value\":\"1\",\"outcome\":" outcome ",\"duration_s\":0.5}"

TEST(view_tests_flaky_first_reports_a_revision_once)
{
    CHECK(open_view("20000", "1000000") == 0);
    /* F fails and passes on r1 in one chunk (a retry); A only passes */
    CHECK(apply_chunk("linux", "r1", 7, 0,
                      T("F", "\"fail\"") "," T("F", "\"pass\"") "," T("A", "\"pass\"")) ==
          SQLITE_OK);
    CHECK(view_test_flaky_first(hv, "linux", "F", "r1", 0) == 1);
    CHECK(view_test_flaky_first(hv, "linux", "F", "r1", 1) == 0); /* the same pair: once */
    CHECK(view_test_flaky_first(hv, "linux", "A", "r1", 1) == 0);
    CHECK(view_test_flaky_first(hv, "mac", "F", "r1", 1) == 0); /* another builder */
    CHECK(view_test_flaky_first(hv, "linux", "F", "r2", 1) == 0);
    CHECK(view_test_flaky_first(hv, "linux", "F", "", 1) == 0);
    CHECK(view_test_flaky_first(hv, "linux", "nope", "r1", 1) == 0);
    /* C fails on r2 in one build, passes in another: flaky when the pass arrives */
    CHECK(apply_chunk("linux", "r2", 8, 0, T("C", "\"fail\"")) == SQLITE_OK);
    CHECK(view_test_flaky_first(hv, "linux", "C", "r2", 0) == 0);
    CHECK(view_test_flaky_first(hv, "linux", "C", "r2", 1) == 0); /* no pass yet */
    CHECK(apply_chunk("linux", "r2", 9, 0, T("C", "\"pass\"")) == SQLITE_OK);
    CHECK(view_test_flaky_first(hv, "linux", "C", "r2", 1) == 1);
    CHECK(view_test_flaky_first(hv, "linux", "C", "r2", 1) == 0);
    /* a skip or a measurement is neither */
    CHECK(apply_chunk("linux", "r3", 10, 0,
                      T("S", "\"skip\"") "," T("S", "null") "," T("S", "\"pass\"")) == SQLITE_OK);
    CHECK(view_test_flaky_first(hv, "linux", "S", "r3", 1) == 0);
    /* a chunk applied again (the same set, chunk and positions) adds no result */
    long long runs = count("SELECT count(*) FROM test_runs");
    CHECK(apply_chunk("linux", "r1", 7, 0,
                      T("F", "\"fail\"") "," T("F", "\"pass\"") "," T("A", "\"pass\"")) ==
          SQLITE_OK);
    CHECK(count("SELECT count(*) FROM test_runs") == runs);
    CHECK(runs == 8);
    CHECK(count("SELECT count(*) FROM test_flaky") == 2);
    close_view();
}

/* With derivation on, applying results calls into derive once per flip, for the test that
 * flipped, and never for stable tests, repeats, skips or a chunk delivered again. */
TEST(view_tests_derive_hears_of_each_flip_once)
{
    CHECK(open_view("20000", "1000000") == 0);
    harness_derive_on = 1;
    harness_flips = 0;
    CHECK(apply_chunk("linux", "r1", 7, 0, T("A", "\"pass\"") "," T("F", "\"pass\"")) == SQLITE_OK);
    CHECK(harness_flips == 0);
    CHECK(apply_chunk("linux", "r1", 8, 0,
                      T("A", "\"pass\"") "," T("F", "\"fail\"") "," T("F", "\"fail\"")) ==
          SQLITE_OK);
    CHECK(harness_flips == 1);
    CHECK_STR(harness_flip_test, "F");
    CHECK(apply_chunk("linux", "r1", 8, 0,
                      T("A", "\"pass\"") "," T("F", "\"fail\"") "," T("F", "\"fail\"")) ==
          SQLITE_OK);
    CHECK(apply_chunk("linux", "r1", 9, 0, T("F", "\"pass\"") "," T("S", "\"skip\"")) == SQLITE_OK);
    CHECK(apply_chunk("linux", "r2", 10, 0, T("A", "\"fail\"")) == SQLITE_OK);
    CHECK(harness_flips == 1);
    harness_derive_on = 0;
    close_view();
}

TEST(view_tests_history_stays_within_its_caps)
{
    fh_buf t;
    CHECK(open_view("10", "1000") == 0);
    fh_buf_init(&t, 1 << 20);
    for (int i = 0; i < 15; i++)
        fh_buf_printf(
            &t, "%s{\"name\":\"T%02d\",\"value\":\"0\",\"outcome\":\"fail\",\"duration_s\":null}",
            i ? "," : "", i);
    CHECK(apply_chunk("linux", "r1", 1, 0, t.data) == SQLITE_OK);
    CHECK(count("SELECT count(*) FROM tests") == 10);
    /* the most recent stay (equal times: the last inserted) */
    CHECK(count("SELECT count(*) FROM tests WHERE name >= 'T05'") == 10);
    CHECK(count("SELECT count(*) FROM test_runs") == 10);
    fh_buf_reset(&t);
    for (int i = 0; i < 400; i++)
        fh_buf_printf(
            &t, "%s{\"name\":\"T%02d\",\"value\":\"1\",\"outcome\":\"pass\",\"duration_s\":1}",
            i ? "," : "", 5 + i % 10);
    for (int c = 0; c < 3; c++)
        CHECK(apply_chunk("linux", "r2", 2, c, t.data) == SQLITE_OK);
    CHECK(count("SELECT count(*) FROM test_runs") == 1000);
    CHECK(count("SELECT min(chunk) FROM test_runs WHERE setid = 2") >= 0);
    CHECK(count("SELECT count(*) FROM test_runs WHERE setid = 2 AND chunk = 2") == 400);
    fh_buf_free(&t);
    close_view();
    fh_contract_free(tc);
    tc = NULL;
}
