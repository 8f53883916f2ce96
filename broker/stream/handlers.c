/* handlers: the HTTP side (libmicrohttpd threads): the WebSocket upgrade on /v1/stream and the
 * SSE response on /v1/events, each checked here and handed to the stream thread. */
#include "internal.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

/* ---- HTTP handlers (libmicrohttpd threads) ----------------------------------------------------
 */

static void on_upgraded(void *cls, struct MHD_Connection *connection, void *req_cls,
                        const char *extra_in, size_t extra_in_size, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
    conn *c = cls;
    fh_stream *s = c->owner;
    (void)connection;
    (void)req_cls;
    inmsg *m = calloc(1, sizeof(*m));
    c->fd = sock;
    c->urh = urh;
    /* the stream thread never blocks on a client */
    int fl = fcntl(sock, F_GETFL, 0);
    if (!m || fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(m);
        stream_ws_refuse(s, sock, urh);
        stream_conn_unref(c);
        return;
    }
    /* no Nagle: the stream thread already writes each connection's queue in one writev per
     * pass; Nagle would hold the next pass's frames until the client acknowledged the last ones
     * (up to its delayed-ACK timer, tens of ms). Not fatal when refused. */
    int one = 1;
    (void)setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (extra_in_size > sizeof(m->extra)) {
        free(m);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        stream_conn_unref(c);
        return;
    }
    m->kind = IN_WS;
    m->c = c;
    memcpy(m->extra, extra_in, extra_in_size);
    m->extra_len = extra_in_size;
    stream_inbox_post(s, m);
}

static int header_has_token(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e2 = end;
        while (e2 > p && e2[-1] == ' ')
            e2--;
        if ((size_t)(e2 - p) == n && strncasecmp(p, token, n) == 0)
            return 1;
        p = end;
    }
    return 0;
}

static conn *conn_new(fh_stream *s, int kind, const fh_principal *who)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    c->fd = -1;
    c->who = who;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    fh_ws_parser_init(&c->parser, s->max_message);
    return c;
}

/* Builds a filter from query parameters: every parameter but from, cursor and access_token is a
 * filter field; values are comma-separated lists. */
typedef struct qfilter {
    fh_filter *f;
    char err[256];
    int failed;
} qfilter;

