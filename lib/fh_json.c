/* fh_json's parser: JSON text into nodes in a doc's arena (the arena, accessors and conversions
 * are in fh_json_doc.c; the contract in fh_json.h). */
#include "fh_json_internal.h"
#include "fh_utf8.h"
#include "fh_util.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the parser ------------------------------------------------------------------------------ */

#define DUP_LINEAR_MAX 32 /* objects with more keys check duplicates with a hash table */

typedef struct parser {
    const unsigned char *start, *p, *end;
    fh_json_doc *d;
    unsigned flags;
    unsigned depth;
    fh_err rc;
    char *errbuf;
    size_t errsize;
} parser;

static int perr(parser *P, fh_err rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int perr(parser *P, fh_err rc, const char *fmt, ...)
{
    P->rc = rc;
    if (P->errbuf && P->errsize) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(P->errbuf, P->errsize, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static size_t col(const parser *P, const unsigned char *at)
{
    return (size_t)(at - P->start) + 1;
}

static int err_mem(parser *P, fh_err rc)
{
    if (rc == FH_ERR_TOOBIG)
        return perr(P, rc, "document over the %zu-byte cap", P->d->cap);
    return perr(P, rc, "out of memory");
}

/* The error for finding *at (or the end of input) where something else was expected. */
static int err_at(parser *P, const unsigned char *at)
{
    if (at >= P->end)
        return perr(P, FH_ERR_PARSE, "unexpected end of input at column %zu", col(P, P->end));
    if (*at > 0x20 && *at < 0x7f)
        return perr(P, FH_ERR_PARSE, "unexpected character '%c' at column %zu", *at, col(P, at));
    return perr(P, FH_ERR_PARSE, "unexpected character '\\x%02x' at column %zu", *at, col(P, at));
}

static void *palloc_slow(parser *P, size_t n, size_t align)
{
    fh_err rc = FH_OK;
    void *m = fh_json_arena_alloc(P->d, n, align, &rc);
    if (!m)
        err_mem(P, rc);
    return m;
}

/* The bump in the current block, inline; anything else (a new block, the cap) out of line. */
static inline void *palloc(parser *P, size_t n, size_t align)
{
    void *m;
    if (P->d->cur && (m = fh_json_block_take(P->d->cur, n, align)))
        return m;
    return palloc_slow(P, n, align);
}

static int stack_grow(parser *P)
{
    fh_json_doc *d = P->d;
    size_t old = d->stack_cap * sizeof(fh_jv);
    size_t ncap = d->stack_cap ? 2 * d->stack_cap : fh_json_stack_first(d);
    size_t avail = fh_json_room(d) + old; /* what the stack may grow to */
    if (ncap > avail / sizeof(fh_jv))
        ncap = avail / sizeof(fh_jv);
    if (ncap <= d->stack_cap)
        return err_mem(P, FH_ERR_TOOBIG);
    fh_jv *ns = realloc(d->stack, ncap * sizeof(fh_jv));
    if (!ns)
        return err_mem(P, FH_ERR_NOMEM);
    d->stack = ns;
    d->held = d->held - old + ncap * sizeof(fh_jv);
    d->stack_cap = ncap;
    return 0;
}

static inline fh_jv *push(parser *P, unsigned type)
{
    fh_json_doc *d = P->d;
    if (d->stack_len == d->stack_cap && stack_grow(P))
        return NULL;
    fh_jv *v = &d->stack[d->stack_len++];
    v->type = type;
    v->n = 0;
    return v;
}

static inline void skip_ws(parser *P)
{
    const unsigned char *p = P->p, *end = P->end;
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    P->p = p;
}

static int parse_value(parser *P);

/* After an item or member: skips whitespace and then a ',' (returns 1: another follows) or the
 * container's closing byte close (returns 0); anything else fails (-1). */
static inline int next_or_close(parser *P, unsigned char close)
{
    skip_ws(P);
    if (P->p < P->end && (*P->p == ',' || *P->p == close))
        return *P->p++ == ',';
    return err_at(P, P->p);
}

/* Moves the children above base on the scratch stack into one arena array and pushes their
 * container in their place. */
static int close_container(parser *P, size_t base, unsigned type)
{
    fh_json_doc *d = P->d;
    size_t n = d->stack_len - base;
    fh_jv *items = NULL;
    if (n) {
        if (!(items = palloc(P, n * sizeof(fh_jv), _Alignof(fh_jv))))
            return -1;
        memcpy(items, d->stack + base, n * sizeof(fh_jv));
    }
    d->stack_len = base;
    fh_jv *v = push(P, type);
    if (!v)
        return -1;
    v->n = type == FH_JV_OBJECT ? n / 2 : n;
    v->u.items = items;
    return 0;
}

static int parse_array(parser *P)
{
    if (++P->depth > FH_JSON_MAX_DEPTH)
        return perr(P, FH_ERR_PARSE, "nesting deeper than %d at column %zu", FH_JSON_MAX_DEPTH,
                    col(P, P->p));
    size_t base = P->d->stack_len;
    P->p++;
    skip_ws(P);
    if (P->p < P->end && *P->p == ']') {
        P->p++;
    } else {
        for (;;) {
            if (parse_value(P))
                return -1;
            int more = next_or_close(P, ']');
            if (more < 0)
                return -1;
            if (!more)
                break;
        }
    }
    P->depth--;
    return close_container(P, base, FH_JV_ARRAY);
}

static uint64_t str_hash(const fh_jv *k)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < k->n; i++)
        h = (h ^ (unsigned char)k->u.s[i]) * 0x100000001b3ULL;
    return h;
}

/* Writes up to size-1 bytes of s for an error message: whole UTF-8 characters, control
 * characters, quotes and backslashes shown as '?', "..." when cut. */
static void show_key(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (k > n - i)
            k = n - i;
        if (o + k + 4 > size) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            out[o++] = '?';
        } else {
            memcpy(out + o, s + i, k);
            o += k;
        }
        i += k;
    }
    out[o] = '\0';
}

