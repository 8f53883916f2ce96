/* fh_derive: the pure parts of the view's derived events (docs/events.md, "Derived events"):
 * deterministic ids, the broken/fixed state machine, the suspect range, the flaky flip and the
 * request.stale thresholds. No I/O; broker/view/derive.c keeps the state in SQLite and calls
 * these. */
#ifndef FH_DERIVE_H
#define FH_DERIVE_H

#include <stddef.h>

#include "fh_error.h"

/* "derived-" and 32 hex digits, plus the NUL. */
#define FH_DERIVE_ID_SIZE 41

/* The id of a derived event: "derived-" and the first 16 bytes, in hex, of HMAC-SHA-256 under
 * the fixed key "firehose.derive" of type and the n parts, each followed by a NUL byte (so
 * ("ab","c") and ("a","bc") differ). Same inputs, same id, in every process and run. */
void fh_derive_id(const char *type, const char *const *parts, size_t n,
                  char out[FH_DERIVE_ID_SIZE]);

/* A build's verdict about the code: green (SUCCESS 0, WARNINGS 1), red (FAILURE 2,
 * EXCEPTION 4), or none (SKIPPED 3, RETRY 5, CANCELLED 6, anything else). */
enum fh_verdict { FH_VERDICT_NONE = 0, FH_VERDICT_GREEN, FH_VERDICT_RED };
enum fh_verdict fh_derive_verdict(long long results);

/* A builder's state on a branch: unknown until its first green build, then green or broken. */
enum fh_bstate { FH_BSTATE_UNKNOWN = 0, FH_BSTATE_GREEN, FH_BSTATE_BROKEN };
enum fh_btransition { FH_BT_NONE = 0, FH_BT_BROKEN, FH_BT_FIXED };

/* The state machine, for a build newer (by completion) than every build it has seen: writes the
 * new state to *next and returns what to emit. Red after green breaks, green after broken
 * fixes; red while unknown stays unknown (no green build to suspect from); a build without a
 * verdict changes nothing. */
enum fh_btransition fh_derive_step(enum fh_bstate state, enum fh_verdict v, enum fh_bstate *next);

/* The suspects of a break in revs[0..n-1] (one branch's revisions, oldest first): the revisions
 * after green (exclusive) up to bad (inclusive). When green is not among them (pruned, or never
 * placed) the range starts at the oldest; when bad is not among them, the range is bad alone
 * (returns 1 with *from = *to = n: the caller names bad itself). At most max revisions, the
 * newest (*truncated = 1 when some were left out). Returns 0 and [*from, *to) indices into
 * revs, or 1 as said. A green at or after bad gives an empty range. */
int fh_derive_suspects(const char *const *revs, size_t n, const char *green, const char *bad,
                       size_t max, size_t *from, size_t *to, int *truncated);

/* Flaky flips. seen is a mask of what a (builder, test, revision) has shown: bit 0 passed,
 * bit 1 failed. Returns the new mask after one more result; *first_flip is 1 exactly when this
 * result completes both (the moment to emit test.flaky, once). */
int fh_derive_flaky(int seen, int passed, int *first_flip);

/* derive.stale_after: "glob=seconds" rules separated by ',' or ';' (spaces around trimmed),
 * the first rule whose glob (fnmatch) matches the builder wins; no match: never stale. */
typedef struct fh_stale_rule {
    char *glob;
    long long seconds;
} fh_stale_rule;

typedef struct fh_stale_rules {
    fh_stale_rule *r;
    size_t n;
} fh_stale_rules;

/* Parses spec into rules (zeroed by the caller). Returns FH_OK, or FH_ERR_CONFIG with errbuf
 * naming the bad rule (nothing to free then). Seconds are 1 .. 10^9. */
fh_err fh_stale_rules_parse(fh_stale_rules *rules, const char *spec, char *errbuf, size_t errsize);
/* The threshold for builder in seconds, or -1 when no rule matches. */
long long fh_stale_rules_find(const fh_stale_rules *rules, const char *builder);
/* The smallest threshold of any rule, or -1 when there are none. */
long long fh_stale_rules_min(const fh_stale_rules *rules);
void fh_stale_rules_free(fh_stale_rules *rules);

#endif
