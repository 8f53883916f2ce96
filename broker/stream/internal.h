/* stream/internal.h: what the files of the stream module share, and nothing outside it
 * includes. The module as a whole is described in stream.c; docs/architecture.md draws its
 * threads. */
#ifndef FH_STREAM_INTERNAL_H
#define FH_STREAM_INTERNAL_H

#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "fh_consumer.h"
#include "fh_cursor.h"
#include "fh_deflate.h"
#include "fh_log.h"
#include "fh_loop.h"
#include "fh_lost.h"
#include "fh_util.h"
#include "fh_ws.h"
#include "fh_wsmsg.h"
#include "health.h"

#define MAX_PARTS FH_CURSOR_MAX_PARTS /* events and logs topics together; more: start fails */
#define HEAD_MAX 176 /* inline head of a delivery; longer heads get a bigger qent */
#define WS_HEADER_MAX 10
#define CURSOR_MAX FH_CURSOR_SIZE(MAX_PARTS)
#define INDEX_BUCKETS 8192
#define IOV_BATCH 128
#define KAFKA_BATCH 512
#define QFREE_MAX 8192 /* delivery entries kept for reuse by the stream thread */
/* A connection may hold the stream (drain a burst) for up to HOLD_BURSTS x stream.drain_grace_ms
 * in all, earning it back at 1/HOLD_SHARE of the time: one that keeps everybody waiting more than
 * that in the long run (it reads a little slower than events come) is a slow consumer too. */
#define HOLD_BURSTS 4
#define HOLD_SHARE 20

/* WebSocket close codes (docs/stream.md). */
enum {
    CLOSE_NORMAL = 1000,
    CLOSE_SHUTDOWN = 1001,
    CLOSE_PROTOCOL = 1002,
    CLOSE_TOO_BIG = 1009,
    CLOSE_INTERNAL = 1011,
    CLOSE_BAD_REQUEST = 4000,
    CLOSE_UNAUTHORIZED = 4001,
    CLOSE_SLOW_CONSUMER = 4008,
    CLOSE_TOO_MANY = 4029,
};

/* ---- events -----------------------------------------------------------------------------------
 */

/* One event as the stream holds it. Immutable once built (sse is filled lazily by the stream
 * thread before its first use and never changes afterwards). Freed when refs reaches 0. */
typedef struct sev {
    _Atomic int refs;
    fh_event_type type;
    fh_filter_facts facts; /* what filters and the routing index read: no parse tree is kept */
    int part;              /* index into the partition table */
    int64_t offset;
    uint64_t seq; /* position in the ring's merged order (0 for catch-up events) */
    char *tail;   /* `","cursor":"C","event":RAW}` (in this block, after the struct); the cursor
                   * part is absent for catch-up events */
    size_t tail_len, b_off;  /* tail + b_off starts `,"event":` */
    size_t raw_off, raw_len; /* the CloudEvent bytes inside tail */
    char *sse;               /* "event: T\ndata: RAW\n\n" */
    size_t sse_len;
    size_t bytes;         /* what this event costs in memory, for the caps */
    int in_ring;          /* counted in the ring's bytes (stream thread only) */
    fh_deflate_cache *zc; /* permessage-deflate forms, made by the stream thread on first use */
    /* live events: when the stream thread took the record from Kafka (fh_mono_ns), and how long
     * after its Kafka timestamp that was (ns, -1: no timestamp); 0 and -1 for catch-up events */
    uint64_t taken_ns;
    int64_t kafka_ns;
} sev;

static inline void sev_unref(sev *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1) {
        fh_filter_facts_free(&e->facts);
        free(e->sse);
        fh_deflate_cache_free(e->zc);
        free(e);
    }
}

static inline sev *sev_ref(sev *e)
{
    atomic_fetch_add(&e->refs, 1);
    return e;
}

/* ---- outbound queues --------------------------------------------------------------------------
 */

/* One delivery: a per-recipient head and an optional shared segment of an event. The head is
 * allocated with the entry (qent_new), at least HEAD_MAX bytes. */
typedef struct qent {
    struct qent *next;
    sev *ev;            /* reference held, or NULL */
    const char *shared; /* inside ev's buffers */
    size_t shared_len;
    size_t head_len;
    size_t done;        /* bytes already written of head + shared */
    uint64_t queued_ns; /* a live delivery: when it was routed (fh_mono_ns); else 0 */
    int small;          /* the head holds exactly HEAD_MAX bytes: reusable (qent_put) */
    char head[];
} qent;

