/* libFuzzer target for the stream's client messages (lib/fh_wsmsg.c, lib/fh_cursor.c, called by
 * broker/stream.c): the bytes are one client text message on the WebSocket protocol firehose
 * (subscribe / unsubscribe / ping), and also the SSE from= text, a cursor, and the strings of an
 * error frame.
 *
 * What must hold for every input:
 *  - no crash, leak or undefined behaviour (ASan + UBSan);
 *  - a refused message is FH_ERR_PARSE with code "bad_request", a message, no JSON kept, and an
 *    echoed id that is "" or a valid subscription id;
 *  - an accepted message is an object whose "op" names the op returned; subscribe and
 *    unsubscribe carry a valid id equal to the message's "id";
 *  - an accepted subscribe is well formed: its filter parses or is refused with a "filter..."
 *    message, and its "from", read for a stream of 1, 6 and (when it holds a cursor) the cursor's
 *    partition count, is consistent with the JSON: latest exactly when absent or "latest";
 *    earliest all -1; a time all -2 - ms with ms >= 0 and ms what fh_time_parse reads; a cursor
 *    the offsets fh_cursor_decode reads, all >= 0, and fh_cursor_decode_grown reads the same
 *    offsets in the order of a layout with partitions added; a refusal names "from";
 *  - the error frame of every refusal, and of the input split at NULs into id, code and message,
 *    is JSON (parsed with jansson) holding exactly those strings, with bytes that are not UTF-8
 *    replaced by U+FFFD (checked against a reference written here); the SSE form is one
 *    "data:" line holding the same JSON; the subscribed frame is JSON;
 *  - cursors round-trip: a cursor read from the input encodes back to a cursor that reads to the
 *    same offsets and encodes to the same text; offsets taken from the input bytes encode within
 *    FH_CURSOR_SIZE and read back (negative ones as 0); a buffer too small gives 0 and "", never
 *    a write past it;
 *  - fh_wsmsg_from_text (SSE from= and Last-Event-ID) on the input as text agrees with the same
 *    rules.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_cursor.h"
#include "fh_filter.h"
#include "fh_util.h"
#include "fh_wsmsg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_wsmsg: %s\n", what);
        abort();
    }
}

/* Length of the UTF-8 sequence at s[0..n), or 0 when it is not one. Independent of fh_json:
 * decodes the code point, then judges it (shortest form, not a surrogate, at most U+10FFFF). */
