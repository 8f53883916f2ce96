/* view: see view.h. Thread model: the view thread owns the Kafka consumer, the writer
 * connection and the partition table; REST threads own the readers they borrow; the pool, the
 * cache and the published position (atomics) are what crosses between them. */
#include "view.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "dlq.h"
#include "fh_acache.h"
#include "fh_lastgreen.h"
#include "fh_log.h"
#include "fh_lost.h"
#include "fh_metrics.h"
#include "health.h"

/* Bumped when the tables change shape; an older file is rebuilt from Kafka. */
#define VIEW_SCHEMA 1
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
    W__COUNT
};

struct view_reader {
    sqlite3 *db;
    sqlite3_stmt *st[VIEW_READER_SLOTS];
    view_reader *next;
};

static struct view {
    fh_broker *b;
    int started;
    char path[1024];
    const char *topic[NTOPICS];
    long long batch_max, batch_ms, retention_s, prune_interval_s, dedup_window_s, metadata_ms;
    long long required_window_s, max_revisions;
    size_t max_record_bytes;
    int nice;

    /* view thread */
    pthread_t thread;
    _Atomic int stop;
    rd_kafka_t *rk;
    fh_dlq *dlq; /* valid records the view cannot store go there, never silently away */
    sqlite3 *db;
    sqlite3_stmt *w[W__COUNT];
    vpart *parts[NTOPICS];
    int nparts[NTOPICS];
    fh_buf scratch;
    double clock;
    int64_t max_record_ts; /* newest Kafka timestamp committed, ms */
    int64_t batch_first_ms;
    long long batch_n, batch_events, batch_dups, batch_invalid, batch_skipped, batch_lost;
    int64_t batch_record_ts;
    int64_t *batch_ts; /* Kafka timestamps of the open batch, for freshness (capped) */
    size_t batch_ts_n, batch_ts_cap;
    int in_txn;

    /* checkpointer thread: its own connection; the writer's WAL hook wakes it */
    pthread_t ckpt_thread;
    int ckpt_started;
    sqlite3 *ckpt_db;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    int ckpt_wanted, ckpt_stop;
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

    fh_metric *m_applied, *m_dups, *m_invalid, *m_skipped, *m_batches, *m_errors, *m_version,
        *m_behind, *m_pruned, *m_hits, *m_misses, *m_stale, *m_fresh[FRESH_BUCKETS + 1],
        *m_fresh_count, *m_fresh_sum, *m_checkpoints, *m_checkpoints_tail;
} V;

static const int fresh_le[FRESH_BUCKETS] = {1,  2,   3,   5,   7,   10,  15,   20,   30,   50,
                                            75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000};

/* ---- SQL -------------------------------------------------------------------------------- */

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS view_state("
    " id INTEGER PRIMARY KEY CHECK (id = 1), schema INTEGER NOT NULL,"
    " version INTEGER NOT NULL DEFAULT 0, view_offsets INTEGER NOT NULL DEFAULT 0,"
    " applied_at_ms INTEGER NOT NULL DEFAULT 0, record_ts_ms INTEGER NOT NULL DEFAULT 0,"
    " clock REAL NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0,"
    " duplicates INTEGER NOT NULL DEFAULT 0, invalid INTEGER NOT NULL DEFAULT 0,"
    " skipped INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS offsets(topic TEXT NOT NULL, part INTEGER NOT NULL,"
    " next_offset INTEGER NOT NULL, PRIMARY KEY (topic, part)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS applied(id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS applied_at ON applied(at);"
    "CREATE TABLE IF NOT EXISTS builders(builderid INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " project TEXT NOT NULL DEFAULT '', last_seen REAL);"
    "CREATE TABLE IF NOT EXISTS buildrequests(buildrequestid INTEGER PRIMARY KEY,"
    " builderid INTEGER, builder TEXT NOT NULL DEFAULT '', branch TEXT NOT NULL DEFAULT '',"
    " revision TEXT NOT NULL DEFAULT '', repository TEXT NOT NULL DEFAULT '',"
    " project TEXT NOT NULL DEFAULT '', codebase TEXT NOT NULL DEFAULT '',"
    " owner TEXT NOT NULL DEFAULT '', buildsetid INTEGER, priority INTEGER, submitted_at REAL,"
    " reason TEXT, claimed INTEGER NOT NULL DEFAULT 0, claimed_at REAL, claimed_by_master TEXT,"
    " claim_t INTEGER NOT NULL DEFAULT -1, complete INTEGER NOT NULL DEFAULT 0, complete_at REAL,"
    " results INTEGER, buildid INTEGER);"
    "CREATE INDEX IF NOT EXISTS br_pending ON buildrequests(submitted_at, buildrequestid)"
    " WHERE claimed = 0 AND complete = 0 AND submitted_at IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS br_complete ON buildrequests(complete_at) WHERE complete = 1;"
    "CREATE TABLE IF NOT EXISTS builds(buildid INTEGER PRIMARY KEY, builderid INTEGER,"
    " builder TEXT NOT NULL DEFAULT '', branch TEXT NOT NULL DEFAULT '',"
    " revision TEXT NOT NULL DEFAULT '', repository TEXT NOT NULL DEFAULT '',"
    " project TEXT NOT NULL DEFAULT '', codebase TEXT NOT NULL DEFAULT '',"
    " owner TEXT NOT NULL DEFAULT '', buildrequestid INTEGER, number INTEGER, worker TEXT,"
    " master TEXT, started_at REAL, finished INTEGER NOT NULL DEFAULT 0, complete_at REAL,"
    " results INTEGER, state_string TEXT, duration_s REAL);"
    "CREATE INDEX IF NOT EXISTS builds_running ON builds(buildid) WHERE finished = 0;"
    "CREATE INDEX IF NOT EXISTS builds_branch ON builds(repository, branch, revision, builder);"
    "CREATE INDEX IF NOT EXISTS builds_builder ON builds(builder, buildid);"
    "CREATE INDEX IF NOT EXISTS builds_complete ON builds(complete_at) WHERE finished = 1;"
    "CREATE INDEX IF NOT EXISTS builds_request ON builds(buildrequestid);"
    "CREATE TABLE IF NOT EXISTS steps(stepid INTEGER PRIMARY KEY, buildid INTEGER NOT NULL,"
    " builder TEXT NOT NULL DEFAULT '', number INTEGER, name TEXT, started_at REAL,"
    " finished INTEGER NOT NULL DEFAULT 0, complete_at REAL, results INTEGER, state_string TEXT,"
    " duration_s REAL, urls TEXT, hidden INTEGER);"
    "CREATE INDEX IF NOT EXISTS steps_build ON steps(buildid, number);"
    "CREATE INDEX IF NOT EXISTS steps_stats ON steps(builder, complete_at) WHERE finished = 1;"
    "CREATE INDEX IF NOT EXISTS steps_complete ON steps(complete_at) WHERE finished = 1;"
    "CREATE TABLE IF NOT EXISTS properties(buildid INTEGER NOT NULL, name TEXT NOT NULL,"
    " value TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (buildid, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS logs(logid INTEGER PRIMARY KEY, stepid INTEGER, buildid INTEGER,"
    " name TEXT, slug TEXT, type TEXT, num_lines INTEGER NOT NULL DEFAULT 0,"
    " finished INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS logs_build ON logs(buildid, stepid);"
    "CREATE TABLE IF NOT EXISTS changes(changeid INTEGER PRIMARY KEY, author TEXT, comments TEXT,"
    " files TEXT, when_ts REAL, category TEXT, revlink TEXT, branch TEXT, revision TEXT,"
    " repository TEXT, project TEXT, codebase TEXT);"
    "CREATE INDEX IF NOT EXISTS changes_when ON changes(when_ts);"
    "CREATE INDEX IF NOT EXISTS changes_rev ON changes(repository, branch, revision);"
    "CREATE TABLE IF NOT EXISTS revisions(repository TEXT NOT NULL, branch TEXT NOT NULL,"
    " revision TEXT NOT NULL, pos REAL NOT NULL, changeid INTEGER,"
    " PRIMARY KEY (repository, branch, revision)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS revisions_order ON revisions(repository, branch, pos);"
    "CREATE TABLE IF NOT EXISTS workers(workerid INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " master TEXT, connected INTEGER NOT NULL DEFAULT 0, state_t INTEGER NOT NULL DEFAULT -1);"
    /* Records Kafka deleted before the view read them, per partition: the view misses their
     * events for good (as_of.records_lost); only a rebuild clears it. */
    "CREATE TABLE IF NOT EXISTS view_lost(topic TEXT NOT NULL, part INTEGER NOT NULL,"
    " records INTEGER NOT NULL, first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,"
    " at_ms INTEGER NOT NULL, PRIMARY KEY (topic, part)) WITHOUT ROWID;";

static const char *const drop_sql =
    "DROP TABLE IF EXISTS view_state; DROP TABLE IF EXISTS offsets; DROP TABLE IF EXISTS applied;"
    "DROP TABLE IF EXISTS builders; DROP TABLE IF EXISTS buildrequests;"
    "DROP TABLE IF EXISTS builds; DROP TABLE IF EXISTS steps; DROP TABLE IF EXISTS properties;"
    "DROP TABLE IF EXISTS logs; DROP TABLE IF EXISTS changes; DROP TABLE IF EXISTS revisions;"
    "DROP TABLE IF EXISTS workers; DROP TABLE IF EXISTS view_lost;";

/* Context columns of build-scoped rows, bound as ?2..?9 (?1 is the row's id). A later event
 * fills a field only with a non-empty value, so an unresolved revision ("") never erases one. */
