/* fh_acache: a capped cache of rendered answers, least recently used first out.
 *
 * Each entry is a key, a body, the hash of the body (the caller's, for ETags), the version of
 * the data it was rendered from, an optional expiry and a fixed-size block of caller metadata
 * (the view keeps its view_asof there). An entry older than the current version, or past its
 * expiry, is stale: one caller at a time is told to render it again while the others keep being
 * served the stale body. Lookups and eviction are O(1): a hash table beside a doubly linked list
 * in recency order. Thread-safe: lookups share a read lock (the recency list has a mutex of its
 * own), stores and eviction take the write lock. */
#ifndef FH_ACACHE_H
#define FH_ACACHE_H

#include <stddef.h>
#include <stdint.h>

#include "fh_util.h"

typedef struct fh_acache fh_acache;

enum fh_acache_result {
    FH_ACACHE_MISS = 0, /* nothing cached: render */
    FH_ACACHE_HIT,      /* current: the body was appended, *meta and *hash filled */
    FH_ACACHE_STALE,    /* stale, another caller is rendering it: the body was appended, *meta
                           and *hash filled */
    FH_ACACHE_RENDER,   /* stale and the caller now owns rendering it: render, then
                           fh_acache_put, or fh_acache_abandon when rendering fails */
};

/* A cache holding at most max_entries entries and max_bytes bytes (body, key and bookkeeping of
 * every entry). Storing a new entry past either cap evicts the least recently used entries
 * down to 7/8 of both caps. meta_size bytes of metadata are kept per entry. NULL when out of
 * memory. Free with fh_acache_free. */
fh_acache *fh_acache_new(size_t max_entries, size_t max_bytes, size_t meta_size);
void fh_acache_free(fh_acache *c);

/* Looks key up as of data version `version` and wall time now_ms; a hit or a stale answer
 * counts as a use. When appending the body to out fails the result is FH_ACACHE_MISS. */
enum fh_acache_result fh_acache_get(fh_acache *c, const char *key, long long version,
                                    int64_t now_ms, fh_buf *out, void *meta,
                                    unsigned long long *hash);

/* Stores a copy of body (len bytes) for key, rendered from data version `version`, with meta
 * (meta_size bytes, copied) and the caller's hash of body; expires_ms > 0 makes it stale at
 * that wall time even if the version does not move. An existing entry is replaced only by one
 * of the same or a newer version. Clears the rendering mark either way and counts as a use.
 * Out of memory: the answer is not stored and the mark is cleared. */
void fh_acache_put(fh_acache *c, const char *key, const char *body, size_t len,
                   unsigned long long hash, long long version, const void *meta,
                   int64_t expires_ms);

/* Clears the rendering mark FH_ACACHE_RENDER gave the caller (no-op when key is gone). */
void fh_acache_abandon(fh_acache *c, const char *key);

/* Entries and bytes held now (for tests and metrics). */
size_t fh_acache_entries(fh_acache *c);
size_t fh_acache_bytes(fh_acache *c);

#endif
