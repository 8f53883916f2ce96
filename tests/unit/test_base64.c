/* fh_base64 is the one base64 codec (webhook secrets and signatures, WebSocket keys): it must
 * give RFC 4648's own test vectors, round-trip every length and refuse what is not base64. */
#include "fh_base64.h"
#include "fh_test.h"

#include <string.h>

TEST(base64_rfc4648_vectors_encode_and_decode)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char text[16];
    unsigned char out[16];
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        size_t n = strlen(plain[i]);
        CHECK(fh_b64_encode((const unsigned char *)plain[i], n, text, sizeof(text)) ==
              strlen(coded[i]));
        CHECK_STR(text, coded[i]);
        CHECK(fh_b64_decode(coded[i], strlen(coded[i]), out, sizeof(out)) == (long)n);
        CHECK(memcmp(out, plain[i], n) == 0);
    }
    /* padding is optional on the way in */
    CHECK(fh_b64_decode("Zm9vYg", 6, out, sizeof(out)) == 4 && memcmp(out, "foob", 4) == 0);
}

TEST(base64_digits_cover_the_standard_alphabet_only)
{
    CHECK(fh_b64_digit('A') == 0 && fh_b64_digit('Z') == 25);
    CHECK(fh_b64_digit('a') == 26 && fh_b64_digit('z') == 51);
    CHECK(fh_b64_digit('0') == 52 && fh_b64_digit('9') == 61);
    CHECK(fh_b64_digit('+') == 62 && fh_b64_digit('/') == 63);
    CHECK(fh_b64_digit('=') == -1);
    CHECK(fh_b64_digit('-') == -1 && fh_b64_digit('_') == -1); /* base64url is not this */
    CHECK(fh_b64_digit(' ') == -1);
}

TEST(base64_round_trips_every_length_and_rejects_junk)
{
    unsigned char in[40], out[40];
    char text[64];
    for (size_t n = 0; n <= sizeof(in); n++) {
        for (size_t k = 0; k < n; k++)
            in[k] = (unsigned char)(k * 37 + n);
        size_t tl = fh_b64_encode(in, n, text, sizeof(text));
        CHECK(tl == (n + 2) / 3 * 4);
        CHECK(fh_b64_decode(text, tl, out, sizeof(out)) == (long)n);
        CHECK(memcmp(in, out, n) == 0);
    }
    CHECK_STR((fh_b64_encode((const unsigned char *)"foob", 4, text, sizeof(text)), text),
              "Zm9vYg==");
    CHECK(fh_b64_encode(in, 3, text, 4) == 0); /* no room for the NUL */
    CHECK(fh_b64_decode("Zm9v!", 5, out, sizeof(out)) == -1);
    CHECK(fh_b64_decode("Z", 1, out, sizeof(out)) == -1);
    CHECK(fh_b64_decode("Zm9vYmFy", 8, out, 3) == -1);
}
