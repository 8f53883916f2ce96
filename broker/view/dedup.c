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

/* A pending id in dedup_pending: its digest (computed once, in view_dedup_begin) and its Kafka
 * timestamp. */
typedef struct pend {
    int64_t ts_ms;
    unsigned char digest[FH_DEDUP_DIGEST];
} pend;

int view_dedup_open(fh_view *v, char *errbuf, size_t errsize)
{
    v->dedup = fh_dedup_new((size_t)v->dedup_entries, v->dedup_window_s * 1000);
    if (!v->dedup) {
        snprintf(errbuf, errsize, "out of memory for view.dedup_entries=%lld", v->dedup_entries);
        return -1;
    }
    /* every pending id of a full batch fits */
    fh_buf_init(&v->dedup_pending, (size_t)v->batch_max * sizeof(pend));
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
        unsigned char digest[FH_DEDUP_DIGEST];
        fh_dedup_digest(id, len, digest);
        if (fh_dedup_begin_digest(v->dedup, digest, at) == FH_DEDUP_NEW) {
            fh_dedup_done_digest(v->dedup, digest, at);
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
    pend p = {.ts_ms = ts_ms};
    fh_dedup_digest(id, strlen(id), p.digest);
    if (fh_dedup_begin_digest(v->dedup, p.digest, ts_ms) != FH_DEDUP_NEW)
        return 1; /* done earlier, or in flight earlier in this batch */
    if (fh_buf_append(&v->dedup_pending, &p, sizeof(p))) {
        /* cannot happen within view.batch_max records; not remembering it only means a later
         * duplicate of it is applied again */
        fh_dedup_forget_digest(v->dedup, p.digest);
    }
    return 0;
}

/* Walks the pending ids, newest last; remember: each is done (kept), else forgotten. */
static void each_pending(fh_view *v, int remember)
{
    const char *b = v->dedup_pending.data, *e = b + v->dedup_pending.len;
    for (; b && b + sizeof(pend) <= e; b += sizeof(pend)) {
        pend p;
        memcpy(&p, b, sizeof(p));
        if (remember)
            fh_dedup_done_digest(v->dedup, p.digest, p.ts_ms);
        else
            fh_dedup_forget_digest(v->dedup, p.digest);
    }
    fh_buf_reset(&v->dedup_pending);
}

void view_dedup_undo_last(fh_view *v)
{
    pend p;
    if (v->dedup_pending.len < sizeof(p))
        return;
    /* the last pending entry is the event undone: dropped so a commit does not remember it */
    v->dedup_pending.len -= sizeof(p);
    memcpy(&p, v->dedup_pending.data + v->dedup_pending.len, sizeof(p));
    fh_dedup_forget_digest(v->dedup, p.digest);
}

void view_dedup_commit(fh_view *v)
{
    each_pending(v, 1);
}

void view_dedup_abort(fh_view *v)
{
    each_pending(v, 0);
}
