/* libFuzzer target for lib/fh_deflate.c: the permessage-deflate offer parser and the capped
 * inflater that takes compressed client messages. Not part of the build (make fuzz builds it).
 *
 * The first input byte picks what the rest is: even, a Sec-WebSocket-Extensions value
 * (fh_deflate_negotiate must answer 0 with "" or 1 with the documented response); odd, a
 * compressed message (fh_inflate_message with a 4096-byte cap must return FH_OK with at most
 * 4096 NUL-terminated bytes, or FH_ERR_TOOBIG / FH_ERR_PARSE, never crash or allocate past the
 * cap). Then the same bytes, compressed by fh_deflate_message and as stored blocks, must inflate
 * back to themselves. */
#include "fh_deflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAP 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x)                                                                                 \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static fh_inflater *inf;
static fh_deflater *def;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *out;
    size_t outlen;
    char err[256], resp[256];
    if (!inf) {
        inf = fh_inflater_new();
        def = fh_deflater_new(6);
    }
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        char *s = malloc(n + 1);
        memcpy(s, p, n);
        s[n] = '\0';
        int r = fh_deflate_negotiate(s, resp, sizeof(resp));
        REQUIRE(r == 0 || r == 1);
        REQUIRE(r ? strncmp(resp, FH_DEFLATE_RESPONSE, strlen(FH_DEFLATE_RESPONSE)) == 0
                  : resp[0] == '\0');
        free(s);
    } else {
        fh_err rc = fh_inflate_message(inf, p, n, CAP, &out, &outlen, err, sizeof(err));
        REQUIRE(rc == FH_OK || rc == FH_ERR_TOOBIG || rc == FH_ERR_PARSE);
        if (rc == FH_OK)
            REQUIRE(outlen <= CAP && out[outlen] == '\0');
    }
    if (n > CAP)
        return 0;
    unsigned char *z;
    size_t zlen;
    REQUIRE(fh_deflate_message(def, p, n, &z, &zlen) == FH_OK);
    REQUIRE(fh_inflate_message(inf, z, zlen, CAP, &out, &outlen, err, sizeof(err)) == FH_OK);
    REQUIRE(outlen == n && memcmp(out, p, n) == 0);
    free(z);
    unsigned char *st = malloc(FH_DEFLATE_STORED_SIZE(n));
    size_t sl = fh_deflate_stored(st, p, n);
    REQUIRE(sl == FH_DEFLATE_STORED_SIZE(n));
    REQUIRE(fh_inflate_message(inf, st, sl, CAP, &out, &outlen, err, sizeof(err)) == FH_OK);
    REQUIRE(outlen == n && memcmp(out, p, n) == 0);
    free(st);
    return 0;
}
