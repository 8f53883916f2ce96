/* view/schema: the SQLite side of the view: the tables, the writer's statements, and opening
 * the file (WAL, pragmas, schema version; a file of another version is rebuilt from Kafka). */
#include "internal.h"

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
    /* keyed by time first: a batch's ids append to the end of the table (view/dedup.c) */
    "CREATE TABLE IF NOT EXISTS applied(at REAL NOT NULL, id TEXT NOT NULL, PRIMARY KEY(at, id))"
    " WITHOUT ROWID;"
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
    /* builder state (view/cimetrics.h): each builder and branch's finished builds in order */
    "CREATE INDEX IF NOT EXISTS builds_state ON builds(builder, branch, complete_at, buildid)"
    " WHERE finished = 1;"
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
    " at_ms INTEGER NOT NULL, PRIMARY KEY (topic, part)) WITHOUT ROWID;"
    /* Per-test history from test.results (view/tests.c): the tests tracked (view.max_tests),
     * one row per result (view.max_test_runs, oldest first; at is the event time), and the
     * (test, revision) pairs view_test_flaky_first has reported. outcome: 1 pass, 0 fail, 2 skip,
     * NULL a measurement. */
    "CREATE TABLE IF NOT EXISTS tests(testid INTEGER PRIMARY KEY, builder TEXT NOT NULL,"
    " name TEXT NOT NULL, last_seen REAL NOT NULL, UNIQUE (builder, name));"
    "CREATE INDEX IF NOT EXISTS tests_seen ON tests(last_seen);"
    "CREATE TABLE IF NOT EXISTS test_runs(runid INTEGER PRIMARY KEY, testid INTEGER NOT NULL,"
    " setid INTEGER NOT NULL, chunk INTEGER NOT NULL, pos INTEGER NOT NULL, buildid INTEGER,"
    " revision TEXT NOT NULL DEFAULT '', branch TEXT NOT NULL DEFAULT '', outcome INTEGER,"
    " duration_s REAL, at REAL NOT NULL, UNIQUE (setid, chunk, pos));"
    "CREATE INDEX IF NOT EXISTS test_runs_at ON test_runs(at);"
    "CREATE INDEX IF NOT EXISTS test_runs_rev ON test_runs(testid, revision);"
    "CREATE TABLE IF NOT EXISTS test_flaky(testid INTEGER NOT NULL, revision TEXT NOT NULL,"
    " at REAL NOT NULL, PRIMARY KEY (testid, revision));";

