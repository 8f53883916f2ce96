/* fh_lwc: firehose-tail's WebSocket client on libwebsockets: ws:// and wss:// (certificates
 * verified by default, against the system's CAs or one CA file), an HTTP CONNECT proxy,
 * permessage-deflate when the server accepts it, and the blocking, one-connection-at-a-time
 * shape firehose-tail wants: connect, send, wait for the next whole message.
 *
 * One fh_lwc owns one libwebsockets context and at most one connection at a time; reconnecting
 * reuses the context (its TLS setup). Single-threaded: every call runs the context's event loop
 * on the calling thread until its condition or deadline. A signal interrupts the wait (the
 * caller's handler must not use SA_RESTART), so callers can check their flags. */
#ifndef FH_LWS_CLIENT_H
#define FH_LWS_CLIENT_H

#include <stddef.h>

#include "fh_error.h"
#include "fh_ws.h"
#include "ws_client.h"

typedef struct fh_lwc_opts {
    const char *subprotocol; /* asked for, and the only one accepted back */
    const char *cacert; /* PEM file of the CA(s) to trust instead of the system's; NULL: system */
    int insecure;       /* no certificate or host name check at all (dangerous) */
    const char *proxy;  /* "[http://][user:pass@]host:port" of an HTTP CONNECT proxy; NULL: none */
    int deflate;        /* offer permessage-deflate */
    size_t max_message; /* cap on one message from the server (after inflating) */
    int debug;          /* libwebsockets' own warnings and errors on stderr */
} fh_lwc_opts;

typedef struct fh_lwc fh_lwc;

/* Creates the context. NULL when libwebsockets refuses (errbuf says why: a CA file it cannot
 * load, a malformed proxy, out of memory). The strings in o must outlive the client. */
fh_lwc *fh_lwc_new(const fh_lwc_opts *o, char *errbuf, size_t errsize);

/* Connects to url (ws:// or wss://) and upgrades, sending "Authorization: Bearer token" when token
 * is set. timeout_ms bounds TCP, the proxy, TLS and the upgrade. On failure fh_lwc_http_status
 * says whether the server answered the upgrade with a refusal (its HTTP status, e.g. 401) or the
 * connection failed before (0), and errbuf says what happened (a certificate that did not verify
 * is named as such). */
fh_err fh_lwc_connect(fh_lwc *c, const fh_wsc_url *url, const char *token, int timeout_ms,
                      char *errbuf, size_t errsize);

/* The HTTP status of the last connect's upgrade response (101 when it succeeded), 0 when none. */
int fh_lwc_http_status(const fh_lwc *c);

/* 1 when the open connection negotiated permessage-deflate. */
int fh_lwc_compressed(const fh_lwc *c);

/* Sends one text message; blocks at most timeout_ms for it to be written. */
fh_err fh_lwc_send_text(fh_lwc *c, const char *text, size_t len, int timeout_ms, char *errbuf,
                        size_t errsize);

/* Asks for a ping to be sent; its pong counts as activity (fh_lwc_activity). */
void fh_lwc_ping(fh_lwc *c);

/* A counter that moves whenever something arrives (a message fragment or a pong). */
unsigned long fh_lwc_activity(const fh_lwc *c);

/* Waits at most timeout_ms for the next whole text message. Returns FH_WS_MESSAGE (out->data,
 * out->len, valid until the next call), FH_WS_CLOSE (the server's close: out->close_code and
 * out->reason; 1005 when it gave none), FH_WS_NEED_MORE on timeout or signal, or -1 when the
 * connection failed or ended without a close frame, or a message was over max_message (errbuf
 * says which). */
int fh_lwc_next(fh_lwc *c, int timeout_ms, fh_ws_msg *out, char *errbuf, size_t errsize);

/* Messages already received and not yet returned by fh_lwc_next. */
size_t fh_lwc_queued(const fh_lwc *c);

/* Closes the connection: with a close frame carrying code (best effort, at most a second) when
 * code is not 0, else at once. The client may connect again afterwards. */
void fh_lwc_close(fh_lwc *c, unsigned code);

void fh_lwc_free(fh_lwc *c);

#endif
