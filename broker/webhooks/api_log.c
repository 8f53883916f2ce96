/* webhooks/api_log.c: the delivery log of /api/v1/webhooks (list and detail of deliveries with
 * their attempts) and putting deliveries back in the queue (redeliver one, recover the failed
 * ones since a time). Runs on libmicrohttpd's threads through the API's connection (api.c). */
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_log.h"

int wh_api_endpoint_exists(fh_webhooks *w, const char *id, fh_http_response *resp)
{
    sqlite3_stmt *st = wh_api_prep(w, "SELECT 1 FROM endpoints WHERE id = ?1", resp);
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!ok)
        fh_http_error(resp, 404, "not_found", "id", "no webhook endpoint %.64s", id);
    return ok;
}

#define DELIVERY_COLS                                                                              \
    "id, msg_id, event_id, event_type, state, attempts, next_ms, created_ms, updated_ms,"          \
    " last_status, last_error, tries"

static void put_delivery(fh_buf *o, sqlite3_stmt *st)
{
    int state = sqlite3_column_int(st, 4);
    fh_buf_printf(o, "{\"id\":");
    fh_buf_json_str(o, (const char *)sqlite3_column_text(st, 1));
    wh_api_put_text(o, "event_id", st, 2);
    wh_api_put_text(o, "event_type", st, 3);
    fh_buf_printf(o, ",\"state\":\"%s\",\"attempt_count\":%d", whs_state_name(state),
                  sqlite3_column_int(st, 5));
    if (state == WHS_PENDING)
        wh_api_put_time(o, "next_attempt", st, 6);
    else
        fh_buf_printf(o, ",\"next_attempt\":null");
    wh_api_put_time(o, "created", st, 7);
    wh_api_put_time(o, "updated", st, 8);
    fh_buf_printf(o, ",\"last_status\":");
    if (sqlite3_column_type(st, 9) == SQLITE_NULL)
        fh_buf_printf(o, "null");
    else
        fh_buf_printf(o, "%d", sqlite3_column_int(st, 9));
    wh_api_put_text(o, "last_error", st, 10);
}

void wh_api_deliveries(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    const char *id = req->path_params[0];
    const char *state = fh_http_query(req, "state"), *since = fh_http_query(req, "since");
    const char *limit_s = fh_http_query(req, "limit"), *before = fh_http_query(req, "before");
    long long limit = 100, before_id = -1;
    int64_t since_ms = 0;
    int st_filter = -1;
    char *end;
    fh_webhooks *w = ctx;
    if (state && (st_filter = whs_state_parse(state)) < 0) {
        fh_http_error(resp, 400, "bad_parameter", "state",
                      "state: expected pending, delivered or failed");
        return;
    }
    if (since && fh_time_parse(since, &since_ms)) {
        fh_http_error(resp, 400, "bad_parameter", "since", "since: expected an RFC 3339 time");
        return;
    }
    if (limit_s && ((limit = strtoll(limit_s, &end, 10)) < 1 || limit > 1000 || *end)) {
        fh_http_error(resp, 400, "bad_parameter", "limit", "limit: expected an integer 1-1000");
        return;
    }
    if (before && ((before_id = strtoll(before, &end, 10)) < 1 || *end)) {
        fh_http_error(resp, 400, "bad_parameter", "before",
                      "before: expected the \"next\" cursor of a previous page");
        return;
    }
    if (wh_api_enter(w, resp))
        return;
    if (!wh_api_endpoint_exists(w, id, resp))
        goto out;
    sqlite3_stmt *st =
        wh_api_prep(w,
                    "SELECT " DELIVERY_COLS " FROM deliveries WHERE endpoint_id = ?1"
                    " AND (?2 < 0 OR state = ?2) AND created_ms >= ?3 AND (?4 < 0 OR id < ?4)"
                    " ORDER BY id DESC LIMIT ?5",
                    resp);
    if (!st)
        goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, st_filter);
    sqlite3_bind_int64(st, 3, since_ms);
    sqlite3_bind_int64(st, 4, before_id);
    sqlite3_bind_int64(st, 5, limit + 1);
    fh_buf_printf(&resp->body, "{\"deliveries\":[");
    long long n = 0, last = -1;
    int more = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == limit) {
            more = 1;
            break;
        }
        if (n++)
            fh_buf_printf(&resp->body, ",");
        put_delivery(&resp->body, st);
        fh_buf_printf(&resp->body, "}");
        last = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (more)
        fh_buf_printf(&resp->body, "],\"next\":\"%lld\"}\n", last);
    else
        fh_buf_printf(&resp->body, "],\"next\":null}\n");
out:
    wh_api_leave(w);
}

