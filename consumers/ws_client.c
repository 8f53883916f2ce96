#include "ws_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fh_base64.h"
#include "fh_util.h"

fh_err fh_wsc_url_parse(const char *url, fh_wsc_url *out, char *errbuf, size_t errsize)
{
    const char *p, *host, *hend, *port = NULL, *pend;
    memset(out, 0, sizeof(*out));
    if (strncasecmp(url, "wss://", 6) == 0)
        out->tls = 1;
    else if (strncasecmp(url, "ws://", 5) != 0)
        return fh_errf(errbuf, errsize, FH_ERR_UNSUPPORTED, "%s: expected a ws:// or wss:// URL",
                       url);
    p = url + (out->tls ? 6 : 5);
    if (*p == '[') {
        host = p + 1;
        if (!(hend = strchr(host, ']')))
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "%s: unclosed [ in the host", url);
        p = hend + 1;
    } else {
        host = p;
        hend = p + strcspn(p, ":/?#");
        p = hend;
    }
    if (*p == ':') {
        port = p + 1;
        pend = port + strcspn(port, "/?#");
        p = pend;
        if (pend == port || pend - port >= (long)sizeof(out->port))
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "%s: bad port", url);
        for (const char *q = port; q < pend; q++)
            if (*q < '0' || *q > '9')
                return fh_errf(errbuf, errsize, FH_ERR_PARSE, "%s: bad port", url);
        memcpy(out->port, port, (size_t)(pend - port));
    } else {
        strcpy(out->port, out->tls ? "443" : "80");
    }
    if (hend == host || hend - host >= (long)sizeof(out->host))
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "%s: bad host", url);
    memcpy(out->host, host, (size_t)(hend - host));
    if (*p && *p != '/' && *p != '?')
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "%s: unexpected text after the host", url);
    size_t plen = strcspn(p, "#");
    if (plen + 12 >= sizeof(out->path))
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "%s: path too long", url);
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] == 0x7F)
            return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                           "%s: spaces or control characters in the path", url);
    if (plen == 0 || (p[0] == '/' && plen == 1))
        snprintf(out->path, sizeof(out->path), "/v1/stream");
    else if (p[0] == '?')
        snprintf(out->path, sizeof(out->path), "/v1/stream%.*s", (int)plen, p);
    else
        snprintf(out->path, sizeof(out->path), "%.*s", (int)plen, p);
    return FH_OK;
}

/* Finds header name (case-insensitive) in head; copies its trimmed value to buf. */
static int header_value(const char *head, size_t len, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            snprintf(buf, size, "%.*s", (int)(ve - v), v);
            return 1;
        }
        p = eol + 1;
    }
    return 0;
}

fh_err fh_wsc_check_response(const char *head, size_t len, const char *key, int *status,
                             char *errbuf, size_t errsize)
{
    int deflate = 0;
    return fh_wsc_check_response_ext(head, len, key, status, &deflate, errbuf, errsize);
}

fh_err fh_wsc_check_response_ext(const char *head, size_t len, const char *key, int *status,
                                 int *deflate, char *errbuf, size_t errsize)
{
    int offered = *deflate;
    *deflate = 0;
    char accept[29], got[128], line[128];
    int st = 0;
    size_t l = strcspn(head, "\r\n");
    if (l > len)
        l = len;
    snprintf(line, sizeof(line), "%.*s", (int)l, head);
    *status = 0;
    if (sscanf(line, "HTTP/1.%*1[01] %3d", &st) != 1 || st < 100 || st > 599)
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "not an HTTP response: \"%.60s\"", line);
    *status = st;
    if (st != 101)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "the server refused the upgrade: %s", line);
    if (!header_value(head, len, "Upgrade", got, sizeof(got)) || strcasecmp(got, "websocket") != 0)
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "101 without Upgrade: websocket");
    fh_ws_accept_key(key, accept);
    if (!header_value(head, len, "Sec-WebSocket-Accept", got, sizeof(got)) || !accept[0] ||
        strcmp(got, accept) != 0)
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "wrong or missing Sec-WebSocket-Accept");
    if (header_value(head, len, "Sec-WebSocket-Extensions", got, sizeof(got)) && got[0]) {
        if (!offered || strncasecmp(got, "permessage-deflate", 18) != 0)
            return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                           "the server chose extensions we did not ask for");
        *deflate = 1;
    }
    return FH_OK;
}

static int remaining_ms(uint64_t deadline_ns)
{
    uint64_t now = fh_mono_ns();
    if (now >= deadline_ns)
        return 0;
    return (int)((deadline_ns - now) / 1000000 + 1);
}

