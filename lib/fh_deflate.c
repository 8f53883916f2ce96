#include "fh_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "fh_ws.h"

/* ---- negotiation --------------------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 7230 tchar */
static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Reads a token at *p (after optional spaces) into buf; returns its length, 0 when none or too
 * long for buf. */
static size_t read_token(const char **p, char *buf, size_t size)
{
    const char *s = *p;
    size_t n = 0;
    while (is_space(*s))
        s++;
    while (is_tchar(s[n]))
        n++;
    if (n == 0 || n >= size)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *p = s + n;
    while (is_space(**p))
        (*p)++;
    return n;
}

/* Reads a parameter value, a token or a quoted string (RFC 7692 7.1: the unquoted value must be
 * a token too). Returns its length, 0 on a malformed value. */
static size_t read_value(const char **p, char *buf, size_t size)
{
    const char *s = *p;
    while (is_space(*s))
        s++;
    if (*s != '"') {
        *p = s;
        return read_token(p, buf, size);
    }
    size_t n = 0;
    for (s++; *s && *s != '"'; s++) {
        if (*s == '\\' && s[1])
            s++;
        if (n + 1 >= size)
            return 0;
        buf[n++] = *s;
    }
    if (*s != '"' || n == 0)
        return 0;
    buf[n] = '\0';
    *p = s + 1;
    while (is_space(**p))
        (*p)++;
    return n;
}

/* 8-15 written plainly ("08" is not a window size), else -1. */
static int window_bits(const char *v)
{
    if (!v[0] || (v[0] == '0') || strlen(v) > 2)
        return -1;
    int n = 0;
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        n = n * 10 + (*c - '0');
    }
    return n >= 8 && n <= 15 ? n : -1;
}

/* Parses one extension element at *p up to the next top-level comma (or the end), leaving *p
 * after it. Returns 1 when it is a permessage-deflate offer the broker honours (*named_15: it
 * named server_max_window_bits=15), 0 when it is another extension or one to decline, -1 when
 * the header is malformed from here on (stop reading it). */
static int read_offer(const char **p, int *named_15)
{
    char name[64], param[64], value[64];
    int seen[4] = {0, 0, 0, 0}, ok = 1;
    *named_15 = 0;
    if (!read_token(p, name, sizeof(name)))
        return -1;
    if (strcasecmp(name, "permessage-deflate") != 0)
        ok = 0;
    while (**p == ';') {
        (*p)++;
        if (!read_token(p, param, sizeof(param)))
            return -1;
        int has_value = **p == '=';
        value[0] = '\0';
        if (has_value) {
            (*p)++;
            if (!read_value(p, value, sizeof(value)))
                return -1;
        }
        if (!ok)
            continue; /* another extension's parameters, or an offer already declined */
        static const char *const known[] = {"server_no_context_takeover",
                                            "client_no_context_takeover", "server_max_window_bits",
                                            "client_max_window_bits"};
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strcasecmp(param, known[i]) == 0)
                k = i;
        if (k < 0 || seen[k]++) {
            ok = 0; /* unknown or repeated: RFC 7692 5.1 declines the offer */
            continue;
        }
        if ((k == 0 || k == 1) && has_value)
            ok = 0;
        else if (k == 2 && (!has_value || window_bits(value) < 0))
            ok = 0;
        else if (k == 2 && window_bits(value) != 15)
            ok = 0; /* a smaller server window: the shared bytes use 2^15 */
        else if (k == 2)
            *named_15 = 1;
        else if (k == 3 && has_value && window_bits(value) < 0)
            ok = 0;
    }
    if (**p == ',')
        (*p)++;
    else if (**p)
        return -1;
    return ok;
}

int fh_deflate_negotiate(const char *offers, char *out, size_t size)
{
    const char *p = offers;
    if (size)
        out[0] = '\0';
    if (!p)
        return 0;
    while (*p) {
        int named_15;
        while (is_space(*p) || *p == ',')
            p++;
        if (!*p)
            break;
        int r = read_offer(&p, &named_15);
        if (r < 0)
            return 0;
        if (r == 1) {
            int n = snprintf(out, size, "%s%s", FH_DEFLATE_RESPONSE,
                             named_15 ? "; server_max_window_bits=15" : "");
            if (n < 0 || (size_t)n >= size) {
                if (size)
                    out[0] = '\0';
                return 0;
            }
            return 1;
        }
    }
    return 0;
}

