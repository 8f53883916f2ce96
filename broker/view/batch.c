/* view/batch: records into batches, and a batch with its offsets and view_state into one
 * transaction; records Kafka deleted unread; freshness; pruning by the view clock. View thread
 * only.
 *
 * A batch is applied optimistically: its events go into the transaction one after the other,
 * without a savepoint each (a savepoint and its release per event were a few percent of the
 * broker's CPU). The batch holds its records until it commits or rolls back. When an event fails
 * with an error of its own (event_level_error), the transaction is rolled back and the held
 * records are applied again, each event inside a savepoint as before, so the bad event is undone
 * alone and dead-lettered while the rest of the batch stands; the batch keeps the savepoints
 * until it commits. The outcome is the same as with savepoints throughout. */
#include "internal.h"

#include "cimetrics.h"
#include "derive.h"

const int view_fresh_le[FRESH_BUCKETS] = {1,  2,   3,   5,   7,   10,  15,   20,   30,   50,
                                          75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000};

/* ---- batches ---------------------------------------------------------------------------- */

static vpart *part_of(fh_view *v, const rd_kafka_message_t *m)
{
    const char *t = rd_kafka_topic_name(m->rkt);
    for (int k = 0; k < NTOPICS; k++)
        if (strcmp(t, v->topic[k]) == 0 && m->partition >= 0 && m->partition < v->nparts[k])
            return &v->parts[k][m->partition];
    return NULL;
}

/* Opens the transaction with the batch's counters at zero. 0, or -1 (logged). */
static int begin_txn(fh_view *v)
{
    int rc = view_wexec(v, W_BEGIN);
    if (rc) {
        {
            char q[420];
            fh_log(FH_LOG_ERROR, "view.sqlite", "op=begin error=%s",
                   fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->db)));
        }
        return -1;
    }
    v->in_txn = 1;
    v->batch_n = v->batch_events = v->batch_dups = v->batch_invalid = v->batch_skipped = 0;
    v->batch_lost = 0;
    v->batch_record_ts = 0;
    v->batch_ts_n = 0;
    return 0;
}

int view_begin_batch(fh_view *v)
{
    if (begin_txn(v))
        return -1;
    v->batch_first_ms = fh_now_ms();
    v->batch_safe = 0;
    return 0;
}

/* Destroys the records the batch held (it committed or rolled back). */
static void release_recs(fh_view *v)
{
    for (size_t i = 0; i < v->nrecs; i++)
        rd_kafka_message_destroy(v->recs[i]);
    v->nrecs = 0;
}

/* What the open batch did outside SQLite is undone: the ids it began, the CI observations it
 * staged, the positions it moved. */
static void forget_batch(fh_view *v)
{
    view_dedup_abort(v);
    view_ci_abort(v);
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < v->nparts[k]; i++) {
            v->parts[k][i].next = v->parts[k][i].committed;
            v->parts[k][i].dirty = 0;
        }
    v->batch_n = 0;
}

/* Errors that concern one event's data; anything else (disk full, I/O) fails the batch. */
static int event_level_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* The view expected p->next and got m past it: records Kafka deleted in between are recorded in
 * view_lost inside the open batch (so the mark commits with the offsets that skip them), and
 * reported once. Returns 0, or -1 when the batch must be rolled back. */
