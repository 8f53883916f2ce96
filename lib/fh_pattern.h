/* fh_pattern: JSON Schema patterns that the validator matches with C code instead of regexec.
 * The contract's two patterns ("time" to the millisecond, "source" a URI with a scheme) are
 * checked on every record by every consumer, and glibc's regexec was about a tenth of a record's
 * validation. Each C matcher gives regexec's answer (POSIX ERE, the "C" locale, the string up to
 * its first NUL) for every string: tests/unit/test_schema_fast.c holds the two to it. */
#ifndef FH_PATTERN_H
#define FH_PATTERN_H

#include <stddef.h>

/* 1 when s (n bytes, no NUL among them) matches, else 0. */
typedef int (*fh_pattern_fn)(const char *s, size_t n);

/* The C matcher for the pattern whose source text is src, or NULL (then regexec it). */
fh_pattern_fn fh_pattern_fast(const char *src);

/* What the C matcher of pattern says of s (n bytes, no NUL): 1 or 0, or -1 when pattern has
 * none. */
int fh_pattern_fast_match(const char *pattern, const char *s, size_t n);

#endif
