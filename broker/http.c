#include "http.h"
#include "fh_log.h"
#include "fh_loop.h"
#include "fh_route.h"
#include "fh_utf8.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fh_metrics.h"

/* The acceptor thread owns the listening socket and hands each connection to libmicrohttpd
 * (MHD_add_connection). libmicrohttpd accepting by itself stops accepting when accept() fails
 * with EMFILE, until one of its connections closes: with long-lived WebSockets that is never, and
 * clients wait unanswered. The acceptor instead gives back a descriptor it holds in reserve,
 * takes the client with it, answers it (503; /healthz its 200) and closes it. At
 * http.max_connections it stops accepting until a connection closes, as libmicrohttpd did. */
struct fh_http {
    struct MHD_Daemon *daemon;
    const fh_http_route *routes;
    size_t nroutes;
    const fh_auth *auth;
    fh_http_config cfg;
    unsigned short port;
    char *tls_cert, *tls_key; /* owned PEM texts; libmicrohttpd reads them while it runs */
    int lfd;                  /* listening socket (the acceptor's) */
    int spare;                /* held back for refusing a client when accept() hits EMFILE */
    fh_loop *loop;            /* the acceptor's: stop, or a connection closed (room again) */
    fh_loop_io lio;           /* lfd, watched while there is room and no back-off */
    int backoff;              /* acceptor only: out of descriptors, trying again on a timer */
    pthread_t acceptor;
    int acceptor_running;
    _Atomic int waiting;     /* the acceptor waits for room under http.max_connections */
    _Atomic long conns;      /* handed to libmicrohttpd and not closed yet */
    _Atomic long conns_peak; /* the most conns since fh_http_connections last read it */
    int64_t refused_log_ms;  /* acceptor only: when descriptors_exhausted was last logged */
    fh_metric *m_refused;
    /* the answer threads (deferred answers, below): a queue of suspended requests */
    pthread_mutex_t dmu;
    pthread_cond_t dcv;
    struct req_state *dhead, *dtail; /* under dmu */
    int dstopping;                   /* under dmu: no more jobs; the threads drain and end */
    pthread_t *answerers;
    int nanswerers; /* started (set before the acceptor starts; read by handlers) */
};

/* Per-request state kept between libmicrohttpd's calls of the access handler. Made by on_uri
 * (or the handler's first call), freed by on_completed. */
typedef struct req_state {
    fh_buf body;
    int too_big;
    int args_oom; /* the query did not fit in memory */
    int seen;     /* the handler's first call (headers only) is over */
    char *path;   /* the path as on_uri decoded it: "%00" stays a NUL byte here */
    size_t path_len;
    fh_http_arg *args; /* the query, collected with its lengths before dispatch */
    size_t nargs, args_cap;
    /* a deferred answer: the response its job fills, the suspended connection, the queue link;
     * deferred is 1 while the job is queued or running, 2 once resp is ready to send */
    _Atomic int deferred;
    fh_http_response resp;
    struct MHD_Connection *conn;
    struct req_state *next;
} req_state;

/* param (param_len bytes, which may hold NUL) is NULL when the error names none. */
static void put_error_json(fh_buf *b, const char *code, const char *param, size_t param_len,
                           const char *msg)
{
    fh_buf_reset(b);
    fh_buf_printf(b, "{\"error\":");
    fh_buf_json_str(b, code);
    fh_buf_printf(b, ",\"message\":");
    fh_buf_json_str(b, msg);
    if (param) {
        fh_buf_printf(b, ",\"parameter\":");
        fh_buf_json_strn(b, param, param_len);
    }
    fh_buf_printf(b, "}\n");
}

static void __attribute__((format(printf, 6, 0)))
http_error_va(fh_http_response *resp, int status, const char *code, const char *param,
              size_t param_len, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    resp->status = status;
    resp->max_age = -1;
    resp->no_etag = 1;
    put_error_json(&resp->body, code, param, param_len, msg);
}

void fh_http_error(fh_http_response *resp, int status, const char *code, const char *param,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    http_error_va(resp, status, code, param, param ? strlen(param) : 0, fmt, ap);
    va_end(ap);
}