/* A zeroed entry whose head holds head_cap bytes (HEAD_MAX at least); NULL when out of memory.
 * Freed with free() after sev_unref(e->ev). */
static inline qent *qent_new(size_t head_cap)
{
    qent *e = calloc(1, sizeof(qent) + (head_cap > HEAD_MAX ? head_cap : HEAD_MAX));
    if (e)
        e->small = head_cap <= HEAD_MAX;
    return e;
}

typedef struct outq {
    qent *first, *last;
    size_t bytes;
} outq;

/* ---- connections and subscriptions ------------------------------------------------------------
 */

enum { SUB_LIVE = 0, SUB_REPLAY, SUB_CATCHUP };
enum { CONN_WS = 0, CONN_SSE };

typedef struct conn conn;

typedef struct sub {
    conn *c;
    char id[65];
    fh_filter filter;
    int state;
    int64_t *progress;   /* next offset per partition this subscriber still needs */
    int own_cursors;     /* 1: build a cursor per delivery from progress (replay, catch-up) */
    uint64_t replay_seq; /* next ring seq to replay */
    uint64_t mark;       /* last event seq routed to this sub (dedupes index hits) */
    sev **pend; /* catch-up: the batch from Kafka still to stream_deliver (paced like a replay) */
    size_t npend, ipend;
    int64_t *done_vec;  /* catch-up: where the job ended, once it has (applied after pend) */
    int64_t *pend_upto; /* catch-up: the job's position after pend (applied after pend) */
    struct cjob *cj;    /* catch-up: the job (a reference), or NULL */
    int pend_batches;   /* catch-up: batches wholly queued whose credit is still owed */
    size_t *pend_ends;  /* catch-up: where each batch still in pend ends, oldest first */
    size_t nends, capends;
    int indexed; /* how it is registered in the routing index */
    struct sub *next_in_conn;
} sub;

struct conn {
    int kind;
    int fd;                                /* WebSocket socket; -1 for SSE */
    struct MHD_UpgradeResponseHandle *urh; /* WebSocket */
    struct MHD_Connection *mhd;            /* SSE */
    const fh_principal *who;
    int cloudevents; /* WebSocket subprotocol cloudevents.json */
    int deflate;     /* permessage-deflate negotiated (see deliver_deflated) */
    fh_ws_parser parser;
    outq q;
    sub *subs;
    int nsubs;
    int closing;                          /* close frame queued; drop after flushing */
    int64_t closing_ms;                   /* when (WebSocket): dropped unflushed after a while */
    int want_write;                       /* EPOLLOUT armed */
    _Atomic int want_room;                /* a replay or catch-up waits for the queue to drain */
    int64_t over_ms;                      /* when the queue passed the cap (0: it has not) */
    int64_t hold_budget_ms, hold_seen_ms; /* how long it may still hold the stream, as of when */
    conn *next_over;                      /* s->over: the connections holding the stream */
    int dirty;                            /* queued since the last flush */
    conn *next_dirty;
    conn *prev, *next; /* all connections */
    int64_t last_active_ms;
    /* SSE only: shared with libmicrohttpd's reader thread under mu */
    pthread_mutex_t mu;
    int sse_waiting, sse_gone, sse_end;
    _Atomic int refs; /* SSE: the stream thread and the MHD response */
    int registered;   /* linked into the stream's list */
    fh_loop_io io;    /* WebSocket: the socket on the stream thread's loop */
    int dropped;      /* unlinked by conn_drop; its memory lives until the pass ends (reap) */
    conn *next_dead;  /* s->dead */
    fh_stream *owner;
    /* SSE request, parsed in the handler */
    fh_filter sse_filter;
    char *sse_from; /* owned; NULL: latest */
};

/* ---- routing index: (field, value) -> subscriptions --------------------------------------------
 */

typedef struct ientry {
    struct ientry *next;
    int field;
    char *value;
    void **items;
    size_t n, cap;
} ientry;

/* An index of items (subscriptions or catch-up jobs), each under the most selective exact-match
 * clause of its filter, or in wild when it has none. One thread's. */
typedef struct findex {
    ientry *buckets[INDEX_BUCKETS];
    void **wild;
    size_t nwild, capwild;
    int field_used[FH_F__COUNT];
} findex;

/* ---- inbox: what other threads hand to the stream thread ----------------------------------------
 */

