/* fh_jscan finds members of a raw record in place for replay, tail and the view's log-chunk
 * skip: what it finds must match a full parse, and no input, however cut, may make it read
 * outside the record. */
#include "fh_jscan.h"
#include "fh_test.h"

#include <stdlib.h>
#include <string.h>

TEST(jscan_finds_members_in_place_and_decodes_them)
{
    const char *rec = " {\"id\":\"x\",\"nested\":{\"a\":[1,{\"b\":\"}\"}],\"s\":\"q\\\"}\"},"
                      "\"data\":{\"builder\":\"linux \\u00e9\\ud83d\\ude00\",\"results\":2,"
                      "\"duration_s\":1.5e1,\"k\\u0065y\":true}} ";
    const char *end = rec + strlen(rec), *v, *ve, *d, *de;
    char buf[64];
    long long n;
    double x;
    CHECK(fh_jscan_member(rec, end, "data", 4, &d, &de) == 1);
    CHECK(*d == '{' && de[-1] == '}');
    CHECK(fh_jscan_member(d, de, "builder", 7, &v, &ve) == 1);
    CHECK(fh_jscan_str(v, ve, buf, sizeof(buf)) == 12);
    CHECK_STR(buf, "linux \xc3\xa9\xf0\x9f\x98\x80");
    CHECK(fh_jscan_member(d, de, "results", 7, &v, &ve) == 1);
    CHECK(fh_jscan_int(v, ve, &n) == 0 && n == 2);
    CHECK(fh_jscan_member(d, de, "duration_s", 10, &v, &ve) == 1);
    CHECK(fh_jscan_int(v, ve, &n) == -1);
    CHECK(fh_jscan_num(v, ve, &x) == 0 && x == 15.0);
    CHECK(fh_jscan_member(d, de, "key", 3, &v, &ve) == 1); /* an escaped member name */
    CHECK(fh_jscan_member(rec, end, "missing", 7, &v, &ve) == 0);
    CHECK(fh_jscan_member(rec, end, "b", 1, &v, &ve) == 0); /* only top-level members */
    CHECK(fh_jscan_str(v, v, buf, sizeof(buf)) == -1);
}

TEST(jscan_never_reads_past_a_truncated_record)
{
    const char *rec = "{\"type\":\"build.finished\",\"data\":{\"builder\":\"lin";
    size_t len = strlen(rec);
    const char *v, *ve;
    for (size_t cut = 0; cut <= len; cut++) {
        char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, rec, cut);
        int r = fh_jscan_member(copy, copy + cut, "data", 4, &v, &ve);
        CHECK(r == -1 || r == 0);
        free(copy);
    }
    static const char arr[] = "[1]", lone[] = "{\"a\":\"\\ud800\"}";
    CHECK(fh_jscan_member(arr, arr + 3, "a", 1, &v, &ve) == -1);
    CHECK(fh_jscan_member(lone, lone + sizeof(lone) - 1, "a", 1, &v, &ve) == 1);
    char buf[16];
    CHECK(fh_jscan_str(v, ve, buf, sizeof(buf)) == -1); /* a lone surrogate */
}

TEST(jscan_member_finds_only_top_level_members)
{
    const char *rec = "{\"data\":{\"type\":\"inner\"},\"ty\\u0070e\" : \"log.chunk\"}";
    const char *v, *vend;
    CHECK(fh_jscan_member(rec, rec + strlen(rec), "type", 4, &v, &vend) == 1);
    CHECK((size_t)(vend - v) == 11 && memcmp(v, "\"log.chunk\"", 11) == 0);
    const char *none = "{\"data\":{\"type\":\"log.chunk\"}}";
    CHECK(fh_jscan_member(none, none + strlen(none), "type", 4, &v, &vend) == 0);
    const char *bad = "{\"a\" 1, \"type\":\"x\"}";
    CHECK(fh_jscan_member(bad, bad + strlen(bad), "type", 4, &v, &vend) == -1);
}
