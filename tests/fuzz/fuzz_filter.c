/* libFuzzer target for the filter language (lib/fh_filter.c): the bytes are a JSON filter (as a
 * WebSocket subscribe, an SSE query or a webhook carries one), parsed with fh_filter_parse and
 * matched against four fixed events (schemas/examples/valid: build.finished, build.started,
 * step.started, worker.connected).
 *
 * What must hold for every input:
 *  - no crash, leak or undefined behaviour (ASan + UBSan);
 *  - a refusal is FH_ERR_INVAL, FH_ERR_TOOBIG or FH_ERR_NOMEM and carries a "filter..." message;
 *  - an accepted filter is well formed: clauses on distinct fields, 1 to FH_FILTER_MAX_VALUES
 *    values each, strings of at most FH_FILTER_MAX_STRLEN bytes, glob set exactly when the string
 *    has a '*', results within 0-6, integer fields without strings and string fields with them;
 *  - fh_filter_match agrees with a reference matcher written here (a dynamic-programming glob,
 *    not fh_glob_match's backtracking), and {} matches every event;
 *  - the accepted filter, written back to JSON, parses to the same filter;
 *  - fh_filter_add_text (the SSE form "a,b,c") on the raw input as text, for a string field and
 *    an integer field, either succeeds or refuses with a message;
 *  - when the input is not JSON, it is split at its first NUL into pattern and text and
 *    fh_glob_match must agree with the reference glob.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_filter.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const event_text[] = {
    "{\"specversion\":\"1.0\",\"id\":\"master-1-41015\",\"source\":\"buildbot://"
    "master-1\",\"type\":\"build.finished\",\"time\":\"2026-11-22T05:05:01.456Z\",\"subject\":"
    "\"builds/51873\",\"datacontenttype\":\"application/"
    "json\",\"master\":\"master-1\",\"seq\":41015,\"data\":{\"buildrequestid\":90211,\"buildid\":"
    "51873,\"builder\":\"linux-x64-rel\",\"builderid\":12,\"branch\":\"trunk\",\"revision\":"
    "\"3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e9b3d5c70\",\"repository\":\"https://git.example.org/"
    "firehose.git\",\"project\":\"firehose\",\"codebase\":\"\",\"owner\":\"alice@example.org\","
    "\"number\":1872,\"complete_at\":1795323901.45,\"results\":1,\"state_string\":\"build "
    "successful\",\"duration_s\":239.35}}",
    "{\"specversion\":\"1.0\",\"id\":\"master-1-41006\",\"source\":\"buildbot://"
    "master-1\",\"type\":\"build.started\",\"time\":\"2026-11-22T05:01:02.113Z\",\"subject\":"
    "\"builds/51873\",\"datacontenttype\":\"application/"
    "json\",\"master\":\"master-1\",\"seq\":41006,\"data\":{\"buildrequestid\":90211,\"buildid\":"
    "51873,\"builder\":\"linux-x64-rel\",\"builderid\":12,\"branch\":\"trunk\",\"revision\":"
    "\"3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e9b3d5c70\",\"repository\":\"https://git.example.org/"
    "firehose.git\",\"project\":\"firehose\",\"codebase\":\"\",\"owner\":\"alice@example.org\","
    "\"number\":1872,\"worker\":\"linux-x64-07\",\"started_at\":1795323662.1}}",
    "{\"specversion\":\"1.0\",\"id\":\"master-1-41008\",\"source\":\"buildbot://"
    "master-1\",\"type\":\"step.started\",\"time\":\"2026-11-22T05:01:03.002Z\",\"subject\":"
    "\"builds/51873/steps/2\",\"datacontenttype\":\"application/"
    "json\",\"master\":\"master-1\",\"seq\":41008,\"data\":{\"buildrequestid\":90211,\"buildid\":"
    "51873,\"builder\":\"linux-x64-rel\",\"builderid\":12,\"branch\":\"trunk\",\"revision\":"
    "\"3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e9b3d5c70\",\"repository\":\"https://git.example.org/"
    "firehose.git\",\"project\":\"firehose\",\"codebase\":\"\",\"owner\":\"alice@example.org\","
    "\"stepid\":884211,\"number\":2,\"name\":\"compile\",\"started_at\":1795323663.0}}",
    "{\"specversion\":\"1.0\",\"id\":\"master-1-41002\",\"source\":\"buildbot://"
    "master-1\",\"type\":\"worker.connected\",\"time\":\"2026-11-22T05:00:03.480Z\",\"subject\":"
    "\"workers/7\",\"datacontenttype\":\"application/"
    "json\",\"master\":\"master-1\",\"seq\":41002,\"data\":{\"workerid\":7,\"name\":\"linux-x64-"
    "07\"}}",
};
#define NEVENTS (sizeof(event_text) / sizeof(event_text[0]))

static fh_contract *contract;
static fh_event events[NEVENTS];

static void check(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "fuzz_filter: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static void teardown(void)
{
    for (size_t i = 0; i < NEVENTS; i++)
        fh_event_clear(&events[i]);
    fh_contract_free(contract);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512];
    (void)argc;
    (void)argv;
    check(fh_contract_load(&contract, err, sizeof(err)) == FH_OK, "fh_contract_load", err);
    for (size_t i = 0; i < NEVENTS; i++)
        check(fh_event_decode(contract, event_text[i], strlen(event_text[i]),
                              FH_EVENT_MAX_BYTES_DEFAULT, &events[i], err, sizeof(err)) == FH_OK,
              "fixed event", err);
    atexit(teardown);
    return 0;
}

/* Reference glob: dp[j] = pattern[0..i) matches text[0..j). Only '*' is special. */
static int ref_glob(const char *p, size_t pn, const char *s, size_t sn)
{
    unsigned char *dp = calloc(sn + 1, 1), *nx = calloc(sn + 1, 1);
    int r;
    check(dp && nx, "calloc", NULL);
    dp[0] = 1;
    for (size_t i = 0; i < pn; i++) {
        memset(nx, 0, sn + 1);
        for (size_t j = 0; j <= sn; j++) {
            if (p[i] == '*')
                nx[j] = dp[j] || (j > 0 && nx[j - 1]);
            else
                nx[j] = j > 0 && dp[j - 1] && p[i] == s[j - 1];
        }
        unsigned char *t = dp;
        dp = nx;
        nx = t;
    }
    r = dp[sn];
    free(dp);
    free(nx);
    return r;
}

