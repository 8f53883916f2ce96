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

fh_err fh_cursor_decode_grown(const char *s, const fh_cursor_layout *past, int npast, int64_t *vec)
{
    if (npast < 1)
        return FH_ERR_PARSE;
    fh_cursor_layout now = past[npast - 1], then = {-1, -1};
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < 2 || n >= now.events + now.logs)
        return FH_ERR_PARSE;
    for (int i = npast - 1; i >= 0 && then.events < 0; i--)
        if (past[i].events + past[i].logs == n)
            then = past[i];
    if (then.events < 0) {
        then.logs = now.logs;
        then.events = (int)n - now.logs;
        if (then.events < 1) {
            then.events = now.events;
            then.logs = (int)n - now.events;
        }
    }
    if (then.events < 1 || then.logs < 1 || then.events > now.events || then.logs > now.logs)
        return FH_ERR_PARSE;
    /* the cursor's entries, in its own order, at the end of vec (n < now's count) */
    int64_t *old = vec + (now.events + now.logs - n);
    if (fh_cursor_decode(s, (int)n, old))
        return FH_ERR_PARSE;
    int64_t lo[FH_CURSOR_MAX_PARTS]; /* the logs offsets, moved out of the way */
    for (int i = 0; i < then.logs; i++)
        lo[i] = old[then.events + i];
    for (int i = 0; i < then.events; i++)
        vec[i] = old[i];
    for (int i = then.events; i < now.events; i++)
        vec[i] = -1;
    for (int i = 0; i < now.logs; i++)
        vec[now.events + i] = i < then.logs ? lo[i] : -1;
    return FH_OK;
}
