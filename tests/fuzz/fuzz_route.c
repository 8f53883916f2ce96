/* libFuzzer target for the REST route matcher (lib/fh_route.c, called by broker/http.c for every
 * request against every route): the request path (as libmicrohttpd hands it over, URL-decoded,
 * without the query) against the broker's own route patterns, and against patterns taken from
 * the input.
 *
 * Input: byte 0 picks max_params (its low 3 bits, 0-7) and, when there is no NUL in the rest, one
 * of the broker's patterns (its high bits); byte 1 the scratch size (255: the 512 bytes http.c
 * gives). The rest is "pattern\0path", or the path alone.
 *
 * What must hold for every input:
 *  - no crash, no read or write past the scratch buffer (allocated to its exact size) or the
 *    params array (ASan + UBSan);
 *  - the answer equals a reference matcher written here segment by segment (split both at '/';
 *    a pattern segment without "{}" equals the path segment; one with "{}" matches a path
 *    segment that starts with the text before it, has at least one byte more, and nothing may
 *    follow the "{}" in that pattern segment), with the limits: no more than max_params
 *    segments taken, and their copies with NULs within the scratch size;
 *  - on a match the params are the reference's, each a NUL-terminated copy inside scratch, and
 *    putting them back in place of the "{}" rebuilds the path exactly.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARAMS 7
#define REF_MAX 64

/* The patterns the broker registers (rest.c, webhooks/api.c, statuspush.c, stream.c, health.c,
 * dashboard.c). */
static const char *const patterns[] = {
    "/api/v1/pending",
    "/api/v1/running",
    "/api/v1/last-green",
    "/api/v1/revisions",
    "/api/v1/builds",
    "/api/v1/builds/{}",
    "/api/v1/builders",
    "/api/v1/stats/steps",
    "/api/v1/stats/builds",
    "/api/v1/ingest/buildbot",
    "/api/v1/webhooks",
    "/api/v1/webhooks/{}",
    "/api/v1/webhooks/{}/deliveries",
    "/api/v1/webhooks/{}/deliveries/{}",
    "/api/v1/webhooks/{}/deliveries/{}/redeliver",
    "/api/v1/webhooks/{}/recover",
    "/v1/stream",
    "/v1/events",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/index.html",
    "/dashboard.js",
    "/dashboard.css",
};

static void check(int ok, const char *what, const char *pattern, const char *path)
{
    if (!ok) {
        fprintf(stderr, "fuzz_route: %s (pattern \"%s\", path \"%s\")\n", what, pattern, path);
        abort();
    }
}

/* Next segment of s (up to '/' or the end): its start and length; returns the rest after the
 * '/', or NULL after the last segment. */
static const char *segment(const char *s, const char **start, size_t *len)
{
    const char *slash = strchr(s, '/');
    *start = s;
    *len = slash ? (size_t)(slash - s) : strlen(s);
    return slash ? slash + 1 : NULL;
}

/* The reference: 1 when path matches pattern (ignoring the limits); the params (start, length)
 * in order, their count and the bytes their copies need with NULs. */
static int ref_match(const char *pattern, const char *path, const char **pstart, size_t *plen,
                     size_t *np, size_t *room)
{
    *np = 0;
    *room = 0;
    for (;;) {
        const char *ps, *ss;
        size_t pl, sl;
        pattern = segment(pattern, &ps, &pl);
        path = segment(path, &ss, &sl);
        const char *brace = NULL;
        for (size_t i = 0; i + 1 < pl; i++)
            if (ps[i] == '{' && ps[i + 1] == '}') {
                brace = ps + i;
                break;
            }
        if (!brace) {
            if (pl != sl || memcmp(ps, ss, pl) != 0)
                return 0;
        } else {
            size_t k = (size_t)(brace - ps);
            if (k + 2 != pl || sl <= k || memcmp(ps, ss, k) != 0)
                return 0;
            if (*np == REF_MAX)
                return 0;
            pstart[*np] = ss + k;
            plen[*np] = sl - k;
            *room += sl - k + 1;
            (*np)++;
        }
        if (!pattern || !path)
            return !pattern && !path;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 8192)
        return 0;
    size_t max_params = data[0] & 7;
    size_t scratch_size = data[1] == 255 ? 512 : data[1];
    char *text = malloc(size - 1);
    check(text != NULL, "malloc", "", "");
    memcpy(text, data + 2, size - 2);
    text[size - 2] = '\0';
    const char *pattern, *path;
    size_t first = strlen(text);
    if (first < size - 2) {
        pattern = text;
        path = text + first + 1;
    } else {
        pattern = patterns[(data[0] >> 3) % (sizeof(patterns) / sizeof(patterns[0]))];
        path = text;
    }

    const char *params[MAX_PARAMS + 1];
    for (size_t i = 0; i <= MAX_PARAMS; i++)
        params[i] = NULL;
    char *scratch = malloc(scratch_size ? scratch_size : 1);
    check(scratch != NULL, "malloc", pattern, path);
    int got = fh_route_match(pattern, path, params, max_params, scratch, scratch_size);

    const char *rs[REF_MAX];
    size_t rl[REF_MAX], np, room;
    int want = ref_match(pattern, path, rs, rl, &np, &room);
    int want_limited = want && np <= max_params && room <= scratch_size;
    check(got == want_limited, got ? "matches, the reference does not" : "reference matches",
          pattern, path);
    check(params[max_params] == NULL, "a param past max_params", pattern, path);
    if (got) {
        /* put the params back in place of "{}" */
        size_t plen = strlen(path), o = 0, k = 0;
        char *rebuilt = malloc(strlen(pattern) + plen + 1);
        check(rebuilt != NULL, "malloc", pattern, path);
        for (const char *p = pattern; *p;) {
            if (p[0] == '{' && p[1] == '}') {
                check(k < np && params[k], "fewer params than \"{}\"", pattern, path);
                check(params[k] >= scratch && params[k] + rl[k] < scratch + scratch_size,
                      "param outside scratch", pattern, path);
                check(strlen(params[k]) == rl[k] && memcmp(params[k], rs[k], rl[k]) == 0,
                      "param differs from the reference", pattern, path);
                memcpy(rebuilt + o, params[k], rl[k]);
                o += rl[k++];
                p += 2;
            } else {
                rebuilt[o++] = *p++;
            }
        }
        rebuilt[o] = '\0';
        check(k == np, "more params than \"{}\"", pattern, path);
        check(strcmp(rebuilt, path) == 0, "params do not rebuild the path", pattern, path);
        free(rebuilt);
    }
    free(scratch);
    free(text);
    return 0;
}