static int note_lost(fh_view *v, vpart *p, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    int64_t to, n = fh_lost_check(v->rk, topic, m->partition, p->next, m->offset, &to);
    if (n <= 0)
        return 0;
    sqlite3_stmt *st = v->w[W_LOST];
    view_bind_text(st, 1, topic);
    sqlite3_bind_int(st, 2, m->partition);
    sqlite3_bind_int64(st, 3, n);
    sqlite3_bind_int64(st, 4, p->next);
    sqlite3_bind_int64(st, 5, to);
    sqlite3_bind_int64(st, 6, fh_now_ms());
    if (view_wrun(st)) {
        char q[420];
        fh_log(FH_LOG_ERROR, "view.sqlite", "op=lost error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->db)));
        return -1;
    }
    v->batch_lost += n;
    int64_t from = p->next > p->lost_reported ? p->next : p->lost_reported;
    if (to > from) {
        health_records_lost("view", topic, m->partition, from, to);
        p->lost_reported = to;
    }
    return 0;
}

/* The types some part of the view reads as a jansson tree (derive.c and cimetrics.c: builds;
 * tests.c: test results). */
static int needs_tree(fh_event_type t)
{
    return t == FH_EV_BUILD_STARTED || t == FH_EV_BUILD_FINISHED || t == FH_EV_TEST_RESULT_SET ||
           t == FH_EV_TEST_RESULTS;
}

/* The applied row of an id (kept for the next start; see view/dedup.c). */
static int applied_row(fh_view *v, const char *id, int64_t at_ms)
{
    sqlite3_stmt *st = v->w[W_APPLIED];
    view_bind_text(st, 1, id);
    sqlite3_bind_double(st, 2, (double)at_ms / 1000.0);
    return view_wrun(st);
}

/* apply_record's answer when an event failed on its own outside a savepoint. */
#define REPLAY 1

/* Applies one held record inside the open batch (in a savepoint when v->batch_safe). Returns 0,
 * -1 when the batch must be rolled back, or REPLAY (only without savepoints: the event failed
 * with an event-level error and the batch must be replayed with them). */
static int apply_record(fh_view *v, vpart *p, rd_kafka_message_t *m)
{
    char err[384], q[420], reason[512];
    fh_event_view ev;
    fh_err drc;
    if (p->next >= 0 && m->offset > p->next && note_lost(v, p, m))
        return -1;
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    /* log.chunk: nothing stored, so skipped without checking (the bulk of the logs topic); a
     * malformed one is the ingest consumer's to report */
    if (m->payload && fh_event_peek_type(m->payload, m->len) == FH_EV_LOG_CHUNK) {
        v->batch_skipped++;
    } else if ((drc = fh_event_check(v->b->contract, &v->doc, m->payload, m->len,
                                     v->max_record_bytes, &ev, err, sizeof(err)))) {
        v->batch_invalid++;
        fh_log(FH_LOG_DEBUG, "view.invalid", "topic=%s partition=%d offset=%lld reason=%s",
               rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), err));
        /* What the contract refuses, the ingest consumer dead-letters; decoding uses the same
         * parser and check, so any other failure (memory) may be a valid record: say so. */
        if (drc == FH_ERR_NOMEM && fh_dlq_send(v->dlq, m, "view: cannot decode: out of memory"))
            return -1;
    } else {
        int rc, stored = 1;
        fh_event tree = {0};
        if (ev.type == FH_EV_LOG_CHUNK || ev.type == FH_EV_MASTER_STARTED ||
            ev.type == FH_EV_MASTER_STOPPED) {
            v->batch_skipped++;
            goto done;
        }
        /* Ids are remembered by when they were produced: a duplicate produced within
         * view.dedup_window_s of the original is dropped. */
        int64_t at = ts > 0 ? ts : fh_now_ms();
        if (view_dedup_begin(v, ev.id, at)) {
            v->batch_dups++;
            goto done;
        }
        if (v->batch_safe && (rc = view_wexec(v, W_SAVE)))
            goto fail;
        /* derivation, CI metrics and test results read a jansson tree: built for their few
         * types only */
        if (needs_tree(ev.type) && fh_event_from_view(&ev, &tree)) {
            rc = SQLITE_NOMEM;
            goto undo;
        }
        if ((rc = applied_row(v, ev.id, at)) ||
            (rc = view_apply_event(v, &ev, tree.root ? &tree : NULL, &stored)) ||
            (tree.root && (rc = derive_event(v, &tree))))
            goto undo;
        if (stored) {
            v->batch_events++;
            if (tree.root)
                view_ci_observe(v, &tree);
        } else {
            v->batch_skipped++;
        }
        if (v->batch_safe && (rc = view_wexec(v, W_RELEASE)))
            goto fail;
        goto done;
    undo:
        if (!event_level_error(rc))
            goto fail;
        if (!v->batch_safe) {
            fh_event_clear(&tree);
            return REPLAY;
        }
        fh_metric_add(v->m_errors, 1);
        snprintf(reason, sizeof(reason), "view: SQLite refused the event: %s",
                 sqlite3_errmsg(v->db));
        fh_log(FH_LOG_ERROR, "view.apply", "topic=%s partition=%d offset=%lld id=%s error=%s",
               rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), ev.id),
               fh_log_quote(err, sizeof(err), sqlite3_errmsg(v->db)));
        if (view_wexec(v, W_UNDO) || view_wexec(v, W_RELEASE))
            goto fail;
        view_dedup_undo_last(v);
        /* A valid event the view cannot store: dead-lettered, so it is not lost silently. If
         * even that fails, the batch is retried rather than the event skipped. */
        if (fh_dlq_send(v->dlq, m, reason))
            goto fail;
        v->batch_invalid++;
        goto done;
    fail:
        fh_log(FH_LOG_ERROR, "view.sqlite", "op=apply error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->db)));
        fh_event_clear(&tree);
        return -1;
    done:
        fh_event_clear(&tree);
    }
    p->next = m->offset + 1;
    p->dirty = 1;
    v->batch_n++;
    if (ts > v->batch_record_ts)
        v->batch_record_ts = ts;
    if (ts > 0 && v->batch_ts_n < v->batch_ts_cap)
        v->batch_ts[v->batch_ts_n++] = ts;
    return 0;
}

