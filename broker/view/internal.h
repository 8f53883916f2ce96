/* view/internal.h: what the files of the view share, and nothing outside the view includes.
 * The view is described in view.h and drawn in docs/architecture.md ("View"). Files:
 *   view.c        start, stop, metrics, configuration
 *   schema.c      tables, writer statements, opening the SQLite file
 *   apply.c       one event into SQL (view thread)
 *   tests.c       test.results into per-test history; test-level flakiness (view thread)
 *   batch.c       batches, their commit with the offsets, lost records, freshness, pruning
 *   consumer.c    the Kafka consumer: assignment, partition discovery, watermarks
 *   dedup.c       applied event ids in memory (view thread)
 *   cimetrics.c   CI metrics: histograms at commit, /metrics/ci (view.h, cimetrics.h)
 *   derive.c      derived events (derive.h; derive_rules.c their rules)
 *   loop.c        the view thread on lib/fh_loop: consuming, batch and housekeeping timers
 *   checkpoint.c  the checkpointer thread and the WAL tail
 *   readers.c     the request gate, the read connection pool, as_of (REST threads)
 *   cache.c       the answer cache (REST threads) */
#ifndef FH_VIEW_INTERNAL_H
#define FH_VIEW_INTERNAL_H

#include "fh_consumer.h"
#include "view.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dlq.h"
#include "fh_acache.h"
#include "fh_consumer.h"
#include "fh_dedup.h"
#include "fh_event.h"
#include "fh_loop.h"
#include "fh_lastgreen.h"
#include "fh_log.h"
#include "fh_lost.h"
#include "fh_metrics.h"
#include "fh_sqlite.h"
#include "health.h"

/* Bumped when the tables change shape; an older file is rebuilt from Kafka. */
#define VIEW_SCHEMA 2
#define FRESH_BUCKETS 20

enum { TOPIC_EVENTS = 0, TOPIC_LOGS = 1, NTOPICS = 2 };

typedef struct vpart {
    int64_t next;      /* next offset to apply (in the open batch); -1: from the beginning */
    int64_t committed; /* next offset as committed in SQLite */
    int64_t lo, hi;    /* watermarks as librdkafka last saw them; -1 unknown */
    int dirty;         /* next changed in the open batch */
    /* records lost below this were logged and counted (a rolled-back batch meets the same gap
     * again); -1 none */
    int64_t lost_reported;
} vpart;

/* Writer statements, prepared once on the writer connection. */
enum wst {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SAVE,
    W_RELEASE,
    W_UNDO,
    W_APPLIED,
    W_CHANGE,
    W_REVISION,
    W_BUILDER,
    W_BR_NEW,
    W_BR_CLAIM,
    W_BR_COMPLETE,
    W_BR_BUILD,
    W_BUILD_STARTED,
    W_BUILD_UPDATED,
    W_BUILD_FINISHED,
    W_STEP_STARTED,
    W_STEP_FINISHED,
    W_LOG,
    W_PROPS,
    W_WORKER,
    W_OFFSET,
    W_STATE,
    W_LOST,
    W_TEST_GET, /* view/tests.c from here */
    W_TEST_NEW,
    W_TEST_SEEN,
    W_TEST_COUNT,
    W_TEST_OLDEST,
    W_TEST_DROP,
    W_TEST_DROP_RUNS,
    W_TEST_DROP_FLAKY,
    W_TEST_RUN,
    W_TEST_TRIM,
    W_TEST_EXPIRE,
    W_TEST_EXPIRE_TESTS,
    W_TEST_EXPIRE_FLAKY,
    W_TEST_OUTCOMES,
    W_TEST_FLAKY_MARK,
    W_TEST_FLIP_MAYBE,
    W__COUNT
};

struct view_reader {
    fh_view *view; /* the view it reads */
    sqlite3 *db;
    sqlite3_stmt *st[VIEW_READER_SLOTS];
    view_reader *next;
};

