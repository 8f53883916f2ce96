/* fh_dedup: a bounded memory of webhook delivery ids, so a redelivered webhook is answered
 * without producing its events again.
 *
 * Each key is kept as the first 16 bytes of its SHA-256 (32 bytes an entry with its time and
 * state, whatever the key's length). Entries live in insertion order in a ring of `cap` slots
 * and are found through an open-addressing index. An entry is forgotten when it is older than
 * ttl_ms, or when the ring is full and a new key needs its slot (the oldest goes first). A key
 * is in flight from fh_dedup_begin until fh_dedup_done (kept) or fh_dedup_forget (dropped, so a
 * retry of a failed delivery is not taken for a duplicate); a forgotten key's slot is reused once
 * it is the oldest (failed deliveries are rare, so the cap stays close to the live count).
 *
 * Not thread-safe: the caller serialises every call (one mutex). Nothing allocates after
 * fh_dedup_new. */
#ifndef FH_DEDUP_H
#define FH_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fh_dedup fh_dedup;

enum {
    FH_DEDUP_NEW = 0, /* not known: now recorded as in flight; end it with done or forget */
    FH_DEDUP_SEEN,    /* a delivery with this key was done within the TTL */
    FH_DEDUP_BUSY,    /* another caller holds this key in flight */
};

/* A memory of at most cap keys (cap >= 1), each kept ttl_ms (>= 1). NULL when out of memory.
 * Caller frees with fh_dedup_free. */
fh_dedup *fh_dedup_new(size_t cap, int64_t ttl_ms);
void fh_dedup_free(fh_dedup *d);

/* Forgets what is older than ttl_ms at now_ms, then looks key up (len bytes). Returns one of
 * the FH_DEDUP_* values above. */
int fh_dedup_begin(fh_dedup *d, const char *key, size_t len, int64_t now_ms);
/* Marks key as done (a later begin says SEEN). A key no longer held (evicted at the cap) is
 * recorded again as done at now_ms. */
void fh_dedup_done(fh_dedup *d, const char *key, size_t len, int64_t now_ms);
/* Drops key whatever its state; a no-op when it is not held. */
void fh_dedup_forget(fh_dedup *d, const char *key, size_t len);

/* The same calls on a key's digest (the first FH_DEDUP_DIGEST bytes of its SHA-256, as
 * fh_dedup_digest makes it), for a caller that looks one key up more than once: the hash is
 * computed once. */
#define FH_DEDUP_DIGEST 16
void fh_dedup_digest(const char *key, size_t len, unsigned char out[FH_DEDUP_DIGEST]);
int fh_dedup_begin_digest(fh_dedup *d, const unsigned char *digest, int64_t now_ms);
void fh_dedup_done_digest(fh_dedup *d, const unsigned char *digest, int64_t now_ms);
void fh_dedup_forget_digest(fh_dedup *d, const unsigned char *digest);

/* Keys held (in flight and done). */
size_t fh_dedup_count(const fh_dedup *d);
/* Keys dropped because the memory was full (not by age) since fh_dedup_new. */
uint64_t fh_dedup_evicted(const fh_dedup *d);

#endif