static int is_integer_field(fh_filter_field f)
{
    return f == FH_F_RESULTS || f == FH_F_BUILDREQUESTID || f == FH_F_BUILDID ||
           f == FH_F_BUILDERID;
}

/* The event's value for a field, read straight from the JSON rather than through fh_event_str. */
static int ref_value(const fh_event *ev, fh_filter_field f, const char **s, long long *n)
{
    const json_t *v;
    if (f == FH_F_TYPE)
        v = json_object_get(ev->root, "type");
    else if (f == FH_F_MASTER)
        v = json_object_get(ev->root, "master");
    else
        v = json_object_get(ev->data, fh_filter_field_name(f));
    if (is_integer_field(f)) {
        if (!json_is_integer(v))
            return 0;
        *n = json_integer_value(v);
        return 1;
    }
    if (!json_is_string(v))
        return 0;
    *s = json_string_value(v);
    return 1;
}

static int ref_match(const fh_filter *f, const fh_event *ev)
{
    for (size_t i = 0; i < f->nclauses; i++) {
        const fh_filter_clause *c = &f->clauses[i];
        const char *s = NULL;
        long long n = 0;
        int any = 0;
        if (!ref_value(ev, c->field, &s, &n))
            return 0;
        for (size_t k = 0; k < c->nvals; k++) {
            const fh_filter_value *v = &c->vals[k];
            if (!v->str)
                any |= v->num == n;
            else
                any |= ref_glob(v->str, strlen(v->str), s, strlen(s));
        }
        if (!any)
            return 0;
    }
    return 1;
}

static void check_refusal(fh_err rc, const char *err)
{
    check(rc == FH_ERR_INVAL || rc == FH_ERR_TOOBIG || rc == FH_ERR_NOMEM, "refusal code", err);
    check(rc == FH_ERR_NOMEM || strncmp(err, "filter", 6) == 0, "refusal without a message", err);
}

static void check_shape(const fh_filter *f)
{
    unsigned seen = 0;
    check(f->nclauses <= FH_F__COUNT, "too many clauses", NULL);
    for (size_t i = 0; i < f->nclauses; i++) {
        const fh_filter_clause *c = &f->clauses[i];
        check(c->field < FH_F__COUNT && !(seen & (1u << c->field)), "clause field", NULL);
        seen |= 1u << c->field;
        check(c->nvals >= 1 && c->nvals <= FH_FILTER_MAX_VALUES, "clause value count", NULL);
        for (size_t k = 0; k < c->nvals; k++) {
            const fh_filter_value *v = &c->vals[k];
            if (is_integer_field(c->field)) {
                check(v->str == NULL, "string in an integer clause", NULL);
                if (c->field == FH_F_RESULTS)
                    check(v->num >= 0 && v->num <= 6, "results out of range", NULL);
            } else {
                check(v->str != NULL, "integer in a string clause", NULL);
                check(strlen(v->str) <= FH_FILTER_MAX_STRLEN, "string too long", v->str);
                check(v->glob == (strchr(v->str, '*') != NULL), "glob flag", v->str);
                if (c->field == FH_F_TYPE && !v->glob)
                    check(fh_event_type_parse(v->str) >= 0, "unknown type accepted", v->str);
            }
        }
    }
}