struct fh_view {
    fh_broker *b;
    fh_view_config cfg; /* strings borrowed from b->cfg */
    int started;        /* the view thread runs */
    int stopped;        /* fh_view_stop ran */
    char path[1024];
    const char *topic[NTOPICS];
    long long batch_max, batch_ms, retention_s, prune_interval_s, dedup_window_s, metadata_ms;
    long long required_window_s, max_revisions, dedup_entries;
    size_t max_record_bytes;
    int nice;

    /* view thread */
    pthread_t thread;
    _Atomic int stop;
    fh_loop *loop;        /* the thread's; other threads only fh_loop_stop it */
    fh_consumer_watch kq; /* the consumer queue's wake-up, watched on the loop */
    uint64_t batch_timer; /* commits the open batch view.batch_ms after its first record */
    int held;             /* SQLite failed: consuming waits a second (the hold timer) */
    int64_t kafka_warned_ms, meta_warned_ms; /* rate limits of two warnings */
    fh_consumer *kc; /* the view's consumer (offsets policy); rk is its handle */
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkq; /* the consumer queue (loop.c) */
    fh_dlq *dlq;           /* valid records the view cannot store go there, never silently away */
    sqlite3 *db;
    sqlite3_stmt *w[W__COUNT];
    vpart *parts[NTOPICS];
    int nparts[NTOPICS];
    fh_buf scratch;
    fh_json_doc doc; /* the record being applied, parsed in place (reused: no malloc per record) */
    fh_dedup *dedup; /* applied ids (dedup.c) */
    fh_buf dedup_pending; /* ids applied in the open batch */
    double clock;
    int64_t max_record_ts; /* newest Kafka timestamp committed, ms */
    int64_t batch_first_ms;
    long long batch_n, batch_events, batch_dups, batch_invalid, batch_skipped, batch_lost;
    int64_t batch_record_ts;
    int64_t *batch_ts; /* Kafka timestamps of the open batch, for freshness (capped) */
    size_t batch_ts_n, batch_ts_cap;
    int in_txn;

    /* checkpointer thread: its own connection and loop; the writer's WAL hook wakes the loop */
    pthread_t ckpt_thread;
    int ckpt_started;
    sqlite3 *ckpt_db;
    fh_loop *ckpt_loop;
    long long checkpoint_pages;
    int wal_pages; /* frames in the WAL after the last commit (view thread) */

    /* published by the view thread */
    _Atomic long long version;
    _Atomic long long end_total; /* sum over partitions of what can be applied (high watermarks) */
    _Atomic long long records_lost; /* committed in view_lost: records Kafka deleted unread */

    /* gate for REST requests */
    _Atomic int closing;
    _Atomic int inflight;

    /* reader pool */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    view_reader *pool_free;
    int pool_open, pool_max;
    int reader_cache_kib;

    /* answer cache (its own locks) */
    fh_acache *cache;
    size_t max_entries, max_bytes;

    fh_lg_rules rules; /* view.required_builders, parsed at start */

    struct view_ci *ci;    /* CI metrics (cimetrics.c; its own locks) */
    struct derive *derive; /* derived events (derive.c; view thread only) */

    fh_metric *m_applied, *m_dups, *m_invalid, *m_skipped, *m_batches, *m_errors, *m_version,
        *m_behind, *m_pruned, *m_hits, *m_misses, *m_stale, *m_fresh[FRESH_BUCKETS + 1],
        *m_fresh_count, *m_fresh_sum, *m_checkpoints, *m_checkpoints_tail;
};

/* Upper bounds (ms) of the freshness histogram's buckets. */
extern const int view_fresh_le[FRESH_BUCKETS];

/* view.c */
/* Gives the calling thread view.nice (logs when it may not). */
void view_thread_nice(fh_view *v, const char *who);
/* Nonzero until fh_view_stop or the broker's shutdown. */
int view_running(fh_view *v);

