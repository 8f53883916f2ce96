/* fh_sqlite is what the view and the webhook store share: statements run with SQLite's own
 * message on failure, and the directories of a store's file made with the store's mode. */
#include "fh_sqlite.h"
#include "fh_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(sqlite_exec_runs_statements_and_reports_sqlite_errors)
{
    sqlite3 *db = NULL;
    char err[256];
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(fh_sqlite_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", err, sizeof(err)) ==
          0);
    CHECK(fh_sqlite_exec(db, "INSERT INTO nope VALUES (1)", err, sizeof(err)) == -1);
    CHECK(strstr(err, "no such table: nope") != NULL);
    sqlite3_close(db);
}

TEST(mkdirs_for_makes_every_parent_with_the_mode_and_names_a_failure)
{
    char base[] = "/tmp/fh_sqlite_test.XXXXXX", file[256], dir[256], failed[256];
    struct stat st;
    CHECK(mkdtemp(base) != NULL);
    snprintf(file, sizeof(file), "%s/a/b/store.db", base);
    CHECK(fh_mkdirs_for(file, 0700, failed, sizeof(failed)) == 0);
    snprintf(dir, sizeof(dir), "%s/a/b", base);
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(fh_mkdirs_for(file, 0700, failed, sizeof(failed)) == 0);       /* already there */
    CHECK(fh_mkdirs_for("store.db", 0700, failed, sizeof(failed)) == 0); /* no directory */
    /* a file where a directory must go */
    snprintf(file, sizeof(file), "%s/a/b/f", base);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    snprintf(dir, sizeof(dir), "%s/a/b/f/x/y.db", base);
    CHECK(fh_mkdirs_for(dir, 0700, failed, sizeof(failed)) == -1);
    snprintf(dir, sizeof(dir), "%s/a/b/f/x", base); /* mkdir says EEXIST for f itself */
    CHECK(strcmp(failed, dir) == 0);
    snprintf(dir, sizeof(dir), "rm -rf '%s'", base);
    CHECK(system(dir) == 0);
}

TEST(sqlite_meta_get_set_round_trip_and_absent_key)
{
    sqlite3 *db = NULL;
    char err[256], v[64];
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(fh_sqlite_meta_get(db, "k", v, sizeof(v), err, sizeof(err)) == 0);
    CHECK_STR(v, "");
    CHECK(fh_sqlite_meta_set(db, "k", "one", err, sizeof(err)) == 0);
    CHECK(fh_sqlite_meta_set(db, "k", "two", err, sizeof(err)) == 0); /* replaces */
    CHECK(fh_sqlite_meta_get(db, "k", v, sizeof(v), err, sizeof(err)) == 1);
    CHECK_STR(v, "two");
    CHECK(fh_sqlite_meta_get(db, "k", v, 4, err, sizeof(err)) == 1); /* truncated, terminated */
    CHECK_STR(v, "two");
    CHECK(fh_sqlite_meta_get(db, "k", v, 3, err, sizeof(err)) == 1);
    CHECK_STR(v, "tw");
    /* a connection that may not write: the error is SQLite's, in errbuf */
    CHECK(fh_sqlite_exec(db, "PRAGMA query_only = 1", err, sizeof(err)) == 0);
    CHECK(fh_sqlite_meta_set(db, "k", "x", err, sizeof(err)) == -1);
    CHECK(strstr(err, "readonly") != NULL);
    sqlite3_close(db);
}

TEST(sqlite_cluster_check_records_the_first_id_and_names_another)
{
    sqlite3 *db = NULL;
    char err[256], was[64];
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    /* no id known: nothing checked, nothing recorded */
    CHECK(fh_sqlite_cluster_check(db, "", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_UNKNOWN);
    CHECK(fh_sqlite_cluster_check(db, NULL, was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_UNKNOWN);
    CHECK(fh_sqlite_meta_get(db, FH_SQLITE_META_CLUSTER, was, sizeof(was), err, sizeof(err)) == 0);
    CHECK(fh_sqlite_cluster_check(db, "clusterA", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_NEW);
    CHECK_STR(was, "");
    CHECK(fh_sqlite_cluster_check(db, "clusterA", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_SAME);
    CHECK_STR(was, "clusterA");
    CHECK(fh_sqlite_cluster_check(db, "clusterB", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_OTHER);
    CHECK_STR(was, "clusterA");
    /* another id changes nothing: the caller decides */
    CHECK(fh_sqlite_cluster_check(db, "clusterB", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_OTHER);
    /* an unknown id later checks nothing and keeps the recorded one */
    CHECK(fh_sqlite_cluster_check(db, "", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_UNKNOWN);
    CHECK(fh_sqlite_meta_set(db, FH_SQLITE_META_CLUSTER, "clusterB", err, sizeof(err)) == 0);
    CHECK(fh_sqlite_cluster_check(db, "clusterB", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_SAME);
    sqlite3_close(db);
}

TEST(sqlite_cluster_id_survives_reopening_the_file)
{
    char base[] = "/tmp/fh_sqlite_meta.XXXXXX", file[256], err[256], was[64];
    sqlite3 *db = NULL;
    CHECK(mkdtemp(base) != NULL);
    snprintf(file, sizeof(file), "%s/store.db", base);
    CHECK(sqlite3_open(file, &db) == SQLITE_OK);
    CHECK(fh_sqlite_cluster_check(db, "clusterA", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_NEW);
    sqlite3_close(db);
    CHECK(sqlite3_open(file, &db) == SQLITE_OK);
    CHECK(fh_sqlite_cluster_check(db, "clusterB", was, sizeof(was), err, sizeof(err)) ==
          FH_SQLITE_CLUSTER_OTHER);
    CHECK_STR(was, "clusterA");
    sqlite3_close(db);
    snprintf(file, sizeof(file), "rm -rf '%s'", base);
    CHECK(system(file) == 0);
}