/* ---- framing ------------------------------------------------------------------------------- */

size_t fh_deflate_stored_header(unsigned char out[5], size_t len)
{
    out[0] = 0x00; /* BFINAL 0, BTYPE 00, then the padding to the byte boundary */
    out[1] = (unsigned char)(len & 0xFF);
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)(~len & 0xFF);
    out[4] = (unsigned char)((~len >> 8) & 0xFF);
    return 5;
}

size_t fh_deflate_stored(unsigned char *out, const void *in, size_t len)
{
    const unsigned char *p = in;
    size_t o = 0;
    while (len) {
        size_t n = len > FH_DEFLATE_STORED_MAX ? FH_DEFLATE_STORED_MAX : len;
        o += fh_deflate_stored_header(out + o, n);
        memcpy(out + o, p, n);
        o += n;
        p += n;
        len -= n;
    }
    out[o++] = 0x00; /* an empty stored block's header: its 00 00 ff ff is the receiver's */
    return o;
}

size_t fh_deflate_frame_header(unsigned char out[10], uint64_t payload_len)
{
    size_t n = fh_ws_frame_header(out, FH_WS_OP_TEXT, payload_len);
    out[0] |= 0x40; /* RSV1: per-message compressed */
    return n;
}

/* ---- compressing --------------------------------------------------------------------------- */

struct fh_deflater {
    z_stream z;
};

fh_deflater *fh_deflater_new(int level)
{
    if (level < 1 || level > 9)
        return NULL;
    fh_deflater *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    if (deflateInit2(&d->z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(d);
        return NULL;
    }
    return d;
}

void fh_deflater_free(fh_deflater *d)
{
    if (!d)
        return;
    deflateEnd(&d->z);
    free(d);
}

fh_err fh_deflate_message(fh_deflater *d, const void *in, size_t len, unsigned char **out,
                          size_t *outlen)
{
    /* deflateBound covers the blocks; a sync flush adds at most 5 bytes more (an empty stored
     * block after up to 7 bits of padding), and 6 more keep the loop below from ever running
     * out of room on the last call */
    size_t cap = (size_t)deflateBound(&d->z, (uLong)len) + 16;
    unsigned char *buf;
    *out = NULL;
    *outlen = 0;
    if (len > (size_t)UINT32_MAX || !(buf = malloc(cap)))
        return FH_ERR_NOMEM;
    if (deflateReset(&d->z) != Z_OK) { /* no context takeover: every message from scratch */
        free(buf);
        return FH_ERR_IO;
    }
    d->z.next_in = (Bytef *)(uintptr_t)in;
    d->z.avail_in = (uInt)len;
    d->z.next_out = buf;
    d->z.avail_out = (uInt)cap;
    int rc = deflate(&d->z, Z_SYNC_FLUSH);
    size_t n = cap - d->z.avail_out;
    /* everything taken, and the flush's empty stored block (00 00 ff ff) at the end */
    if (rc != Z_OK || d->z.avail_in != 0 || d->z.avail_out == 0 || n < 4 ||
        memcmp(buf + n - 4, "\x00\x00\xff\xff", 4) != 0) {
        free(buf);
        return FH_ERR_IO;
    }
    *out = buf;
    *outlen = n - 4;
    return FH_OK;
}

struct fh_deflate_cache {
    unsigned char *data[FH_DEFLATE_VARIANTS];
    size_t len[FH_DEFLATE_VARIANTS];
    unsigned char compressed[FH_DEFLATE_VARIANTS];
};

#define MALLOC_OVERHEAD 16

const unsigned char *fh_deflate_cached(fh_deflate_cache **cache, fh_deflater *d, unsigned v,
                                       const void *in, size_t len, size_t *zlen, int *compressed,
                                       size_t *added)
{
    fh_deflate_cache *c = *cache;
    *added = 0;
    *zlen = 0;
    *compressed = 0;
    if (v >= FH_DEFLATE_VARIANTS)
        return NULL;
    if (!c) {
        if (!(c = calloc(1, sizeof(*c))))
            return NULL;
        *cache = c;
        *added += sizeof(*c) + MALLOC_OVERHEAD;
    }
    if (!c->data[v]) {
        unsigned char *z = NULL;
        size_t n = 0;
        if (d && len >= FH_DEFLATE_MIN_BYTES && fh_deflate_message(d, in, len, &z, &n) == FH_OK &&
            n + 8 <= len) {
            /* give back what deflateBound reserved beyond the result */
            unsigned char *shrunk = realloc(z, n ? n : 1);
            c->data[v] = shrunk ? shrunk : z;
            c->compressed[v] = 1;
        } else {
            free(z);
            n = FH_DEFLATE_STORED_SIZE(len);
            if (!(c->data[v] = malloc(n)))
                return NULL;
            fh_deflate_stored(c->data[v], in, len);
        }
        c->len[v] = n;
        *added += n + MALLOC_OVERHEAD;
    }
    *zlen = c->len[v];
    *compressed = c->compressed[v];
    return c->data[v];
}

void fh_deflate_cache_free(fh_deflate_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < FH_DEFLATE_VARIANTS; i++)
        free(c->data[i]);
    free(c);
}

