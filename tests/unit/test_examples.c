/* Every example in schemas/examples is judged by the C contract as expected.json says: valid
 * ones decode, invalid ones fail at the documented path; and the two ways in (fh_event_decode
 * through jansson, fh_event_check in place) agree on every verdict, message, key and topic. */
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
