/* The filter language: AND across keys, any-of lists, `*` globs, integer fields, clear errors. */
#include "fh_filter.h"
#include "fh_test.h"

#include <stdlib.h>
#include <string.h>

static fh_event make_event(const char *type, const char *branch, const char *owner, int results)
{
    fh_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.root = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:i, s:i}}", "type", type, "master", "m1",
                        "data", "branch", branch, "owner", owner, "builder", "linux-x64", "buildid",
                        77, "results", results);
    ev.data = json_object_get(ev.root, "data");
    ev.type = (fh_event_type)fh_event_type_parse(type);
    ev.master = "m1";
    return ev;
}

static int matches(const char *filter_json, const fh_event *ev)
{
    fh_filter f;
    char err[256];
    json_t *j = json_loads(filter_json, 0, NULL);
    fh_err rc = fh_filter_parse(j, &f, err, sizeof(err));
    json_decref(j);
    if (rc) {
        printf("  filter %s: %s\n", filter_json, err);
        fh_filter_free(&f);
        return -1;
    }
    int m = fh_filter_match(&f, ev);
    fh_filter_free(&f);
    return m;
}

static const char *parse_error(const char *filter_json)
{
    static char err[256];
    fh_filter f;
    json_t *j = json_loads(filter_json, JSON_DECODE_ANY, NULL);
    err[0] = '\0';
    fh_err rc = fh_filter_parse(j, &f, err, sizeof(err));
    json_decref(j);
    fh_filter_free(&f);
    return rc ? err : NULL;
}

TEST(filter_and_across_keys_any_of_lists)
{
    fh_event ev = make_event("build.finished", "try", "alice@example.org", 2);
    CHECK(matches("{}", &ev) == 1);
    CHECK(
        matches("{\"branch\":\"try\",\"owner\":\"alice@example.org\",\"type\":\"build.finished\"}",
                &ev) == 1);
    CHECK(matches("{\"branch\":\"try\",\"owner\":\"bob@example.org\"}", &ev) == 0);
    CHECK(matches("{\"owner\":[\"bob@example.org\",\"alice@example.org\"]}", &ev) == 1);
    CHECK(matches("{\"results\":[0,1]}", &ev) == 0);
    CHECK(matches("{\"results\":[2,4]}", &ev) == 1);
    CHECK(matches("{\"results\":\"2\"}", &ev) == 1);
    CHECK(matches("{\"buildid\":77,\"master\":\"m1\"}", &ev) == 1);
    CHECK(matches("{\"worker\":\"w1\"}", &ev) == 0); /* absent field never matches */
    json_decref(ev.root);
}

TEST(filter_globs)
{
    fh_event ev = make_event("step.finished", "release/1.2", "carol", 0);
    CHECK(matches("{\"type\":\"step.*\"}", &ev) == 1);
    CHECK(matches("{\"type\":\"build.*\"}", &ev) == 0);
    CHECK(matches("{\"branch\":\"release/*\"}", &ev) == 1);
    CHECK(matches("{\"builder\":\"*-x64\"}", &ev) == 1);
    CHECK(matches("{\"builder\":\"linux*arm\"}", &ev) == 0);
    CHECK(fh_glob_match("*", ""));
    CHECK(fh_glob_match("a*b*c", "aXXbYYc"));
    CHECK(!fh_glob_match("a*b*c", "aXXbYY"));
    CHECK(fh_glob_match("**x", "yyx"));
    json_decref(ev.root);
}

TEST(filter_errors_name_the_key)
{
    const char *e;
    e = parse_error("{\"results\":[0,9]}");
    CHECK(e && strcmp(e, "filter.results: expected integers 0-6") == 0);
    e = parse_error("{\"color\":\"red\"}");
    CHECK(e && strncmp(e, "filter.color: unknown field", 27) == 0);
    e = parse_error("{\"type\":\"build.exploded\"}");
    CHECK(e && strstr(e, "filter.type") == e);
    e = parse_error("{\"branch\":[]}");
    CHECK(e && strstr(e, "filter.branch") == e);
    e = parse_error("{\"branch\":{\"x\":1}}");
    CHECK(e && strstr(e, "filter.branch") == e);
    e = parse_error("[1,2]");
    CHECK(e && strcmp(e, "filter: expected an object") == 0);
    CHECK(parse_error("null") == NULL);
}

TEST(filter_from_query_text)
{
    fh_filter f;
    char err[256];
    fh_event ev = make_event("build.finished", "trunk", "dave", 1);
    memset(&f, 0, sizeof(f));
    CHECK(fh_filter_add_text(&f, "results", "0,1", err, sizeof(err)) == FH_OK);
    CHECK(fh_filter_add_text(&f, "branch", "trunk", err, sizeof(err)) == FH_OK);
    CHECK(fh_filter_match(&f, &ev) == 1);
    CHECK(fh_filter_add_text(&f, "results", "x", err, sizeof(err)) != FH_OK);
    fh_filter_free(&f);
    json_decref(ev.root);
}