/* ---- decompressing ------------------------------------------------------------------------- */

struct fh_inflater {
    z_stream z;
    unsigned char *buf;
    size_t cap;
};

fh_inflater *fh_inflater_new(void)
{
    fh_inflater *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    if (inflateInit2(&f->z, -15) != Z_OK) {
        free(f);
        return NULL;
    }
    return f;
}

void fh_inflater_free(fh_inflater *f)
{
    if (!f)
        return;
    inflateEnd(&f->z);
    free(f->buf);
    free(f);
}

/* Grows the output buffer to at least need bytes (at most limit). Returns 0 or -1. */
static int inflater_grow(fh_inflater *f, size_t need, size_t limit)
{
    size_t cap = f->cap ? f->cap : 1024;
    if (need <= f->cap)
        return 0;
    while (cap < need)
        cap = cap > limit / 2 ? limit : cap * 2;
    if (cap > limit)
        cap = limit;
    unsigned char *b = realloc(f->buf, cap);
    if (!b)
        return -1;
    f->buf = b;
    f->cap = cap;
    return 0;
}

fh_err fh_inflate_message(fh_inflater *f, const void *in, size_t len, size_t max_out,
                          const unsigned char **out, size_t *outlen, char *errbuf, size_t errsize)
{
    static const unsigned char trailer[4] = {0x00, 0x00, 0xff, 0xff};
    size_t have = 0, limit = max_out + 1; /* + 1: room for the NUL, and to notice one byte over */
    int ended = 0;
    *out = NULL;
    *outlen = 0;
    if (len > UINT32_MAX || max_out > SIZE_MAX / 2)
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "compressed message too big");
    if (inflateReset(&f->z) != Z_OK)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "inflateReset failed");
    for (int part = 0; part < 2; part++) {
        f->z.next_in = part ? (Bytef *)(uintptr_t)trailer : (Bytef *)(uintptr_t)in;
        f->z.avail_in = part ? 4 : (uInt)len;
        while (f->z.avail_in) {
            if (have == f->cap) {
                if (have >= limit)
                    return fh_errf(errbuf, errsize, FH_ERR_TOOBIG,
                                   "inflated message over %zu bytes", max_out);
                if (inflater_grow(f, have + 1, limit))
                    return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory inflating");
            }
            f->z.next_out = f->buf + have;
            f->z.avail_out = (uInt)(f->cap - have);
            int rc = inflate(&f->z, Z_SYNC_FLUSH);
            have = f->cap - f->z.avail_out;
            if (have > max_out)
                return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "inflated message over %zu bytes",
                               max_out);
            if (rc == Z_STREAM_END) {
                /* a final block: nothing but our trailer may follow it */
                if (part == 0 && f->z.avail_in)
                    return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                                   "compressed message: data after the final block");
                ended = 1;
                part = 1;
                f->z.avail_in = 0;
                break;
            }
            if (rc == Z_BUF_ERROR && f->z.avail_out)
                break; /* no progress possible with input left: cannot happen; do not spin */
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                return fh_errf(errbuf, errsize, FH_ERR_PARSE, "compressed message: %s",
                               f->z.msg ? f->z.msg : "invalid DEFLATE data");
        }
        if (f->z.avail_in)
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "compressed message: truncated");
    }
    /* the trailer is an empty stored block: after it inflate waits for a block header (bit 128
     * of data_type), unless the message stopped inside a block */
    if (!ended && !(f->z.data_type & 128))
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "compressed message: truncated");
    if (inflater_grow(f, have + 1, limit))
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory inflating");
    f->buf[have] = '\0';
    *out = f->buf;
    *outlen = have;
    return FH_OK;
}
