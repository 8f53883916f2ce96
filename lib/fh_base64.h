/* fh_base64: standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /, "=" padding), the one
 * codec behind webhook secrets and signatures (fh_sign) and the WebSocket handshake keys (fh_ws,
 * the consumers' client). Nothing here allocates: callers supply the buffers. */
#ifndef FH_BASE64_H
#define FH_BASE64_H

#include <stddef.h>

/* Text length of n bytes encoded with padding. */
#define FH_B64_LEN(n) (((n) + 2) / 3 * 4)

/* Writes the padded encoding of in[0..n) and a NUL into out (size at least FH_B64_LEN(n) + 1).
 * Returns the text length, or 0 (out untouched) when out is too small. */
size_t fh_b64_encode(const unsigned char *in, size_t n, char *out, size_t size);

/* Decodes in[0..n): padding optional, no whitespace, bits after the last whole byte ignored.
 * Returns the byte count, or -1 for text that is not base64 or does not fit in size bytes. */
long fh_b64_decode(const char *in, size_t n, unsigned char *out, size_t size);

/* The 6-bit value of one base64 digit, or -1 ("=" included: padding is not a digit). */
int fh_b64_digit(char c);

#endif
