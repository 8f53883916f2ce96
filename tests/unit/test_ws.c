/* The WebSocket codec: RFC 6455 examples, every protocol error with its close code, the same events
 * whatever the input's chunking, caps, UTF-8 checks and the server-side frame encoders. */
#include "fh_test.h"
#include "fh_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static unsigned char mask_seed = 0x37;

/* Writes a client frame: b0 is the first byte as sent (FIN, RSV, opcode); len_form 0 encodes the
 * length minimally, 126 or 127 forces that form. The mask changes from frame to frame. */
static size_t frame_ex(unsigned char *out, unsigned b0, int masked, int len_form,
                       const void *payload, size_t n)
{
    const unsigned char *src = payload;
    unsigned char k[4] = {mask_seed, 0xfa, 0x21, (unsigned char)(mask_seed ^ 0x5a)};
    size_t h = 0;
    int form = len_form ? len_form : n < 126 ? 0 : n <= 0xFFFF ? 126 : 127;
    mask_seed = (unsigned char)(mask_seed * 31 + 7);
    out[h++] = (unsigned char)b0;
    if (form == 0) {
        out[h++] = (unsigned char)((masked ? 0x80 : 0) | n);
    } else if (form == 126) {
        out[h++] = (unsigned char)((masked ? 0x80 : 0) | 126);
        out[h++] = (unsigned char)(n >> 8);
        out[h++] = (unsigned char)n;
    } else {
        out[h++] = (unsigned char)((masked ? 0x80 : 0) | 127);
        for (int i = 0; i < 8; i++)
            out[h++] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(out + h, k, 4);
        h += 4;
    }
    for (size_t i = 0; i < n; i++)
        out[h + i] = masked ? src[i] ^ k[i & 3] : src[i];
    return h + n;
}

static size_t frame(unsigned char *out, unsigned b0, const void *payload, size_t n)
{
    return frame_ex(out, b0, 1, 0, payload, n);
}

typedef struct ev {
    int r;
    int opcode;
    unsigned code;
    size_t len;
    uint64_t hash;  /* FNV-1a of the data or reason */
    char text[128]; /* their first bytes, NUL-terminated */
} ev;

enum { WHOLE, BYTES, RANDOM };

static unsigned next_rand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static void record(ev *e, int r, const fh_ws_msg *m)
{
    const unsigned char *d =
        r == FH_WS_CLOSE || r == FH_WS_ERROR ? (const unsigned char *)m->reason : m->data;
    size_t n = r == FH_WS_CLOSE || r == FH_WS_ERROR ? m->reason_len : m->len;
    memset(e, 0, sizeof(*e));
    e->r = r;
    e->opcode = m->opcode;
    e->code = m->close_code;
    e->len = n;
    e->hash = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        e->hash = (e->hash ^ d[i]) * 1099511628211ull;
    memcpy(e->text, d, n < sizeof(e->text) - 1 ? n : sizeof(e->text) - 1);
    if (r == FH_WS_MESSAGE || r == FH_WS_PING || r == FH_WS_PONG)
        CHECK(d[n] == '\0');
    if (r == FH_WS_CLOSE)
        CHECK(m->reason[m->reason_len] == '\0');
}

/* Feeds in[0..n) to a fresh parser in chunks (whole, byte by byte, or random sizes from seed),
 * each chunk copied into an exactly-sized heap block so ASan catches a read past len. Collects
 * events until ERROR or CLOSE. Returns how many. */
static int run(const unsigned char *in, size_t n, size_t max, int mode, unsigned seed, ev *evs,
               int cap)
{
    fh_ws_parser p;
    size_t off = 0;
    int nev = 0, done = 0;
    fh_ws_parser_init(&p, max);
    while (off < n && !done) {
        size_t c = mode == WHOLE ? n - off : mode == BYTES ? 1 : 1 + next_rand(&seed) % 300;
        unsigned char *chunk;
        size_t at = 0;
        if (c > n - off)
            c = n - off;
        chunk = malloc(c);
        memcpy(chunk, in + off, c);
        for (;;) {
            fh_ws_msg m;
            size_t used = 99999;
            int r = fh_ws_parse(&p, chunk + at, c - at, &used, &m);
            CHECK(used <= c - at);
            at += used;
            if (r == FH_WS_NEED_MORE) {
                CHECK(at == c);
                break;
            }
            CHECK(used > 0);
            if (r == FH_WS_MESSAGE)
                CHECK(m.len <= max);
            if (nev < cap)
                record(&evs[nev], r, &m);
            nev++;
            if (r == FH_WS_ERROR || r == FH_WS_CLOSE) {
                done = 1;
                break;
            }
        }
        free(chunk);
        off += c;
    }
    if (mode == WHOLE || (mode == BYTES && n > 0))
        CHECK(p.msg_cap <= max + 1);
    fh_ws_parser_free(&p);
    return nev;
}

