/* fh_sign: Standard Webhooks signatures (https://www.standardwebhooks.com/): secrets and the
 * "v1,<base64 HMAC-SHA256>" header value over "{webhook-id}.{webhook-timestamp}.{body}".
 *
 * A secret is "whsec_" + base64 (lib/fh_base64) of the key bytes; the key is what HMAC uses.
 * Nothing here allocates: callers supply every buffer and its size. */
#ifndef FH_SIGN_H
#define FH_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "fh_error.h"

#define FH_SIGN_PREFIX "whsec_"
/* Key bytes of a generated secret (Standard Webhooks suggests 24 to 64). */
#define FH_SIGN_KEY_BYTES 32
#define FH_SIGN_MAX_KEY 64
/* Room for one "v1,<base64 of 32 bytes>" value and its NUL. */
#define FH_SIGN_SIG_SIZE 48
/* Room for a generated secret and its NUL. */
#define FH_SIGN_SECRET_SIZE 64

/* Decodes a "whsec_..." secret into its key. Returns the key length, or -1 when the text is not
 * a secret (errbuf says why, never quoting the secret). A secret without the prefix is accepted
 * as bare base64, as the reference libraries do. */
long fh_sign_secret_key(const char *secret, unsigned char key[FH_SIGN_MAX_KEY], char *errbuf,
                        size_t errsize);

/* Checks a secret a client supplies: "whsec_" + base64 of 24 to 64 bytes. */
fh_err fh_sign_secret_check(const char *secret, char *errbuf, size_t errsize);

/* Writes a new random secret ("whsec_" + base64 of FH_SIGN_KEY_BYTES bytes from getrandom). */
fh_err fh_sign_secret_new(char out[FH_SIGN_SECRET_SIZE]);

/* Bytes of an HMAC-SHA256. */
#define FH_HMAC_SHA256_BYTES 32

/* HMAC-SHA256 of data under key (any length, as RFC 2104 allows) into mac. Returns FH_OK, or
 * FH_ERR_INVAL when OpenSSL fails. */
fh_err fh_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char mac[FH_HMAC_SHA256_BYTES]);

/* Writes "v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>" into out. */
fh_err fh_sign(const unsigned char *key, size_t keylen, const char *msg_id, int64_t timestamp,
               const char *body, size_t body_len, char out[FH_SIGN_SIG_SIZE]);

#endif
