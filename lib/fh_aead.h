/* fh_aead: AES-256-GCM sealing of small secrets (webhook signing secrets) with OpenSSL's EVP, so
 * they neither travel (Kafka) nor rest (SQLite) in clear.
 *
 * A sealed secret is one line of text: "v1:" KEYID ":" base64(IV || ciphertext || tag), where
 * IV is 12 random bytes, the tag 16 bytes and KEYID the first 4 bytes of SHA-256(key) in hex.
 * The AAD binds the ciphertext to what it belongs to (an endpoint id): a sealed secret copied to
 * another endpoint does not open. KEYID says which key sealed it, so a wrong key is reported by
 * name instead of as a bare authentication failure. */
#ifndef FH_AEAD_H
#define FH_AEAD_H

#include <stddef.h>

#include "fh_error.h"

#define FH_AEAD_KEY_SIZE 32
#define FH_AEAD_IV_SIZE 12
#define FH_AEAD_TAG_SIZE 16
#define FH_AEAD_KEYID_SIZE 9 /* 8 hex characters and the NUL */

typedef struct fh_aead_key {
    unsigned char k[FH_AEAD_KEY_SIZE];
    char id[FH_AEAD_KEYID_SIZE];
} fh_aead_key;

/* The sealed text of n bytes of plaintext is at most this long (NUL included). */
#define FH_AEAD_SEALED_SIZE(n)                                                                     \
    (3 + FH_AEAD_KEYID_SIZE + 4 * (((n) + FH_AEAD_IV_SIZE + FH_AEAD_TAG_SIZE + 2) / 3) + 1)

/* Reads a key from 64 hex characters (surrounding white space allowed). errbuf says what is
 * wrong without repeating the text. */
fh_err fh_aead_key_hex(const char *hex, fh_aead_key *out, char *errbuf, size_t errsize);
/* Reads a key from a file holding its 64 hex characters. */
fh_err fh_aead_key_file(const char *path, fh_aead_key *out, char *errbuf, size_t errsize);

/* Seals n bytes of pt bound to aad (a NUL-terminated string) into out (size bytes, at least
 * FH_AEAD_SEALED_SIZE(n)) with a fresh random IV. */
fh_err fh_aead_seal(const fh_aead_key *key, const char *aad, const void *pt, size_t n, char *out,
                    size_t size, char *errbuf, size_t errsize);
/* Opens a sealed text: writes the plaintext and a NUL into out (size bytes) and its length into
 * *len. Fails, naming the cause, on a malformed text, a different key id (both ids named) or a
 * failed authentication (tampered text, other AAD). */
fh_err fh_aead_open(const fh_aead_key *key, const char *aad, const char *sealed, char *out,
                    size_t size, size_t *len, char *errbuf, size_t errsize);

/* The raw cipher, exposed for the published test vectors: AES-256-GCM with a 96-bit IV.
 * ct receives n bytes, tag FH_AEAD_TAG_SIZE. fh_aead_gcm_decrypt returns FH_ERR_INVAL when the
 * tag does not authenticate. */
fh_err fh_aead_gcm_encrypt(const unsigned char key[FH_AEAD_KEY_SIZE],
                           const unsigned char iv[FH_AEAD_IV_SIZE], const void *aad, size_t aadlen,
                           const void *pt, size_t n, unsigned char *ct,
                           unsigned char tag[FH_AEAD_TAG_SIZE]);
fh_err fh_aead_gcm_decrypt(const unsigned char key[FH_AEAD_KEY_SIZE],
                           const unsigned char iv[FH_AEAD_IV_SIZE], const void *aad, size_t aadlen,
                           const unsigned char *ct, size_t n,
                           const unsigned char tag[FH_AEAD_TAG_SIZE], unsigned char *pt);

#endif