static int evs_equal(const ev *a, int na, const ev *b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (a[i].r != b[i].r || a[i].opcode != b[i].opcode || a[i].code != b[i].code ||
            a[i].len != b[i].len || a[i].hash != b[i].hash)
            return 0;
    return 1;
}

#define MAX_EVS 64

/* Runs in[0..n) whole, byte by byte and in random chunks; checks all give the same events and
 * returns those of the whole run in evs. */
static int run_all(const unsigned char *in, size_t n, size_t max, ev *evs)
{
    static ev other[MAX_EVS];
    int nw = run(in, n, max, WHOLE, 0, evs, MAX_EVS), no;
    CHECK(nw <= MAX_EVS);
    no = run(in, n, max, BYTES, 0, other, MAX_EVS);
    CHECK(evs_equal(evs, nw, other, no));
    for (unsigned seed = 1; seed <= 8; seed++) {
        no = run(in, n, max, RANDOM, seed, other, MAX_EVS);
        CHECK(evs_equal(evs, nw, other, no));
    }
    return nw;
}

/* Checks that in[0..n) ends in FH_WS_ERROR with code, however it is chunked. */
static void expect_error_at(const char *what, const unsigned char *in, size_t n, size_t max,
                            unsigned code, int line)
{
    ev evs[MAX_EVS];
    int k = run_all(in, n, max, evs);
    if (k < 1 || evs[k - 1].r != FH_WS_ERROR || evs[k - 1].code != code || evs[k - 1].len == 0) {
        char m[256];
        snprintf(m, sizeof(m), "%s: want error %u, got %d events, last r=%d code=%u", what, code, k,
                 k ? evs[k - 1].r : -1, k ? evs[k - 1].code : 0);
        fh_test_fail(__FILE__, line, m);
    }
}
#define EXPECT_ERROR(what, in, n, max, code) expect_error_at(what, in, n, max, code, __LINE__)

/* ---- handshake ----------------------------------------------------------------------------- */

TEST(ws_accept_key_rfc_example)
{
    char out[29];
    fh_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    fh_ws_accept_key("AQIDBAUGBwgJCgsMDQ4PEA==", out);
    CHECK(strlen(out) == 28 && strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0);
    fh_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", out);
    CHECK_STR(out, "");
}

TEST(ws_key_valid_only_for_16_bytes_of_base64)
{
    CHECK(fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(fh_ws_key_valid("AQIDBAUGBwgJCgsMDQ4PEA=="));
    CHECK(fh_ws_key_valid("+/+/+/+/+/+/+/+/+/+/+w=="));
    CHECK(!fh_ws_key_valid(NULL));
    CHECK(!fh_ws_key_valid(""));
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ="));   /* 23 chars */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ===")); /* 25 chars */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQAA"));  /* no padding: 18 bytes */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZR=="));  /* stray low bits: not canonical */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25j*Q=="));  /* not base64 */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ= "));  /* space in the padding */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25=ZQ=="));  /* padding in the middle */
    CHECK(!fh_ws_key_valid("dGhlIHNhbXBsZSBub25jZ-=="));  /* base64url alphabet */
}

/* ---- RFC 6455 section 5.7 examples --------------------------------------------------------- */

