/* fh_util: small helpers shared by every program: hex and percent decoding, time, random ids,
 * string buffers. */
#ifndef FH_UTIL_H
#define FH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "fh_utf8.h" /* fh_buf_json_str writes UTF-8; callers cut and check it with fh_utf8 */

/* The value of one hex digit (0-9, a-f, A-F), or -1. */
static inline int fh_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits at p (a JSON \u escape's) into *out. Returns 0, or -1 when one is not a
 * hex digit. */
static inline int fh_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = fh_hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

/* Percent-decodes s[0..n) into out (room for n + 1 bytes; out may be s) as a URI path is: each
 * "%HH" becomes its byte (so "%00" gives a NUL byte), anything else, a "%" without two hex digits
 * included, stays as it is; with plus, '+' becomes a space too (form encoding). Writes a NUL
 * after the result and returns its length (NUL bytes counted). */
size_t fh_pct_decode(const char *s, size_t n, char *out, int plus);

/* Wall clock in milliseconds since the epoch. */
int64_t fh_now_ms(void);

/* Monotonic clock in nanoseconds, for measuring durations. */
uint64_t fh_mono_ns(void);

/* Gives the calling thread (only it) scheduling niceness nice; a no-op returning 0 when it has
 * it already. Returns -1 with errno set when the kernel refuses (below 0 needs CAP_SYS_NICE). */
int fh_thread_nice(int nice);

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds ("2026-11-22T05:00:00.123Z").
 * size must be at least 25. Returns buf. */
char *fh_time_rfc3339(int64_t ms, char *buf, size_t size);

/* Parses an RFC 3339 timestamp (any offset, optional fraction) into epoch milliseconds.
 * Returns 0 on success, -1 when s is not such a timestamp. */
int fh_time_parse(const char *s, int64_t *ms_out);

/* Writes a random 128-bit id as a UUID v4 string (37 bytes with the NUL). Uses getrandom(2). */
void fh_uuid4(char out[37]);

/* Grows an array of elements of size bytes that is full: returns arr reallocated to twice *cap
 * elements (first when *cap is 0) and sets *cap, or returns NULL (arr and *cap untouched) when
 * memory is short or the size would overflow. The caller stores the result:
 *     if (n == cap && !(v = fh_grow(v, &cap, sizeof(*v), 32))) fail; */
void *fh_grow(void *arr, size_t *cap, size_t size, size_t first);

/* Growable byte buffer with a hard cap (like curl's dynbuf). */
typedef struct fh_buf {
    char *data;
    size_t len, cap, max; /* max: the hard cap; appending past it fails */
} fh_buf;

void fh_buf_init(fh_buf *b, size_t max);
/* Returns 0, or -1 when the cap would be exceeded or memory is short (b is unchanged then). */
int fh_buf_append(fh_buf *b, const void *p, size_t n);
void fh_buf_reset(fh_buf *b);
/* Appends formatted text. Returns 0, or -1 at the cap (b unchanged). */
int fh_buf_printf(fh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s (may be NULL: null) as a JSON string literal, escaped. Returns 0 or -1 at the cap
 * (b unchanged then). Whatever s holds, the literal is valid UTF-8 JSON: each byte that is not
 * part of a well-formed UTF-8 sequence (RFC 3629) becomes \ufffd. */
int fh_buf_json_str(fh_buf *b, const char *s);
/* The same for the n bytes at s, which may hold NUL bytes (written as \u0000). */
int fh_buf_json_strn(fh_buf *b, const char *s, size_t n);
void fh_buf_free(fh_buf *b);

#endif
