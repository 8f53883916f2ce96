/* rest/answer: small writers and readers the renderers share. */
#include "internal.h"

/* ---- small helpers ---------------------------------------------------------------------- */

void rest_put_double(fh_buf *out, double v)
{
    if (isfinite(v))
        fh_buf_printf(out, "%.15g", v);
    else
        fh_buf_printf(out, "null");
}

/* Appends the JSON text a query produced (a json_* function result). */
void rest_put_json_col(fh_buf *out, sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    if (s)
        fh_buf_append(out, s, (size_t)sqlite3_column_bytes(st, i));
    else
        fh_buf_printf(out, "null");
}

void rest_put_rfc3339(fh_buf *out, double epoch_s)
{
    char t[32];
    fh_buf_printf(out, "\"%s\"", fh_time_rfc3339((int64_t)llround(epoch_s * 1000.0), t, sizeof(t)));
}

void rest_bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Steps a statement that yields one row with one JSON column; appends it. */
int rest_one_json(sqlite3_stmt *st, fh_buf *out)
{
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rest_put_json_col(out, st, 0);
        return 0;
    }
    return rc == SQLITE_DONE ? 1 : -1;
}

long long rest_one_int(sqlite3_stmt *st)
{
    if (!st || sqlite3_step(st) != SQLITE_ROW)
        return -1;
    return sqlite3_column_int64(st, 0);
}

void rest_bind_list(sqlite3_stmt *st, const rest_args *l)
{
    rest_bind_opt(st, 1, l->builder);
    rest_bind_opt(st, 2, l->branch);
    rest_bind_opt(st, 3, l->project);
    rest_bind_opt(st, 4, l->owner);
    rest_bind_opt(st, 5, l->repository);
}
