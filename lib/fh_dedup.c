#include "fh_dedup.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

enum { DEAD = 0, IN_FLIGHT = 1, DONE = 2 };

typedef struct entry {
    unsigned char digest[FH_DEDUP_DIGEST];
    int64_t t; /* when the key was first recorded */
    uint8_t state;
} entry;

struct fh_dedup {
    entry *ring;      /* insertion order, oldest at head */
    size_t cap, head; /* slots, and the oldest slot */
    size_t used;      /* slots from head on, dead ones (forgotten) included */
    size_t live;      /* entries in flight or done */
    uint32_t *index;  /* open addressing (linear probing): ring slot + 1, 0 when empty */
    size_t mask;      /* index size - 1 (a power of two, at least twice cap) */
    int64_t ttl;
    uint64_t evicted;
};

static size_t home_of(const fh_dedup *d, const unsigned char *digest)
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return (size_t)h & d->mask;
}

fh_dedup *fh_dedup_new(size_t cap, int64_t ttl_ms)
{
    fh_dedup *d;
    size_t n = 16;
    if (cap < 1 || cap > UINT32_MAX / 4 || ttl_ms < 1 || !(d = calloc(1, sizeof(*d))))
        return NULL;
    while (n < 2 * cap)
        n *= 2;
    d->ring = calloc(cap, sizeof(*d->ring));
    d->index = calloc(n, sizeof(*d->index));
    if (!d->ring || !d->index) {
        fh_dedup_free(d);
        return NULL;
    }
    d->cap = cap;
    d->mask = n - 1;
    d->ttl = ttl_ms;
    return d;
}

void fh_dedup_free(fh_dedup *d)
{
    if (!d)
        return;
    free(d->ring);
    free(d->index);
    free(d);
}

/* The index slot that holds a digest, or -1. */
static long find(const fh_dedup *d, const unsigned char *digest)
{
    for (size_t i = home_of(d, digest);; i = (i + 1) & d->mask) {
        if (!d->index[i])
            return -1;
        if (memcmp(d->ring[d->index[i] - 1].digest, digest, FH_DEDUP_DIGEST) == 0)
            return (long)i;
    }
}

/* Empties index slot i and shifts later entries of its probe run back (linear probing's
 * deletion without tombstones). */
static void index_remove(fh_dedup *d, size_t i)
{
    for (;;) {
        d->index[i] = 0;
        size_t j = i;
        for (;;) {
            j = (j + 1) & d->mask;
            if (!d->index[j])
                return;
            size_t home = home_of(d, d->ring[d->index[j] - 1].digest);
            /* the entry at j stays when its home lies cyclically in (i, j] */
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
                continue;
            d->index[i] = d->index[j];
            i = j;
            break;
        }
    }
}

static void drop_head(fh_dedup *d, int count_eviction)
{
    entry *e = &d->ring[d->head];
    if (e->state != DEAD) {
        long slot = find(d, e->digest);
        if (slot >= 0)
            index_remove(d, (size_t)slot);
        e->state = DEAD;
        d->live--;
        if (count_eviction)
            d->evicted++;
    }
    d->head = (d->head + 1) % d->cap;
    d->used--;
}

static void expire(fh_dedup *d, int64_t now_ms)
{
    while (d->used) {
        const entry *e = &d->ring[d->head];
        if (e->state != DEAD && e->t > now_ms - d->ttl)
            break;
        drop_head(d, 0);
    }
}

static void insert(fh_dedup *d, const unsigned char *digest, int64_t now_ms, uint8_t state)
{
    if (d->used == d->cap)
        drop_head(d, 1);
    size_t r = (d->head + d->used) % d->cap;
    memcpy(d->ring[r].digest, digest, FH_DEDUP_DIGEST);
    d->ring[r].t = now_ms;
    d->ring[r].state = state;
    d->used++;
    d->live++;
    size_t i = home_of(d, digest);
    while (d->index[i])
        i = (i + 1) & d->mask;
    d->index[i] = (uint32_t)(r + 1);
}

void fh_dedup_digest(const char *key, size_t len, unsigned char out[FH_DEDUP_DIGEST])
{
    unsigned char full[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, len, full);
    memcpy(out, full, FH_DEDUP_DIGEST);
}

int fh_dedup_begin_digest(fh_dedup *d, const unsigned char *digest, int64_t now_ms)
{
    expire(d, now_ms);
    long slot = find(d, digest);
    if (slot >= 0)
        return d->ring[d->index[slot] - 1].state == IN_FLIGHT ? FH_DEDUP_BUSY : FH_DEDUP_SEEN;
    insert(d, digest, now_ms, IN_FLIGHT);
    return FH_DEDUP_NEW;
}

void fh_dedup_done_digest(fh_dedup *d, const unsigned char *digest, int64_t now_ms)
{
    long slot = find(d, digest);
    if (slot >= 0)
        d->ring[d->index[slot] - 1].state = DONE;
    else
        insert(d, digest, now_ms, DONE);
}

void fh_dedup_forget_digest(fh_dedup *d, const unsigned char *digest)
{
    long slot = find(d, digest);
    if (slot < 0)
        return;
    d->ring[d->index[slot] - 1].state = DEAD; /* its ring slot is reclaimed when it is oldest */
    index_remove(d, (size_t)slot);
    d->live--;
}

int fh_dedup_begin(fh_dedup *d, const char *key, size_t len, int64_t now_ms)
{
    unsigned char digest[FH_DEDUP_DIGEST];
    fh_dedup_digest(key, len, digest);
    return fh_dedup_begin_digest(d, digest, now_ms);
}

void fh_dedup_done(fh_dedup *d, const char *key, size_t len, int64_t now_ms)
{
    unsigned char digest[FH_DEDUP_DIGEST];
    fh_dedup_digest(key, len, digest);
    fh_dedup_done_digest(d, digest, now_ms);
}

void fh_dedup_forget(fh_dedup *d, const char *key, size_t len)
{
    unsigned char digest[FH_DEDUP_DIGEST];
    fh_dedup_digest(key, len, digest);
    fh_dedup_forget_digest(d, digest);
}

size_t fh_dedup_count(const fh_dedup *d)
{
    return d->live;
}

uint64_t fh_dedup_evicted(const fh_dedup *d)
{
    return d->evicted;
}
