/* fh_cursor: the stream's resume positions (docs/stream.md, "Positions and cursors").
 *
 * A cursor is the next offset of every partition the stream reads (the events topic's, then the
 * logs topic's): "<n>.<o0>.<o1>..." with n in decimal and each offset in base 36. Clients treat
 * it as opaque text. Pure functions of their arguments, so they are unit tested and fuzzed
 * (tests/fuzz/fuzz_wsmsg.c) without Kafka. */
#ifndef FH_CURSOR_H
#define FH_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "fh_error.h"

/* The most partitions a cursor describes, the events and logs topics together (2048 each when
 * they are equal). The broker refuses to start on topics with more. The longest such cursor,
 * FH_CURSOR_SIZE(FH_CURSOR_MAX_PARTS) bytes (57,356), still fits in a subscribe message of the
 * default stream.max_message_bytes (65536). */
#define FH_CURSOR_MAX_PARTS 4096

/* Bytes, with the NUL, that the longest cursor of n partitions needs: the count (at most 10
 * digits) and, per partition, a dot and at most 13 base-36 digits (INT64_MAX is
 * "1y2p0ij32e8e7"). */
#define FH_CURSOR_SIZE(n) ((size_t)12 + (size_t)14 * (size_t)(n))

/* Writes the cursor of vec[0..n) into out (size bytes; FH_CURSOR_SIZE(n) always suffices).
 * Negative entries are written as 0. Returns the length without the NUL, or 0 when size is too
 * small (out is then "" when size > 0). */
size_t fh_cursor_encode(const int64_t *vec, int n, char *out, size_t size);

/* Reads a cursor of exactly n partitions into vec[0..n). Returns FH_OK, or FH_ERR_PARSE when s
 * is not one (another partition count, an offset past INT64_MAX, trailing text); vec may then be
 * partly written. As strtol and strtoull read them, each number may have leading white space
 * and a sign (a negative offset other than -0 is refused), and base-36 digits may be upper case. */
fh_err fh_cursor_decode(const char *s, int n, int64_t *vec);

/* How many partitions of each topic a cursor covers: the first topic's (events) come first, then
 * the next one's (logs, then any other the stream reads), each in partition id order. */
#define FH_CURSOR_MAX_TOPICS 4
typedef struct fh_cursor_layout {
    int ntopics;
    int parts[FH_CURSOR_MAX_TOPICS];
} fh_cursor_layout;

/* Reads a cursor made when the topics had fewer partitions than now (partitions were added to
 * them since) into vec, in the order of now = past[npast - 1]: the partitions it does not name
 * get -1 (from their beginning: everything in an added partition is newer than the cursor).
 * past[0..npast) are the layouts a stream has read, oldest first, all of now's topics; the
 * cursor's count picks one. A count none of them has (a cursor from before the stream started,
 * partitions added since) is read as partitions added to one topic only, the first topic for
 * which that leaves it at least one partition. Returns FH_ERR_PARSE for what fh_cursor_decode
 * refuses, and for a cursor of as many or more partitions than now (exactly now:
 * fh_cursor_decode); FH_ERR_NOMEM when it cannot copy the cursor. */
fh_err fh_cursor_decode_grown(const char *s, const fh_cursor_layout *past, int npast, int64_t *vec);

#endif
