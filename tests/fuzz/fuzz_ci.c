/* libFuzzer target for the GitHub and GitLab webhook mapper (lib/fh_ci.c, what
 * POST /api/v1/ingest/github and /gitlab run on every authenticated delivery): arbitrary payloads
 * through fh_ci_map, and the input's bytes through the signature, token and timestamp checks.
 *
 * Input: byte 0 picks the system (bit 0: GitHub, GitLab), the event (bits 1-3: one of the names
 * below, or 7: the text up to the first NUL of the rest) and the repository member (bits 4-5).
 * The rest (after that NUL, for bits 1-3 = 7) is the body, parsed as the broker parses it
 * (json_loadb with JSON_REJECT_DUPLICATES); the seeds in tests/fuzz/seeds/ci are the vectors'
 * deliveries in that form.
 *
 * What must hold for every input:
 *  - no crash, leak or undefined behaviour (ASan + UBSan);
 *  - FH_CI_EVENTS: at least one event appended; every one passes the v1 contract
 *    (fh_event_from_json); ids unique within the delivery and prefixed "<system>:<master>:";
 *    seq 0; master, source and key the same for all of the delivery's events (one job, check run
 *    or change each); ids of the context (buildrequestid, buildid, builderid, buildsetid,
 *    changeid, stepid) within the system's range [prefix * 10^15, (prefix + 1) * 10^15);
 *  - FH_CI_IGNORED and FH_CI_BAD: nothing appended; a message that is valid UTF-8 (it goes into
 *    a JSON answer); BAD names a member starting with "body" (or "" with "out of memory");
 *  - the same payload maps to the same events again (no hidden state: a redelivery is the same
 *    events);
 *  - fh_ci_time_parse on the rest: success gives ms >= 0 that prints back (fh_time_rfc3339) to a
 *    time fh_time_parse reads as the same ms;
 *  - fh_ci_github_verify: the input as header never crashes; the right sha256= of the rest
 *    matches, in either case of hex; any one hex digit changed does not;
 *    fh_ci_gitlab_verify(x, x) matches, x against x plus a byte does not.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_ci.h"
#include "fh_event.h"
#include "fh_sign.h"
#include "fh_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fh_contract *contract;

static const char *const gh_events[7] = {"workflow_job", "workflow_run", "check_run", "ping",
                                         "push", "workflow_job", "workflow_job"};
static const char *const gl_events[7] = {"Job Hook", "Pipeline Hook", "System Hook", "Push Hook",
                                         "Job Hook", "Job Hook", "Pipeline Hook"};
static const char *const gh_fields[4] = {NULL, "html_url", "clone_url", "ssh_url"};
static const char *const gl_fields[4] = {NULL, "web_url", "git_http_url", "git_ssh_url"};

static void check(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ci: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static void teardown(void)
{
    fh_contract_free(contract);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    check(fh_contract_load(&contract, err, sizeof(err)) == FH_OK, "fh_contract_load", err);
    atexit(teardown);
    return 0;
}

static void check_range(const json_t *data, const char *field, long long prefix, const char *id)
{
    const json_t *v = json_object_get(data, field);
    if (!v)
        return;
    long long n = json_integer_value(v);
    check(json_is_integer(v) && n >= prefix * FH_CI_ID_BASE && n < (prefix + 1) * FH_CI_ID_BASE,
          field, id);
}

static void check_events(fh_ci_system sys, const json_t *evs)
{
    size_t i;
    const json_t *ev;
    char first_key[64] = "", key[64], prefix[96];
    const char *master = json_string_value(json_object_get(json_array_get(evs, 0), "master"));
    check(master != NULL, "master", NULL);
    snprintf(prefix, sizeof(prefix), "%s:%s:", sys == FH_CI_GITHUB ? "github" : "gitlab", master);
    json_array_foreach(evs, i, ev)
    {
        char err[384], source[96];
        fh_event e;
        const char *id = json_string_value(json_object_get(ev, "id"));
        json_t *data = json_object_get(ev, "data");
        check(fh_event_from_json(contract, (json_t *)ev, &e, err, sizeof(err)) == FH_OK,
              "event passes the contract", err);
        fh_event_key(&e, key, sizeof(key));
        fh_event_clear(&e);
        check(id && strncmp(id, prefix, strlen(prefix)) == 0, "id prefix", id);
        for (size_t k = 0; k < i; k++)
            check(strcmp(id, json_string_value(json_object_get(json_array_get(evs, k), "id"))),
                  "ids unique within a delivery", id);
        check(json_integer_value(json_object_get(ev, "seq")) == 0, "seq 0", id);
        check(!strcmp(master, json_string_value(json_object_get(ev, "master"))), "one master", id);
        snprintf(source, sizeof(source), "%s://%s", sys == FH_CI_GITHUB ? "github" : "gitlab",
                 master);
        check(!strcmp(source, json_string_value(json_object_get(ev, "source"))), "source", id);
        if (!i)
            snprintf(first_key, sizeof(first_key), "%s", key);
        check(!strcmp(key, first_key), "one key per delivery", id);
        long long p = sys == FH_CI_GITHUB ? 1 : 2;
        static const char *const ranged[] = {"buildrequestid", "buildid", "builderid",
                                             "buildsetid",     "changeid", "stepid"};
        for (size_t k = 0; k < sizeof(ranged) / sizeof(ranged[0]); k++)
            check_range(data, ranged[k], p, id);
    }
}

static void map_body(fh_ci_system sys, const char *event, const json_t *body, const fh_ci_opts *o)
{
    json_t *out = json_array(), *again = json_array();
    fh_ci_why why;
    check(out && again, "json_array", NULL);
    json_array_append_new(out, json_string("already there"));
    fh_ci_result r = fh_ci_map(sys, event, body, o, out, &why);
    json_t *mine = json_array();
    for (size_t i = 1; i < json_array_size(out); i++)
        json_array_append(mine, json_array_get(out, i));
    if (r == FH_CI_EVENTS) {
        check(json_array_size(mine) >= 1, "events appended", NULL);
        check_events(sys, mine);
        fh_ci_why why2;
        check(fh_ci_map(sys, event, body, o, again, &why2) == FH_CI_EVENTS &&
                  json_equal(again, mine),
              "the same payload maps to the same events", NULL);
    } else {
        check(r == FH_CI_IGNORED || r == FH_CI_BAD, "result", NULL);
        check(json_array_size(mine) == 0, "nothing appended", why.msg);
        json_t *msg = json_string(why.msg); /* NULL when not UTF-8 */
        check(msg && why.msg[0], "message is UTF-8 text", why.param);
        json_decref(msg);
        if (r == FH_CI_BAD)
            check(!strncmp(why.param, "body", 4) ||
                      (!why.param[0] && !strcmp(why.msg, "out of memory")),
                  "BAD names a body member", why.param);
        else
            check(!why.param[0], "IGNORED names no member", why.param);
    }
    json_decref(mine);
    json_decref(out);
    json_decref(again);
}