/* fh_http_error for a parameter name that may hold NUL bytes. */
static void __attribute__((format(printf, 6, 7)))
http_error_n(fh_http_response *resp, int status, const char *code, const char *param,
             size_t param_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    http_error_va(resp, status, code, param, param_len, fmt, ap);
    va_end(ap);
}

const char *fh_http_query(const fh_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nargs; i++)
        if (req->args[i].key_len == n && memcmp(req->args[i].key, name, n) == 0)
            return req->args[i].value;
    return NULL;
}

const char *fh_http_header(const fh_http_request *req, const char *name)
{
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name) : NULL;
}

/* 1 when key (n bytes) is one of the comma-separated names in allowed. */
static int param_allowed(const char *allowed, const char *key, size_t n)
{
    for (const char *p = allowed; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && memcmp(p, key, n) == 0)
            return 1;
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

/* 1 when the n bytes at s are fit to reach a handler: no NUL (a C string would end there, so
 * "limit=1%00" would read as 1) and valid UTF-8 (answers echo them into JSON). */
static int text_ok(const char *s, size_t n)
{
    return !memchr(s, '\0', n) && fh_utf8_valid(s, n);
}

/* Sets a 400 for a parameter whose key or value is not text_ok. The name is rendered by the JSON
 * escaper, so even a name holding NUL or stray bytes comes out as valid JSON. */
static void bad_text_param(fh_http_response *resp, const fh_http_arg *a)
{
    const char *why = "is not valid UTF-8";
    if (!text_ok(a->key, a->key_len)) {
        if (memchr(a->key, '\0', a->key_len))
            why = "contains a NUL byte (%00)";
        http_error_n(resp, 400, "bad_parameter", a->key, a->key_len, "a query parameter's name %s",
                     why);
        return;
    }
    if (memchr(a->value, '\0', a->value_len))
        why = "contains a NUL byte (%00)";
    http_error_n(resp, 400, "bad_parameter", a->key, a->key_len, "%.*s: the value %s",
                 (int)fh_utf8_cut(a->key, a->key_len, 64), a->key, why);
}

/* 64-bit FNV-1a over the body: a strong enough validator for If-None-Match. */
static unsigned long long body_hash(const char *p, size_t n)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void add_common_headers(fh_http *h, struct MHD_Response *r)
{
    if (h->cfg.cors_origin && *h->cfg.cors_origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", h->cfg.cors_origin);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", "ETag, Location");
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result send_response(fh_http *h, struct MHD_Connection *conn,
                                     fh_http_response *resp)
{
    char etag[40], cache[48];
    struct MHD_Response *r;
    enum MHD_Result ret;
    int status = resp->status ? resp->status : 200;

    if (resp->raw) {
        add_common_headers(h, resp->raw);
        ret = MHD_queue_response(conn, (unsigned)status, resp->raw);
        MHD_destroy_response(resp->raw);
        return ret;
    }
    if (status == 200 && !resp->no_etag) {
        /* Hashing a large body byte by byte costs more than building it from a cache, so a
         * handler that knows its body's hash passes it. */
        snprintf(etag, sizeof(etag), "\"%016llx\"",
                 resp->etag_given
                     ? resp->etag
                     : body_hash(resp->body.data ? resp->body.data : "", resp->body.len));
        const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
        if (inm && (strstr(inm, etag) || strcmp(inm, "*") == 0)) {
            r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(r, "ETag", etag);
            add_common_headers(h, r);
            ret = MHD_queue_response(conn, MHD_HTTP_NOT_MODIFIED, r);
            MHD_destroy_response(r);
            return ret;
        }
    }
    /* The body's buffer goes to libmicrohttpd (it frees it): a large answer is not copied
     * once more per request. */
    if (resp->body.data) {
        r = MHD_create_response_from_buffer(resp->body.len, resp->body.data, MHD_RESPMEM_MUST_FREE);
        if (r)
            fh_buf_init(&resp->body, resp->body.max); /* handed over */
    } else {
        r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type",
                            resp->content_type ? resp->content_type : "application/json");
    if (resp->max_age < 0)
        snprintf(cache, sizeof(cache), "no-store");
    else
        snprintf(cache, sizeof(cache), "max-age=%d", resp->max_age);
    MHD_add_response_header(r, "Cache-Control", cache);
    if (status == 200 && !resp->no_etag)
        MHD_add_response_header(r, "ETag", etag);
    if (resp->location)
        MHD_add_response_header(r, "Location", resp->location);
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    for (size_t i = 0; i < FH_HTTP_MAX_HEADERS && resp->headers[i].name; i++)
        MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    add_common_headers(h, r);
    ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_preflight(fh_http *h, struct MHD_Connection *conn)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    add_common_headers(h, r);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, If-None-Match, Last-Event-ID");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    return ret;
}

void fh_http_route_request(const fh_http_route *routes, size_t nroutes, const fh_auth *auth,
                           fh_http_request *req, fh_http_response *resp)
{
    char scratch[512], allow[128] = "";
    const fh_http_route *route = NULL;
    const char *method = req->method, *url = req->path;

    if (!text_ok(url, req->path_len)) {
        fh_http_error(resp, 400, "bad_path", NULL, "the path %s",
                      memchr(url, '\0', req->path_len) ? "contains a NUL byte (%00)"
                                                       : "is not valid UTF-8");
        return;
    }
    for (size_t i = 0; i < nroutes; i++) {
        const char *params[FH_HTTP_MAX_PATH_PARAMS] = {0};
        if (!fh_route_match(routes[i].pattern, url, params, FH_HTTP_MAX_PATH_PARAMS, scratch,
                            sizeof(scratch)))
            continue;
        if (strlen(allow) + strlen(routes[i].method) + 3 < sizeof(allow))
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                     *allow ? ", " : "", routes[i].method);
        if (strcmp(routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
            route = &routes[i];
            memcpy(req->path_params, params, sizeof(params));
            break;
        }
    }
    if (!route) {
        if (*allow)
            fh_http_error(resp, 405, "method_not_allowed", NULL,
                          "%s is not allowed here (allowed: %s)", method, allow);
        else
            fh_http_error(resp, 404, "not_found", NULL, "no such resource: %.*s",
                          (int)fh_utf8_cut(url, req->path_len, 200), url);
        return;
    }
    for (size_t i = 0; i < req->nargs; i++) {
        const fh_http_arg *a = &req->args[i];
        if (!text_ok(a->key, a->key_len) || (a->value && !text_ok(a->value, a->value_len))) {
            bad_text_param(resp, a);
            return;
        }
        if (route->params && !param_allowed(route->params, a->key, a->key_len)) {
            http_error_n(resp, 400, "unknown_parameter", a->key, a->key_len,
                         "unknown query parameter '%.*s' (allowed: %s)",
                         (int)fh_utf8_cut(a->key, a->key_len, 64), a->key,
                         *route->params ? route->params : "none");
            return;
        }
    }
    if (route->scope) {
        const char *hdr = fh_http_header(req, "Authorization");
        const char *token = hdr ? fh_auth_bearer(hdr) : fh_http_query(req, "access_token");
        if (hdr && !token) {
            fh_http_error(resp, 401, "unauthorized", NULL, "Authorization must be 'Bearer TOKEN'");
            return;
        }
        req->who = fh_auth_check(auth, token);
        unsigned missing = req->who ? route->scope & ~req->who->scopes : route->scope;
        if (!req->who) {
            fh_http_error(resp, 401, "unauthorized", NULL,
                          token ? "unknown token" : "a bearer token is required");
            return;
        }
        if (missing) {
            fh_http_error(resp, 403, "forbidden", NULL, "this needs the %s scope",
                          missing & FH_SCOPE_ADMIN    ? "admin"
                          : missing & FH_SCOPE_INGEST ? "ingest"
                                                      : "read");
            return;
        }
    }
    route->handler(route->ctx, req, resp);
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    req_state *st = cls;
    (void)kind;
    if (st->nargs == st->args_cap) {
        fh_http_arg *n = fh_grow(st->args, &st->args_cap, sizeof(*n), 8);
        if (!n) {
            st->args_oom = 1;
            return MHD_NO;
        }
        st->args = n;
    }
    st->args[st->nargs++] = (fh_http_arg){key, value, key_size, value ? value_size : 0};
    return MHD_YES;
}

static void dispatch(fh_http *h, struct MHD_Connection *conn, const char *url, const char *method,
                     const char *version, req_state *st, fh_http_response *resp)
{
    fh_http_request req;
    memset(&req, 0, sizeof(req));
    req.conn = conn;
    req.method = method;
    req.version = version;
    req.path = st->path ? st->path : url;
    req.path_len = st->path ? st->path_len : strlen(url);
    st->nargs = 0;
    st->args_oom = 0;
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_arg, st);
    if (st->args_oom) {
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    req.args = st->args;
    req.nargs = st->nargs;
    if (st->too_big) {
        fh_http_error(resp, 413, "body_too_large", NULL, "request body is over %zu bytes",
                      st->body.max);
        return;
    }
    req.body = st->body.data ? st->body.data : "";
    req.body_len = st->body.len;
    req.can_defer = h->nanswerers > 0;
    fh_http_route_request(h->routes, h->nroutes, h->auth, &req, resp);
}

/* ---- deferred answers ------------------------------------------------------------------------
 *
 * A handler that sets resp->defer would otherwise block its libmicrohttpd thread, and with it
 * every connection that thread serves, while it renders. Instead the connection is suspended and
 * queued for the answer threads (as many as http.threads); one runs the job and resumes the
 * connection, and libmicrohttpd calls on_request again, which sends the response. Suspending
 * happens before queueing, so a resume never precedes its suspend. The threads drain the queue
 * before fh_http_stop stops libmicrohttpd, so no connection stays suspended; after they are told
 * to stop, a handler's job runs on its own thread (defer_push returns 0). */

/* Suspends conn and queues st's job. Returns 1, or 0 when the answer threads are stopping. */
static int defer_push(fh_http *h, struct MHD_Connection *conn, req_state *st)
{
    pthread_mutex_lock(&h->dmu);
    if (h->dstopping) {
        pthread_mutex_unlock(&h->dmu);
        return 0;
    }
    atomic_store(&st->deferred, 1);
    st->conn = conn;
    st->next = NULL;
    MHD_suspend_connection(conn);
    if (h->dtail)
        h->dtail->next = st;
    else
        h->dhead = st;
    h->dtail = st;
    pthread_cond_signal(&h->dcv);
    pthread_mutex_unlock(&h->dmu);
    return 1;
}

static void *answerer_main(void *arg)
{
    fh_http *h = arg;
    pthread_mutex_lock(&h->dmu);
    for (;;) {
        while (!h->dhead && !h->dstopping)
            pthread_cond_wait(&h->dcv, &h->dmu);
        req_state *st = h->dhead;
        if (!st)
            break; /* stopping, and nothing is left */
        if (!(h->dhead = st->next))
            h->dtail = NULL;
        pthread_mutex_unlock(&h->dmu);
        st->resp.defer(st->resp.defer_arg, &st->resp);
        st->resp.defer = NULL;
        struct MHD_Connection *conn = st->conn;
        atomic_store(&st->deferred, 2);
        MHD_resume_connection(conn);
        pthread_mutex_lock(&h->dmu);
    }
    pthread_mutex_unlock(&h->dmu);
    return NULL;
}

/* Tells the answer threads to stop once the queue is empty and waits for them. */
static void answerers_stop(fh_http *h)
{
    pthread_mutex_lock(&h->dmu);
    h->dstopping = 1;
    pthread_cond_broadcast(&h->dcv);
    pthread_mutex_unlock(&h->dmu);
    for (int i = 0; i < h->nanswerers; i++)
        pthread_join(h->answerers[i], NULL);
}

/* The body cap of a request's path: its own (cfg.body_caps), else http.max_body_bytes. */
static size_t body_cap(const fh_http *h, const char *path)
{
    char scratch[512];
    const char *params[FH_HTTP_MAX_PATH_PARAMS];
    for (size_t i = 0; path && i < h->cfg.nbody_caps; i++)
        if (fh_route_match(h->cfg.body_caps[i].pattern, path, params, FH_HTTP_MAX_PATH_PARAMS,
                           scratch, sizeof(scratch)))
            return h->cfg.body_caps[i].max_body;
    return h->cfg.max_body_bytes;
}

/* Called by libmicrohttpd with the raw request target before it decodes it. It decodes the path
 * (up to '?') as libmicrohttpd does (%HH; anything else literally) but keeps its length: the URL
 * libmicrohttpd hands the handler is a C string that a "%00" cuts short, so "/index.html%00.js"
 * would otherwise serve /index.html. Returns the request's state (libmicrohttpd passes it back
 * as *req_cls); NULL when out of memory (the handler then falls back to its URL). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)conn;
    fh_http *h = cls;
    req_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    size_t n = strcspn(uri, "?");
    if (!(st->path = malloc(n + 1))) {
        fh_buf_init(&st->body, h->cfg.max_body_bytes);
        return st;
    }
    st->path_len = fh_pct_decode(uri, n, st->path, 0);
    fh_buf_init(&st->body, body_cap(h, st->path));
    return st;
}

/* Collects a request's Content-Length headers: a second one with another value is a conflict. */
typedef struct length_scan {
    const char *first;
    int conflict;
} length_scan;

static enum MHD_Result scan_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    length_scan *ls = cls;
    (void)kind;
    if (strcasecmp(key, "Content-Length") != 0)
        return MHD_YES;
    if (!ls->first) {
        ls->first = value ? value : "";
        return MHD_YES;
    }
    ls->conflict = strcmp(ls->first, value ? value : "") != 0;
    return ls->conflict ? MHD_NO : MHD_YES;
}

/* Answers a request before its body is read (libmicrohttpd then closes the connection). */
static enum MHD_Result respond_early(fh_http *h, struct MHD_Connection *conn, int status,
                                     const char *code, const char *param, const char *msg)
{
    fh_http_response resp;
    memset(&resp, 0, sizeof(resp));
    fh_buf_init(&resp.body, h->cfg.max_response_bytes);
    fh_http_error(&resp, status, code, param, "%s", msg);
    enum MHD_Result ret = send_response(h, conn, &resp);
    fh_buf_free(&resp.body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    fh_http *h = cls;
    req_state *st = *req_cls;

    if (!st) {
        /* on_uri made it, unless it ran out of memory */
        if (!(st = calloc(1, sizeof(*st))))
            return MHD_NO;
        fh_buf_init(&st->body, body_cap(h, url));
        *req_cls = st;
    }
    if (!st->seen) {
        /* the headers are in: libmicrohttpd reads the body by the first Content-Length and
         * ignores the others; a proxy in front may have used another one, so two lengths are two
         * readings of where this request ends (request smuggling): refuse it. */
        length_scan ls = {NULL, 0};
        MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_length, &ls);
        if (ls.conflict)
            return respond_early(h, conn, 400, "bad_request", "Content-Length",
                                 "conflicting Content-Length headers");
        st->seen = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_big && fh_buf_append(&st->body, upload, *upload_size))
            st->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (atomic_load(&st->deferred)) {
        /* resumed: the job is done (libmicrohttpd calls only a resumed connection again) */
        if (atomic_load(&st->deferred) != 2)
            return MHD_YES;
        enum MHD_Result ret = send_response(h, conn, &st->resp);
        fh_buf_free(&st->resp.body);
        atomic_store(&st->deferred, 0);
        return ret;
    }
    if (strcmp(method, "OPTIONS") == 0)
        return respond_preflight(h, conn);

    fh_http_response resp;
    memset(&resp, 0, sizeof(resp));
    fh_buf_init(&resp.body, h->cfg.max_response_bytes);
    dispatch(h, conn, url, method, version, st, &resp);
    if (resp.defer) {
        st->resp = resp; /* the body moves with it */
        if (defer_push(h, conn, st))
            return MHD_YES;
        /* the answer threads are stopping: this thread runs the job itself */
        st->resp.defer(st->resp.defer_arg, &st->resp);
        resp = st->resp;
        memset(&st->resp, 0, sizeof(st->resp));
    }
    enum MHD_Result ret = send_response(h, conn, &resp);
    fh_buf_free(&resp.body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_state *st = *req_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (st) {
        fh_buf_free(&st->body);
        fh_buf_free(&st->resp.body); /* a deferred answer the client did not wait for */
        free(st->path);
        free(st->args);
        free(st);
        *req_cls = NULL;
    }
}

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT" into a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    memset(ss, 0, sizeof(*ss));
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || colon[1] == '\0')
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (host[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']')
            return -1;
        host[n - 1] = '\0';
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return -1;
        *len = sizeof(*a6);
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((unsigned short)port);
    if (host[0] == '\0')
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host,
                       &a4->sin_addr) != 1)
        return -1;
    *len = sizeof(*a4);
    return 0;
}