TEST(ws_rfc_single_frame_masked_hello)
{
    static const unsigned char in[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                       0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ev evs[MAX_EVS];
    int n = run_all(in, sizeof(in), 1024, evs);
    CHECK(n == 1);
    CHECK(evs[0].r == FH_WS_MESSAGE && evs[0].opcode == FH_WS_OP_TEXT);
    CHECK(evs[0].len == 5);
    CHECK_STR(evs[0].text, "Hello");
}

TEST(ws_rfc_unmasked_examples_are_protocol_errors)
{
    static const unsigned char hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const unsigned char frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    static const unsigned char ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    EXPECT_ERROR("unmasked hello", hello, sizeof(hello), 1024, 1002);
    EXPECT_ERROR("unmasked fragment", frag, sizeof(frag), 1024, 1002);
    EXPECT_ERROR("unmasked ping", ping, sizeof(ping), 1024, 1002);
}

TEST(ws_rfc_fragmented_hello)
{
    unsigned char in[64];
    size_t n = frame(in, 0x01, "Hel", 3);
    ev evs[MAX_EVS];
    n += frame(in + n, 0x80, "lo", 2);
    CHECK(run_all(in, n, 1024, evs) == 1);
    CHECK(evs[0].r == FH_WS_MESSAGE && evs[0].opcode == FH_WS_OP_TEXT);
    CHECK_STR(evs[0].text, "Hello");
}

TEST(ws_rfc_ping_with_body_and_masked_pong)
{
    static const unsigned char pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
    unsigned char in[64];
    size_t n = frame(in, 0x89, "Hello", 5);
    ev evs[MAX_EVS];
    memcpy(in + n, pong, sizeof(pong));
    n += sizeof(pong);
    n += frame(in + n, 0x89, "", 0);
    CHECK(run_all(in, n, 1024, evs) == 3);
    CHECK(evs[0].r == FH_WS_PING && evs[0].opcode == FH_WS_OP_PING);
    CHECK_STR(evs[0].text, "Hello");
    CHECK(evs[1].r == FH_WS_PONG && evs[1].opcode == FH_WS_OP_PONG);
    CHECK_STR(evs[1].text, "Hello");
    CHECK(evs[2].r == FH_WS_PING && evs[2].len == 0);
}

TEST(ws_rfc_256_byte_and_64k_lengths)
{
    size_t sizes[] = {256, 65536};
    for (int s = 0; s < 2; s++) {
        size_t len = sizes[s];
        unsigned char *payload = malloc(len), *in = malloc(len + 14);
        ev evs[MAX_EVS];
        for (size_t i = 0; i < len; i++)
            payload[i] = (unsigned char)(i * 7 + s);
        size_t n = frame(in, 0x82, payload, len);
        if (len == 256)
            CHECK(in[1] == 0xFE && in[2] == 0x01 && in[3] == 0x00);
        else
            CHECK(in[1] == 0xFF && in[2] == 0 && in[6] == 0 && in[7] == 0x01 && in[8] == 0 &&
                  in[9] == 0);
        CHECK(run_all(in, n, 65536, evs) == 1);
        CHECK(evs[0].r == FH_WS_MESSAGE && evs[0].opcode == FH_WS_OP_BINARY);
        CHECK(evs[0].len == len);
        CHECK(memcmp(evs[0].text, payload, sizeof(evs[0].text) - 1) == 0);
        /* the whole payload: compare against a direct parse */
        {
            fh_ws_parser p;
            fh_ws_msg m;
            size_t used;
            fh_ws_parser_init(&p, 65536);
            CHECK(fh_ws_parse(&p, in, n, &used, &m) == FH_WS_MESSAGE && used == n);
            CHECK(m.len == len && memcmp(m.data, payload, len) == 0);
            fh_ws_parser_free(&p);
        }
        free(payload);
        free(in);
    }
}

/* ---- framing ------------------------------------------------------------------------------- */

TEST(ws_control_frames_between_fragments)
{
    unsigned char in[256];
    size_t n = frame(in, 0x02, "ab", 2);
    ev evs[MAX_EVS];
    n += frame(in + n, 0x89, "p1", 2);
    n += frame(in + n, 0x00, "cd", 2);
    n += frame(in + n, 0x8A, "p2", 2);
    n += frame(in + n, 0x00, "", 0);
    n += frame(in + n, 0x80, "ef", 2);
    n += frame(in + n, 0x81, "next", 4);
    CHECK(run_all(in, n, 1024, evs) == 4);
    CHECK(evs[0].r == FH_WS_PING);
    CHECK_STR(evs[0].text, "p1");
    CHECK(evs[1].r == FH_WS_PONG);
    CHECK_STR(evs[1].text, "p2");
    CHECK(evs[2].r == FH_WS_MESSAGE && evs[2].opcode == FH_WS_OP_BINARY);
    CHECK_STR(evs[2].text, "abcdef");
    CHECK(evs[3].r == FH_WS_MESSAGE && evs[3].opcode == FH_WS_OP_TEXT);
    CHECK_STR(evs[3].text, "next");
}

TEST(ws_empty_messages_and_zero_length_input)
{
    unsigned char in[64];
    size_t n = frame(in, 0x81, "", 0), used = 7;
    ev evs[MAX_EVS];
    fh_ws_parser p;
    fh_ws_msg m;
    n += frame(in + n, 0x02, "", 0);
    n += frame(in + n, 0x80, "", 0);
    CHECK(run_all(in, n, 0, evs) == 2);
    CHECK(evs[0].r == FH_WS_MESSAGE && evs[0].opcode == FH_WS_OP_TEXT && evs[0].len == 0);
    CHECK(evs[1].r == FH_WS_MESSAGE && evs[1].opcode == FH_WS_OP_BINARY && evs[1].len == 0);
    fh_ws_parser_init(&p, 16);
    CHECK(fh_ws_parse(&p, in, 0, &used, &m) == FH_WS_NEED_MORE && used == 0);
    fh_ws_parser_free(&p);
}

/* A long mixed stream: many message sizes and length encodings, fragments with control frames
 * between them, masks that change per frame. Every chunking must yield the same events. */
TEST(ws_byte_by_byte_and_random_chunks_equal_one_shot)
{
    size_t sizes[] = {0, 1, 5, 125, 126, 127, 300, 4096, 65535, 65536, 70001};
    size_t cap = 1 << 20, n = 0;
    unsigned char *in = malloc(cap), *payload = malloc(80000);
    ev whole[MAX_EVS], other[MAX_EVS];
    int nw, no;
    for (size_t i = 0; i < 80000; i++)
        payload[i] = (unsigned char)('a' + i % 26);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        n += frame(in + n, i % 2 ? 0x81 : 0x82, payload, sizes[i]);
        if (i % 3 == 0)
            n += frame(in + n, 0x89, payload + i, i * 10);
    }
    n += frame(in + n, 0x01, payload, 1000);
    n += frame(in + n, 0x89, "x", 1);
    n += frame(in + n, 0x00, payload + 3, 130);
    n += frame(in + n, 0x8A, "", 0);
    n += frame(in + n, 0x80, payload + 7, 70000);
    n += frame(in + n, 0x88, "\x03\xe8ok", 4);
    CHECK(n < cap);
    nw = run(in, n, 100000, WHOLE, 0, whole, MAX_EVS);
    CHECK(nw == 11 + 4 + 3 + 1);
    CHECK(whole[nw - 1].r == FH_WS_CLOSE && whole[nw - 1].code == 1000);
    CHECK(whole[nw - 2].r == FH_WS_MESSAGE && whole[nw - 2].len == 71130);
    no = run(in, n, 100000, BYTES, 0, other, MAX_EVS);
    CHECK(evs_equal(whole, nw, other, no));
    for (unsigned seed = 1; seed <= 20; seed++) {
        no = run(in, n, 100000, RANDOM, seed, other, MAX_EVS);
        CHECK(evs_equal(whole, nw, other, no));
    }
    free(in);
    free(payload);
}