static int dup_error(parser *P, const fh_jv *key, const unsigned char *at)
{
    char shown[72];
    show_key(key->u.s, key->n, shown, sizeof(shown));
    return perr(P, FH_ERR_PARSE, "duplicate key \"%s\" at column %zu", shown, col(P, at));
}

static int keys_grow(parser *P)
{
    fh_json_doc *d = P->d;
    size_t ncap = d->keys_cap ? 2 * d->keys_cap : 64;
    size_t old = d->keys_cap * sizeof(fh_json_keyslot);
    if (ncap > (fh_json_room(d) + old) / sizeof(fh_json_keyslot))
        return err_mem(P, FH_ERR_TOOBIG);
    fh_json_keyslot *nk = calloc(ncap, sizeof(fh_json_keyslot));
    if (!nk)
        return err_mem(P, FH_ERR_NOMEM);
    for (size_t i = 0; i < d->keys_cap; i++) {
        if (!d->keys[i].serial)
            continue;
        size_t j = (size_t)d->keys[i].hash & (ncap - 1);
        while (nk[j].serial)
            j = (j + 1) & (ncap - 1);
        nk[j] = d->keys[i];
    }
    free(d->keys);
    d->keys = nk;
    d->held = d->held - old + ncap * sizeof(fh_json_keyslot);
    d->keys_cap = ncap;
    return 0;
}

/* Adds the key at scratch index idx to the table under serial. Returns 0, 1 when the object
 * already has that key, -1 on error. Entries of closed objects stay behind but never match: each
 * object has its own serial. */
static int keys_insert(parser *P, uint64_t serial, size_t idx)
{
    fh_json_doc *d = P->d;
    if (2 * (d->keys_used + 1) > d->keys_cap && keys_grow(P))
        return -1;
    const fh_jv *k = &d->stack[idx];
    uint64_t h = str_hash(k);
    size_t j = (size_t)h & (d->keys_cap - 1);
    while (d->keys[j].serial) {
        const fh_json_keyslot *e = &d->keys[j];
        if (e->serial == serial && e->hash == h && fh_json_same_str(&d->stack[e->idx], k))
            return 1;
        j = (j + 1) & (d->keys_cap - 1);
    }
    d->keys[j].serial = serial;
    d->keys[j].hash = h;
    d->keys[j].idx = idx;
    d->keys_used++;
    return 0;
}

/* One of 64 bits summing up a key (length, first, middle and last byte). */
static inline uint64_t key_bit(const fh_jv *k)
{
    const unsigned char *s = (const unsigned char *)k->u.s;
    size_t n = k->n;
    unsigned h = n ? (unsigned)n * 0x9E37u + s[0] * 7u + s[n / 2] * 31u + s[n - 1] * 131u : 0;
    return (uint64_t)1 << ((h ^ h >> 6) & 63);
}

