/* fh_acache: see fh_acache.h. The hash table chains entries per bucket; the recency list runs
 * from the most recently used (head) to the least (tail), so a victim is the tail. */
#include "fh_acache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *key, *body;
    size_t len, cost;
    unsigned long long hash;
    long long version;
    int64_t expires_ms; /* 0: stale only when the version moves */
    _Atomic int rendering;
    struct entry *next;          /* hash chain */
    struct entry *newer, *older; /* recency list */
    unsigned char meta[];
} entry;

struct fh_acache {
    pthread_rwlock_t mu;    /* the table and the counts: read to look up, write to change */
    pthread_mutex_t lru_mu; /* the recency list, which lookups under the read lock reorder */
    entry **buckets;
    size_t nbuckets, entries, bytes, max_entries, max_bytes, meta_size;
    entry *head, *tail;
};

fh_acache *fh_acache_new(size_t max_entries, size_t max_bytes, size_t meta_size)
{
    fh_acache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->meta_size = meta_size;
    c->nbuckets = 64;
    while (c->nbuckets < 2 * max_entries && c->nbuckets < (1u << 20))
        c->nbuckets *= 2;
    if (!(c->buckets = calloc(c->nbuckets, sizeof(*c->buckets)))) {
        free(c);
        return NULL;
    }
    pthread_rwlock_init(&c->mu, NULL);
    pthread_mutex_init(&c->lru_mu, NULL);
    return c;
}

static void entry_free(entry *e)
{
    free(e->key);
    free(e->body);
    free(e);
}

void fh_acache_free(fh_acache *c)
{
    if (!c)
        return;
    for (entry *e = c->head, *n; e; e = n) {
        n = e->older;
        entry_free(e);
    }
    free(c->buckets);
    pthread_rwlock_destroy(&c->mu);
    pthread_mutex_destroy(&c->lru_mu);
    free(c);
}

static size_t bucket_of(const fh_acache *c, const char *k)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 1099511628211ULL;
    }
    return (size_t)(h & (c->nbuckets - 1));
}

static entry *find(const fh_acache *c, const char *key)
{
    for (entry *e = c->buckets[bucket_of(c, key)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* The recency list; callers hold lru_mu or the write lock. */
static void lru_unlink(fh_acache *c, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->head = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->tail = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(fh_acache *c, entry *e)
{
    e->newer = NULL;
    e->older = c->head;
    if (c->head)
        c->head->newer = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void touch(fh_acache *c, entry *e)
{
    if (c->head == e)
        return;
    lru_unlink(c, e);
    lru_push(c, e);
}

enum fh_acache_result fh_acache_get(fh_acache *c, const char *key, long long version,
                                    int64_t now_ms, fh_buf *out, void *meta,
                                    unsigned long long *hash)
{
    enum fh_acache_result res = FH_ACACHE_MISS;
    pthread_rwlock_rdlock(&c->mu);
    entry *e = find(c, key);
    if (e) {
        pthread_mutex_lock(&c->lru_mu);
        touch(c, e);
        pthread_mutex_unlock(&c->lru_mu);
        int expected = 0;
        if (e->version >= version && (!e->expires_ms || now_ms < e->expires_ms))
            res = FH_ACACHE_HIT;
        else if (atomic_compare_exchange_strong(&e->rendering, &expected, 1))
            res = FH_ACACHE_RENDER;
        else
            res = FH_ACACHE_STALE;
        if (res != FH_ACACHE_RENDER) {
            if (fh_buf_append(out, e->body, e->len)) {
                res = FH_ACACHE_MISS;
            } else {
                memcpy(meta, e->meta, c->meta_size);
                *hash = e->hash;
            }
        }
    }
    pthread_rwlock_unlock(&c->mu);
    return res;
}

/* Drops least recently used entries down to 7/8 of the caps; caller holds the write lock. */
static void evict(fh_acache *c)
{
    while (c->tail && (c->entries > c->max_entries - c->max_entries / 8 ||
                       c->bytes > c->max_bytes - c->max_bytes / 8)) {
        entry *e = c->tail;
        lru_unlink(c, e);
        entry **l = &c->buckets[bucket_of(c, e->key)];
        while (*l != e)
            l = &(*l)->next;
        *l = e->next;
        c->entries--;
        c->bytes -= e->cost;
        entry_free(e);
    }
}

void fh_acache_put(fh_acache *c, const char *key, const char *body, size_t len,
                   unsigned long long hash, long long version, const void *meta, int64_t expires_ms)
{
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        fh_acache_abandon(c, key);
        return;
    }
    memcpy(copy, body, len);
    pthread_rwlock_wrlock(&c->mu);
    entry *e = find(c, key);
    if (e) {
        if (version >= e->version) {
            c->bytes = c->bytes - e->len + len;
            e->cost = e->cost - e->len + len;
            free(e->body);
            e->body = copy;
            e->len = len;
            e->hash = hash;
            e->version = version;
            memcpy(e->meta, meta, c->meta_size);
            e->expires_ms = expires_ms;
            copy = NULL;
        }
        atomic_store(&e->rendering, 0);
        touch(c, e);
    } else if ((e = calloc(1, sizeof(*e) + c->meta_size)) && (e->key = strdup(key))) {
        size_t b = bucket_of(c, key);
        e->body = copy;
        e->len = len;
        e->cost = len + strlen(key) + sizeof(*e) + c->meta_size;
        e->hash = hash;
        e->version = version;
        memcpy(e->meta, meta, c->meta_size);
        e->expires_ms = expires_ms;
        e->next = c->buckets[b];
        c->buckets[b] = e;
        lru_push(c, e);
        c->entries++;
        c->bytes += e->cost;
        copy = NULL;
        if (c->entries > c->max_entries || c->bytes > c->max_bytes)
            evict(c);
    } else {
        free(e);
    }
    pthread_rwlock_unlock(&c->mu);
    free(copy);
}

void fh_acache_abandon(fh_acache *c, const char *key)
{
    pthread_rwlock_rdlock(&c->mu);
    entry *e = find(c, key);
    if (e)
        atomic_store(&e->rendering, 0);
    pthread_rwlock_unlock(&c->mu);
}

size_t fh_acache_entries(fh_acache *c)
{
    pthread_rwlock_rdlock(&c->mu);
    size_t n = c->entries;
    pthread_rwlock_unlock(&c->mu);
    return n;
}

size_t fh_acache_bytes(fh_acache *c)
{
    pthread_rwlock_rdlock(&c->mu);
    size_t n = c->bytes;
    pthread_rwlock_unlock(&c->mu);
    return n;
}
