#include "http.h"
#include "fh_log.h"
#include "fh_route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fh_http {
    struct MHD_Daemon *daemon;
    const fh_http_route *routes;
    size_t nroutes;
    const fh_auth *auth;
    fh_http_config cfg;
    unsigned short port;
    char *tls_cert, *tls_key; /* owned PEM texts; libmicrohttpd reads them while it runs */
};

/* Per-request state kept between libmicrohttpd's calls of the access handler. */
typedef struct req_state {
    fh_buf body;
    int too_big;
} req_state;

static void put_error_json(fh_buf *b, const char *code, const char *param, const char *msg)
{
    fh_buf_reset(b);
    fh_buf_printf(b, "{\"error\":");
    fh_buf_json_str(b, code);
    fh_buf_printf(b, ",\"message\":");
    fh_buf_json_str(b, msg);
    if (param) {
        fh_buf_printf(b, ",\"parameter\":");
        fh_buf_json_str(b, param);
    }
    fh_buf_printf(b, "}\n");
}

void fh_http_error(fh_http_response *resp, int status, const char *code, const char *param,
                   const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp->status = status;
    resp->max_age = -1;
    resp->no_etag = 1;
    put_error_json(&resp->body, code, param, msg);
}

const char *fh_http_query(const fh_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *fh_http_header(const fh_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

typedef struct param_check {
    const char *allowed;
    const char *bad;
} param_check;

static enum MHD_Result check_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    param_check *pc = cls;
    size_t n = strlen(key);
    (void)kind;
    (void)value;
    for (const char *p = pc->allowed; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, key, n) == 0)
            return MHD_YES;
        p = comma ? comma + 1 : p + len;
    }
    pc->bad = key;
    return MHD_NO;
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

static void dispatch(fh_http *h, struct MHD_Connection *conn, const char *url, const char *method,
                     req_state *st, fh_http_response *resp)
{
    char scratch[512], allow[128] = "";
    const fh_http_route *route = NULL;
    fh_http_request req;
    memset(&req, 0, sizeof(req));
    req.conn = conn;
    req.method = method;
    req.path = url;

    for (size_t i = 0; i < h->nroutes; i++) {
        const char *params[FH_HTTP_MAX_PATH_PARAMS] = {0};
        if (!fh_route_match(h->routes[i].pattern, url, params, FH_HTTP_MAX_PATH_PARAMS, scratch,
                            sizeof(scratch)))
            continue;
        if (strlen(allow) + strlen(h->routes[i].method) + 3 < sizeof(allow))
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                     *allow ? ", " : "", h->routes[i].method);
        if (strcmp(h->routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(h->routes[i].method, "GET") == 0)) {
            route = &h->routes[i];
            memcpy(req.path_params, params, sizeof(params));
            break;
        }
    }
    if (!route) {
        if (*allow)
            fh_http_error(resp, 405, "method_not_allowed", NULL,
                          "%s is not allowed here (allowed: %s)", method, allow);
        else
            fh_http_error(resp, 404, "not_found", NULL, "no such resource: %.200s", url);
        return;
    }
    if (st->too_big) {
        fh_http_error(resp, 413, "body_too_large", NULL, "request body is over %zu bytes",
                      st->body.max);
        return;
    }
    if (route->params) {
        param_check pc = {route->params, NULL};
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, check_param, &pc);
        if (pc.bad) {
            fh_http_error(resp, 400, "unknown_parameter", pc.bad,
                          "unknown query parameter '%.64s' (allowed: %s)", pc.bad,
                          *route->params ? route->params : "none");
            return;
        }
    }
    if (route->scope) {
        const char *hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        const char *token =
            hdr ? fh_auth_bearer(hdr)
                : MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "access_token");
        if (hdr && !token) {
            fh_http_error(resp, 401, "unauthorized", NULL, "Authorization must be 'Bearer TOKEN'");
            return;
        }
        req.who = fh_auth_check(h->auth, token);
        unsigned missing = req.who ? route->scope & ~req.who->scopes : route->scope;
        if (!req.who) {
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
    req.body = st->body.data ? st->body.data : "";
    req.body_len = st->body.len;
    route->handler(route->ctx, &req, resp);
}

/* The body cap of a request's path: its own (cfg.body_caps), else http.max_body_bytes. */
static size_t body_cap(const fh_http *h, const char *url)
{
    char scratch[512];
    const char *params[FH_HTTP_MAX_PATH_PARAMS];
    for (size_t i = 0; i < h->cfg.nbody_caps; i++)
        if (fh_route_match(h->cfg.body_caps[i].pattern, url, params, FH_HTTP_MAX_PATH_PARAMS,
                           scratch, sizeof(scratch)))
            return h->cfg.body_caps[i].max_body;
    return h->cfg.max_body_bytes;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    fh_http *h = cls;
    req_state *st = *req_cls;
    (void)version;

    if (!st) {
        if (!(st = calloc(1, sizeof(*st))))
            return MHD_NO;
        fh_buf_init(&st->body, body_cap(h, url));
        *req_cls = st;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_big && fh_buf_append(&st->body, upload, *upload_size))
            st->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "OPTIONS") == 0)
        return respond_preflight(h, conn);

    fh_http_response resp;
    memset(&resp, 0, sizeof(resp));
    fh_buf_init(&resp.body, h->cfg.max_response_bytes);
    dispatch(h, conn, url, method, st, &resp);
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

static void http_free(fh_http *h)
{
    free(h->tls_cert);
    free(h->tls_key);
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
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem ops[12];
    size_t n = 0;
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                       cfg->threads > 0 ? cfg->threads : 1, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
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
        return fh_errf(errbuf, errsize, FH_ERR_IO, "http.listen: cannot listen on %s%s",
                       cfg->listen,
                       flags & MHD_USE_TLS ? " (or the TLS certificate/key is unusable)" : "");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : 0;
    *out = h;
    return FH_OK;
}

unsigned short fh_http_port(const fh_http *h)
{
    return h->port;
}

void fh_http_stop(fh_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    http_free(h);
}