/* Reads a PEM file (at most 1 MiB) into a NUL-terminated heap string; NULL with errno set. */
static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len;
    if (!f)
        return NULL;
    buf = malloc(1024 * 1024 + 1);
    len = buf ? fread(buf, 1, 1024 * 1024 + 1, f) : 0;
    fclose(f);
    if (!buf || len == 0 || len > 1024 * 1024) {
        free(buf);
        errno = !buf ? ENOMEM : len == 0 ? ENODATA : EFBIG;
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* MHD_OPTION_NOTIFY_CONNECTION (libmicrohttpd's threads): a closed connection makes room. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    fh_http *h = cls;
    (void)conn;
    (void)socket_ctx;
    if (code != MHD_CONNECTION_NOTIFY_CLOSED)
        return;
    atomic_fetch_sub(&h->conns, 1);
    if (atomic_load(&h->waiting))
        fh_loop_wake(h->loop);
}

/* Answers a connection libmicrohttpd never sees, at most 20 ms after its request arrives:
 * GET /healthz gets its usual 200 (the process is alive and will serve again once descriptors
 * are free), anything else 503. Then reads what the client sent: closing a socket with unread
 * input resets the connection, and the reset may destroy the answer before it is read. Returns 1
 * when the client was refused. */
static int answer_unaccepted(int fd)
{
    static const char health[] = "{\"status\":\"ok\"}\n",
                      busy[] = "{\"error\":\"unavailable\",\"message\":\"the broker is out of "
                               "file descriptors; retry later\"}\n";
    char req[4096], msg[512];
    ssize_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 20) > 0)
        got = recv(fd, req, sizeof(req), MSG_DONTWAIT);
    int alive = got >= 13 && memcmp(req, "GET /healthz ", 13) == 0;
    int n =
        snprintf(msg, sizeof(msg),
                 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nCache-Control: "
                 "no-store\r\n%sConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                 alive ? "200 OK" : "503 Service Unavailable", alive ? "" : "Retry-After: 1\r\n",
                 alive ? sizeof(health) - 1 : sizeof(busy) - 1, alive ? health : busy);
    if (n > 0 && send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
        shutdown(fd, SHUT_WR);
        if (poll(&p, 1, 20) > 0)
            for (int i = 0; i < 16 && recv(fd, req, sizeof(req), MSG_DONTWAIT) > 0; i++)
                ;
    }
    return !alive;
}