static size_t ref_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp, min;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, cp = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, cp = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* s with every byte that does not start a UTF-8 sequence replaced by U+FFFD; caller frees. */
static char *ref_sanitize(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(3 * n + 1);
    check(out != NULL, "malloc");
    for (size_t i = 0; i < n;) {
        size_t k = ref_utf8_len((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static void check_member(const json_t *obj, const char *key, const char *want)
{
    const char *got = json_string_value(json_object_get(obj, key));
    if (!want) {
        check(json_object_get(obj, key) == NULL, "frame has a member it should not");
        return;
    }
    char *clean = ref_sanitize(want);
    check(got != NULL, "frame lacks a member");
    check(strcmp(got, clean) == 0, "frame member differs from the (sanitized) string");
    free(clean);
}

/* The error frame for id, code and message, WebSocket and SSE forms, must be JSON holding them. */
static void check_error_frame(const char *id, const char *code, const char *message)
{
    json_error_t jerr;
    fh_buf b;
    check(fh_wsmsg_error_frame(&b, 0, id, code, message) == FH_OK, "error frame: failed");
    json_t *j = json_loadb(b.data, b.len, 0, &jerr);
    check(json_is_object(j), "error frame is not a JSON object");
    check(json_object_size(j) == (id ? 4u : 3u), "error frame: members");
    check_member(j, "op", "error");
    check_member(j, "id", id);
    check_member(j, "code", code);
    check_member(j, "message", message);
    json_decref(j);
    fh_buf_free(&b);

    static const char head[] = "event: error\ndata: ";
    check(fh_wsmsg_error_frame(&b, 1, id, code, message) == FH_OK, "SSE error frame: failed");
    check(b.len > sizeof(head) + 1 && memcmp(b.data, head, sizeof(head) - 1) == 0 &&
              memcmp(b.data + b.len - 2, "\n\n", 2) == 0,
          "SSE error frame: not one event");
    const char *js = b.data + sizeof(head) - 1;
    size_t jn = b.len - (sizeof(head) - 1) - 2;
    check(!memchr(js, '\n', jn) && !memchr(js, '\r', jn), "SSE error frame: data spans lines");
    j = json_loadb(js, jn, 0, &jerr);
    check(json_is_object(j) && json_object_size(j) == 2, "SSE error data is not the object");
    check_member(j, "code", code);
    check_member(j, "message", message);
    json_decref(j);
    fh_buf_free(&b);
}

/* s, a cursor of n partitions (vec), read after two partitions were added to the events topic
 * and one to the logs topic: the same offsets in the new order, -1 for the added ones; read
 * against its own count it is refused (that is fh_cursor_decode's). */
static void check_cursor_grown(const char *s, int n, const int64_t *vec)
{
    if (n < 2 || n + 3 > FH_CURSOR_MAX_PARTS)
        return;
    int e = (n + 1) / 2, l = n - e;
    fh_cursor_layout past[2] = {{2, {e, l}}, {2, {e + 2, l + 1}}};
    int64_t *g = malloc((size_t)(n + 3) * sizeof(*g));
    check(g != NULL, "malloc");
    check(fh_cursor_decode_grown(s, past, 2, g) == FH_OK, "cursor: not read after partitions grew");
    for (int i = 0; i < e; i++)
        check(g[i] == vec[i], "cursor grown: events offset moved");
    check(g[e] == -1 && g[e + 1] == -1 && g[n + 2] == -1, "cursor grown: added not -1");
    for (int i = 0; i < l; i++)
        check(g[e + 2 + i] == vec[e + i], "cursor grown: logs offset moved");
    check(fh_cursor_decode_grown(s, past, 1, g) == FH_ERR_PARSE, "cursor grown: same count read");
    free(g);
}

/* s read as a cursor of n partitions; on success it must round-trip. */
static void check_cursor_text(const char *s, int n)
{
    if (n < 1 || n > FH_CURSOR_MAX_PARTS)
        return;
    int64_t *vec = malloc((size_t)n * sizeof(*vec)), *back = malloc((size_t)n * sizeof(*back));
    char *a = malloc(FH_CURSOR_SIZE(n)), *b = malloc(FH_CURSOR_SIZE(n));
    check(vec && back && a && b, "malloc");
    if (fh_cursor_decode(s, n, vec) == FH_OK) {
        for (int i = 0; i < n; i++)
            check(vec[i] >= 0, "cursor: negative offset read");
        size_t la = fh_cursor_encode(vec, n, a, FH_CURSOR_SIZE(n));
        check(la > 0 && la == strlen(a), "cursor: does not encode in FH_CURSOR_SIZE");
        check(fh_cursor_decode(a, n, back) == FH_OK, "cursor: encoded text does not read");
        check(memcmp(vec, back, (size_t)n * sizeof(*vec)) == 0, "cursor: offsets change");
        size_t lb = fh_cursor_encode(back, n, b, FH_CURSOR_SIZE(n));
        check(lb == la && strcmp(a, b) == 0, "cursor: encoding is not stable");
        check(fh_cursor_decode(a, n + 1, back) == FH_ERR_PARSE, "cursor: read with another count");
        check_cursor_grown(s, n, vec);
    }
    free(vec);
    free(back);
    free(a);
    free(b);
}

/* Offsets from raw bytes: encode within the documented size, and into a smaller buffer. */
static void check_cursor_bytes(const uint8_t *data, size_t size)
{
    int n = (int)(size / 8);
    if (n < 1)
        return;
    if (n > FH_CURSOR_MAX_PARTS)
        n = FH_CURSOR_MAX_PARTS;
    int64_t *vec = malloc((size_t)n * sizeof(*vec)), *back = malloc((size_t)n * sizeof(*back));
    check(vec && back, "malloc");
    memcpy(vec, data, (size_t)n * sizeof(*vec));
    size_t full = FH_CURSOR_SIZE(n);
    char *out = malloc(full);
    check(out != NULL, "malloc");
    size_t len = fh_cursor_encode(vec, n, out, full);
    check(len > 0 && len < full && strlen(out) == len, "cursor of raw offsets: does not fit");
    check(fh_cursor_decode(out, n, back) == FH_OK, "cursor of raw offsets: does not read");
    for (int i = 0; i < n; i++)
        check(back[i] == (vec[i] < 0 ? 0 : vec[i]), "cursor of raw offsets: offsets change");
    /* a buffer of exactly `small` bytes (ASan sees a write past it) */
    size_t small = (size_t)data[0] * (size_t)n / 16 + (size & 7);
    char *tight = malloc(small ? small : 1);
    check(tight != NULL, "malloc");
    size_t got = fh_cursor_encode(vec, n, tight, small);
    if (small > len)
        check(got == len && memcmp(tight, out, len + 1) == 0, "cursor: roomy buffer differs");
    else
        check(got == 0 && (small == 0 || tight[0] == '\0'), "cursor: short buffer not refused");
    free(tight);
    free(out);
    free(vec);
    free(back);
}

/* from for a stream of n partitions must agree with the JSON it came from. */
static void check_from(const json_t *from, int n)
{
    int64_t *vec = malloc((size_t)n * sizeof(*vec)), *want = malloc((size_t)n * sizeof(*want));
    char err[256] = "";
    fh_wsmsg_from_kind kind;
    check(vec && want, "malloc");
    for (int i = 0; i < n; i++)
        vec[i] = 0x5A5A5A5A;
    const char *str = json_string_value(from);
    const char *t = json_string_value(json_object_get(from, "time"));
    const char *c = json_string_value(json_object_get(from, "cursor"));
    int one = json_is_object(from) && json_object_size(from) == 1;
    int64_t ms = 0;
    if (fh_wsmsg_from(from, n, vec, &kind, err, sizeof(err)) != FH_OK) {
        check(strncmp(err, "from", 4) == 0, "from refused without a from... message");
        check(from && !(str && (strcmp(str, "latest") == 0 || strcmp(str, "earliest") == 0)),
              "from: latest or earliest refused");
        check(!(one && t && fh_time_parse(t, &ms) == 0 && ms >= 0), "from: a good time refused");
        check(!(one && c && fh_cursor_decode(c, n, want) == FH_OK), "from: a good cursor refused");
    } else if (kind == FH_FROM_LATEST) {
        check(!from || (str && strcmp(str, "latest") == 0), "from: latest from something else");
        check(vec[0] == 0x5A5A5A5A, "from: latest wrote vec");
    } else if (kind == FH_FROM_EARLIEST) {
        check(str && strcmp(str, "earliest") == 0, "from: earliest from something else");
        for (int i = 0; i < n; i++)
            check(vec[i] == -1, "from: earliest entry not -1");
    } else if (kind == FH_FROM_TIME) {
        check(one && t && fh_time_parse(t, &ms) == 0, "from: time from something else");
        check(ms >= 0, "from: a time before 1970 accepted");
        for (int i = 0; i < n; i++)
            check(vec[i] == -2 - ms, "from: time entry is not -2 - ms");
    } else {
        check(kind == FH_FROM_CURSOR && one && c, "from: cursor from something else");
        check(fh_cursor_decode(c, n, want) == FH_OK, "from: cursor that does not read");
        check(memcmp(vec, want, (size_t)n * sizeof(*vec)) == 0, "from: cursor offsets differ");
    }
    free(vec);
    free(want);
}

/* The subscribed frame, with the cursor the broker would send (its own encoding of c's offsets),
 * or without one, must be JSON holding them. */
static void check_subscribed(const char *id, const char *c, int n)
{
    int64_t *vec = n ? malloc((size_t)n * sizeof(*vec)) : NULL;
    char *cur = n ? malloc(FH_CURSOR_SIZE(n)) : NULL;
    check(!n || (vec && cur), "malloc");
    if (c && fh_cursor_decode(c, n, vec) == FH_OK)
        fh_cursor_encode(vec, n, cur, FH_CURSOR_SIZE(n));
    else
        c = NULL;
    fh_buf b;
    json_error_t jerr;
    check(fh_wsmsg_subscribed_frame(&b, id, c ? cur : NULL) == FH_OK, "subscribed frame: failed");
    json_t *j = json_loadb(b.data, b.len, 0, &jerr);
    check(json_is_object(j) && json_object_size(j) == (c ? 3u : 2u), "subscribed: not the object");
    check_member(j, "op", "subscribed");
    check_member(j, "id", id);
    check_member(j, "cursor", c ? cur : NULL);
    json_decref(j);
    fh_buf_free(&b);
    free(vec);
    free(cur);
}

static int cursor_count(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    return end != s && *end == '.' && n >= 1 && n <= FH_CURSOR_MAX_PARTS ? (int)n : 0;
}

static void check_message(const char *text, size_t size)
{
    static const char *const names[] = {"ping", "subscribe", "unsubscribe"};
    char err[320] = "";
    fh_wsmsg m;
    fh_err rc = fh_wsmsg_parse(text, size, &m, err, sizeof(err));
    if (rc) {
        check(rc == FH_ERR_PARSE, "refusal is not FH_ERR_PARSE");
        check(m.code && strcmp(m.code, "bad_request") == 0, "refusal without its code");
        check(err[0] != '\0', "refusal without a message");
        check(m.msg == NULL, "refusal keeps the JSON");
        check(m.id[0] == '\0' || fh_wsmsg_id_valid(m.id), "refusal echoes an invalid id");
        check_error_frame(m.id[0] ? m.id : NULL, m.code, err);
        fh_wsmsg_clear(&m);
        return;
    }
    check(json_is_object(m.msg), "accepted message is not an object");
    check(m.op <= FH_WSMSG_UNSUBSCRIBE, "op out of range");
    const char *op = json_string_value(json_object_get(m.msg, "op"));
    check(op && strcmp(op, names[m.op]) == 0, "op differs from the message's");
    if (m.op != FH_WSMSG_PING) {
        const char *id = json_string_value(json_object_get(m.msg, "id"));
        check(fh_wsmsg_id_valid(m.id) && id && strcmp(id, m.id) == 0, "id differs or is invalid");
    }
    if (m.op == FH_WSMSG_SUBSCRIBE) {
        fh_filter f;
        char ferr[320] = "";
        if (fh_filter_parse(json_object_get(m.msg, "filter"), &f, ferr, sizeof(ferr)))
            check(strncmp(ferr, "filter", 6) == 0, "filter refused without a filter... message");
        fh_filter_free(&f);
        const json_t *from = json_object_get(m.msg, "from");
        check_from(from, 1);
        check_from(from, 6);
        const char *c = json_string_value(json_object_get(from, "cursor"));
        int n = c ? cursor_count(c) : 0;
        if (n) {
            check_from(from, n);
            check_cursor_text(c, n);
        }
        check_subscribed(m.id, n ? c : NULL, n);
        check_error_frame(m.id, "bad_filter", ferr[0] ? ferr : "x");
    }
    fh_wsmsg_clear(&m);
}

/* The SSE form of from: the same rules on text. */
static void check_from_text(const char *s)
{
    int n = cursor_count(s);
    int64_t vec[6], *v = vec;
    char err[256] = "";
    fh_wsmsg_from_kind kind;
    int64_t ms = 0;
    if (n > 6)
        v = malloc((size_t)n * sizeof(*v));
    if (n < 1)
        n = 6;
    check(v != NULL, "malloc");
    if (fh_wsmsg_from_text(s, n, v, &kind, err, sizeof(err)) != FH_OK) {
        check(err[0] != '\0', "from text refused without a message");
        check(strcmp(s, "latest") && strcmp(s, "earliest"), "from text: latest/earliest refused");
        check(fh_time_parse(s, &ms) || ms < 0, "from text: a good time refused");
        check(fh_cursor_decode(s, n, v) != FH_OK, "from text: a good cursor refused");
    } else if (kind == FH_FROM_LATEST) {
        check(strcmp(s, "latest") == 0, "from text: latest from something else");
    } else if (kind == FH_FROM_EARLIEST) {
        check(strcmp(s, "earliest") == 0 && v[n - 1] == -1, "from text: earliest");
    } else if (kind == FH_FROM_TIME) {
        check(fh_time_parse(s, &ms) == 0 && ms >= 0 && v[0] == -2 - ms, "from text: time");
    } else {
        check(kind == FH_FROM_CURSOR && fh_time_parse(s, &ms), "from text: cursor that is a time");
        check_cursor_text(s, n);
    }
    if (v != vec)
        free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *text = malloc(size + 1);
    check(text != NULL, "malloc");
    memcpy(text, data, size);
    text[size] = '\0';

    check_message(text, size);
    check_from_text(text);
    check_cursor_text(text, cursor_count(text));
    check_cursor_bytes(data, size);

    /* the input split at NULs: id, code, message (an absent part is NULL for the id) */
    const char *id = NULL, *code = text, *message = "";
    size_t first = strlen(text);
    if (first < size) {
        const char *second = text + first + 1;
        size_t n2 = strlen(second);
        if ((size_t)(second - text) + n2 < size) {
            id = text;
            code = second;
            message = second + n2 + 1;
        } else {
            message = second;
        }
    }
    check_error_frame(id, code, message);
    free(text);
    return 0;
}
