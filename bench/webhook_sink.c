/* webhook_sink: the webhook benchmark's receiver. An epoll HTTP/1.1 keep-alive server on
 * 127.0.0.1 that answers every request with 204 and counts requests that carry webhook-id,
 * webhook-timestamp and webhook-signature headers. It prints "port=N" once listening, and
 * "requests=N signed=N" on SIGTERM/SIGINT and every time it reads a line on stdin.
 *
 * Build: cc -O2 -o build/bench/webhook_sink bench/webhook_sink.c
 * Usage: webhook_sink [PORT]   (0 or nothing: any free port) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define MAX_CONN 65536

typedef struct conn {
    char *buf;
    size_t len;
} conn;

static volatile sig_atomic_t stop;
static conn *conns[MAX_CONN];
static unsigned long long requests, signed_requests;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void report(void)
{
    printf("requests=%llu signed=%llu\n", requests, signed_requests);
    fflush(stdout);
}

/* Consumes complete requests from c; returns how many responses to send, -1 on bad input. */
static int parse(conn *c)
{
    int n = 0;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return n;
        size_t head = (size_t)(end - c->buf) + 4, body = 0;
        int sig = 0;
        for (char *p = c->buf; p < end;) {
            char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
            if (!eol)
                break;
            if (strncasecmp(p, "content-length:", 15) == 0)
                body = strtoul(p + 15, NULL, 10);
            else if (strncasecmp(p, "webhook-id:", 11) == 0 ||
                     strncasecmp(p, "webhook-timestamp:", 18) == 0 ||
                     strncasecmp(p, "webhook-signature: v1,", 22) == 0)
                sig++;
            p = eol + 2;
        }
        if (head + body > BUF)
            return -1;
        if (c->len < head + body)
            return n;
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
        requests++;
        if (sig == 3)
            signed_requests++;
        n++;
    }
}

int main(int argc, char **argv)
{
    static const char resp[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    static char out[64 * sizeof(resp)];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(argc > 1 ? atoi(argv[1]) : 0)};
    int one = 1, ep, ls;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if ((ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 4096)) {
        perror("webhook_sink: listen");
        return 1;
    }
    socklen_t al = sizeof(a);
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("port=%d\n", ntohs(a.sin_port));
    fflush(stdout);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    ev.data.fd = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, 500);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int cfd;
                while ((cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (cfd >= MAX_CONN) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conns[cfd] = calloc(1, sizeof(conn));
                    conns[cfd]->buf = malloc(BUF);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
                }
                continue;
            }
            if (fd == 0) {
                char line[256];
                if (!fgets(line, sizeof(line), stdin))
                    epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
                report();
                continue;
            }
            conn *c = conns[fd];
            int dead = 0;
            for (;;) {
                ssize_t k = read(fd, c->buf + c->len, BUF - c->len);
                if (k > 0) {
                    c->len += (size_t)k;
                    int r = parse(c);
                    if (r < 0) {
                        dead = 1;
                        break;
                    }
                    while (r > 0) {
                        int m = r > 64 ? 64 : r;
                        for (int j = 0; j < m; j++)
                            memcpy(out + j * (sizeof(resp) - 1), resp, sizeof(resp) - 1);
                        /* tiny responses on loopback: a short write means a dead peer */
                        if (write(fd, out, (size_t)m * (sizeof(resp) - 1)) < 0)
                            dead = 1;
                        r -= m;
                    }
                    if (c->len == BUF)
                        dead = 1;
                    continue;
                }
                if (k == 0 || (errno != EAGAIN && errno != EINTR))
                    dead = 1;
                break;
            }
            if (dead) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                free(c->buf);
                free(c);
                conns[fd] = NULL;
            }
        }
    }
    report();
    return 0;
}
