/* The answer cache: REST answers are served from it, so its staleness rules decide what clients
 * see and its caps bound the broker's memory; eviction must stay O(1) with a million entries. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fh_acache.h"
#include "fh_test.h"

typedef struct meta {
    long long version;
    int tag;
} meta;

static void put(fh_acache *c, const char *key, const char *body, long long version,
                int64_t expires_ms)
{
    meta m = {version, (int)strlen(body)};
    fh_acache_put(c, key, body, strlen(body), 1000 + (unsigned long long)version, version, &m,
                  expires_ms);
}

/* The result of looking key up at version and now_ms; *body gets what was served. */
static enum fh_acache_result get(fh_acache *c, const char *key, long long version, int64_t now_ms,
                                 char *body, size_t size)
{
    fh_buf out;
    meta m = {-1, -1};
    unsigned long long hash = 0;
    fh_buf_init(&out, 1 << 20);
    enum fh_acache_result r = fh_acache_get(c, key, version, now_ms, &out, &m, &hash);
    snprintf(body, size, "%.*s", (int)out.len, out.data ? out.data : "");
    if (r == FH_ACACHE_HIT || r == FH_ACACHE_STALE)
        CHECK(m.version >= 0 && hash == 1000 + (unsigned long long)m.version);
    fh_buf_free(&out);
    return r;
}

