/* view: the materialised view behind the REST layer (docs/architecture.md, "View").
 *
 * One handle (fh_view) per view file. Its own thread reads every partition of topics.events and
 * topics.logs with its own Kafka consumer (manual assignment; no group membership, no Kafka
 * commits), starting from the offsets stored in the view's SQLite file, and applies the events in
 * batches: each batch and the offsets it covers are one SQLite transaction, so after a crash (even
 * SIGKILL) nothing is applied twice and nothing is skipped. Updates are idempotent by event id
 * and commutative where Buildbot's order can be broken (terminal states win; claims and worker
 * presence go by event time).
 *
 * Readers (the REST handlers, on libmicrohttpd's threads) borrow read-only connections from a
 * capped pool and keep rendered answers in a capped LRU cache keyed by the view's version, which
 * grows by one per committed transaction. */
#ifndef FH_BROKER_VIEW_H
#define FH_BROKER_VIEW_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "fh_error.h"
#include "fh_lastgreen.h"
#include "fh_util.h"

/* The view's keys, one entry of broker_opts in main.c (after the auth.* entries);
 * fh_view_config_read reads them. */
/* clang-format off */
#define FH_VIEW_CFG \
    {"view.enabled", NULL, FH_CFG_BOOL, "true", 0, 0, \
     "keep the materialised view and serve the /api/v1 REST endpoints"}, \
    {"view.path", NULL, FH_CFG_STR, "var/view.db", 0, 0, \
     "SQLite file of the view (WAL mode; the directory is created; delete the file to rebuild)"}, \
    {"view.batch_max", NULL, FH_CFG_INT, "5000", 1, 1000000, \
     "events applied in one SQLite transaction at most"}, \
    {"view.batch_ms", NULL, FH_CFG_INT, "20", 1, 60000, \
     "a batch is committed at most this many ms after its first event"}, \
    {"view.retention_s", NULL, FH_CFG_INT, "604800", 60, 315360000, \
     "finished builds (with steps, properties, logs), completed requests and changes older " \
     "than this by the view clock are pruned"}, \
    {"view.prune_interval_s", NULL, FH_CFG_INT, "60", 1, 86400, "how often pruning runs"}, \
    {"view.dedup_window_s", NULL, FH_CFG_INT, "900", 60, 31536000, \
     "applied event ids are remembered this long (by Kafka timestamp) to drop duplicates"}, \
    {"view.dedup_entries", NULL, FH_CFG_INT, "1000000", 1000, 100000000, \
     "most applied event ids remembered (32 bytes each, in memory); past it the oldest are " \
     "forgotten first, before view.dedup_window_s"}, \
    {"view.required_builders", NULL, FH_CFG_STR, "", 0, 0, \
     "builders last-green requires, per branch: \"trunk=linux,mac;release=linux\"; other " \
     "branches require every builder that finished a build on them within " \
     "view.required_window_s"}, \
    {"view.required_window_s", NULL, FH_CFG_INT, "86400", 60, 315360000, \
     "default required builders of a branch: those that finished a build on it at most this " \
     "long before its newest finished build"}, \
    {"view.max_revisions", NULL, FH_CFG_INT, "5000", 10, 1000000, \
     "newest revisions of a branch that last-green and revisions consider"}, \
    {"view.cache_entries", NULL, FH_CFG_INT, "1024", 1, 1000000, \
     "rendered REST answers kept (LRU)"}, \
    {"view.cache_bytes", NULL, FH_CFG_INT, "67108864", 65536, 17179869184LL, \
     "bytes of rendered REST answers kept (LRU)"}, \
    {"view.read_connections", NULL, FH_CFG_INT, "8", 1, 256, \
     "read-only SQLite connections shared by the REST threads (more requests wait)"}, \
    {"view.sqlite_cache_kib", NULL, FH_CFG_INT, "16384", 256, 4194304, \
     "SQLite page cache of the writer connection in KiB; each reader gets a quarter"}, \
    {"view.nice", NULL, FH_CFG_INT, "-5", -20, 19, \
     "scheduling niceness of the view and checkpointer threads (below 0 needs CAP_SYS_NICE; " \
     "without it they stay at the process's own)"}, \
    {"view.checkpoint_pages", NULL, FH_CFG_INT, "2000", 100, 10000000, \
     "WAL pages (4 KiB) after which the view's checkpointer thread copies them into the database"}, \
    {"view.metadata_refresh_ms", NULL, FH_CFG_INT, "5000", 100, 3600000, \
     "how often the view looks for new partitions of its topics"}, \
    {"view.max_tests", NULL, FH_CFG_INT, "20000", 10, 10000000, \
     "tests (builder and test name) whose history the view keeps; a new test past it evicts " \
     "the least recently seen one with its history"}, \
    {"view.max_test_runs", NULL, FH_CFG_INT, "1000000", 1000, 1000000000, \
     "test results the view keeps (stats/tests, flaky); past it the oldest go first"}
/* clang-format on */

/* Every key the view reads, read once by fh_view_config_read. Strings are borrowed from the
 * fh_config they were read from, which must outlive the handle. */
typedef struct fh_view_config {
    int enabled;
    const char *path, *required_builders;
    long long batch_max, batch_ms, retention_s, prune_interval_s, dedup_window_s, dedup_entries,
        required_window_s, max_revisions, cache_entries, cache_bytes, read_connections,
        sqlite_cache_kib, checkpoint_pages, metadata_refresh_ms, max_tests, max_test_runs;
    int nice;
    /* metrics.ci_max_builders, metrics.ci_max_state_series, metrics.ci_ttl_ms (cimetrics.h) */
    long long ci_max_builders, ci_max_state_series, ci_ttl_ms;
    const char *topic_events, *topic_logs; /* kafka.topic_events, kafka.topic_logs */
    const char *group;                     /* kafka.group: the view's consumer is "<group>.view" */
    size_t max_record_bytes;               /* events.max_bytes */
} fh_view_config;