/* schema.c */
int view_mkdirs_for(const char *file, char *errbuf, size_t errsize);
/* Opens (or rebuilds) the file, prepares the writer statements and loads view_state and the
 * stored offsets. Returns 0 or -1 with errbuf saying why. */
int view_db_open(fh_view *v, char *errbuf, size_t errsize);

/* apply.c */
void view_bind_text(sqlite3_stmt *st, int i, const char *s);
/* Steps a writer statement to its end and resets it: SQLITE_OK or the error. */
int view_wrun(sqlite3_stmt *st);
int view_wexec(fh_view *v, enum wst w);
/* Applies one valid event inside the open transaction: SQLITE_OK or the SQLite error; *stored
 * is 0 for types the view skips. */
int view_apply_event(fh_view *v, const fh_event_view *ev, const fh_event *tree, int *stored);

/* dedup.c: applied ids in memory, kept in SQLite's applied table across restarts */
/* Creates the memory and loads the stored ids (after view_db_open). 0, or -1 with errbuf. */
int view_dedup_open(fh_view *v, char *errbuf, size_t errsize);
void view_dedup_close(fh_view *v);
/* 1 when id was applied (or is earlier in the open batch): drop the record. 0: new, now in
 * flight in the open batch. */
int view_dedup_begin(fh_view *v, const char *id, int64_t ts_ms);
/* Forgets id, the last one begun (its event was undone). */
void view_dedup_undo_last(fh_view *v, const char *id);
/* The open batch committed: its ids are remembered. / It rolled back: they are forgotten. */
void view_dedup_commit(fh_view *v);
void view_dedup_abort(fh_view *v);

/* The envelope time of ev in epoch ms, advancing the view clock; -1 when unreadable. */
int64_t view_event_time_ms(fh_view *v, const fh_event *ev);

/* tests.c: per-test history (test.results; test.result_set is not stored: *stored = 0). Same
 * contract as view_apply_event. */
int view_tests_apply(fh_view *v, const fh_event *ev, int *stored);
/* Test-level flakiness, for derived events. Call after applying a result of test name on
 * builder at revision (passed: 1 it passed, 0 it failed), inside the open transaction. Returns
 * 1 when the test has now both passed and failed on that revision and this is the first call
 * that finds so (the pair is remembered in test_flaky, so calling again for the same or a later
 * result returns 0, whether called per result or once per chunk); 0 otherwise (also for an
 * empty revision, a test not tracked, or when the applied outcome is not there); -1 on a SQLite
 * error. A pair is forgotten with its test's history (view.retention_s, view.max_tests,
 * view.max_test_runs), after which it can be reported again. */
int view_test_flaky_first(fh_view *v, const char *builder, const char *name, const char *revision,
                          int passed);

/* batch.c */
int view_begin_batch(fh_view *v);
/* Handles one record inside the open batch. Returns 0, or -1 when the batch must be rolled
 * back. */
int view_handle_record(fh_view *v, rd_kafka_message_t *m);
void view_abort_batch(fh_view *v);
/* Commits the open batch with its offsets and view_state. Returns 0, or -1 after rolling it
 * back. */
int view_commit_batch(fh_view *v);
void view_prune(fh_view *v);

/* consumer.c */
void view_assign_all(fh_view *v);
int view_kafka_open(fh_view *v, char *errbuf, size_t errsize);
/* Looks up the partition counts; grows the partition table and reassigns when they grew.
 * Between batches only. */
void view_refresh_partitions(fh_view *v);
/* Publishes how far the topics go (end_total, the behind metric). */
void view_publish_end(fh_view *v);

/* loop.c */
/* Creates the thread's loop and watches the consumer queue (after view_kafka_open). */
int view_loop_open(fh_view *v, char *errbuf, size_t errsize);
void view_loop_close(fh_view *v);
/* The view thread; arg is the handle. */
void *view_main(void *arg);

/* checkpoint.c */
void view_ckpt_start(fh_view *v);
void view_ckpt_tail(fh_view *v);
void view_ckpt_stop(fh_view *v);

#endif
