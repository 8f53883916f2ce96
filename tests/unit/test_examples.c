/* Every example in schemas/examples is judged by the C contract as expected.json says: valid
 * ones decode, invalid ones fail at the documented path; and the two ways in (fh_event_decode
 * into a jansson tree, fh_event_check in place) agree on every verdict, message, key and topic. */
#include "fh_event.h"
#include "fh_filter.h"
#include "fh_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static fh_contract *shared_contract;

static void free_contract(void)
{
    fh_contract_free(shared_contract);
}

/* One compiled contract for the whole file, freed at exit so LeakSanitizer sees a clean run. */
static fh_contract *contract(void)
{
    char err[256];
    if (!shared_contract) {
        if (fh_contract_load(&shared_contract, err, sizeof(err)) != FH_OK)
            printf("  contract: %s\n", err);
        else
            atexit(free_contract);
    }
    return shared_contract;
}

static size_t each_example(const char *dir,
                           void (*fn)(const char *name, const char *text, size_t len))
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    if (!d)
        return 0;
    while ((de = readdir(d))) {
        char path[1024];
        size_t len, nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".json") != 0 ||
            strcmp(de->d_name, "expected.json") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        char *text = fh_test_read_file(path, &len);
        CHECK(text != NULL);
        if (!text)
            continue;
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            len--;
        fn(de->d_name, text, len);
        free(text);
        n++;
    }
    closedir(d);
    return n;
}

static fh_json_doc shared_doc;

static void free_doc(void)
{
    fh_json_doc_free(&shared_doc);
}

/* One doc reused by every fh_event_check call, as firehose-emit does. */
static fh_json_doc *doc(void)
{
    static int ready;
    if (!ready) {
        fh_json_doc_init(&shared_doc, FH_EVENT_DOC_CAP(FH_EVENT_MAX_BYTES_DEFAULT));
        atexit(free_doc);
        ready = 1;
    }
    return &shared_doc;
}

/* The facts the stream keeps per event must give every filter field the value the jansson event
 * gives, and a filter on that value must match both ways. */
static void check_facts(const char *name, const fh_event_view *v, const fh_event *ev)
{
    fh_filter_facts x;
    char err[256];
    CHECK(fh_filter_facts_from_view(v, &x) == FH_OK);
    for (int f = 0; f < FH_F__COUNT; f++) {
        const char *fname = fh_filter_field_name((fh_filter_field)f), *s = NULL, *want = NULL;
        long long n = 0, wn = 0;
        int have = fh_filter_facts_lookup(&x, (fh_filter_field)f, &s, &n), want_have;
        if (f == FH_F_TYPE)
            want = fh_event_type_name((int)ev->type);
        else if (f == FH_F_MASTER)
            want = ev->master;
        if (fh_filter_field_integer((fh_filter_field)f))
            want_have = fh_event_int(ev, fname, &wn) == 0;
        else
            want_have = (want = want ? want : fh_event_str(ev, fname)) != NULL;
        if (have != want_have)
            printf("  %s: field %s: facts %d, event %d\n", name, fname, have, want_have);
        CHECK(have == want_have);
        if (!have || have != want_have)
            continue;
        json_t *fj = want ? json_pack("{s:s}", fname, want) : json_pack("{s:I}", fname, wn);
        fh_filter flt;
        CHECK(fh_filter_parse(fj, &flt, err, sizeof(err)) == FH_OK);
        if (want)
            CHECK_STR(s, want);
        else
            CHECK(n == wn);
        CHECK(fh_filter_match_facts(&flt, &x) == 1 && fh_filter_match(&flt, ev) == 1);
        fh_filter_free(&flt);
        json_decref(fj);
    }
    fh_filter_facts_free(&x);
}

/* fh_event_check must say what fh_event_decode says. Schema and size errors word for word; a
 * parse error comes from another parser, so only its "not JSON: " start must match. */