enum { IN_WS = 0, IN_SSE, IN_SSE_GONE, IN_CATCHUP_BATCH, IN_CATCHUP_DONE, IN_CATCHUP_FAIL };

typedef struct inmsg {
    struct inmsg *next;
    int kind;
    conn *c;
    sev **evs;
    size_t nevs;
    int64_t *vec;   /* BATCH: the resolved start; DONE: progress; FAIL: earliest cursor */
    int64_t *upto;  /* BATCH: the job's position after the batch's events */
    struct cjob *j; /* the catch-up job (a reference) */
    char error[256];
    char extra[1024]; /* WebSocket bytes MHD read past the request */
    size_t extra_len;
} inmsg;

/* ---- catch-up jobs ----------------------------------------------------------------------------
 */

/* One resume read from Kafka. Shared by the stream thread (through its subscription) and the
 * catch-up thread, and referenced by each inbox message about it: freed by the last
 * stream_cjob_unref. Fields under "catch-up thread" are that thread's alone. */
typedef struct cjob {
    struct cjob *next; /* s->jobs_first: queued, under s->cmu */
    _Atomic int refs;
    int64_t *from,
        *to;          /* per partition: read [from, to); from is resolved by the catch-up thread */
    fh_filter filter; /* a copy of the subscription's, for the catch-up thread */
    sub *owner;       /* the stream thread's: its subscription, NULL once that is gone */
    _Atomic int
        credit; /* batches the stream thread takes (stream.catchup_batches in flight at most) */
    _Atomic int cancel;
    /* catch-up thread */
    struct cjob *anext; /* the active jobs */
    int64_t *pos;       /* next offset it needs per partition (riding: at least the reader's) */
    int64_t *earliest;  /* what Kafka keeps, for cursor_expired */
    int riding;         /* attached to the shared pass (in the jobs' index) */
    int indexed;
    sev **evs; /* the open batch (NULL: none, waiting for credit) */
    size_t n;
    int64_t stall_ms; /* since when a record waits for this job's credit (0: none) */
    int64_t posted;   /* sum of pos when a batch was last posted */
    int detached;     /* left behind for want of credit, not attached since */
} cjob;

