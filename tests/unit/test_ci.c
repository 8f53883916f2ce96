/* GitHub and GitLab webhooks into v1 (lib/fh_ci.c, lib/fh_dedup.c): every vector in
 * tests/vectors/github and tests/vectors/gitlab maps to exactly its events (seq aside), each of
 * which passes the contract; signatures check against GitHub's published example; the payloads'
 * timestamp forms parse; the delivery-id memory agrees with a plain reference model. */
#include "fh_ci.h"
#include "fh_dedup.h"
#include "fh_event.h"
#include "fh_sign.h"
#include "fh_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#define SIGNATURES "tests/data/webhook-signatures.json"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one vector file; returns the number of deliveries checked. */
static size_t run_vector(const fh_contract *contract, fh_ci_system sys, const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, 0, &jerr), *d;
    size_t i, n = 0;
    CHECK(v != NULL);
    if (!v) {
        printf("  %s: %s\n", path, jerr.text);
        return 0;
    }
    json_array_foreach(json_object_get(v, "deliveries"), i, d)
    {
        const char *event = json_string_value(
            json_object_get(json_object_get(d, "headers"),
                            sys == FH_CI_GITHUB ? "X-GitHub-Event" : "X-Gitlab-Event"));
        json_t *want = json_object_get(d, "events"), *got = json_array(), *e;
        int ignored = json_is_true(json_object_get(json_object_get(d, "answer"), "ignored"));
        fh_ci_why why;
        fh_ci_result r = fh_ci_map(sys, event, json_object_get(d, "body"), NULL, got, &why);
        size_t k;
        CHECK(r == (ignored ? FH_CI_IGNORED : FH_CI_EVENTS));
        CHECK(json_array_size(got) == json_array_size(want));
        if (r == FH_CI_BAD)
            printf("  %s delivery %zu: %s: %s\n", path, i, why.param, why.msg);
        json_array_foreach(got, k, e)
        {
            json_t *w = json_object_get(json_array_get(want, k), "event");
            fh_event ev;
            char err[256];
            CHECK(json_integer_value(json_object_get(e, "seq")) == 0);
            json_object_set_new(e, "seq",
                                json_integer(json_integer_value(json_object_get(w, "seq"))));
            if (!json_equal(e, w)) {
                char *a = json_dumps(e, JSON_SORT_KEYS | JSON_COMPACT),
                     *b = json_dumps(w, JSON_SORT_KEYS | JSON_COMPACT);
                printf("  %s delivery %zu event %zu:\n   got  %s\n   want %s\n", path, i, k, a, b);
                free(a);
                free(b);
                CHECK(!"event equals the vector's");
            }
            CHECK(fh_event_from_json(contract, e, &ev, err, sizeof(err)) == FH_OK);
            if (ev.root) {
                char key[64];
                fh_event_key(&ev, key, sizeof(key));
                CHECK_STR(key, json_string_value(json_object_get(json_array_get(want, k), "key")));
                fh_event_clear(&ev);
            }
        }
        json_decref(got);
        n++;
    }
    json_decref(v);
    return n;
}

static size_t run_dir(const fh_contract *contract, fh_ci_system sys, const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    char *names[64];
    size_t n = 0, deliveries = 0;
    CHECK(dp != NULL);
    while (dp && (de = readdir(dp)) && n < 64)
        if (strstr(de->d_name, ".json"))
            names[n++] = strdup(de->d_name);
    if (dp)
        closedir(dp);
    qsort(names, n, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        deliveries += run_vector(contract, sys, path);
        free(names[i]);
    }
    CHECK(n >= 5);
    return deliveries;
}

TEST(ci_vectors_map_to_exactly_their_events)
{
    fh_contract *c = NULL;
    char err[256];
    CHECK(fh_contract_load(&c, err, sizeof(err)) == FH_OK);
    if (!c)
        return;
    CHECK(run_dir(c, FH_CI_GITHUB, "tests/vectors/github") >= 20);
    CHECK(run_dir(c, FH_CI_GITLAB, "tests/vectors/gitlab") >= 15);
    fh_contract_free(c);
}