TEST(ws_message_valid_until_next_call_and_buffer_reused)
{
    unsigned char in[2048], big[1000];
    fh_ws_parser p;
    fh_ws_msg m;
    size_t used, n, cap_after_big;
    memset(big, 'z', sizeof(big));
    fh_ws_parser_init(&p, 1000);
    n = frame(in, 0x82, big, sizeof(big));
    CHECK(fh_ws_parse(&p, in, n, &used, &m) == FH_WS_MESSAGE && m.len == 1000 && used == n);
    CHECK(p.msg_cap == 1001); /* grown to the cap and no further */
    cap_after_big = p.msg_cap;
    for (int i = 0; i < 100; i++) {
        char text[16];
        int k = snprintf(text, sizeof(text), "msg %d", i);
        n = frame(in, 0x81, text, (size_t)k);
        CHECK(fh_ws_parse(&p, in, n, &used, &m) == FH_WS_MESSAGE);
        CHECK(m.len == (size_t)k && strcmp((const char *)m.data, text) == 0);
    }
    CHECK(p.msg_cap == cap_after_big);
    fh_ws_parser_free(&p);
    CHECK(p.msg == NULL);
}

/* ---- protocol errors ----------------------------------------------------------------------- */

TEST(ws_protocol_errors_close_with_1002)
{
    unsigned char in[512], body[200];
    size_t n;
    memset(body, 'b', sizeof(body));

    n = frame_ex(in, 0x81, 0, 0, "hi", 2);
    EXPECT_ERROR("unmasked", in, n, 1024, 1002);
    n = frame(in, 0x81 | 0x40, "hi", 2);
    EXPECT_ERROR("rsv1", in, n, 1024, 1002);
    n = frame(in, 0x81 | 0x20, "hi", 2);
    EXPECT_ERROR("rsv2", in, n, 1024, 1002);
    n = frame(in, 0x81 | 0x10, "hi", 2);
    EXPECT_ERROR("rsv3", in, n, 1024, 1002);
    for (unsigned op = 3; op <= 0xF; op++) {
        if (op >= 8 && op <= 0xA)
            continue;
        n = frame(in, 0x80 | op, "hi", 2);
        EXPECT_ERROR("reserved opcode", in, n, 1024, 1002);
    }
    n = frame(in, 0x89, body, 126);
    EXPECT_ERROR("ping over 125", in, n, 1024, 1002);
    n = frame(in, 0x88, body, 126);
    EXPECT_ERROR("close over 125", in, n, 1024, 1002);
    n = frame(in, 0x09, "hi", 2);
    EXPECT_ERROR("fragmented ping", in, n, 1024, 1002);
    n = frame(in, 0x0A, "hi", 2);
    EXPECT_ERROR("fragmented pong", in, n, 1024, 1002);
    n = frame(in, 0x80, "hi", 2);
    EXPECT_ERROR("continuation without start", in, n, 1024, 1002);
    n = frame(in, 0x00, "hi", 2);
    EXPECT_ERROR("non-final continuation without start", in, n, 1024, 1002);
    n = frame(in, 0x81, "done", 4);
    n += frame(in + n, 0x80, "hi", 2);
    EXPECT_ERROR("continuation after a complete message", in, n, 1024, 1002);
    n = frame(in, 0x01, "he", 2);
    n += frame(in + n, 0x81, "hi", 2);
    EXPECT_ERROR("text inside fragmented text", in, n, 1024, 1002);
    n = frame(in, 0x02, "he", 2);
    n += frame(in + n, 0x82, "hi", 2);
    EXPECT_ERROR("binary inside fragmented binary", in, n, 1024, 1002);
    n = frame_ex(in, 0x82, 1, 126, body, 100);
    EXPECT_ERROR("16-bit length under 126", in, n, 1024, 1002);
    n = frame_ex(in, 0x82, 1, 127, body, 200);
    EXPECT_ERROR("64-bit length under 65536", in, n, 1024, 1002);
    n = frame(in, 0x82, "", 0);
    in[1] = 0x80 | 127;
    memcpy(in + 2, "\x80\0\0\0\0\0\0\x01", 8);
    memcpy(in + 10, "\1\2\3\4", 4);
    EXPECT_ERROR("64-bit length with the top bit set", in, 14, SIZE_MAX, 1002);
}