/* accept() failed for want of descriptors: gives back the spare one, takes the waiting client
 * with it, answers it (answer_unaccepted; under TLS it is only closed: there is no session to
 * answer in), and takes the spare again. Returns 1 when a client was taken, 0 when none could. */
static int refuse_one(fh_http *h)
{
    if (h->spare >= 0)
        close(h->spare);
    int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        if (h->tls_cert || answer_unaccepted(fd))
            fh_metric_add(h->m_refused, 1);
        close(fd);
        if (fh_now_ms() - h->refused_log_ms >= 10000) {
            h->refused_log_ms = fh_now_ms();
            fh_log(FH_LOG_WARN, "http.descriptors_exhausted",
                   "connections=%ld refused_total=%lld note=\"accept() hit the file descriptor "
                   "limit: new clients get 503 until descriptors are free\"",
                   atomic_load(&h->conns), fh_metric_get(h->m_refused));
        }
    }
    h->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

/* Accepts what is waiting, up to http.max_connections. Returns how long to wait before trying
 * again: 0, or 100 ms when descriptors ran out and no client could be refused either. */
static int accept_some(fh_http *h)
{
    for (int i = 0; i < 64 && atomic_load(&h->conns) < h->cfg.max_connections; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(h->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                return refuse_one(h) ? 0 : 100;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            return 0; /* EAGAIN: nothing more waits */
        }
        /* Counted until libmicrohttpd reports it closed (on_connection). On failure
         * libmicrohttpd has closed the socket; the one failure it cannot report, no memory for
         * the connection's pool in its own thread, leaves a slot counted. */
        long now = atomic_fetch_add(&h->conns, 1) + 1;
        if (now > atomic_load(&h->conns_peak))
            atomic_store(&h->conns_peak, now); /* only the acceptor raises it */
        if (MHD_add_connection(h->daemon, fd, (struct sockaddr *)&ss, len) != MHD_YES)
            atomic_fetch_sub(&h->conns, 1);
    }
    return 0;
}

