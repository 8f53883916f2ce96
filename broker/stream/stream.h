/* stream: live fan-out of the event topics over WebSocket (/v1/stream) and Server-Sent Events
 * (/v1/events), with filters, resumable cursors, bounded per-client queues and a bounded window
 * of recent events. See docs/stream.md for the protocol and docs/architecture.md for threads. */
#ifndef FH_BROKER_STREAM_H
#define FH_BROKER_STREAM_H

#include "broker.h"
#include "http.h"

/* clang-format off */
#define FH_STREAM_CFG                                                                              \
    {"stream.ring_events", NULL, FH_CFG_INT, "200000", 100, 100000000,                             \
     "recent events kept in memory for resume (older resumes read Kafka)"},                        \
    {"stream.ring_bytes", NULL, FH_CFG_INT, "33554432", 1048576, 68719476736LL,                    \
     "bytes of recent events kept in memory"},                                                     \
    {"stream.client_queue_bytes", NULL, FH_CFG_INT, "4194304", 4096, 1073741824,                   \
     "outbound queue per client; a client past it is disconnected as a slow consumer"},            \
    {"stream.total_queue_bytes", NULL, FH_CFG_INT, "536870912", 65536, 68719476736LL,              \
     "outbound bytes queued for all clients together; past it the largest queue is dropped"},      \
    {"stream.max_connections", NULL, FH_CFG_INT, "20000", 1, 1000000,                              \
     "stream connections (WebSocket + SSE) at most; lowered at start-up below "                    \
     "http.max_connections when RLIMIT_NOFILE does not allow both"},                               \
    {"stream.max_subscriptions", NULL, FH_CFG_INT, "64", 1, 10000,                                 \
     "subscriptions per WebSocket connection"},                                                    \
    {"stream.max_message_bytes", NULL, FH_CFG_INT, "65536", 256, 16777216,                         \
     "largest client WebSocket message"},                                                          \
    {"stream.heartbeat_s", NULL, FH_CFG_INT, "15", 1, 3600,                                        \
     "SSE comment heartbeat and WebSocket ping interval"},                                         \
    {"stream.catchup_max", NULL, FH_CFG_INT, "32", 1, 10000,                                       \
     "resumes read from Kafka at once; more are refused with busy (retry)"},                       \
    {"stream.catchup_batch_events", NULL, FH_CFG_INT, "512", 16, 65536,                            \
     "events of one resume the catch-up reader hands to the stream thread in one batch at most"},  \
    {"stream.catchup_batches", NULL, FH_CFG_INT, "2", 1, 64,                                       \
     "batches of one resume in flight (one delivered while the next fills)"},                      \
    {"stream.catchup_detach_ms", NULL, FH_CFG_INT, "250", 0, 60000,                                \
     "how long the shared catch-up reader waits for a resume whose client reads slowly; then it "  \
     "leaves it behind, and the resume goes on from its own position once the client reads"},     \
    {"stream.catchup_rewind_events", NULL, FH_CFG_INT, "20000", 0, 100000000,                      \
     "records a resume may be behind the catch-up reader and still join its pass (the reader "     \
     "steps back to it); further behind it starts with the next pass"},                           \
    {"stream.catchup_prefetch_kib", NULL, FH_CFG_INT, "65536", 1024, 2097151,                      \
     "records the catch-up reader's Kafka consumer fetches ahead, KiB at most (while a resume "    \
     "reads; smaller bounds slow catch-ups: 4 MiB read a backlog at an eighth of 64 MiB's rate)"}, \
    {"stream.drain_grace_ms", NULL, FH_CFG_INT, "500", 0, 60000,                                   \
     "how long a client past stream.client_queue_bytes may hold the stream while it drains"},      \
    {"stream.close_timeout_ms", NULL, FH_CFG_INT, "5000", 100, 600000,                             \
     "how long a WebSocket client the broker closed may take to read its close frame before "      \
     "the socket is dropped"},                                                                     \
    {"stream.permessage_deflate", NULL, FH_CFG_BOOL, "true", 0, 0,                                 \
     "offer RFC 7692 permessage-deflate on /v1/stream to clients that ask for it (events "         \
     "compressed once each, shared by every compressed subscriber)"},                              \
    {"stream.deflate_level", NULL, FH_CFG_INT, "6", 1, 9,                                          \
     "zlib level for permessage-deflate (1 fastest, 9 smallest)"},                                 \
    {"stream.nice", NULL, FH_CFG_INT, "-5", -20, 19,                                               \
     "scheduling niceness of the stream thread and its Kafka consumer's threads (below 0 needs "   \
     "CAP_SYS_NICE; without it they stay at the process's own)"}
/* clang-format on */

typedef struct fh_stream fh_stream;

/* Starts the stream thread and its Kafka consumer (every partition of the events and logs
 * topics, from their current end). */
fh_err fh_stream_start(fh_broker *b, fh_stream **out, char *errbuf, size_t errsize);

/* Lowers stream.max_connections to max (main.c fits it to the file descriptors). Call before the
 * HTTP server starts: the stream thread reads it as connections arrive. */
void fh_stream_set_max_connections(fh_stream *s, int max);

/* Outbound bytes queued for all clients now (what stream.total_queue_bytes caps). Any thread. */
size_t fh_stream_queued_bytes(fh_stream *s);

#define FH_STREAM_ROUTES 2
/* Writes the stream's routes (GET /v1/stream, GET /v1/events) into routes; returns how many. */
size_t fh_stream_routes(fh_stream *s, fh_http_route *routes);

/* Closes every client with "shutting down" (1001) and stops the threads. Call before stopping
 * the HTTP server (which waits for upgraded sockets), then fh_stream_free after it. */
void fh_stream_stop(fh_stream *s);
/* Frees everything (stops first if needed). SSE responses still held by the HTTP server post to
 * the stream when destroyed, so free only once the HTTP server is stopped. */
void fh_stream_free(fh_stream *s);

#endif
