#include "lws_client.h"

#include <libwebsockets.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_util.h"

#define TICK_US (100 * 1000)   /* the event loop returns at least this often */
#define QUEUE_PAUSE (1u << 20) /* stop reading while this many bytes wait in the queue */

typedef struct qmsg {
    struct qmsg *next;
    size_t len;
    unsigned char data[]; /* len bytes and a NUL */
} qmsg;

enum { S_IDLE, S_CONNECTING, S_OPEN, S_FAILED, S_CLOSED };

struct fh_lwc {
    struct lws_context *ctx;
    struct lws *wsi;
    fh_lwc_opts o;
    lws_sorted_usec_list_t tick;
    int state;
    int http_status;
    int compressed;
    char error[256];
    char tls_error[160]; /* why the broker's certificate did not verify, when it did not */
    const char *token;
    /* the message being assembled from fragments */
    unsigned char *msg;
    size_t msg_len, msg_cap;
    int too_big;
    /* whole messages not yet returned, and the one last returned (freed on the next call) */
    qmsg *first, *last, *current;
    size_t nqueued, queued_bytes;
    int paused;
    /* the server's close frame */
    int got_close;
    unsigned close_code;
    char close_reason[124];
    /* what to write when the socket is writable */
    unsigned char *out; /* LWS_PRE bytes of room, then the text */
    size_t out_len;
    int want_ping;
    unsigned close_with; /* send a close frame with this code, then hang up */
    unsigned long activity;
};

static const struct lws_extension extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL},
};

static void tick(lws_sorted_usec_list_t *sul)
{
    fh_lwc *c = lws_container_of(sul, fh_lwc, tick);
    lws_sul_schedule(c->ctx, 0, &c->tick, tick, TICK_US);
}

static int queue_message(fh_lwc *c)
{
    qmsg *m = malloc(sizeof(*m) + c->msg_len + 1);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = c->msg_len;
    if (c->msg_len)
        memcpy(m->data, c->msg, c->msg_len);
    m->data[m->len] = '\0';
    if (c->last)
        c->last->next = m;
    else
        c->first = m;
    c->last = m;
    c->nqueued++;
    c->queued_bytes += m->len;
    c->msg_len = 0;
    if (c->queued_bytes > QUEUE_PAUSE && c->wsi && !c->paused) {
        lws_rx_flow_control(c->wsi, 0);
        c->paused = 1;
    }
    return 0;
}

static int on_receive(fh_lwc *c, struct lws *wsi, const void *in, size_t len)
{
    c->activity++;
    if (lws_is_first_fragment(wsi)) {
        c->msg_len = 0;
        c->too_big = 0;
    }
    if (!c->too_big && len > c->o.max_message - c->msg_len)
        c->too_big = 1;
    if (!c->too_big && len) {
        if (c->msg_len + len > c->msg_cap) {
            size_t cap = c->msg_cap ? c->msg_cap : 4096;
            while (cap < c->msg_len + len)
                cap *= 2;
            unsigned char *m = realloc(c->msg, cap);
            if (!m)
                return -1;
            c->msg = m;
            c->msg_cap = cap;
        }
        memcpy(c->msg + c->msg_len, in, len);
        c->msg_len += len;
    }
    if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
        if (c->too_big) {
            snprintf(c->error, sizeof(c->error), "a message from the server over %zu bytes",
                     c->o.max_message);
            c->state = S_FAILED;
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        if (lws_frame_is_binary(wsi)) {
            c->msg_len = 0; /* the broker sends text only */
            return 0;
        }
        return queue_message(c);
    }
    return 0;
}