/* ---- the acceptor thread, on lib/fh_loop --------------------------------------------------------
 *
 * The listening socket is watched while there is room under http.max_connections and accept()
 * is not backing off. At the limit new clients wait in the listen queue: the acceptor sets
 * waiting and a closed connection (on_connection) wakes its loop. Out of descriptors with no
 * client refused either, it tries again on a timer (ACCEPT_BACKOFF_MS, from accept_some). */

/* Watches the listening socket when there is room and no back-off, else stops watching it. */
static void acceptor_arm(fh_http *h)
{
    int full = 0;
    if (atomic_load(&h->conns) >= h->cfg.max_connections) {
        atomic_store(&h->waiting, 1);
        /* again after saying so: a connection that closed in between did not see waiting */
        full = atomic_load(&h->conns) >= h->cfg.max_connections;
    }
    if (!full)
        atomic_store(&h->waiting, 0);
    if (full || h->backoff)
        fh_loop_unwatch(h->loop, &h->lio);
    else if (!h->lio.watched)
        fh_loop_watch(h->loop, &h->lio, FH_LOOP_READ);
}

static int64_t backoff_timer(fh_loop *l, void *arg)
{
    fh_http *h = arg;
    (void)l;
    int again = accept_some(h);
    h->backoff = again > 0;
    acceptor_arm(h);
    return again > 0 ? again : -1;
}