#define CTX_COLS "builderid,builder,branch,revision,repository,project,codebase,owner"
#define CTX_VALS "?2,?3,?4,?5,?6,?7,?8,?9"
#define KEEP(t, c) c "=CASE WHEN excluded." c "<>'' THEN excluded." c " ELSE " t "." c " END"
#define CTX_SET(t)                                                                                 \
    "builderid=coalesce(excluded.builderid," t                                                     \
    ".builderid)," KEEP(t, "builder") "," KEEP(t, "branch") "," KEEP(t, "revision") "," KEEP(      \
        t, "repository") "," KEEP(t, "project") "," KEEP(t, "codebase") "," KEEP(t, "owner")
/* A claim or presence change applies when it is newer; at equal times "claimed" or "connected"
 * wins, so the outcome does not depend on arrival order. */
#define NEWER(t, tc, c)                                                                            \
    "(excluded." tc ">" t "." tc " OR (excluded." tc "=" t "." tc " AND excluded." c ">=" t "." c  \
    "))"
#define BR_NEWER NEWER("buildrequests", "claim_t", "claimed")
#define WK_NEWER NEWER("workers", "state_t", "connected")

static const char *const wsql[W__COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SAVE] = "SAVEPOINT ev",
    [W_RELEASE] = "RELEASE ev",
    [W_UNDO] = "ROLLBACK TO ev",
    [W_APPLIED] = "INSERT INTO applied(id, at) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
    [W_CHANGE] =
        "INSERT INTO changes(changeid, author, comments, files, when_ts, category, revlink, branch,"
        " revision, repository, project, codebase) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
        " ON CONFLICT(changeid) DO UPDATE SET author=excluded.author, comments=excluded.comments,"
        " files=excluded.files, when_ts=excluded.when_ts, category=excluded.category,"
        " revlink=excluded.revlink, branch=excluded.branch, revision=excluded.revision,"
        " repository=excluded.repository, project=excluded.project, codebase=excluded.codebase",
    /* The order of a branch's revisions: by the earliest change that names the revision (when,
     * then changeid); a revision only seen in builds sorts by when it was first built. */
    [W_REVISION] =
        "INSERT INTO revisions(repository, branch, revision, pos, changeid)"
        " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET"
        " pos = CASE WHEN (excluded.changeid IS NOT NULL AND (revisions.changeid IS NULL"
        "   OR excluded.pos < revisions.pos OR (excluded.pos = revisions.pos"
        "   AND excluded.changeid < revisions.changeid))) OR (excluded.changeid IS NULL"
        "   AND revisions.changeid IS NULL AND excluded.pos < revisions.pos)"
        "  THEN excluded.pos ELSE revisions.pos END,"
        " changeid = CASE WHEN (excluded.changeid IS NOT NULL AND (revisions.changeid IS NULL"
        "   OR excluded.pos < revisions.pos OR (excluded.pos = revisions.pos"
        "   AND excluded.changeid < revisions.changeid)))"
        "  THEN excluded.changeid ELSE revisions.changeid END",
    /* Name and project come from the builder's newest event by time, whatever order the
     * partitions are read in. */
    [W_BUILDER] =
        "INSERT INTO builders(builderid, name, project, last_seen) VALUES(?1,?2,?3,?4)"
        " ON CONFLICT DO UPDATE SET"
        " name=CASE WHEN coalesce(excluded.last_seen, 0) >= coalesce(builders.last_seen, 0)"
        "  THEN excluded.name ELSE builders.name END,"
        " project=CASE WHEN excluded.project<>'' AND (builders.project = '' OR"
        "  coalesce(excluded.last_seen, 0) >= coalesce(builders.last_seen, 0))"
        "  THEN excluded.project ELSE builders.project END,"
        " last_seen=max(coalesce(builders.last_seen, 0), coalesce(excluded.last_seen, 0))",
    [W_BR_NEW] =
        "INSERT INTO buildrequests(buildrequestid," CTX_COLS
        ", buildsetid, priority, submitted_at, reason) VALUES(?1," CTX_VALS
        ",?10,?11,?12,?13) ON CONFLICT DO UPDATE SET " CTX_SET(
            "buildrequests") ", buildsetid=excluded.buildsetid, priority=excluded.priority,"
                             " submitted_at=excluded.submitted_at, reason=excluded.reason",
    [W_BR_CLAIM] =
        "INSERT INTO buildrequests(buildrequestid," CTX_COLS
        ", claimed, claimed_at, claimed_by_master, claim_t) VALUES(?1," CTX_VALS
        ",?10,?11,?12,?13) ON CONFLICT DO UPDATE SET " CTX_SET(
            "buildrequests") ", claimed=CASE WHEN " BR_NEWER " THEN excluded.claimed ELSE"
                             " buildrequests.claimed END,"
                             " claimed_at=CASE WHEN " BR_NEWER " THEN excluded.claimed_at ELSE"
                             " buildrequests.claimed_at END,"
                             " claimed_by_master=CASE WHEN " BR_NEWER
                             " THEN excluded.claimed_by_master ELSE "
                             "buildrequests.claimed_by_master END,"
                             " claim_t=CASE WHEN " BR_NEWER " THEN excluded.claim_t ELSE"
                             " buildrequests.claim_t END",
    /* Complete is terminal: nothing later makes the request pending or claimed again. */
    [W_BR_COMPLETE] = "INSERT INTO buildrequests(buildrequestid," CTX_COLS
                      ", complete, complete_at, results, buildid) VALUES(?1," CTX_VALS
                      ",1,?10,?11,?12) ON CONFLICT DO UPDATE SET " CTX_SET(
                          "buildrequests") ", complete=1, complete_at=excluded.complete_at, "
                                           "results=excluded.results,"
                                           " buildid=nullif(max(coalesce(buildrequests.buildid,0),"
                                           " coalesce(excluded.buildid,0)),0)",
    [W_BR_BUILD] =
        "INSERT INTO buildrequests(buildrequestid," CTX_COLS ", buildid) VALUES(?1," CTX_VALS
        ",?10) ON CONFLICT DO UPDATE SET " CTX_SET(
            "buildrequests") ", buildid=max(coalesce(buildrequests.buildid,0), excluded.buildid)",
    [W_BUILD_STARTED] =
        "INSERT INTO builds(buildid," CTX_COLS
        ", buildrequestid, number, worker, started_at, master) VALUES(?1," CTX_VALS
        ",?10,?11,?12,?13,?14) ON CONFLICT DO UPDATE SET " CTX_SET(
            "builds") ", buildrequestid=excluded.buildrequestid, number=excluded.number,"
                      " worker=excluded.worker, started_at=excluded.started_at,"
                      " master=excluded.master",
    /* Finished is terminal: a late build.updated does not change the final state string. */
    [W_BUILD_UPDATED] =
        "INSERT INTO builds(buildid," CTX_COLS ", buildrequestid, state_string) VALUES(?1," CTX_VALS
        ",?10,?11) ON CONFLICT DO UPDATE SET " CTX_SET(
            "builds") ", state_string=CASE WHEN builds.finished=0 THEN excluded.state_string"
                      " ELSE builds.state_string END",
    [W_BUILD_FINISHED] =
        "INSERT INTO builds(buildid," CTX_COLS ", buildrequestid, number, finished, complete_at, "
        "results, state_string, duration_s, master)"
        " VALUES(?1," CTX_VALS ",?10,?11,1,?12,?13,?14,?15,?16) ON CONFLICT DO UPDATE SET " CTX_SET(
            "builds") ", buildrequestid=excluded.buildrequestid, number=excluded.number,"
                      " finished=1, complete_at=excluded.complete_at, results=excluded.results,"
                      " state_string=excluded.state_string, duration_s=excluded.duration_s,"
                      " master=coalesce(builds.master, excluded.master)",
    [W_STEP_STARTED] =
        "INSERT INTO steps(stepid, buildid, builder, number, name, started_at)"
        " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT DO UPDATE SET"
        " buildid=excluded.buildid, builder=excluded.builder,"
        " number=excluded.number, name=excluded.name, started_at=excluded.started_at",
    [W_STEP_FINISHED] =
        "INSERT INTO steps(stepid, buildid, builder, number, name, finished, complete_at, results,"
        " state_string, duration_s, urls, hidden) VALUES(?1,?2,?3,?4,?5,1,?6,?7,?8,?9,?10,?11)"
        " ON CONFLICT DO UPDATE SET buildid=excluded.buildid, builder=excluded.builder,"
        " number=excluded.number, name=excluded.name, finished=1,"
        " complete_at=excluded.complete_at, results=excluded.results,"
        " state_string=excluded.state_string, duration_s=excluded.duration_s,"
        " urls=excluded.urls, hidden=excluded.hidden",
    [W_LOG] = "INSERT INTO logs(logid, stepid, buildid, name, slug, type, num_lines, finished)"
              " VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT DO UPDATE SET"
              " stepid=excluded.stepid, buildid=excluded.buildid, name=excluded.name,"
              " slug=excluded.slug, type=excluded.type,"
              " num_lines=max(logs.num_lines, excluded.num_lines),"
              " finished=max(logs.finished, excluded.finished)",
    /* property.set carries only the changed properties: merge them, [value, source] each. */
    [W_PROPS] =
        "INSERT INTO properties(buildid, name, value, source)"
        " SELECT ?1, j.key, j.value -> 0, coalesce(j.value ->> 1, '') FROM json_each(?2) j"
        " WHERE true ON CONFLICT DO UPDATE SET value=excluded.value, source=excluded.source",
    [W_WORKER] = "INSERT INTO workers(workerid, name, master, connected, state_t)"
                 " VALUES(?1,?2,?3,?4,?5) ON CONFLICT DO UPDATE SET name=excluded.name,"
                 " master=CASE WHEN " WK_NEWER " THEN excluded.master ELSE workers.master END,"
                 " connected=CASE WHEN " WK_NEWER " THEN excluded.connected"
                 "  ELSE workers.connected END,"
                 " state_t=CASE WHEN " WK_NEWER " THEN excluded.state_t ELSE workers.state_t END",
    [W_OFFSET] = "INSERT INTO offsets(topic, part, next_offset) VALUES(?1,?2,?3)"
                 " ON CONFLICT DO UPDATE SET next_offset=excluded.next_offset",
    [W_STATE] = "UPDATE view_state SET version=version+1, view_offsets=?1, applied_at_ms=?2,"
                " record_ts_ms=max(record_ts_ms, ?3), clock=?4, events=events+?5,"
                " duplicates=duplicates+?6, invalid=invalid+?7, skipped=skipped+?8 WHERE id=1",
    [W_LOST] = "INSERT INTO view_lost(topic, part, records, first_offset, last_offset, at_ms)"
               " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT DO UPDATE SET"
               " records=records+excluded.records,"
               " first_offset=min(first_offset, excluded.first_offset),"
               " last_offset=max(last_offset, excluded.last_offset), at_ms=excluded.at_ms",
};

