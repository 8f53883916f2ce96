/* webhooks/api.c: /api/v1/webhooks, endpoint management (docs/webhooks.md, docs/openapi.yaml);
 * the delivery log is api_log.c. Handlers run on libmicrohttpd's threads and share one SQLite
 * connection under a mutex (management traffic is light; the webhook thread has its own). Every
 * change is a record of the endpoints topic (secrets sealed): the answer waits until Kafka took it
 * (acks=all) and this instance's reader applied it, so it shows the change; every other instance
 * applies it within about a second. Secrets are shown once: in the answer that created them. */
#include "internal.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_log.h"
#include "fh_sign.h"
#include "fh_whformat.h"

static const char ep_cols[] =
    "id, url, filter, format, description, enabled, disabled_reason, ordered, failing_since_ms,"
    " created_ms, updated_ms, old_secret_until_ms";

void wh_api_put_time(fh_buf *o, const char *name, sqlite3_stmt *st, int col)
{
    char t[32];
    fh_buf_printf(o, ",\"%s\":", name);
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        fh_buf_printf(o, "null");
    else
        fh_buf_printf(o, "\"%s\"", fh_time_rfc3339(sqlite3_column_int64(st, col), t, sizeof(t)));
}

void wh_api_put_text(fh_buf *o, const char *name, sqlite3_stmt *st, int col)
{
    fh_buf_printf(o, ",\"%s\":", name);
    fh_buf_json_str(o, (const char *)sqlite3_column_text(st, col));
}

/* Appends the endpoint in the current row of a "SELECT ep_cols" statement. */
static void put_endpoint(fh_buf *o, sqlite3_stmt *st)
{
    int64_t now = fh_now_ms();
    fh_buf_printf(o, "{\"id\":");
    fh_buf_json_str(o, (const char *)sqlite3_column_text(st, 0));
    /* URLs with credentials are refused, but a row stored before they were may hold some: a
     * listing never shows them. */
    const char *url = sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "";
    size_t n = strlen(url) + 1;
    char *shown = malloc(n);
    fh_buf_printf(o, ",\"url\":");
    fh_buf_json_str(o, shown ? fh_netguard_url_redact(url, shown, n) : "");
    free(shown);
    fh_buf_printf(o, ",\"filter\":%s", (const char *)sqlite3_column_text(st, 2));
    wh_api_put_text(o, "format", st, 3);
    wh_api_put_text(o, "description", st, 4);
    fh_buf_printf(o, ",\"enabled\":%s", sqlite3_column_int(st, 5) ? "true" : "false");
    wh_api_put_text(o, "disabled_reason", st, 6);
    fh_buf_printf(o, ",\"ordered\":%s", sqlite3_column_int(st, 7) ? "true" : "false");
    wh_api_put_time(o, "failing_since", st, 8);
    wh_api_put_time(o, "created", st, 9);
    wh_api_put_time(o, "updated", st, 10);
    if (sqlite3_column_type(st, 11) != SQLITE_NULL && sqlite3_column_int64(st, 11) > now)
        wh_api_put_time(o, "previous_secret_expires", st, 11);
    else
        fh_buf_printf(o, ",\"previous_secret_expires\":null");
}

/* 503 (1) when webhooks are off: checked before input validation, which needs the running
 * module's guard. */
static int api_off(fh_webhooks *w, fh_http_response *resp)
{
    if (w->cfg.enabled && w->api_db)
        return 0;
    wh_api_enter(w, resp);
    return 1;
}

int wh_api_enter(fh_webhooks *w, fh_http_response *resp)
{
    if (!w->cfg.enabled || !w->api_db) {
        if (w->off_why[0])
            fh_http_error(resp, 503, "unavailable", NULL, "%s", w->off_why);
        else
            fh_http_error(resp, 503, "unavailable", NULL,
                          "webhooks are disabled (webhooks.enabled=false)");
        return -1;
    }
    pthread_mutex_lock(&w->api_mu);
    resp->max_age = -1;
    resp->no_etag = 1;
    return 0;
}

void wh_api_leave(fh_webhooks *w)
{
    pthread_mutex_unlock(&w->api_mu);
}

sqlite3_stmt *wh_api_prep(fh_webhooks *w, const char *sql, fh_http_response *resp)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(w->api_db, sql, -1, &st, NULL) != SQLITE_OK) {
        fh_log(FH_LOG_ERROR, "webhook.api_sql", "error=\"%s\"", sqlite3_errmsg(w->api_db));
        fh_http_error(resp, 500, "internal", NULL, "store error");
        return NULL;
    }
    return st;
}

