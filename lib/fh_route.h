/* fh_route: the broker's route patterns ("/api/v1/builds/{}", where "{}" stands for one
 * non-empty path segment), matched against a request path. A pure function, so it is unit tested
 * and fuzzed (tests/fuzz/fuzz_route.c) without a server; broker/http.c runs every request's path
 * through its route table with it. */
#ifndef FH_ROUTE_H
#define FH_ROUTE_H

#include <stddef.h>

/* 1 when path matches pattern, else 0. Every other byte of pattern matches itself; "{}" matches
 * the bytes of path up to the next '/' or the end, at least one. The segments "{}" matched go to
 * params[0..] as NUL-terminated copies inside scratch (scratch_size bytes), in order; a path
 * that would need more than max_params of them, or more room than scratch has, does not match.
 * params and scratch may be partly written when the answer is 0. */
int fh_route_match(const char *pattern, const char *path, const char **params, size_t max_params,
                   char *scratch, size_t scratch_size);

#endif
