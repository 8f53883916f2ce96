#include "fh_sign.h"
#include "fh_base64.h"

#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

long fh_sign_secret_key(const char *secret, unsigned char key[FH_SIGN_MAX_KEY], char *errbuf,
                        size_t errsize)
{
    size_t plen = strlen(FH_SIGN_PREFIX);
    if (!secret) {
        fh_errf(errbuf, errsize, FH_ERR_INVAL, "no secret");
        return -1;
    }
    if (strncmp(secret, FH_SIGN_PREFIX, plen) == 0)
        secret += plen;
    long n = fh_b64_decode(secret, strlen(secret), key, FH_SIGN_MAX_KEY);
    if (n <= 0) {
        fh_errf(errbuf, errsize, FH_ERR_PARSE,
                "expected \"whsec_\" followed by base64 of at most %d bytes", FH_SIGN_MAX_KEY);
        return -1;
    }
    return n;
}

fh_err fh_sign_secret_check(const char *secret, char *errbuf, size_t errsize)
{
    unsigned char key[FH_SIGN_MAX_KEY];
    if (!secret || strncmp(secret, FH_SIGN_PREFIX, strlen(FH_SIGN_PREFIX)) != 0)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "expected a string starting with \"whsec_\"");
    long n = fh_sign_secret_key(secret, key, errbuf, errsize);
    if (n < 0)
        return FH_ERR_INVAL;
    if (n < 24)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL,
                       "the key after \"whsec_\" must be 24 to %d bytes (base64), got %ld",
                       FH_SIGN_MAX_KEY, n);
    return FH_OK;
}

fh_err fh_sign_secret_new(char out[FH_SIGN_SECRET_SIZE])
{
    unsigned char key[FH_SIGN_KEY_BYTES];
    size_t got = 0;
    while (got < sizeof(key)) {
        ssize_t k = getrandom(key + got, sizeof(key) - got, 0);
        if (k < 0)
            return FH_ERR_IO;
        got += (size_t)k;
    }
    memcpy(out, FH_SIGN_PREFIX, strlen(FH_SIGN_PREFIX));
    fh_b64_encode(key, sizeof(key), out + strlen(FH_SIGN_PREFIX),
                  FH_SIGN_SECRET_SIZE - strlen(FH_SIGN_PREFIX));
    return FH_OK;
}

fh_err fh_sign(const unsigned char *key, size_t keylen, const char *msg_id, int64_t timestamp,
               const char *body, size_t body_len, char out[FH_SIGN_SIG_SIZE])
{
    char ts[32];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    int tn = snprintf(ts, sizeof(ts), ".%lld.", (long long)timestamp);
    HMAC_CTX *h;
    /* HMAC_CTX is deprecated in OpenSSL 3 but still the cheapest streaming HMAC there; the EVP_MAC
     * path costs a fetch per call. The three parts are fed in place, never concatenated. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (!(h = HMAC_CTX_new()))
        return FH_ERR_NOMEM;
    int ok = HMAC_Init_ex(h, key, (int)keylen, EVP_sha256(), NULL) &&
             HMAC_Update(h, (const unsigned char *)msg_id, strlen(msg_id)) &&
             HMAC_Update(h, (const unsigned char *)ts, (size_t)tn) &&
             HMAC_Update(h, (const unsigned char *)body, body_len) && HMAC_Final(h, mac, &maclen);
    HMAC_CTX_free(h);
#pragma GCC diagnostic pop
    if (!ok)
        return FH_ERR_INVAL;
    memcpy(out, "v1,", 3);
    fh_b64_encode(mac, maclen, out + 3, FH_SIGN_SIG_SIZE - 3);
    return FH_OK;
}

fh_err fh_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char mac[FH_HMAC_SHA256_BYTES])
{
    unsigned maclen = 0;
    /* One-shot HMAC(): OpenSSL 3 keeps it (not deprecated); a zero-length key needs a non-NULL
     * pointer. */
    if (!HMAC(EVP_sha256(), keylen ? key : "", (int)keylen, data, len, mac, &maclen) ||
        maclen != FH_HMAC_SHA256_BYTES)
        return FH_ERR_INVAL;
    return FH_OK;
}
