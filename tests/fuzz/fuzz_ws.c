/* libFuzzer target for the WebSocket frame parser (lib/fh_ws.c). Not part of the build.
 *
 * Build and run (fh_ws.c is compiled in rather than taken from build/asan/libfirehose.a so that
 * libFuzzer's coverage instrumentation reaches the parser):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
 *     -Ilib tests/fuzz/fuzz_ws.c lib/fh_ws.c $(pkg-config --libs libcrypto) -o build/fuzz_ws
 *   mkdir -p build/fuzz_ws_corpus && build/fuzz_ws -max_total_time=60 build/fuzz_ws_corpus
 *
 * The first input byte picks where the rest is split into two chunks. The same bytes are also fed
 * whole and byte by byte; all three feedings must give the same events. Checked on every call:
 * consumed <= len; NEED_MORE consumes everything, any other result at least one byte; messages
 * stay within max_message and are NUL-terminated; text messages and close reasons are UTF-8 (by
 * an independent decoder); error codes are 1002, 1007 or 1009 and errors are sticky; input after
 * an error or a close is swallowed. */
#include "fh_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE 300

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x)                                                                                 \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

/* A decoder written differently from the parser's range checker: decode, then judge the value. */
static int ref_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len, cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07;
        else
            return 0;
        if (n - i < len)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

typedef struct run {
    fh_ws_parser p;
    uint64_t transcript; /* FNV-1a over every event */
    int events, done;
} run;

static void mix(run *r, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        r->transcript = (r->transcript ^ b[i]) * 1099511628211ull;
}

static void check_event(run *r, int res, const fh_ws_msg *m)
{
    unsigned code = m->close_code;
    mix(r, &res, sizeof(res));
    switch (res) {
    case FH_WS_MESSAGE:
        REQUIRE(m->opcode == FH_WS_OP_TEXT || m->opcode == FH_WS_OP_BINARY);
        REQUIRE(m->len <= MAX_MESSAGE);
        REQUIRE(m->data[m->len] == '\0');
        if (m->opcode == FH_WS_OP_TEXT)
            REQUIRE(ref_utf8_valid(m->data, m->len));
        mix(r, &m->opcode, sizeof(m->opcode));
        mix(r, m->data, m->len);
        break;
    case FH_WS_PING:
    case FH_WS_PONG:
        REQUIRE(m->opcode == (res == FH_WS_PING ? FH_WS_OP_PING : FH_WS_OP_PONG));
        REQUIRE(m->len <= 125 && m->data[m->len] == '\0');
        mix(r, m->data, m->len);
        break;
    case FH_WS_CLOSE:
        REQUIRE(m->opcode == FH_WS_OP_CLOSE && m->reason && m->reason_len <= 123);
        REQUIRE(m->reason[m->reason_len] == '\0');
        REQUIRE(ref_utf8_valid((const unsigned char *)m->reason, m->reason_len));
        REQUIRE((code == 1005 && m->reason_len == 0) || (code >= 1000 && code <= 1003) ||
                (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999));
        mix(r, &code, sizeof(code));
        mix(r, m->reason, m->reason_len);
        r->done = 1;
        break;
    case FH_WS_ERROR:
        REQUIRE(code == 1002 || code == 1007 || code == 1009);
        REQUIRE(m->reason && m->reason_len > 0 && strlen(m->reason) == m->reason_len);
        mix(r, &code, sizeof(code));
        r->done = 1;
        break;
    default:
        REQUIRE(0);
    }
    r->events++;
}

/* Feeds one chunk, copied to an exactly-sized heap block so ASan sees any read past its end. */
static void feed(run *r, const uint8_t *data, size_t len)
{
    unsigned char *chunk = malloc(len ? len : 1);
    size_t at = 0;
    REQUIRE(chunk);
    memcpy(chunk, data, len);
    for (;;) {
        fh_ws_msg m;
        size_t used = (size_t)-1, left = len - at;
        int res = fh_ws_parse(&r->p, chunk + at, left, &used, &m);
        REQUIRE(used <= left);
        if (r->done) {
            /* after CLOSE everything is swallowed; after ERROR too, and the error sticks */
            REQUIRE(used == left);
            REQUIRE(res == FH_WS_NEED_MORE || res == FH_WS_ERROR);
            break;
        }
        at += used;
        if (res == FH_WS_NEED_MORE) {
            REQUIRE(used == left);
            break;
        }
        REQUIRE(used >= 1);
        check_event(r, res, &m);
    }
    free(chunk);
}

static void start(run *r)
{
    fh_ws_parser_init(&r->p, MAX_MESSAGE);
    r->transcript = 1469598103934665603ull;
    r->events = r->done = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run two, whole, bytes;
    size_t split, n;
    if (size < 1)
        return 0;
    n = size - 1;
    split = n * data[0] / 255;
    data++;

    start(&two);
    feed(&two, data, split);
    feed(&two, data + split, n - split);

    start(&whole);
    feed(&whole, data, n);

    start(&bytes);
    for (size_t i = 0; i < n; i++)
        feed(&bytes, data + i, 1);

    REQUIRE(two.events == whole.events && two.transcript == whole.transcript);
    REQUIRE(bytes.events == whole.events && bytes.transcript == whole.transcript);
    REQUIRE(whole.p.msg_cap <= MAX_MESSAGE + 1);
    fh_ws_parser_free(&two.p);
    fh_ws_parser_free(&whole.p);
    fh_ws_parser_free(&bytes.p);
    return 0;
}