void wh_api_store_error(fh_webhooks *w, fh_http_response *resp)
{
    fh_log(FH_LOG_ERROR, "webhook.api_sql", "error=\"%s\"", sqlite3_errmsg(w->api_db));
    fh_http_error(resp, 500, "internal", NULL, "store error: %s", sqlite3_errmsg(w->api_db));
}

/* Parses the request body as a JSON object; 400 otherwise. Caller decrefs. */
json_t *wh_api_body_object(const fh_http_request *req, fh_http_response *resp)
{
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        fh_http_error(resp, 400, "bad_request", "body", "expected a JSON object%s%s", j ? "" : ": ",
                      j ? "" : jerr.text);
        return NULL;
    }
    return j;
}

int wh_api_check_fields(json_t *j, const char *const *allowed, fh_http_response *resp)
{
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], k) == 0)
                ok = 1;
        if (!ok) {
            fh_http_error(resp, 400, "bad_request", k, "%.64s: unknown field", k);
            return -1;
        }
    }
    return 0;
}

/* Validated fields of a create or a patch; pointers borrow from the request's JSON. */
typedef struct ep_input {
    const char *url, *format, *description, *secret;
    char *filter;         /* owned: canonical JSON text */
    int enabled, ordered; /* -1 when absent */
    int rotate;           /* "secret" present (NULL: generate one) */
    long long overlap_s;
    char gen[FH_SIGN_SECRET_SIZE];
} ep_input;

static int format_ok(const char *s)
{
    return fh_wh_format_parse(s) >= 0;
}

static int description_ok(const char *s)
{
    return strlen(s) <= 1024;
}

/* Reads the optional string member name into *out when it is a string ok() accepts; def (may be
 * NULL) when it is absent. Returns 0, or -1 with a 400 naming the field and what it expects. */