TEST(ci_bad_payloads_name_the_member)
{
    static const struct {
        fh_ci_system sys;
        const char *event, *body, *param;
    } cases[] = {
        {FH_CI_GITHUB, "workflow_job", "[]", "body"},
        {FH_CI_GITHUB, "workflow_job", "{}", "body.action"},
        {FH_CI_GITHUB, "workflow_job", "{\"action\":\"queued\"}", "body.workflow_job"},
        {FH_CI_GITHUB, "workflow_job", "{\"action\":\"queued\",\"workflow_job\":{\"id\":\"7\"}}",
         "body.workflow_job.id"},
        {FH_CI_GITHUB, "workflow_job",
         "{\"action\":\"queued\",\"workflow_job\":{\"id\":1000000000000000}}",
         "body.workflow_job.id"},
        {FH_CI_GITHUB, "workflow_job",
         "{\"action\":\"queued\",\"workflow_job\":{\"id\":7,\"run_id\":8,\"name\":\"b\","
         "\"head_sha\":\"\"},\"repository\":{\"html_url\":\"ftp://x/y\",\"full_name\":\"x/y\"}}",
         "body.repository.html_url"},
        {FH_CI_GITHUB, "workflow_job",
         "{\"action\":\"queued\",\"workflow_job\":{\"id\":7,\"run_id\":8,\"name\":\"b\","
         "\"head_sha\":\"\",\"created_at\":\"1969-12-31T23:59:59Z\"},\"repository\":{\"html_url\":"
         "\"https://github.com/x/y\"}}",
         "body.workflow_job.created_at"},
        {FH_CI_GITHUB, "workflow_job", /* found by fuzz_ci: the host's byte went into the message */
         "{\"action\":\"queued\",\"workflow_job\":{\"id\":7,\"run_id\":8,\"name\":\"b\","
         "\"head_sha\":\"\"},\"repository\":{\"html_url\":\"https://gith\u00e9b.com/x/y\"}}",
         "body.repository.html_url"},
        {FH_CI_GITLAB, "Job Hook", "{\"object_kind\":\"pipeline\"}", "body.object_kind"},
        {FH_CI_GITLAB, "Job Hook", "{\"object_kind\":\"build\",\"build_status\":\"running\"}",
         "body.build_id"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *body = json_loads(cases[i].body, 0, NULL), *out = json_array();
        fh_ci_why why;
        CHECK(fh_ci_map(cases[i].sys, cases[i].event, body, NULL, out, &why) == FH_CI_BAD);
        CHECK_STR(why.param, cases[i].param);
        CHECK(why.msg[0] != '\0');
        json_t *text = json_string(why.msg); /* UTF-8: it goes into a JSON answer */
        CHECK(text != NULL);
        json_decref(text);
        CHECK(json_array_size(out) == 0);
        json_decref(body);
        json_decref(out);
    }
}

TEST(ci_ignored_messages_are_text_whatever_the_event_name)
{
    /* found by fuzz_ci: a name with bytes that are not UTF-8 went into the message as they were */
    json_t *body = json_loads("{\"action\":\"queued\"}", 0, NULL), *out = json_array();
    fh_ci_why why;
    CHECK(fh_ci_map(FH_CI_GITHUB, "wor\xff\xfe\n", body, NULL, out, &why) == FH_CI_IGNORED);
    CHECK_STR(why.msg, "event \"wor???\" is not mapped");
    CHECK(fh_ci_map(FH_CI_GITLAB, "Job Hook\x80", body, NULL, out, &why) == FH_CI_IGNORED);
    CHECK_STR(why.msg, "event \"Job Hook?\" is not mapped");
    CHECK(json_array_size(out) == 0);
    json_decref(body);
    json_decref(out);
}

TEST(ci_repository_field_is_configurable)
{
    json_t *body = json_loads(
        "{\"action\":\"queued\",\"workflow_job\":{\"id\":7,\"run_id\":8,\"name\":\"b\","
        "\"head_sha\":\"ab\",\"created_at\":\"2026-11-22T05:00:00Z\"},\"repository\":{"
        "\"html_url\":\"https://GitHub.com/x/y\",\"clone_url\":\"https://github.com/x/y.git\"}}",
        0, NULL);
    json_t *out = json_array();
    fh_ci_opts o = {.repo_field = "clone_url"};
    fh_ci_why why;
    CHECK(fh_ci_map(FH_CI_GITHUB, "workflow_job", body, &o, out, &why) == FH_CI_EVENTS);
    json_t *ev = json_array_get(out, 0);
    CHECK_STR(json_string_value(json_object_get(json_object_get(ev, "data"), "repository")),
              "https://github.com/x/y.git");
    CHECK_STR(json_string_value(json_object_get(ev, "master")), "github.com");
    o.repo_field = "ssh_url"; /* allowed, but this payload has none */
    CHECK(fh_ci_map(FH_CI_GITHUB, "workflow_job", body, &o, out, &why) == FH_CI_BAD);
    CHECK_STR(why.param, "body.repository.ssh_url");
    CHECK(fh_ci_repo_field_ok(FH_CI_GITHUB, "clone_url") &&
          !fh_ci_repo_field_ok(FH_CI_GITHUB, "url"));
    CHECK(fh_ci_repo_field_ok(FH_CI_GITLAB, "git_ssh_url") &&
          !fh_ci_repo_field_ok(FH_CI_GITLAB, "html_url"));
    json_decref(body);
    json_decref(out);
}

TEST(ci_github_signature_matches_the_published_example)
{
    json_t *root = json_load_file(SIGNATURES, 0, NULL), *v;
    size_t i;
    CHECK(json_array_size(json_object_get(root, "github_sha256")) > 0);
    json_array_foreach(json_object_get(root, "github_sha256"), i, v)
    {
        const char *secret = json_string_value(json_object_get(v, "secret"));
        const char *payload = json_string_value(json_object_get(v, "payload"));
        const char *sig = json_string_value(json_object_get(v, "signature"));
        char upper[80], wrong[80];
        CHECK(fh_ci_github_verify(secret, sig, payload, strlen(payload)) == 0);
        snprintf(upper, sizeof(upper), "%s", sig);
        for (char *p = upper + 7; *p; p++)
            if (*p >= 'a' && *p <= 'f')
                *p = (char)(*p - 'a' + 'A');
        CHECK(fh_ci_github_verify(secret, upper, payload, strlen(payload)) == 0);
        snprintf(wrong, sizeof(wrong), "%s", sig);
        wrong[strlen(wrong) - 1] ^= 1;
        CHECK(fh_ci_github_verify(secret, wrong, payload, strlen(payload)) == -2);
        CHECK(fh_ci_github_verify(secret, sig, payload, strlen(payload) - 1) == -2);
        CHECK(fh_ci_github_verify("another secret", sig, payload, strlen(payload)) == -2);
        CHECK(fh_ci_github_verify(secret, NULL, payload, strlen(payload)) == -1);
        CHECK(fh_ci_github_verify(secret, sig + 7, payload, strlen(payload)) == -1);
        wrong[strlen(wrong) - 1] = 'g';
        CHECK(fh_ci_github_verify(secret, wrong, payload, strlen(payload)) == -1);
        snprintf(wrong, sizeof(wrong), "sha1=%s", sig + 7);
        CHECK(fh_ci_github_verify(secret, wrong, payload, strlen(payload)) == -1);
    }
    json_decref(root);
    CHECK(fh_ci_gitlab_verify("tok-123", "tok-123") == 0);
    CHECK(fh_ci_gitlab_verify("tok-123", "tok-124") == -2);
    CHECK(fh_ci_gitlab_verify("tok-123", "tok-1234") == -2);
    CHECK(fh_ci_gitlab_verify("tok-123", "") == -2);
    CHECK(fh_ci_gitlab_verify("tok-123", NULL) == -1);
}

TEST(ci_time_parse_takes_the_payloads_forms)
{
    static const struct {
        const char *s;
        int64_t ms; /* -1: refused */
    } cases[] = {
        {"2026-11-22T05:00:00Z", 1795323600000},
        {"2026-11-22T05:00:00.123Z", 1795323600123},
        {"2026-11-22T05:00:00.1239Z", 1795323600123},
        {"2026-11-21T21:00:00.000-08:00", 1795323600000},
        {"2026-11-22T06:00:00+01:00", 1795323600000},
        {"2026-11-22 05:00:00 UTC", 1795323600000},
        {"2026-11-22 06:00:00 +0100", 1795323600000},
        {"2026-11-22T06:00:00+0100", 1795323600000},
        {"2026-11-21 21:30:00 -0730", 1795323600000},
        {"1970-01-01T00:00:00Z", 0},
        {"1969-12-31T23:59:59Z", -1},
        {"2026-11-22 05:00:00", -1},
        {"2026-11-22T05:00:00", -1},
        {"2026-11-22 05:00:00 CET", -1},
        {"2026-11-22T05:00:00+01", -1},
        {"2026-11-22T05:00:00+0a00", -1},
        {"2026-13-22T05:00:00Z", -1},
        {"", -1},
        {"yesterday", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 42;
        int r = fh_ci_time_parse(cases[i].s, &ms);
        if (cases[i].ms < 0) {
            CHECK(r == -1 && ms == 42);
        } else {
            CHECK(r == 0);
            CHECK(ms == cases[i].ms);
        }
        if ((cases[i].ms < 0) != (r != 0))
            printf("  case %s\n", cases[i].s);
    }
    CHECK(fh_ci_time_parse(NULL, &(int64_t){0}) == -1);
}

TEST(ci_hmac_sha256_has_rfc4231_case_2)
{
    /* RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?" */
    static const unsigned char want[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                           0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                           0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                           0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    unsigned char mac[FH_HMAC_SHA256_BYTES];
    const char *data = "what do ya want for nothing?";
    CHECK(fh_hmac_sha256("Jefe", 4, data, strlen(data), mac) == FH_OK);
    CHECK(memcmp(mac, want, sizeof(want)) == 0);
    CHECK(fh_hmac_sha256("", 0, "", 0, mac) == FH_OK);
}

/* ---- the delivery-id memory ------------------------------------------------------------- */

TEST(dedup_new_seen_busy_and_forget)
{
    fh_dedup *d = fh_dedup_new(4, 1000);
    CHECK(d != NULL);
    CHECK(fh_dedup_begin(d, "a", 1, 0) == FH_DEDUP_NEW);
    CHECK(fh_dedup_begin(d, "a", 1, 1) == FH_DEDUP_BUSY);
    fh_dedup_done(d, "a", 1, 2);
    CHECK(fh_dedup_begin(d, "a", 1, 3) == FH_DEDUP_SEEN);
    CHECK(fh_dedup_begin(d, "b", 1, 3) == FH_DEDUP_NEW);
    fh_dedup_forget(d, "b", 1); /* a failed delivery: its retry is new */
    CHECK(fh_dedup_begin(d, "b", 1, 4) == FH_DEDUP_NEW);
    fh_dedup_forget(d, "zz", 2); /* not held: nothing happens */
    CHECK(fh_dedup_count(d) == 2);
    CHECK(fh_dedup_begin(d, "a", 1, 999) == FH_DEDUP_SEEN);
    CHECK(fh_dedup_begin(d, "a", 1, 1000) ==
          FH_DEDUP_NEW); /* recorded at 0: 1000 ms later it is gone */
    fh_dedup_free(d);
}

TEST(dedup_forgets_the_oldest_at_the_cap)
{
    fh_dedup *d = fh_dedup_new(3, 1000000);
    char k[8];
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        CHECK(fh_dedup_begin(d, k, strlen(k), i) == FH_DEDUP_NEW);
        fh_dedup_done(d, k, strlen(k), i);
    }
    CHECK(fh_dedup_count(d) == 3 && fh_dedup_evicted(d) == 2);
    CHECK(fh_dedup_begin(d, "k4", 2, 10) == FH_DEDUP_SEEN);
    CHECK(fh_dedup_begin(d, "k2", 2, 10) == FH_DEDUP_SEEN);
    CHECK(fh_dedup_begin(d, "k0", 2, 10) == FH_DEDUP_NEW); /* forgotten: the cap took it */
    fh_dedup_done(d, "never-begun", 11, 11);               /* recorded as done */
    CHECK(fh_dedup_begin(d, "never-begun", 11, 12) == FH_DEDUP_SEEN);
    fh_dedup_free(d);
    CHECK(fh_dedup_new(0, 1) == NULL && fh_dedup_new(1, 0) == NULL);
}

/* The digest calls are the key calls with the hash computed once by the caller: a key begun
 * by one is known to the other. */
TEST(dedup_digest_calls_match_the_key_calls)
{
    fh_dedup *d = fh_dedup_new(4, 1000);
    unsigned char a[FH_DEDUP_DIGEST], b[FH_DEDUP_DIGEST];
    fh_dedup_digest("id-a", 4, a);
    fh_dedup_digest("id-b", 4, b);
    CHECK(memcmp(a, b, FH_DEDUP_DIGEST) != 0);
    CHECK(fh_dedup_begin_digest(d, a, 0) == FH_DEDUP_NEW);
    CHECK(fh_dedup_begin(d, "id-a", 4, 1) == FH_DEDUP_BUSY);
    fh_dedup_done_digest(d, a, 2);
    CHECK(fh_dedup_begin(d, "id-a", 4, 3) == FH_DEDUP_SEEN);
    CHECK(fh_dedup_begin(d, "id-b", 4, 3) == FH_DEDUP_NEW);
    fh_dedup_forget_digest(d, b);
    CHECK(fh_dedup_begin_digest(d, b, 4) == FH_DEDUP_NEW);
    CHECK(fh_dedup_count(d) == 2);
    fh_dedup_free(d);
}

/* A plain model of the documented rules: keys in insertion order in at most CAP slots; a
 * forgotten key keeps its slot until it is the oldest; the oldest goes when it is older than the
 * TTL or when a new key needs a slot. */
typedef struct model_entry {
    int key, state; /* 0 forgotten, 1 in flight, 2 done */
    int64_t t;
} model_entry;

typedef struct model {
    model_entry e[64];
    int head, used;
} model;

static model_entry *model_find(model *m, int cap, int key)
{
    for (int i = 0; i < m->used; i++) {
        model_entry *e = &m->e[(m->head + i) % cap];
        if (e->state && e->key == key)
            return e;
    }
    return NULL;
}

static void model_insert(model *m, int cap, int key, int state, int64_t t)
{
    if (m->used == cap) {
        m->head = (m->head + 1) % cap;
        m->used--;
    }
    m->e[(m->head + m->used++) % cap] = (model_entry){key, state, t};
}

TEST(dedup_agrees_with_a_reference_model)
{
    enum { KEYS = 40, CAP = 16, TTL = 50 };
    model m;
    fh_dedup *d = fh_dedup_new(CAP, TTL);
    unsigned long long x = 88172645463325252ULL;
    int64_t now = 0;
    memset(&m, 0, sizeof(m));
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int key = (int)(x % KEYS), op = (int)((x >> 20) % 10);
        char k[24];
        int n = snprintf(k, sizeof(k), "delivery-%d", key);
        model_entry *e;
        now += (int64_t)((x >> 40) % 3);
        if (op < 6) {
            while (m.used && (!m.e[m.head].state || m.e[m.head].t <= now - TTL)) {
                m.head = (m.head + 1) % CAP;
                m.used--;
            }
            e = model_find(&m, CAP, key);
            int want = !e ? FH_DEDUP_NEW : e->state == 1 ? FH_DEDUP_BUSY : FH_DEDUP_SEEN;
            int got = fh_dedup_begin(d, k, (size_t)n, now);
            if (got != want) {
                printf("  step %d key %d: got %d want %d\n", step, key, got, want);
                CHECK(got == want);
                break;
            }
            if (!e)
                model_insert(&m, CAP, key, 1, now);
        } else if (op < 9) {
            fh_dedup_done(d, k, (size_t)n, now);
            if ((e = model_find(&m, CAP, key)))
                e->state = 2;
            else
                model_insert(&m, CAP, key, 2, now);
        } else {
            fh_dedup_forget(d, k, (size_t)n);
            if ((e = model_find(&m, CAP, key)))
                e->state = 0;
        }
        size_t live = 0;
        for (int i = 0; i < m.used; i++)
            live += m.e[(m.head + i) % CAP].state != 0;
        if (live != fh_dedup_count(d)) {
            printf("  step %d: model holds %zu, memory %zu\n", step, live, fh_dedup_count(d));
            CHECK(live == fh_dedup_count(d));
            break;
        }
    }
    fh_dedup_free(d);
}