static const char *const drop_sql =
    "DROP TABLE IF EXISTS view_state; DROP TABLE IF EXISTS offsets; DROP TABLE IF EXISTS applied;"
    "DROP TABLE IF EXISTS builders; DROP TABLE IF EXISTS buildrequests;"
    "DROP TABLE IF EXISTS builds; DROP TABLE IF EXISTS steps; DROP TABLE IF EXISTS properties;"
    "DROP TABLE IF EXISTS logs; DROP TABLE IF EXISTS changes; DROP TABLE IF EXISTS revisions;"
    "DROP TABLE IF EXISTS workers; DROP TABLE IF EXISTS view_lost; DROP TABLE IF EXISTS tests;"
    "DROP TABLE IF EXISTS test_runs; DROP TABLE IF EXISTS test_flaky;"
    "DROP TABLE IF EXISTS derive_meta; DROP TABLE IF EXISTS derive_seen;"
    "DROP TABLE IF EXISTS derive_outbox; DROP TABLE IF EXISTS derive_builder;"
    "DROP TABLE IF EXISTS derive_flaky; DROP TABLE IF EXISTS derive_lkgr;"
    "DROP TABLE IF EXISTS derive_stale; DROP TABLE IF EXISTS derive_dirty;";

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
    [W_APPLIED] = "INSERT INTO applied(at, id) VALUES(?2, ?1) ON CONFLICT DO NOTHING",
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
    /* view/tests.c */
    [W_TEST_GET] = "SELECT testid FROM tests WHERE builder = ?1 AND name = ?2",
    [W_TEST_NEW] = "INSERT INTO tests(builder, name, last_seen) VALUES(?1, ?2, ?3)",
    [W_TEST_SEEN] = "UPDATE tests SET last_seen = max(last_seen, ?2) WHERE testid = ?1",
    [W_TEST_COUNT] = "SELECT count(*) FROM tests",
    [W_TEST_OLDEST] = "SELECT testid FROM tests ORDER BY last_seen, testid LIMIT 1",
    [W_TEST_DROP] = "DELETE FROM tests WHERE testid = ?1",
    [W_TEST_DROP_RUNS] = "DELETE FROM test_runs WHERE testid = ?1",
    [W_TEST_DROP_FLAKY] = "DELETE FROM test_flaky WHERE testid = ?1",
    [W_TEST_RUN] = "INSERT INTO test_runs(testid, setid, chunk, pos, buildid, revision, branch,"
                   " outcome, duration_s, at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
                   " ON CONFLICT DO NOTHING",
    /* Oldest rows first, by id: runids only grow, so the newest max rows are a range. */
    [W_TEST_TRIM] = "DELETE FROM test_runs WHERE runid <= (SELECT max(runid) FROM test_runs) - ?1",
    [W_TEST_EXPIRE] = "DELETE FROM test_runs WHERE runid IN (SELECT runid FROM test_runs"
                      " WHERE at < ?1 ORDER BY at LIMIT 1000)",
    [W_TEST_EXPIRE_TESTS] = "DELETE FROM tests WHERE testid IN (SELECT testid FROM tests"
                            " WHERE last_seen < ?1 ORDER BY last_seen LIMIT 1000)",
    [W_TEST_EXPIRE_FLAKY] = "DELETE FROM test_flaky WHERE rowid IN (SELECT rowid FROM test_flaky"
                            " WHERE at < ?1 LIMIT 1000) OR rowid <= (SELECT max(rowid)"
                            " FROM test_flaky) - ?2",
    [W_TEST_OUTCOMES] = "SELECT t.testid, total(r.outcome = 1), total(r.outcome = 0)"
                        " FROM tests t JOIN test_runs r ON r.testid = t.testid"
                        " WHERE t.builder = ?1 AND t.name = ?2 AND r.revision = ?3"
                        " GROUP BY t.testid",
    [W_TEST_FLAKY_MARK] = "INSERT INTO test_flaky(testid, revision, at) VALUES(?1, ?2, ?3)"
                          " ON CONFLICT DO NOTHING",
    /* 1 when test ?1 has a result ?3 at revision ?2 and no flaky mark there yet: the one
     * indexed look tests.c makes per stored pass or fail before view_test_flaky_first. */
    [W_TEST_FLIP_MAYBE] = "SELECT EXISTS (SELECT 1 FROM test_runs WHERE testid = ?1 AND"
                          " revision = ?2 AND outcome = ?3) AND NOT EXISTS (SELECT 1 FROM"
                          " test_flaky WHERE testid = ?1 AND revision = ?2)",
};

int view_mkdirs_for(const char *file, char *errbuf, size_t errsize)
{
    char dir[1024];
    if (fh_mkdirs_for(file, 0755, dir, sizeof(dir)) == 0)
        return 0;
    fh_errf(errbuf, errsize, FH_ERR_IO, "view.path: cannot create directory %s: %s", dir,
            strerror(errno));
    return -1;
}

/* Binds text or NULL. SQLITE_TRANSIENT: the event's strings die before the statement runs. */
/* ---- open / close ----------------------------------------------------------------------- */

