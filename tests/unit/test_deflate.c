/* permessage-deflate (lib/fh_deflate, RSV1 in lib/fh_ws): which offers the broker accepts and
 * what it answers, that a stored head plus shared compressed bytes is one valid message, that a
 * variant is compressed once and then shared, and that inflating is capped and rejects broken
 * input. zlib itself is the oracle for what a client decodes. */
#include "fh_deflate.h"
#include "fh_test.h"
#include "fh_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* What a client does with a compressed message (RFC 7692 7.2.2): append 00 00 ff ff, inflate
 * from an empty window. Returns the length, or -1. */
static long client_inflate(const unsigned char *z, size_t zlen, unsigned char *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, -15) != Z_OK)
        return -1;
    unsigned char *in = malloc(zlen + 4);
    memcpy(in, z, zlen);
    memcpy(in + zlen, "\x00\x00\xff\xff", 4);
    s.next_in = in;
    s.avail_in = (uInt)(zlen + 4);
    s.next_out = out;
    s.avail_out = (uInt)cap;
    int rc = inflate(&s, Z_SYNC_FLUSH);
    long n = (rc == Z_OK || rc == Z_STREAM_END) && s.avail_in == 0 ? (long)(cap - s.avail_out) : -1;
    inflateEnd(&s);
    free(in);
    return n;
}

/* The broker's own inflater is strict (it notices a message that ends inside a block, which
 * zlib alone lets pass): every form the broker sends must satisfy it. */
static long strict_inflate(const unsigned char *z, size_t zlen, unsigned char *out, size_t cap)
{
    fh_inflater *f = fh_inflater_new();
    const unsigned char *o;
    size_t olen;
    char err[128];
    long n = -1;
    if (fh_inflate_message(f, z, zlen, cap, &o, &olen, err, sizeof(err)) == FH_OK) {
        memcpy(out, o, olen);
        n = (long)olen;
    }
    fh_inflater_free(f);
    return n;
}

static const char *EVENT =
    "\",\"cursor\":\"6.2a.2t.35.w.x.13\",\"event\":{\"specversion\":\"1.0\",\"id\":"
    "\"5d8f0c1e-9b7a-4c1e-8f2a-1b2c3d4e5f60\",\"source\":\"buildbot://master-1\",\"type\":"
    "\"build.finished\",\"time\":\"2026-11-22T05:00:00.123Z\",\"subject\":\"builds/4711\","
    "\"datacontenttype\":\"application/json\",\"master\":\"master-1\",\"seq\":42,\"data\":{"
    "\"buildrequestid\":4711,\"buildid\":9001,\"builder\":\"linux-rel\",\"builderid\":12,"
    "\"branch\":\"main\",\"revision\":\"3f1c9a0b2d4e6f8a1c3e5f7a9b0d2e4f6a8c0e1f\","
    "\"repository\":\"https://git.example.org/x.git\",\"project\":\"x\",\"codebase\":\"\","
    "\"owner\":\"alice@example.org\",\"number\":7,\"complete_at\":1795150800.5,\"results\":0,"
    "\"state_string\":\"build successful\",\"duration_s\":812.25}}";

TEST(deflate_negotiate_accepts_plain_and_no_context_takeover_offers)
{
    char out[256];
    CHECK(fh_deflate_negotiate("permessage-deflate", out, sizeof(out)) == 1);
    CHECK_STR(out, FH_DEFLATE_RESPONSE);
    /* what browsers and Python's websockets send */
    CHECK(fh_deflate_negotiate("permessage-deflate; client_max_window_bits", out, sizeof(out)));
    CHECK_STR(out, FH_DEFLATE_RESPONSE);
    CHECK(fh_deflate_negotiate("permessage-deflate; client_max_window_bits=10; "
                               "server_no_context_takeover; client_no_context_takeover",
                               out, sizeof(out)));
    CHECK_STR(out, FH_DEFLATE_RESPONSE);
    CHECK(
        fh_deflate_negotiate("PerMessage-Deflate;server_max_window_bits=\"15\"", out, sizeof(out)));
    CHECK_STR(out, FH_DEFLATE_RESPONSE "; server_max_window_bits=15");
    /* the first acceptable offer wins; other extensions are skipped */
    CHECK(fh_deflate_negotiate("x-webkit-deflate-frame, permessage-deflate; "
                               "server_max_window_bits=10, permessage-deflate",
                               out, sizeof(out)));
    CHECK_STR(out, FH_DEFLATE_RESPONSE);
    CHECK(fh_deflate_negotiate("foo; bar=\"a,b\", permessage-deflate", out, sizeof(out)));
}