static int on_writeable(fh_lwc *c, struct lws *wsi)
{
    if (c->close_with) {
        lws_close_reason(wsi, (enum lws_close_status)c->close_with, NULL, 0);
        return -1;
    }
    if (c->out) {
        int n = lws_write(wsi, c->out + LWS_PRE, c->out_len, LWS_WRITE_TEXT);
        free(c->out);
        c->out = NULL;
        if (n < 0) {
            snprintf(c->error, sizeof(c->error), "writing to the server failed");
            return -1;
        }
    }
    if (c->want_ping) {
        unsigned char ping[LWS_PRE + 2];
        c->want_ping = 0;
        memcpy(ping + LWS_PRE, "fh", 2);
        if (lws_write(wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
            return -1;
    }
    if (c->out || c->want_ping)
        lws_callback_on_writable(wsi);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    fh_lwc *c = lws_context_user(lws_get_context(wsi));
    (void)user;
    if (!c)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        static const char ua[] = "firehose-tail";
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"user-agent:",
                                        (const unsigned char *)ua, (int)strlen(ua), p, end))
            return -1;
        if (c->token && *c->token) {
            char auth[4096];
            int n = snprintf(auth, sizeof(auth), "Bearer %s", c->token);
            if (n < 0 || (size_t)n >= sizeof(auth) ||
                lws_add_http_header_by_name(
                    wsi, (const unsigned char *)"authorization:", (unsigned char *)auth, n, p, end))
                return -1;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        char ext[256];
        c->http_status = 101;
        c->compressed = lws_hdr_copy(wsi, ext, sizeof(ext), WSI_TOKEN_EXTENSIONS) > 0 &&
                        strstr(ext, "permessage-deflate") != NULL;
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->state = S_OPEN;
        break;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* user: the X509_STORE_CTX; len: OpenSSL's verdict so far. Only noted, not changed: the
         * reason goes into the error libwebsockets reports as an opaque TLS failure. */
        if (!len && user) {
            X509_STORE_CTX *x = user;
            int e = X509_STORE_CTX_get_error(x);
            snprintf(c->tls_error, sizeof(c->tls_error),
                     "the broker's certificate did not verify: %s (depth %d)",
                     X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(x));
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (wsi == c->wsi || !c->wsi) {
            c->http_status = lws_http_client_http_response(wsi);
            snprintf(c->error, sizeof(c->error), "%s",
                     c->tls_error[0] ? c->tls_error
                     : in            ? (const char *)in
                                     : "connection failed");
            c->state = S_FAILED;
            c->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(c, wsi, in, len);
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        c->activity++;
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *b = in;
        c->got_close = 1;
        c->close_code = len >= 2 ? (unsigned)b[0] << 8 | b[1] : FH_WS_CLOSE_NO_STATUS;
        size_t rl = len > 2 ? len - 2 : 0;
        if (rl >= sizeof(c->close_reason))
            rl = sizeof(c->close_reason) - 1;
        memcpy(c->close_reason, b + 2, rl);
        c->close_reason[rl] = '\0';
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(c, wsi);
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (wsi == c->wsi) {
            if (c->state != S_FAILED)
                c->state = S_CLOSED;
            c->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        if (wsi == c->wsi) {
            if (c->state == S_CONNECTING || c->state == S_OPEN) {
                c->state = S_FAILED;
                if (!c->error[0])
                    snprintf(c->error, sizeof(c->error), "connection closed");
            }
            c->wsi = NULL;
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols_template[] = {
    {"firehose.v1", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int log_debug;

static void log_emit(int level, const char *line)
{
    (void)level;
    if (log_debug)
        fprintf(stderr, "firehose-tail: libwebsockets: %s", line);
}

fh_lwc *fh_lwc_new(const fh_lwc_opts *o, char *errbuf, size_t errsize)
{
    struct lws_context_creation_info info;
    fh_lwc *c = calloc(1, sizeof(*c) + sizeof(protocols_template));
    if (!c) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->o = *o;
    /* the protocol is named after what we ask for: libwebsockets matches the server's answer */
    struct lws_protocols *protos = (struct lws_protocols *)(c + 1);
    memcpy(protos, protocols_template, sizeof(protocols_template));
    protos[0].name = o->subprotocol ? o->subprotocol : "firehose.v1";
    log_debug = o->debug;
    lws_set_log_level(LLL_ERR | LLL_WARN, log_emit);
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protos;
    info.user = c;
    info.fd_limit_per_thread = 16; /* one connection (else sized from ulimit -n) */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (o->cacert && *o->cacert) {
        /* like curl --cacert: this file instead of the system's store, not beside it */
        info.client_ssl_ca_filepath = o->cacert;
        info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    }
    if (o->deflate)
        info.extensions = extensions;
    /* libwebsockets reads $http_proxy itself when no proxy is given: the caller has decided */
    char *saved = getenv("http_proxy") ? strdup(getenv("http_proxy")) : NULL;
    unsetenv("http_proxy");
    if (o->proxy && *o->proxy)
        info.http_proxy_address = o->proxy;
    c->ctx = lws_create_context(&info);
    if (saved) {
        setenv("http_proxy", saved, 1);
        free(saved);
    }
    if (!c->ctx) {
        fh_errf(errbuf, errsize, FH_ERR_IO,
                "libwebsockets could not start (a CA file it cannot read%s?)",
                o->proxy ? ", a proxy it cannot parse" : "");
        free(c);
        return NULL;
    }
    lws_sul_schedule(c->ctx, 0, &c->tick, tick, TICK_US);
    return c;
}

static void clear_queue(fh_lwc *c)
{
    for (qmsg *m = c->first, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    free(c->current);
    c->first = c->last = c->current = NULL;
    c->nqueued = c->queued_bytes = 0;
    c->msg_len = 0;
}

/* Runs the event loop once (until something happens or the next tick). */
static void service(fh_lwc *c)
{
    lws_service(c->ctx, 0);
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = fh_mono_ns();
    return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

fh_err fh_lwc_connect(fh_lwc *c, const fh_wsc_url *url, const char *token, int timeout_ms,
                      char *errbuf, size_t errsize)
{
    struct lws_client_connect_info ci;
    char host[300];
    uint64_t deadline = fh_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    fh_lwc_close(c, 0);
    clear_queue(c);
    c->state = S_CONNECTING;
    c->http_status = 0;
    c->compressed = 0;
    c->error[0] = '\0';
    c->tls_error[0] = '\0';
    c->got_close = 0;
    c->too_big = 0;
    c->token = token;
    c->close_with = 0;
    int v6 = strchr(url->host, ':') != NULL;
    snprintf(host, sizeof(host), "%s%s%s:%s", v6 ? "[" : "", url->host, v6 ? "]" : "", url->port);
    memset(&ci, 0, sizeof(ci));
    ci.context = c->ctx;
    ci.address = url->host;
    ci.port = atoi(url->port);
    ci.path = url->path;
    ci.host = host;
    ci.origin = NULL;
    ci.protocol = c->o.subprotocol;
    ci.ssl_connection = url->tls ? LCCSCF_USE_SSL : 0;
    if (url->tls && c->o.insecure)
        ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                             LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    ci.pwsi = &c->wsi;
    if (!lws_client_connect_via_info(&ci) && c->state == S_CONNECTING) {
        c->state = S_FAILED;
        snprintf(c->error, sizeof(c->error), "cannot start the connection");
    }
    while (c->state == S_CONNECTING && remaining_ms(deadline) > 0)
        service(c);
    if (c->state == S_OPEN)
        return FH_OK;
    if (c->state == S_CONNECTING) {
        fh_lwc_close(c, 0);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "no connection to %s within %d ms", host,
                       timeout_ms);
    }
    if (c->http_status && c->http_status != 101)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "the server refused the upgrade: HTTP %d (%s)",
                       c->http_status, c->error);
    c->http_status = 0;
    return fh_errf(errbuf, errsize, FH_ERR_IO, "%s: %s", host,
                   c->error[0] ? c->error : "connection failed");
}

int fh_lwc_http_status(const fh_lwc *c)
{
    return c->http_status;
}

int fh_lwc_compressed(const fh_lwc *c)
{
    return c->compressed;
}

unsigned long fh_lwc_activity(const fh_lwc *c)
{
    return c->activity;
}

size_t fh_lwc_queued(const fh_lwc *c)
{
    return c->nqueued;
}

fh_err fh_lwc_send_text(fh_lwc *c, const char *text, size_t len, int timeout_ms, char *errbuf,
                        size_t errsize)
{
    uint64_t deadline = fh_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if (c->state != S_OPEN || !c->wsi)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "not connected");
    free(c->out);
    if (!(c->out = malloc(LWS_PRE + len + 1)))
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
    memcpy(c->out + LWS_PRE, text, len);
    c->out_len = len;
    lws_callback_on_writable(c->wsi);
    while (c->out && c->state == S_OPEN && remaining_ms(deadline) > 0)
        service(c);
    if (c->out)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "%s",
                       c->state == S_OPEN ? "send timed out"
                       : c->error[0]      ? c->error
                                          : "connection closed");
    return FH_OK;
}

void fh_lwc_ping(fh_lwc *c)
{
    if (c->state == S_OPEN && c->wsi) {
        c->want_ping = 1;
        lws_callback_on_writable(c->wsi);
    }
}

int fh_lwc_next(fh_lwc *c, int timeout_ms, fh_ws_msg *out, char *errbuf, size_t errsize)
{
    uint64_t deadline = fh_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    memset(out, 0, sizeof(*out));
    free(c->current);
    c->current = NULL;
    for (;;) {
        if (c->first) {
            qmsg *m = c->first;
            c->first = m->next;
            if (!c->first)
                c->last = NULL;
            c->nqueued--;
            c->queued_bytes -= m->len;
            if (c->paused && c->queued_bytes < QUEUE_PAUSE / 2 && c->wsi) {
                lws_rx_flow_control(c->wsi, 1);
                c->paused = 0;
            }
            c->current = m;
            out->opcode = FH_WS_OP_TEXT;
            out->data = m->data;
            out->len = m->len;
            return FH_WS_MESSAGE;
        }
        if (c->state != S_OPEN) {
            if (c->got_close) {
                out->opcode = FH_WS_OP_CLOSE;
                out->close_code = c->close_code;
                out->reason = c->close_reason;
                out->reason_len = strlen(c->close_reason);
                c->got_close = 0;
                return FH_WS_CLOSE;
            }
            fh_errf(errbuf, errsize, FH_ERR_IO, "%s",
                    c->error[0] ? c->error : "connection closed by the server");
            return -1;
        }
        if (remaining_ms(deadline) == 0)
            return FH_WS_NEED_MORE;
        service(c);
        if (!c->first && c->state == S_OPEN)
            return FH_WS_NEED_MORE; /* one pass: let the caller look at its flags and clocks */
    }
}

void fh_lwc_close(fh_lwc *c, unsigned code)
{
    if (!c->wsi) {
        c->state = c->state == S_OPEN || c->state == S_CONNECTING ? S_CLOSED : c->state;
        return;
    }
    if (code && c->state == S_OPEN) {
        uint64_t deadline = fh_mono_ns() + 1000000000ull;
        c->close_with = code;
        lws_callback_on_writable(c->wsi);
        while (c->wsi && remaining_ms(deadline) > 0)
            service(c);
    }
    if (c->wsi) {
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        c->wsi = NULL;
    }
    if (c->state == S_OPEN || c->state == S_CONNECTING)
        c->state = S_CLOSED;
    free(c->out);
    c->out = NULL;
    c->want_ping = 0;
}

void fh_lwc_free(fh_lwc *c)
{
    if (!c)
        return;
    fh_lwc_close(c, 0);
    clear_queue(c);
    free(c->msg);
    free(c->out);
    lws_sul_cancel(&c->tick);
    lws_context_destroy(c->ctx);
    free(c);
}
