/* view/dedup: which event ids the view has applied, so a duplicate (the same id again, a
 * producer's retry or replay) is dropped. The ids live in memory (lib/fh_dedup: 16 bytes of
 * SHA-256 each, found in O(1), forgotten view.dedup_window_s after the record's Kafka timestamp
 * or, past view.dedup_entries, oldest first); SQLite's `applied` table only keeps them across a
 * restart, written in time order (its key starts with the time), so the rows of one batch land
 * on the last page or two of the table instead of on a random page each: that random insert was
 * a fifth of the broker's CPU at 10,000 events/s. An id applied in the open batch is in flight
 * until the batch commits (then remembered) or rolls back (then forgotten, so the records read
 * again are applied again). View thread only. */
#include "internal.h"

#include <string.h>

/* A pending id in dedup_pending: its Kafka timestamp, its length, then its bytes. */
typedef struct pend {
    int64_t ts_ms;
    uint16_t len;
} pend;

int view_dedup_open(fh_view *v, char *errbuf, size_t errsize)
{
    v->dedup = fh_dedup_new((size_t)v->dedup_entries, v->dedup_window_s * 1000);
    if (!v->dedup) {
        snprintf(errbuf, errsize, "out of memory for view.dedup_entries=%lld", v->dedup_entries);
        return -1;
    }
    /* every pending id of a full batch fits: ids are at most 256 bytes (envelope schema) */
    fh_buf_init(&v->dedup_pending, (size_t)v->batch_max * (sizeof(pend) + 257));
    sqlite3_stmt *st = NULL;
    long long n = 0;
    if (sqlite3_prepare_v2(v->db, "SELECT at, id FROM applied ORDER BY at", -1, &st, NULL) !=
        SQLITE_OK) {
        snprintf(errbuf, errsize, "reading applied ids: %s", sqlite3_errmsg(v->db));
        return -1;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t at = (int64_t)(sqlite3_column_double(st, 0) * 1000.0);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        if (fh_dedup_begin(v->dedup, id, len, at) == FH_DEDUP_NEW) {
            fh_dedup_done(v->dedup, id, len, at);
            n++;
        }
    }
    sqlite3_finalize(st);
    if (n)
        fh_log(FH_LOG_INFO, "view.dedup", "ids=%lld held=%zu", n, fh_dedup_count(v->dedup));
    return 0;
}

void view_dedup_close(fh_view *v)
{
    fh_dedup_free(v->dedup);
    v->dedup = NULL;
    fh_buf_free(&v->dedup_pending);
}

int view_dedup_begin(fh_view *v, const char *id, int64_t ts_ms)
{
    size_t len = strlen(id);
    int r = fh_dedup_begin(v->dedup, id, len, ts_ms);
    if (r != FH_DEDUP_NEW)
        return 1; /* done earlier, or in flight earlier in this batch */
    pend p = {ts_ms, (uint16_t)len};
    if (len > UINT16_MAX || fh_buf_append(&v->dedup_pending, &p, sizeof(p)) ||
        fh_buf_append(&v->dedup_pending, id, len)) {
        /* cannot happen within the schema's 256 bytes; not remembering it only means a later
         * duplicate of it is applied again */
        fh_dedup_forget(v->dedup, id, len);
    }
    return 0;
}

/* Walks the pending ids, newest last; fn gets each. */
static void each_pending(fh_view *v,
                         void (*fn)(fh_dedup *d, const char *id, size_t len, int64_t ts_ms))
{
    const char *b = v->dedup_pending.data, *e = b + v->dedup_pending.len;
    while (b && b + sizeof(pend) <= e) {
        pend p;
        memcpy(&p, b, sizeof(p));
        fn(v->dedup, b + sizeof(p), p.len, p.ts_ms);
        b += sizeof(p) + p.len;
    }
    fh_buf_reset(&v->dedup_pending);
}

void view_dedup_undo_last(fh_view *v, const char *id)
{
    size_t len = strlen(id);
    fh_dedup_forget(v->dedup, id, len);
    /* the last pending entry is this id: drop it so a commit does not remember it */
    if (v->dedup_pending.len >= sizeof(pend) + len)
        v->dedup_pending.len -= sizeof(pend) + len;
}

static void remember(fh_dedup *d, const char *id, size_t len, int64_t ts_ms)
{
    fh_dedup_done(d, id, len, ts_ms);
}

static void forget(fh_dedup *d, const char *id, size_t len, int64_t ts_ms)
{
    (void)ts_ms;
    fh_dedup_forget(d, id, len);
}

void view_dedup_commit(fh_view *v)
{
    each_pending(v, remember);
}

void view_dedup_abort(fh_view *v)
{
    each_pending(v, forget);
}