TEST(deflate_negotiate_declines_what_it_cannot_honour)
{
    char out[256];
    const char *no[] = {
        NULL,
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=10", /* smaller window than the shared bytes */
        "permessage-deflate; server_max_window_bits",    /* value required */
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; unknown_param",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; ;", /* malformed */
        "permessage-deflate; a=\"unclosed",
        "permessage-deflate junk",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        strcpy(out, "x");
        CHECK(fh_deflate_negotiate(no[i], out, sizeof(out)) == 0);
        CHECK_STR(out, "");
    }
    /* no room for the answer: declined rather than cut */
    CHECK(fh_deflate_negotiate("permessage-deflate", out, 10) == 0);
}

TEST(deflate_message_round_trips_through_a_client_inflater)
{
    fh_deflater *d = fh_deflater_new(6);
    unsigned char *z, out[4096];
    size_t zlen, n = strlen(EVENT);
    CHECK(d != NULL);
    for (int round = 0; round < 3; round++) { /* no context takeover: the same bytes each time */
        CHECK(fh_deflate_message(d, EVENT, n, &z, &zlen) == FH_OK);
        CHECK(zlen < n * 4 / 5); /* one status event alone: about 0.6 */
        CHECK(client_inflate(z, zlen, out, sizeof(out)) == (long)n);
        CHECK(memcmp(out, EVENT, n) == 0);
        free(z);
    }
    CHECK(fh_deflate_message(d, "", 0, &z, &zlen) == FH_OK);
    CHECK(client_inflate(z, zlen, out, sizeof(out)) == 0);
    free(z);
    fh_deflater_free(d);
    CHECK(fh_deflater_new(0) == NULL && fh_deflater_new(10) == NULL);
}

TEST(deflate_stored_head_then_shared_bytes_is_one_message)
{
    fh_deflater *d = fh_deflater_new(6);
    const char *heads[] = {"{\"op\":\"event\",\"sub\":\"s1", "{\"op\":\"event\",\"sub\":\"a-much-"
                                                             "longer-subscription-id.0123456789"};
    unsigned char *z, msg[8192], out[8192];
    size_t zlen, n = strlen(EVENT);
    CHECK(fh_deflate_message(d, EVENT, n, &z, &zlen) == FH_OK);
    for (int i = 0; i < 2; i++) {
        size_t hl = strlen(heads[i]), m = fh_deflate_stored_header(msg, hl);
        CHECK(m == 5);
        memcpy(msg + m, heads[i], hl);
        memcpy(msg + m + hl, z, zlen);
        long got = client_inflate(msg, m + hl + zlen, out, sizeof(out));
        CHECK(got == (long)(hl + n));
        CHECK(memcmp(out, heads[i], hl) == 0 && memcmp(out + hl, EVENT, n) == 0);
        /* and the broker's own inflater agrees */
        fh_inflater *f = fh_inflater_new();
        const unsigned char *o;
        size_t olen;
        char err[128];
        CHECK(fh_inflate_message(f, msg, m + hl + zlen, 65536, &o, &olen, err, sizeof(err)) ==
              FH_OK);
        CHECK(olen == hl + n && memcmp(o + hl, EVENT, n) == 0 && o[olen] == '\0');
        fh_inflater_free(f);
    }
    free(z);
    fh_deflater_free(d);
}

TEST(deflate_stored_blocks_carry_any_length_uncompressed)
{
    size_t lens[] = {0, 1, 700, 65535, 65536, 200000};
    unsigned char *in = malloc(200000), *st = malloc(FH_DEFLATE_STORED_SIZE(200000)),
                  *out = malloc(200001);
    for (size_t i = 0; i < 200000; i++)
        in[i] = (unsigned char)(i * 7 + (i >> 9));
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t n = fh_deflate_stored(st, in, lens[k]);
        CHECK(n == FH_DEFLATE_STORED_SIZE(lens[k]));
        CHECK(strict_inflate(st, n, out, 200001) == (long)lens[k]);
        CHECK(memcmp(out, in, lens[k]) == 0);
        CHECK(client_inflate(st, n, out, 200001) == (long)lens[k]);
    }
    CHECK(FH_DEFLATE_STORED_SIZE(0) == 1 && FH_DEFLATE_STORED_SIZE(65536) == 65536 + 11);
    free(in);
    free(st);
    free(out);
}