/* ---- small helpers ---------------------------------------------------------------------- */

/* Freshness is a promise and every reader depends on the one writer: on two cores shared with
 * Kafka and busy REST threads, the view thread at the default priority waits behind them and
 * freshness p99 grows to hundreds of ms. A lower niceness lets it run when it has records;
 * readers then get what is left. Without the privilege the thread keeps the process's. */
static void thread_nice(const char *who)
{
    if (V.nice == 0)
        return;
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (errno == 0 && cur == V.nice)
        return;
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), V.nice))
        fh_log(FH_LOG_INFO, "view.nice", "thread=%s nice=%d applied=false error=\"%s\"", who,
               V.nice, strerror(errno));
}

static int running(void)
{
    return !atomic_load(&V.stop) && *V.b->run;
}

static int mkdirs_for(const char *file, char *errbuf, size_t errsize)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) && errno != EEXIST)
            goto err;
        *p = '/';
    }
    if (*dir && mkdir(dir, 0755) && errno != EEXIST)
        goto err;
    return 0;
err:
    fh_errf(errbuf, errsize, FH_ERR_IO, "view.path: cannot create directory %s: %s", dir,
            strerror(errno));
    return -1;
}

static int exec_sql(sqlite3 *db, const char *sql, char *errbuf, size_t errsize)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Binds text or NULL. SQLITE_TRANSIENT: the event's strings die before the statement runs. */
static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void bind_str(sqlite3_stmt *st, int i, const fh_event *ev, const char *field)
{
    bind_text(st, i, fh_event_str(ev, field));
}