TEST(ws_bad_close_payloads_close_with_1002)
{
    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    unsigned char in[256], pl[130];
    size_t n;
    n = frame(in, 0x88, "\x03", 1);
    EXPECT_ERROR("close payload of 1 byte", in, n, 1024, 1002);
    /* a ping that leaves "\x03\xe8" (1000) in the control buffer must not make it valid */
    n = frame(in, 0x89, "\x03\xe8", 2);
    n += frame(in + n, 0x88, "\x03", 1);
    EXPECT_ERROR("close payload of 1 byte after a ping", in, n, 1024, 1002);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pl[0] = (unsigned char)(bad[i] >> 8);
        pl[1] = (unsigned char)bad[i];
        n = frame(in, 0x88, pl, 2);
        EXPECT_ERROR("invalid close code", in, n, 1024, 1002);
    }
    n = frame(in, 0x88, "\x03\xe8\xff", 3);
    EXPECT_ERROR("close reason not UTF-8", in, n, 1024, 1002);
    n = frame(in, 0x88, "\x03\xe8\x61\x62\xe2\x82" /* 1000 "ab" + 2 of 3 bytes */, 6);
    EXPECT_ERROR("close reason ends inside a character", in, n, 1024, 1002);
    n = frame(in, 0x88, "\x03\xe8\xed\xa0\x80", 5);
    EXPECT_ERROR("close reason with a surrogate", in, n, 1024, 1002);
}