/* Checks the key just pushed against the earlier keys of its object (which start at base).
 * Small objects scan, and only when the key's bit is already in *seen (the bits of the earlier
 * keys); from DUP_LINEAR_MAX keys on the object moves into the hash table (*serial becomes
 * non-zero). */
static int check_dup(parser *P, size_t base, uint64_t *seen, uint64_t *serial,
                     const unsigned char *at)
{
    fh_json_doc *d = P->d;
    size_t ki = d->stack_len - 1;
    if (!*serial) {
        if ((ki - base) / 2 < DUP_LINEAR_MAX) {
            uint64_t bit = key_bit(&d->stack[ki]);
            int maybe = (*seen & bit) != 0;
            *seen |= bit;
            if (!maybe)
                return 0;
            for (size_t i = base; i < ki; i += 2)
                if (fh_json_same_str(&d->stack[i], &d->stack[ki]))
                    return dup_error(P, &d->stack[ki], at);
            return 0;
        }
        *serial = ++d->key_serial;
        for (size_t i = base; i < ki; i += 2)
            if (keys_insert(P, *serial, i) < 0)
                return -1;
    }
    int r = keys_insert(P, *serial, ki);
    if (r > 0)
        return dup_error(P, &d->stack[ki], at);
    return r;
}

static int parse_string(parser *P);

static int parse_object(parser *P)
{
    if (++P->depth > FH_JSON_MAX_DEPTH)
        return perr(P, FH_ERR_PARSE, "nesting deeper than %d at column %zu", FH_JSON_MAX_DEPTH,
                    col(P, P->p));
    size_t base = P->d->stack_len;
    uint64_t serial = 0, seen = 0;
    P->p++;
    skip_ws(P);
    if (P->p < P->end && *P->p == '}') {
        P->p++;
    } else {
        for (;;) {
            skip_ws(P);
            if (P->p >= P->end || *P->p != '"')
                return err_at(P, P->p);
            const unsigned char *at = P->p;
            if (parse_string(P))
                return -1;
            if (!(P->flags & FH_JSON_ALLOW_DUPLICATES) && check_dup(P, base, &seen, &serial, at))
                return -1;
            skip_ws(P);
            if (P->p >= P->end || *P->p != ':')
                return err_at(P, P->p);
            P->p++;
            if (parse_value(P))
                return -1;
            int more = next_or_close(P, '}');
            if (more < 0)
                return -1;
            if (!more)
                break;
        }
    }
    P->depth--;
    return close_container(P, base, FH_JV_OBJECT);
}

/* Flags (bit 7 of each byte) the bytes of x that are a quote, a backslash, below 0x20 or above
 * 0x7f. The lowest flag is always exact: the has-zero-byte trick only errs in bytes above a true
 * hit, where a borrow spills over. */
static inline uint64_t str_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x) | x) & high;
}

static int push_string(parser *P, const char *s, size_t n)
{
    fh_jv *v = push(P, FH_JV_STRING);
    if (!v)
        return -1;
    v->n = n;
    v->u.s = s;
    return 0;
}

int fh_json_escape(const char *p, const char *end, unsigned *cp)
{
    unsigned lo;
    if (end - p < 2 || p[0] != '\\')
        return FH_JSON_ESC_BAD;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        *cp = (unsigned char)p[1];
        return 2;
    case 'b':
        *cp = '\b';
        return 2;
    case 'f':
        *cp = '\f';
        return 2;
    case 'n':
        *cp = '\n';
        return 2;
    case 'r':
        *cp = '\r';
        return 2;
    case 't':
        *cp = '\t';
        return 2;
    case 'u':
        break;
    default:
        return FH_JSON_ESC_BAD;
    }
    if (end - p < 6 || fh_hex4(p + 2, cp))
        return FH_JSON_ESC_BAD_U;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF)
        return FH_JSON_ESC_LONE_SURROGATE;
    if (*cp < 0xD800 || *cp > 0xDBFF)
        return 6;
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || fh_hex4(p + 8, &lo) || lo < 0xDC00 ||
        lo > 0xDFFF)
        return FH_JSON_ESC_LONE_SURROGATE;
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    return 12;
}

/* The slow path of parse_string, from the first backslash at q (content starts at s). Finds the
 * closing quote first, so the decoded copy (never longer than its source) gets one allocation,
 * then decodes and validates everything after q. */
