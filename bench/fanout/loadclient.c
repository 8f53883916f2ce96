/* loadclient: the fan-out benchmark's subscribers. Many plain ws:// connections to one server,
 * driven by epoll in a few threads (connections are split between them; nothing is shared but the
 * totals merged at the end). Each connection subscribes once, from the live position:
 *
 *   --proto firehose    (firehose-broker /v1/stream) {"op":"subscribe","id":"s","from":FROM,
 *                       "filter":{"builder":NAME}} or "filter":{} for a full-stream connection
 *   --proto centrifugo  (Centrifugo's JSON protocol) {"id":1,"connect":{}} then
 *                       {"id":2,"subscribe":{"channel":NAME}}, channel "all" for a full stream
 *
 * It counts deliveries per connection, notices disconnects and close codes, and for every event
 * that carries "sentns" (the pacer's send stamp, CLOCK_REALTIME ns) puts receive time - send time
 * into a histogram (10 us buckets up to 30 s).
 *
 *   loadclient --url ws://127.0.0.1:PORT/PATH --builders FILE --filtered N --full M
 *              [--proto firehose|centrifugo] [--threads 2] [--max-s 120] [--quiet-ms 3000]
 *              [--ready-file F] [--deflate 1] [--from JSON] [--total N]
 *
 * --from is the subscription's "from" as JSON (firehose protocol): "latest" (the default),
 * "earliest" or {"time":"..."} for a catch-up read (the catch-up benchmark, bench/catchup.sh).
 * --total N also ends it once the connections together have N deliveries (a catch-up read is
 * done when it has the backlog, while live events keep it from ever being quiet).
 *
 * --deflate 1 offers permessage-deflate (firehose protocol); compressed messages are inflated
 * (one inflater per thread, as the broker compresses without context takeover) before they are
 * counted, and the bytes received on the wire are reported (wire_bytes=).
 *
 * Connection i < N filters on line (i mod lines) of FILE. Once every connection has its
 * subscription confirmed it prints "loadclient: ready ..." on stderr and creates --ready-file.
 * It ends --quiet-ms after the last delivery (once there has been one), after --max-s, or on
 * SIGINT/SIGTERM, and prints one line on stdout:
 *   loadclient: conns=.. subscribed=.. deliveries=.. filtered=.. full=.. full_min=.. full_max=..
 *   first_ns=.. last_ns=.. deliveries_per_s=.. disconnects=.. close_codes=CODE:N,.. errors=..
 *   samples=.. p50_ms=.. p99_ms=.. p999_ms=.. max_ms=.. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fh_deflate.h"
#include "fh_ws.h"
#include "ws_client.h"

#define HIST_US 10                          /* bucket width */
#define HIST_N (30 * 1000 * 1000 / HIST_US) /* 30 s */
#define RBUF 262144
#define MAX_THREADS 8
#define MAX_HANDSHAKING 64 /* per thread, so the server's accept backlog never overflows */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="

enum { PROTO_FIREHOSE, PROTO_CENTRIFUGO };
enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct conn {
    int fd, state, full, subscribed, thread;
    const char *name; /* builder, or NULL for the full stream */
    fh_ws_parser parser;
    char head[FH_WSC_HEAD_MAX];
    size_t head_len;
    int deflate; /* the server accepted permessage-deflate */
    long long deliveries;
    unsigned close_code; /* 0: none seen */
} conn;

typedef struct worker {
    int id, epfd;
    conn **conns;
    size_t nconns, next_connect, handshaking;
    long long deliveries, filtered, full, errors, samples, first_ns, last_ns;
    long long published; /* deliveries already added to delivered_total */
    uint32_t *hist;
    long long overflow;
    unsigned char *rbuf;
    fh_inflater *zi; /* --deflate */
    long long wire_bytes, inflated;
    pthread_t th;
} worker;

static int proto = PROTO_FIREHOSE;
static int want_deflate;
static struct sockaddr_in addr;
static char host_hdr[300], path[1024];
static volatile sig_atomic_t stop_flag;
static atomic_long subscribed_total, open_total, last_delivery_ns;
static atomic_int printed_errors;
static long long max_ns, quiet_ns, total_want;
static atomic_llong delivered_total;
static size_t total_conns;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static long long now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Blocking-ish write of a small buffer on a non-blocking socket (client messages are tiny). */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    long long deadline = now_mono() + 2000000000LL;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR) && now_mono() < deadline) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        } else {
            return -1;
        }
    }
    return 0;
}

