/* view/readers: the REST side: the request gate, the pool of read-only connections and their
 * statements, and as_of. Any thread. */
#include "internal.h"

/* ---- readers ---------------------------------------------------------------------------- */

int view_enter(fh_view *v)
{
    if (!v)
        return -1;
    atomic_fetch_add(&v->inflight, 1);
    if (atomic_load(&v->closing) || !v->started) {
        atomic_fetch_sub(&v->inflight, 1);
        return -1;
    }
    return 0;
}

void view_leave(fh_view *v)
{
    atomic_fetch_sub(&v->inflight, 1);
}

static view_reader *reader_open(fh_view *v, char *errbuf, size_t errsize)
{
    char sql[128];
    view_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->view = v;
    if (sqlite3_open_v2(v->path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "view: opening a reader: %s",
                r->db ? sqlite3_errmsg(r->db) : "cannot open");
        sqlite3_close(r->db);
        free(r);
        return NULL;
    }
    sqlite3_busy_timeout(r->db, 5000);
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d; PRAGMA query_only=1;", v->reader_cache_kib);
    sqlite3_exec(r->db, sql, NULL, NULL, NULL);
    return r;
}

view_reader *view_reader_get(fh_view *v, view_asof *asof, char *errbuf, size_t errsize)
{
    view_reader *r = NULL;
    pthread_mutex_lock(&v->pool_mu);
    while (!v->pool_free && v->pool_open >= v->pool_max)
        pthread_cond_wait(&v->pool_cv, &v->pool_mu);
    if (v->pool_free) {
        r = v->pool_free;
        v->pool_free = r->next;
    } else {
        v->pool_open++;
    }
    pthread_mutex_unlock(&v->pool_mu);
    if (!r && !(r = reader_open(v, errbuf, errsize))) {
        pthread_mutex_lock(&v->pool_mu);
        v->pool_open--;
        pthread_cond_signal(&v->pool_cv);
        pthread_mutex_unlock(&v->pool_mu);
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
    view_reader_put(v, r);
    return NULL;
}

void view_reader_put(fh_view *v, view_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < VIEW_READER_SLOTS; i++)
        if (r->st[i])
            sqlite3_reset(r->st[i]);
    if (!sqlite3_get_autocommit(r->db))
        sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_lock(&v->pool_mu);
    r->next = v->pool_free;
    v->pool_free = r;
    pthread_cond_signal(&v->pool_cv);
    pthread_mutex_unlock(&v->pool_mu);
}

fh_view *view_reader_view(view_reader *r)
{
    return r->view;
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

void view_asof_json(fh_view *v, const view_asof *a, fh_buf *out)
{
    char applied[32], clock[32];
    long long end = atomic_load(&v->end_total);
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

long long view_records_lost(fh_view *v)
{
    return v ? atomic_load(&v->records_lost) : 0;
}
