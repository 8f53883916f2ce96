/* libFuzzer target for the REST parameter parsers (lib/fh_param.c, called by broker/rest.c):
 * limit and the other integers, window and bucket durations ("90", "30m", "1h", "2d"), the
 * /api/v1/builds cursor and the {buildid} path segment.
 *
 * The input, NUL-terminated, is the URL-decoded parameter value. It goes through every parser
 * with the bounds rest.c uses, and once more with bounds taken from the input's first 16 bytes
 * (so huge maxima reach the overflow checks). Each answer is compared with a reference parser
 * written here from the documented grammar (white space, sign, digits, saturation at the int64
 * range, computed in 128 bits), which must agree on the code and, on success, the value; a value
 * must lie within the bounds and *out must stay untouched on error.
 *
 * Also here: fh_time_parse (stream start times), whose result must survive fh_time_rfc3339 and
 * a second parse unchanged, and fh_auth_bearer (the Authorization header).
 *
 * Not covered here: the query string itself is split and URL-decoded by libmicrohttpd; the path
 * matcher (path_match in broker/http.c) and the SSE filter parameters (fh_filter_add_text, which
 * fuzz_filter covers) are elsewhere. Build and run: see tests/fuzz/README.md. */
#include "fh_auth.h"
#include "fh_param.h"
#include "fh_util.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define UNTOUCHED 0x5A5A5A5A5A5A5A5ALL

static void check(int ok, const char *what, const char *v)
{
    if (!ok) {
        fprintf(stderr, "fuzz_query: %s (\"%s\")\n", what, v);
        abort();
    }
}

static int ref_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* strtoll(v, &end, 10) re-done by hand: returns the value, *used the bytes consumed (0 when
 * there are no digits). */
static long long ref_strtoll(const char *v, size_t *used)
{
    size_t i = 0;
    int neg = 0;
    __int128 n = 0;
    while (ref_space(v[i]))
        i++;
    if (v[i] == '+' || v[i] == '-')
        neg = v[i++] == '-';
    if (v[i] < '0' || v[i] > '9') {
        *used = 0;
        return 0;
    }
    while (v[i] >= '0' && v[i] <= '9') {
        if (n <= (__int128)LLONG_MAX + 1)
            n = n * 10 + (v[i] - '0');
        i++;
    }
    *used = i;
    if (neg)
        return n > (__int128)LLONG_MAX + 1 ? LLONG_MIN : (long long)-n;
    return n > LLONG_MAX ? LLONG_MAX : (long long)n;
}

static fh_err ref_int(const char *v, long long min, long long max, long long *out)
{
    size_t used;
    long long n = ref_strtoll(v, &used);
    if (!used || v[used] || (v[0] == '0' && v[1]))
        return FH_ERR_PARSE;
    if (n < min || n > max)
        return FH_ERR_INVAL;
    *out = n;
    return FH_OK;
}

static fh_err ref_duration(const char *v, long long min, long long max, long long *out)
{
    size_t used;
    long long n = ref_strtoll(v, &used), mul = 1;
    const char *rest = v + used;
    if (used && rest[0] && !rest[1]) {
        const char *u = strchr("smhd", rest[0]);
        if (u) {
            static const long long muls[] = {1, 60, 3600, 86400};
            mul = muls[u - "smhd"];
            rest++;
        }
    }
    if (!used || *rest || v[0] == '-' || v[0] == '+')
        return FH_ERR_PARSE;
    __int128 s = (__int128)n * mul;
    if (n < 0 || s > max || s < min)
        return FH_ERR_INVAL;
    *out = (long long)s;
    return FH_OK;
}

static fh_err ref_cursor(const char *v, long long *out)
{
    size_t used;
    if (v[0] != 'b' || !v[1])
        return FH_ERR_PARSE;
    long long n = ref_strtoll(v + 1, &used);
    if (!used || v[1 + used])
        return FH_ERR_PARSE;
    if (n < 1)
        return FH_ERR_INVAL;
    *out = n;
    return FH_OK;
}

static fh_err ref_id(const char *v, long long *out)
{
    size_t used;
    long long n = ref_strtoll(v, &used);
    if (!*v || !used || v[used] || v[0] == '0' || v[0] == '+')
        return FH_ERR_PARSE;
    if (n < 1)
        return FH_ERR_INVAL;
    *out = n;
    return FH_OK;
}

static void compare(const char *v, const char *what, fh_err rc, long long got, fh_err want_rc,
                    long long want, long long min, long long max)
{
    char m[128];
    snprintf(m, sizeof(m), "%s: rc %d, reference %d", what, (int)rc, (int)want_rc);
    check(rc == want_rc, m, v);
    if (rc == FH_OK) {
        check(got == want, "value differs from the reference", v);
        check(got >= min && got <= max, "value out of bounds", v);
    } else {
        check(got == UNTOUCHED, "*out written on error", v);
    }
}

static void run_int(const char *v, long long min, long long max)
{
    long long a = UNTOUCHED, b = UNTOUCHED;
    fh_err rc = fh_param_int(v, min, max, &a);
    compare(v, "int", rc, a, ref_int(v, min, max, &b), b, min, max);
}

static void run_duration(const char *v, long long min, long long max)
{
    long long a = UNTOUCHED, b = UNTOUCHED;
    fh_err rc = fh_param_duration(v, min, max, &a);
    compare(v, "duration", rc, a, ref_duration(v, min, max, &b), b, min, max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v;
    long long a = UNTOUCHED, b = UNTOUCHED;
    if (size > 4096)
        return 0;
    v = malloc(size + 1);
    check(v != NULL, "malloc", "");
    memcpy(v, data, size);
    v[size] = '\0';

    /* the bounds broker/rest.c passes */
    run_int(v, 1, 10000);
    run_int(v, 1, 1000);
    run_int(v, 1, 200);
    run_int(v, 0, 6);
    run_int(v, 1, 1LL << 62);
    run_duration(v, 1, 366LL * 86400);

    fh_err rc = fh_param_cursor(v, &a);
    compare(v, "cursor", rc, a, ref_cursor(v, &b), b, 1, LLONG_MAX);
    a = b = UNTOUCHED;
    rc = fh_param_id(v, &a);
    compare(v, "id", rc, a, ref_id(v, &b), b, 1, LLONG_MAX);

    /* a stream start time ("from": {"time": ...}, SSE from=): what parses must format back to
     * text that parses to the same instant */
    int64_t ms;
    if (fh_time_parse(v, &ms) == 0) {
        char t[64];
        int64_t back;
        fh_time_rfc3339(ms, t, sizeof(t));
        check(fh_time_parse(t, &back) == 0, "formatted time does not parse", t);
        check(back == ms, "time does not round-trip", t);
    }

    /* the Authorization header */
    const char *tok = fh_auth_bearer(v);
    if (tok)
        check(tok >= v + 7 && tok < v + strlen(v) && *tok != ' ', "bearer token", v);

    /* bounds from the input itself; the value is the rest */
    if (size >= 16) {
        long long lo, hi;
        memcpy(&lo, data, 8);
        memcpy(&hi, data + 8, 8);
        if (lo > hi) {
            long long t = lo;
            lo = hi;
            hi = t;
        }
        run_int(v + 16, lo, hi);
        if (lo < 0)
            lo = lo == LLONG_MIN ? 0 : -lo;
        if (lo <= hi)
            run_duration(v + 16, lo, hi);
    }
    free(v);
    return 0;
}
