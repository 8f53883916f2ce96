#include "fh_util.h"
#include "fh_utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

int64_t fh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t fh_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int fh_thread_nice(int nice)
{
    id_t tid = (id_t)gettid();
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, tid);
    if (errno == 0 && cur == nice)
        return 0;
    return setpriority(PRIO_PROCESS, tid, nice);
}

char *fh_time_rfc3339(int64_t ms, char *buf, size_t size)
{
    /* floor, not truncation: before 1970 ms % 1000 is negative and ms / 1000 a second late */
    int64_t rem = ms % 1000;
    if (rem < 0)
        rem += 1000;
    time_t secs = (time_t)((ms - rem) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
    return buf;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

int fh_time_parse(const char *s, int64_t *ms_out)
{
    int y, mo, d, h, mi, se, frac_ms = 0, off = 0;
    const char *p = s;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return -1;
    if (*p == '.') {
        int scale = 100, any = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            frac_ms += (*p - '0') * scale;
            scale /= 10;
            p++;
            any = 1;
        }
        if (!any)
            return -1;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return -1;
        off = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    /* days from civil (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar */
    int yy = y - (mo <= 2);
    int era = (yy >= 0 ? yy : yy - 399) / 400;
    unsigned yoe = (unsigned)(yy - era * 400);
    unsigned doy = (unsigned)((153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1);
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + (int64_t)doe - 719468;
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - (int64_t)off * 60;
    *ms_out = secs * 1000 + frac_ms;
    return 0;
}

void fh_uuid4(char out[37])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void *fh_grow(void *arr, size_t *cap, size_t size, size_t first)
{
    size_t want = *cap ? *cap * 2 : first;
    if (!size || !want || want < *cap || want > SIZE_MAX / size)
        return NULL;
    void *p = realloc(arr, want * size);
    if (p)
        *cap = want;
    return p;
}

void fh_buf_init(fh_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

int fh_buf_append(fh_buf *b, const void *p, size_t n)
{
    if (n > b->max - b->len || b->len + n + 1 < b->len)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        if (ncap > b->max + 1)
            ncap = b->max + 1;
        char *nd = realloc(b->data, ncap);
        if (!nd)
            return -1;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void fh_buf_reset(fh_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void fh_buf_free(fh_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int fh_buf_printf(fh_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return fh_buf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = fh_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

int fh_buf_json_str(fh_buf *b, const char *s)
{
    if (!s)
        return fh_buf_append(b, "null", 4);
    return fh_buf_json_strn(b, s, strlen(s));
}

int fh_buf_json_strn(fh_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (fh_buf_append(b, "\"", 1))
        return -1;
    const unsigned char *run = p;
    while (p < end) {
        size_t seq = 0;
        if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
            continue;
        }
        if (*p >= 0x80 && (seq = fh_utf8_seq(p, end)) != 0) {
            p += seq;
            continue;
        }
        if (p > run && fh_buf_append(b, run, (size_t)(p - run)))
            goto cap;
        char esc[6] = {'\\', (char)*p, 0, 0, 0, 0};
        size_t len = 2;
        if (*p >= 0x80) {
            /* Not UTF-8 (a stray byte, or a character cut short): JSON text must be UTF-8, so
             * each such byte becomes U+FFFD, as a decoder replaces it. */
            memcpy(esc, "\\ufffd", 6);
            len = 6;
        } else if (*p < 0x20) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            len = 6;
        }
        if (fh_buf_append(b, esc, len))
            goto cap;
        run = ++p;
    }
    if (p > run && fh_buf_append(b, run, (size_t)(p - run)))
        goto cap;
    if (fh_buf_append(b, "\"", 1))
        goto cap;
    return 0;
cap:
    b->len = start;
    if (b->data)
        b->data[start] = '\0';
    return -1;
}

size_t fh_pct_decode(const char *s, size_t n, char *out, int plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = fh_hex_digit(s[i + 1])) >= 0 &&
            (lo = fh_hex_digit(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
    return o;
}