TEST(ws_valid_close_frames)
{
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                    1010, 1011, 1012, 1013, 1014, 3000, 4999};
    unsigned char in[256], pl[130];
    ev evs[MAX_EVS];
    size_t n = frame(in, 0x88, "", 0);
    CHECK(run_all(in, n, 1024, evs) == 1);
    CHECK(evs[0].r == FH_WS_CLOSE && evs[0].code == 1005 && evs[0].len == 0);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        pl[0] = (unsigned char)(good[i] >> 8);
        pl[1] = (unsigned char)good[i];
        memcpy(pl + 2, "bye \xe2\x82\xac", 7);
        n = frame(in, 0x88, pl, 9);
        CHECK(run_all(in, n, 1024, evs) == 1);
        CHECK(evs[0].r == FH_WS_CLOSE && evs[0].opcode == FH_WS_OP_CLOSE);
        CHECK(evs[0].code == good[i]);
        CHECK_STR(evs[0].text, "bye \xe2\x82\xac");
    }
    memset(pl + 2, 'r', 123);
    n = frame(in, 0x88, pl, 125);
    CHECK(run_all(in, n, 1024, evs) == 1);
    CHECK(evs[0].r == FH_WS_CLOSE && evs[0].len == 123);
}

TEST(ws_close_during_fragmented_message_and_input_after_close_ignored)
{
    unsigned char in[128];
    fh_ws_parser p;
    fh_ws_msg m;
    size_t used, n = frame(in, 0x01, "par", 3), closed_at;
    n += frame(in + n, 0x88, "\x03\xe9", 2);
    closed_at = n;
    n += frame_ex(in + n, 0x81, 0, 0, "unmasked junk", 13);
    fh_ws_parser_init(&p, 1024);
    CHECK(fh_ws_parse(&p, in, n, &used, &m) == FH_WS_CLOSE);
    CHECK(used == closed_at && m.close_code == 1001 && m.reason_len == 0);
    CHECK(fh_ws_parse(&p, in + used, n - used, &used, &m) == FH_WS_NEED_MORE);
    CHECK(used == n - closed_at);
    fh_ws_parser_free(&p);
}

TEST(ws_errors_are_sticky)
{
    unsigned char in[64], ok[16];
    fh_ws_parser p;
    fh_ws_msg m;
    size_t used, n = frame_ex(in, 0x81, 0, 0, "hi", 2), k = frame(ok, 0x81, "ok", 2);
    fh_ws_parser_init(&p, 1024);
    CHECK(fh_ws_parse(&p, in, n, &used, &m) == FH_WS_ERROR && m.close_code == 1002);
    CHECK(used <= n);
    CHECK(fh_ws_parse(&p, ok, k, &used, &m) == FH_WS_ERROR && m.close_code == 1002);
    CHECK(used == k); /* swallowed, so a loop `while (off < len)` ends */
    CHECK_STR(m.reason, "unmasked client frame");
    fh_ws_parser_free(&p);
}

/* ---- caps ---------------------------------------------------------------------------------- */

TEST(ws_max_message_enforced_with_1009)
{
    unsigned char in[256], body[64];
    size_t n;
    ev evs[MAX_EVS];
    fh_ws_parser p;
    fh_ws_msg m;
    memset(body, 'm', sizeof(body));

    n = frame(in, 0x82, body, 10);
    CHECK(run_all(in, n, 10, evs) == 1 && evs[0].r == FH_WS_MESSAGE && evs[0].len == 10);
    n = frame(in, 0x82, body, 11);
    EXPECT_ERROR("one frame over the cap", in, n, 10, 1009);
    n = frame(in, 0x01, body, 6);
    n += frame(in + n, 0x80, body, 4);
    CHECK(run_all(in, n, 10, evs) == 1 && evs[0].r == FH_WS_MESSAGE && evs[0].len == 10);
    n = frame(in, 0x01, body, 6);
    n += frame(in + n, 0x89, body, 50); /* control frames do not count */
    n += frame(in + n, 0x00, body, 3);
    n += frame(in + n, 0x80, body, 2);
    EXPECT_ERROR("fragments summing over the cap", in, n, 10, 1009);
    n = frame(in, 0x82, "x", 1);
    EXPECT_ERROR("any payload with a cap of 0", in, n, 0, 1009);

    /* the header alone is enough: a 1 MiB frame fails before any payload arrives or is buffered */
    fh_ws_parser_init(&p, 1024);
    memcpy(in, "\x82\xff\0\0\0\0\0\x10\0\0\1\2\3\4", 14);
    CHECK(fh_ws_parse(&p, in, 14, &n, &m) == FH_WS_ERROR && m.close_code == 1009 && n == 14);
    CHECK(p.msg == NULL);
    fh_ws_parser_free(&p);
}

/* ---- UTF-8 --------------------------------------------------------------------------------- */