static int str_field(json_t *j, const char *name, const char *def, int (*ok)(const char *),
                     const char *expected, const char **out, fh_http_response *resp)
{
    json_t *v = json_object_get(j, name);
    if (!v) {
        if (def)
            *out = def;
        return 0;
    }
    if (!json_is_string(v) || !ok(json_string_value(v))) {
        fh_http_error(resp, 400, "bad_request", name, "%s: %s", name, expected);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* Reads the optional boolean member name into *out (left alone when absent). Returns 0, or -1
 * with a 400. */
static int bool_field(json_t *j, const char *name, int *out, fh_http_response *resp)
{
    json_t *v = json_object_get(j, name);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        fh_http_error(resp, 400, "bad_request", name, "%s: expected true or false", name);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int parse_input(fh_webhooks *w, json_t *j, ep_input *in, int create, fh_http_response *resp)
{
    static const char *const create_fields[] = {"url",    "filter",  "format",  "description",
                                                "secret", "enabled", "ordered", NULL};
    static const char *const patch_fields[] = {"url",         "filter",           "format",
                                               "description", "secret",           "enabled",
                                               "ordered",     "secret_overlap_s", NULL};
    char err[512];
    json_t *v;
    memset(in, 0, sizeof(*in));
    in->enabled = in->ordered = -1;
    in->overlap_s = w->cfg.secret_overlap_s;
    if (wh_api_check_fields(j, create ? create_fields : patch_fields, resp))
        return -1;
    if ((v = json_object_get(j, "url")) || create) {
        if (!json_is_string(v)) {
            fh_http_error(resp, 400, "bad_request", "url", "url: expected a string");
            return -1;
        }
        in->url = json_string_value(v);
        if (whs_url_check(in->url, &w->guard, err, sizeof(err))) {
            fh_http_error(resp, 400, "bad_request", "url", "url: %s", err);
            return -1;
        }
    }
    if ((v = json_object_get(j, "filter")) || create) {
        fh_filter f;
        if (v && !json_is_object(v)) {
            fh_http_error(resp, 400, "bad_request", "filter", "filter: expected an object");
            return -1;
        }
        fh_err rc = fh_filter_parse(v, &f, err, sizeof(err));
        fh_filter_free(&f);
        if (rc) {
            fh_http_error(resp, 400, "bad_request", "filter", "%s", err);
            return -1;
        }
        in->filter = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
        if (!in->filter) {
            fh_http_error(resp, 500, "internal", NULL, "out of memory");
            return -1;
        }
    }
    if (str_field(j, "format", create ? "firehose" : NULL, format_ok,
                  "expected \"firehose\", \"cloudevents\", \"cdevents\", \"slack\" or \"matrix\"",
                  &in->format, resp) ||
        str_field(j, "description", create ? "" : NULL, description_ok,
                  "expected a string of at most 1024 bytes", &in->description, resp) ||
        bool_field(j, "enabled", &in->enabled, resp) ||
        bool_field(j, "ordered", &in->ordered, resp))
        return -1;
    if ((v = json_object_get(j, "secret_overlap_s"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2592000) {
            fh_http_error(resp, 400, "bad_request", "secret_overlap_s",
                          "secret_overlap_s: expected an integer 0-2592000");
            return -1;
        }
        in->overlap_s = json_integer_value(v);
    }
    if ((v = json_object_get(j, "secret")) || create) {
        in->rotate = 1;
        if (v && !json_is_null(v)) {
            /* never echo a rejected secret back */
            if (!json_is_string(v) ||
                fh_sign_secret_check(json_string_value(v), err, sizeof(err)) != FH_OK) {
                fh_http_error(resp, 400, "bad_request", "secret", "secret: %s",
                              json_is_string(v) ? err : "expected a string or null");
                return -1;
            }
            in->secret = json_string_value(v);
        } else {
            if (fh_sign_secret_new(in->gen)) {
                fh_http_error(resp, 500, "internal", NULL, "no randomness for a secret");
                return -1;
            }
            in->secret = in->gen;
        }
    }
    return 0;
}

/* What every create and patch does last, whatever happened: leaves the API's write section,
 * wakes the delivery thread, and frees the request's JSON and validated input. */
static void write_end(fh_webhooks *w, ep_input *in, json_t *j)
{
    wh_api_leave(w);
    wh_poke(w);
    free(in->filter);
    json_decref(j);
}

/* Appends the endpoint id, then closes the object with stats (detail) and the secret (when
 * just created or rotated). */
static int render_endpoint(fh_webhooks *w, const char *id, int stats, const char *secret,
                           fh_http_response *resp)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT %s FROM endpoints WHERE id = ?1", ep_cols);
    sqlite3_stmt *st = wh_api_prep(w, sql, resp);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        fh_http_error(resp, 404, "not_found", "id", "no webhook endpoint %.64s", id);
        return -1;
    }
    put_endpoint(&resp->body, st);
    sqlite3_finalize(st);
    if (stats) {
        st = wh_api_prep(
            w, "SELECT state, count(*) FROM deliveries WHERE endpoint_id = ?1 GROUP BY state",
            resp);
        if (!st)
            return -1;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        long long n[3] = {0, 0, 0};
        while (sqlite3_step(st) == SQLITE_ROW) {
            int s = sqlite3_column_int(st, 0);
            if (s >= 0 && s < 3)
                n[s] = sqlite3_column_int64(st, 1);
        }
        sqlite3_finalize(st);
        fh_buf_printf(&resp->body,
                      ",\"stats\":{\"pending\":%lld,\"delivered\":%lld,\"failed\":%lld}", n[0],
                      n[1], n[2]);
    }
    if (secret) {
        fh_buf_printf(&resp->body, ",\"secret\":");
        fh_buf_json_str(&resp->body, secret);
    }
    fh_buf_printf(&resp->body, "}\n");
    return 0;
}

/* Seals secret for endpoint id into o's member name (the topic and the file never hold it in
 * clear). 0, or -1 with a 500. */
static int seal_into(fh_webhooks *w, json_t *o, const char *name, const char *id,
                     const char *secret, fh_http_response *resp)
{
    char sealed[FH_AEAD_SEALED_SIZE(FH_SIGN_SECRET_SIZE * 2)], err[256];
    if (fh_aead_seal(&w->key, id, secret, strlen(secret), sealed, sizeof(sealed), err,
                     sizeof(err))) {
        fh_http_error(resp, 500, "internal", NULL, "sealing the secret: %s", err);
        return -1;
    }
    json_object_set_new(o, name, json_string(sealed));
    return 0;
}

/* Publishes the endpoint (NULL: its deletion) and waits until this instance applied it; 0, or
 * -1 with a 503 naming what did not answer. Called inside the API's section, which it leaves
 * while it waits (other requests go on) and takes again. */
static int publish(fh_webhooks *w, const char *id, json_t *o, fh_http_response *resp)
{
    char err[512];
    wh_api_leave(w);
    int rc = wh_ep_publish(w, id, o, 1, err, sizeof(err));
    pthread_mutex_lock(&w->api_mu);
    if (rc == 0)
        return 0;
    fh_log(FH_LOG_WARN, "webhook.api_publish", "endpoint=%s error=\"%s\"", id, err);
    fh_http_error(resp, 503, "unavailable", NULL, "%s", err);
    return -1;
}

/* A create's or patch's body, when the API is on: the parsed object (the caller frees it and
 * in->filter), or NULL with the error answered. */
static json_t *read_input(fh_webhooks *w, fh_http_request *req, ep_input *in, int create,
                          fh_http_response *resp)
{
    if (api_off(w, resp))
        return NULL;
    json_t *j = wh_api_body_object(req, resp);
    if (!j)
        return NULL;
    if (parse_input(w, j, in, create, resp)) {
        free(in->filter);
        json_decref(j);
        return NULL;
    }
    return j;
}
static void create(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    /* resp->location is read by the HTTP layer after this returns, and handlers run on several
     * threads at once: the module's one piece of static state is this buffer per thread. */
    static _Thread_local char location[96];
    ep_input in;
    char id[WHS_ID_SIZE], uuid[37];
    fh_webhooks *w = ctx;
    json_t *o = NULL;
    json_t *j = read_input(w, req, &in, 1, resp);
    if (!j)
        return;
    fh_uuid4(uuid);
    snprintf(id, sizeof(id), "ep_");
    for (size_t i = 0, o_ = 3; uuid[i] && o_ < 27; i++)
        if (uuid[i] != '-')
            id[o_++] = uuid[i], id[o_] = '\0';
    if (wh_api_enter(w, resp)) {
        free(in.filter);
        json_decref(j);
        return;
    }
    sqlite3_stmt *st = wh_api_prep(w, "SELECT count(*) FROM endpoints", resp);
    if (!st)
        goto out;
    long long count = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    /* finalized now: an open statement would hold this connection's snapshot from before the
     * reader applies the new endpoint */
    sqlite3_finalize(st);
    st = NULL;
    if (count >= w->cfg.max_endpoints) {
        fh_http_error(resp, 409, "too_many", NULL,
                      "already %lld endpoints (webhooks.max_endpoints)", w->cfg.max_endpoints);
        goto out;
    }
    int64_t now = fh_now_ms();
    o = json_pack("{ss ss ss ss ss sb sn sn sb sI sI}", "id", id, "url", in.url, "filter",
                  in.filter, "format", in.format, "description", in.description, "enabled",
                  in.enabled != 0, "old_secret", "disabled_reason", "ordered", in.ordered == 1,
                  "created_ms", (json_int_t)now, "updated_ms", (json_int_t)now);
    if (!o) {
        fh_http_error(resp, 500, "internal", NULL, "out of memory");
        goto out;
    }
    if (seal_into(w, o, "secret", id, in.secret, resp) || publish(w, id, o, resp))
        goto out;
    resp->status = 201;
    snprintf(location, sizeof(location), "/api/v1/webhooks/%s", id);
    resp->location = location;
    render_endpoint(w, id, 0, in.secret, resp);
    resp->status = 201;
    fh_log(FH_LOG_INFO, "webhook.created", "endpoint=%s format=%s", id, in.format);
out:
    sqlite3_finalize(st);
    json_decref(o);
    write_end(w, &in, j);
}

static void list(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    char sql[256];
    fh_webhooks *w = ctx;
    (void)req;
    if (wh_api_enter(w, resp))
        return;
    snprintf(sql, sizeof(sql), "SELECT %s FROM endpoints ORDER BY created_ms, id", ep_cols);
    sqlite3_stmt *st = wh_api_prep(w, sql, resp);
    if (st) {
        fh_buf_printf(&resp->body, "{\"webhooks\":[");
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (n++)
                fh_buf_printf(&resp->body, ",");
            put_endpoint(&resp->body, st);
            fh_buf_printf(&resp->body, "}");
        }
        fh_buf_printf(&resp->body, "]}\n");
        sqlite3_finalize(st);
    }
    wh_api_leave(w);
}

static void get_one(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_webhooks *w = ctx;
    if (wh_api_enter(w, resp))
        return;
    render_endpoint(w, req->path_params[0], 1, NULL, resp);
    wh_api_leave(w);
}

static void patch(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    ep_input in;
    const char *id = req->path_params[0];
    fh_webhooks *w = ctx;
    json_t *o = NULL;
    json_t *j = read_input(w, req, &in, 0, resp);
    if (!j)
        return;
    if (wh_api_enter(w, resp)) {
        free(in.filter);
        json_decref(j);
        return;
    }
    /* the endpoint as this instance holds it, changed by the patch, published whole */
    if (!(o = wh_ep_row(w->api_db, id))) {
        fh_http_error(resp, 404, "not_found", "id", "no webhook endpoint %.64s", id);
        goto out;
    }
    int64_t now = fh_now_ms();
    const char *const fields[][2] = {{"url", in.url},
                                     {"filter", in.filter},
                                     {"format", in.format},
                                     {"description", in.description}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (fields[i][1])
            json_object_set_new(o, fields[i][0], json_string(fields[i][1]));
    if (in.ordered >= 0)
        json_object_set_new(o, "ordered", json_integer(in.ordered));
    if (in.enabled >= 0) {
        json_object_set_new(o, "enabled", json_integer(in.enabled));
        if (in.enabled)
            json_object_set_new(o, "disabled_reason", json_null());
        else if (!json_is_string(json_object_get(o, "disabled_reason")))
            json_object_set_new(o, "disabled_reason", json_string("disabled through the API"));
    }
    json_object_set_new(o, "updated_ms", json_integer(now));
    if (in.rotate) {
        /* the previous secret (sealed for this same id) keeps signing for the overlap */
        json_object_set(o, "old_secret", json_object_get(o, "secret"));
        json_object_set_new(o, "old_secret_until_ms", json_integer(now + in.overlap_s * 1000));
        if (seal_into(w, o, "secret", id, in.secret, resp))
            goto out;
    }
    if (publish(w, id, o, resp))
        goto out;
    render_endpoint(w, id, 1, in.rotate ? in.secret : NULL, resp);
    fh_log(FH_LOG_INFO, "webhook.updated", "endpoint=%.64s secret_rotated=%s", id,
           in.rotate ? "true" : "false");
out:
    json_decref(o);
    write_end(w, &in, j);
}

static void delete_one(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    const char *id = req->path_params[0];
    fh_webhooks *w = ctx;
    if (wh_api_enter(w, resp))
        return;
    /* a tombstone: every instance drops the endpoint, its pending deliveries and their log */
    if (wh_api_endpoint_exists(w, id, resp) && publish(w, id, NULL, resp) == 0) {
        resp->status = 204;
        fh_log(FH_LOG_INFO, "webhook.deleted", "endpoint=%.64s", id);
    }
    wh_api_leave(w);
    wh_poke(w);
}

size_t fh_webhooks_routes(fh_webhooks *w, fh_http_route *routes)
{
    char err[512];
    if (w->cfg.enabled && !w->api_db &&
        whs_open(w->cfg.path, w->b->cluster_id, &w->api_db, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "webhook.api", "error=\"%s\"", err);
        w->api_db = NULL;
    }
    const fh_http_route r[FH_WEBHOOK_ROUTES] = {
        {"POST", "/api/v1/webhooks", FH_SCOPE_ADMIN, "access_token", create, w},
        {"GET", "/api/v1/webhooks", FH_SCOPE_ADMIN, "access_token", list, w},
        {"GET", "/api/v1/webhooks/{}", FH_SCOPE_ADMIN, "access_token", get_one, w},
        {"PATCH", "/api/v1/webhooks/{}", FH_SCOPE_ADMIN, "access_token", patch, w},
        {"DELETE", "/api/v1/webhooks/{}", FH_SCOPE_ADMIN, "access_token", delete_one, w},
        {"GET", "/api/v1/webhooks/{}/deliveries", FH_SCOPE_ADMIN,
         "state,since,limit,before,access_token", wh_api_deliveries, w},
        {"GET", "/api/v1/webhooks/{}/deliveries/{}", FH_SCOPE_ADMIN, "access_token",
         wh_api_delivery, w},
        {"POST", "/api/v1/webhooks/{}/deliveries/{}/redeliver", FH_SCOPE_ADMIN, "access_token",
         wh_api_redeliver, w},
        {"POST", "/api/v1/webhooks/{}/recover", FH_SCOPE_ADMIN, "access_token", wh_api_recover, w},
    };
    for (size_t i = 0; i < FH_WEBHOOK_ROUTES; i++)
        routes[i] = r[i];
    return FH_WEBHOOK_ROUTES;
}
