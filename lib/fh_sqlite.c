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
