/* fh_aead must reproduce the published AES-256-GCM vectors, round-trip a sealed secret, and
 * refuse a tampered text, another AAD and another key (naming the key ids). */
#include "fh_aead.h"
#include "fh_test.h"
#include "fh_util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Copied into the project (tests/data/README.md); tests run from the repository root. */
#define VECTORS "tests/data/aes-256-gcm.json"

static size_t unhex(const char *s, unsigned char *out, size_t size)
{
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n && i < size; i++)
        out[i] = (unsigned char)(fh_hex_digit(s[2 * i]) << 4 | fh_hex_digit(s[2 * i + 1]));
    return n;
}

static const char *field(json_t *v, const char *name)
{
    const char *s = json_string_value(json_object_get(v, name));
    return s ? s : "";
}

TEST(aead_reproduces_the_gcm_spec_vectors)
{
    json_error_t jerr;
    json_t *root = json_load_file(VECTORS, 0, &jerr);
    CHECK(root != NULL);
    if (!root)
        return;
    json_t *list = json_object_get(root, "vectors"), *v;
    size_t i;
    CHECK(json_array_size(list) == 4);
    json_array_foreach(list, i, v)
    {
        unsigned char key[32], iv[12], aad[64], pt[64], ct[64], tag[16], got[64], gtag[16],
            back[64];
        CHECK(unhex(field(v, "key"), key, sizeof(key)) == 32);
        CHECK(unhex(field(v, "iv"), iv, sizeof(iv)) == 12);
        size_t an = unhex(field(v, "aad"), aad, sizeof(aad));
        size_t n = unhex(field(v, "pt"), pt, sizeof(pt));
        CHECK(unhex(field(v, "ct"), ct, sizeof(ct)) == n);
        unhex(field(v, "tag"), tag, sizeof(tag));
        CHECK(fh_aead_gcm_encrypt(key, iv, aad, an, pt, n, got, gtag) == FH_OK);
        CHECK(memcmp(got, ct, n) == 0);
        CHECK(memcmp(gtag, tag, 16) == 0);
        CHECK(fh_aead_gcm_decrypt(key, iv, aad, an, ct, n, tag, back) == FH_OK);
        CHECK(memcmp(back, pt, n) == 0);
        tag[0] ^= 1;
        CHECK(fh_aead_gcm_decrypt(key, iv, aad, an, ct, n, tag, back) == FH_ERR_INVAL);
    }
    json_decref(root);
}

static const char key_a[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char key_b[] = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(aead_seals_and_opens_a_secret_bound_to_its_id)
{
    fh_aead_key k;
    char err[256], sealed[FH_AEAD_SEALED_SIZE(64)], sealed2[sizeof(sealed)], out[128];
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    size_t n = 0;
    CHECK(fh_aead_key_hex(key_a, &k, err, sizeof(err)) == FH_OK);
    CHECK(strlen(k.id) == 8);
    CHECK(fh_aead_seal(&k, "ep_1", secret, strlen(secret), sealed, sizeof(sealed), err,
                       sizeof(err)) == FH_OK);
    CHECK(strncmp(sealed, "v1:", 3) == 0 && strncmp(sealed + 3, k.id, 8) == 0);
    CHECK(strstr(sealed, "MfKQ9r8") == NULL);
    CHECK(fh_aead_open(&k, "ep_1", sealed, out, sizeof(out), &n, err, sizeof(err)) == FH_OK);
    CHECK_STR(out, secret);
    CHECK(n == strlen(secret));
    /* a fresh IV each time: the same secret never seals to the same text */
    CHECK(fh_aead_seal(&k, "ep_1", secret, strlen(secret), sealed2, sizeof(sealed2), err,
                       sizeof(err)) == FH_OK);
    CHECK(strcmp(sealed, sealed2) != 0);
    /* another endpoint's id (AAD) does not open it */
    CHECK(fh_aead_open(&k, "ep_2", sealed, out, sizeof(out), &n, err, sizeof(err)) == FH_ERR_INVAL);
    CHECK(strstr(err, "authenticate") != NULL);
}

TEST(aead_detects_tampering_and_names_a_wrong_key)
{
    fh_aead_key a, b;
    char err[256], sealed[FH_AEAD_SEALED_SIZE(64)], out[128];
    CHECK(fh_aead_key_hex(key_a, &a, err, sizeof(err)) == FH_OK);
    CHECK(fh_aead_key_hex(key_b, &b, err, sizeof(err)) == FH_OK);
    CHECK(strcmp(a.id, b.id) != 0);
    CHECK(fh_aead_seal(&a, "ep_1", "s3cret", 6, sealed, sizeof(sealed), err, sizeof(err)) == FH_OK);
    CHECK(fh_aead_open(&b, "ep_1", sealed, out, sizeof(out), NULL, err, sizeof(err)) ==
          FH_ERR_INVAL);
    CHECK(strstr(err, a.id) != NULL && strstr(err, b.id) != NULL);
    /* every changed character of the base64 part is caught (but the last one before the
     * padding: its low bits carry no data, so some changes decode to the same bytes) */
    size_t end = strcspn(sealed, "=") - 1;
    for (size_t i = 12; i < end; i++) {
        char t[sizeof(sealed)];
        memcpy(t, sealed, sizeof(t));
        t[i] = t[i] == 'A' ? 'B' : 'A';
        CHECK(fh_aead_open(&a, "ep_1", t, out, sizeof(out), NULL, err, sizeof(err)) != FH_OK);
    }
    CHECK(fh_aead_open(&a, "ep_1", "plain", out, sizeof(out), NULL, err, sizeof(err)) ==
          FH_ERR_PARSE);
    CHECK(fh_aead_key_hex("abcd", &a, err, sizeof(err)) == FH_ERR_CONFIG);
    CHECK(strstr(err, "openssl rand -hex 32") != NULL);
    CHECK(fh_aead_key_hex(" 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", &a,
                          err, sizeof(err)) == FH_OK);
}

TEST(aead_reads_a_key_file_as_openssl_writes_it)
{
    char path[] = "/tmp/firehose-aead-key-XXXXXX", err[256];
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *text = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    fh_aead_key a, b;
    CHECK(fh_aead_key_file(path, &a, err, sizeof(err)) == FH_OK);
    CHECK(fh_aead_key_hex(text, &b, err, sizeof(err)) == FH_OK);
    CHECK(memcmp(a.k, b.k, sizeof(a.k)) == 0 && strcmp(a.id, b.id) == 0);
    unlink(path);
    CHECK(fh_aead_key_file(path, &a, err, sizeof(err)) == FH_ERR_IO);
    CHECK(strstr(err, path) != NULL);
}
