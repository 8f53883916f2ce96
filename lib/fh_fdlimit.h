/* fh_fdlimit: fitting the broker's connection limits into its file descriptors.
 *
 * Every HTTP connection, and so every WebSocket and SSE client, holds a descriptor; so do Kafka's
 * sockets and wake-up pipes, SQLite's files, curl's webhook sockets, epoll and eventfds, and the
 * log. A limit above what RLIMIT_NOFILE allows is a limit the broker cannot keep: accept() fails
 * with EMFILE instead. At start-up the broker raises its soft limit to the hard one, counts what
 * it already holds, keeps FH_FDLIMIT_RESERVE for what opens later, and lowers
 * http.max_connections and stream.max_connections to what is left (fh_fdlimit_fit, a pure
 * function, unit tested). */
#ifndef FH_FDLIMIT_H
#define FH_FDLIMIT_H

/* Descriptors kept free beyond those open when the limits are fitted: Kafka connections made
 * later (a client connects to each broker it needs), the stream's catch-up consumer, SQLite read
 * connections opened on demand, webhook transfers, libmicrohttpd's per-thread epoll and eventfds.
 * The broker answers 503 rather than hang when they run out nonetheless. */
#define FH_FDLIMIT_RESERVE 64

/* Raises the soft RLIMIT_NOFILE to the hard limit (to /proc/sys/fs/nr_open when the hard limit is
 * unlimited). *before and *after get the soft limit before and after (equal when it could not
 * be raised), *hard the hard limit. Returns 0, or -1 when the limits cannot be read. */
int fh_fdlimit_raise(long long *before, long long *after, long long *hard);

/* Descriptors this process holds (entries of /proc/self/fd), or -1 when they cannot be counted. */
long long fh_fdlimit_open(void);

/* Fits the connection limits into limit descriptors, open of them in use and FH_FDLIMIT_RESERVE
 * kept. per_stream is what one stream connection holds: 1, or 3 under TLS (libmicrohttpd relays
 * an upgraded TLS connection through a socket pair). When http_max connections, per_stream - 1
 * more for each of stream_max, do not fit, lowers *stream_max to leave a share of what fits
 * (an eighth, at least 16) to REST and health checks, then *http_max to the rest, so the stream
 * refuses clients (4029) before the port stops accepting. Neither drops below 1. Returns 1 when
 * it lowered either, else 0 (the limits fit as configured). */
int fh_fdlimit_fit(long long limit, long long open, int per_stream, long long *http_max,
                   long long *stream_max);

#endif
