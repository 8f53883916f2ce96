/* view/derive: the events the view derives from what it applies (builder.broken,
 * builder.fixed, lkgr.advanced, request.stale, test.flaky; docs/events.md, "Derived events").
 *
 * View thread only. Derivation runs inside the view's batch transaction and keeps its state in
 * the view's SQLite file (derive_* tables), so it survives restarts; each derived event is
 * recorded by its deterministic id (derive_seen) and queued in an outbox table in the same
 * transaction, and produced (acks=all) to topics.derived after the commit; a record leaves the
 * outbox once Kafka acknowledged it. A new (or rebuilt) view file first reads the derived topic
 * back into derive_seen, so an id is never emitted with two different contents. */
#ifndef FH_VIEW_DERIVE_H
#define FH_VIEW_DERIVE_H

#include <stdint.h>

#include "fh_event.h"

typedef struct fh_view fh_view;

/* clang-format off */
#define FH_DERIVE_CFG \
    {"derive.enabled", NULL, FH_CFG_BOOL, "true", 0, 0, \
     "derive builder.broken, builder.fixed, lkgr.advanced, request.stale and test.flaky in the " \
     "view and produce them to topics.derived (needs view.enabled)"}, \
    {"derive.stale_after", NULL, FH_CFG_STR, "*=3600", 0, 0, \
     "request.stale thresholds: \"glob=seconds\" rules separated by ',' (first builder glob " \
     "that matches wins; no match: never stale), e.g. \"release-*=600,*=3600\""}, \
    {"derive.check_interval_ms", NULL, FH_CFG_INT, "1000", 100, 3600000, \
     "how often the view looks for stale requests and retries undelivered derived events"}, \
    {"derive.lkgr_interval_ms", NULL, FH_CFG_INT, "1000", 0, 3600000, \
     "last-green of the branches that got finished builds is recomputed at most this often " \
     "(at a batch's commit, or between batches); 0: at every batch"}, \
    {"derive.lkgr_per_turn", NULL, FH_CFG_INT, "4", 1, 100000, \
     "branches whose last-green is recomputed in one turn (at one batch's commit, or one turn " \
     "between batches); the other due branches follow at the next turns, so a turn stays short"}, \
    {"derive.max_suspects", NULL, FH_CFG_INT, "100", 1, 10000, \
     "suspect revisions a builder.broken event lists at most (the newest)"}, \
    {"derive.outbox_max", NULL, FH_CFG_INT, "10000", 10, 10000000, \
     "derived events waiting for Kafka at most; at the cap the view stops applying (retries " \
     "its batch every second) until Kafka takes them"}
/* clang-format on */

/* After view_db_open: reads the configuration, creates the tables, the producer, and (for a
 * new file) reads topics.derived back. Returns 0 (derivation off or on), or -1 with errbuf. */
int derive_open(fh_view *v, char *errbuf, size_t errsize);
/* Before the writer connection closes: flushes what it can, frees everything. */
void derive_close(fh_view *v);
/* One event the view has just applied, inside the open batch (and the event's savepoint when
 * the batch is replayed: view/batch.c). SQLITE_OK or the error. */
int derive_event(fh_view *v, const fh_event *ev);
/* A test result the view has just applied (view/tests.c) made test name flaky at ev's revision
 * (view_test_flaky_first said 1): derives test.flaky for it. passed: what this result was.
 * Inside the open batch; SQLITE_OK (also with derivation off) or the error. */
int derive_test_flaky(fh_view *v, const fh_event *ev, const char *name, int passed);
/* 1 when derivation is on (so the view spends nothing on it otherwise). */
int derive_on(fh_view *v);
/* Before the batch commits: last-green of the branches the batch touched. SQLITE_OK or the
 * error (the batch is rolled back). */
int derive_batch_end(fh_view *v);
/* After a commit: produces the outbox. */
void derive_after_commit(fh_view *v);
/* Called by the view loop between batches: request.stale, delivery retries, pruning; acts at
 * most every derive.check_interval_ms. */
void derive_tick(fh_view *v, int64_t now_ms);

#endif