static int send_frame(conn *c, int opcode, const char *data, size_t len)
{
    unsigned char frame[14 + 1024];
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (len > 1024)
        return -1;
    size_t h = fh_ws_client_frame_header(frame, opcode, len, key);
    memcpy(frame + h, data, len);
    unsigned pos = 0;
    fh_ws_mask(frame + h, len, key, &pos);
    return write_all(c->fd, frame, h + len);
}

static void conn_close(worker *w, conn *c, unsigned code)
{
    if (c->state == ST_CLOSED)
        return;
    if (c->state == ST_HANDSHAKE || c->state == ST_CONNECTING)
        w->handshaking--;
    if (c->state == ST_OPEN)
        atomic_fetch_sub(&open_total, 1);
    if (code && !c->close_code)
        c->close_code = code;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = ST_CLOSED;
}

static void start_connect(worker *w, conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(c->fd, (struct sockaddr *)&addr, sizeof(addr));
    c->state = ST_CONNECTING;
    w->handshaking++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (rc < 0 && errno != EINPROGRESS)
        conn_close(w, c, 1);
}

static void on_connected(worker *w, conn *c)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        conn_close(w, c, 1);
        return;
    }
    char req[1600];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s%s\r\n",
                     path, host_hdr,
                     proto == PROTO_CENTRIFUGO ? "" : "Sec-WebSocket-Protocol: firehose.v1\r\n",
                     want_deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    if (write_all(c->fd, req, (size_t)n) < 0) {
        conn_close(w, c, 1);
        return;
    }
    c->state = ST_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static const char *from_json = "\"latest\"";

static void send_subscribe(conn *c)
{
    char msg[512];
    int n;
    if (proto == PROTO_FIREHOSE) {
        if (c->name)
            n = snprintf(msg, sizeof(msg),
                         "{\"op\":\"subscribe\",\"id\":\"s\",\"from\":%s,"
                         "\"filter\":{\"builder\":\"%s\"}}",
                         from_json, c->name);
        else
            n = snprintf(msg, sizeof(msg),
                         "{\"op\":\"subscribe\",\"id\":\"s\",\"from\":%s,\"filter\":{}}",
                         from_json);
        send_frame(c, FH_WS_OP_TEXT, msg, (size_t)n);
    } else {
        n = snprintf(msg, sizeof(msg), "{\"id\":1,\"connect\":{\"name\":\"bench\"}}");
        send_frame(c, FH_WS_OP_TEXT, msg, (size_t)n);
        n = snprintf(msg, sizeof(msg), "{\"id\":2,\"subscribe\":{\"channel\":\"%s\"}}",
                     c->name ? c->name : "all");
        send_frame(c, FH_WS_OP_TEXT, msg, (size_t)n);
    }
}

static void record_error(const char *what, const char *text, size_t len)
{
    if (atomic_fetch_add(&printed_errors, 1) < 5)
        fprintf(stderr, "loadclient: %s: %.*s\n", what, (int)(len > 300 ? 300 : len), text);
}

static void delivered(worker *w, conn *c, const char *text, size_t len, long long now)
{
    c->deliveries++;
    w->deliveries++;
    if (c->full)
        w->full++;
    else
        w->filtered++;
    if (!w->first_ns)
        w->first_ns = now;
    w->last_ns = now;
    const char *s = memmem(text, len, "\"sentns\":", 9);
    if (s) {
        long long sent = strtoll(s + 9, NULL, 10);
        long long d = (now - sent) / 1000 / HIST_US;
        if (d < 0)
            d = 0;
        if (d >= HIST_N)
            w->overflow++;
        else
            w->hist[d]++;
        w->samples++;
    }
}

/* One text message (firehose) or one line of a message (Centrifugo batches replies and pushes
 * into one frame, newline-separated). */
static void on_text(worker *w, conn *c, const char *text, size_t len, long long now)
{
    if (proto == PROTO_FIREHOSE) {
        if (len > 13 && !memcmp(text, "{\"op\":\"event\"", 13)) {
            delivered(w, c, text, len, now);
        } else if (len > 18 && !memcmp(text, "{\"op\":\"subscribed\"", 18)) {
            if (!c->subscribed++)
                atomic_fetch_add(&subscribed_total, 1);
        } else if (memmem(text, len, "\"op\":\"error\"", 12)) {
            w->errors++;
            record_error("error", text, len);
        }
        return;
    }
    if (len == 2 && text[0] == '{' && text[1] == '}') {
        send_frame(c, FH_WS_OP_TEXT, "{}", 2); /* Centrifugo's application-level ping */
        return;
    }
    if (len > 8 && !memcmp(text, "{\"push\":", 8)) {
        if (memmem(text, len, "\"pub\":", 6))
            delivered(w, c, text, len, now);
        return;
    }
    if (memmem(text, len, "\"error\":", 8)) {
        w->errors++;
        record_error("error", text, len);
        return;
    }
    if (memmem(text, len, "\"id\":2", 6) && memmem(text, len, "\"subscribe\"", 11)) {
        if (!c->subscribed++)
            atomic_fetch_add(&subscribed_total, 1);
    }
}

