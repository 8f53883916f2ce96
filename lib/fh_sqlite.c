#include "fh_sqlite.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fh_error.h"

int fh_sqlite_exec(sqlite3 *db, const char *sql, char *errbuf, size_t errsize)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int fh_mkdirs_for(const char *file, unsigned mode, char *failed, size_t size)
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
        if (mkdir(dir, (mode_t)mode) && errno != EEXIST)
            goto err;
        *p = '/';
    }
    if (*dir && mkdir(dir, (mode_t)mode) && errno != EEXIST)
        goto err;
    return 0;
err:
    snprintf(failed, size, "%s", dir);
    return -1;
}

static int meta_create(sqlite3 *db, char *errbuf, size_t errsize)
{
    return fh_sqlite_exec(db,
                          "CREATE TABLE IF NOT EXISTS fh_meta(key TEXT PRIMARY KEY,"
                          " value TEXT NOT NULL) WITHOUT ROWID",
                          errbuf, errsize);
}

static int meta_error(sqlite3 *db, sqlite3_stmt *st, char *errbuf, size_t errsize)
{
    fh_errf(errbuf, errsize, FH_ERR_IO, "fh_meta: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return -1;
}

int fh_sqlite_meta_get(sqlite3 *db, const char *key, char *out, size_t size, char *errbuf,
                       size_t errsize)
{
    sqlite3_stmt *st = NULL;
    if (size)
        *out = '\0';
    if (meta_create(db, errbuf, errsize))
        return -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM fh_meta WHERE key = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return meta_error(db, st, errbuf, errsize);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        snprintf(out, size, "%s", v ? (const char *)v : "");
    } else if (rc != SQLITE_DONE) {
        return meta_error(db, st, errbuf, errsize);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW;
}

int fh_sqlite_meta_set(sqlite3 *db, const char *key, const char *value, char *errbuf,
                       size_t errsize)
{
    sqlite3_stmt *st = NULL;
    if (meta_create(db, errbuf, errsize))
        return -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO fh_meta(key, value) VALUES(?1, ?2)"
                           " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           -1, &st, NULL) != SQLITE_OK)
        return meta_error(db, st, errbuf, errsize);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return meta_error(db, st, errbuf, errsize);
    sqlite3_finalize(st);
    return 0;
}

int fh_sqlite_cluster_check(sqlite3 *db, const char *cluster_id, char *recorded, size_t size,
                            char *errbuf, size_t errsize)
{
    if (size)
        *recorded = '\0';
    if (!cluster_id || !*cluster_id)
        return FH_SQLITE_CLUSTER_UNKNOWN;
    int found = fh_sqlite_meta_get(db, FH_SQLITE_META_CLUSTER, recorded, size, errbuf, errsize);
    if (found < 0)
        return -1;
    if (found && *recorded)
        return strcmp(recorded, cluster_id) == 0 ? FH_SQLITE_CLUSTER_SAME : FH_SQLITE_CLUSTER_OTHER;
    if (fh_sqlite_meta_set(db, FH_SQLITE_META_CLUSTER, cluster_id, errbuf, errsize))
        return -1;
    return FH_SQLITE_CLUSTER_NEW;
}