static void bind_int(sqlite3_stmt *st, int i, const fh_event *ev, const char *field)
{
    long long v;
    if (fh_event_int(ev, field, &v) == 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* Binds a number and advances the view clock with it (times in data are epoch seconds). */
static void bind_time(sqlite3_stmt *st, int i, const fh_event *ev, const char *field)
{
    double v;
    if (fh_event_num(ev, field, &v) == 0) {
        sqlite3_bind_double(st, i, v);
        /* A producer's clock far in the future must not prune the whole view. */
        if (v > V.clock && v < (double)fh_now_ms() / 1000.0 + 86400.0)
            V.clock = v;
    } else {
        sqlite3_bind_null(st, i);
    }
}

static void bind_num(sqlite3_stmt *st, int i, const fh_event *ev, const char *field)
{
    double v;
    if (fh_event_num(ev, field, &v) == 0)
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_json(sqlite3_stmt *st, int i, const fh_event *ev, const char *field)
{
    fh_buf_reset(&V.scratch);
    if (fh_event_member_json(ev, field, &V.scratch) == 0)
        sqlite3_bind_text(st, i, V.scratch.data ? V.scratch.data : "null", (int)V.scratch.len,
                          SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Binds the context as ?2..?9 (strings default to "" so rows never hold NULL context). */
static void bind_ctx(sqlite3_stmt *st, const fh_event *ev)
{
    static const char *const f[] = {"builder", "branch",   "revision", "repository",
                                    "project", "codebase", "owner"};
    bind_int(st, 2, ev, "builderid");
    for (int i = 0; i < 7; i++) {
        const char *s = fh_event_str(ev, f[i]);
        sqlite3_bind_text(st, 3 + i, s ? s : "", -1, SQLITE_TRANSIENT);
    }
}

/* Runs a bound writer statement to completion; returns the SQLite result code. */
static int wrun(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int wexec(enum wst w)
{
    return wrun(V.w[w]);
}

/* The envelope time of ev in epoch ms (orders claims and worker presence); -1 when unreadable.
 * The schema guarantees "time" is an RFC 3339 string. */
static int64_t event_time_ms(const fh_event *ev)
{
    int64_t ms = -1;
    const char *t = json_string_value(json_object_get(ev->root, "time"));
    if (!t || fh_time_parse(t, &ms))
        return -1;
    if (ms > 0 && ms / 1000.0 > V.clock && ms / 1000.0 < fh_now_ms() / 1000.0 + 86400.0)
        V.clock = ms / 1000.0;
    return ms;
}

/* ---- applying one event ----------------------------------------------------------------- */

/* Upserts the event's builder; last_seen is the event's own time (field), so the row does not
 * depend on the order partitions are read in. */
static int put_builder(const fh_event *ev, const char *field)
{
    long long id;
    double t = 0;
    const char *name = fh_event_str(ev, "builder");
    if (fh_event_int(ev, "builderid", &id) || !name)
        return SQLITE_OK;
    sqlite3_stmt *st = V.w[W_BUILDER];
    const char *project = fh_event_str(ev, "project");
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, name);
    bind_text(st, 3, project ? project : "");
    if (fh_event_num(ev, field, &t))
        sqlite3_bind_null(st, 4);
    else
        sqlite3_bind_double(st, 4, t);
    return wrun(st);
}

/* A revision seen in a build or request joins its branch's order (at time field of ev) unless
 * a change already placed it. */
static int put_build_revision(const fh_event *ev, const char *field)
{
    const char *rev = fh_event_str(ev, "revision"), *branch = fh_event_str(ev, "branch");
    const char *repo = fh_event_str(ev, "repository");
    double t;
    if (!rev || !*rev || !branch || !repo || fh_event_num(ev, field, &t))
        return SQLITE_OK;
    sqlite3_stmt *st = V.w[W_REVISION];
    bind_text(st, 1, repo);
    bind_text(st, 2, branch);
    bind_text(st, 3, rev);
    sqlite3_bind_double(st, 4, t);
    sqlite3_bind_null(st, 5);
    return wrun(st);
}

static int apply_change(const fh_event *ev)
{
    sqlite3_stmt *st = V.w[W_CHANGE];
    int rc;
    bind_int(st, 1, ev, "changeid");
    bind_str(st, 2, ev, "author");
    bind_str(st, 3, ev, "comments");
    bind_json(st, 4, ev, "files");
    bind_time(st, 5, ev, "when");
    bind_str(st, 6, ev, "category");
    bind_str(st, 7, ev, "revlink");
    bind_str(st, 8, ev, "branch");
    bind_str(st, 9, ev, "revision");
    bind_str(st, 10, ev, "repository");
    bind_str(st, 11, ev, "project");
    bind_str(st, 12, ev, "codebase");
    if ((rc = wrun(st)))
        return rc;
    const char *rev = fh_event_str(ev, "revision");
    if (!rev || !*rev)
        return SQLITE_OK;
    st = V.w[W_REVISION];
    bind_str(st, 1, ev, "repository");
    bind_str(st, 2, ev, "branch");
    bind_text(st, 3, rev);
    bind_num(st, 4, ev, "when");
    bind_int(st, 5, ev, "changeid");
    return wrun(st);
}

static int apply_buildrequest(const fh_event *ev)
{
    sqlite3_stmt *st;
    int rc;
    switch (ev->type) {
    case FH_EV_BUILDREQUEST_NEW:
        st = V.w[W_BR_NEW];
        sqlite3_bind_int64(st, 1, ev->buildrequestid);
        bind_ctx(st, ev);
        bind_int(st, 10, ev, "buildsetid");
        bind_int(st, 11, ev, "priority");
        bind_time(st, 12, ev, "submitted_at");
        bind_str(st, 13, ev, "reason");
        if ((rc = wrun(st)) || (rc = put_builder(ev, "submitted_at")))
            return rc;
        return put_build_revision(ev, "submitted_at");
    case FH_EV_BUILDREQUEST_CLAIMED:
    case FH_EV_BUILDREQUEST_UNCLAIMED: {
        int64_t t = event_time_ms(ev);
        st = V.w[W_BR_CLAIM];
        sqlite3_bind_int64(st, 1, ev->buildrequestid);
        bind_ctx(st, ev);
        sqlite3_bind_int(st, 10, ev->type == FH_EV_BUILDREQUEST_CLAIMED);
        bind_time(st, 11, ev, "claimed_at");
        bind_str(st, 12, ev, "claimed_by_master");
        sqlite3_bind_int64(st, 13, t);
        return wrun(st);
    }
    default: /* complete */
        st = V.w[W_BR_COMPLETE];
        sqlite3_bind_int64(st, 1, ev->buildrequestid);
        bind_ctx(st, ev);
        bind_time(st, 10, ev, "complete_at");
        bind_int(st, 11, ev, "results");
        bind_int(st, 12, ev, "buildid");
        return wrun(st);
    }
}

static int apply_build(const fh_event *ev)
{
    long long buildid;
    sqlite3_stmt *st;
    int rc;
    if (fh_event_int(ev, "buildid", &buildid))
        return SQLITE_OK;
    switch (ev->type) {
    case FH_EV_BUILD_STARTED:
        st = V.w[W_BUILD_STARTED];
        sqlite3_bind_int64(st, 1, buildid);
        bind_ctx(st, ev);
        sqlite3_bind_int64(st, 10, ev->buildrequestid);
        bind_int(st, 11, ev, "number");
        bind_str(st, 12, ev, "worker");
        bind_time(st, 13, ev, "started_at");
        bind_text(st, 14, ev->master);
        if ((rc = wrun(st)) || (rc = put_builder(ev, "started_at")) ||
            (rc = put_build_revision(ev, "started_at")))
            return rc;
        break;
    case FH_EV_BUILD_UPDATED:
        st = V.w[W_BUILD_UPDATED];
        sqlite3_bind_int64(st, 1, buildid);
        bind_ctx(st, ev);
        sqlite3_bind_int64(st, 10, ev->buildrequestid);
        bind_str(st, 11, ev, "state_string");
        return wrun(st);
    default: /* finished */
        st = V.w[W_BUILD_FINISHED];
        sqlite3_bind_int64(st, 1, buildid);
        bind_ctx(st, ev);
        sqlite3_bind_int64(st, 10, ev->buildrequestid);
        bind_int(st, 11, ev, "number");
        bind_time(st, 12, ev, "complete_at");
        bind_int(st, 13, ev, "results");
        bind_str(st, 14, ev, "state_string");
        bind_num(st, 15, ev, "duration_s");
        bind_text(st, 16, ev->master);
        if ((rc = wrun(st)) || (rc = put_builder(ev, "complete_at")) ||
            (rc = put_build_revision(ev, "complete_at")))
            return rc;
        break;
    }
    /* The request's latest build. */
    st = V.w[W_BR_BUILD];
    sqlite3_bind_int64(st, 1, ev->buildrequestid);
    bind_ctx(st, ev);
    sqlite3_bind_int64(st, 10, buildid);
    return wrun(st);
}

static int apply_step(const fh_event *ev)
{
    sqlite3_stmt *st;
    const char *builder = fh_event_str(ev, "builder");
    if (ev->type == FH_EV_STEP_STARTED) {
        st = V.w[W_STEP_STARTED];
        bind_int(st, 1, ev, "stepid");
        bind_int(st, 2, ev, "buildid");
        bind_text(st, 3, builder ? builder : "");
        bind_int(st, 4, ev, "number");
        bind_str(st, 5, ev, "name");
        bind_time(st, 6, ev, "started_at");
        return wrun(st);
    }
    int hidden;
    st = V.w[W_STEP_FINISHED];
    bind_int(st, 1, ev, "stepid");
    bind_int(st, 2, ev, "buildid");
    bind_text(st, 3, builder ? builder : "");
    bind_int(st, 4, ev, "number");
    bind_str(st, 5, ev, "name");
    bind_time(st, 6, ev, "complete_at");
    bind_int(st, 7, ev, "results");
    bind_str(st, 8, ev, "state_string");
    bind_num(st, 9, ev, "duration_s");
    bind_json(st, 10, ev, "urls");
    if (fh_event_bool(ev, "hidden", &hidden) == 0)
        sqlite3_bind_int(st, 11, hidden);
    return wrun(st);
}

static int apply_log(const fh_event *ev)
{
    sqlite3_stmt *st = V.w[W_LOG];
    bind_int(st, 1, ev, "logid");
    bind_int(st, 2, ev, "stepid");
    bind_int(st, 3, ev, "buildid");
    bind_str(st, 4, ev, "name");
    bind_str(st, 5, ev, "slug");
    bind_str(st, 6, ev, "type");
    bind_int(st, 7, ev, "num_lines");
    sqlite3_bind_int(st, 8, ev->type == FH_EV_LOG_FINISHED);
    return wrun(st);
}

static int apply_properties(const fh_event *ev)
{
    sqlite3_stmt *st = V.w[W_PROPS];
    bind_int(st, 1, ev, "buildid");
    bind_json(st, 2, ev, "properties");
    return wrun(st);
}

static int apply_worker(const fh_event *ev)
{
    sqlite3_stmt *st = V.w[W_WORKER];
    int64_t t = event_time_ms(ev);
    bind_int(st, 1, ev, "workerid");
    bind_str(st, 2, ev, "name");
    bind_text(st, 3, ev->master);
    sqlite3_bind_int(st, 4, ev->type == FH_EV_WORKER_CONNECTED);
    sqlite3_bind_int64(st, 5, t);
    return wrun(st);
}

/* Applies one valid event inside the open transaction. Returns SQLITE_OK, or the SQLite error
 * (the caller undoes the event's partial work). *stored is 0 for types the view skips. */
static int apply_event(const fh_event *ev, int *stored)
{
    *stored = 1;
    switch (ev->type) {
    case FH_EV_CHANGE_NEW:
        return apply_change(ev);
    case FH_EV_BUILDREQUEST_NEW:
    case FH_EV_BUILDREQUEST_CLAIMED:
    case FH_EV_BUILDREQUEST_UNCLAIMED:
    case FH_EV_BUILDREQUEST_COMPLETE:
        return apply_buildrequest(ev);
    case FH_EV_BUILD_STARTED:
    case FH_EV_BUILD_UPDATED:
    case FH_EV_BUILD_FINISHED:
        return apply_build(ev);
    case FH_EV_STEP_STARTED:
    case FH_EV_STEP_FINISHED:
        return apply_step(ev);
    case FH_EV_LOG_NEW:
    case FH_EV_LOG_FINISHED:
        return apply_log(ev);
    case FH_EV_PROPERTY_SET:
        return apply_properties(ev);
    case FH_EV_WORKER_CONNECTED:
    case FH_EV_WORKER_DISCONNECTED:
        return apply_worker(ev);
    default:
        *stored = 0;
        return SQLITE_OK; /* log.chunk, master.* */
    }
}

/* ---- batches ---------------------------------------------------------------------------- */

static vpart *part_of(const rd_kafka_message_t *m)
{
    const char *t = rd_kafka_topic_name(m->rkt);
    for (int k = 0; k < NTOPICS; k++)
        if (strcmp(t, V.topic[k]) == 0 && m->partition >= 0 && m->partition < V.nparts[k])
            return &V.parts[k][m->partition];
    return NULL;
}

static int begin_batch(void)
{
    int rc = wexec(W_BEGIN);
    if (rc) {
        {
            char q[420];
            fh_log(FH_LOG_ERROR, "view.sqlite", "op=begin error=%s",
                   fh_log_quote(q, sizeof(q), sqlite3_errmsg(V.db)));
        }
        return -1;
    }
    V.in_txn = 1;
    V.batch_first_ms = fh_now_ms();
    V.batch_n = V.batch_events = V.batch_dups = V.batch_invalid = V.batch_skipped = 0;
    V.batch_lost = 0;
    V.batch_record_ts = 0;
    V.batch_ts_n = 0;
    return 0;
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

/* 1 when the record is a JSON object whose top-level "type" is "log.chunk": the view stores
 * nothing of those, so it skips them without decoding (they are the bulk of the logs topic).
 * A cheap scan of the raw bytes; anything unusual (escapes in keys, malformed text) returns 0
 * and the record takes the normal path. */
static int is_log_chunk(const char *p, size_t n)
{
    const char *end = p + n;
    int depth = 0, expect_key = 1;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p == end || *p != '{')
        return 0;
    for (; p < end; p++) {
        char c = *p;
        if (c == '"') {
            const char *s = ++p;
            while (p < end && *p != '"') {
                if (*p == '\\') {
                    if (depth == 1 && expect_key)
                        return 0;
                    p++;
                }
                p++;
            }
            if (p >= end)
                return 0;
            if (depth == 1 && expect_key && p - s == 4 && memcmp(s, "type", 4) == 0) {
                const char *v = p + 1;
                while (v < end &&
                       (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r' || *v == ':'))
                    v++;
                return (size_t)(end - v) >= 11 && memcmp(v, "\"log.chunk\"", 11) == 0;
            }
            if (depth == 1)
                expect_key = 0;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1) {
            expect_key = 1;
        }
    }
    return 0;
}

/* The view expected p->next and got m past it: records Kafka deleted in between are recorded in
 * view_lost inside the open batch (so the mark commits with the offsets that skip them), and
 * reported once. Returns 0, or -1 when the batch must be rolled back. */
static int note_lost(vpart *p, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    int64_t to, n = fh_lost_check(V.rk, topic, m->partition, p->next, m->offset, &to);
    if (n <= 0)
        return 0;
    sqlite3_stmt *st = V.w[W_LOST];
    bind_text(st, 1, topic);
    sqlite3_bind_int(st, 2, m->partition);
    sqlite3_bind_int64(st, 3, n);
    sqlite3_bind_int64(st, 4, p->next);
    sqlite3_bind_int64(st, 5, to);
    sqlite3_bind_int64(st, 6, fh_now_ms());
    if (wrun(st)) {
        char q[420];
        fh_log(FH_LOG_ERROR, "view.sqlite", "op=lost error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(V.db)));
        return -1;
    }
    V.batch_lost += n;
    int64_t from = p->next > p->lost_reported ? p->next : p->lost_reported;
    if (to > from) {
        health_records_lost("view", topic, m->partition, from, to);
        p->lost_reported = to;
    }
    return 0;
}

/* Handles one record inside the open batch. Returns 0, or -1 when the batch must be rolled
 * back. */
static int handle_record(rd_kafka_message_t *m)
{
    char err[384], q[420], reason[512];
    fh_event ev;
    fh_err drc;
    vpart *p = part_of(m);
    if (!p)
        return 0; /* a partition we were not assigned: cannot happen with manual assignment */
    if (p->next >= 0 && m->offset > p->next && note_lost(p, m))
        return -1;
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    if (m->payload && is_log_chunk(m->payload, m->len)) {
        V.batch_skipped++; /* nothing stored; a malformed one is the ingest consumer's to report */
    } else if ((drc = fh_event_decode(V.b->contract, m->payload, m->len, V.max_record_bytes, &ev,
                                      err, sizeof(err)))) {
        V.batch_invalid++;
        fh_log(FH_LOG_DEBUG, "view.invalid", "topic=%s partition=%d offset=%lld reason=%s",
               rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), err));
        /* What the contract refuses, the ingest consumer dead-letters; decoding uses the same
         * parser and check, so any other failure (memory) may be a valid record: say so. */
        if (drc == FH_ERR_NOMEM && fh_dlq_send(V.dlq, m, "view: cannot decode: out of memory"))
            return -1;
    } else {
        int rc, stored = 1;
        if (ev.type == FH_EV_LOG_CHUNK || ev.type == FH_EV_MASTER_STARTED ||
            ev.type == FH_EV_MASTER_STOPPED) {
            V.batch_skipped++;
            goto done;
        }
        if ((rc = wexec(W_SAVE)))
            goto fail;
        sqlite3_stmt *st = V.w[W_APPLIED];
        bind_text(st, 1, ev.id);
        /* Ids are remembered by when they were produced: a duplicate produced within
         * view.dedup_window_s of the original is dropped. */
        sqlite3_bind_double(st, 2, (double)(ts > 0 ? ts : fh_now_ms()) / 1000.0);
        if ((rc = wrun(st)))
            goto undo;
        if (sqlite3_changes(V.db) == 0) {
            V.batch_dups++;
        } else if ((rc = apply_event(&ev, &stored))) {
            goto undo;
        } else if (stored) {
            V.batch_events++;
        } else {
            V.batch_skipped++;
        }
        if ((rc = wexec(W_RELEASE)))
            goto fail;
        goto done;
    undo:
        if (!event_level_error(rc))
            goto fail;
        fh_metric_add(V.m_errors, 1);
        snprintf(reason, sizeof(reason), "view: SQLite refused the event: %s",
                 sqlite3_errmsg(V.db));
        fh_log(FH_LOG_ERROR, "view.apply", "topic=%s partition=%d offset=%lld id=%s error=%s",
               rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), ev.id),
               fh_log_quote(err, sizeof(err), sqlite3_errmsg(V.db)));
        if (wexec(W_UNDO) || wexec(W_RELEASE))
            goto fail;
        /* A valid event the view cannot store: dead-lettered, so it is not lost silently. If
         * even that fails, the batch is retried rather than the event skipped. */
        if (fh_dlq_send(V.dlq, m, reason))
            goto fail;
        V.batch_invalid++;
        goto done;
    fail:
        fh_log(FH_LOG_ERROR, "view.sqlite", "op=apply error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(V.db)));
        fh_event_clear(&ev);
        return -1;
    done:
        fh_event_clear(&ev);
    }
    p->next = m->offset + 1;
    p->dirty = 1;
    V.batch_n++;
    if (ts > V.batch_record_ts)
        V.batch_record_ts = ts;
    if (ts > 0 && V.batch_ts_n < V.batch_ts_cap)
        V.batch_ts[V.batch_ts_n++] = ts;
    return 0;
}

static long long offsets_total(void)
{
    long long t = 0;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < V.nparts[k]; i++)
            if (V.parts[k][i].next > 0)
                t += V.parts[k][i].next;
    return t;
}

/* Forgets the open batch: positions go back to what SQLite holds and the consumer is sent
 * there again. */
static void assign_all(void);
static void abort_batch(void)
{
    if (V.in_txn)
        wexec(W_ROLLBACK);
    V.in_txn = 0;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < V.nparts[k]; i++) {
            V.parts[k][i].next = V.parts[k][i].committed;
            V.parts[k][i].dirty = 0;
        }
    V.batch_n = 0;
    fh_metric_add(V.m_errors, 1);
    assign_all();
}

static void record_freshness(int64_t now_ms)
{
    for (size_t i = 0; i < V.batch_ts_n; i++) {
        int64_t d = now_ms - V.batch_ts[i];
        if (d < 0)
            d = 0;
        for (int b = 0; b < FRESH_BUCKETS; b++)
            if (d <= fresh_le[b])
                fh_metric_add(V.m_fresh[b], 1);
        fh_metric_add(V.m_fresh[FRESH_BUCKETS], 1);
        fh_metric_add(V.m_fresh_sum, d);
    }
    fh_metric_add(V.m_fresh_count, (long long)V.batch_ts_n);
}

/* Commits the open batch with its offsets. Returns 0, or -1 after rolling it back. */
static int commit_batch(void)
{
    int rc = SQLITE_OK;
    for (int k = 0; k < NTOPICS && !rc; k++)
        for (int i = 0; i < V.nparts[k] && !rc; i++) {
            vpart *p = &V.parts[k][i];
            if (!p->dirty)
                continue;
            sqlite3_stmt *st = V.w[W_OFFSET];
            bind_text(st, 1, V.topic[k]);
            sqlite3_bind_int(st, 2, i);
            sqlite3_bind_int64(st, 3, p->next);
            rc = wrun(st);
        }
    int64_t now = fh_now_ms();
    long long total = offsets_total();
    if (!rc) {
        sqlite3_stmt *st = V.w[W_STATE];
        sqlite3_bind_int64(st, 1, total);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, V.batch_record_ts);
        sqlite3_bind_double(st, 4, V.clock);
        sqlite3_bind_int64(st, 5, V.batch_events);
        sqlite3_bind_int64(st, 6, V.batch_dups);
        sqlite3_bind_int64(st, 7, V.batch_invalid);
        sqlite3_bind_int64(st, 8, V.batch_skipped);
        rc = wrun(st);
    }
    if (!rc)
        rc = wexec(W_COMMIT);
    if (rc) {
        {
            char q[420];
            fh_log(FH_LOG_ERROR, "view.sqlite", "op=commit error=%s",
                   fh_log_quote(q, sizeof(q), sqlite3_errmsg(V.db)));
        }
        abort_batch();
        return -1;
    }
    V.in_txn = 0;
    atomic_fetch_add(&V.records_lost, V.batch_lost);
    if (V.batch_record_ts > V.max_record_ts)
        V.max_record_ts = V.batch_record_ts;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < V.nparts[k]; i++) {
            V.parts[k][i].committed = V.parts[k][i].next;
            V.parts[k][i].dirty = 0;
        }
    long long v = atomic_fetch_add(&V.version, 1) + 1;
    fh_metric_set(V.m_version, v);
    fh_metric_add(V.m_applied, V.batch_events);
    fh_metric_add(V.m_dups, V.batch_dups);
    fh_metric_add(V.m_invalid, V.batch_invalid);
    fh_metric_add(V.m_skipped, V.batch_skipped);
    fh_metric_add(V.m_batches, 1);
    record_freshness(fh_now_ms());
    V.batch_n = 0;
    return 0;
}

/* ---- pruning ---------------------------------------------------------------------------- */

static void prune(void)
{
    char err[512], q[560];
    if (V.clock <= 0)
        return;
    double cutoff = V.clock - (double)V.retention_s;
    double dedup_cutoff = (double)V.max_record_ts / 1000.0 - (double)V.dedup_window_s;
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
    int before = sqlite3_total_changes(V.db);
    if (exec_sql(V.db, sql, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "view.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(V.db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    int deleted = sqlite3_total_changes(V.db) - before;
    if (deleted > 0 && exec_sql(V.db, "UPDATE view_state SET version = version + 1 WHERE id = 1",
                                err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "view.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(V.db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    if (exec_sql(V.db, "COMMIT", err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "view.prune", "error=%s", fh_log_quote(q, sizeof(q), err));
        sqlite3_exec(V.db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    if (deleted > 0) {
        long long v = atomic_fetch_add(&V.version, 1) + 1;
        fh_metric_set(V.m_version, v);
        fh_metric_add(V.m_pruned, deleted);
        fh_log(FH_LOG_INFO, "view.pruned", "rows=%d cutoff=%.3f", deleted, cutoff);
    }
}

/* ---- Kafka ------------------------------------------------------------------------------ */

/* Sends the consumer to every known partition at its committed position. */
static void assign_all(void)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(64);
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < V.nparts[k]; i++)
            rd_kafka_topic_partition_list_add(l, V.topic[k], i)->offset =
                V.parts[k][i].committed >= 0 ? V.parts[k][i].committed : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(V.rk, l);
    if (err)
        fh_log(FH_LOG_ERROR, "view.assign", "error=\"%s\"", rd_kafka_err2str(err));
    else
        fh_log(FH_LOG_INFO, "view.assign", "partitions=%d events=%d logs=%d", l->cnt,
               V.nparts[TOPIC_EVENTS], V.nparts[TOPIC_LOGS]);
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t stored_offset(int k, int part)
{
    sqlite3_stmt *st = NULL;
    int64_t off = -1;
    if (sqlite3_prepare_v2(V.db, "SELECT next_offset FROM offsets WHERE topic = ?1 AND part = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, V.topic[k], -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, part);
    if (sqlite3_step(st) == SQLITE_ROW)
        off = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return off;
}

/* Looks up the partition counts; grows the partition table and reassigns when they grew.
 * Called only between batches, when every position equals its committed one. */
static void refresh_partitions(void)
{
    int changed = 0;
    for (int k = 0; k < NTOPICS; k++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(V.rk, V.topic[k], NULL);
        if (!rkt)
            continue;
        rd_kafka_resp_err_t err = rd_kafka_metadata(V.rk, 0, rkt, &md, 2000);
        rd_kafka_topic_destroy(rkt);
        if (err || !md || md->topic_cnt < 1 || md->topics[0].err) {
            static int64_t warned;
            if (fh_now_ms() - warned > 60000) {
                warned = fh_now_ms();
                rd_kafka_resp_err_t e = err;
                if (!e)
                    e = md && md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                fh_log(FH_LOG_WARN, "view.metadata", "topic=%s error=\"%s\"", V.topic[k],
                       rd_kafka_err2str(e));
            }
            if (md)
                rd_kafka_metadata_destroy(md);
            continue;
        }
        int n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        if (n <= V.nparts[k])
            continue;
        vpart *np = realloc(V.parts[k], (size_t)n * sizeof(*np));
        if (!np)
            continue;
        for (int i = V.nparts[k]; i < n; i++) {
            np[i].committed = np[i].next = stored_offset(k, i);
            np[i].lo = np[i].hi = -1;
            np[i].lost_reported = -1;
            np[i].dirty = 0;
        }
        V.parts[k] = np;
        V.nparts[k] = n;
        changed = 1;
    }
    if (changed)
        assign_all();
}

/* Publishes how far the topics go, from librdkafka's cached watermarks; -1 until every
 * partition's high watermark is known (no fetch answered yet), so nobody reads "0 behind" off a
 * view that has not looked. */
static void publish_end(void)
{
    long long end = 0, behind = 0;
    int unknown = V.nparts[TOPIC_EVENTS] == 0 || V.nparts[TOPIC_LOGS] == 0;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < V.nparts[k]; i++) {
            vpart *p = &V.parts[k][i];
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(V.rk, V.topic[k], i, &lo, &hi) == 0 && hi >= 0) {
                p->lo = lo;
                p->hi = hi;
            }
            int64_t next = p->committed > 0 ? p->committed : 0;
            int64_t reach = p->hi >= 0 ? p->hi : next;
            if (p->hi < 0)
                unknown = 1;
            /* Records below the low watermark are gone; they can never be applied. */
            if (p->lo > next)
                reach -= p->lo - next;
            if (reach < next)
                reach = next;
            end += reach;
            behind += reach - next;
        }
    atomic_store(&V.end_total, unknown ? -1 : end);
    fh_metric_set(V.m_behind, unknown ? -1 : behind);
}

/* Prefetching is capped (8 MiB queued, 4 MiB per fetch) so a view that is far behind does not
 * hold hundreds of MiB of fetched records; it still catches up at tens of thousands of records
 * a second. kafka.* keys override these. */
static const char *const view_consumer_defaults[] = {
    "enable.auto.commit=false",
    "enable.auto.offset.store=false",
    "auto.offset.reset=earliest",
    "enable.partition.eof=false",
    "fetch.wait.max.ms=100",
    "queued.max.messages.kbytes=8192",
    "queued.min.messages=10000",
    "fetch.max.bytes=4194304",
    "log_level=4",
    NULL,
};

static int kafka_open(char *errbuf, size_t errsize)
{
    rd_kafka_conf_t *conf;
    char group[512];
    if (fh_kafka_conf(&V.b->cfg, V.b->bootstrap, view_consumer_defaults, &conf, errbuf, errsize))
        return -1;
    /* librdkafka wants a group id before it lets a consumer assign(); the view never joins the
     * group (no subscribe) and never commits to Kafka: its offsets live in SQLite. */
    snprintf(group, sizeof(group), "%s.view", fh_config_str(&V.b->cfg, "kafka.group"));
    if (rd_kafka_conf_set(conf, "group.id", group, errbuf, errsize) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (!(V.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return -1; /* rd_kafka_new destroyed conf */
    return 0;
}

static void ckpt_tail(void);
static void *view_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "fh-view");
    thread_nice("view");
    int64_t next_meta = 0, next_prune = fh_now_ms() + 1000, next_end = 0;
    while (running()) {
        int64_t now = fh_now_ms();
        if (!V.in_txn) {
            if (now >= next_meta) {
                refresh_partitions();
                next_meta = now + V.metadata_ms;
            }
            if (now >= next_prune) {
                prune();
                next_prune = now + V.prune_interval_s * 1000;
            }
        }
        if (now >= next_end) {
            publish_end();
            next_end = now + 100;
        }
        int timeout = 100;
        if (V.in_txn) {
            int64_t left = V.batch_first_ms + V.batch_ms - now;
            timeout = left < 0 ? 0 : (int)left;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(V.rk, timeout);
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    static int64_t warned;
                    char q[420];
                    if (fh_now_ms() - warned > 10000) {
                        warned = fh_now_ms();
                        fh_log(FH_LOG_WARN, "view.kafka", "error=%s",
                               fh_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
                    }
                }
            } else if ((!V.in_txn && begin_batch()) || handle_record(m)) {
                /* SQLite failed (disk full, I/O): undo the batch and retry it from the committed
                 * positions a second later. */
                abort_batch();
                rd_kafka_message_destroy(m);
                struct timespec ts = {1, 0};
                nanosleep(&ts, NULL);
                continue;
            }
            rd_kafka_message_destroy(m);
        }
        if (V.in_txn &&
            (V.batch_n >= V.batch_max || fh_now_ms() >= V.batch_first_ms + V.batch_ms)) {
            if (V.batch_n == 0) {
                wexec(W_ROLLBACK);
                V.in_txn = 0;
            } else if (commit_batch()) {
                struct timespec ts = {1, 0};
                nanosleep(&ts, NULL);
            } else {
                ckpt_tail();
            }
        }
    }
    if (V.in_txn) {
        if (V.batch_n)
            commit_batch();
        else
            wexec(W_ROLLBACK);
        V.in_txn = 0;
    }
    return NULL;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, so the view
 * thread would copy pages into the database file and fdatasync it while records wait. Instead
 * the writer's WAL hook wakes this thread, which checkpoints PASSIVE (never blocking the writer
 * or the readers) on a connection of its own. Durability does not change: a committed batch is
 * in the WAL before COMMIT returns, whether or not it has been copied back yet. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)arg;
    (void)db;
    (void)name;
    V.wal_pages = pages;
    if (pages >= V.checkpoint_pages) {
        pthread_mutex_lock(&V.ckpt_mu);
        V.ckpt_wanted = 1;
        pthread_cond_signal(&V.ckpt_cv);
        pthread_mutex_unlock(&V.ckpt_mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "fh-view-ckpt");
    thread_nice("checkpointer");
    pthread_mutex_lock(&V.ckpt_mu);
    while (!V.ckpt_stop) {
        if (!V.ckpt_wanted) {
            pthread_cond_wait(&V.ckpt_cv, &V.ckpt_mu);
            continue;
        }
        V.ckpt_wanted = 0;
        pthread_mutex_unlock(&V.ckpt_mu);
        int logged = 0, copied = 0;
        int rc =
            sqlite3_wal_checkpoint_v2(V.ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &logged, &copied);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            char q[420];
            fh_log(FH_LOG_WARN, "view.checkpoint", "error=%s",
                   fh_log_quote(q, sizeof(q), sqlite3_errmsg(V.ckpt_db)));
        }
        fh_metric_add(V.m_checkpoints, 1);
        pthread_mutex_lock(&V.ckpt_mu);
    }
    pthread_mutex_unlock(&V.ckpt_mu);
    return NULL;
}

/* Opens the checkpointer's connection and starts it; on failure the writer keeps SQLite's
 * automatic checkpoints. */
static void ckpt_start(void)
{
    if (sqlite3_open_v2(V.path, &V.ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        fh_log(FH_LOG_WARN, "view.checkpoint",
               "note=\"no checkpointer connection: automatic "
               "checkpoints\"");
        sqlite3_close(V.ckpt_db);
        V.ckpt_db = NULL;
        return;
    }
    sqlite3_busy_timeout(V.ckpt_db, 1000);
    /* A connection checkpoints only once its pager has seen the file in WAL mode: until it
     * reads, sqlite3_wal_checkpoint_v2 returns OK and does nothing. */
    if (sqlite3_exec(V.ckpt_db, "PRAGMA journal_mode=WAL; SELECT count(*) FROM view_state;", NULL,
                     NULL, NULL) != SQLITE_OK) {
        sqlite3_close(V.ckpt_db);
        V.ckpt_db = NULL;
        return;
    }
    if (pthread_create(&V.ckpt_thread, NULL, ckpt_main, NULL)) {
        sqlite3_close(V.ckpt_db);
        V.ckpt_db = NULL;
        return;
    }
    V.ckpt_started = 1;
    sqlite3_exec(V.db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
    sqlite3_wal_hook(V.db, wal_hook, NULL);
}

/* SQLite starts the WAL over from its beginning only when a write transaction begins on a
 * fully copied WAL. The view thread begins its next batch right after a commit, before the
 * background checkpoint can finish, so the WAL would grow without end. Once it holds twice
 * view.checkpoint_pages, the view thread finishes the copy itself between two batches: the
 * checkpointer has already copied (and synced) nearly everything, so this is the tail of a
 * batch or two. */
static void ckpt_tail(void)
{
    if (!V.ckpt_started || V.wal_pages < 2 * V.checkpoint_pages)
        return;
    sqlite3_wal_checkpoint_v2(V.db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    V.wal_pages = 0;
    fh_metric_add(V.m_checkpoints_tail, 1);
}

static void ckpt_stop(void)
{
    if (V.ckpt_started) {
        pthread_mutex_lock(&V.ckpt_mu);
        V.ckpt_stop = 1;
        pthread_cond_signal(&V.ckpt_cv);
        pthread_mutex_unlock(&V.ckpt_mu);
        pthread_join(V.ckpt_thread, NULL);
        V.ckpt_started = 0;
    }
    if (V.db)
        sqlite3_wal_hook(V.db, NULL, NULL);
    sqlite3_close(V.ckpt_db);
    V.ckpt_db = NULL;
}

/* ---- open / close ----------------------------------------------------------------------- */

static int db_open(char *errbuf, size_t errsize)
{
    char sql[256];
    if (sqlite3_open_v2(V.path, &V.db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "view.path: %s: %s", V.path,
                V.db ? sqlite3_errmsg(V.db) : "cannot open");
        return -1;
    }
    sqlite3_busy_timeout(V.db, 10000);
    /* WAL: readers never block the writer; synchronous=NORMAL: a process crash (SIGKILL) loses
     * nothing that was committed, only a power loss may lose the last transactions. */
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-%lld;"
             " PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY;",
             fh_config_int(&V.b->cfg, "view.sqlite_cache_kib"));
    if (exec_sql(V.db, sql, errbuf, errsize))
        return -1;
    /* A file from another schema version is derived data: rebuild it from Kafka. */
    sqlite3_stmt *st = NULL;
    int schema = -1;
    if (sqlite3_prepare_v2(V.db, "SELECT schema FROM view_state WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        schema = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (schema != -1 && schema != VIEW_SCHEMA) {
        fh_log(FH_LOG_WARN, "view.rebuild",
               "path=%s schema=%d want=%d note=\"rebuilding from Kafka\"", V.path, schema,
               VIEW_SCHEMA);
        if (exec_sql(V.db, drop_sql, errbuf, errsize))
            return -1;
    } else if (schema != -1 && V.b->embedded) {
        /* The embedded Kafka starts empty every time: a view of an earlier run's topics would
         * describe events that no longer exist. */
        fh_log(FH_LOG_WARN, "view.rebuild",
               "path=%s note=\"embedded Kafka is in memory and starts empty: the view starts empty "
               "too\"",
               V.path);
        if (exec_sql(V.db, drop_sql, errbuf, errsize))
            return -1;
    }
    if (exec_sql(V.db, schema_sql, errbuf, errsize))
        return -1;
    snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO view_state(id, schema) VALUES(1, %d)",
             VIEW_SCHEMA);
    if (exec_sql(V.db, sql, errbuf, errsize))
        return -1;
    for (int i = 0; i < W__COUNT; i++)
        if (sqlite3_prepare_v3(V.db, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &V.w[i], NULL) !=
            SQLITE_OK) {
            fh_errf(errbuf, errsize, FH_ERR_IO, "view: preparing statement %d: %s", i,
                    sqlite3_errmsg(V.db));
            return -1;
        }
    if (sqlite3_prepare_v2(V.db, "SELECT version, clock, record_ts_ms FROM view_state WHERE id = 1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        atomic_store(&V.version, sqlite3_column_int64(st, 0));
        V.clock = sqlite3_column_double(st, 1);
        V.max_record_ts = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(V.db, "SELECT total(records) FROM view_lost", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        atomic_store(&V.records_lost, (long long)sqlite3_column_double(st, 0));
    sqlite3_finalize(st);
    if (atomic_load(&V.records_lost) > 0)
        fh_log(FH_LOG_WARN, "view.records_lost",
               "path=%s records=%lld note=\"Kafka deleted records before the view read them; "
               "answers may miss their events (as_of.records_lost) until the view is rebuilt\"",
               V.path, atomic_load(&V.records_lost));
    return 0;
}

static void register_metrics(void)
{
    static char labels[FRESH_BUCKETS + 1][32];
    V.m_applied = fh_metric_new("firehose_view_events_applied_total", NULL,
                                "Events applied to the materialised view.", 0);
    V.m_dups = fh_metric_new("firehose_view_duplicates_total", NULL,
                             "Events the view dropped as already applied (same id).", 0);
    V.m_invalid = fh_metric_new("firehose_view_invalid_total", NULL,
                                "Records the view could not decode or apply (skipped).", 0);
    V.m_skipped = fh_metric_new("firehose_view_skipped_total", NULL,
                                "Valid events the view does not store (log.chunk, master.*).", 0);
    V.m_batches =
        fh_metric_new("firehose_view_batches_total", NULL, "Transactions the view committed.", 0);
    V.m_errors =
        fh_metric_new("firehose_view_errors_total", NULL,
                      "SQLite errors in the view (batches rolled back, events skipped).", 0);
    V.m_version = fh_metric_new("firehose_view_version", NULL, "The view's version.", 1);
    V.m_behind =
        fh_metric_new("firehose_view_behind_records", NULL,
                      "Records on the topics the view has not applied yet (-1: not known yet).", 1);
    V.m_checkpoints = fh_metric_new("firehose_view_checkpoints_total", "thread=\"checkpointer\"",
                                    "WAL checkpoints, by the thread that ran them.", 0);
    V.m_checkpoints_tail = fh_metric_new("firehose_view_checkpoints_total", "thread=\"view\"",
                                         "WAL checkpoints, by the thread that ran them.", 0);
    V.m_pruned =
        fh_metric_new("firehose_view_pruned_rows_total", NULL, "Rows removed by retention.", 0);
    V.m_hits = fh_metric_new("firehose_rest_cache_total", "result=\"hit\"",
                             "REST answers by cache result.", 0);
    V.m_stale = fh_metric_new("firehose_rest_cache_total", "result=\"stale\"",
                              "REST answers by cache result.", 0);
    V.m_misses = fh_metric_new("firehose_rest_cache_total", "result=\"render\"",
                               "REST answers by cache result.", 0);
    for (int i = 0; i <= FRESH_BUCKETS; i++) {
        if (i < FRESH_BUCKETS)
            snprintf(labels[i], sizeof(labels[i]), "le=\"%d\"", fresh_le[i]);
        else
            snprintf(labels[i], sizeof(labels[i]), "le=\"+Inf\"");
        V.m_fresh[i] = fh_metric_new("firehose_view_freshness_ms_bucket", labels[i],
                                     "Produce (Kafka timestamp) to committed in the view, ms.", 0);
    }
    V.m_fresh_count = fh_metric_new("firehose_view_freshness_ms_count", NULL,
                                    "Records measured for freshness.", 0);
    V.m_fresh_sum = fh_metric_new("firehose_view_freshness_ms_sum", NULL,
                                  "Sum of produce-to-committed times, ms.", 0);
}

int view_start(fh_broker *b)
{
    char err[512], q[560];
    const fh_config *c = &b->cfg;
    if (!fh_config_bool(c, "view.enabled")) {
        fh_log(FH_LOG_INFO, "view.disabled", NULL);
        return 0;
    }
    memset(&V, 0, sizeof(V));
    V.b = b;
    V.dlq = fh_dlq_new(b, "view");
    snprintf(V.path, sizeof(V.path), "%s", fh_config_str(c, "view.path"));
    V.topic[TOPIC_EVENTS] = fh_kafka_topic(c, FH_TOPIC_EVENTS);
    V.topic[TOPIC_LOGS] = fh_kafka_topic(c, FH_TOPIC_LOGS);
    V.batch_max = fh_config_int(c, "view.batch_max");
    V.batch_ms = fh_config_int(c, "view.batch_ms");
    V.retention_s = fh_config_int(c, "view.retention_s");
    V.prune_interval_s = fh_config_int(c, "view.prune_interval_s");
    V.dedup_window_s = fh_config_int(c, "view.dedup_window_s");
    V.metadata_ms = fh_config_int(c, "view.metadata_refresh_ms");
    V.required_window_s = fh_config_int(c, "view.required_window_s");
    V.max_revisions = fh_config_int(c, "view.max_revisions");
    V.max_record_bytes = (size_t)fh_config_int(c, "events.max_bytes");
    V.pool_max = (int)fh_config_int(c, "view.read_connections");
    V.reader_cache_kib = (int)(fh_config_int(c, "view.sqlite_cache_kib") / 4);
    V.max_entries = (size_t)fh_config_int(c, "view.cache_entries");
    V.max_bytes = (size_t)fh_config_int(c, "view.cache_bytes");
    V.checkpoint_pages = fh_config_int(c, "view.checkpoint_pages");
    V.nice = (int)fh_config_int(c, "view.nice");
    V.batch_ts_cap = V.batch_max < 65536 ? (size_t)V.batch_max : 65536;
    atomic_store(&V.end_total, -1);
    pthread_mutex_init(&V.pool_mu, NULL);
    pthread_cond_init(&V.pool_cv, NULL);
    pthread_mutex_init(&V.ckpt_mu, NULL);
    pthread_cond_init(&V.ckpt_cv, NULL);
    fh_buf_init(&V.scratch, (size_t)fh_config_int(c, "events.max_bytes") * 2 + 65536);
    if (!V.dlq || !(V.cache = fh_acache_new(V.max_entries, V.max_bytes, sizeof(view_asof))) ||
        !(V.batch_ts = malloc(V.batch_ts_cap * sizeof(*V.batch_ts)))) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (fh_lg_rules_parse(&V.rules, fh_config_str(c, "view.required_builders"), err, sizeof(err)) ||
        mkdirs_for(V.path, err, sizeof(err)) || db_open(err, sizeof(err)) ||
        kafka_open(err, sizeof(err)))
        goto fail;
    register_metrics();
    ckpt_start();
    fh_metric_set(V.m_version, atomic_load(&V.version));
    if (pthread_create(&V.thread, NULL, view_main, NULL)) {
        snprintf(err, sizeof(err), "cannot start the view thread");
        goto fail;
    }
    V.started = 1;
    fh_log(FH_LOG_INFO, "view.started", "path=%s version=%lld batch_max=%lld batch_ms=%lld", V.path,
           (long long)atomic_load(&V.version), V.batch_max, V.batch_ms);
    return 0;
fail:
    fh_log(FH_LOG_ERROR, "view.start", "error=%s", fh_log_quote(q, sizeof(q), err));
    atomic_store(&V.closing, 1);
    view_stop();
    return -1;
}

void view_stop(void)
{
    if (!V.b)
        return;
    atomic_store(&V.closing, 1);
    while (atomic_load(&V.inflight) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (V.started) {
        atomic_store(&V.stop, 1);
        pthread_join(V.thread, NULL);
        V.started = 0;
    }
    ckpt_stop();
    if (V.rk) {
        rd_kafka_consumer_close(V.rk);
        rd_kafka_destroy(V.rk);
        V.rk = NULL;
    }
    while (V.pool_free) {
        view_reader *r = V.pool_free;
        V.pool_free = r->next;
        for (int i = 0; i < VIEW_READER_SLOTS; i++)
            sqlite3_finalize(r->st[i]);
        sqlite3_close(r->db);
        free(r);
    }
    for (int i = 0; i < W__COUNT; i++)
        sqlite3_finalize(V.w[i]);
    if (V.db) {
        sqlite3_close(V.db);
        V.db = NULL;
        fh_log(FH_LOG_INFO, "view.stopped", "version=%lld", (long long)atomic_load(&V.version));
    }
    fh_acache_free(V.cache);
    V.cache = NULL;
    fh_lg_rules_free(&V.rules);
    for (int k = 0; k < NTOPICS; k++) {
        free(V.parts[k]);
        V.parts[k] = NULL;
        V.nparts[k] = 0;
    }
    free(V.batch_ts);
    V.batch_ts = NULL;
    fh_buf_free(&V.scratch);
    fh_dlq_free(V.dlq);
    V.dlq = NULL;
    pthread_mutex_destroy(&V.pool_mu);
    pthread_cond_destroy(&V.pool_cv);
    pthread_mutex_destroy(&V.ckpt_mu);
    pthread_cond_destroy(&V.ckpt_cv);
    V.b = NULL;
}

/* ---- readers ---------------------------------------------------------------------------- */

int view_enter(void)
{
    atomic_fetch_add(&V.inflight, 1);
    if (atomic_load(&V.closing) || !V.started) {
        atomic_fetch_sub(&V.inflight, 1);
        return -1;
    }
    return 0;
}

void view_leave(void)
{
    atomic_fetch_sub(&V.inflight, 1);
}

static view_reader *reader_open(char *errbuf, size_t errsize)
{
    char sql[128];
    view_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(V.path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "view: opening a reader: %s",
                r->db ? sqlite3_errmsg(r->db) : "cannot open");
        sqlite3_close(r->db);
        free(r);
        return NULL;
    }
    sqlite3_busy_timeout(r->db, 5000);
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d; PRAGMA query_only=1;", V.reader_cache_kib);
    sqlite3_exec(r->db, sql, NULL, NULL, NULL);
    return r;
}

view_reader *view_reader_get(view_asof *asof, char *errbuf, size_t errsize)
{
    view_reader *r = NULL;
    pthread_mutex_lock(&V.pool_mu);
    while (!V.pool_free && V.pool_open >= V.pool_max)
        pthread_cond_wait(&V.pool_cv, &V.pool_mu);
    if (V.pool_free) {
        r = V.pool_free;
        V.pool_free = r->next;
    } else {
        V.pool_open++;
    }
    pthread_mutex_unlock(&V.pool_mu);
    if (!r && !(r = reader_open(errbuf, errsize))) {
        pthread_mutex_lock(&V.pool_mu);
        V.pool_open--;
        pthread_cond_signal(&V.pool_cv);
        pthread_mutex_unlock(&V.pool_mu);
        return NULL;
    }
    sqlite3_stmt *st = view_reader_stmt(r, 0, "BEGIN");
    if (!st || sqlite3_step(st) != SQLITE_DONE)
        goto err;
    st = view_reader_stmt(r, 1,
                          "SELECT version, view_offsets, applied_at_ms, record_ts_ms, clock,"
                          " (SELECT total(records) FROM view_lost)"
                          " FROM view_state WHERE id = 1");
    if (!st || sqlite3_step(st) != SQLITE_ROW)
        goto err;
    asof->version = sqlite3_column_int64(st, 0);
    asof->view_offsets = sqlite3_column_int64(st, 1);
    asof->applied_at_ms = sqlite3_column_int64(st, 2);
    asof->record_ts_ms = sqlite3_column_int64(st, 3);
    asof->clock = sqlite3_column_double(st, 4);
    asof->records_lost = (long long)sqlite3_column_double(st, 5);
    sqlite3_reset(st);
    return r;
err:
    fh_errf(errbuf, errsize, FH_ERR_IO, "view: read transaction: %s", sqlite3_errmsg(r->db));
    view_reader_put(r);
    return NULL;
}

void view_reader_put(view_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < VIEW_READER_SLOTS; i++)
        if (r->st[i])
            sqlite3_reset(r->st[i]);
    if (!sqlite3_get_autocommit(r->db))
        sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_lock(&V.pool_mu);
    r->next = V.pool_free;
    V.pool_free = r;
    pthread_cond_signal(&V.pool_cv);
    pthread_mutex_unlock(&V.pool_mu);
}

sqlite3 *view_reader_db(view_reader *r)
{
    return r->db;
}

sqlite3_stmt *view_reader_stmt(view_reader *r, int slot, const char *sql)
{
    if (slot < 0 || slot >= VIEW_READER_SLOTS)
        return NULL;
    if (!r->st[slot]) {
        if (sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &r->st[slot], NULL) !=
            SQLITE_OK) {
            char q[420];
            fh_log(FH_LOG_ERROR, "view.prepare", "slot=%d error=%s", slot,
                   fh_log_quote(q, sizeof(q), sqlite3_errmsg(r->db)));
            sqlite3_finalize(r->st[slot]);
            r->st[slot] = NULL;
            return NULL;
        }
        return r->st[slot];
    }
    sqlite3_reset(r->st[slot]);
    sqlite3_clear_bindings(r->st[slot]);
    return r->st[slot];
}

void view_asof_json(const view_asof *a, fh_buf *out)
{
    char applied[32], clock[32];
    long long end = atomic_load(&V.end_total);
    long long behind = end < 0 ? -1 : end > a->view_offsets ? end - a->view_offsets : 0;
    int64_t now = fh_now_ms();
    fh_buf_printf(out, "\"as_of\":{\"version\":%lld,\"view_offsets\":%lld,", a->version,
                  a->view_offsets);
    if (behind < 0)
        fh_buf_printf(out, "\"behind\":null,\"lag_ms\":null,");
    else if (behind == 0)
        fh_buf_printf(out, "\"behind\":0,\"lag_ms\":0,");
    else if (a->record_ts_ms > 0)
        fh_buf_printf(out, "\"behind\":%lld,\"lag_ms\":%lld,", behind,
                      (long long)(now > a->record_ts_ms ? now - a->record_ts_ms : 0));
    else
        fh_buf_printf(out, "\"behind\":%lld,\"lag_ms\":null,", behind);
    if (a->applied_at_ms > 0)
        fh_buf_printf(out, "\"applied_at\":\"%s\",",
                      fh_time_rfc3339(a->applied_at_ms, applied, sizeof(applied)));
    else
        fh_buf_printf(out, "\"applied_at\":null,");
    if (a->clock > 0)
        fh_buf_printf(out, "\"clock\":\"%s\",",
                      fh_time_rfc3339((int64_t)(a->clock * 1000.0 + 0.5), clock, sizeof(clock)));
    else
        fh_buf_printf(out, "\"clock\":null,");
    fh_buf_printf(out, "\"records_lost\":%lld}", a->records_lost);
}

long long view_records_lost(void)
{
    return atomic_load(&V.records_lost);
}

/* ---- the answer cache ------------------------------------------------------------------- */

enum view_cache_result view_cache_get(const char *key, fh_buf *out, view_asof *asof,
                                      unsigned long long *hash)
{
    enum view_cache_result res = (enum view_cache_result)fh_acache_get(
        V.cache, key, atomic_load(&V.version), fh_now_ms(), out, asof, hash);
    fh_metric_add(res == VIEW_CACHE_HIT     ? V.m_hits
                  : res == VIEW_CACHE_STALE ? V.m_stale
                                            : V.m_misses,
                  1);
    return res;
}

void view_cache_put(const char *key, const char *body, size_t len, unsigned long long hash,
                    const view_asof *asof, int ttl_ms)
{
    fh_acache_put(V.cache, key, body, len, hash, asof->version, asof,
                  ttl_ms > 0 ? fh_now_ms() + ttl_ms : 0);
}

void view_cache_abandon(const char *key)
{
    fh_acache_abandon(V.cache, key);
}

/* ---- configuration ---------------------------------------------------------------------- */

const fh_lg_rule *view_required_builders(const char *branch)
{
    return fh_lg_rules_find(&V.rules, branch);
}

long long view_required_window_s(void)
{
    return V.required_window_s;
}

long long view_max_revisions(void)
{
    return V.max_revisions;
}
