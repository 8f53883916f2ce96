#include "fh_cursor.h"

#include <stdio.h>
#include <stdlib.h>

size_t fh_cursor_encode(const int64_t *vec, int n, char *out, size_t size)
{
    /* by hand, not printf: the stream makes one per event, and per delivery on a replay */
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char tmp[16];
    int t = 0;
    unsigned un = n < 0 ? 0 : (unsigned)n;
    do {
        tmp[t++] = (char)('0' + un % 10);
        un /= 10;
    } while (un);
    if ((size_t)t >= size)
        goto small;
    size_t o = 0;
    while (t)
        out[o++] = tmp[--t];
    for (int i = 0; i < n; i++) {
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

static int layout_total(const fh_cursor_layout *l)
{
    int n = 0;
    for (int t = 0; t < l->ntopics; t++)
        n += l->parts[t];
    return n;
}

fh_err fh_cursor_decode_grown(const char *s, const fh_cursor_layout *past, int npast, int64_t *vec)
{
    if (npast < 1 || past[npast - 1].ntopics < 1 || past[npast - 1].ntopics > FH_CURSOR_MAX_TOPICS)
        return FH_ERR_PARSE;
    fh_cursor_layout now = past[npast - 1], then = {0, {0}};
    int total = layout_total(&now);
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < now.ntopics || n >= total)
        return FH_ERR_PARSE;
    for (int i = npast - 1; i >= 0 && !then.ntopics; i--)
        if (past[i].ntopics == now.ntopics && layout_total(&past[i]) == n)
            then = past[i];
    for (int t = 0; t < now.ntopics && !then.ntopics; t++)
        if (now.parts[t] - (total - n) >= 1) {
            then = now; /* partitions added to topic t only */
            then.parts[t] -= total - (int)n;
        }
    for (int t = 0; t < now.ntopics; t++)
        if (then.parts[t] < 1 || then.parts[t] > now.parts[t])
            return FH_ERR_PARSE;
    /* the cursor's entries, in its own order, in a copy; then each topic's at its place now */
    int64_t *old = malloc((size_t)n * sizeof(*old));
    if (!old)
        return FH_ERR_NOMEM;
    fh_err rc = fh_cursor_decode(s, (int)n, old);
    for (int t = 0, from = 0, to = 0; rc == FH_OK && t < now.ntopics; t++) {
        for (int i = 0; i < now.parts[t]; i++)
            vec[to + i] = i < then.parts[t] ? old[from + i] : -1;
        from += then.parts[t];
        to += now.parts[t];
    }
    free(old);
    return rc;
}