static void check_time(const char *s, size_t n)
{
    char buf[64], back[32];
    int64_t ms, ms2;
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (fh_ci_time_parse(buf, &ms))
        return;
    check(ms >= 0, "time >= 1970", buf);
    fh_time_rfc3339(ms, back, sizeof(back));
    check(fh_time_parse(back, &ms2) == 0 && ms2 == ms, "time prints back", buf);
}

static void check_signatures(const char *rest, size_t n)
{
    unsigned char mac[FH_HMAC_SHA256_BYTES];
    char header[80], hdr_in[128];
    size_t h = n < sizeof(hdr_in) - 1 ? n : sizeof(hdr_in) - 1;
    memcpy(hdr_in, rest, h);
    hdr_in[h] = '\0';
    int r = fh_ci_github_verify("fuzz secret", hdr_in, rest, n);
    check(r == 0 || r == -1 || r == -2, "verify result", NULL);
    check(fh_hmac_sha256("fuzz secret", 11, rest, n, mac) == FH_OK, "hmac", NULL);
    memcpy(header, "sha256=", 7);
    for (size_t i = 0; i < sizeof(mac); i++)
        snprintf(header + 7 + 2 * i, 3, "%02x", mac[i]);
    check(fh_ci_github_verify("fuzz secret", header, rest, n) == 0, "right signature", NULL);
    for (char *p = header + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    check(fh_ci_github_verify("fuzz secret", header, rest, n) == 0, "upper-case hex", NULL);
    size_t at = 7 + (n ? (unsigned char)rest[0] % 64 : 0);
    header[at] = header[at] == '0' ? '1' : '0';
    check(fh_ci_github_verify("fuzz secret", header, rest, n) == -2, "one digit changed", NULL);
    check(fh_ci_gitlab_verify(hdr_in, hdr_in) == 0, "same token", NULL);
    char longer[130];
    snprintf(longer, sizeof(longer), "%sx", hdr_in);
    check(fh_ci_gitlab_verify(hdr_in, longer) == -2, "longer token", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int b = data[0], sel = (b >> 1) & 7;
    fh_ci_system sys = b & 1 ? FH_CI_GITLAB : FH_CI_GITHUB;
    fh_ci_opts o = {.repo_field = (sys == FH_CI_GITHUB ? gh_fields : gl_fields)[(b >> 4) & 3]};
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    char event[72] = "";
    if (sel == 7) {
        const char *nul = memchr(rest, '\0', n);
        size_t len = nul ? (size_t)(nul - rest) : n;
        snprintf(event, sizeof(event), "%.*s", (int)(len < 64 ? len : 64), rest);
        rest += nul ? len + 1 : n;
        n -= nul ? len + 1 : n;
    } else {
        snprintf(event, sizeof(event), "%s", (sys == FH_CI_GITHUB ? gh_events : gl_events)[sel]);
    }
    check_time(rest, n);
    check_signatures(rest, n);
    json_t *body = json_loadb(rest, n, JSON_REJECT_DUPLICATES, NULL);
    if (body)
        map_body(sys, event, body, &o);
    json_decref(body);
    return 0;
}
