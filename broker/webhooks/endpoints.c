/* webhooks/endpoints.c: the webhook thread's endpoint table, rebuilt from the store when the
 * endpoints version moves (the reader applied the endpoints topic), with each secret opened
 * (fh_aead) into memory only; and endpoint health: failing since (this instance's own streak),
 * disabled (published to the endpoints topic). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_log.h"
#include "fh_whformat.h"

void wh_ep_free(wh_ep *e)
{
    free(e->url);
    free(e->flying);
    fh_filter_free(&e->filter);
}

wh_ep *wh_ep_find(fh_webhooks *w, const char *id)
{
    for (size_t i = 0; i < w->neps; i++)
        if (strcmp(w->eps[i].id, id) == 0)
            return &w->eps[i];
    return NULL;
}

/* The signing key of a sealed secret (decrypted into memory only); 0 when it does not open,
 * which is logged with the reason (a wrong webhooks.secret_key names both key ids). */
static size_t open_key(fh_webhooks *w, const char *id, const char *sealed, wh_key *out)
{
    char clear[FH_SIGN_SECRET_SIZE * 2], err[256];
    if (!sealed ||
        fh_aead_open(&w->key, id, sealed, clear, sizeof(clear), NULL, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "webhook.secret", "endpoint=%s error=\"%s\"", id,
               sealed ? err : "none");
        return 0;
    }
    long kl = fh_sign_secret_key(clear, out->k, err, sizeof(err));
    memset(clear, 0, sizeof(clear));
    return kl > 0 ? (size_t)kl : 0;
}

/* Rebuilds the endpoint table from the store when its version moved; transfers in flight are
 * re-attached to their endpoint by id. */
void wh_eps_reload(fh_webhooks *w, int force)
{
    sqlite3_stmt *st = w->st[S_VERSION];
    long long v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (v < 0 || (!force && v == w->eps_version))
        return;
    wh_ep *eps = NULL;
    size_t n = 0, cap = 0;
    char err[256];
    st = w->st[S_EPS];
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            wh_ep *ne = fh_grow(eps, &cap, sizeof(*ne), 16);
            if (!ne)
                break;
            eps = ne;
        }
        wh_ep *e = &eps[n];
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%s", (const char *)sqlite3_column_text(st, 0));
        e->url = strdup((const char *)sqlite3_column_text(st, 1));
        e->flying = calloc((size_t)w->cfg.endpoint_concurrency, sizeof(*e->flying));
        json_t *fj = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
        int bad =
            !e->url || !e->flying || fh_filter_parse(fj, &e->filter, err, sizeof(err)) != FH_OK;
        json_decref(fj);
        e->types = bad ? 0 : fh_filter_type_mask(&e->filter);
        e->format = fh_wh_format_parse((const char *)sqlite3_column_text(st, 3));
        e->key.len = open_key(w, e->id, (const char *)sqlite3_column_text(st, 4), &e->key);
        if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
            e->old_key.len =
                open_key(w, e->id, (const char *)sqlite3_column_text(st, 5), &e->old_key);
            e->old_until_ms = sqlite3_column_int64(st, 6);
        }
        e->enabled = sqlite3_column_int(st, 7);
        e->ordered = sqlite3_column_int(st, 8);
        e->failing_since_ms = sqlite3_column_int64(st, 9);
        if (bad || e->format < 0 || !e->key.len) {
            /* Only the API writes this table and it validates; a row that still does not load
             * is skipped (never delivered to) and said so. */
            fh_log(FH_LOG_ERROR, "webhook.endpoint_unusable", "endpoint=%s", e->id);
            wh_ep_free(e);
            continue;
        }
        e->has_work = 1;
        n++;
    }
    sqlite3_reset(st);
    /* Carry over what is in flight. */
    for (long long i = 0; i < w->cfg.max_in_flight; i++) {
        xfer *x = &w->xfers[i];
        if (!x->busy)
            continue;
        x->ep = (size_t)-1;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(eps[j].id, x->ep_id) == 0) {
                if (eps[j].inflight < w->cfg.endpoint_concurrency)
                    eps[j].flying[eps[j].inflight++] = x->delivery_id;
                x->ep = j;
                break;
            }
        }
    }
    for (size_t i = 0; i < w->neps; i++)
        wh_ep_free(&w->eps[i]);
    free(w->eps);
    w->eps = eps;
    w->neps = n;
    w->eps_version = v;
    fh_log(FH_LOG_INFO, "webhook.endpoints", "count=%zu version=%lld", n, v);
}

void wh_ep_set_failing(fh_webhooks *w, wh_ep *e, int64_t since)
{
    sqlite3_stmt *st = w->st[since ? S_EP_FAIL : S_EP_OK];
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
    if (since)
        sqlite3_bind_int64(st, 2, since);
    if (wh_step_done(st))
        wh_sql_warn(w, "endpoint_health");
    e->failing_since_ms = since;
}

void wh_ep_disable(fh_webhooks *w, wh_ep *e, const char *reason)
{
    sqlite3_stmt *st = w->st[S_EP_DISABLE];
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, fh_now_ms());
    if (wh_step_done(st))
        wh_sql_warn(w, "endpoint_disable");
    whs_bump_version(w->db);
    /* every instance stops delivering to it: the endpoints topic says so (not waited for) */
    char err[256];
    json_t *row = wh_ep_row(w->db, e->id);
    if (!row || wh_ep_publish(w, e->id, row, 0, err, sizeof(err)))
        fh_log(FH_LOG_ERROR, "webhook.endpoint_disable", "endpoint=%s error=\"%s\"", e->id,
               row ? err : "no row");
    json_decref(row);
    e->enabled = 0;
    fh_metric_add(w->m_disabled, 1);
    char q[400];
    fh_log(FH_LOG_WARN, "webhook.endpoint_disabled", "endpoint=%s reason=%s", e->id,
           fh_log_quote(q, sizeof(q), reason));
}