static void check_agrees(const char *name, const char *text, size_t len, size_t max, fh_err want,
                         const fh_event *ev, const char *err)
{
    fh_event_view v;
    char verr[384], k1[128], k2[128];
    fh_err rc = fh_event_check(contract(), doc(), text, len, max, &v, verr, sizeof(verr));
    if (rc != want)
        printf("  %s: fh_event_check rc=%d (%s), fh_event_decode rc=%d\n", name, rc,
               rc ? verr : "ok", want);
    CHECK(rc == want);
    if (rc != want)
        return;
    if (rc == FH_ERR_PARSE) {
        CHECK(strncmp(verr, "not JSON: ", 10) == 0 && strncmp(err, "not JSON: ", 10) == 0);
    } else if (rc) {
        CHECK_STR(verr, err);
    } else {
        CHECK(v.type == ev->type && v.seq == ev->seq && v.buildrequestid == ev->buildrequestid);
        CHECK_STR(v.id, ev->id);
        CHECK_STR(v.master, ev->master);
        CHECK(fh_event_view_topic(&v) == fh_event_topic(ev));
        fh_event_key(ev, k1, sizeof(k1));
        fh_event_view_key(&v, k2, sizeof(k2));
        CHECK_STR(k2, k1);
        check_facts(name, &v, ev);
    }
}

static void check_valid(const char *name, const char *text, size_t len)
{
    fh_event ev;
    char err[384];
    fh_err rc =
        fh_event_decode(contract(), text, len, FH_EVENT_MAX_BYTES_DEFAULT, &ev, err, sizeof(err));
    if (rc)
        printf("  %s: %s\n", name, err);
    CHECK(rc == FH_OK);
    if (!rc) {
        CHECK(ev.id && ev.master && fh_event_type_name((int)ev.type));
        check_agrees(name, text, len, FH_EVENT_MAX_BYTES_DEFAULT, rc, &ev, err);
        fh_event_clear(&ev);
    }
}

static json_t *expected;

static void check_invalid(const char *name, const char *text, size_t len)
{
    fh_event ev;
    char err[384], want[300];
    const char *path = json_string_value(json_object_get(expected, name));
    fh_err rc =
        fh_event_decode(contract(), text, len, FH_EVENT_MAX_BYTES_DEFAULT, &ev, err, sizeof(err));
    CHECK(rc != FH_OK);
    CHECK(path != NULL);
    if (rc != FH_OK)
        check_agrees(name, text, len, FH_EVENT_MAX_BYTES_DEFAULT, rc, &ev, err);
    if (rc == FH_OK || !path) {
        printf("  %s: rc=%d path=%s\n", name, rc, path ? path : "(none in expected.json)");
        if (rc == FH_OK)
            fh_event_clear(&ev);
        return;
    }
    if (*path) {
        snprintf(want, sizeof(want), "%s: ", path);
        if (strncmp(err, want, strlen(want)) != 0) {
            printf("  %s: expected the error at %s, got \"%s\"\n", name, path, err);
            CHECK(!"error names the expected path");
        }
    } else {
        /* whole-record errors carry no path: the message starts with no "member: " prefix */
        CHECK(rc == FH_ERR_PARSE || rc == FH_ERR_SCHEMA || rc == FH_ERR_TOOBIG);
    }
}

TEST(valid_examples_decode)
{
    CHECK(contract() != NULL);
    size_t n = each_example("schemas/examples/valid", check_valid);
    CHECK(n >= FH_EV__COUNT);
}

TEST(invalid_examples_fail_at_the_documented_path)
{
    json_error_t jerr;
    expected = json_load_file("schemas/examples/invalid/expected.json", 0, &jerr);
    CHECK(json_is_object(expected));
    size_t n = each_example("schemas/examples/invalid", check_invalid);
    CHECK(n >= 15);
    CHECK(n == json_object_size(expected));
    json_decref(expected);
}