TEST(ws_invalid_utf8_text_closes_with_1007)
{
    static const char *bad[] = {
        "\xff",             /* never valid */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong 3-byte */
        "\xf0\x80\x80\xaf", /* overlong 4-byte */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xed\xbf\xbf",     /* surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* over U+10FFFF */
        "\xf5\x80\x80\x80", /* lead byte over F4 */
        "\x80",             /* stray continuation */
        "a\xe2\x82",        /* ends inside a character */
        "\xe2\x82\x61",     /* interrupted character */
        "\xf0\x9f\x98",     /* ends inside a 4-byte character */
    };
    unsigned char in[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = frame(in, 0x81, bad[i], strlen(bad[i]));
        EXPECT_ERROR(bad[i], in, n, 1024, 1007);
        /* the same bytes are fine as binary */
        n = frame(in, 0x82, bad[i], strlen(bad[i]));
        ev evs[MAX_EVS];
        CHECK(run_all(in, n, 1024, evs) == 1 && evs[0].r == FH_WS_MESSAGE);
    }
}

TEST(ws_valid_utf8_edges_accepted)
{
    static const char text[] = "\x7f \xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 "
                               "\xef\xbf\xbf \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf";
    unsigned char in[128];
    ev evs[MAX_EVS];
    size_t n = frame(in, 0x81, text, sizeof(text) - 1);
    CHECK(run_all(in, n, 1024, evs) == 1);
    CHECK(evs[0].r == FH_WS_MESSAGE && evs[0].opcode == FH_WS_OP_TEXT);
    CHECK_STR(evs[0].text, text);
}

TEST(ws_utf8_code_point_split_across_fragments)
{
    unsigned char in[128];
    ev evs[MAX_EVS];
    size_t n = frame(in, 0x01, "\xe2", 1); /* U+20AC in three fragments, a ping between */
    n += frame(in + n, 0x89, "", 0);
    n += frame(in + n, 0x00, "\x82", 1);
    n += frame(in + n, 0x80, "\xac!", 2);
    n += frame(in + n, 0x01, "\xf0\x9f", 2); /* U+1F600 split in half */
    n += frame(in + n, 0x80, "\x98\x80", 2);
    CHECK(run_all(in, n, 1024, evs) == 3);
    CHECK(evs[0].r == FH_WS_PING);
    CHECK(evs[1].r == FH_WS_MESSAGE);
    CHECK_STR(evs[1].text, "\xe2\x82\xac!");
    CHECK(evs[2].r == FH_WS_MESSAGE);
    CHECK_STR(evs[2].text, "\xf0\x9f\x98\x80");

    n = frame(in, 0x01, "\xe2", 1); /* a split character the last fragment does not finish */
    n += frame(in + n, 0x80, "\x82", 1);
    EXPECT_ERROR("split character left unfinished", in, n, 1024, 1007);
    n = frame(in, 0x01, "\xe2", 1); /* the continuation fragment breaks it */
    n += frame(in + n, 0x80, "x", 1);
    EXPECT_ERROR("split character broken by the next fragment", in, n, 1024, 1007);
}