static fh_err write_all(int fd, const void *buf, size_t len, uint64_t deadline_ns, char *errbuf,
                        size_t errsize)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int ms = remaining_ms(deadline_ns);
            if (ms == 0 || poll(&pfd, 1, ms) == 0)
                return fh_errf(errbuf, errsize, FH_ERR_IO, "send timed out");
            continue;
        }
        return fh_errf(errbuf, errsize, FH_ERR_IO, "send: %s", strerror(errno));
    }
    return FH_OK;
}

static fh_err tcp_connect(const fh_wsc_url *u, uint64_t deadline_ns, int *out, char *errbuf,
                          size_t errsize)
{
    struct addrinfo hints = {0}, *res = NULL, *ai;
    char why[256] = "no address";
    int fd = -1;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "%s:%s: %s", u->host, u->port,
                       gai_strerror(gai));
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, sizeof(why), "socket: %s", strerror(errno));
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t el = sizeof(err);
            int ms = remaining_ms(deadline_ns);
            if (ms > 0 && poll(&pfd, 1, ms) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
                break;
            snprintf(why, sizeof(why), "%s", err ? strerror(err) : "connect timed out");
        } else {
            snprintf(why, sizeof(why), "%s", strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "connect to %s:%s: %s", u->host, u->port, why);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = fd;
    return FH_OK;
}

static void random_bytes(unsigned char *p, size_t n)
{
    ssize_t got = getrandom(p, n, 0);
    if (got != (ssize_t)n) /* never in practice; a mask only needs to be unpredictable-ish */
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)(fh_mono_ns() >> (i % 8));
}

fh_err fh_wsc_connect(fh_wsc *c, const fh_wsc_url *url, const char *token, const char *subprotocol,
                      size_t max_message, int timeout_ms, char *errbuf, size_t errsize)
{
    uint64_t deadline = fh_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    unsigned char nonce[16];
    char key[32], *req = NULL, *head = NULL;
    fh_err rc;
    int fd = -1;
    size_t hl = 0;

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (url->tls)
        return fh_errf(errbuf, errsize, FH_ERR_UNSUPPORTED, "wss:// is not supported here");
    random_bytes(nonce, sizeof(nonce));
    fh_b64_encode(nonce, sizeof(nonce), key, sizeof(key));
    if ((rc = tcp_connect(url, deadline, &fd, errbuf, errsize)))
        goto err;
    size_t cap = 2048 + strlen(url->path) + (token ? strlen(token) : 0);
    if (!(req = malloc(cap)) || !(head = malloc(FH_WSC_HEAD_MAX + 1)) ||
        !(c->rbuf = malloc(FH_WSC_READ_BUF))) {
        rc = FH_ERR_NOMEM;
        goto err;
    }
    int n = snprintf(req, cap,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "User-Agent: firehose-tail\r\n",
                     url->path, strchr(url->host, ':') ? "[" : "", url->host,
                     strchr(url->host, ':') ? "]" : "", url->port, key);
    if (subprotocol && *subprotocol)
        n += snprintf(req + n, cap - (size_t)n, "Sec-WebSocket-Protocol: %s\r\n", subprotocol);
    if (token && *token)
        n += snprintf(req + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", token);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if ((rc = write_all(fd, req, (size_t)n, deadline, errbuf, errsize)))
        goto err;

    /* Read the response head; bytes after the blank line are the first frames. */
    const char *blank = NULL;
    while (!blank) {
        if (hl == FH_WSC_HEAD_MAX) {
            rc = fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "upgrade response over %d bytes",
                         FH_WSC_HEAD_MAX);
            goto err;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ms = remaining_ms(deadline);
        if (ms == 0 || poll(&pfd, 1, ms) == 0) {
            rc =
                fh_errf(errbuf, errsize, FH_ERR_IO, "no upgrade response within %d ms", timeout_ms);
            goto err;
        }
        ssize_t got = recv(fd, head + hl, FH_WSC_HEAD_MAX - hl, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            rc = fh_errf(errbuf, errsize, FH_ERR_IO, "connection closed during the upgrade%s%s",
                         got < 0 ? ": " : "", got < 0 ? strerror(errno) : "");
            goto err;
        }
        hl += (size_t)got;
        head[hl] = '\0';
        blank = strstr(head, "\r\n\r\n");
    }
    size_t head_len = (size_t)(blank - head) + 4;
    rc = fh_wsc_check_response(head, head_len, key, &c->http_status, errbuf, errsize);
    if (rc) {
        /* keep the start of the body: the broker explains a refusal in JSON */
        size_t bl = hl - head_len;
        if (bl >= sizeof(c->http_body))
            bl = sizeof(c->http_body) - 1;
        memcpy(c->http_body, head + head_len, bl);
        c->http_body[bl] = '\0';
        goto err;
    }
    c->rlen = hl - head_len; /* at most FH_WSC_HEAD_MAX < FH_WSC_READ_BUF */
    memcpy(c->rbuf, head + head_len, c->rlen);
    c->rpos = 0;
    c->fd = fd;
    fh_ws_parser_init_client(&c->parser, max_message);
    free(req);
    free(head);
    return FH_OK;
err:
    if (fd >= 0)
        close(fd);
    free(req);
    free(head);
    free(c->rbuf);
    c->rbuf = NULL;
    c->fd = -1;
    return rc ? rc : FH_ERR_IO;
}

fh_err fh_wsc_send(fh_wsc *c, int opcode, const void *data, size_t len, int timeout_ms,
                   char *errbuf, size_t errsize)
{
    unsigned char hdr[14], key[4], chunk[4096];
    unsigned pos = 0;
    uint64_t deadline = fh_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    const unsigned char *p = data;
    fh_err rc;
    if (c->fd < 0)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "not connected");
    random_bytes(key, sizeof(key));
    size_t h = fh_ws_client_frame_header(hdr, opcode, len, key);
    if ((rc = write_all(c->fd, hdr, h, deadline, errbuf, errsize)))
        return rc;
    /* mask a copy in pieces: the caller's data stays as it is */
    while (len) {
        size_t n = len < sizeof(chunk) ? len : sizeof(chunk);
        memcpy(chunk, p, n);
        fh_ws_mask(chunk, n, key, &pos);
        if ((rc = write_all(c->fd, chunk, n, deadline, errbuf, errsize)))
            return rc;
        p += n;
        len -= n;
    }
    return FH_OK;
}