static void on_readable(worker *w, conn *c)
{
    for (int rounds = 0; rounds < 16 && c->state != ST_CLOSED; rounds++) {
        ssize_t r = read(c->fd, w->rbuf, RBUF);
        if (r == 0) {
            conn_close(w, c, 1006); /* closed without a close frame */
            return;
        }
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_close(w, c, 1006);
            return;
        }
        long long now = now_real();
        w->wire_bytes += r;
        const unsigned char *p = w->rbuf;
        size_t left = (size_t)r;
        if (c->state == ST_HANDSHAKE) {
            size_t take = left;
            if (c->head_len + take > sizeof(c->head) - 1)
                take = sizeof(c->head) - 1 - c->head_len;
            memcpy(c->head + c->head_len, p, take);
            c->head_len += take;
            c->head[c->head_len] = 0;
            char *eoh = strstr(c->head, "\r\n\r\n");
            if (!eoh) {
                if (c->head_len >= sizeof(c->head) - 1)
                    conn_close(w, c, 1);
                continue;
            }
            size_t hl = (size_t)(eoh + 4 - c->head);
            int status = 0;
            char err[256];
            c->deflate = want_deflate;
            if (fh_wsc_check_response_ext(c->head, hl, WS_KEY, &status, &c->deflate, err,
                                          sizeof(err))) {
                record_error("upgrade refused", err, strlen(err));
                conn_close(w, c, (unsigned)(status ? status : 1));
                return;
            }
            /* Bytes after the head are already WebSocket frames. */
            size_t used = hl - (c->head_len - take);
            p += used;
            left -= used;
            c->state = ST_OPEN;
            if (c->deflate)
                fh_ws_parser_allow_compressed(&c->parser);
            w->handshaking--;
            atomic_fetch_add(&open_total, 1);
            send_subscribe(c);
        }
        while (left && c->state == ST_OPEN) {
            size_t consumed = 0;
            fh_ws_msg m;
            int res = fh_ws_parse(&c->parser, p, left, &consumed, &m);
            p += consumed;
            left -= consumed;
            if (res == FH_WS_NEED_MORE)
                break;
            if (res == FH_WS_MESSAGE) {
                if (m.opcode != FH_WS_OP_TEXT)
                    continue;
                const char *t = (const char *)m.data;
                size_t tl = m.len;
                if (m.compressed) {
                    const unsigned char *o;
                    char zerr[128];
                    if (fh_inflate_message(w->zi, m.data, m.len, 4 << 20, &o, &tl, zerr,
                                           sizeof(zerr))) {
                        record_error("inflate", zerr, strlen(zerr));
                        conn_close(w, c, 1007);
                        return;
                    }
                    t = (const char *)o;
                    w->inflated++;
                }
                if (proto == PROTO_CENTRIFUGO) {
                    while (tl) {
                        const char *nl = memchr(t, '\n', tl);
                        size_t ll = nl ? (size_t)(nl - t) : tl;
                        if (ll)
                            on_text(w, c, t, ll, now);
                        if (!nl)
                            break;
                        tl -= ll + 1;
                        t = nl + 1;
                    }
                } else {
                    on_text(w, c, t, tl, now);
                }
            } else if (res == FH_WS_PING) {
                send_frame(c, FH_WS_OP_PONG, (const char *)m.data, m.len);
            } else if (res == FH_WS_CLOSE) {
                conn_close(w, c, m.close_code);
                return;
            } else if (res == FH_WS_ERROR) {
                record_error("protocol error", m.reason ? m.reason : "",
                             m.reason ? strlen(m.reason) : 0);
                conn_close(w, c, 1002);
                return;
            }
        }
        if ((size_t)r < RBUF)
            return;
    }
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    struct epoll_event evs[256];
    long long t_end = now_mono() + max_ns;
    for (;;) {
        while (w->next_connect < w->nconns && w->handshaking < MAX_HANDSHAKING)
            start_connect(w, w->conns[w->next_connect++]);
        if (stop_flag || now_mono() > t_end)
            break;
        int n = epoll_wait(w->epfd, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->state == ST_CONNECTING) {
                on_connected(w, c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
                on_readable(w, c);
        }
        atomic_fetch_add(&delivered_total, w->deliveries - w->published);
        w->published = w->deliveries;
        if (total_want && atomic_load(&delivered_total) >= total_want)
            break;
        long long last = atomic_load(&last_delivery_ns);
        if (w->last_ns > last)
            atomic_store(&last_delivery_ns, w->last_ns);
        if (last && quiet_ns && now_real() - last > quiet_ns)
            break;
    }
    return NULL;
}