/* An event failed on its own in a batch applied without savepoints: rolls the transaction back
 * and applies the held records again, each event in a savepoint, so that event alone is undone
 * (and dead-lettered) and the others stand, as if the batch had used savepoints from its start.
 * What a record did outside SQLite before the rollback (a dead-letter for want of memory, a log
 * line) may happen again. Returns 0, or -1 when the batch must be rolled back. */
static int replay(fh_view *v)
{
    /* an event-level error leaves the transaction open; ROLLBACK fails only if it is gone */
    if (view_wexec(v, W_ROLLBACK) && !sqlite3_get_autocommit(v->db))
        return -1;
    v->in_txn = 0;
    forget_batch(v);
    if (begin_txn(v))
        return -1;
    v->batch_safe = 1;
    fh_log(FH_LOG_DEBUG, "view.replay", "records=%zu", v->nrecs);
    for (size_t i = 0; i < v->nrecs; i++) {
        rd_kafka_message_t *m = v->recs[i];
        /* held records have a partition: part_of found it when they came */
        if (apply_record(v, part_of(v, m), m))
            return -1;
    }
    return 0;
}

int view_handle_record(fh_view *v, rd_kafka_message_t *m)
{
    vpart *p = part_of(v, m);
    if (!p) {
        /* a partition we were not assigned: cannot happen with manual assignment */
        rd_kafka_message_destroy(m);
        return 0;
    }
    if (v->nrecs >= (size_t)v->batch_max) {
        /* cannot happen: the loop commits a batch at view.batch_max records */
        rd_kafka_message_destroy(m);
        return -1;
    }
    v->recs[v->nrecs++] = m;
    int rc = apply_record(v, p, m);
    return rc == REPLAY ? replay(v) : rc;
}

static long long offsets_total(fh_view *v)
{
    long long t = 0;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < v->nparts[k]; i++)
            if (v->parts[k][i].next > 0)
                t += v->parts[k][i].next;
    return t;
}

/* Forgets the open batch: positions go back to what SQLite holds and the consumer is sent
 * there again. */
void view_abort_batch(fh_view *v)
{
    if (v->in_txn)
        view_wexec(v, W_ROLLBACK);
    v->in_txn = 0;
    forget_batch(v);
    release_recs(v);
    fh_metric_add(v->m_errors, 1);
    view_assign_all(v);
}

static void record_freshness(fh_view *v, int64_t now_ms)
{
    for (size_t i = 0; i < v->batch_ts_n; i++) {
        int64_t d = now_ms - v->batch_ts[i];
        if (d < 0)
            d = 0;
        for (int b = 0; b < FRESH_BUCKETS; b++)
            if (d <= view_fresh_le[b])
                fh_metric_add(v->m_fresh[b], 1);
        fh_metric_add(v->m_fresh[FRESH_BUCKETS], 1);
        fh_metric_add(v->m_fresh_sum, d);
    }
    fh_metric_add(v->m_fresh_count, (long long)v->batch_ts_n);
}