TEST(deflate_frame_header_sets_rsv1_and_the_parser_takes_it_once_allowed)
{
    unsigned char h[10];
    size_t n = fh_deflate_frame_header(h, 300);
    CHECK(n == 4 && h[0] == (0x80 | 0x40 | FH_WS_OP_TEXT) && h[1] == 126);

    /* a client frame: FIN + RSV1 + text, masked with a zero key for simplicity */
    unsigned char frame[64] = {0xC1, 0x80 | 3, 0, 0, 0, 0, 'a', 'b', 'c'};
    fh_ws_parser p;
    fh_ws_msg m;
    size_t used;
    fh_ws_parser_init(&p, 1024);
    CHECK(fh_ws_parse(&p, frame, 9, &used, &m) == FH_WS_ERROR && m.close_code == 1002);
    fh_ws_parser_free(&p);
    fh_ws_parser_init(&p, 1024);
    fh_ws_parser_allow_compressed(&p);
    CHECK(fh_ws_parse(&p, frame, 9, &used, &m) == FH_WS_MESSAGE && m.compressed && m.len == 3);
    /* not compressed: the next message says so */
    unsigned char plain[] = {0x81, 0x80 | 1, 0, 0, 0, 0, 'x'};
    CHECK(fh_ws_parse(&p, plain, sizeof(plain), &used, &m) == FH_WS_MESSAGE && !m.compressed);
    /* compressed text is not UTF-8 checked before inflating */
    unsigned char bin[] = {0xC1, 0x80 | 2, 0, 0, 0, 0, 0xff, 0xfe};
    CHECK(fh_ws_parse(&p, bin, sizeof(bin), &used, &m) == FH_WS_MESSAGE && m.compressed);
    /* RSV1 on a control frame or a continuation, RSV2 anywhere: still errors */
    unsigned char ping[] = {0xC9, 0x80, 0, 0, 0, 0};
    CHECK(fh_ws_parse(&p, ping, sizeof(ping), &used, &m) == FH_WS_ERROR && m.close_code == 1002);
    fh_ws_parser_free(&p);
    fh_ws_parser_init(&p, 1024);
    fh_ws_parser_allow_compressed(&p);
    unsigned char frag[] = {0x41, 0x80 | 1, 0, 0, 0, 0, 'a', 0xC0, 0x80 | 1, 0, 0, 0, 0, 'b'};
    CHECK(fh_ws_parse(&p, frag, sizeof(frag), &used, &m) == FH_WS_ERROR && m.close_code == 1002);
    fh_ws_parser_free(&p);
    fh_ws_parser_init(&p, 1024);
    fh_ws_parser_allow_compressed(&p);
    unsigned char rsv2[] = {0xA1, 0x80, 0, 0, 0, 0};
    CHECK(fh_ws_parse(&p, rsv2, sizeof(rsv2), &used, &m) == FH_WS_ERROR);
    fh_ws_parser_free(&p);
    CHECK(fh_utf8_valid("h\xc3\xa9", 3));
    CHECK(!fh_utf8_valid("\xc3", 1));
}

TEST(deflate_cache_compresses_a_variant_once_and_stores_what_does_not_pay)
{
    fh_deflater *d = fh_deflater_new(6);
    fh_deflate_cache *c = NULL;
    size_t zlen, added, n = strlen(EVENT);
    int z;
    unsigned char out[4096];
    const unsigned char *a = fh_deflate_cached(&c, d, 0, EVENT, n, &zlen, &z, &added);
    CHECK(a != NULL && z && zlen < n && added > zlen);
    CHECK(strict_inflate(a, zlen, out, sizeof(out)) == (long)n && memcmp(out, EVENT, n) == 0);
    size_t zlen2;
    const unsigned char *b = fh_deflate_cached(&c, d, 0, EVENT, n, &zlen2, &z, &added);
    CHECK(b == a && zlen2 == zlen && added == 0 && z);
    /* another variant: its own bytes */
    const unsigned char *v1 = fh_deflate_cached(&c, d, 1, EVENT + 20, n - 20, &zlen2, &z, &added);
    CHECK(v1 != NULL && v1 != a && added > 0 && z);
    /* too short to compress: stored, and still a whole message */
    const unsigned char *st = fh_deflate_cached(&c, d, 2, EVENT, 10, &zlen2, &z, &added);
    CHECK(st != NULL && !z && zlen2 == FH_DEFLATE_STORED_SIZE(10));
    CHECK(strict_inflate(st, zlen2, out, sizeof(out)) == 10 && memcmp(out, EVENT, 10) == 0);
    fh_deflate_cache_free(c);
    /* random bytes do not compress: stored, and that answer is kept */
    unsigned char rnd[512];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        rnd[i] = (unsigned char)x;
    }
    c = NULL;
    a = fh_deflate_cached(&c, d, 0, rnd, sizeof(rnd), &zlen, &z, &added);
    CHECK(a != NULL && !z && zlen == sizeof(rnd) + 6 && added > 0);
    CHECK(strict_inflate(a, zlen, out, sizeof(out)) == (long)sizeof(rnd));
    CHECK(fh_deflate_cached(&c, d, 0, rnd, sizeof(rnd), &zlen, &z, &added) == a && added == 0);
    CHECK(fh_deflate_cached(&c, d, FH_DEFLATE_VARIANTS, EVENT, n, &zlen, &z, &added) == NULL);
    fh_deflate_cache_free(c);
    fh_deflate_cache_free(NULL);
    fh_deflater_free(d);
}

