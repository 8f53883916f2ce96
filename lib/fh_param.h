/* fh_param: the REST layer's parameter parsers, pure functions of the text so they can be unit
 * tested and fuzzed without a server. broker/rest.c turns a refusal into its JSON 400 answer.
 *
 * Every function returns FH_OK and sets *out, FH_ERR_PARSE when the text is not of the expected
 * form, or FH_ERR_INVAL when it is but lies outside the bounds; *out is untouched on error.
 * Leading white space and a '+' sign are accepted where strtoll accepts them (query values
 * arrive URL-decoded, so "%20" reaches these functions as a space). Digits past the int64 range
 * read as LLONG_MAX or LLONG_MIN, as strtoll gives them, and are then judged by the bounds. */
#ifndef FH_PARAM_H
#define FH_PARAM_H

#include "fh_error.h"

/* A decimal integer in [min, max]. "05" (a leading zero) is refused; "0" is not. */
fh_err fh_param_int(const char *v, long long min, long long max, long long *out);

/* A duration in seconds within [min, max] (min >= 0): "90", "90s", "30m", "1h", "2d". Signs are
 * refused. */
fh_err fh_param_duration(const char *v, long long min, long long max, long long *out);

/* A /api/v1/builds next_cursor: "b" followed by a positive decimal integer. */
fh_err fh_param_cursor(const char *v, long long *out);

/* A positive integer id in a path segment (/api/v1/builds/{buildid}); no leading zero or '+'. */
fh_err fh_param_id(const char *v, long long *out);

#endif
