#include "fh_jscan.h"
#include "fh_json.h"
#include "fh_utf8.h"
#include "fh_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSCAN_MAX_DEPTH 64

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p points at the opening quote; returns the pointer after the closing one, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    p++;
    while (p < end) {
        /* memchr-style scan: strings are the bulk of a record (log content) */
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return NULL;
        /* count the backslashes just before the quote: an odd number escapes it */
        const char *b = q;
        while (b > p && b[-1] == '\\')
            b--;
        if (((q - b) & 1) == 0)
            return q + 1;
        p = q + 1;
    }
    return NULL;
}

const char *fh_jscan_skip(const char *p, const char *end)
{
    int depth = 0;
    p = ws(p, end);
    if (p >= end)
        return NULL;
    do {
        if (p >= end)
            return NULL;
        char c = *p;
        if (c == '"') {
            if (!(p = skip_string(p, end)))
                return NULL;
        } else if (c == '{' || c == '[') {
            if (++depth > JSCAN_MAX_DEPTH)
                return NULL;
            p++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return NULL;
            p++;
        } else if (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (depth == 0)
                return NULL;
            p++;
        } else {
            /* a literal or a number: runs to the next delimiter */
            const char *s = p;
            while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
                   *p != '\n' && *p != '\r' && *p != ':' && *p != '"')
                p++;
            if (p == s)
                return NULL;
        }
    } while (depth > 0);
    return p;
}

int fh_jscan_str(const char *v, const char *vend, char *buf, size_t size)
{
    size_t o = 0;
    if (vend - v < 2 || *v != '"' || vend[-1] != '"' || size == 0)
        return -1;
    const char *p = v + 1, *e = vend - 1;
    while (p < e) {
        char c = *p++;
        unsigned cp;
        if (c != '\\') {
            if (o + 1 >= size)
                return -1;
            buf[o++] = c;
            continue;
        }
        int k = fh_json_escape(p - 1, e, &cp);
        if (k < 0)
            return -1;
        p += k - 1;
        unsigned char u[4];
        size_t n = fh_utf8_put(u, cp);
        if (o + n >= size)
            return -1;
        memcpy(buf + o, u, n);
        o += n;
    }
    buf[o] = '\0';
    return (int)o;
}

/* Compares the member name at [k, kend) (quotes included) with key. */
static int key_equal(const char *k, const char *kend, const char *key, size_t keylen)
{
    size_t n = (size_t)(kend - k) - 2;
    if (!memchr(k + 1, '\\', n))
        return n == keylen && memcmp(k + 1, key, keylen) == 0;
    char tmp[256];
    int len = fh_jscan_str(k, kend, tmp, sizeof(tmp));
    return len >= 0 && (size_t)len == keylen && memcmp(tmp, key, keylen) == 0;
}

int fh_jscan_member(const char *p, const char *end, const char *key, size_t keylen, const char **v,
                    const char **vend)
{
    p = ws(p, end);
    if (p >= end || *p != '{')
        return -1;
    p = ws(p + 1, end);
    if (p < end && *p == '}')
        return 0;
    for (;;) {
        if (p >= end || *p != '"')
            return -1;
        const char *k = p, *kend = skip_string(p, end);
        if (!kend)
            return -1;
        p = ws(kend, end);
        if (p >= end || *p != ':')
            return -1;
        const char *vs = ws(p + 1, end), *ve = fh_jscan_skip(vs, end);
        if (!ve)
            return -1;
        if (key_equal(k, kend, key, keylen)) {
            *v = vs;
            *vend = ve;
            return 1;
        }
        p = ws(ve, end);
        if (p >= end)
            return -1;
        if (*p == '}')
            return 0;
        if (*p != ',')
            return -1;
        p = ws(p + 1, end);
    }
}

int fh_jscan_int(const char *v, const char *vend, long long *out)
{
    char tmp[32];
    size_t n = (size_t)(vend - v);
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    char *e;
    errno = 0;
    long long x = strtoll(tmp, &e, 10);
    if (*e || errno || !(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return -1;
    *out = x;
    return 0;
}

int fh_jscan_num(const char *v, const char *vend, double *out)
{
    char tmp[64];
    size_t n = (size_t)(vend - v);
    if (n == 0 || n >= sizeof(tmp) || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')))
        return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    char *e;
    double x = strtod(tmp, &e);
    if (*e)
        return -1;
    *out = x;
    return 0;
}
