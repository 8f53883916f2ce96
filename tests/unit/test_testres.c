/* fh_testres: Buildbot's category and value read as one outcome, and chunks never pass their
 * caps (a producer cutting a set wrong makes records the contract refuses). */
#include "fh_event.h"
#include "fh_test.h"
#include "fh_testres.h"

#include <stdlib.h>
#include <string.h>

TEST(testres_outcome_reads_buildbot_categories)
{
    CHECK_STR(fh_testres_outcome("pass_fail", "boolean", "1"), "pass");
    CHECK_STR(fh_testres_outcome("pass_fail", "boolean", "0"), "fail");
    CHECK_STR(fh_testres_outcome("pass_fail", "boolean", " 2 "), "pass");
    CHECK(fh_testres_outcome("pass_fail", "boolean", "yes") == NULL);
    CHECK(fh_testres_outcome("pass_fail", "boolean", "") == NULL);
    CHECK(fh_testres_outcome("pass_fail", "boolean", "99999999999999999999999") == NULL);
    CHECK(fh_testres_outcome("pass_fail", "s", "1") == NULL);
    CHECK_STR(fh_testres_outcome("pass_only", "boolean", "whatever"), "pass");
    CHECK_STR(fh_testres_outcome("fail_only", "", "x"), "fail");
    CHECK_STR(fh_testres_outcome("code_issue", "", "x"), "fail");
    CHECK(fh_testres_outcome("performance", "s", "1.25") == NULL);
}

TEST(testres_chunks_respect_count_and_bytes)
{
    size_t sizes[1200];
    for (size_t i = 0; i < 1200; i++)
        sizes[i] = 100;
    /* by count: 500, 500, 200 */
    size_t a = fh_testres_chunk_end(sizes, 1200, 0, FH_TESTRES_CHUNK_MAX, FH_TESTRES_CHUNK_BYTES);
    CHECK(a == 500);
    size_t b = fh_testres_chunk_end(sizes, 1200, a, FH_TESTRES_CHUNK_MAX, FH_TESTRES_CHUNK_BYTES);
    CHECK(b == 1000);
    CHECK(fh_testres_chunk_end(sizes, 1200, b, FH_TESTRES_CHUNK_MAX, FH_TESTRES_CHUNK_BYTES) ==
          1200);
    CHECK(fh_testres_chunk_end(sizes, 1200, 1200, 500, 1000) == 1200);
    /* by bytes: 1000-byte budget takes ten 100-byte results */
    CHECK(fh_testres_chunk_end(sizes, 1200, 0, 500, 1000) == 10);
    /* a lone result over the budget still travels, alone */
    sizes[20] = 5000;
    CHECK(fh_testres_chunk_end(sizes, 1200, 15, 500, 1000) == 20);
    CHECK(fh_testres_chunk_end(sizes, 1200, 20, 500, 1000) == 21);
    /* every result lands in exactly one chunk */
    size_t start = 0, chunks = 0;
    while (start < 1200) {
        size_t end = fh_testres_chunk_end(sizes, 1200, start, 7, 1000);
        CHECK(end > start && end - start <= 7);
        start = end;
        chunks++;
    }
    CHECK(start == 1200 && chunks > 1200 / 7);
}

/* test.results is bulk (up to 500 results) and goes with the logs; the set's summary goes with
 * the other events; both are keyed by their build request like every build-scoped event. */
TEST(testres_events_route_by_type)
{
    static const struct {
        const char *file;
        fh_event_type type;
        fh_topic_kind topic;
    } cases[] = {
        {"schemas/examples/valid/test-results.json", FH_EV_TEST_RESULTS, FH_TOPIC_LOGS},
        {"schemas/examples/valid/test-result-set.json", FH_EV_TEST_RESULT_SET, FH_TOPIC_EVENTS},
    };
    fh_contract *c = NULL;
    char err[384], key[64];
    CHECK(fh_contract_load(&c, err, sizeof(err)) == FH_OK);
    if (!c)
        return;
    CHECK(fh_event_type_topic(FH_EV_LOG_CHUNK) == FH_TOPIC_LOGS);
    CHECK(fh_event_type_topic(FH_EV_STEP_FINISHED) == FH_TOPIC_EVENTS);
    CHECK_STR(fh_event_type_name(FH_EV_TEST_RESULT_SET), "test.result_set");
    CHECK(fh_event_type_parse("test.results") == FH_EV_TEST_RESULTS);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        fh_event ev;
        char *text = fh_test_read_file(cases[i].file, &len);
        CHECK(text != NULL);
        if (!text)
            continue;
        fh_err rc =
            fh_event_decode(c, text, len, FH_EVENT_MAX_BYTES_DEFAULT, &ev, err, sizeof(err));
        if (rc)
            printf("  %s: %s\n", cases[i].file, err);
        CHECK(rc == FH_OK);
        if (!rc) {
            CHECK(ev.type == cases[i].type);
            CHECK(fh_event_topic(&ev) == cases[i].topic);
            fh_event_key(&ev, key, sizeof(key));
            CHECK_STR(key, "buildrequest/90211");
            fh_event_clear(&ev);
        }
        free(text);
    }
    fh_contract_free(c);
}
