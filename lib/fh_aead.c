/* fh_aead: AES-256-GCM sealing of small secrets; see fh_aead.h. */
#include "fh_aead.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "fh_base64.h"
#include "fh_util.h"

#define SEALED_MAX_BYTES 4096 /* the raw bytes of one sealed text at most (secrets are small) */

fh_err fh_aead_key_hex(const char *hex, fh_aead_key *out, char *errbuf, size_t errsize)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    size_t n = 0;
    while (*hex == ' ' || *hex == '\t' || *hex == '\n' || *hex == '\r')
        hex++;
    for (; n < 2 * FH_AEAD_KEY_SIZE; n += 2) {
        int hi = fh_hex_digit(hex[n]), lo = hi < 0 ? -1 : fh_hex_digit(hex[n + 1]);
        if (hi < 0 || lo < 0)
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                           "expected 64 hex characters (make one with: openssl rand -hex 32), "
                           "found %zu",
                           n + (hi >= 0));
        out->k[n / 2] = (unsigned char)(hi << 4 | lo);
    }
    for (const char *p = hex + n; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                           "expected 64 hex characters (make one with: openssl rand -hex 32), "
                           "found more");
    SHA256(out->k, FH_AEAD_KEY_SIZE, md);
    snprintf(out->id, sizeof(out->id), "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
    return FH_OK;
}

fh_err fh_aead_key_file(const char *path, fh_aead_key *out, char *errbuf, size_t errsize)
{
    char text[256], err[160];
    FILE *f = fopen(path, "r");
    if (!f)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "%s: %s", path, strerror(errno));
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    if (fh_aead_key_hex(text, out, err, sizeof(err)))
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: %s", path, err);
    return FH_OK;
}

/* One pass of EVP AES-256-GCM (enc 1: encrypt and write tag; 0: decrypt and check tag). */
static fh_err gcm(int enc, const unsigned char *key, const unsigned char *iv, const void *aad,
                  size_t aadlen, const unsigned char *in, size_t n, unsigned char *out,
                  unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok;
    if (!c)
        return FH_ERR_NOMEM;
    ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, FH_AEAD_IV_SIZE, NULL) == 1 &&
         EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) == 1 &&
         (aadlen == 0 || EVP_CipherUpdate(c, NULL, &len, aad, (int)aadlen) == 1) &&
         (n == 0 || EVP_CipherUpdate(c, out, &len, in, (int)n) == 1) &&
         (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, FH_AEAD_TAG_SIZE, tag) == 1) &&
         EVP_CipherFinal_ex(c, out + (n ? len : 0), &len) == 1 &&
         (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, FH_AEAD_TAG_SIZE, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok ? FH_OK : FH_ERR_INVAL;
}

fh_err fh_aead_gcm_encrypt(const unsigned char key[FH_AEAD_KEY_SIZE],
                           const unsigned char iv[FH_AEAD_IV_SIZE], const void *aad, size_t aadlen,
                           const void *pt, size_t n, unsigned char *ct,
                           unsigned char tag[FH_AEAD_TAG_SIZE])
{
    return gcm(1, key, iv, aad, aadlen, pt, n, ct, tag);
}

fh_err fh_aead_gcm_decrypt(const unsigned char key[FH_AEAD_KEY_SIZE],
                           const unsigned char iv[FH_AEAD_IV_SIZE], const void *aad, size_t aadlen,
                           const unsigned char *ct, size_t n,
                           const unsigned char tag[FH_AEAD_TAG_SIZE], unsigned char *pt)
{
    return gcm(0, key, iv, aad, aadlen, ct, n, pt, (unsigned char *)tag);
}

fh_err fh_aead_seal(const fh_aead_key *key, const char *aad, const void *pt, size_t n, char *out,
                    size_t size, char *errbuf, size_t errsize)
{
    unsigned char raw[SEALED_MAX_BYTES];
    size_t rn = FH_AEAD_IV_SIZE + n + FH_AEAD_TAG_SIZE;
    if (rn > sizeof(raw) || size < FH_AEAD_SEALED_SIZE(n))
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "secret too long to seal (%zu bytes)", n);
    if (getrandom(raw, FH_AEAD_IV_SIZE, 0) != FH_AEAD_IV_SIZE)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "no randomness for an IV: %s", strerror(errno));
    if (fh_aead_gcm_encrypt(key->k, raw, aad, strlen(aad), pt, n, raw + FH_AEAD_IV_SIZE,
                            raw + FH_AEAD_IV_SIZE + n))
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "AES-256-GCM encryption failed");
    int h = snprintf(out, size, "v1:%s:", key->id);
    fh_b64_encode(raw, rn, out + h, size - (size_t)h);
    return FH_OK;
}

fh_err fh_aead_open(const fh_aead_key *key, const char *aad, const char *sealed, char *out,
                    size_t size, size_t *len, char *errbuf, size_t errsize)
{
    unsigned char raw[SEALED_MAX_BYTES];
    if (strncmp(sealed, "v1:", 3) != 0 || strlen(sealed) < 3 + 8 + 1 || sealed[11] != ':')
        return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                       "not a sealed secret (expected v1:KEYID:...)");
    if (memcmp(sealed + 3, key->id, 8) != 0)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL,
                       "sealed with key %.8s, but this broker's webhooks.secret_key is %s",
                       sealed + 3, key->id);
    const char *b = sealed + 12;
    long rn = fh_b64_decode(b, strlen(b), raw, sizeof(raw));
    if (rn < FH_AEAD_IV_SIZE + FH_AEAD_TAG_SIZE)
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "sealed secret: bad base64 or too short");
    size_t n = (size_t)rn - FH_AEAD_IV_SIZE - FH_AEAD_TAG_SIZE;
    if (n + 1 > size)
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "sealed secret: %zu bytes do not fit", n);
    if (fh_aead_gcm_decrypt(key->k, raw, aad, strlen(aad), raw + FH_AEAD_IV_SIZE, n,
                            raw + FH_AEAD_IV_SIZE + n, (unsigned char *)out)) {
        memset(out, 0, n);
        return fh_errf(errbuf, errsize, FH_ERR_INVAL,
                       "sealed secret does not authenticate (altered, or sealed for another id)");
    }
    out[n] = '\0';
    if (len)
        *len = n;
    return FH_OK;
}