int view_db_open(fh_view *v, char *errbuf, size_t errsize)
{
    char sql[256];
    if (sqlite3_open_v2(v->path, &v->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "view.path: %s: %s", v->path,
                v->db ? sqlite3_errmsg(v->db) : "cannot open");
        return -1;
    }
    sqlite3_busy_timeout(v->db, 10000);
    /* WAL: readers never block the writer; synchronous=NORMAL: a process crash (SIGKILL) loses
     * nothing that was committed, only a power loss may lose the last transactions. */
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-%lld;"
             " PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY;",
             v->cfg.sqlite_cache_kib);
    if (fh_sqlite_exec(v->db, sql, errbuf, errsize))
        return -1;
    /* A file from another schema version is derived data: rebuild it from Kafka. */
    sqlite3_stmt *st = NULL;
    int schema = -1;
    if (sqlite3_prepare_v2(v->db, "SELECT schema FROM view_state WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        schema = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    /* A file built from another Kafka cluster describes other partitions and offsets: rebuild
     * it from this one's topics. */
    char built_from[256];
    int ident = fh_sqlite_cluster_check(v->db, v->b->cluster_id, built_from, sizeof(built_from),
                                        errbuf, errsize);
    if (ident < 0)
        return -1;
    if (ident == FH_SQLITE_CLUSTER_OTHER && schema != -1) {
        fh_log(FH_LOG_WARN, "view.rebuild",
               "path=%s cluster_id=%s built_from=%s note=\"the file was built from another Kafka "
               "cluster: rebuilding from this one\"",
               v->path, v->b->cluster_id, built_from);
        if (fh_sqlite_exec(v->db, drop_sql, errbuf, errsize))
            return -1;
    } else if (schema != -1 && schema != VIEW_SCHEMA) {
        fh_log(FH_LOG_WARN, "view.rebuild",
               "path=%s schema=%d want=%d note=\"rebuilding from Kafka\"", v->path, schema,
               VIEW_SCHEMA);
        if (fh_sqlite_exec(v->db, drop_sql, errbuf, errsize))
            return -1;
    } else if (schema != -1 && v->b->embedded) {
        /* The embedded Kafka starts empty every time: a view of an earlier run's topics would
         * describe events that no longer exist. */
        fh_log(FH_LOG_WARN, "view.rebuild",
               "path=%s note=\"embedded Kafka is in memory and starts empty: the view starts empty "
               "too\"",
               v->path);
        if (fh_sqlite_exec(v->db, drop_sql, errbuf, errsize))
            return -1;
    }
    /* only once the other cluster's state is gone: a crash before this rebuilds again */
    if (ident == FH_SQLITE_CLUSTER_OTHER &&
        fh_sqlite_meta_set(v->db, FH_SQLITE_META_CLUSTER, v->b->cluster_id, errbuf, errsize))
        return -1;
    if (fh_sqlite_exec(v->db, schema_sql, errbuf, errsize))
        return -1;
    snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO view_state(id, schema) VALUES(1, %d)",
             VIEW_SCHEMA);
    if (fh_sqlite_exec(v->db, sql, errbuf, errsize))
        return -1;
    for (int i = 0; i < W__COUNT; i++)
        if (sqlite3_prepare_v3(v->db, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &v->w[i], NULL) !=
            SQLITE_OK) {
            fh_errf(errbuf, errsize, FH_ERR_IO, "view: preparing statement %d: %s", i,
                    sqlite3_errmsg(v->db));
            return -1;
        }
    if (sqlite3_prepare_v2(v->db,
                           "SELECT version, clock, record_ts_ms FROM view_state WHERE id = 1", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        atomic_store(&v->version, sqlite3_column_int64(st, 0));
        v->clock = sqlite3_column_double(st, 1);
        v->max_record_ts = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(v->db, "SELECT total(records) FROM view_lost", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        atomic_store(&v->records_lost, (long long)sqlite3_column_double(st, 0));
    sqlite3_finalize(st);
    if (atomic_load(&v->records_lost) > 0)
        fh_log(FH_LOG_WARN, "view.records_lost",
               "path=%s records=%lld note=\"Kafka deleted records before the view read them; "
               "answers may miss their events (as_of.records_lost) until the view is rebuilt\"",
               v->path, atomic_load(&v->records_lost));
    return 0;
}
