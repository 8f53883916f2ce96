#include "fh_cursor.h"

#include <stdio.h>
#include <stdlib.h>

size_t fh_cursor_encode(const int64_t *vec, int n, char *out, size_t size)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    int w = snprintf(out, size, "%d", n);
    if (w < 0 || (size_t)w >= size)
        goto small;
    size_t o = (size_t)w;
    for (int i = 0; i < n; i++) {
        char tmp[16];
        int t = 0;
        uint64_t v = vec[i] < 0 ? 0 : (uint64_t)vec[i];
        do {
            tmp[t++] = digits[v % 36];
            v /= 36;
        } while (v);
        if (o + 1 + (size_t)t + 1 > size) /* the dot, the digits and the NUL */
            goto small;
        out[o++] = '.';
        while (t)
            out[o++] = tmp[--t];
    }
    out[o] = '\0';
    return o;
small:
    if (size > 0)
        out[0] = '\0';
    return 0;
}

fh_err fh_cursor_decode(const char *s, int n, int64_t *vec)
{
    char *end;
    long parts = strtol(s, &end, 10);
    if (end == s || parts != n)
        return FH_ERR_PARSE;
    s = end;
    for (int i = 0; i < n; i++) {
        if (*s++ != '.')
            return FH_ERR_PARSE;
        unsigned long long v = strtoull(s, &end, 36);
        if (end == s || v > (unsigned long long)INT64_MAX)
            return FH_ERR_PARSE;
        vec[i] = (int64_t)v;
        s = end;
    }
    return *s ? FH_ERR_PARSE : FH_OK;
}
