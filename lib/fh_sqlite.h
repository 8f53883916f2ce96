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

#endif