/* Compresses len bytes with zlib as a client would (sync flush, trailer removed). */
static unsigned char *client_deflate(const void *in, size_t len, int finish, size_t *zlen)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&s, (uLong)len) + 16;
    unsigned char *out = malloc(cap);
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)len;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    deflate(&s, finish ? Z_FINISH : Z_SYNC_FLUSH);
    *zlen = cap - s.avail_out - (finish ? 0 : 4);
    deflateEnd(&s);
    return out;
}

TEST(deflate_inflate_is_capped_and_rejects_broken_input)
{
    fh_inflater *f = fh_inflater_new();
    const unsigned char *o;
    size_t olen, zlen;
    char err[128];
    /* a 1 MiB bomb of zeros is about a kilobyte compressed: stopped at the cap */
    size_t big = 1 << 20;
    unsigned char *zeros = calloc(1, big);
    unsigned char *z = client_deflate(zeros, big, 0, &zlen);
    CHECK(zlen < 2048);
    CHECK(fh_inflate_message(f, z, zlen, 65536, &o, &olen, err, sizeof(err)) == FH_ERR_TOOBIG);
    CHECK(strstr(err, "65536") != NULL);
    CHECK(fh_inflate_message(f, z, zlen, big, &o, &olen, err, sizeof(err)) == FH_OK);
    CHECK(olen == big && o[0] == 0 && o[big - 1] == 0);
    CHECK(fh_inflate_message(f, z, zlen, big - 1, &o, &olen, err, sizeof(err)) == FH_ERR_TOOBIG);
    free(z);
    /* the inflater is reused: no context carried over (client_no_context_takeover) */
    const char *sub = "{\"op\":\"subscribe\",\"id\":\"s1\",\"filter\":{\"type\":\"build.*\"}}";
    for (int round = 0; round < 2; round++) {
        z = client_deflate(sub, strlen(sub), round, &zlen); /* with and without a final block */
        CHECK(fh_inflate_message(f, z, zlen, 1024, &o, &olen, err, sizeof(err)) == FH_OK);
        CHECK(olen == strlen(sub) && memcmp(o, sub, olen) == 0);
        free(z);
    }
    /* a final block followed by more bytes */
    z = client_deflate(sub, strlen(sub), 1, &zlen);
    unsigned char more[256];
    memcpy(more, z, zlen);
    memcpy(more + zlen, "junk", 4);
    CHECK(fh_inflate_message(f, more, zlen + 4, 1024, &o, &olen, err, sizeof(err)) == FH_ERR_PARSE);
    free(z);
    /* not DEFLATE at all (BTYPE 11 is reserved) */
    unsigned char bad[] = {0xff, 0xff, 0xff, 0xff};
    CHECK(fh_inflate_message(f, bad, sizeof(bad), 1024, &o, &olen, err, sizeof(err)) ==
          FH_ERR_PARSE);
    /* cut short: a stored block of 100 bytes with 2 of them */
    unsigned char cut[] = {0x00, 100, 0, 155, 0xff, 'a', 'b'};
    CHECK(fh_inflate_message(f, cut, sizeof(cut), 1024, &o, &olen, err, sizeof(err)) ==
          FH_ERR_PARSE);
    CHECK(strstr(err, "truncated") != NULL);
    /* an empty payload is not DEFLATE (an empty message is at least one byte, RFC 7692 7.2.3.6) */
    CHECK(fh_inflate_message(f, "", 0, 1024, &o, &olen, err, sizeof(err)) != FH_OK);
    unsigned char empty[] = {0x00};
    CHECK(fh_inflate_message(f, empty, 1, 1024, &o, &olen, err, sizeof(err)) == FH_OK && olen == 0);
    free(zeros);
    fh_inflater_free(f);
    fh_inflater_free(NULL);
}
