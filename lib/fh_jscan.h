/* fh_jscan: finds members of a JSON record in place, without building anything.
 *
 * Hot paths that need a handful of members of records they otherwise pass through byte for byte
 * or skip (replay's NDJSON filter, tail's event extraction, the view skipping log chunks) would
 * pay more for a full parse than for the rest of the work. These functions skip values by their
 * delimiters and look only at what is asked for. They are not validators: malformed input yields -1
 * or "not found", never a read outside [p, end). */
#ifndef FH_JSCAN_H
#define FH_JSCAN_H

#include <stddef.h>

/* Skips whitespace, then one value. Returns the pointer just after it, or NULL when the value is
 * truncated or malformed (nesting deeper than 64 counts as malformed). */
const char *fh_jscan_skip(const char *p, const char *end);

/* Looks for member key (keylen bytes, compared with the decoded member names) of the object at
 * p (leading whitespace allowed). Returns 1 and sets *v / *vend to the value's bytes, 0 when the
 * object has no such member, -1 when p is not a well-delimited object. */
int fh_jscan_member(const char *p, const char *end, const char *key, size_t keylen, const char **v,
                    const char **vend);

/* Decodes the string value at [v, vend) (quotes included) into buf, NUL-terminated. Returns its
 * length, or -1 when it is not a string, has a bad escape or does not fit in size - 1 bytes.
 * \u escapes become UTF-8 (a lone surrogate is refused).
 */
int fh_jscan_str(const char *v, const char *vend, char *buf, size_t size);

/* Reads the integer value at [v, vend). Returns 0, or -1 when it is not an integer that fits. */
int fh_jscan_int(const char *v, const char *vend, long long *out);

/* Reads a number (integer or real) at [v, vend). Returns 0, or -1. */
int fh_jscan_num(const char *v, const char *vend, double *out);

#endif