TEST(oversized_record_is_refused_before_parsing)
{
    fh_event ev;
    char err[256];
    static char big[2048];
    memset(big, ' ', sizeof(big));
    CHECK(fh_event_decode(contract(), big, sizeof(big), 1024, &ev, err, sizeof(err)) ==
          FH_ERR_TOOBIG);
    CHECK(strstr(err, "1024") != NULL);
    check_agrees("big", big, sizeof(big), 1024, FH_ERR_TOOBIG, &ev, err);
}

TEST(event_keys_and_topics_follow_the_layout)
{
    static const struct {
        const char *json, *key;
        fh_topic_kind topic;
    } cases[] = {
        {"{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"buildbot://m\",\"type\":\"log.chunk\","
         "\"time\":\"2026-11-22T05:00:00.000Z\",\"master\":\"m\",\"seq\":1,\"data\":{"
         "\"buildrequestid\":42,\"buildid\":7,\"builder\":\"b\",\"builderid\":1,\"branch\":"
         "\"trunk\","
         "\"revision\":\"abc\",\"repository\":\"r\",\"project\":\"p\",\"codebase\":\"\",\"owner\":"
         "\"\","
         "\"logid\":1,\"stepid\":2,\"firstline\":0,\"content\":\"ohello\\n\"}}",
         "buildrequest/42", FH_TOPIC_LOGS},
        {"{\"specversion\":\"1.0\",\"id\":\"b\",\"source\":\"buildbot://"
         "m\",\"type\":\"worker.connected\","
         "\"time\":\"2026-11-22T05:00:00.000Z\",\"master\":\"m\",\"seq\":2,\"data\":{\"workerid\":"
         "9,"
         "\"name\":\"w9\"}}",
         "worker/9", FH_TOPIC_EVENTS},
        {"{\"specversion\":\"1.0\",\"id\":\"c\",\"source\":\"buildbot://"
         "m\",\"type\":\"master.started\","
         "\"time\":\"2026-11-22T05:00:00.000Z\",\"master\":\"m\",\"seq\":3,\"data\":{\"name\":"
         "\"m\"}}",
         "master/m", FH_TOPIC_EVENTS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fh_event ev;
        char err[384], key[64];
        fh_err rc = fh_event_decode(contract(), cases[i].json, strlen(cases[i].json),
                                    FH_EVENT_MAX_BYTES_DEFAULT, &ev, err, sizeof(err));
        if (rc)
            printf("  case %zu: %s\n", i, err);
        CHECK(rc == FH_OK);
        if (rc)
            continue;
        fh_event_key(&ev, key, sizeof(key));
        CHECK_STR(key, cases[i].key);
        CHECK(fh_event_topic(&ev) == cases[i].topic);
        check_agrees("key case", cases[i].json, strlen(cases[i].json), FH_EVENT_MAX_BYTES_DEFAULT,
                     FH_OK, &ev, err);
        fh_event_clear(&ev);
    }
}

/* Every integer the contract defines fits the int64 the view stores: a record past that is
 * refused at ingest (and dead-lettered) instead of passing and then being skipped by the view.
 * Bounds are compared exactly (a double cannot tell 2^63 - 1 from 2^63), integral reals count as
 * the integers JSON Schema says they are, and a big integer in a member the contract leaves open
 * decodes the same way on both paths. */
TEST(contract_integers_are_bounded_to_int64_on_both_paths)
{
    static const char head[] =
        "{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"buildbot://m\","
        "\"type\":\"build.finished\",\"time\":\"2026-11-22T05:00:00.000Z\",\"master\":\"m\",";
    static const char ctx[] =
        "\"buildrequestid\":7,\"buildid\":8,\"builder\":\"b\",\"builderid\":1,\"branch\":\"\","
        "\"revision\":\"\",\"repository\":\"\",\"project\":\"\",\"codebase\":\"\",\"owner\":\"\","
        "\"complete_at\":1.5,\"results\":0,\"state_string\":\"s\",\"duration_s\":1";
    static const struct {
        const char *seq, *number, *extra;
        fh_err want;
        const char *err; /* with a refusal */
        long long got;   /* data.number when valid */
    } cases[] = {
        {"1", "9223372036854775807", "", FH_OK, NULL, 9223372036854775807LL},
        {"1", "18446744073709551616", "", FH_ERR_SCHEMA,
         "data.number: must be <= 9223372036854775807", 0},
        {"1", "9223372036854775808", "", FH_ERR_SCHEMA,
         "data.number: must be <= 9223372036854775807", 0},
        {"1", "9223372036854775807.0", "", FH_ERR_SCHEMA, /* the double is 2^63 */
         "data.number: must be <= 9223372036854775807", 0},
        {"1", "1e300", "", FH_ERR_SCHEMA, "data.number: must be <= 9223372036854775807", 0},
        {"1", "-1", "", FH_ERR_SCHEMA, "data.number: must be >= 0", 0},
        {"1", "1e3", "", FH_OK, NULL, 1000},
        {"1", "12.0", "", FH_OK, NULL, 12},
        {"9223372036854775807", "1", "", FH_OK, NULL, 1},
        {"9223372036854775808", "1", "", FH_ERR_SCHEMA, "seq: must be <= 9223372036854775807", 0},
        {"1", "1", ",\"extra\":18446744073709551616", FH_OK, NULL, 1},
        {"1", "1", ",\"extra\":[-9223372036854775809,1e308]", FH_OK, NULL, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[1024], err[384], name[32];
        fh_event ev;
        snprintf(json, sizeof(json), "%s\"seq\":%s,\"data\":{%s,\"number\":%s%s}}", head,
                 cases[i].seq, ctx, cases[i].number, cases[i].extra);
        snprintf(name, sizeof(name), "int case %zu", i);
        fh_err rc = fh_event_decode(contract(), json, strlen(json), FH_EVENT_MAX_BYTES_DEFAULT, &ev,
                                    err, sizeof(err));
        if (rc != cases[i].want)
            printf("  %s: rc=%d %s\n", name, rc, rc ? err : "");
        CHECK(rc == cases[i].want);
        check_agrees(name, json, strlen(json), FH_EVENT_MAX_BYTES_DEFAULT, rc, &ev, err);
        if (rc) {
            CHECK_STR(err, cases[i].err);
            continue;
        }
        long long n = -1;
        CHECK(fh_event_int(&ev, "number", &n) == 0 && n == cases[i].got);
        CHECK(ev.buildrequestid == 7);
        fh_event_clear(&ev);
    }
}

/* The in-place readers the view uses give what the jansson readers give, member by member, for
 * every valid example (strings, integers written as reals, numbers, booleans, nested JSON). */
static size_t readers_checked;
static void check_readers_agree(const char *name, const char *text, size_t len)
{
    char err[256];
    fh_event ev;
    fh_event_view v;
    fh_json_doc doc;
    fh_json_doc_init(&doc, FH_EVENT_DOC_CAP(len));
    if (fh_event_decode(contract(), text, len, len, &ev, err, sizeof(err)) ||
        fh_event_check(contract(), &doc, text, len, len, &v, err, sizeof(err))) {
        printf("  %s: %s\n", name, err);
        CHECK(!"a valid example decodes both ways");
        fh_json_doc_free(&doc);
        return;
    }
    const char *k;
    json_t *val;
    json_object_foreach(ev.data, k, val)
    {
        const char *fields[] = {k, "no-such-member"};
        for (int f = 0; f < 2; f++) {
            long long i1 = 0, i2 = 0;
            double d1 = 0, d2 = 0;
            int b1 = 0, b2 = 0;
            fh_buf j1, j2;
            const char *s1 = fh_event_str(&ev, fields[f]), *s2 = fh_event_view_str(&v, fields[f]);
            CHECK((!s1 && !s2) || (s1 && s2 && strcmp(s1, s2) == 0));
            CHECK(fh_event_int(&ev, fields[f], &i1) == fh_event_view_int(&v, fields[f], &i2));
            CHECK(i1 == i2);
            CHECK(fh_event_num(&ev, fields[f], &d1) == fh_event_view_num(&v, fields[f], &d2));
            CHECK(d1 == d2);
            CHECK(fh_event_bool(&ev, fields[f], &b1) == fh_event_view_bool(&v, fields[f], &b2));
            CHECK(b1 == b2);
            fh_buf_init(&j1, 1 << 20);
            fh_buf_init(&j2, 1 << 20);
            CHECK(fh_event_member_json(&ev, fields[f], &j1) == 0);
            CHECK(fh_event_view_member_json(&v, fields[f], &j2) == 0);
            CHECK(j1.len == j2.len && memcmp(j1.data, j2.data, j1.len) == 0);
            fh_buf_free(&j1);
            fh_buf_free(&j2);
            readers_checked++;
        }
    }
    CHECK(ev.type == v.type && ev.seq == v.seq && ev.buildrequestid == v.buildrequestid);
    CHECK_STR(ev.id, v.id);
    fh_event tree;
    CHECK(fh_event_from_view(&v, &tree) == 0);
    CHECK(json_equal(tree.root, ev.root) && tree.type == ev.type && tree.seq == ev.seq &&
          tree.buildrequestid == ev.buildrequestid && json_equal(tree.data, ev.data));
    CHECK_STR(tree.id, ev.id);
    CHECK_STR(tree.master, ev.master);
    fh_event_clear(&tree);
    fh_event_clear(&ev);
    fh_json_doc_free(&doc);
}

TEST(in_place_readers_agree_with_jansson_readers)
{
    CHECK(contract() != NULL);
    readers_checked = 0;
    size_t n = each_example("schemas/examples/valid", check_readers_agree);
    CHECK(n >= FH_EV__COUNT);
    CHECK(readers_checked > 100);
}

/* fh_event_peek_type names the type every valid example decodes to, and says "cannot tell"
 * rather than guess when the bytes are unusual. */
static void check_peek(const char *name, const char *text, size_t len)
{
    char err[256];
    fh_event ev;
    if (fh_event_decode(contract(), text, len, len, &ev, err, sizeof(err)) == FH_OK) {
        if (fh_event_peek_type(text, len) != (int)ev.type)
            printf("  %s: peeked %d, decoded %d\n", name, fh_event_peek_type(text, len), ev.type);
        CHECK(fh_event_peek_type(text, len) == (int)ev.type);
        fh_event_clear(&ev);
    }
}

TEST(peek_type_reads_the_top_level_type_or_says_it_cannot)
{
    CHECK(each_example("schemas/examples/valid", check_peek) >= FH_EV__COUNT);
    static const struct {
        const char *text;
        int want;
    } cases[] = {
        {"{\"type\":\"build.finished\"}", FH_EV_BUILD_FINISHED},
        {" {\n \"type\" :\t\"log.chunk\" }", FH_EV_LOG_CHUNK},
        {"{\"data\":{\"type\":\"log.chunk\"},\"type\":\"step.started\"}", FH_EV_STEP_STARTED},
        {"{\"a\":\"x\\\"type\\\":\",\"type\":\"change.new\"}", FH_EV_CHANGE_NEW},
        {"{\"a\":[{\"type\":\"log.chunk\"}],\"type\":\"build.started\"}", FH_EV_BUILD_STARTED},
        {"{\"ty\\u0070e\":\"build.finished\"}", FH_EV_BUILD_FINISHED}, /* escapes decoded */
        {"{\"type\":\"build\\u002efinished\"}", FH_EV_BUILD_FINISHED},
        {"{\"type\":\"build.exploded\"}", -1}, /* not a v1 type */
        {"{\"type\":7}", -1},
        {"{\"type\":\"build.finished", -1}, /* cut short */
        {"[\"type\",\"build.finished\"]", -1},
        {"{\"data\":{\"type\":\"log.chunk\"}}", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = fh_event_peek_type(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want)
            printf("  %s: peeked %d, expected %d\n", cases[i].text, got, cases[i].want);
        CHECK(got == cases[i].want);
    }
}