static void on_listen(fh_loop *l, fh_loop_io *io, unsigned what)
{
    fh_http *h = io->arg;
    (void)what;
    int again = accept_some(h);
    if (again > 0 && fh_loop_timer(l, again, backoff_timer, h))
        h->backoff = 1;
    acceptor_arm(h);
}

static void on_room(fh_loop *l, void *arg)
{
    (void)l;
    acceptor_arm(arg);
}

static void *acceptor_main(void *arg)
{
    fh_http *h = arg;
    acceptor_arm(h);
    fh_loop_run(h->loop, -1);
    fh_loop_unwatch(h->loop, &h->lio);
    return NULL;
}

/* Opens the listening socket as libmicrohttpd did: SO_REUSEADDR and SO_REUSEPORT, IPv6 only on
 * an IPv6 address. Returns it, or -1 with errno set. */
static int listen_on(const struct sockaddr_storage *ss, socklen_t len)
{
    int on = 1, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void http_free(fh_http *h)
{
    if (h->lfd >= 0)
        close(h->lfd);
    if (h->spare >= 0)
        close(h->spare);
    fh_loop_free(h->loop);
    free(h->tls_cert);
    free(h->tls_key);
    free(h->answerers);
    pthread_mutex_destroy(&h->dmu);
    pthread_cond_destroy(&h->dcv);
    free(h);
}

fh_err fh_http_start(const fh_http_config *cfg, const fh_http_route *routes, size_t nroutes,
                     const fh_auth *auth, fh_http **out, char *errbuf, size_t errsize)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    fh_http *h;
    if (parse_listen(cfg->listen, &ss, &sslen))
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                       "http.listen: expected HOST:PORT or [V6]:PORT, got \"%s\"", cfg->listen);
    if (!(h = calloc(1, sizeof(*h))))
        return FH_ERR_NOMEM;
    h->routes = routes;
    h->nroutes = nroutes;
    h->auth = auth;
    h->cfg = *cfg;
    h->spare = -1;
    pthread_mutex_init(&h->dmu, NULL);
    pthread_cond_init(&h->dcv, NULL);
    if ((h->lfd = listen_on(&ss, sslen)) < 0) {
        http_free(h);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "http.listen: cannot listen on %s (%s)",
                       cfg->listen, strerror(errno));
    }
    h->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (h->spare < 0 || fh_loop_new(&h->loop, 2, 2, errbuf, errsize) != FH_OK) {
        http_free(h);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "http: cannot open descriptors (%s)",
                       strerror(errno));
    }
    h->lio = (fh_loop_io){.fd = h->lfd, .fn = on_listen, .arg = h};
    fh_loop_on_wake(h->loop, on_room, h);
    h->m_refused = fh_metric_new("firehose_http_refused_total", "reason=\"descriptors\"",
                                 "Connections answered 503 (closed, under TLS) because the "
                                 "process was out of file descriptors.",
                                 0);
    int threads = cfg->threads > 0 ? cfg->threads : 1;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_NO_LISTEN_SOCKET |
                     MHD_USE_ITC;
    struct MHD_OptionItem ops[13];
    size_t n = 0;
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    /* The acceptor keeps http.max_connections; libmicrohttpd splits its own limit between its
     * threads and would close, unanswered, a connection handed to a thread holding its share. */
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                       (intptr_t)cfg->max_connections * threads, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, h};
    if (cfg->tls_cert && *cfg->tls_cert) {
        fh_err rc = FH_OK;
        if (!cfg->tls_key || !*cfg->tls_key)
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG, "http.tls_key: needed with http.tls_cert");
        else if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            rc = fh_errf(errbuf, errsize, FH_ERR_UNSUPPORTED,
                         "http.tls_cert: this libmicrohttpd was built without TLS");
        else if (!(h->tls_cert = read_pem(cfg->tls_cert)) || !(h->tls_key = read_pem(cfg->tls_key)))
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: cannot read a PEM file (%s)",
                         h->tls_cert ? "http.tls_key" : "http.tls_cert", strerror(errno));
        if (rc) {
            http_free(h);
            return rc;
        }
        flags |= MHD_USE_TLS;
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key};
    }
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, ops,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        http_free(h);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "%s",
                       flags & MHD_USE_TLS
                           ? "http.tls_cert: libmicrohttpd cannot start with this TLS certificate "
                             "and key"
                           : "http: libmicrohttpd cannot start");
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(h->lfd, (struct sockaddr *)&bound, &blen) == 0)
        h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    /* without answer threads (none could start) every handler answers on its own thread */
    if ((h->answerers = calloc((size_t)threads, sizeof(*h->answerers))))
        while (h->nanswerers < threads &&
               pthread_create(&h->answerers[h->nanswerers], NULL, answerer_main, h) == 0)
            pthread_setname_np(h->answerers[h->nanswerers++], "fh-http-answer");
    if (pthread_create(&h->acceptor, NULL, acceptor_main, h) != 0) {
        answerers_stop(h);
        MHD_stop_daemon(h->daemon);
        http_free(h);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "http: cannot start the acceptor thread");
    }
    h->acceptor_running = 1;
    *out = h;
    return FH_OK;
}

unsigned short fh_http_port(const fh_http *h)
{
    return h->port;
}

long fh_http_connections(fh_http *h, long *peak)
{
    long now = h ? atomic_load(&h->conns) : 0;
    if (peak) {
        *peak = h ? atomic_exchange(&h->conns_peak, now) : 0;
        if (*peak < now)
            *peak = now;
    }
    return now;
}

void fh_http_stop(fh_http *h)
{
    if (!h)
        return;
    if (h->acceptor_running) {
        fh_loop_stop(h->loop);
        pthread_join(h->acceptor, NULL);
    }
    answerers_stop(h);
    MHD_stop_daemon(h->daemon);
    http_free(h);
}