TEST(ws_invalid_utf8_fails_before_the_last_fragment)
{
    unsigned char in[64];
    ev evs[MAX_EVS];
    size_t n = frame(in, 0x01, "ok\xff", 3); /* no final fragment ever arrives */
    CHECK(run_all(in, n, 1024, evs) == 1);
    CHECK(evs[0].r == FH_WS_ERROR && evs[0].code == 1007);
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Turns a server frame into the equivalent masked client frame, so the parser can read it back. */
static size_t mask_server_frame(unsigned char *out, const unsigned char *f, size_t n)
{
    size_t h = (f[1] & 0x7F) == 126 ? 4 : (f[1] & 0x7F) == 127 ? 10 : 2;
    static const unsigned char k[4] = {0xa1, 0x02, 0xc3, 0x44};
    memcpy(out, f, h);
    out[1] |= 0x80;
    memcpy(out + h, k, 4);
    for (size_t i = h; i < n; i++)
        out[i + 4] = f[i] ^ k[(i - h) & 3];
    return n + 4;
}

TEST(ws_frame_header_lengths)
{
    unsigned char h[10];
    CHECK(fh_ws_frame_header(h, FH_WS_OP_TEXT, 0) == 2 && h[0] == 0x81 && h[1] == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_TEXT, 5) == 2 && memcmp(h, "\x81\x05", 2) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_PING, 5) == 2 && memcmp(h, "\x89\x05", 2) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_BINARY, 125) == 2 && memcmp(h, "\x82\x7d", 2) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_BINARY, 126) == 4 &&
          memcmp(h, "\x82\x7e\x00\x7e", 4) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_BINARY, 256) == 4 &&
          memcmp(h, "\x82\x7e\x01\x00", 4) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_BINARY, 65535) == 4 &&
          memcmp(h, "\x82\x7e\xff\xff", 4) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_BINARY, 65536) == 10 &&
          memcmp(h, "\x82\x7f\0\0\0\0\0\x01\0\0", 10) == 0);
    CHECK(fh_ws_frame_header(h, FH_WS_OP_TEXT, 0x0102030405060708ull) == 10 &&
          memcmp(h, "\x81\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10) == 0);
}

TEST(ws_frame_header_round_trips_through_the_parser)
{
    size_t sizes[] = {0, 125, 126, 65535, 65536};
    for (int s = 0; s < 5; s++) {
        size_t len = sizes[s], n, used;
        unsigned char *f = malloc(len + 10), *c = malloc(len + 14);
        fh_ws_parser p;
        fh_ws_msg m;
        n = fh_ws_frame_header(f, FH_WS_OP_BINARY, len);
        for (size_t i = 0; i < len; i++)
            f[n + i] = (unsigned char)(i ^ (i >> 8));
        n = mask_server_frame(c, f, n + len);
        fh_ws_parser_init(&p, 65536);
        CHECK(fh_ws_parse(&p, c, n, &used, &m) == FH_WS_MESSAGE && used == n);
        CHECK(m.len == len && m.opcode == FH_WS_OP_BINARY);
        CHECK(len == 0 || memcmp(m.data, f + (n - 4 - len), len) == 0);
        fh_ws_parser_free(&p);
        free(f);
        free(c);
    }
}

static int parse_close(const unsigned char *f, size_t n, fh_ws_parser *p, fh_ws_msg *m)
{
    unsigned char c[140];
    size_t used, k = mask_server_frame(c, f, n);
    fh_ws_parser_init(p, 16);
    return fh_ws_parse(p, c, k, &used, m);
}

TEST(ws_close_frame_encoding)
{
    unsigned char f[128];
    char reason[200];
    fh_ws_parser p;
    fh_ws_msg m;
    size_t n = fh_ws_close_frame(f, 1000, "bye");
    CHECK(n == 7 && memcmp(f, "\x88\x05\x03\xe8\x62ye", 7) == 0);
    CHECK(parse_close(f, n, &p, &m) == FH_WS_CLOSE && m.close_code == 1000);
    CHECK_STR(m.reason, "bye");
    fh_ws_parser_free(&p);

    CHECK(fh_ws_close_frame(f, 1002, NULL) == 4 && memcmp(f, "\x88\x02\x03\xea", 4) == 0);
    CHECK(fh_ws_close_frame(f, 0, "ignored") == 2 && memcmp(f, "\x88\x00", 2) == 0);

    memset(reason, 'a', 200); /* long ASCII: cut at exactly 123 bytes */
    reason[199] = '\0';
    n = fh_ws_close_frame(f, 1009, reason);
    CHECK(n == 127 && f[1] == 125);
    CHECK(parse_close(f, n, &p, &m) == FH_WS_CLOSE && m.reason_len == 123);
    fh_ws_parser_free(&p);

    memset(reason, 'a', 122); /* a 3-byte character straddling byte 123 is dropped whole */
    memcpy(reason + 122, "\xe2\x82\xac tail", 9);
    n = fh_ws_close_frame(f, 1009, reason);
    CHECK(n == 4 + 122 && f[1] == 124);
    CHECK(parse_close(f, n, &p, &m) == FH_WS_CLOSE && m.reason_len == 122);
    fh_ws_parser_free(&p);

    memset(reason, 'a', 120); /* one that ends exactly at byte 123 is kept */
    memcpy(reason + 120, "\xe2\x82\xac tail", 9);
    n = fh_ws_close_frame(f, 1009, reason);
    CHECK(n == 127 && memcmp(f + 124, "\xe2\x82\xac", 3) == 0);
    CHECK(parse_close(f, n, &p, &m) == FH_WS_CLOSE && m.reason_len == 123);
    fh_ws_parser_free(&p);

    memset(reason, 'a', 121); /* a 4-byte character over the edge */
    memcpy(reason + 121, "\xf0\x9f\x98\x80", 5);
    n = fh_ws_close_frame(f, 4000, reason);
    CHECK(n == 4 + 121);
    CHECK(parse_close(f, n, &p, &m) == FH_WS_CLOSE && m.close_code == 4000);
    fh_ws_parser_free(&p);
}
