/* fh_wsc: a blocking WebSocket client over plain TCP (ws:// only), for the fan-out benchmark's load
 * client (firehose-tail speaks through consumers/lws_client.h, which also does wss://). The URL
 * parser here serves both.
 *
 * RFC 6455 client side: an HTTP/1.1 upgrade with a random Sec-WebSocket-Key whose
 * Sec-WebSocket-Accept is checked, masked frames out, the server's unmasked frames parsed by
 * lib/fh_ws (fh_ws_parser_init_client). Pings are answered inside fh_wsc_next. One connection per
 * struct; nothing is shared between threads. wss:// (TLS) is not supported. */
#ifndef FH_WS_CLIENT_H
#define FH_WS_CLIENT_H

#include <stddef.h>

#include "fh_error.h"
#include "fh_ws.h"

/* A parsed ws:// or wss:// URL. */
typedef struct fh_wsc_url {
    int tls;        /* wss:// */
    char host[256]; /* without brackets for IPv6 literals */
    char port[8];
    char path[1024]; /* path and query, "/v1/stream" when the URL has none */
} fh_wsc_url;

/* Parses ws://HOST[:PORT][/PATH][?QUERY] or the same with wss:// (port 80, or 443 for wss://, by
 * default; an IPv6 host in brackets). FH_ERR_UNSUPPORTED for other schemes, FH_ERR_PARSE for the
 * rest. */
fh_err fh_wsc_url_parse(const char *url, fh_wsc_url *out, char *errbuf, size_t errsize);

/* Checks a server's upgrade response head (status line and headers, up to the blank line) for
 * the key that was sent. Returns FH_OK for 101 with the right Sec-WebSocket-Accept; otherwise
 * sets *status (the HTTP status, 0 when unreadable) and errbuf. */
fh_err fh_wsc_check_response(const char *head, size_t len, const char *key, int *status,
                             char *errbuf, size_t errsize);

/* The same, accepting a Sec-WebSocket-Extensions answer of permessage-deflate when *deflate is 1
 * (the request offered it); sets *deflate to whether the server accepted it. */
fh_err fh_wsc_check_response_ext(const char *head, size_t len, const char *key, int *status,
                                 int *deflate, char *errbuf, size_t errsize);

/* Largest upgrade response head accepted, and the default cap on one message. */
#define FH_WSC_HEAD_MAX 16384
#define FH_WSC_READ_BUF 65536

typedef struct fh_wsc {
    int fd;
    fh_ws_parser parser;
    unsigned char *rbuf; /* owned, FH_WSC_READ_BUF bytes; unparsed input is rbuf[rpos..rlen) */
    size_t rpos, rlen;
    int http_status;     /* of the last connect: 101, the refusal's status, or 0 */
    char http_body[512]; /* the start of a refusal's body (a JSON error from the broker) */
} fh_wsc;

/* Connects to url (ws:// only: FH_ERR_UNSUPPORTED for wss://) and upgrades, sending "Authorization:
 * Bearer token" when token is set and asking for subprotocol (may be NULL). timeout_ms bounds the
 * connect and the handshake. max_message caps one message from the server. On failure
 * c->http_status says whether the server refused (e.g. 401, with c->http_body) or the connection
 * failed (0); c holds nothing. */
fh_err fh_wsc_connect(fh_wsc *c, const fh_wsc_url *url, const char *token, const char *subprotocol,
                      size_t max_message, int timeout_ms, char *errbuf, size_t errsize);

/* Sends one masked frame (text, ping, pong or close) with a fresh random mask. Blocks at most
 * timeout_ms for the socket to take it. */
fh_err fh_wsc_send(fh_wsc *c, int opcode, const void *data, size_t len, int timeout_ms,
                   char *errbuf, size_t errsize);

/* Waits at most timeout_ms for the next message. Returns FH_WS_MESSAGE, FH_WS_CLOSE (out has the
 * code and reason; a close frame has been answered), FH_WS_ERROR (a protocol error: out has the
 * code; the connection should be dropped), FH_WS_NEED_MORE on timeout, or -1 when the connection
 * failed or the server closed it without a close frame (errbuf says why). Pings are answered and
 * pongs swallowed here. out's pointers live until the next call. */
int fh_wsc_next(fh_wsc *c, int timeout_ms, fh_ws_msg *out, char *errbuf, size_t errsize);

/* Sends a close frame (best effort, when code is not 0) and closes the socket. c may be
 * connected again afterwards. */
void fh_wsc_close(fh_wsc *c, unsigned code, const char *reason);

#endif