void wh_api_delivery(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    const char *id = req->path_params[0], *msg = req->path_params[1];
    fh_webhooks *w = ctx;
    if (wh_api_enter(w, resp))
        return;
    sqlite3_stmt *st = wh_api_prep(w,
                                   "SELECT " DELIVERY_COLS " FROM deliveries WHERE endpoint_id = ?1"
                                   " AND msg_id = ?2",
                                   resp);
    if (!st)
        goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, msg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        fh_http_error(resp, 404, "not_found", "delivery", "no delivery %.64s for endpoint %.64s",
                      msg, id);
        goto out;
    }
    long long did = sqlite3_column_int64(st, 0);
    put_delivery(&resp->body, st);
    sqlite3_finalize(st);
    /* Failed attempts are rows of attempts; the successful one lives in the delivery's last_*
     * columns (store.c). */
    st = wh_api_prep(
        w,
        "SELECT at_ms, status, latency_ms, error, response, instance FROM attempts"
        " WHERE delivery_id = ?1 UNION ALL SELECT updated_ms, last_status, last_latency_ms,"
        " NULL, last_response, last_instance FROM deliveries WHERE id = ?1 AND state = 1"
        " ORDER BY 1",
        resp);
    if (!st)
        goto out;
    sqlite3_bind_int64(st, 1, did);
    fh_buf_printf(&resp->body, ",\"attempts\":[");
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char t[32];
        fh_buf_printf(&resp->body, "%s{\"at\":\"%s\",\"status\":%d,\"latency_ms\":%lld",
                      n++ ? "," : "", fh_time_rfc3339(sqlite3_column_int64(st, 0), t, sizeof(t)),
                      sqlite3_column_int(st, 1), (long long)sqlite3_column_int64(st, 2));
        wh_api_put_text(&resp->body, "error", st, 3);
        wh_api_put_text(&resp->body, "response", st, 4);
        wh_api_put_text(&resp->body, "instance", st, 5);
        fh_buf_printf(&resp->body, "}");
    }
    sqlite3_finalize(st);
    fh_buf_printf(&resp->body, "]}\n");
out:
    wh_api_leave(w);
}

/* Asks every instance, through the changelog, to put deliveries back in the queue with a fresh
 * retry schedule (same webhook-id, same body); the owner of their partition sends them. The
 * answer waits until this instance applied the request (see wh_cl_request), outside the API's
 * section (held by the caller, taken again before returning). */
static int request(fh_webhooks *w, int part, const char *id, const char *msg, int64_t since,
                   fh_http_response *resp)
{
    char err[512];
    wh_api_leave(w); /* other requests go on while this one waits */
    int rc = wh_cl_request(w, part, id, msg, since, err, sizeof(err));
    pthread_mutex_lock(&w->api_mu);
    if (rc == 0)
        return 0;
    fh_http_error(resp, 503, "unavailable", NULL, "%s", err);
    return -1;
}

void wh_api_redeliver(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    const char *id = req->path_params[0], *msg = req->path_params[1];
    fh_webhooks *w = ctx;
    if (wh_api_enter(w, resp))
        return;
    sqlite3_stmt *st =
        wh_api_prep(w, "SELECT part FROM deliveries WHERE endpoint_id = ?1 AND msg_id = ?2", resp);
    int slot = -1;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, msg, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            slot = sqlite3_column_int(st, 0);
        else
            fh_http_error(resp, 404, "not_found", "delivery",
                          "no delivery %.64s for endpoint %.64s", msg, id);
        sqlite3_finalize(st); /* before request() leaves the section that guards the connection */
    }
    if (slot >= 0 && request(w, wh_cl_partition(w, slot), id, msg, 0, resp) == 0) {
        resp->status = 202;
        fh_buf_printf(&resp->body, "{\"id\":");
        fh_buf_json_str(&resp->body, msg);
        fh_buf_printf(&resp->body, ",\"state\":\"pending\"}\n");
    }
    wh_api_leave(w);
    wh_poke(w);
}

void wh_api_recover(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    const char *id = req->path_params[0];
    int64_t since;
    fh_webhooks *w = ctx;
    json_t *j = wh_api_body_object(req, resp);
    if (!j)
        return;
    static const char *const fields[] = {"since", NULL};
    json_t *v = json_object_get(j, "since");
    if (wh_api_check_fields(j, fields, resp))
        goto done;
    if (!json_is_string(v) || fh_time_parse(json_string_value(v), &since)) {
        fh_http_error(resp, 400, "bad_request", "since", "since: expected an RFC 3339 time");
        goto done;
    }
    if (wh_api_enter(w, resp))
        goto done;
    if (wh_api_endpoint_exists(w, id, resp)) {
        /* the count is this instance's view of the log as the request is made */
        sqlite3_stmt *st = wh_api_prep(w,
                                       "SELECT count(*) FROM deliveries WHERE endpoint_id = ?1"
                                       " AND state = 2 AND created_ms >= ?2",
                                       resp);
        long long n = -1;
        if (st) {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, since);
            if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
        if (n >= 0 && request(w, -1, id, NULL, since, resp) == 0) {
            resp->status = 202;
            fh_buf_printf(&resp->body, "{\"recovered\":%lld}\n", n);
        }
    }
    wh_api_leave(w);
    wh_poke(w);
done:
    json_decref(j);
}
