/* Small shared pieces: the bounded line reader, time parsing and formatting, capped buffers,
 * the JSON string escaper and UTF-8 checks. */
#include "fh_lines.h"
#include "fh_test.h"
#include "fh_metrics.h"
#include "fh_util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int lines_from(const char *text, size_t max, char out[][64], size_t *lens, int cap)
{
    int p[2], n = 0;
    fh_lines r;
    const char *line;
    size_t len;
    if (pipe(p))
        return -1;
    CHECK(write(p[1], text, strlen(text)) == (ssize_t)strlen(text));
    close(p[1]);
    fh_lines_open(&r, p[0], max);
    while (n < cap && fh_lines_next(&r, &line, &len) == 1) {
        size_t c = len < 63 ? len : 63;
        if (c > max)
            c = max;
        memcpy(out[n], line, c);
        out[n][c] = '\0';
        lens[n++] = len;
    }
    fh_lines_close(&r);
    close(p[0]);
    return n;
}

TEST(lines_split_trim_crlf_and_cap_long_lines)
{
    char out[8][64];
    size_t lens[8];
    int n = lines_from("a\r\nbb\n0123456789ABCDEF\nlast", 8, out, lens, 8);
    CHECK(n == 4);
    CHECK_STR(out[0], "a");
    CHECK_STR(out[1], "bb");
    CHECK(lens[2] == 9); /* over the cap: reported as max + 1 */
    CHECK_STR(out[2], "01234567");
    CHECK_STR(out[3], "last");
}

TEST(time_round_trip)
{
    char buf[32];
    int64_t ms;
    CHECK(fh_time_parse("2026-11-22T05:00:00.123Z", &ms) == 0);
    CHECK_STR(fh_time_rfc3339(ms, buf, sizeof(buf)), "2026-11-22T05:00:00.123Z");
    CHECK(fh_time_parse("1970-01-01T00:00:00Z", &ms) == 0 && ms == 0);
    CHECK(fh_time_parse("2026-11-22T06:00:00+01:00", &ms) == 0);
    CHECK_STR(fh_time_rfc3339(ms, buf, sizeof(buf)), "2026-11-22T05:00:00.000Z");
    CHECK(fh_time_parse("2026-13-01T00:00:00Z", &ms) == -1);
    CHECK(fh_time_parse("yesterday", &ms) == -1);
    /* found by fuzz_query: before 1970 the milliseconds came out negative, a second late */
    CHECK_STR(fh_time_rfc3339(-1, buf, sizeof(buf)), "1969-12-31T23:59:59.999Z");
    CHECK(fh_time_parse("1013-11-22T05:00:00.123Z", &ms) == 0);
    CHECK_STR(fh_time_rfc3339(ms, buf, sizeof(buf)), "1013-11-22T05:00:00.123Z");
}

TEST(buf_respects_its_cap)
{
    fh_buf b;
    fh_buf_init(&b, 10);
    CHECK(fh_buf_append(&b, "12345", 5) == 0);
    CHECK(fh_buf_append(&b, "67890", 5) == 0);
    CHECK(fh_buf_append(&b, "x", 1) == -1);
    CHECK(b.len == 10 && strcmp(b.data, "1234567890") == 0);
    fh_buf_free(&b);
}

TEST(uuid4_shape)
{
    char a[37], b[37];
    fh_uuid4(a);
    fh_uuid4(b);
    CHECK(strlen(a) == 36 && a[14] == '4' && a[8] == '-');
    CHECK(strcmp(a, b) != 0);
}

/* Answers echo request text (paths, parameters) into JSON: whatever the bytes, the literal must
 * parse as UTF-8 JSON and say the same thing where the bytes were text. */
TEST(buf_json_str_replaces_bytes_that_are_not_utf8)
{
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\s\n", 6, "\"q\\\"b\\\\s\\u000a\""},
        {"\xc3\xa9t\xc3\xa9", 5, "\"\xc3\xa9t\xc3\xa9\""}, /* été kept as is */
        {"\xf0\x9f\x94\xa5", 4, "\"\xf0\x9f\x94\xa5\""},   /* a 4-byte character */
        {"a\xff"
         "b",
         3, "\"a\\ufffdb\""},                                        /* a stray byte */
        {"\xc3", 1, "\"\\ufffd\""},                                  /* cut short at the end */
        {"\xe2\x82z", 3, "\"\\ufffd\\ufffdz\""},                     /* cut short in the middle */
        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},            /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* above U+10FFFF */
        {"a\0b", 3, "\"a\\u0000b\""},                                /* NUL with a length */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fh_buf b;
        fh_buf_init(&b, 1024);
        CHECK(fh_buf_json_strn(&b, cases[i].in, cases[i].n) == 0);
        CHECK_STR(b.data, cases[i].want);
        json_error_t e;
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        CHECK(json_is_string(j));
        json_decref(j);
        fh_buf_free(&b);
    }
    fh_buf b;
    fh_buf_init(&b, 8);
    CHECK(fh_buf_json_str(&b, "\xff\xff") == -1); /* 14 bytes over a cap of 8: nothing written */
    CHECK(b.len == 0);
    CHECK(fh_buf_json_str(&b, NULL) == 0);
    CHECK_STR(b.data, "null");
    fh_buf_free(&b);
}