int fh_wsc_next(fh_wsc *c, int timeout_ms, fh_ws_msg *out, char *errbuf, size_t errsize)
{
    uint64_t deadline = fh_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    if (c->fd < 0) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "not connected");
        return -1;
    }
    for (;;) {
        while (c->rpos < c->rlen) {
            size_t used = 0;
            int r = fh_ws_parse(&c->parser, c->rbuf + c->rpos, c->rlen - c->rpos, &used, out);
            c->rpos += used;
            if (r == FH_WS_NEED_MORE)
                break;
            if (r == FH_WS_PING) {
                char err[128];
                if (fh_wsc_send(c, FH_WS_OP_PONG, out->data, out->len, 5000, err, sizeof(err))) {
                    fh_errf(errbuf, errsize, FH_ERR_IO, "answering a ping: %s", err);
                    return -1;
                }
                continue;
            }
            if (r == FH_WS_PONG)
                continue;
            if (r == FH_WS_CLOSE) {
                unsigned char frame[14 + 2];
                unsigned char key[4], payload[2];
                unsigned pos = 0;
                /* echo the code, as RFC 6455 5.5.1 asks */
                random_bytes(key, sizeof(key));
                size_t plen = 0;
                if (out->close_code != FH_WS_CLOSE_NO_STATUS) {
                    payload[0] = (unsigned char)(out->close_code >> 8);
                    payload[1] = (unsigned char)out->close_code;
                    plen = 2;
                }
                size_t h = fh_ws_client_frame_header(frame, FH_WS_OP_CLOSE, plen, key);
                memcpy(frame + h, payload, plen);
                fh_ws_mask(frame + h, plen, key, &pos);
                (void)!send(c->fd, frame, h + plen, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            return r;
        }
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int ms = remaining_ms(deadline);
        if (ms == 0)
            return FH_WS_NEED_MORE;
        int pr = poll(&pfd, 1, ms);
        if (pr < 0 && errno == EINTR)
            return FH_WS_NEED_MORE; /* let the caller look at its signal flags */
        if (pr <= 0)
            return FH_WS_NEED_MORE;
        ssize_t got = recv(c->fd, c->rbuf + c->rlen, FH_WSC_READ_BUF - c->rlen, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            fh_errf(errbuf, errsize, FH_ERR_IO, "connection %s",
                    got < 0 ? strerror(errno) : "closed by the server");
            return -1;
        }
        c->rlen += (size_t)got;
    }
}

void fh_wsc_close(fh_wsc *c, unsigned code, const char *reason)
{
    if (c->fd >= 0) {
        if (code) {
            unsigned char frame[128], key[4];
            unsigned pos = 0;
            size_t n = fh_ws_close_frame(frame, code, reason); /* unmasked: re-encode masked */
            size_t plen = n - 2;
            unsigned char out[14 + 126];
            random_bytes(key, sizeof(key));
            size_t h = fh_ws_client_frame_header(out, FH_WS_OP_CLOSE, plen, key);
            memcpy(out + h, frame + 2, plen);
            fh_ws_mask(out + h, plen, key, &pos);
            (void)!send(c->fd, out, h + plen, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        close(c->fd);
    }
    c->fd = -1;
    fh_ws_parser_free(&c->parser);
    free(c->rbuf);
    c->rbuf = NULL;
    c->rpos = c->rlen = 0;
}