static int parse_string_escaped(parser *P, const unsigned char *s, const unsigned char *q)
{
    const unsigned char *end = P->end, *r = q;
    while (r < end && *r != '"') {
        if (*r != '\\')
            r++;
        else if (end - r < 2)
            r = end;
        else
            r += 2;
    }
    size_t raw = (size_t)(r - s), o = (size_t)(q - s);
    unsigned char *mem = palloc(P, raw + 1, 1);
    if (!mem)
        return -1;
    memcpy(mem, s, o);
    while (q < r) {
        unsigned c = *q;
        if (c == '\\') {
            unsigned cp;
            if (r - q < 2)
                return err_at(P, end); /* a backslash just before the end of input */
            int k = fh_json_escape((const char *)q, (const char *)r, &cp);
            if (k == FH_JSON_ESC_BAD_U)
                return perr(P, FH_ERR_PARSE, "invalid \\u escape at column %zu", col(P, q));
            if (k == FH_JSON_ESC_LONE_SURROGATE)
                return perr(P, FH_ERR_PARSE, "lone surrogate \\u%04X at column %zu", cp, col(P, q));
            if (k < 0)
                return perr(P, FH_ERR_PARSE, "invalid escape at column %zu", col(P, q));
            if (cp == 0 && !(P->flags & FH_JSON_ALLOW_NUL))
                return perr(P, FH_ERR_PARSE, "\\u0000 is not allowed at column %zu", col(P, q));
            o += fh_utf8_put(mem + o, cp);
            q += k;
        } else if (c < 0x20) {
            return perr(P, FH_ERR_PARSE, "control character in string at column %zu", col(P, q));
        } else if (c < 0x80) {
            mem[o++] = (unsigned char)c;
            q++;
        } else {
            size_t k = fh_utf8_seq(q, r);
            if (!k)
                return perr(P, FH_ERR_PARSE, "invalid UTF-8 at column %zu", col(P, q));
            memcpy(mem + o, q, k);
            o += k;
            q += k;
        }
    }
    if (r == end)
        return err_at(P, end);
    mem[o] = '\0';
    fh_json_arena_trim(P->d, mem, raw + 1, o + 1);
    P->p = r + 1;
    return push_string(P, (const char *)mem, o);
}

/* At an opening quote: pushes the decoded string. The common case (no escapes) validates in
 * place, 8 bytes at a time while they are plain ASCII, and copies once. */
static int parse_string(parser *P)
{
    const unsigned char *s = P->p + 1, *q = s, *end = P->end;
    for (;;) {
        while (end - q >= 8) {
            uint64_t x, hit;
            memcpy(&x, q, 8);
            if ((hit = str_special(x))) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                q += __builtin_ctzll(hit) / 8; /* the first special byte */
#endif
                break;
            }
            q += 8;
        }
        if (q >= end)
            return err_at(P, end);
        unsigned c = *q;
        if (c == '"')
            break;
        if (c == '\\')
            return parse_string_escaped(P, s, q);
        if (c < 0x20)
            return perr(P, FH_ERR_PARSE, "control character in string at column %zu", col(P, q));
        if (c < 0x80) {
            q++;
            continue;
        }
        size_t k = fh_utf8_seq(q, end);
        if (!k)
            return perr(P, FH_ERR_PARSE, "invalid UTF-8 at column %zu", col(P, q));
        q += k;
    }
    size_t n = (size_t)(q - s);
    char *mem = palloc(P, n + 1, 1);
    if (!mem)
        return -1;
    memcpy(mem, s, n);
    mem[n] = '\0';
    P->p = q + 1;
    return push_string(P, mem, n);
}

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* strtod in the "C" locale whatever setlocale() did, so '.' is always the decimal point. */
static double strtod_c(const char *s, char **end)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? strtod_l(s, end, c_locale) : strtod(s, end);
}

static inline int is_digit(unsigned c)
{
    return c - '0' < 10u;
}

