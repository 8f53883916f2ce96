/* http: the broker's one port (http.listen). libmicrohttpd serves REST, health, metrics and the
 * dashboard from a route table; every request passes the same checks (method, auth scope, body
 * size, known query parameters) before its handler runs. Handlers run on libmicrohttpd's worker
 * threads and must be thread-safe. */
#ifndef FH_BROKER_HTTP_H
#define FH_BROKER_HTTP_H

#include <microhttpd.h>

#include "fh_auth.h"
#include "fh_error.h"
#include "fh_util.h"

#define FH_HTTP_MAX_PATH_PARAMS 4
#define FH_HTTP_MAX_HEADERS 4

/* One query argument as the client sent it, URL-decoded: key and value with their lengths, since
 * "%00" decodes to a NUL byte that C strings would hide. value is NULL for "?key" without '='. */
typedef struct fh_http_arg {
    const char *key, *value;
    size_t key_len, value_len;
} fh_http_arg;

typedef struct fh_http_request {
    struct MHD_Connection *conn; /* NULL when the request does not come from a socket */
    const char *method;
    const char *version;     /* "HTTP/1.1", "HTTP/1.0", ... as the request line says */
    const char *path;        /* URL-decoded; by the time a handler runs, valid UTF-8 without NUL */
    size_t path_len;         /* bytes of path (a decoded "%00" would end the C string early) */
    const fh_http_arg *args; /* the query, in order; by the time a handler runs every key and
                                value is valid UTF-8 without NUL */
    size_t nargs;
    const char *path_params[FH_HTTP_MAX_PATH_PARAMS]; /* segments matched by "{}" */
    const fh_principal *who;                          /* never NULL when the route needs a scope */
    const char *body;                                 /* NUL-terminated; "" when none */
    size_t body_len;
    int can_defer; /* 1: the handler may answer later through fh_http_response.defer */
} fh_http_request;

typedef struct fh_http_response {
    int status;  /* 200 unless set */
    fh_buf body; /* the handler appends JSON here (capped by http.max_response_bytes) */
    const char *content_type; /* "application/json" unless set */
    int max_age;              /* Cache-Control max-age seconds; -1 for no-store */
    int no_etag;              /* 1: do not add an ETag */
    int etag_given;           /* 1: etag below is the body's hash, so it is not hashed again */
    unsigned long long etag;  /* with etag_given: a 64-bit hash identifying the body's bytes */
    const char *location;     /* Location header for 201 (static or owned by the handler ctx) */
    /* Further headers, name and value (static strings); the first with a NULL name ends them. */
    struct {
        const char *name, *value;
    } headers[FH_HTTP_MAX_HEADERS];
    struct MHD_Response *raw; /* handler-made response (upgrade, streams); overrides the rest */
    /* Set only when the request's can_defer is 1, by a handler whose answer would block its
     * libmicrohttpd thread (a REST render: SQLite, milliseconds) and so every other connection
     * of that thread: the connection is suspended, defer(defer_arg, resp) runs once on one of
     * http.c's answer threads and fills in resp as a handler would (it owns defer_arg), then
     * the connection resumes and resp is sent. */
    void (*defer)(void *arg, struct fh_http_response *resp);
    void *defer_arg;
} fh_http_response;

typedef void (*fh_http_handler)(void *ctx, fh_http_request *req, fh_http_response *resp);

typedef struct fh_http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/api/v1/builds/{}": "{}" matches one path segment */
    unsigned scope;      /* 0 public, FH_SCOPE_READ, FH_SCOPE_ADMIN */
    const char *params;  /* allowed query parameters, comma-separated; NULL means any */
    fh_http_handler handler;
    void *ctx;
} fh_http_route;

/* A body cap of its own for the routes of one path pattern (webhook payloads are larger than
 * what REST clients send). */
typedef struct fh_http_body_cap {
    const char *pattern; /* as in fh_http_route */
    size_t max_body;
} fh_http_body_cap;

typedef struct fh_http_config {
    const char *listen; /* "127.0.0.1:8080", "[::1]:8080", ":8080" */
    int threads;        /* worker threads */
    int max_connections;
    size_t max_body_bytes;
    size_t max_response_bytes;
    const char *cors_origin; /* Access-Control-Allow-Origin; "" disables CORS headers */
    const char *tls_cert;    /* PEM certificate (chain) file; NULL or "" serves plain HTTP */
    const char *tls_key;     /* PEM private key file, required with tls_cert */
    const fh_http_body_cap *body_caps; /* paths with a body cap of their own; outlive the server */
    size_t nbody_caps;
} fh_http_config;

typedef struct fh_http fh_http;

/* Starts serving. routes must outlive the server. The bound address is logged and available
 * through fh_http_port (useful with port 0). */
fh_err fh_http_start(const fh_http_config *cfg, const fh_http_route *routes, size_t nroutes,
                     const fh_auth *auth, fh_http **out, char *errbuf, size_t errsize);
unsigned short fh_http_port(const fh_http *h);
/* Connections open on the port now, stream ones included. peak (may be NULL): the most open at
 * once since the last call that asked for it, the next such call counting from now; one thread
 * asks for it. h may be NULL (0). */
long fh_http_connections(fh_http *h, long *peak);
void fh_http_stop(fh_http *h);

/* Routes req (method, path, path_len, args, body filled by the caller; conn may be NULL, and then
 * no header is seen) through the checks every request passes, then the handler: a path holding
 * NUL or bytes that are not UTF-8 is a 400 bad_path; no route 404, wrong method 405; a query key
 * or value holding NUL or bytes that are not UTF-8 a 400 bad_parameter naming it; an unknown
 * parameter a 400 unknown_parameter; then the auth scope. on_request uses it for every request;
 * tests and fuzzers call it without a socket. */
void fh_http_route_request(const fh_http_route *routes, size_t nroutes, const fh_auth *auth,
                           fh_http_request *req, fh_http_response *resp);

/* A query parameter's value (the first, when repeated), or NULL when absent or given without
 * '='. */
const char *fh_http_query(const fh_http_request *req, const char *name);
/* A request header's value, or NULL. */
const char *fh_http_header(const fh_http_request *req, const char *name);

/* Sets a JSON error: {"error":code,"message":message[,"parameter":param]}. */
void fh_http_error(fh_http_response *resp, int status, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