static enum MHD_Result add_query_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    qfilter *q = cls;
    (void)kind;
    if (strcmp(key, "from") == 0 || strcmp(key, "access_token") == 0)
        return MHD_YES;
    if (!value || fh_filter_add_text(q->f, key, value, q->err, sizeof(q->err))) {
        if (!value)
            snprintf(q->err, sizeof(q->err), "filter.%.64s: expected a value", key);
        q->failed = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

static const char *filter_param(const char *err)
{
    static _Thread_local char name[80];
    const char *dot = strchr(err, '.'), *colon = strchr(err, ':');
    if (!dot || !colon || colon < dot)
        return NULL;
    snprintf(name, sizeof(name), "%.*s", (int)(colon - dot - 1), dot + 1);
    return name;
}

/* A 426 says what to upgrade to (RFC 7231 6.5.15) and which WebSocket version (RFC 6455 4.2.2). */
static void upgrade_required(fh_http_response *resp, const char *code, const char *param,
                             const char *msg)
{
    fh_http_error(resp, 426, code, param, "%s", msg);
    resp->headers[0].name = "Upgrade";
    resp->headers[0].value = "websocket";
    resp->headers[1].name = "Connection";
    resp->headers[1].value = "Upgrade";
    resp->headers[2].name = "Sec-WebSocket-Version";
    resp->headers[2].value = "13";
}

/* Checks the opening handshake (RFC 6455 4.2.1) before anything is allocated. */
static void ws_handler(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_stream *s = ctx;
    char accept[32];
    const char *upgrade = fh_http_header(req, "Upgrade");
    const char *connection = fh_http_header(req, "Connection");
    const char *key = fh_http_header(req, "Sec-WebSocket-Key");
    const char *version = fh_http_header(req, "Sec-WebSocket-Version");
    const char *protos = fh_http_header(req, "Sec-WebSocket-Protocol");
    int wants_ws = upgrade && strcasecmp(upgrade, "websocket") == 0;
    /* HTTP/1.0 has no upgrade: libmicrohttpd would refuse the 101 and drop the connection. */
    if (wants_ws && req->version && strcmp(req->version, "HTTP/1.1") < 0) {
        fh_http_error(resp, 400, "bad_request", NULL,
                      "a WebSocket upgrade needs HTTP/1.1 (this request is %.16s)", req->version);
        return;
    }
    if (!wants_ws || !connection || !header_has_token(connection, "upgrade")) {
        upgrade_required(resp, "upgrade_required", NULL,
                         "/v1/stream is a WebSocket endpoint (for plain HTTP use /v1/events)");
        return;
    }
    if (strcmp(req->method, "GET") != 0) {
        fh_http_error(resp, 400, "bad_request", NULL, "a WebSocket upgrade is a GET, not %.16s",
                      req->method);
        return;
    }
    if (!fh_http_header(req, "Host")) {
        fh_http_error(resp, 400, "bad_request", "Host", "a WebSocket upgrade needs a Host header");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        upgrade_required(resp, "unsupported_version", "Sec-WebSocket-Version",
                         "Sec-WebSocket-Version must be 13");
        return;
    }
    if (!key || !fh_ws_key_valid(key)) {
        fh_http_error(resp, 400, "bad_request", "Sec-WebSocket-Key",
                      "Sec-WebSocket-Key is missing or malformed");
        return;
    }
    int ce = protos && header_has_token(protos, "cloudevents.json");
    int fh = protos && header_has_token(protos, "firehose.v1");
    char zext[128]; /* permessage-deflate, when offered and on */
    int z = s->zd && fh_deflate_negotiate(fh_http_header(req, "Sec-WebSocket-Extensions"), zext,
                                          sizeof(zext));
    conn *c = conn_new(s, CONN_WS, req->who);
    if (!c) {
        fh_metric_add(s->m_refused, 1);
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    c->cloudevents = ce;
    c->deflate = z;
    if (z)
        fh_ws_parser_allow_compressed(&c->parser);
    if (ce) {
        qfilter q = {&c->sse_filter, "", 0};
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_query_field, &q);
        if (q.failed) {
            stream_conn_unref(c);
            fh_http_error(resp, 400, "bad_filter", filter_param(q.err), "%s", q.err);
            return;
        }
    }
    fh_ws_accept_key(key, accept);
    c->owner = s;
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgraded, c);
    if (!r) {
        stream_conn_unref(c);
        fh_metric_add(s->m_refused, 1);
        fh_http_error(resp, 503, "unavailable", NULL, "cannot upgrade: out of memory");
        return;
    }
    MHD_add_response_header(r, "Upgrade", "websocket");
    /* libmicrohttpd 0.9.74 and later put "Connection: Upgrade" in every upgrade response; adding
     * it again would say "Upgrade, Upgrade". */
    if (!MHD_get_response_header(r, "Connection"))
        MHD_add_response_header(r, "Connection", "Upgrade");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    if (ce)
        MHD_add_response_header(r, "Sec-WebSocket-Protocol", "cloudevents.json");
    else if (fh)
        MHD_add_response_header(r, "Sec-WebSocket-Protocol", "firehose.v1");
    if (z)
        MHD_add_response_header(r, "Sec-WebSocket-Extensions", zext);
    resp->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    resp->raw = r;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    conn *c = cls;
    size_t out = 0;
    uint64_t now = 0;
    (void)pos;
    pthread_mutex_lock(&c->mu);
    while (c->q.first && out < max) {
        qent *e = c->q.first;
        size_t total = e->head_len + e->shared_len;
        while (e->done < total && out < max) {
            const char *src;
            size_t avail;
            if (e->done < e->head_len) {
                src = e->head + e->done;
                avail = e->head_len - e->done;
            } else {
                src = e->shared + (e->done - e->head_len);
                avail = total - e->done;
            }
            size_t n = avail < max - out ? avail : max - out;
            memcpy(buf + out, src, n);
            out += n;
            e->done += n;
        }
        if (e->done < total)
            break;
        c->q.first = e->next;
        if (!c->q.first)
            c->q.last = NULL;
        stream_delivery_written(c->owner, e, &now);
        sev_unref(e->ev);
        free(e);
    }
    c->q.bytes -= out;
    c->owner->total_queued -= out;
    if (out && atomic_load(&c->want_room) && c->q.bytes <= c->owner->client_queue_max / 2)
        fh_loop_wake(c->owner->loop); /* a replay or catch-up can continue */
    if (out == 0) {
        if (c->sse_end) {
            pthread_mutex_unlock(&c->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        c->sse_waiting = 1;
        MHD_suspend_connection(c->mhd);
    }
    pthread_mutex_unlock(&c->mu);
    return (ssize_t)out;
}

/* The response's free callback (its cls is the conn, as for sse_reader): tells the stream
 * thread, which drops the response's reference. */
static void sse_free(void *cls)
{
    conn *c = cls;
    /* the MHD connection is going: nothing may resume it from now on (every resume is guarded by
     * sse_waiting, under mu) */
    pthread_mutex_lock(&c->mu);
    c->sse_waiting = 0;
    c->sse_gone = 1;
    pthread_mutex_unlock(&c->mu);
    inmsg *m = calloc(1, sizeof(*m));
    if (!m) {
        /* cannot tell the stream thread: leak the conn rather than free it under its feet */
        fh_log(FH_LOG_ERROR, "stream.sse", "error=\"out of memory ending an SSE response\"");
        return;
    }
    m->kind = IN_SSE_GONE;
    m->c = c;
    stream_inbox_post(c->owner, m);
}

static void sse_handler(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_stream *s = ctx;
    conn *c = conn_new(s, CONN_SSE, req->who);
    inmsg *m = calloc(1, sizeof(*m));
    if (!c || !m) {
        if (c)
            stream_conn_unref(c);
        free(m);
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    qfilter q = {&c->sse_filter, "", 0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_query_field, &q);
    if (q.failed) {
        stream_conn_unref(c);
        free(m);
        fh_http_error(resp, 400, "bad_filter", filter_param(q.err), "%s", q.err);
        return;
    }
    const char *last = fh_http_header(req, "Last-Event-ID");
    const char *from = fh_http_query(req, "from");
    const char *start = last && *last ? last : from;
    if (start) {
        char err[256];
        fh_wsmsg_from_kind kind;
        int64_t *vec = stream_vec_new(s);
        fh_err rc = vec ? stream_from(s, NULL, start, vec, &kind, err, sizeof(err)) : FH_ERR_NOMEM;
        free(vec);
        if (rc == FH_OK && !(c->sse_from = strdup(start)))
            rc = FH_ERR_NOMEM;
        if (rc) {
            stream_conn_unref(c);
            free(m);
            if (rc == FH_ERR_NOMEM)
                fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
            else
                fh_http_error(resp, 400, "bad_parameter", last && *last ? "Last-Event-ID" : "from",
                              "%s", err);
            return;
        }
    }
    c->mhd = req->conn;
    c->owner = s;
    atomic_fetch_add(&c->refs, 1); /* one for the stream thread, one for the response */
    /* the response's free callback tells the stream thread, which drops both references */
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, sse_reader, c, sse_free);
    if (!r) {
        stream_conn_unref(c);
        stream_conn_unref(c);
        free(m);
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    /* an initial comment so clients and proxies see the stream open at once */
    qent *hello = qent_new(0);
    if (hello) {
        memcpy(hello->head, ": firehose stream\nretry: 2000\n\n", 31);
        hello->head_len = 31;
        c->q.first = c->q.last = hello;
        c->q.bytes = 31;
        s->total_queued += 31;
    }
    m->kind = IN_SSE;
    m->c = c;
    stream_inbox_post(s, m);
    resp->raw = r;
    resp->status = 200;
}

void fh_stream_set_max_connections(fh_stream *s, int max)
{
    s->max_conns = max;
}

size_t fh_stream_routes(fh_stream *s, fh_http_route *routes)
{
    routes[0] = (fh_http_route){"GET", "/v1/stream", FH_SCOPE_READ, NULL, ws_handler, s};
    routes[1] = (fh_http_route){"GET", "/v1/events", FH_SCOPE_READ, NULL, sse_handler, s};
    return FH_STREAM_ROUTES;
}