/* Fills cfg from c: every view.* key of FH_VIEW_CFG, the metrics.ci_* keys, the topics,
 * kafka.group and events.max_bytes. (derive.* keys are read by derive_open.) */
void fh_view_config_read(const fh_config *c, fh_view_config *cfg);

/* The view: one handle per view file. Every function below takes it; the REST handlers and
 * /readyz get it as their route context. */
typedef struct fh_view fh_view;

/* Starts the view: opens or creates the SQLite file and starts its threads. With cfg->enabled
 * false it starts nothing and the REST routes answer 503. b (the Kafka bootstrap, the contract,
 * the run flag, the dead-letter producer) must outlive the handle. On success *out is the handle
 * (free it with fh_view_free); on error *out is NULL and errbuf says why. */
fh_err fh_view_start(fh_broker *b, const fh_view_config *cfg, fh_view **out, char *errbuf,
                     size_t errsize);

/* Stops the view: new REST requests get 503, in-flight ones finish, the thread commits what it
 * has applied, closes its consumer and the database. NULL and a stopped handle are fine. */
void fh_view_stop(fh_view *v);
/* Stops if needed and frees v. Call after the HTTP server stopped (its handlers use v). NULL is
 * fine. */
void fh_view_free(fh_view *v);

/* ---- the reader side, for rest.c -------------------------------------------------------- */

/* What an answer reflects: read in the same read transaction as the answer itself. */
typedef struct view_asof {
    long long version;      /* transactions committed so far */
    long long view_offsets; /* sum over the view's partitions of the next offset to apply */
    int64_t applied_at_ms;  /* wall time of that commit; 0 before the first */
    int64_t record_ts_ms;   /* Kafka timestamp of the newest record applied; 0 when none */
    double clock;           /* the view clock: newest event time applied (epoch s); 0 when none */
    long long records_lost; /* records Kafka deleted before the view read them, in every run
                               since the file was made: answers may miss their events */
} view_asof;

/* Appends "\"as_of\":{...}" describing an answer that reflects a; "behind" and "lag_ms" are
 * computed now, against what the consumer knows of the topics. */
void view_asof_json(fh_view *v, const view_asof *a, fh_buf *out);

/* Records Kafka deleted before the view read them, as committed (any run of this view file; 0
 * when the view is off or v is NULL). Any thread. */
long long view_records_lost(fh_view *v);

/* Enters a request: returns 0 and counts it in flight, or -1 when the view is stopping or off
 * (the caller answers 503). Every 0 must be paired with view_leave. */
int view_enter(fh_view *v);
void view_leave(fh_view *v);

/* A pooled read-only connection with its prepared statements. */
typedef struct view_reader view_reader;

/* Borrows a reader (waits while all view.read_connections are busy), opens a read transaction
 * and fills *asof from it. Returns NULL on error (errbuf says why). Give it back with
 * view_reader_put, which resets its statements and ends the transaction. Call between
 * view_enter and view_leave. */
view_reader *view_reader_get(fh_view *v, view_asof *asof, char *errbuf, size_t errsize);
void view_reader_put(fh_view *v, view_reader *r);
sqlite3 *view_reader_db(view_reader *r);
/* The view r reads (for its configuration: view_required_builders and the like). */
fh_view *view_reader_view(view_reader *r);

/* The reader's prepared statement for slot (0..VIEW_READER_SLOTS-1), prepared from sql on first
 * use, reset and unbound on every call. One slot, one sql, always. NULL on error (logged). */
#define VIEW_READER_SLOTS 48
sqlite3_stmt *view_reader_stmt(view_reader *r, int slot, const char *sql);

/* ---- the answer cache ------------------------------------------------------------------- */

enum view_cache_result {
    VIEW_CACHE_MISS = 0, /* nothing cached: render */
    VIEW_CACHE_HIT,      /* current: the body was appended and *asof filled */
    VIEW_CACHE_STALE,    /* older than the view, another thread is rendering it: the body was
                            appended and *asof filled (the answer says which version it is) */
    VIEW_CACHE_RENDER,   /* older than the view and the caller now owns rendering it: render,
                            then view_cache_put, or view_cache_abandon when rendering fails */
};

/* Looks key up; see the enum for what each result means. With HIT and STALE, *hash is what
 * view_cache_put was given for the body. */
enum view_cache_result view_cache_get(fh_view *v, const char *key, fh_buf *out, view_asof *asof,
                                      unsigned long long *hash);
/* Stores a copy of a rendered body (and the hash the caller computed of it, for its ETag) for
 * key as of *asof, evicting the least recently used
 * entries beyond view.cache_entries / view.cache_bytes, and clears the rendering mark. An
 * answer that depends on the wall clock (waiting and elapsed times) passes ttl_ms > 0: after
 * that long it counts as older than the view even if the view did not change. */
void view_cache_put(fh_view *v, const char *key, const char *body, size_t len,
                    unsigned long long hash, const view_asof *asof, int ttl_ms);
/* Clears the rendering mark that VIEW_CACHE_RENDER gave the caller. */
void view_cache_abandon(fh_view *v, const char *key);
/* Bytes the answer cache holds now (0 without a view). Any thread. */
size_t view_cache_bytes(fh_view *v);

/* ---- configuration the REST layer reads ------------------------------------------------- */

/* The builders view.required_builders names for branch (parsed at start; borrowed), or NULL
 * when the branch uses the default rule. */
const fh_lg_rule *view_required_builders(fh_view *v, const char *branch);
long long view_required_window_s(fh_view *v);
long long view_max_revisions(fh_view *v);

#endif