TEST(pct_decode_keeps_nul_bytes_and_stray_percents)
{
    char out[32];
    CHECK(fh_pct_decode("/a%2Fb%41", 9, out, 0) == 5 && memcmp(out, "/a/bA", 6) == 0);
    CHECK(fh_pct_decode("/x%00.js", 8, out, 0) == 6 && memcmp(out, "/x\0.js", 7) == 0);
    CHECK(fh_pct_decode("%zz%4", 5, out, 0) == 5 && strcmp(out, "%zz%4") == 0);
    CHECK(fh_pct_decode("%41", 2, out, 0) == 2 && strcmp(out, "%4") == 0); /* only n bytes read */
    CHECK(fh_pct_decode("", 0, out, 0) == 0 && out[0] == '\0');
    CHECK(fh_pct_decode("a+b%2B", 6, out, 1) == 4 && strcmp(out, "a b+") == 0);
    CHECK(fh_pct_decode("a+b", 3, out, 0) == 3 && strcmp(out, "a+b") == 0);
    char in_place[] = "x%41y";
    CHECK(fh_pct_decode(in_place, 5, in_place, 0) == 3 && strcmp(in_place, "xAy") == 0);
}

TEST(hex_digits_and_four_digit_escapes)
{
    CHECK(fh_hex_digit('0') == 0 && fh_hex_digit('9') == 9);
    CHECK(fh_hex_digit('a') == 10 && fh_hex_digit('F') == 15);
    CHECK(fh_hex_digit('g') == -1 && fh_hex_digit('%') == -1);
    unsigned v = 0;
    CHECK(fh_hex4("00e9", &v) == 0 && v == 0xE9);
    CHECK(fh_hex4("D83D", &v) == 0 && v == 0xD83D);
    CHECK(fh_hex4("12x4", &v) == -1);
}

TEST(metrics_table_fills_each_field_in_order)
{
    struct handle {
        fh_metric *a, *b;
    } h = {NULL, NULL};
    static const fh_metric_row rows[] = {
        FH_METRIC_ROW(struct handle, a, "fh_test_table_total", "k=\"a\"", "A test counter.", 0),
        FH_METRIC_ROW(struct handle, b, "fh_test_table_gauge", NULL, "A test gauge.", 1),
    };
    fh_metrics_register(&h, rows, 2);
    CHECK(h.a && h.b && h.a != h.b);
    CHECK_STR(h.a->name, "fh_test_table_total");
    CHECK_STR(h.a->labels, "k=\"a\"");
    CHECK(h.a->gauge == 0 && h.b->gauge == 1 && h.b->labels == NULL);
    fh_metric_add(h.a, 2);
    CHECK(fh_metric_get(h.a) == 2 && fh_metric_get(h.b) == 0);
}

TEST(grow_doubles_from_first_and_refuses_overflow)
{
    size_t cap = 0, n;
    int *v = NULL;
    for (n = 0; n < 100; n++) {
        if (n == cap) {
            int *nv = fh_grow(v, &cap, sizeof(*nv), 4);
            CHECK(nv != NULL);
            v = nv;
        }
        v[n] = (int)n;
    }
    CHECK(cap == 128); /* 4, 8, ..., 128 */
    for (n = 0; n < 100; n++)
        CHECK(v[n] == (int)n);
    size_t big = SIZE_MAX / 2 + 1, before = big;
    CHECK(fh_grow(v, &big, 1, 4) == NULL); /* doubling would wrap: v and the cap untouched */
    CHECK(big == before && v[99] == 99);
    size_t huge = SIZE_MAX / 4;
    CHECK(fh_grow(v, &huge, sizeof(*v), 4) == NULL); /* the byte size would overflow */
    CHECK(huge == SIZE_MAX / 4);
    free(v);
}