/* Integer strings past int64 read as LLONG_MAX, and \u0000 cut a string value short. */
TEST(filter_refuses_int64_overflow_and_nul_in_strings)
{
    fh_filter f;
    char err[256];
    json_t *o = json_pack("{s:s}", "buildid", "99999999999999999999");
    CHECK(fh_filter_parse(o, &f, err, sizeof(err)) == FH_ERR_INVAL);
    CHECK(strstr(err, "filter.buildid") == err);
    fh_filter_free(&f);
    json_decref(o);
    o = json_pack("{s:s}", "buildid", "-9223372036854775808");
    CHECK(fh_filter_parse(o, &f, err, sizeof(err)) == FH_OK);
    CHECK(f.clauses[0].vals[0].num == -9223372036854775807LL - 1);
    fh_filter_free(&f);
    json_decref(o);
    o = json_pack("{s:s#}", "branch", "trunk\0x", (size_t)7);
    CHECK(fh_filter_parse(o, &f, err, sizeof(err)) == FH_ERR_INVAL);
    CHECK(strstr(err, "filter.branch") == err);
    fh_filter_free(&f);
    json_decref(o);
}

static uint64_t mask_of(const char *filter_json)
{
    char err[256];
    fh_filter f;
    json_t *j = json_loads(filter_json, 0, NULL);
    CHECK(fh_filter_parse(j, &f, err, sizeof(err)) == FH_OK);
    uint64_t m = fh_filter_type_mask(&f);
    fh_filter_free(&f);
    json_decref(j);
    return m;
}

/* The type mask admits exactly the types whose events the filter could match. */
TEST(filter_type_mask_admits_the_types_the_filter_can_match)
{
    uint64_t all = (1ull << FH_EV__COUNT) - 1;
    CHECK(mask_of("{}") == all);
    CHECK(mask_of("{\"branch\": \"main\"}") == all);
    CHECK(mask_of("{\"type\": \"build.finished\"}") == 1ull << FH_EV_BUILD_FINISHED);
    CHECK(mask_of("{\"type\": [\"build.finished\", \"step.started\"], \"branch\": \"main\"}") ==
          ((1ull << FH_EV_BUILD_FINISHED) | (1ull << FH_EV_STEP_STARTED)));
    CHECK(mask_of("{\"type\": \"build.*\"}") ==
          ((1ull << FH_EV_BUILD_STARTED) | (1ull << FH_EV_BUILD_UPDATED) |
           (1ull << FH_EV_BUILD_FINISHED)));
    CHECK(mask_of("{\"type\": \"no.*\"}") == 0);
    /* agrees with whole matches: every type outside the mask fails, every one inside passes */
    for (int t = 0; t < FH_EV__COUNT; t++) {
        fh_event ev = make_event(fh_event_type_name(t), "main", "o", 0);
        CHECK(matches("{\"type\": \"*.finished\"}", &ev) ==
              !!(mask_of("{\"type\": \"*.finished\"}") & (1ull << t)));
        json_decref(ev.root);
    }
}

/* A copy (the catch-up thread's, of a subscription's filter) answers as the original does and
 * owns its strings: it still works after the original is freed. */
TEST(filter_copy_matches_as_the_original_and_outlives_it)
{
    fh_event ev = make_event("build.finished", "try", "alice@example.org", 2);
    const char *src =
        "{\"branch\":[\"main\",\"tr*\"],\"owner\":\"alice@example.org\",\"results\":2}";
    fh_filter f, copy;
    char err[256];
    json_t *j = json_loads(src, 0, NULL);
    CHECK(fh_filter_parse(j, &f, err, sizeof(err)) == FH_OK);
    json_decref(j);
    CHECK(fh_filter_copy(&copy, &f) == FH_OK);
    CHECK(copy.nclauses == f.nclauses && fh_filter_match(&f, &ev) == 1);
    CHECK(copy.clauses[0].vals != f.clauses[0].vals);
    fh_filter_free(&f);
    CHECK(fh_filter_match(&copy, &ev) == 1);
    fh_event other = make_event("build.finished", "release", "alice@example.org", 2);
    CHECK(fh_filter_match(&copy, &other) == 0);
    fh_filter_free(&copy);
    fh_filter empty = {0}, ecopy;
    CHECK(fh_filter_copy(&ecopy, &empty) == FH_OK && ecopy.nclauses == 0);
    CHECK(fh_filter_match(&ecopy, &ev) == 1);
    fh_filter_free(&ecopy);
    json_decref(ev.root);
    json_decref(other.root);
}