struct fh_stream {
    fh_broker *b;
    pthread_t thread, cthread;
    fh_loop *loop; /* the stream thread's; other threads only fh_loop_wake it */
    int kafka_efd; /* librdkafka signals a non-empty queue here */
    fh_loop_io kafka_io;
    _Atomic int stop;
    fh_consumer *kc; /* position policy, from the end; rk and rkq are its handle and queue */
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkq;
    /* partitions, in the order the stream took them on: those of the events and the logs topic
     * at start (cursor order), then those added to either topic while it ran, appended. Only the
     * stream thread changes them; nparts is stored after the partition it counts, so the other
     * threads read a consistent prefix. Every partition vector has vec_cap entries. */
    int nparts;
    int vec_cap;
    char *part_topic[MAX_PARTS];
    int part_id[MAX_PARTS];
    /* cursor order: wire[i] is the partition of cursor entry i (identity until one was added);
     * layouts: the partition counts the stream has read, oldest first (fh_cursor_decode_grown).
     * layout_mu: the stream thread changes them, HTTP threads read them to check a cursor. */
    int wire[MAX_PARTS];
    int wire_identity;
    fh_cursor_layout layouts[16];
    int nlayouts;
    pthread_mutex_t layout_mu;
    int64_t wvec[MAX_PARTS]; /* the stream thread's scratch, a vector in cursor order */
    _Atomic int seen_counts[FH_CONSUMER_MAX_TOPICS]; /* the catch-up thread's last look */
    int check_ms;                                    /* kafka.partition_check_ms */
    int64_t hw[MAX_PARTS];         /* next offset after the newest ring event, per partition */
    int64_t evicted_hw[MAX_PARTS]; /* events below this were evicted (or predate the start) */
    /* ring */
    sev **ring; /* ring_slots slots, grown up to ring_cap (stream.ring_events) */
    size_t ring_cap, ring_slots, ring_count, ring_head; /* ring_head: slot of the oldest */
    size_t ring_bytes, ring_max_bytes;
    uint64_t next_seq;
    /* clients */
    conn *conns;
    int nconns;
    _Atomic size_t total_queued;
    size_t max_total_queued, client_queue_max;
    int max_conns, max_subs;
    size_t max_message;
    size_t max_event_bytes; /* events.max_bytes */
    fh_json_doc doc;        /* the stream thread's: each record is validated in it */
    char *cur;              /* the stream thread's cursor scratch, CURSOR_MAX bytes */
    int heartbeat_s;
    int nice; /* stream.nice: the stream thread's and its consumer's threads' */
    conn *dirty;
    conn *over; /* queues past client_queue_max, waiting to drain */
    conn *dead; /* dropped this pass; released by stream_reap() once nothing can point at them */
    int64_t drain_grace_ms;
    int64_t close_timeout_ms; /* a closed WebSocket that has not taken its close frame by then */
    qent *qfree;              /* small entries for reuse (stream thread only), QFREE_MAX at most */
    size_t nqfree;
    rd_kafka_message_t *kbatch[KAFKA_BATCH]; /* records taken from Kafka, not yet routed */
    size_t kb_n, kb_i;
    findex idx; /* the live subscriptions' routing index */
    /* inbox */
    pthread_mutex_t inbox_mu;
    inmsg *inbox_first, *inbox_last;
    /* catch-up */
    pthread_mutex_t cmu; /* the job queue and njobs */
    fh_loop *cloop;      /* the catch-up thread's; other threads only fh_loop_wake it */
    cjob *jobs_first, *jobs_last;
    int njobs, max_jobs; /* queued and active jobs */
    /* stream.catchup_*: events per batch, batches in flight per job, how long the reader waits
     * for a job's credit before it detaches it, how far it steps back for a joining job */
    int catchup_batch, catchup_credit;
    int64_t catchup_detach_ms, catchup_rewind;
    int64_t catchup_prefetch_kib; /* the catch-up consumer's queued.max.messages.kbytes */
    fh_metric *m_cu_passes, *m_cu_detaches, *m_cu_rejoins;
    /* metrics */
    fh_metric *m_deliveries, *m_connections, *m_queued, *m_slow, *m_closed_other, *m_ring_events,
        *m_catchups, *m_in, *m_holds, *m_held_ms, *m_ring_bytes, *m_mem_ring;
    /* permessage-deflate: the stream thread's one deflater and one inflater (no connection
     * keeps compression state); NULL when stream.permessage_deflate is off */
    fh_deflater *zd;
    fh_inflater *zi;
    fh_metric *m_z_plain, *m_z_sent;
    fh_metric *m_refused; /* connections refused for want of memory or descriptors */
    /* where a live delivery's time goes (docs/stream.md, Metrics): Kafka timestamp -> taken
     * from the consumer (per record), taken -> routed, routed -> written, timestamp -> written
     * (per delivery) */
    fh_histogram *h_kafka, *h_route, *h_write, *h_total;
    uint64_t batch_ns;     /* when the records in kbatch were taken from Kafka */
    int64_t batch_real_ns; /* the same moment on the wall clock, against Kafka timestamps */
    uint64_t route_ns;     /* when the event being routed started (its deliveries' queued_ns) */
    size_t live_queued;    /* live deliveries queued so far (stream thread only) */
    int64_t held_since_ms; /* when the stream last stopped for a connection past its cap; 0 */
    /* stream_room_service walks the connections only when one may wait for room: set where a
     * replay or catch-up can start or go on (the inbox, client messages), kept while one waits;
     * room_walked_ms bounds the time between walks whatever the flag says */
    int room_check;
    int64_t room_walked_ms;
    int ready;
};

/* ---- across the module's files ------------------------------------------------------------
 */

/* queue.c */
const char *stream_client_text(fh_stream *s, conn *c, const fh_ws_msg *m, size_t *len);
void stream_close_conn(fh_stream *s, conn *c, unsigned code, const char *reason);
void stream_conn_lock(conn *c);
size_t stream_conn_queued(conn *c);
void stream_conn_unlock(conn *c);
/* Counts a delivery whose last byte has just been written (or handed to the HTTP server, SSE)
 * into the write and total histograms; *now (fh_mono_ns) is read on first need. Any thread. */
void stream_delivery_written(fh_stream *s, const qent *e, uint64_t *now);
int stream_deliver(fh_stream *s, sub *u, sev *e, int paced);
void stream_inbox_post(fh_stream *s, inmsg *m);
void stream_q_free_all(fh_stream *s, conn *c);
void stream_qent_put(fh_stream *s, qent *e);
void stream_send_error(fh_stream *s, conn *c, const char *id, const char *code,
                       const char *message);
