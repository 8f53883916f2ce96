/* fh_utf8: the one UTF-8 validator (RFC 3629: no overlong forms, no UTF-16 surrogates, nothing
 * above U+10FFFF), whole or incremental, plus the small operations built on it: counting code
 * points, cutting at a character boundary and encoding a code point.
 *
 * The JSON parser, the JSON string writers, the WebSocket parser and the schema's maxLength all
 * use these, so every part of the broker agrees on what is UTF-8. Nothing here allocates. */
#ifndef FH_UTF8_H
#define FH_UTF8_H

#include <stddef.h>

/* For a byte c >= 0x80: the length (2-4) of the sequence it starts, with *lo and *hi set to the
 * range the second byte must fall in (RFC 3629 table 3-7: that range is what rules out overlongs,
 * surrogates and code points above U+10FFFF); 0 when c cannot start a sequence (a continuation
 * byte, 0xC0, 0xC1 or 0xF5 and up). Every later byte must be 0x80-0xBF. */
static inline unsigned fh_utf8_lead(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0;
        else if (c == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        else if (c == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Length (2-4) of the well-formed sequence starting at q (a byte >= 0x80) that ends by end, or 0
 * when q does not start one (bad lead byte, bad continuation, or cut short by end). Inline: the
 * JSON parser calls it for every non-ASCII character. */
static inline size_t fh_utf8_seq(const unsigned char *q, const unsigned char *end)
{
    unsigned lo, hi, k = fh_utf8_lead(q[0], &lo, &hi);
    if (!k || (size_t)(end - q) < k || q[1] < lo || q[1] > hi)
        return 0;
    for (unsigned i = 2; i < k; i++)
        if ((q[i] & 0xC0) != 0x80)
            return 0;
    return k;
}

/* 1 when the n bytes at s are well-formed UTF-8, else 0. NUL bytes are valid UTF-8. */
int fh_utf8_valid(const void *s, size_t n);

/* An incremental check, for text that arrives in pieces (WebSocket fragments): the bytes a
 * sequence still owes and the range of the next one. Zero it to start. */
typedef struct fh_utf8_state {
    unsigned char need, lo, hi;
} fh_utf8_state;

/* Advances st over s[0..n). Returns 0, or -1 at the first byte that cannot continue valid UTF-8
 * (st is then left as it was). The text so far is complete, valid UTF-8 when this returned 0
 * every time and st->need is 0. */
int fh_utf8_feed(fh_utf8_state *st, const void *s, size_t n);

/* Code points in the n bytes at s, which must be valid UTF-8 (each byte that is not a
 * continuation byte counts one). JSON Schema's minLength and maxLength count these. */
size_t fh_utf8_count(const char *s, size_t n);

/* The largest length <= max at which s (n bytes) can be cut without splitting a UTF-8
 * sequence; n when n <= max. */
size_t fh_utf8_cut(const char *s, size_t n, size_t max);

/* Writes code point cp (at most 0x10FFFF; surrogates are the caller's to refuse) as UTF-8 into
 * out, which has room for 4 bytes. Returns the bytes written (1-4). */
size_t fh_utf8_put(unsigned char *out, unsigned cp);

#endif