static double pct(const uint32_t *hist, long long total, double q)
{
    if (!total)
        return 0;
    long long want = (long long)(q * (double)total), acc = 0;
    if (want < 1)
        want = 1;
    for (long long i = 0; i < HIST_N; i++) {
        acc += hist[i];
        if (acc >= want)
            return (double)(i * HIST_US + HIST_US / 2) / 1000.0;
    }
    return 30000.0;
}

static char **read_lines(const char *file, size_t *count)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return NULL;
    size_t cap = 1024, n = 0;
    char **v = malloc(cap * sizeof(*v)), line[512];
    while (v && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || strchr(line, '"') || strchr(line, '\\'))
            continue;
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof(*v));
        if (v)
            v[n++] = strdup(line);
    }
    fclose(f);
    *count = n;
    return v;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadclient --url ws://127.0.0.1:PORT/PATH --builders FILE --filtered N "
                    "--full M [--proto firehose|centrifugo] [--threads T] [--max-s S] "
                    "[--quiet-ms MS] [--ready-file F] [--deflate 1] [--from JSON] [--total N]\n");
    exit(64);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *builders = NULL, *ready_file = NULL;
    long filtered = 0, full = 0, threads = 2;
    double max_s = 120, quiet_ms = 3000;
    for (int i = 1; i + 1 < argc || (i < argc && (usage(), 0)); i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--url"))
            url = v;
        else if (!strcmp(a, "--builders"))
            builders = v;
        else if (!strcmp(a, "--filtered"))
            filtered = atol(v);
        else if (!strcmp(a, "--full"))
            full = atol(v);
        else if (!strcmp(a, "--threads"))
            threads = atol(v);
        else if (!strcmp(a, "--max-s"))
            max_s = atof(v);
        else if (!strcmp(a, "--quiet-ms"))
            quiet_ms = atof(v);
        else if (!strcmp(a, "--ready-file"))
            ready_file = v;
        else if (!strcmp(a, "--total"))
            total_want = atoll(v);
        else if (!strcmp(a, "--from") && strlen(v) < 200)
            from_json = v;
        else if (!strcmp(a, "--deflate"))
            want_deflate = atoi(v) != 0;
        else if (!strcmp(a, "--proto"))
            proto = !strcmp(v, "centrifugo") ? PROTO_CENTRIFUGO : PROTO_FIREHOSE;
        else
            usage();
    }
    if (!url || threads < 1 || threads > MAX_THREADS || filtered < 0 || full < 0 ||
        filtered + full == 0 || (filtered && !builders))
        usage();
    fh_wsc_url u;
    char err[256];
    if (fh_wsc_url_parse(url, &u, err, sizeof(err))) {
        fprintf(stderr, "loadclient: %s\n", err);
        return 64;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(u.port));
    if (inet_pton(AF_INET, u.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadclient: %s: only IPv4 literals\n", u.host);
        return 64;
    }
    snprintf(host_hdr, sizeof(host_hdr), "%s:%s", u.host, u.port);
    snprintf(path, sizeof(path), "%s", u.path);
    size_t nnames = 0;
    char **names = filtered ? read_lines(builders, &nnames) : NULL;
    if (filtered && !nnames) {
        fprintf(stderr, "loadclient: no builder names in %s\n", builders ? builders : "");
        return 64;
    }
    max_ns = (long long)(max_s * 1e9);
    quiet_ns = (long long)(quiet_ms * 1e6);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    total_conns = (size_t)(filtered + full);
    conn *conns = calloc(total_conns, sizeof(*conns));
    worker ws[MAX_THREADS];
    memset(ws, 0, sizeof(ws));
    for (long t = 0; t < threads; t++) {
        ws[t].id = (int)t;
        ws[t].epfd = epoll_create1(EPOLL_CLOEXEC);
        ws[t].conns = calloc(total_conns, sizeof(conn *));
        ws[t].hist = calloc(HIST_N, sizeof(uint32_t));
        ws[t].rbuf = malloc(RBUF);
        ws[t].zi = fh_inflater_new();
        if (!ws[t].conns || !ws[t].hist || !ws[t].rbuf || !ws[t].zi) {
            fprintf(stderr, "loadclient: out of memory\n");
            return 1;
        }
    }
    for (size_t i = 0; i < total_conns; i++) {
        conn *c = &conns[i];
        c->fd = -1;
        c->full = i >= (size_t)filtered;
        c->name = c->full ? NULL : names[i % nnames];
        fh_ws_parser_init_client(&c->parser, 4 << 20);
        worker *w = &ws[i % (size_t)threads];
        c->thread = w->id;
        w->conns[w->nconns++] = c;
    }
    long long t0 = now_mono();
    for (long t = 0; t < threads; t++)
        pthread_create(&ws[t].th, NULL, worker_run, &ws[t]);
    /* Wait for every subscription, then say so. */
    int ready = 0;
    while (!stop_flag && now_mono() - t0 < max_ns) {
        if ((size_t)atomic_load(&subscribed_total) == total_conns) {
            fprintf(stderr, "loadclient: ready: %zu connections subscribed in %.2f s\n",
                    total_conns, (double)(now_mono() - t0) / 1e9);
            if (ready_file) {
                FILE *f = fopen(ready_file, "w");
                if (f)
                    fclose(f);
            }
            ready = 1;
            break;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    if (!ready)
        fprintf(stderr, "loadclient: only %ld of %zu connections subscribed\n",
                atomic_load(&subscribed_total), total_conns);
    for (long t = 0; t < threads; t++)
        pthread_join(ws[t].th, NULL);

    /* ---- merge and report ---- */
    long long deliveries = 0, nfilt = 0, nfull = 0, errors = 0, samples = 0, overflow = 0;
    long long first = 0, last = 0, full_min = -1, full_max = 0, disconnects = 0, nsub = 0;
    long long wire = 0, inflated = 0;
    for (long t = 0; t < threads; t++) {
        worker *w = &ws[t];
        wire += w->wire_bytes;
        inflated += w->inflated;
        fh_inflater_free(w->zi);
        deliveries += w->deliveries;
        nfilt += w->filtered;
        nfull += w->full;
        errors += w->errors;
        samples += w->samples;
        overflow += w->overflow;
        if (w->first_ns && (!first || w->first_ns < first))
            first = w->first_ns;
        if (w->last_ns > last)
            last = w->last_ns;
        if (t > 0)
            for (long long i = 0; i < HIST_N; i++)
                ws[0].hist[i] += w->hist[i];
    }
    unsigned codes[16] = {0};
    long long code_n[16] = {0};
    int ncodes = 0;
    for (size_t i = 0; i < total_conns; i++) {
        conn *c = &conns[i];
        nsub += c->subscribed > 0;
        if (c->full) {
            if (full_min < 0 || c->deliveries < full_min)
                full_min = c->deliveries;
            if (c->deliveries > full_max)
                full_max = c->deliveries;
        }
        if (c->state == ST_CLOSED || c->state == ST_IDLE) {
            disconnects++;
            int k = 0;
            while (k < ncodes && codes[k] != c->close_code)
                k++;
            if (k == ncodes && ncodes < 16)
                codes[ncodes++] = c->close_code;
            if (k < 16)
                code_n[k]++;
        }
        if (c->fd >= 0)
            close(c->fd);
        fh_ws_parser_free(&c->parser);
    }
    char codebuf[256] = "-";
    size_t off = 0;
    for (int k = 0; k < ncodes && off < sizeof(codebuf) - 32; k++)
        off += (size_t)snprintf(codebuf + off, sizeof(codebuf) - off, "%s%u:%lld", k ? "," : "",
                                codes[k], code_n[k]);
    double span = last > first ? (double)(last - first) / 1e9 : 0;
    double maxv = 0;
    for (long long i = HIST_N - 1; i >= 0; i--)
        if (ws[0].hist[i]) {
            maxv = (double)(i * HIST_US + HIST_US) / 1000.0;
            break;
        }
    if (overflow)
        maxv = 30000.0;
    printf("loadclient: conns=%zu subscribed=%lld deliveries=%lld filtered=%lld full=%lld "
           "full_min=%lld full_max=%lld first_ns=%lld last_ns=%lld deliveries_per_s=%.0f "
           "disconnects=%lld close_codes=%s errors=%lld samples=%lld p50_ms=%.2f p99_ms=%.2f "
           "p999_ms=%.2f max_ms=%.2f wire_bytes=%lld inflated=%lld\n",
           total_conns, nsub, deliveries, nfilt, nfull, full_min < 0 ? 0 : full_min, full_max,
           first, last, span > 0 ? (double)deliveries / span : 0.0, disconnects, codebuf, errors,
           samples, pct(ws[0].hist, samples, 0.50), pct(ws[0].hist, samples, 0.99),
           pct(ws[0].hist, samples, 0.999), maxv, wire, inflated);
    return 0;
}
