/* fh_testres: the rules of the test.result_set / test.results contract that producers share
 * (docs/events.md, "Test results"): how Buildbot's category and value read as an outcome, and
 * where a set's results are cut into test.results chunks. */
#ifndef FH_TESTRES_H
#define FH_TESTRES_H

#include <stddef.h>

/* Results in one test.results chunk at most (the schema's maxItems). */
#define FH_TESTRES_CHUNK_MAX 500
/* Encoded bytes of one chunk's results a producer aims to stay under (several results of the
 * longest names would otherwise pass events.max_bytes). */
#define FH_TESTRES_CHUNK_BYTES (256 * 1024)
/* Characters of a test name or code path at most; producers cut longer ones. */
#define FH_TESTRES_NAME_MAX 1024

/* The outcome a result's value means in its set's category: "pass", "fail", or NULL for
 * measurements (performance, binary_size, ...) and values that do not read as their category
 * says. pass_fail with value_unit boolean: an integer value, nonzero passed, 0 failed (as
 * Buildbot counts tests_passed/tests_failed); pass_only: pass; fail_only and code_issue: fail.
 * Static strings; never NULL inputs. */
const char *fh_testres_outcome(const char *category, const char *value_unit, const char *value);

/* Where the chunk starting at result `start` ends (exclusive): after at most max_items results
 * and before the encoded sizes item_bytes[start..] pass max_bytes, but always at least one
 * result (a lone result over max_bytes travels alone). Returns n when start >= n. */
size_t fh_testres_chunk_end(const size_t *item_bytes, size_t n, size_t start, size_t max_items,
                            size_t max_bytes);

#endif