void stream_send_frame(fh_stream *s, conn *c, int opcode, const char *payload, size_t len);
void stream_send_json(fh_stream *s, conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void stream_sse_send(fh_stream *s, conn *c, const char *text, size_t len);
int stream_sub_matches(const sub *u, const sev *e);
/* The connection's constraint alone: a catch-up job's events already matched u's filter. */
int stream_sub_allowed(const sub *u, const sev *e);
int64_t *stream_vec_new(const fh_stream *s);
/* Raises u's progress to *vec where *vec is ahead, then frees *vec and sets it NULL (no-op when
 * *vec is NULL). */
void stream_progress_raise(const fh_stream *s, sub *u, int64_t **vec);
/* fh_cursor_encode of vec (stream order) in cursor order; the stream thread's. */
size_t stream_cursor_encode(fh_stream *s, const int64_t *vec, char *out, size_t size);
/* fh_wsmsg_from_text when text is not NULL, else fh_wsmsg_from (from NULL: latest), into vec in
 * stream order: a cursor made before partitions were added is read too, those partitions from their
 * beginning (-1). Any thread. */
fh_err stream_from(fh_stream *s, const json_t *from, const char *text, int64_t *vec,
                   fh_wsmsg_from_kind *kind, char *errbuf, size_t errsize);

/* ring.c */
/* Allocates the ring's first slots (stream_start, after ring_cap is set); -1: out of memory. */
int stream_ring_init(fh_stream *s);
/* Bytes of the slot array (the events' own bytes are ring_bytes). Stream thread. */
size_t stream_ring_slot_bytes(const fh_stream *s);
sev *stream_ring_at_seq(fh_stream *s, uint64_t seq);
int stream_ring_covers(const fh_stream *s, const int64_t *vec);
void stream_ring_evict_one(fh_stream *s);
void stream_ring_push(fh_stream *s, sev *e);
sev *stream_sev_build(fh_stream *s, fh_json_doc *doc, const rd_kafka_message_t *m, int part,
                      int with_cursor);
int stream_sev_sse(fh_stream *s, sev *e);

/* index.c */
int stream_findex_add(findex *x, void *item, const fh_filter *f); /* returns how it is indexed */
void stream_findex_remove(findex *x, void *item, const fh_filter *f, int indexed);
void stream_findex_free(findex *x);
/* Calls fn for every candidate item of e (each at most once per indexed value it matches). */
void stream_findex_each(findex *x, sev *e, void (*fn)(void *item, sev *e, void *ctx), void *ctx);
void stream_index_add(fh_stream *s, sub *u);
void stream_index_free(fh_stream *s);
void stream_index_remove(fh_stream *s, sub *u);
void stream_route(fh_stream *s, sev *e);

/* subs.c */
void stream_catchup_step(fh_stream *s, sub *u);
void stream_handle_client_message(fh_stream *s, conn *c, const char *data, size_t len);
int stream_pend_add(sub *u, sev **evs, size_t n);
void stream_pend_clear(sub *u);
void stream_replay_step(fh_stream *s, sub *u);
void stream_sub_remove(fh_stream *s, conn *c, sub *u);
sub *stream_subscribe(fh_stream *s, conn *c, const char *id, fh_filter *filter, const json_t *from);

/* catchup.c */
void *stream_catchup_main(void *arg);
void stream_cjob_unref(cjob *j);
void stream_grant_credit(fh_stream *s, sub *u);
void stream_on_catchup(fh_stream *s, inmsg *m);
int stream_part_index(const fh_stream *s, const char *topic, int partition);
int stream_start_catchup(fh_stream *s, sub *u, int admitted);

/* conn.c */
void stream_conn_drop(fh_stream *s, conn *c);
void stream_conn_unref(conn *c);
void stream_drain_inbox(fh_stream *s);
void stream_flush_dirty(fh_stream *s);
int stream_holds_clear(fh_stream *s);
void stream_on_new_sse(fh_stream *s, conn *c);
void stream_reap(fh_stream *s);
int stream_room_service(fh_stream *s);
int stream_ws_flush(fh_stream *s, conn *c);
void stream_ws_read(fh_stream *s, conn *c);
void stream_conn_io(fh_loop *l, fh_loop_io *io, unsigned what);
void stream_ws_refuse(fh_stream *s, int fd, struct MHD_UpgradeResponseHandle *urh);

#endif