TEST(acache_hit_miss_and_version_staleness)
{
    fh_acache *c = fh_acache_new(16, 1 << 20, sizeof(meta));
    char b[64];
    CHECK(get(c, "a", 1, 0, b, sizeof(b)) == FH_ACACHE_MISS && b[0] == 0);
    put(c, "a", "one", 1, 0);
    CHECK(get(c, "a", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK_STR(b, "one");
    /* The view moved on: the first caller renders, the others get the old body meanwhile. */
    CHECK(get(c, "a", 2, 0, b, sizeof(b)) == FH_ACACHE_RENDER && b[0] == 0);
    CHECK(get(c, "a", 2, 0, b, sizeof(b)) == FH_ACACHE_STALE);
    CHECK_STR(b, "one");
    put(c, "a", "two", 2, 0);
    CHECK(get(c, "a", 2, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK_STR(b, "two");
    /* An older render never replaces a newer answer, but still clears the mark. */
    CHECK(get(c, "a", 3, 0, b, sizeof(b)) == FH_ACACHE_RENDER);
    put(c, "a", "old", 1, 0);
    CHECK(get(c, "a", 2, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK_STR(b, "two");
    CHECK(get(c, "a", 3, 0, b, sizeof(b)) == FH_ACACHE_RENDER);
    CHECK(fh_acache_entries(c) == 1);
    fh_acache_free(c);
}

TEST(acache_ttl_makes_an_answer_stale_without_a_new_version)
{
    fh_acache *c = fh_acache_new(16, 1 << 20, sizeof(meta));
    char b[64];
    put(c, "p", "waiting", 5, 1000);
    CHECK(get(c, "p", 5, 999, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK(get(c, "p", 5, 1000, b, sizeof(b)) == FH_ACACHE_RENDER);
    CHECK(get(c, "p", 5, 1000, b, sizeof(b)) == FH_ACACHE_STALE);
    CHECK_STR(b, "waiting");
    put(c, "p", "later", 5, 2000);
    CHECK(get(c, "p", 5, 1500, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK_STR(b, "later");
    /* No expiry: only the version makes it stale. */
    put(c, "q", "forever", 5, 0);
    CHECK(get(c, "q", 5, (int64_t)1 << 60, b, sizeof(b)) == FH_ACACHE_HIT);
    fh_acache_free(c);
}

TEST(acache_abandon_lets_the_next_caller_render)
{
    fh_acache *c = fh_acache_new(16, 1 << 20, sizeof(meta));
    char b[64];
    put(c, "k", "v1", 1, 0);
    CHECK(get(c, "k", 2, 0, b, sizeof(b)) == FH_ACACHE_RENDER);
    CHECK(get(c, "k", 2, 0, b, sizeof(b)) == FH_ACACHE_STALE);
    fh_acache_abandon(c, "k");
    CHECK(get(c, "k", 2, 0, b, sizeof(b)) == FH_ACACHE_RENDER);
    fh_acache_abandon(c, "k");
    fh_acache_abandon(c, "absent"); /* no-op */
    CHECK(get(c, "k", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    fh_acache_free(c);
}

TEST(acache_evicts_least_recently_used_down_to_seven_eighths)
{
    fh_acache *c = fh_acache_new(16, 1 << 20, sizeof(meta));
    char k[16], b[64];
    for (int i = 0; i < 16; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        put(c, k, "body", 1, 0);
    }
    CHECK(fh_acache_entries(c) == 16);
    /* Use k0..k3 (a hit and a stale answer both count), so k4.. are the oldest. */
    CHECK(get(c, "k0", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK(get(c, "k1", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK(get(c, "k2", 2, 0, b, sizeof(b)) == FH_ACACHE_RENDER);
    CHECK(get(c, "k3", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    put(c, "k16", "body", 1, 0); /* 17 > 16: down to 14 */
    CHECK(fh_acache_entries(c) == 14);
    for (int i = 4; i < 7; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        CHECK(get(c, k, 1, 0, b, sizeof(b)) == FH_ACACHE_MISS);
    }
    const char *kept[] = {"k0", "k1", "k3", "k7", "k15", "k16"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(*kept); i++)
        CHECK(get(c, kept[i], 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    /* A store to an existing key counts as a use and adds no entry. */
    put(c, "k8", "new", 1, 0);
    CHECK(fh_acache_entries(c) == 14);
    put(c, "k17", "body", 1, 0);
    put(c, "k18", "body", 1, 0);
    put(c, "k19", "body", 1, 0); /* 17 > 16 again: the oldest three go (k9, k10, k11) */
    CHECK(fh_acache_entries(c) == 14);
    CHECK(get(c, "k8", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK_STR(b, "new");
    CHECK(get(c, "k9", 1, 0, b, sizeof(b)) == FH_ACACHE_MISS);
    CHECK(get(c, "k11", 1, 0, b, sizeof(b)) == FH_ACACHE_MISS);
    CHECK(get(c, "k12", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    fh_acache_free(c);
}

TEST(acache_byte_cap_evicts_and_counts_every_entry)
{
    char big[1001], b[2048];
    memset(big, 'x', 1000);
    big[1000] = 0;
    fh_acache *c = fh_acache_new(1000, 8192, sizeof(meta));
    put(c, "a0", big, 1, 0);
    size_t one = fh_acache_bytes(c);
    CHECK(one > 1000 && one < 1300);
    for (int i = 0; i < 7; i++) {
        char k[8];
        snprintf(k, sizeof(k), "b%d", i);
        put(c, k, big, 1, 0);
    }
    CHECK(fh_acache_bytes(c) <= 8192);
    CHECK(fh_acache_bytes(c) <= 8192 - 8192 / 8 || fh_acache_entries(c) * one <= 8192);
    CHECK(get(c, "a0", 1, 0, b, sizeof(b)) == FH_ACACHE_MISS);
    CHECK(get(c, "b6", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK(fh_acache_bytes(c) == fh_acache_entries(c) * one);
    /* A single answer larger than the cap is not kept. */
    fh_acache *t = fh_acache_new(1000, 512, sizeof(meta));
    put(t, "big", big, 1, 0);
    CHECK(fh_acache_entries(t) == 0 && fh_acache_bytes(t) == 0);
    CHECK(get(t, "big", 1, 0, b, sizeof(b)) == FH_ACACHE_MISS);
    fh_acache_free(t);
    fh_acache_free(c);
}

TEST(acache_one_entry_cap_and_many_entries_stay_consistent)
{
    char b[64], k[32];
    fh_acache *one = fh_acache_new(1, 1 << 20, sizeof(meta));
    put(one, "x", "1", 1, 0);
    put(one, "y", "2", 1, 0);
    CHECK(fh_acache_entries(one) == 0 || fh_acache_entries(one) == 1);
    fh_acache_free(one);
    /* Far past the caps (a linear victim scan would be slow here): the newest stay. */
    fh_acache *c = fh_acache_new(10000, 1 << 30, sizeof(meta));
    for (int i = 0; i < 200000; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        put(c, k, "v", 1, 0);
    }
    CHECK(fh_acache_entries(c) <= 10000 && fh_acache_entries(c) > 8000);
    CHECK(get(c, "key-199999", 1, 0, b, sizeof(b)) == FH_ACACHE_HIT);
    CHECK(get(c, "key-0", 1, 0, b, sizeof(b)) == FH_ACACHE_MISS);
    fh_acache_free(c);
}

typedef struct worker_arg {
    fh_acache *c;
    unsigned seed;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    char k[16], b[64];
    for (int i = 0; i < 20000; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        unsigned r = w->seed >> 8;
        snprintf(k, sizeof(k), "k%u", r % 64);
        long long version = (long long)(r % 4);
        enum fh_acache_result res = get(w->c, k, version, 0, b, sizeof(b));
        if (res == FH_ACACHE_MISS || res == FH_ACACHE_RENDER) {
            if (r % 7 == 0 && res == FH_ACACHE_RENDER)
                fh_acache_abandon(w->c, k);
            else
                put(w->c, k, "body", version, 0);
        }
    }
    return NULL;
}

TEST(acache_threads_share_it_within_the_caps)
{
    /* Lookups reorder the recency list under the shared lock: four threads at once must keep
     * the list and the counts consistent (ASan and the caps would show a broken list). */
    fh_acache *c = fh_acache_new(16, 1 << 20, sizeof(meta));
    pthread_t t[4];
    worker_arg w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_arg){c, (unsigned)i * 7919u + 1u};
        CHECK(pthread_create(&t[i], NULL, worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(fh_acache_entries(c) <= 16 && fh_acache_entries(c) > 0);
    fh_acache_free(c);
}
