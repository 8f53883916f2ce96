/* The validator's two shortcuts give the answers plain evaluation gives: the patterns matched in
 * C agree with regexec on generated strings, and allOf entries dispatched on a member's value
 * (the event schema's if/then per type) validate and fail exactly as if/then does, with the same
 * first error. */
#include "fh_pattern.h"
#include "fh_schema.h"
#include "fh_test.h"

#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const patterns[] = {
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "\\.[0-9]{3}Z$",
    "^[A-Za-z][A-Za-z0-9+.-]*:.+",
};
static const char *const seeds[] = {
    "2026-12-07T01:02:03.456Z",
    "1999-09-30T23:59:59.999Z",
    "0000-01-01T00:00:00.000Z",
    "buildbot://master-1",
    "a:b",
    "x+y.z-1:/",
    "https://ci.example/x",
    "",
    "a:",
};
static const char alphabet[] = "0123456789-:.TZzAaz+/ \n\xff\x7f";

static uint64_t rng = 88172645463325252ull;
static unsigned next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

/* Compares the C matcher and regexec on s (n bytes, no NUL); counts disagreements. */
static int differs(const char *pat, regex_t *re, const char *s, size_t n)
{
    char buf[64];
    memcpy(buf, s, n);
    buf[n] = '\0';
    int want = regexec(re, buf, 0, NULL, 0) == 0;
    int got = fh_pattern_fast_match(pat, buf, n);
    if (got != want)
        printf("  /%s/ on \"%s\": C says %d, regexec %d\n", pat, buf, got, want);
    return got != want;
}

TEST(schema_fast_patterns_agree_with_regexec)
{
    size_t nseeds = sizeof(seeds) / sizeof(seeds[0]), nalpha = sizeof(alphabet) - 1;
    CHECK(fh_pattern_fast_match("^a$", "a", 1) == -1);
    for (size_t p = 0; p < sizeof(patterns) / sizeof(patterns[0]); p++) {
        regex_t re;
        int bad = 0, tried = 0, matched = 0;
        CHECK(regcomp(&re, patterns[p], REG_EXTENDED | REG_NOSUB) == 0);
        for (size_t i = 0; i < nseeds; i++) {
            const char *s = seeds[i];
            size_t n = strlen(s);
            char m[64];
            bad += differs(patterns[p], &re, s, n);
            /* every single-byte substitution, deletion and insertion of every seed */
            for (size_t at = 0; at <= n; at++)
                for (size_t a = 0; a < nalpha; a++) {
                    memcpy(m, s, n);
                    if (at < n) {
                        m[at] = alphabet[a];
                        bad += differs(patterns[p], &re, m, n);
                        memmove(m + at, m + at + 1, n - at - 1);
                        bad += differs(patterns[p], &re, m, n - 1);
                    }
                    memcpy(m, s, at);
                    m[at] = alphabet[a];
                    memcpy(m + at + 1, s + at, n - at);
                    bad += differs(patterns[p], &re, m, n + 1);
                    tried += 3;
                }
        }
        /* random strings over the alphabet, and random edits of the seeds */
        for (int k = 0; k < 20000; k++) {
            char m[40];
            size_t n;
            if (k & 1) {
                n = next_rand() % 30;
                for (size_t i = 0; i < n; i++)
                    m[i] = alphabet[next_rand() % nalpha];
            } else {
                const char *s = seeds[next_rand() % nseeds];
                n = strlen(s);
                memcpy(m, s, n);
                for (int e = 0; e < 3 && n; e++)
                    m[next_rand() % n] = alphabet[next_rand() % nalpha];
            }
            m[n] = '\0';
            bad += differs(patterns[p], &re, m, n);
            matched += regexec(&re, m, 0, NULL, 0) == 0;
            tried++;
        }
        regfree(&re);
        CHECK(bad == 0);
        CHECK(tried > 20000);
        CHECK(matched > 0); /* the generated strings reach both answers */
    }
}