/* Each accepted value is exactly the JSON's: no string cut short (at a \u0000 or anywhere). */
static void check_values_from(const fh_filter *f, const json_t *obj)
{
    for (size_t i = 0; i < f->nclauses; i++) {
        const fh_filter_clause *c = &f->clauses[i];
        const json_t *v = json_object_get(obj, fh_filter_field_name(c->field));
        check(v != NULL, "clause without its key", fh_filter_field_name(c->field));
        check(json_is_array(v) ? json_array_size(v) == c->nvals : c->nvals == 1,
              "value count differs from the JSON", NULL);
        for (size_t k = 0; k < c->nvals; k++) {
            const json_t *item = json_is_array(v) ? json_array_get(v, k) : v;
            if (c->vals[k].str)
                check(json_is_string(item) && json_string_length(item) == strlen(c->vals[k].str) &&
                          memcmp(json_string_value(item), c->vals[k].str,
                                 json_string_length(item)) == 0,
                      "string value differs from the JSON", c->vals[k].str);
            else if (json_is_integer(item))
                check(json_integer_value(item) == c->vals[k].num,
                      "integer value differs from the JSON", NULL);
        }
    }
}

/* Writes f back as a JSON object. */
static json_t *to_json(const fh_filter *f)
{
    json_t *o = json_object();
    check(o != NULL, "json_object", NULL);
    for (size_t i = 0; i < f->nclauses; i++) {
        const fh_filter_clause *c = &f->clauses[i];
        json_t *list = json_array();
        for (size_t k = 0; k < c->nvals; k++)
            json_array_append_new(list, c->vals[k].str ? json_string(c->vals[k].str)
                                                       : json_integer(c->vals[k].num));
        json_object_set_new(o, fh_filter_field_name(c->field), list);
    }
    return o;
}

static int same_filter(const fh_filter *a, const fh_filter *b)
{
    if (a->nclauses != b->nclauses)
        return 0;
    for (size_t i = 0; i < a->nclauses; i++) {
        const fh_filter_clause *x = &a->clauses[i], *y = NULL;
        for (size_t j = 0; j < b->nclauses; j++)
            if (b->clauses[j].field == x->field)
                y = &b->clauses[j];
        if (!y || y->nvals != x->nvals)
            return 0;
        for (size_t k = 0; k < x->nvals; k++) {
            const fh_filter_value *u = &x->vals[k], *v = &y->vals[k];
            if (!u->str != !v->str || (u->str && strcmp(u->str, v->str)) ||
                (!u->str && u->num != v->num) || u->glob != v->glob)
                return 0;
        }
    }
    return 1;
}

static void fuzz_text(const char *text)
{
    static const char *fields[] = {"branch", "results", "type", "buildid", "nosuch"};
    char err[512];
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        fh_filter f;
        memset(&f, 0, sizeof(f));
        err[0] = '\0';
        fh_err rc = fh_filter_add_text(&f, fields[i], text, err, sizeof(err));
        if (rc) {
            check_refusal(rc, err);
        } else {
            check_shape(&f);
            for (size_t e = 0; e < NEVENTS; e++)
                check(fh_filter_match(&f, &events[e]) == ref_match(&f, &events[e]),
                      "add_text match differs from the reference", text);
        }
        fh_filter_free(&f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    fh_filter f;
    json_error_t jerr;
    json_t *obj = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (size <= 4096) {
        char *text = malloc(size + 1);
        check(text != NULL, "malloc", NULL);
        memcpy(text, data, size);
        text[size] = '\0';
        fuzz_text(text);
        if (!obj) {
            size_t pn = strlen(text);
            const char *s = pn < size ? text + pn + 1 : "";
            check(fh_glob_match(text, s) == ref_glob(text, pn, s, strlen(s)),
                  "fh_glob_match differs from the reference", text);
        }
        free(text);
    }
    if (!obj)
        return 0;

    err[0] = '\0';
    fh_err rc = fh_filter_parse(obj, &f, err, sizeof(err));
    if (rc) {
        check_refusal(rc, err);
        check(!json_is_null(obj), "null refused", err);
    } else {
        check(json_is_object(obj) || json_is_null(obj), "non-object accepted", NULL);
        check_shape(&f);
        if (json_is_object(obj))
            check_values_from(&f, obj);
        for (size_t e = 0; e < NEVENTS; e++) {
            int m = fh_filter_match(&f, &events[e]);
            check(m == 0 || m == 1, "match is not 0/1", NULL);
            check(m == ref_match(&f, &events[e]), "match differs from the reference", NULL);
            check(f.nclauses > 0 || m == 1, "{} did not match", NULL);
        }
        json_t *back = to_json(&f);
        fh_filter g;
        char err2[512];
        fh_err rc2 = fh_filter_parse(back, &g, err2, sizeof(err2));
        check(rc2 == FH_OK, "written-back filter refused", err2);
        check(same_filter(&f, &g), "written-back filter differs", NULL);
        fh_filter_free(&g);
        json_decref(back);
    }
    fh_filter_free(&f);
    json_decref(obj);
    return 0;
}