/* Commits the open batch with its offsets. Returns 0, or -1 after rolling it back. */
int view_commit_batch(fh_view *v)
{
    int rc = SQLITE_OK;
    for (int k = 0; k < NTOPICS && !rc; k++)
        for (int i = 0; i < v->nparts[k] && !rc; i++) {
            vpart *p = &v->parts[k][i];
            if (!p->dirty)
                continue;
            sqlite3_stmt *st = v->w[W_OFFSET];
            view_bind_text(st, 1, v->topic[k]);
            sqlite3_bind_int(st, 2, i);
            sqlite3_bind_int64(st, 3, p->next);
            rc = view_wrun(st);
        }
    if (!rc)
        rc = derive_batch_end(v);
    int64_t now = fh_now_ms();
    long long total = offsets_total(v);
    if (!rc) {
        sqlite3_stmt *st = v->w[W_STATE];
        sqlite3_bind_int64(st, 1, total);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, v->batch_record_ts);
        sqlite3_bind_double(st, 4, v->clock);
        sqlite3_bind_int64(st, 5, v->batch_events);
        sqlite3_bind_int64(st, 6, v->batch_dups);
        sqlite3_bind_int64(st, 7, v->batch_invalid);
        sqlite3_bind_int64(st, 8, v->batch_skipped);
        rc = view_wrun(st);
    }
    if (!rc)
        rc = view_wexec(v, W_COMMIT);
    if (rc) {
        {
            char q[420];
            fh_log(FH_LOG_ERROR, "view.sqlite", "op=commit error=%s",
                   fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->db)));
        }
        view_abort_batch(v);
        return -1;
    }
    v->in_txn = 0;
    release_recs(v);
    view_dedup_commit(v);
    atomic_fetch_add(&v->records_lost, v->batch_lost);
    if (v->batch_record_ts > v->max_record_ts)
        v->max_record_ts = v->batch_record_ts;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < v->nparts[k]; i++) {
            v->parts[k][i].committed = v->parts[k][i].next;
            v->parts[k][i].dirty = 0;
        }
    long long ver = atomic_fetch_add(&v->version, 1) + 1;
    fh_metric_set(v->m_version, ver);
    fh_metric_add(v->m_applied, v->batch_events);
    fh_metric_add(v->m_dups, v->batch_dups);
    fh_metric_add(v->m_invalid, v->batch_invalid);
    fh_metric_add(v->m_skipped, v->batch_skipped);
    fh_metric_add(v->m_batches, 1);
    record_freshness(v, fh_now_ms());
    view_ci_commit(v);
    v->batch_n = 0;
    derive_after_commit(v);
    return 0;
}

/* ---- pruning ---------------------------------------------------------------------------- */

void view_prune(fh_view *v)
{
    char err[512], q[560];
    if (v->clock <= 0)
        return;
    double cutoff = v->clock - (double)v->retention_s;
    double dedup_cutoff = (double)v->max_record_ts / 1000.0 - (double)v->dedup_window_s;
    char sql[2048];
    /* At most 20,000 builds per round keeps the transaction short; the next round goes on. */
    snprintf(sql, sizeof(sql),
             "BEGIN IMMEDIATE;"
             "CREATE TEMP TABLE IF NOT EXISTS prune_ids(buildid INTEGER PRIMARY KEY);"
             "DELETE FROM prune_ids;"
             "INSERT INTO prune_ids SELECT buildid FROM builds WHERE finished = 1"
             " AND complete_at < %.3f LIMIT 20000;"
             "DELETE FROM steps WHERE buildid IN prune_ids;"
             "DELETE FROM properties WHERE buildid IN prune_ids;"
             "DELETE FROM logs WHERE buildid IN prune_ids;"
             "DELETE FROM builds WHERE buildid IN prune_ids;"
             "DELETE FROM buildrequests WHERE complete = 1 AND complete_at < %.3f;"
             "DELETE FROM changes WHERE when_ts < %.3f;"
             "DELETE FROM revisions WHERE pos < %.3f;"
             "DELETE FROM applied WHERE at < %.3f;",
             cutoff, cutoff, cutoff, cutoff, dedup_cutoff);
    int before = sqlite3_total_changes(v->db);
    if (fh_sqlite_exec(v->db, sql, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "view.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(v->db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    int deleted = sqlite3_total_changes(v->db) - before;
    if (deleted > 0 &&
        fh_sqlite_exec(v->db, "UPDATE view_state SET version = version + 1 WHERE id = 1", err,
                       sizeof(err))) {
        fh_log(FH_LOG_ERROR, "view.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(v->db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    if (fh_sqlite_exec(v->db, "COMMIT", err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "view.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(v->db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    if (deleted > 0) {
        long long ver = atomic_fetch_add(&v->version, 1) + 1;
        fh_metric_set(v->m_version, ver);
        fh_metric_add(v->m_pruned, deleted);
        fh_log(FH_LOG_INFO, "view.pruned", "rows=%d cutoff=%.3f", deleted, cutoff);
    }
}