/* Validates text against schema, returning validity and the first error as "path: message". */
static int check(fh_schema *s, const char *text, char *out, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    fh_schema_error err;
    int ok = fh_schema_validate(s, j, &err);
    int n = ok ? 0 : snprintf(out, size, "%.80s: %.100s", err.path, err.message);
    out[n < 0 ? 0 : n] = '\0';
    json_decref(j);
    return ok;
}

static fh_schema *compile(fh_schema_registry *reg, const char *text, const char *id)
{
    char err[256];
    fh_schema *s = NULL;
    json_t *doc = json_loads(text, 0, NULL);
    CHECK(doc != NULL);
    CHECK(fh_schema_registry_add(reg, doc, id, err, sizeof(err)) == FH_OK);
    CHECK(fh_schema_compile(reg, id, &s, err, sizeof(err)) == FH_OK);
    json_decref(doc);
    return s;
}

/* The same schema twice: entries shaped {"if", "then"} (dispatched), and the same entries with
 * "else": true, which means the same but is evaluated the plain way. */
#define DISC_SCHEMA(ELSE)                                                                          \
    "{\"allOf\": ["                                                                                \
    "{\"required\": [\"kind\"]},"                                                                  \
    "{\"if\": {\"properties\": {\"kind\": {\"const\": \"a\"}}, \"required\": [\"kind\"]},"         \
    " \"then\": {\"properties\": {\"n\": {\"type\": \"integer\"}}}" ELSE "},"                      \
    "{\"properties\": {\"n\": {\"minimum\": 0}}},"                                                 \
    "{\"if\": {\"properties\": {\"kind\": {\"const\": \"b\"}}, \"required\": [\"kind\"]},"         \
    " \"then\": {\"required\": [\"x\"]}" ELSE "},"                                                 \
    "{\"if\": {\"properties\": {\"kind\": {\"const\": \"a\"}}, \"required\": [\"kind\"]},"         \
    " \"then\": {\"properties\": {\"n\": {\"maximum\": 9}}}" ELSE "}]}"

TEST(schema_dispatched_if_then_matches_plain_evaluation)
{
    static const char *const instances[] = {
        "{\"kind\": \"a\", \"n\": 3}",
        "{\"kind\": \"a\", \"n\": 1.5}",
        "{\"kind\": \"a\", \"n\": 12}",
        "{\"kind\": \"a\", \"n\": -1}",
        "{\"kind\": \"b\"}",
        "{\"kind\": \"b\", \"x\": 1}",
        "{\"kind\": \"c\", \"n\": 1.5}",
        "{\"kind\": 7, \"n\": 1.5}",
        "{\"n\": 1}",
        "{\"kind\": \"ab\"}",
        "{\"kind\": \"\"}",
        "[1, 2]",
        "\"kind\"",
        "{\"kind\": [\"a\"]}",
        "{\"kind\": \"b\", \"n\": -2}",
    };
    fh_schema_registry *reg = fh_schema_registry_new();
    fh_schema *fast = compile(reg, DISC_SCHEMA(""), "urn:t:fast");
    fh_schema *plain = compile(reg, DISC_SCHEMA(", \"else\": true"), "urn:t:plain");
    int valid = 0;
    for (size_t i = 0; i < sizeof(instances) / sizeof(instances[0]); i++) {
        char a[200], b[200];
        int fa = check(fast, instances[i], a, sizeof(a)),
            pb = check(plain, instances[i], b, sizeof(b));
        CHECK(fa == pb);
        CHECK_STR(a, b);
        valid += fa;
    }
    CHECK(valid >= 3 && valid <= 12); /* both answers are exercised */
    char e[256];
    CHECK(!check(fast, "{\"kind\": \"a\", \"n\": 1.5}", e, sizeof(e)));
    CHECK_STR(e, "n: expected integer");
    CHECK(!check(fast, "{\"kind\": \"a\", \"n\": 12}", e, sizeof(e)));
    CHECK_STR(e, "n: must be <= 9");
    fh_schema_registry_free(reg);
}