static int parse_number(parser *P)
{
    const unsigned char *s = P->p, *q = s, *end = P->end, *digits;
    int neg = 0, real = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    digits = q;
    if (q < end && *q == '0')
        q++;
    else if (q < end && *q >= '1' && *q <= '9')
        while (q < end && is_digit(*q))
            q++;
    else
        return err_at(P, q);
    size_t ndig = (size_t)(q - digits);
    if (q < end && *q == '.') {
        real = 1;
        if (++q >= end || !is_digit(*q))
            return err_at(P, q);
        while (q < end && is_digit(*q))
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        real = 1;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q >= end || !is_digit(*q))
            return err_at(P, q);
        while (q < end && is_digit(*q))
            q++;
    }
    P->p = q;
    if (!real && ndig <= 19) { /* 19 digits always fit a uint64_t */
        uint64_t u = 0;
        for (size_t i = 0; i < ndig; i++)
            u = u * 10 + (uint64_t)(digits[i] - '0');
        if (u <= (uint64_t)INT64_MAX + (uint64_t)neg) {
            fh_jv *v = push(P, FH_JV_INT);
            if (!v)
                return -1;
            v->u.i = !neg ? (int64_t)u : u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
            return 0;
        }
    }
    /* a real, or an integer too big for int64_t */
    size_t n = (size_t)(q - s);
    char tmp[64], *buf = tmp, *e;
    if (n >= sizeof(tmp) && !(buf = palloc(P, n + 1, 1)))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    double d = strtod_c(buf, &e);
    int overflow = errno == ERANGE && fabs(d) > 1.0;
    int complete = e == buf + n;
    if (buf != tmp)
        fh_json_arena_trim(P->d, buf, n + 1, 0);
    if (!complete)
        return perr(P, FH_ERR_PARSE, "invalid number at column %zu", col(P, s));
    if (overflow || !isfinite(d))
        return perr(P, FH_ERR_PARSE, "number out of range at column %zu", col(P, s));
    fh_jv *v = push(P, FH_JV_REAL);
    if (!v)
        return -1;
    v->u.d = d;
    return 0;
}

static int parse_literal(parser *P, const char *lit, size_t n, unsigned type)
{
    size_t avail = (size_t)(P->end - P->p);
    for (size_t i = 0; i < n; i++)
        if (i >= avail || P->p[i] != (unsigned char)lit[i])
            return err_at(P, i >= avail ? P->end : P->p + i);
    P->p += n;
    return push(P, type) ? 0 : -1;
}

static int parse_value(parser *P)
{
    skip_ws(P);
    if (P->p >= P->end)
        return err_at(P, P->p);
    switch (*P->p) {
    case '{':
        return parse_object(P);
    case '[':
        return parse_array(P);
    case '"':
        return parse_string(P);
    case 't':
        return parse_literal(P, "true", 4, FH_JV_TRUE);
    case 'f':
        return parse_literal(P, "false", 5, FH_JV_FALSE);
    case 'n':
        return parse_literal(P, "null", 4, FH_JV_NULL);
    default:
        if (*P->p == '-' || is_digit(*P->p))
            return parse_number(P);
        return err_at(P, P->p);
    }
}

fh_err fh_json_parse(fh_json_doc *doc, const char *buf, size_t len, unsigned flags,
                     const fh_jv **root, char *errbuf, size_t errsize)
{
    if (root)
        *root = NULL;
    if (!doc || !root || (!buf && len))
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "invalid argument");
    if (!buf)
        buf = "";
    if (errbuf && errsize)
        errbuf[0] = '\0';
    parser P = {(const unsigned char *)buf,
                (const unsigned char *)buf,
                (const unsigned char *)buf + len,
                doc,
                flags,
                0,
                FH_OK,
                errbuf,
                errsize};
    doc->stack_len = 0;
    if (doc->keys_used) {
        memset(doc->keys, 0, doc->keys_cap * sizeof(fh_json_keyslot));
        doc->keys_used = 0;
    }
    /* the scratch stack and first block up front, in one order, so every parse meets the cap
     * the same way whether the doc is fresh or reused */
    if (!doc->stack && stack_grow(&P))
        return P.rc;
    if (!doc->first) {
        fh_err rc = FH_OK;
        if (!fh_json_block_add(doc, 0, &rc)) {
            err_mem(&P, rc);
            return P.rc;
        }
    }
    if (parse_value(&P) == 0) {
        skip_ws(&P);
        if (P.p < P.end) {
            err_at(&P, P.p);
        } else {
            fh_jv *r = palloc(&P, sizeof(fh_jv), _Alignof(fh_jv));
            if (r) {
                *r = doc->stack[0];
                *root = r;
            }
        }
    }
    doc->stack_len = 0;
    return P.rc;
}
