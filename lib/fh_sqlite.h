/* fh_sqlite: what every SQLite store of the broker (the view, the webhook store) does the same
 * way. */
#ifndef FH_SQLITE_H
#define FH_SQLITE_H

#include <sqlite3.h>
#include <stddef.h>

/* Runs sql (one or more statements) on db. Returns 0, or -1 with SQLite's message in errbuf
 * (FH_ERR_IO). */
int fh_sqlite_exec(sqlite3 *db, const char *sql, char *errbuf, size_t errsize);

/* Creates the directories leading to file (not file itself) with mode, those that exist left
 * alone. Returns 0, or -1 with errno set and the directory that could not be made in failed. */
int fh_mkdirs_for(const char *file, unsigned mode, char *failed, size_t size);

/* ---- the meta table ---------------------------------------------------------------------------
 * fh_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL): facts about a local file that belong to no
 * store's own tables (so recording one never changes a store's schema version). Created by the
 * first call that needs it. */

/* The key under which a store records the Kafka cluster its state was derived from. */
#define FH_SQLITE_META_CLUSTER "kafka.cluster_id"

/* Reads key into out (truncated to size). Returns 1 when found, 0 when absent (out is ""), -1 on
 * a SQLite error (errbuf). */
int fh_sqlite_meta_get(sqlite3 *db, const char *key, char *out, size_t size, char *errbuf,
                       size_t errsize);
/* Sets key to value (replacing it). Returns 0, or -1 on a SQLite error (errbuf). */
int fh_sqlite_meta_set(sqlite3 *db, const char *key, const char *value, char *errbuf,
                       size_t errsize);

/* What fh_sqlite_cluster_check found. */
enum fh_sqlite_cluster {
    FH_SQLITE_CLUSTER_UNKNOWN = 0, /* cluster_id is NULL or "": nothing checked or recorded */
    FH_SQLITE_CLUSTER_NEW,         /* the file had no id: cluster_id is now recorded */
    FH_SQLITE_CLUSTER_SAME,        /* the file records cluster_id */
    FH_SQLITE_CLUSTER_OTHER,       /* the file records another id (in recorded); nothing changed */
};

/* Checks the Kafka cluster id recorded in db (FH_SQLITE_META_CLUSTER) against cluster_id, the
 * cluster this process reads. On FH_SQLITE_CLUSTER_OTHER the caller decides: rebuild and then
 * record the new id with fh_sqlite_meta_set, or refuse. recorded receives the stored id ("" when
 * none). Returns an enum fh_sqlite_cluster, or -1 on a SQLite error (errbuf). */
int fh_sqlite_cluster_check(sqlite3 *db, const char *cluster_id, char *recorded, size_t size,
                            char *errbuf, size_t errsize);

#endif
