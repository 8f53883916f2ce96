/* stream: the broker's live fan-out.
 *
 * Threads:
 *  - the stream thread owns everything below: the Kafka consumer that reads every partition of the
 *    events and logs topics, the ring of recent events, the subscriptions and their routing index,
 *    and the WebSocket sockets (epoll). It never blocks on a client.
 *  - libmicrohttpd threads run the HTTP handlers: they check the request, then hand a new
 *    WebSocket socket or SSE client to the stream thread through a mutex-protected inbox and an
 *    eventfd. SSE output is copied out of the client's queue by libmicrohttpd's content reader,
 *    under the client's mutex.
 *  - the catch-up thread serves resumes older than the ring from Kafka, one job at a time, with
 *    flow control from the stream thread (it waits for credit), and posts batches to the inbox.
 *
 * Every event is decoded once, and its wire bytes are built once and shared (reference-counted)
 * by every recipient: a delivery is a small per-recipient head plus a pointer into the shared
 * bytes, written with writev.
 */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fh_cursor.h"
#include "fh_deflate.h"
#include "fh_log.h"
#include "fh_util.h"
#include "fh_ws.h"
#include "fh_wsmsg.h"

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
} sev;

static void sev_unref(sev *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1) {
        fh_filter_facts_free(&e->facts);
        free(e->sse);
        fh_deflate_cache_free(e->zc);
        free(e);
    }
}

static sev *sev_ref(sev *e)
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
    size_t done; /* bytes already written of head + shared */
    int small;   /* the head holds exactly HEAD_MAX bytes: reusable (qent_put) */
    char head[];
} qent;

/* A zeroed entry whose head holds head_cap bytes (HEAD_MAX at least); NULL when out of memory.
 * Freed with free() after sev_unref(e->ev). */
static qent *qent_new(size_t head_cap)
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
    unsigned job;        /* catch-up job id while catching up */
    sev **pend;          /* catch-up: the batch from Kafka still to deliver (paced like a replay) */
    size_t npend, ipend;
    int64_t *done_vec; /* catch-up: where the job ended, once it has (applied after pend) */
    int indexed;       /* how it is registered in the routing index */
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
    sub **subs;
    size_t n, cap;
} ientry;

/* ---- inbox: what other threads hand to the stream thread ----------------------------------------
 */

enum { IN_WS = 0, IN_SSE, IN_SSE_GONE, IN_CATCHUP_BATCH, IN_CATCHUP_DONE, IN_CATCHUP_FAIL };

typedef struct inmsg {
    struct inmsg *next;
    int kind;
    conn *c;
    unsigned job;
    sev **evs;
    size_t nevs;
    int64_t *vec; /* DONE: progress; FAIL: earliest cursor */
    char error[256];
    char extra[1024]; /* WebSocket bytes MHD read past the request */
    size_t extra_len;
} inmsg;

/* ---- catch-up jobs ----------------------------------------------------------------------------
 */

typedef struct cjob {
    struct cjob *next;
    unsigned id;
    int64_t *from, *to; /* per partition: read [from, to) */
    _Atomic int credit; /* batches the stream thread allows */
    _Atomic int cancel;
} cjob;

struct fh_stream {
    fh_broker *b;
    pthread_t thread, cthread;
    int epfd, kafka_efd, inbox_efd;
    _Atomic int stop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkq;
    /* partitions */
    int nparts;
    char *part_topic[MAX_PARTS];
    int part_id[MAX_PARTS];
    int64_t hw[MAX_PARTS];         /* next offset after the newest ring event, per partition */
    int64_t evicted_hw[MAX_PARTS]; /* events below this were evicted (or predate the start) */
    /* ring */
    sev **ring;
    size_t ring_cap, ring_count, ring_head; /* ring_head: slot of the oldest */
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
    conn *dirty;
    conn *over; /* queues past client_queue_max, waiting to drain */
    conn *dead; /* dropped this pass; released by reap() once nothing can point at them */
    int64_t drain_grace_ms;
    int64_t close_timeout_ms; /* a closed WebSocket that has not taken its close frame by then */
    qent *qfree;              /* small entries for reuse (stream thread only), QFREE_MAX at most */
    size_t nqfree;
    rd_kafka_message_t *kbatch[KAFKA_BATCH]; /* records taken from Kafka, not yet routed */
    size_t kb_n, kb_i;
    /* index */
    ientry *buckets[INDEX_BUCKETS];
    sub **wild;
    size_t nwild, capwild;
    int field_used[FH_F__COUNT];
    /* inbox */
    pthread_mutex_t inbox_mu;
    inmsg *inbox_first, *inbox_last;
    /* catch-up */
    pthread_mutex_t cmu;
    pthread_cond_t ccond;
    cjob *jobs_first, *jobs_last;
    cjob *running_job;
    int njobs, max_jobs;
    unsigned next_job;
    /* metrics */
    fh_metric *m_deliveries, *m_connections, *m_queued, *m_slow, *m_closed_other, *m_ring_events,
        *m_catchups, *m_in, *m_holds, *m_held_ms, *m_ring_bytes;
    /* permessage-deflate: the stream thread's one deflater and one inflater (no connection
     * keeps compression state); NULL when stream.permessage_deflate is off */
    fh_deflater *zd;
    fh_inflater *zi;
    fh_metric *m_z_plain, *m_z_sent;
    int64_t held_since_ms; /* when the stream last stopped for a connection past its cap; 0 */
    int ready;
};

/* ---- small helpers ----------------------------------------------------------------------------
 */

/* qent_new on the stream thread, reusing a freed small entry when it can (a delivery each
 * event and subscriber: malloc was a tenth of the stream thread's time). */
static qent *qent_get(fh_stream *s, size_t head_cap)
{
    qent *e = s->qfree;
    if (head_cap > HEAD_MAX || !e)
        return qent_new(head_cap);
    s->qfree = e->next;
    s->nqfree--;
    memset(e, 0, sizeof(*e));
    e->small = 1;
    return e;
}

/* Frees an entry the stream thread is done with (its event already released). */
static void qent_put(fh_stream *s, qent *e)
{
    if (!e->small || s->nqfree >= QFREE_MAX) {
        free(e);
        return;
    }
    e->next = s->qfree;
    s->qfree = e;
    s->nqfree++;
}

static void wake(int efd)
{
    uint64_t one = 1;
    ssize_t w = write(efd, &one, sizeof(one));
    (void)w;
}

static void drain(int efd)
{
    uint64_t v;
    ssize_t r = read(efd, &v, sizeof(v));
    (void)r;
}

static void inbox_post(fh_stream *s, inmsg *m)
{
    pthread_mutex_lock(&s->inbox_mu);
    m->next = NULL;
    if (s->inbox_last)
        s->inbox_last->next = m;
    else
        s->inbox_first = m;
    s->inbox_last = m;
    pthread_mutex_unlock(&s->inbox_mu);
    wake(s->inbox_efd);
}

static int64_t *vec_new(const fh_stream *s)
{
    return calloc((size_t)(s->nparts ? s->nparts : 1), sizeof(int64_t));
}

/* ---- queues -----------------------------------------------------------------------------------
 */

static void q_push(fh_stream *s, conn *c, qent *e)
{
    size_t n = e->head_len + e->shared_len;
    e->next = NULL;
    if (c->q.last)
        c->q.last->next = e;
    else
        c->q.first = e;
    c->q.last = e;
    c->q.bytes += n;
    s->total_queued += n;
    if (!c->dirty) {
        c->dirty = 1;
        c->next_dirty = s->dirty;
        s->dirty = c;
    }
}

static void q_free_all(fh_stream *s, conn *c)
{
    qent *e = c->q.first;
    while (e) {
        qent *n = e->next;
        s->total_queued -= e->head_len + e->shared_len - e->done;
        sev_unref(e->ev);
        free(e);
        e = n;
    }
    c->q.first = c->q.last = NULL;
    c->q.bytes = 0;
}

/* Drops queued deliveries that have not started to go out. */
static void q_drop_unsent(fh_stream *s, conn *c)
{
    qent *keep = c->q.first && c->q.first->done ? c->q.first : NULL;
    qent *e = keep ? keep->next : c->q.first;
    while (e) {
        qent *n = e->next;
        size_t left = e->head_len + e->shared_len - e->done;
        s->total_queued -= left;
        c->q.bytes -= left;
        sev_unref(e->ev);
        free(e);
        e = n;
    }
    if (keep)
        keep->next = NULL;
    c->q.first = c->q.last = keep;
}

static void conn_lock(conn *c)
{
    if (c->kind == CONN_SSE)
        pthread_mutex_lock(&c->mu);
}

static void conn_unlock(conn *c)
{
    if (c->kind == CONN_SSE)
        pthread_mutex_unlock(&c->mu);
}

/* Bytes queued for c (an SSE reader drains its queue on another thread). */
static size_t conn_queued(conn *c)
{
    conn_lock(c);
    size_t n = c->q.bytes;
    conn_unlock(c);
    return n;
}

/* Queues a whole WebSocket frame of inline bytes (control messages, JSON replies). */
static void send_frame(fh_stream *s, conn *c, int opcode, const char *payload, size_t len)
{
    if (c->kind != CONN_WS || c->closing)
        return;
    if (c->deflate && opcode == FH_WS_OP_TEXT) { /* as stored blocks: see deliver_deflated */
        size_t n = FH_DEFLATE_STORED_SIZE(len);
        qent *z = qent_new(WS_HEADER_MAX + n);
        if (!z)
            return;
        size_t h = fh_deflate_frame_header((unsigned char *)z->head, n);
        z->head_len = h + fh_deflate_stored((unsigned char *)z->head + h, payload, len);
        q_push(s, c, z);
        return;
    }
    qent *e = qent_new(WS_HEADER_MAX + len);
    if (!e)
        return;
    size_t h = fh_ws_frame_header((unsigned char *)e->head, opcode, len);
    memcpy(e->head + h, payload, len);
    e->head_len = h + len;
    q_push(s, c, e);
}

static void send_json(fh_stream *s, conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_json(fh_stream *s, conn *c, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        send_frame(s, c, FH_WS_OP_TEXT, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Queues len bytes of SSE text (comments, error events) on an SSE connection. */
static void sse_send(fh_stream *s, conn *c, const char *text, size_t len)
{
    if (c->kind != CONN_SSE || c->closing)
        return;
    qent *e = qent_new(len);
    if (!e)
        return;
    memcpy(e->head, text, len);
    e->head_len = len;
    pthread_mutex_lock(&c->mu);
    q_push(s, c, e);
    pthread_mutex_unlock(&c->mu);
}

/* Sends an error: on WebSocket an `error` message (id may be NULL); on SSE an `event: error`
 * whose data is {"code":…,"message":…} (SSE has no subscription ids). */
static void send_error(fh_stream *s, conn *c, const char *id, const char *code, const char *message)
{
    fh_buf b;
    /* out of memory: nothing rather than half a frame */
    if (fh_wsmsg_error_frame(&b, c->kind == CONN_SSE, id, code, message) == FH_OK) {
        if (c->kind == CONN_SSE)
            sse_send(s, c, b.data, b.len);
        else
            send_frame(s, c, FH_WS_OP_TEXT, b.data, b.len);
    }
    fh_buf_free(&b);
}

/* Queues a close frame; the connection is dropped once it is flushed. */
static void close_conn(fh_stream *s, conn *c, unsigned code, const char *reason)
{
    if (c->closing)
        return;
    if (code == CLOSE_SLOW_CONSUMER)
        fh_metric_add(s->m_slow, 1);
    else if (code != CLOSE_NORMAL && code != CLOSE_SHUTDOWN)
        fh_metric_add(s->m_closed_other, 1);
    if (c->kind == CONN_WS) {
        /* a slow consumer would never read what is queued: drop it (but finish a frame that is
         * half on the wire, or the close frame would land inside it) */
        if (code == CLOSE_SLOW_CONSUMER)
            q_drop_unsent(s, c);
        qent *e = qent_new(0);
        if (e) {
            e->head_len = fh_ws_close_frame((unsigned char *)e->head, code, reason);
            q_push(s, c, e);
        }
        c->closing = 1;
        c->closing_ms = fh_now_ms();
    } else {
        pthread_mutex_lock(&c->mu);
        if (code == CLOSE_SLOW_CONSUMER)
            q_drop_unsent(s, c);
        c->sse_end = 1;
        c->closing = 1;
        if (c->sse_waiting) {
            c->sse_waiting = 0;
            MHD_resume_connection(c->mhd);
        }
        pthread_mutex_unlock(&c->mu);
    }
}

/* ---- ring -------------------------------------------------------------------------------------
 */

static sev *ring_at_seq(fh_stream *s, uint64_t seq)
{
    if (s->ring_count == 0)
        return NULL;
    uint64_t first = s->next_seq - s->ring_count;
    if (seq < first || seq >= s->next_seq)
        return NULL;
    return s->ring[(s->ring_head + (size_t)(seq - first)) % s->ring_cap];
}

static void ring_evict_one(fh_stream *s)
{
    sev *e = s->ring[s->ring_head];
    s->ring[s->ring_head] = NULL;
    s->ring_head = (s->ring_head + 1) % s->ring_cap;
    s->ring_count--;
    s->ring_bytes -= e->bytes;
    e->in_ring = 0;
    if (e->offset + 1 > s->evicted_hw[e->part])
        s->evicted_hw[e->part] = e->offset + 1;
    sev_unref(e);
}

static void ring_push(fh_stream *s, sev *e)
{
    while (s->ring_count &&
           (s->ring_count == s->ring_cap || s->ring_bytes + e->bytes > s->ring_max_bytes))
        ring_evict_one(s);
    s->ring[(s->ring_head + s->ring_count) % s->ring_cap] = sev_ref(e);
    e->in_ring = 1;
    s->ring_count++;
    s->ring_bytes += e->bytes;
    fh_metric_set(s->m_ring_events, (long long)s->ring_count);
    fh_metric_set(s->m_ring_bytes, (long long)s->ring_bytes);
}

/* 1 when every event at or after vec (per partition) is in the ring (or not yet produced). */
static int ring_covers(const fh_stream *s, const int64_t *vec)
{
    for (int p = 0; p < s->nparts; p++)
        if (vec[p] < s->evicted_hw[p])
            return 0;
    return 1;
}

/* ---- building events --------------------------------------------------------------------------
 */

/* Builds a stream event from a Kafka record, validating it in doc (the calling thread's; reset
 * here). with_cursor: ring events carry the cursor of the position after them (s->hw must
 * already include this record). Returns NULL for invalid records (the ingest consumer
 * dead-letters those). */
static sev *sev_build(fh_stream *s, fh_json_doc *doc, const rd_kafka_message_t *m, int part,
                      int with_cursor)
{
    char err[256];
    size_t clen = 0;
    fh_event_view view;
    if (fh_event_check(s->b->contract, doc, m->payload, m->len, s->max_event_bytes, &view, err,
                       sizeof(err)))
        return NULL;
    if (with_cursor) /* only on the stream thread: its scratch */
        clen = fh_cursor_encode(s->hw, s->nparts, s->cur, CURSOR_MAX);
    /* tail: `","cursor":"C"` + `,"event":` + RAW + `}` */
    size_t a_len = with_cursor ? 12 + clen + 1 : 0, tail_len = a_len + 9 + m->len + 1;
    sev *e = calloc(1, sizeof(*e) + tail_len + 1);
    if (!e)
        return NULL;
    atomic_init(&e->refs, 1);
    e->type = view.type;
    if (fh_filter_facts_from_view(&view, &e->facts)) {
        free(e);
        return NULL;
    }
    e->part = part;
    e->offset = m->offset;
    e->tail = (char *)(e + 1);
    e->tail_len = tail_len;
    char *p = e->tail;
    if (with_cursor) {
        memcpy(p, "\",\"cursor\":\"", 12);
        memcpy(p + 12, s->cur, clen);
        p[12 + clen] = '"';
        p += a_len;
    } else {
        /* catch-up events: the sub builds its own `","cursor":"C"` head; keep the closing quote */
    }
    e->b_off = (size_t)(p - e->tail);
    memcpy(p, ",\"event\":", 9);
    memcpy(p + 9, m->payload, m->len);
    p[9 + m->len] = '}';
    e->raw_off = e->b_off + 9;
    e->raw_len = m->len;
    e->tail[e->tail_len] = '\0';
    /* the two blocks, with malloc's overhead of about 16 bytes each */
    e->bytes = sizeof(*e) + e->tail_len + 1 + e->facts.blob_len + 2 * 16;
    return e;
}

/* "event: TYPE\ndata: RAW\n\n", with one data: line per line of RAW. Built once per event, by
 * the stream thread; a ring event's bytes then count it. */
static int sev_sse(fh_stream *s, sev *e)
{
    if (e->sse)
        return 0;
    fh_buf b;
    fh_buf_init(&b, e->raw_len * 2 + 256);
    fh_buf_printf(&b, "event: %s\n", fh_event_type_name(e->type));
    const char *raw = e->tail + e->raw_off, *end = raw + e->raw_len;
    while (raw < end) {
        const char *nl = memchr(raw, '\n', (size_t)(end - raw));
        size_t n = nl ? (size_t)(nl - raw) : (size_t)(end - raw);
        if (n && raw[n - 1] == '\r')
            n--;
        if (fh_buf_append(&b, "data: ", 6) || fh_buf_append(&b, raw, n) ||
            fh_buf_append(&b, "\n", 1))
            break;
        raw = nl ? nl + 1 : end;
    }
    if (fh_buf_append(&b, "\n", 1)) {
        fh_buf_free(&b);
        return -1;
    }
    e->sse = b.data;
    e->sse_len = b.len;
    e->bytes += b.cap + 16;
    if (e->in_ring)
        s->ring_bytes += b.cap + 16;
    return 0;
}

/* ---- delivering -------------------------------------------------------------------------------
 */

#define ZHEAD_EXTRA 5 /* a compressed delivery's head holds a stored-block header too */
static int deliver_deflated(fh_stream *s, sub *u, sev *e, qent *q, const char *cur, size_t clen);

static int sub_matches(const sub *u, const sev *e)
{
    if (!fh_filter_match_facts(&u->filter, &e->facts))
        return 0;
    return !u->c->who || !u->c->who->constrained ||
           fh_filter_match_facts(&u->c->who->constraint, &e->facts);
}

/* Queues e for u (which matched). paced: a replay or catch-up, which stops at half the queue cap
 * by itself; a live delivery that takes the queue past the cap puts the connection on s->over,
 * which holds the stream until it drains (holds_clear). Returns -1 when c is closing or out of
 * memory. */
static int deliver(fh_stream *s, sub *u, sev *e, int paced)
{
    conn *c = u->c;
    char *cur = s->cur; /* the stream thread's scratch: a large array here cost a stack probe
                         * per page on every delivery */
    const char *cs = cur;
    size_t clen = 0;
    if (c->closing)
        return -1;
    if (u->own_cursors) {
        if (u->progress[e->part] < e->offset + 1)
            u->progress[e->part] = e->offset + 1;
        clen = fh_cursor_encode(u->progress, s->nparts, cur, CURSOR_MAX);
    } else {
        /* the shared cursor sits inside the tail: `","cursor":"C"` */
        cs = e->tail + 12;
        clen = e->b_off - 13;
    }
    if (c->kind == CONN_SSE && sev_sse(s, e))
        return -1;
    /* the head: SSE `id: C\n`; firehose the frame header and `{"op":"event","sub":"ID` (the
     * shared tail carries `","cursor":"C"`) or, with its own cursor, up to `"cursor":"C"`;
     * cloudevents.json the frame header only */
    /* the cursor is in the head for SSE and for own cursors; else in the shared tail */
    int cursor_in_head = c->kind == CONN_SSE || u->own_cursors;
    qent *q =
        qent_get(s, WS_HEADER_MAX + ZHEAD_EXTRA + 48 + sizeof(u->id) + (cursor_in_head ? clen : 0));
    if (!q)
        return -1;
    q->ev = sev_ref(e);
    int n = 0;
    if (c->kind == CONN_SSE) {
        n = sprintf(q->head, "id: %.*s\n", (int)clen, cs);
        q->shared = e->sse;
        q->shared_len = e->sse_len;
    } else if (c->deflate && deliver_deflated(s, u, e, q, cur, clen) == 0) {
        n = (int)q->head_len;
    } else if (c->cloudevents) {
        n = (int)fh_ws_frame_header((unsigned char *)q->head, FH_WS_OP_TEXT, e->raw_len);
        q->shared = e->tail + e->raw_off;
        q->shared_len = e->raw_len;
    } else {
        /* the body after room for the longest frame header, then the header in front of it */
        char *body = q->head + WS_HEADER_MAX;
        int bl;
        if (u->own_cursors) {
            bl = sprintf(body, "{\"op\":\"event\",\"sub\":\"%s\",\"cursor\":\"%.*s\"", u->id,
                         (int)clen, cur);
            q->shared = e->tail + e->b_off;
            q->shared_len = e->tail_len - e->b_off;
        } else {
            bl = sprintf(body, "{\"op\":\"event\",\"sub\":\"%s", u->id);
            q->shared = e->tail;
            q->shared_len = e->tail_len;
        }
        n = (int)fh_ws_frame_header((unsigned char *)q->head, FH_WS_OP_TEXT,
                                    (uint64_t)bl + q->shared_len);
        memmove(q->head + n, body, (size_t)bl);
        n += bl;
    }
    q->head_len = (size_t)n;
    conn_lock(c);
    q_push(s, c, q);
    size_t queued = c->q.bytes;
    conn_unlock(c);
    fh_metric_add(s->m_deliveries, 1);
    if (!paced && !c->over_ms && queued > s->client_queue_max) {
        int64_t now = fh_now_ms();
        c->over_ms = now | 1; /* never 0 */
        c->next_over = s->over;
        s->over = c;
        fh_metric_add(s->m_holds, 1);
        /* the budget refills at 1/HOLD_SHARE of the time, up to HOLD_BURSTS grace periods */
        c->hold_budget_ms += (now - c->hold_seen_ms) / HOLD_SHARE;
        if (c->hold_budget_ms > HOLD_BURSTS * s->drain_grace_ms)
            c->hold_budget_ms = HOLD_BURSTS * s->drain_grace_ms;
        c->hold_seen_ms = now;
    }
    return 0;
}

/* ---- permessage-deflate (RFC 7692; lib/fh_deflate.h, docs/stream.md) -------------------------
 *
 * Every text message to a connection that negotiated the extension is marked compressed (RSV1):
 * events compressed when it pays and as stored blocks otherwise, replies as stored blocks
 * (send_frame). RFC 7692 would allow plain messages in between, but libwebsockets 4.1 clients
 * (Debian 12's, so firehose-tail's) spin forever on an uncompressed message once the extension
 * is on. Control frames are never compressed. The shared bytes of an event are compressed once per
 * protocol variant, on their first compressed delivery, and kept with the event (e->zc, counted in
 * its bytes like the SSE text), so every deflate subscriber shares them as plain subscribers share
 * the plain bytes. The per-subscriber head goes in front as a stored block.
 */

enum { ZV_FIREHOSE = 0, ZV_OWN_CURSOR = 1, ZV_CLOUDEVENTS = 2 };

/* Fills q with e's delivery to u as a compressed message: a frame header with RSV1, the head as a
 * stored block (none for cloudevents.json), then the shared bytes from e->zc: compressed, or
 * stored blocks when e is not worth compressing. cur/clen: u's own cursor when it has one.
 * Returns 0 when q is filled, -1 to send e plain (out of memory). */
static int deliver_deflated(fh_stream *s, sub *u, sev *e, qent *q, const char *cur, size_t clen)
{
    conn *c = u->c;
    unsigned v = c->cloudevents ? ZV_CLOUDEVENTS : u->own_cursors ? ZV_OWN_CURSOR : ZV_FIREHOSE;
    const char *plain = v == ZV_CLOUDEVENTS  ? e->tail + e->raw_off
                        : v == ZV_OWN_CURSOR ? e->tail + e->b_off
                                             : e->tail;
    size_t plain_len = v == ZV_CLOUDEVENTS  ? e->raw_len
                       : v == ZV_OWN_CURSOR ? e->tail_len - e->b_off
                                            : e->tail_len;
    size_t zlen, added;
    int compressed;
    const unsigned char *z =
        fh_deflate_cached(&e->zc, s->zd, v, plain, plain_len, &zlen, &compressed, &added);
    e->bytes += added;
    if (e->in_ring)
        s->ring_bytes += added;
    if (!z)
        return -1;
    char *body = q->head + WS_HEADER_MAX; /* room for the longest frame header in front */
    char *text = body + ZHEAD_EXTRA;
    int tl = 0;
    if (v == ZV_OWN_CURSOR)
        tl = sprintf(text, "{\"op\":\"event\",\"sub\":\"%s\",\"cursor\":\"%.*s\"", u->id, (int)clen,
                     cur);
    else if (v == ZV_FIREHOSE)
        tl = sprintf(text, "{\"op\":\"event\",\"sub\":\"%s", u->id);
    if (tl < 0 || (size_t)tl > FH_DEFLATE_STORED_MAX)
        return -1;
    size_t bl = 0;
    if (tl) {
        fh_deflate_stored_header((unsigned char *)body, (size_t)tl);
        bl = ZHEAD_EXTRA + (size_t)tl;
    }
    size_t h = fh_deflate_frame_header((unsigned char *)q->head, (uint64_t)bl + zlen);
    memmove(q->head + h, body, bl);
    q->head_len = h + bl;
    q->shared = (const char *)z;
    q->shared_len = zlen;
    fh_metric_add(s->m_z_plain, (long long)(plain_len + (size_t)tl));
    fh_metric_add(s->m_z_sent, (long long)(bl + zlen));
    return 0;
}

/* The text of a client message: as received, or inflated when it came compressed (at most
 * stream.max_message_bytes, like a plain one) and then UTF-8 checked. Returns NULL after
 * closing c: 1009 over the cap, 1007 not DEFLATE or not UTF-8, 1011 out of memory. */
static const char *client_text(fh_stream *s, conn *c, const fh_ws_msg *m, size_t *len)
{
    const unsigned char *out;
    char err[128];
    *len = m->len;
    if (!m->compressed)
        return (const char *)m->data;
    fh_err rc = s->zi ? fh_inflate_message(s->zi, m->data, m->len, s->max_message, &out, len, err,
                                           sizeof(err))
                      : FH_ERR_NOMEM;
    if (rc == FH_OK && fh_ws_utf8_valid(out, *len))
        return (const char *)out;
    close_conn(s, c,
               rc == FH_ERR_TOOBIG  ? CLOSE_TOO_BIG
               : rc == FH_ERR_NOMEM ? CLOSE_INTERNAL
                                    : FH_WS_CLOSE_BAD_DATA,
               rc == FH_ERR_TOOBIG ? "message too big"
               : rc == FH_OK       ? "text is not UTF-8"
                                   : "bad compressed data");
    return NULL;
}

/* ---- routing index ----------------------------------------------------------------------------
 */

static unsigned long hash_kv(int field, const char *v)
{
    unsigned long h = 5381u + (unsigned long)field * 131u;
    while (*v)
        h = h * 33u ^ (unsigned char)*v++;
    return h % INDEX_BUCKETS;
}

static ientry *index_find(fh_stream *s, int field, const char *v, int create)
{
    unsigned long h = hash_kv(field, v);
    for (ientry *e = s->buckets[h]; e; e = e->next)
        if (e->field == field && strcmp(e->value, v) == 0)
            return e;
    if (!create)
        return NULL;
    ientry *e = calloc(1, sizeof(*e));
    if (!e || !(e->value = strdup(v))) {
        free(e);
        return NULL;
    }
    e->field = field;
    e->next = s->buckets[h];
    s->buckets[h] = e;
    return e;
}

static int vec_add(sub ***v, size_t *n, size_t *cap, sub *u)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        sub **nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = u;
    return 0;
}

static void vec_remove(sub **v, size_t *n, sub *u)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == u) {
            v[i] = v[--*n];
            return;
        }
}

/* The exact-match fields a subscription can be indexed under, most selective first. */
static const int index_order[] = {FH_F_BUILDID,  FH_F_BUILDREQUESTID, FH_F_BUILDER, FH_F_OWNER,
                                  FH_F_REVISION, FH_F_BUILDERID,      FH_F_BRANCH,  FH_F_WORKER,
                                  FH_F_PROJECT,  FH_F_MASTER,         FH_F_TYPE};

static const fh_filter_clause *index_clause(const sub *u)
{
    for (size_t k = 0; k < sizeof(index_order) / sizeof(index_order[0]); k++)
        for (size_t i = 0; i < u->filter.nclauses; i++) {
            const fh_filter_clause *c = &u->filter.clauses[i];
            if ((int)c->field != index_order[k])
                continue;
            int exact = 1;
            for (size_t v = 0; v < c->nvals; v++)
                exact &= !c->vals[v].glob;
            if (exact)
                return c;
        }
    return NULL;
}

static void value_text(const fh_filter_value *v, char *buf, size_t size)
{
    if (v->str)
        snprintf(buf, size, "%s", v->str);
    else
        snprintf(buf, size, "%lld", v->num);
}

static void index_add(fh_stream *s, sub *u)
{
    const fh_filter_clause *c = index_clause(u);
    char val[FH_FILTER_MAX_STRLEN + 32];
    if (!c) {
        vec_add(&s->wild, &s->nwild, &s->capwild, u);
        u->indexed = -1;
        return;
    }
    for (size_t i = 0; i < c->nvals; i++) {
        value_text(&c->vals[i], val, sizeof(val));
        ientry *e = index_find(s, (int)c->field, val, 1);
        if (e)
            vec_add(&e->subs, &e->n, &e->cap, u);
    }
    s->field_used[c->field]++;
    u->indexed = (int)c->field;
}

static void index_remove(fh_stream *s, sub *u)
{
    char val[FH_FILTER_MAX_STRLEN + 32];
    if (u->indexed == -1) {
        vec_remove(s->wild, &s->nwild, u);
    } else if (u->indexed >= 0) {
        const fh_filter_clause *c = index_clause(u);
        for (size_t i = 0; c && i < c->nvals; i++) {
            value_text(&c->vals[i], val, sizeof(val));
            ientry *e = index_find(s, (int)c->field, val, 0);
            if (e)
                vec_remove(e->subs, &e->n, u);
        }
        s->field_used[u->indexed]--;
    }
    u->indexed = -2;
}

/* The event's value of an indexable field as text (integers written into buf); NULL when the
 * event lacks it. */
static const char *event_field_text(const sev *e, int field, char *buf, size_t size)
{
    if (!(e->facts.present & (1u << field)))
        return NULL;
    if (!fh_filter_field_integer((fh_filter_field)field))
        return e->facts.str[field];
    snprintf(buf, size, "%lld", e->facts.num[field]);
    return buf;
}

static void route_to(fh_stream *s, sub *u, sev *e)
{
    if (u->mark == e->seq || u->state != SUB_LIVE || u->c->closing)
        return;
    u->mark = e->seq;
    if (sub_matches(u, e))
        deliver(s, u, e, 0);
}

/* Delivers a new ring event to every live subscription it matches. The cost follows the number of
 * candidate subscriptions (index hits plus unindexed ones), not the number of subscribers. */
static void route(fh_stream *s, sev *e)
{
    char val[FH_FILTER_MAX_STRLEN + 32];
    for (size_t i = 0; i < s->nwild;) {
        sub *u = s->wild[i];
        route_to(s, u, e);
        if (i < s->nwild && s->wild[i] == u)
            i++;
    }
    for (int f = 0; f < FH_F__COUNT; f++) {
        const char *v;
        if (!s->field_used[f] || !(v = event_field_text(e, f, val, sizeof(val))))
            continue;
        ientry *ie = index_find(s, f, v, 0);
        for (size_t i = 0; ie && i < ie->n; i++)
            route_to(s, ie->subs[i], e);
    }
}

/* ---- subscriptions ----------------------------------------------------------------------------
 */

static sub *find_sub(conn *c, const char *id)
{
    for (sub *u = c->subs; u; u = u->next_in_conn)
        if (strcmp(u->id, id) == 0)
            return u;
    return NULL;
}

static void cancel_job(fh_stream *s, unsigned id)
{
    pthread_mutex_lock(&s->cmu);
    for (cjob *j = s->jobs_first; j; j = j->next)
        if (j->id == id)
            atomic_store(&j->cancel, 1);
    if (s->running_job && s->running_job->id == id)
        atomic_store(&s->running_job->cancel, 1);
    pthread_cond_broadcast(&s->ccond);
    pthread_mutex_unlock(&s->cmu);
}

/* Drops a catch-up batch not yet delivered. */
static void pend_clear(sub *u)
{
    for (size_t i = u->ipend; i < u->npend; i++)
        sev_unref(u->pend[i]);
    free(u->pend);
    u->pend = NULL;
    u->npend = u->ipend = 0;
}

static void sub_free(fh_stream *s, sub *u)
{
    if (u->state == SUB_CATCHUP)
        cancel_job(s, u->job);
    index_remove(s, u);
    fh_filter_free(&u->filter);
    pend_clear(u);
    free(u->done_vec);
    free(u->progress);
    free(u);
}

static void sub_remove(fh_stream *s, conn *c, sub *u)
{
    for (sub **pp = &c->subs; *pp; pp = &(*pp)->next_in_conn)
        if (*pp == u) {
            *pp = u->next_in_conn;
            break;
        }
    c->nsubs--;
    sub_free(s, u);
}

static int start_catchup(fh_stream *s, sub *u, int admitted);
static void grant_credit(fh_stream *s, sub *u);

/* 1 when c's queue has room for another slice of a replay or catch-up (at most half the cap is
 * filled that way, so live events and replies still fit); else asks to be called again once it
 * has drained (want_room) and returns 0. */
static int paced_room(fh_stream *s, conn *c)
{
    /* flag first, then look: an SSE reader draining meanwhile sees the flag and wakes us */
    c->want_room = 1;
    if (conn_queued(c) > s->client_queue_max / 2)
        return 0;
    c->want_room = 0;
    return 1;
}

/* Replays ring events at or after u->progress while the queue has room (so a large replay never
 * floods it); switches u to live once it reaches the ring's head. u->replay_seq 0 starts a
 * replay: from the ring's oldest event if the ring covers u->progress, else from Kafka first. */
static void replay_step(fh_stream *s, sub *u)
{
    uint64_t first = s->next_seq - s->ring_count;
    if (u->replay_seq < first) {
        /* the ring does not start at our position (any more): read the gap from Kafka */
        if (!ring_covers(s, u->progress)) {
            if (start_catchup(s, u, 1))
                close_conn(s, u->c, CLOSE_INTERNAL, "out of memory"); /* cannot remove u here */
            return;
        }
        u->replay_seq = first;
    }
    while (u->replay_seq < s->next_seq) {
        if (u->c->closing || !paced_room(s, u->c))
            return;
        sev *e = ring_at_seq(s, u->replay_seq++);
        if (!e || e->offset < u->progress[e->part])
            continue;
        if (sub_matches(u, e))
            deliver(s, u, e, 1);
        else
            u->progress[e->part] = e->offset + 1; /* a tighter cursor for the next delivery */
    }
    /* caught up: the ring's cursors are now at least this subscriber's progress */
    u->state = SUB_LIVE;
    u->own_cursors = 0;
    /* the newest ring event has been replayed; the next one routed must be delivered */
    u->mark = s->next_seq - 1;
}

/* Delivers u's pending catch-up batch while the queue has room; then asks the job for the next
 * batch, or, once the job has ended, continues from the ring (replay_step reads from Kafka again
 * if the ring moved past the job's end meanwhile). */
static void catchup_step(fh_stream *s, sub *u)
{
    conn *c = u->c;
    while (u->ipend < u->npend) {
        if (c->closing || !paced_room(s, c))
            return;
        sev *e = u->pend[u->ipend++];
        if (e->offset >= u->progress[e->part]) {
            if (sub_matches(u, e))
                deliver(s, u, e, 1);
            else
                u->progress[e->part] = e->offset + 1;
        }
        sev_unref(e);
    }
    pend_clear(u);
    if (u->done_vec) {
        for (int p = 0; p < s->nparts; p++)
            if (u->progress[p] < u->done_vec[p])
                u->progress[p] = u->done_vec[p];
        free(u->done_vec);
        u->done_vec = NULL;
        u->state = SUB_REPLAY;
        u->replay_seq = 0;
        replay_step(s, u);
    } else if (!c->closing && paced_room(s, c)) {
        grant_credit(s, u);
    }
}

/* Positions u at vec: a replay from the ring when it covers vec, else a catch-up from Kafka.
 * Sends nothing on success; on failure (busy, out of memory) the error has been sent and the
 * caller removes u. The replay itself starts with replay_step. */
static int begin_from(fh_stream *s, sub *u, const int64_t *vec)
{
    memcpy(u->progress, vec, (size_t)s->nparts * sizeof(int64_t));
    u->own_cursors = 1;
    if (ring_covers(s, vec)) {
        u->state = SUB_REPLAY;
        u->replay_seq = s->next_seq - s->ring_count;
        return 0;
    }
    return start_catchup(s, u, 0);
}

/* Creates a subscription on c starting at from (fh_wsmsg_from; on_new_sse turns the SSE text into
 * the same JSON). Time and earliest need Kafka: the catch-up thread resolves them. Sends
 * "subscribed" (WebSocket) or errors. Returns the sub or NULL. */
static sub *subscribe(fh_stream *s, conn *c, const char *id, fh_filter *filter, const json_t *from)
{
    char err[256], cur[CURSOR_MAX];
    fh_wsmsg_from_kind kind = FH_FROM_LATEST;
    sub *u = calloc(1, sizeof(*u));
    int64_t *vec = vec_new(s);
    if (!u || !vec || !(u->progress = vec_new(s))) {
        free(u ? u->progress : NULL);
        free(u);
        free(vec);
        fh_filter_free(filter);
        send_error(s, c, id, "internal", "out of memory");
        return NULL;
    }
    snprintf(u->id, sizeof(u->id), "%s", id);
    u->c = c;
    u->filter = *filter; /* ownership moves to the subscription */
    memset(filter, 0, sizeof(*filter));
    u->indexed = -2;
    if (fh_wsmsg_from(from, s->nparts, vec, &kind, err, sizeof(err))) {
        send_error(s, c, id, "bad_request", err);
        sub_free(s, u);
        free(vec);
        return NULL;
    }
    u->next_in_conn = c->subs;
    c->subs = u;
    c->nsubs++;
    index_add(s, u);
    if (kind == FH_FROM_LATEST) {
        u->state = SUB_LIVE;
        u->mark = s->next_seq - 1; /* "latest": after the newest ring event, not the next one */
        memcpy(u->progress, s->hw, (size_t)s->nparts * sizeof(int64_t));
    } else if (begin_from(s, u, vec)) {
        sub_remove(s, c, u);
        free(vec);
        return NULL;
    }
    if (c->kind == CONN_WS && !c->closing && !c->cloudevents) {
        /* earliest and time are resolved to offsets later: their cursor comes with each event */
        int with_cursor = kind == FH_FROM_LATEST || kind == FH_FROM_CURSOR;
        fh_buf b;
        if (with_cursor)
            fh_cursor_encode(kind == FH_FROM_LATEST ? s->hw : vec, s->nparts, cur, sizeof(cur));
        if (fh_wsmsg_subscribed_frame(&b, u->id, with_cursor ? cur : NULL) == FH_OK)
            send_frame(s, c, FH_WS_OP_TEXT, b.data, b.len);
        fh_buf_free(&b);
    }
    free(vec);
    if (u->state == SUB_REPLAY)
        replay_step(s, u); /* after "subscribed": the replayed events follow it */
    return u;
}

/* Handles one client text message on the "firehose" protocol. */
static void handle_client_message(fh_stream *s, conn *c, const char *data, size_t len)
{
    char err[320];
    fh_wsmsg m;
    if (fh_wsmsg_parse(data, len, &m, err, sizeof(err))) {
        send_error(s, c, m.id[0] ? m.id : NULL, m.code, err);
    } else if (m.op == FH_WSMSG_PING) {
        send_json(s, c, "{\"op\":\"pong\"}");
    } else if (m.op == FH_WSMSG_UNSUBSCRIBE) {
        sub *u = find_sub(c, m.id);
        if (u) {
            sub_remove(s, c, u);
            send_json(s, c, "{\"op\":\"unsubscribed\",\"id\":\"%s\"}", m.id);
        } else {
            send_error(s, c, m.id, "unknown_subscription", "no subscription with this id");
        }
    } else if (find_sub(c, m.id)) {
        send_error(s, c, m.id, "duplicate_id", "a subscription with this id exists");
    } else if (c->nsubs >= s->max_subs) {
        snprintf(err, sizeof(err), "at most %d subscriptions per connection", s->max_subs);
        send_error(s, c, m.id, "too_many_subscriptions", err);
    } else {
        fh_filter f;
        if (fh_filter_parse(json_object_get(m.msg, "filter"), &f, err, sizeof(err))) {
            send_error(s, c, m.id, "bad_filter", err);
            fh_filter_free(&f);
        } else {
            subscribe(s, c, m.id, &f, json_object_get(m.msg, "from"));
        }
    }
    fh_wsmsg_clear(&m);
}

/* ---- catch-up from Kafka ----------------------------------------------------------------------
 */

/* Queues a job reading u's gap, [u->progress, the ring's start), from Kafka. admitted: the
 * continuation of a resume already under way (the ring moved on while it ran), which
 * stream.catchup_max does not refuse and the catch-up count does not count again. Returns 0, or
 * -1 with the error sent (busy, internal); the caller then removes u. */
static int start_catchup(fh_stream *s, sub *u, int admitted)
{
    cjob *j = calloc(1, sizeof(*j));
    if (!j || !(j->from = vec_new(s)) || !(j->to = vec_new(s))) {
        if (j) {
            free(j->from);
            free(j);
        }
        send_error(s, u->c, u->id, "internal", "out of memory");
        return -1;
    }
    pthread_mutex_lock(&s->cmu);
    if (!admitted && s->njobs >= s->max_jobs) {
        pthread_mutex_unlock(&s->cmu);
        free(j->from);
        free(j->to);
        free(j);
        send_error(s, u->c, u->id, "busy", "too many resumes from Kafka at once; retry shortly");
        return -1;
    }
    j->id = ++s->next_job;
    memcpy(j->from, u->progress, (size_t)s->nparts * sizeof(int64_t));
    memcpy(j->to, s->evicted_hw, (size_t)s->nparts * sizeof(int64_t));
    atomic_init(&j->credit, 1);
    if (s->jobs_last)
        s->jobs_last->next = j;
    else
        s->jobs_first = j;
    s->jobs_last = j;
    s->njobs++;
    pthread_cond_signal(&s->ccond);
    pthread_mutex_unlock(&s->cmu);
    u->state = SUB_CATCHUP;
    u->job = j->id;
    u->own_cursors = 1;
    if (!admitted)
        fh_metric_add(s->m_catchups, 1);
    return 0;
}

static void grant_credit(fh_stream *s, sub *u)
{
    pthread_mutex_lock(&s->cmu);
    if (s->running_job && s->running_job->id == u->job) {
        atomic_store(&s->running_job->credit, 1);
        pthread_cond_broadcast(&s->ccond);
    }
    pthread_mutex_unlock(&s->cmu);
}

static sub *sub_by_job(fh_stream *s, unsigned job, conn **cout)
{
    for (conn *c = s->conns; c; c = c->next)
        for (sub *u = c->subs; u; u = u->next_in_conn)
            if (u->state == SUB_CATCHUP && u->job == job) {
                *cout = c;
                return u;
            }
    return NULL;
}

static void post_catchup(fh_stream *s, int kind, unsigned job, sev **evs, size_t n,
                         const int64_t *vec, const char *error)
{
    inmsg *m = calloc(1, sizeof(*m));
    if (!m) {
        for (size_t i = 0; i < n; i++)
            sev_unref(evs[i]);
        free(evs);
        return;
    }
    m->kind = kind;
    m->job = job;
    m->evs = evs;
    m->nevs = n;
    if (vec && (m->vec = vec_new(s)))
        memcpy(m->vec, vec, (size_t)s->nparts * sizeof(int64_t));
    if (error)
        snprintf(m->error, sizeof(m->error), "%s", error);
    inbox_post(s, m);
}

/* rd_kafka_query_watermark_offsets, asked again within budget_ms while the answer is one a
 * cluster gives in passing (a leader moving, a topic just created): each of those otherwise
 * failed a start or a resume for good. */
static rd_kafka_resp_err_t watermarks(rd_kafka_t *rk, const char *topic, int partition, int64_t *lo,
                                      int64_t *hi, int budget_ms)
{
    int64_t until = fh_now_ms() + budget_ms;
    for (;;) {
        int64_t left = until - fh_now_ms();
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi,
                                                                 left > 100 ? (int)left : 100);
        int passing = e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                      e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                      e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                      e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
        if (!passing || fh_now_ms() + 200 >= until)
            return e;
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

/* Resolves earliest (-1) and time (-2-ms) entries, and checks retention. A partition without a
 * record at or after the time gets its current end (what comes later is newer). Returns 0, 1 when
 * the cursor is older than what Kafka keeps (earliest gets the oldest position), -1 on error. */
static int resolve_positions(fh_stream *s, rd_kafka_t *rk, int64_t *from, int64_t *earliest,
                             char *err, size_t errsize)
{
    int expired = 0;
    rd_kafka_topic_partition_list_t *times = NULL;
    int64_t *hi = vec_new(s);
    if (!hi) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    for (int p = 0; p < s->nparts; p++) {
        int64_t lo;
        rd_kafka_resp_err_t e = watermarks(rk, s->part_topic[p], s->part_id[p], &lo, hi + p, 5000);
        if (e) {
            snprintf(err, errsize, "kafka: %s", rd_kafka_err2str(e));
            expired = -1;
            goto done;
        }
        earliest[p] = lo;
        if (from[p] == -1) {
            from[p] = lo;
        } else if (from[p] <= -2) {
            if (!times)
                times = rd_kafka_topic_partition_list_new(s->nparts);
            rd_kafka_topic_partition_list_add(times, s->part_topic[p], s->part_id[p])->offset =
                -2 - from[p];
        } else if (from[p] < lo) {
            expired = 1;
        }
    }
    if (times) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, times, 10000);
        if (e) {
            snprintf(err, errsize, "kafka offsets for times: %s", rd_kafka_err2str(e));
            expired = -1;
            goto done;
        }
        for (int i = 0; i < times->cnt; i++)
            for (int p = 0; p < s->nparts; p++)
                if (times->elems[i].partition == s->part_id[p] &&
                    strcmp(times->elems[i].topic, s->part_topic[p]) == 0)
                    from[p] = times->elems[i].offset >= 0 ? times->elems[i].offset : hi[p];
    }
done:
    if (times)
        rd_kafka_topic_partition_list_destroy(times);
    free(hi);
    return expired;
}

static int part_index(const fh_stream *s, const char *topic, int partition)
{
    for (int p = 0; p < s->nparts; p++)
        if (s->part_id[p] == partition && strcmp(s->part_topic[p], topic) == 0)
            return p;
    return -1;
}

/* Marks partition p of job j as read to its end: pauses it, so the consumer stops fetching past
 * the gap, and remembers it in paused (resumed when the job ends: a paused partition stays paused
 * across assignments, and the next job would read nothing from it). */
static void part_done(fh_stream *s, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *paused, int p)
{
    rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, s->part_topic[p], s->part_id[p]);
    rd_kafka_pause_partitions(rk, one);
    rd_kafka_topic_partition_list_destroy(one);
    rd_kafka_topic_partition_list_add(paused, s->part_topic[p], s->part_id[p]);
}

/* Reads [from, to) of every partition of job j and posts batches, waiting for credit between. */
static void run_job(fh_stream *s, rd_kafka_t *rk, fh_json_doc *doc, cjob *j)
{
    char err[256];
    int64_t *earliest = vec_new(s), *pos = vec_new(s);
    rd_kafka_topic_partition_list_t *assign = NULL, *paused = NULL;
    if (!earliest || !pos) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, NULL, "out of memory");
        goto done;
    }
    int rc = resolve_positions(s, rk, j->from, earliest, err, sizeof(err));
    if (rc) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, rc > 0 ? earliest : NULL,
                     rc > 0 ? "cursor is older than what Kafka keeps" : err);
        goto done;
    }
    /* a time may resolve past the gap's end (into the ring): nothing to read there, and the
     * subscriber's position is the resolved one */
    assign = rd_kafka_topic_partition_list_new(s->nparts);
    paused = rd_kafka_topic_partition_list_new(s->nparts);
    int pending = 0;
    for (int p = 0; p < s->nparts; p++) {
        if (j->from[p] >= j->to[p])
            continue;
        rd_kafka_topic_partition_list_add(assign, s->part_topic[p], s->part_id[p])->offset =
            j->from[p];
        pending++;
    }
    if (pending) {
        rd_kafka_assign(rk, assign);
        rd_kafka_resume_partitions(rk, assign);
    }
    memcpy(pos, j->from, (size_t)s->nparts * sizeof(int64_t));
    /* Kafka must make progress; waiting for the client (credit) does not count */
    int64_t idle_until = fh_now_ms() + 60000;
    while (pending && !atomic_load(&j->cancel) && !atomic_load(&s->stop) &&
           fh_now_ms() < idle_until) {
        int64_t waited = fh_now_ms();
        pthread_mutex_lock(&s->cmu);
        while (!atomic_load(&j->credit) && !atomic_load(&j->cancel) && !atomic_load(&s->stop))
            pthread_cond_wait(&s->ccond, &s->cmu);
        atomic_store(&j->credit, 0);
        pthread_mutex_unlock(&s->cmu);
        idle_until += fh_now_ms() - waited;
        size_t cap = 1000, n = 0;
        sev **evs = calloc(cap, sizeof(*evs));
        int64_t batch_end = fh_now_ms() + 200;
        while (evs && n < cap && pending && fh_now_ms() < batch_end) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (!m)
                continue;
            int p = m->err ? -1 : part_index(s, rd_kafka_topic_name(m->rkt), m->partition);
            if (p >= 0 && pos[p] < j->to[p] && m->offset >= pos[p]) {
                idle_until = fh_now_ms() + 60000;
                /* offsets may skip (compaction, transaction markers): past the end is the end */
                pos[p] = m->offset < j->to[p] ? m->offset + 1 : j->to[p];
                sev *e = m->offset < j->to[p] ? sev_build(s, doc, m, p, 0) : NULL;
                if (e)
                    evs[n++] = e;
                if (pos[p] >= j->to[p]) {
                    pending--;
                    part_done(s, rk, paused, p);
                }
            }
            rd_kafka_message_destroy(m);
        }
        post_catchup(s, IN_CATCHUP_BATCH, j->id, evs, n, j->from, NULL);
    }
    /* tell the subscriber first: unassigning can wait for a fetch in flight */
    if (atomic_load(&j->cancel) || atomic_load(&s->stop)) {
        /* nobody waits for this job */
    } else if (pending) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, NULL,
                     "reading the gap from Kafka timed out");
    } else {
        /* the position after the gap: its end, or where a time put us beyond it */
        for (int p = 0; p < s->nparts; p++)
            pos[p] = j->from[p] > j->to[p] ? j->from[p] : j->to[p];
        post_catchup(s, IN_CATCHUP_DONE, j->id, NULL, 0, pos, NULL);
    }
    if (paused->cnt)
        rd_kafka_resume_partitions(rk, paused);
    rd_kafka_assign(rk, NULL);
done:
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    if (paused)
        rd_kafka_topic_partition_list_destroy(paused);
    free(earliest);
    free(pos);
}

static void *catchup_main(void *arg)
{
    fh_stream *s = arg;
    char err[512];
    rd_kafka_conf_t *conf;
    static const char *const defaults[] = {"enable.auto.commit=false",
                                           "enable.auto.offset.store=false",
                                           "group.id=firehose-stream-catchup",
                                           "log_level=3",
                                           "fetch.wait.max.ms=20",
                                           NULL};
    if (fh_kafka_conf(&s->b->cfg, s->b->bootstrap, defaults, &conf, err, sizeof(err)))
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fh_log(FH_LOG_ERROR, "stream.catchup", "error=\"%s\"", err);
        return NULL;
    }
    fh_json_doc doc;
    fh_json_doc_init(&doc, FH_EVENT_DOC_CAP(s->max_event_bytes));
    while (!atomic_load(&s->stop)) {
        pthread_mutex_lock(&s->cmu);
        while (!s->jobs_first && !atomic_load(&s->stop))
            pthread_cond_wait(&s->ccond, &s->cmu);
        cjob *j = s->jobs_first;
        if (j) {
            s->jobs_first = j->next;
            if (!s->jobs_first)
                s->jobs_last = NULL;
            s->running_job = j;
        }
        pthread_mutex_unlock(&s->cmu);
        if (!j)
            continue;
        if (!atomic_load(&j->cancel))
            run_job(s, rk, &doc, j);
        pthread_mutex_lock(&s->cmu);
        s->running_job = NULL;
        s->njobs--;
        pthread_mutex_unlock(&s->cmu);
        free(j->from);
        free(j->to);
        free(j);
    }
    fh_json_doc_free(&doc);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static void on_catchup(fh_stream *s, inmsg *m)
{
    conn *c = NULL;
    sub *u = sub_by_job(s, m->job, &c);
    if (!u)
        return; /* gone: drain_inbox drops the events */
    if (m->kind == IN_CATCHUP_BATCH) {
        for (int p = 0; m->vec && p < s->nparts; p++)
            if (u->progress[p] < m->vec[p])
                u->progress[p] = m->vec[p]; /* earliest and time resolved to offsets */
        if (u->ipend < u->npend) {
            /* the job waits for credit, so this does not happen; keep the order if it does */
            sev **all = realloc(u->pend, (u->npend + m->nevs) * sizeof(*all));
            if (!all)
                return;
            memcpy(all + u->npend, m->evs, m->nevs * sizeof(*all));
            u->pend = all;
            u->npend += m->nevs;
            free(m->evs);
        } else {
            pend_clear(u);
            u->pend = m->evs; /* the batch moves to the sub, delivered as the queue drains */
            u->npend = m->nevs;
        }
        m->evs = NULL;
        m->nevs = 0;
        catchup_step(s, u);
    } else if (m->kind == IN_CATCHUP_DONE) {
        free(u->done_vec);
        u->done_vec = m->vec; /* applied once the pending batch is delivered */
        m->vec = NULL;
        catchup_step(s, u);
    } else {
        char msg[CURSOR_MAX + 600], cur[CURSOR_MAX];
        fh_log(FH_LOG_WARN, "stream.catchup", "sub=%s sse=%d error=\"%s\"", u->id,
               c->kind == CONN_SSE, m->error);
        pend_clear(u);
        if (m->vec) {
            fh_cursor_encode(m->vec, s->nparts, cur, sizeof(cur));
            snprintf(msg, sizeof(msg), "%s; the earliest position is cursor %s", m->error, cur);
            send_error(s, c, u->id, "cursor_expired", msg);
        } else {
            send_error(s, c, u->id, "unavailable", m->error);
        }
        if (c->kind == CONN_SSE)
            close_conn(s, c, CLOSE_BAD_REQUEST, m->error); /* ends after the error event */
        else
            sub_remove(s, c, u);
    }
}

/* ---- connections ------------------------------------------------------------------------------
 */

static void conn_unref(conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        fh_filter_free(&c->sse_filter);
        free(c->sse_from);
        fh_ws_parser_free(&c->parser);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
}

/* Unlinks c from everything the stream thread walks and closes its transport. The stream
 * thread's reference is released later, by reap() at the end of the loop's pass: an epoll batch
 * or a list walk earlier in the same pass may still hold c, and must find it marked dropped
 * rather than freed. Dropping twice is a no-op. */
static void conn_drop(fh_stream *s, conn *c)
{
    if (c->dropped)
        return;
    c->dropped = 1;
    while (c->subs)
        sub_remove(s, c, c->subs);
    conn_lock(c);
    q_free_all(s, c);
    conn_unlock(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    c->registered = 0;
    fh_metric_set(s->m_connections, s->nconns);
    if (c->kind == CONN_WS) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        shutdown(c->fd, SHUT_RDWR);
        MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    } else {
        pthread_mutex_lock(&c->mu);
        c->sse_end = 1;
        if (c->sse_waiting) {
            c->sse_waiting = 0;
            MHD_resume_connection(c->mhd);
        }
        pthread_mutex_unlock(&c->mu);
    }
    /* the dirty and over lists may still point at c: unlink it */
    for (conn **pp = &s->dirty; *pp; pp = &(*pp)->next_dirty)
        if (*pp == c) {
            *pp = c->next_dirty;
            break;
        }
    for (conn **pp = &s->over; c->over_ms && *pp; pp = &(*pp)->next_over)
        if (*pp == c) {
            *pp = c->next_over;
            break;
        }
    c->next_dead = s->dead;
    s->dead = c;
}

/* Releases the stream thread's reference to every connection dropped since the last call. Called
 * only where no pointer to a connection survives: between passes of the loop, and at shutdown. */
static void reap(fh_stream *s)
{
    while (s->dead) {
        conn *c = s->dead;
        s->dead = c->next_dead;
        conn_unref(c);
    }
}

static void conn_link(fh_stream *s, conn *c)
{
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    c->registered = 1;
    c->last_active_ms = fh_now_ms();
    c->hold_budget_ms = HOLD_BURSTS * s->drain_grace_ms;
    c->hold_seen_ms = c->last_active_ms;
    fh_metric_set(s->m_connections, s->nconns);
}

/* Writes as much of c's queue as the socket takes. Returns -1 when c was dropped. */
static int ws_flush(fh_stream *s, conn *c)
{
    if (c->dropped)
        return -1;
    while (c->q.first) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (qent *e = c->q.first; e && n + 2 <= IOV_BATCH; e = e->next) {
            size_t done = e->done;
            if (done < e->head_len) {
                iov[n].iov_base = e->head + done;
                iov[n++].iov_len = e->head_len - done;
                done = e->head_len;
            }
            if (e->shared_len > done - e->head_len) {
                iov[n].iov_base = (char *)e->shared + (done - e->head_len);
                iov[n++].iov_len = e->shared_len - (done - e->head_len);
            }
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_write) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                                             .data.ptr = c};
                    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_write = 1;
                }
                return 0;
            }
            if (errno == EINTR)
                continue;
            conn_drop(s, c);
            return -1;
        }
        size_t left = (size_t)w;
        s->total_queued -= left;
        c->q.bytes -= left;
        while (left && c->q.first) {
            qent *e = c->q.first;
            size_t rem = e->head_len + e->shared_len - e->done;
            if (left < rem) {
                e->done += left;
                left = 0;
                break;
            }
            left -= rem;
            c->q.first = e->next;
            if (!c->q.first)
                c->q.last = NULL;
            sev_unref(e->ev);
            qent_put(s, e);
        }
    }
    if (c->want_write) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_write = 0;
    }
    if (c->closing) {
        conn_drop(s, c);
        return -1;
    }
    return 0;
}

static void sse_kick(conn *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->sse_waiting && (c->q.first || c->sse_end)) {
        c->sse_waiting = 0;
        MHD_resume_connection(c->mhd);
    }
    pthread_mutex_unlock(&c->mu);
}

/* After a batch of routing: continue replays and catch-ups that were waiting for room, write. */
static void flush_dirty(fh_stream *s)
{
    while (s->dirty) {
        conn *c = s->dirty;
        s->dirty = c->next_dirty;
        c->dirty = 0;
        if (c->kind == CONN_WS) {
            if (!c->want_write)
                ws_flush(s, c);
        } else {
            sse_kick(c);
        }
    }
    /* the total cap: drop the largest queues until under it */
    while (s->total_queued > s->max_total_queued) {
        conn *big = NULL;
        for (conn *c = s->conns; c; c = c->next)
            if (!c->closing && (!big || c->q.bytes > big->q.bytes))
                big = c;
        if (!big)
            break;
        close_conn(s, big, CLOSE_SLOW_CONSUMER, "slow consumer: the broker's buffers are full");
        if (big->kind == CONN_WS)
            ws_flush(s, big);
        else
            sse_kick(big);
    }
}

/* Continues replays and catch-ups of c once its queue has drained to half the cap. */
static void on_drained(fh_stream *s, conn *c)
{
    if (c->closing || conn_queued(c) > s->client_queue_max / 2)
        return;
    c->want_room = 0;
    for (sub *u = c->subs; u; u = u->next_in_conn) {
        if (u->state == SUB_REPLAY)
            replay_step(s, u);
        else if (u->state == SUB_CATCHUP)
            catchup_step(s, u);
    }
}

/* Continues every paced replay or catch-up whose connection has room again, whatever drained it
 * (a write that emptied the queue without EAGAIN brings no EPOLLOUT; SSE drains on libmicrohttpd's
 * thread). Returns 1 when some connection still waits for room. */
static int room_service(fh_stream *s)
{
    int waiting = 0;
    for (conn *c = s->conns; c; c = c->next)
        if (c->want_room && !c->closing && !c->dropped) {
            on_drained(s, c);
            waiting |= c->want_room;
        }
    return waiting;
}

/* Connections whose queue passed stream.client_queue_bytes hold the stream (no further record is
 * taken from Kafka, which then stops fetching: nothing is dropped) while their sockets drain, so
 * a client that reads promptly survives a burst bigger than its queue. One still past the cap
 * after stream.drain_grace_ms is a slow consumer. Returns 1 when nothing holds the stream. */
static int holds_clear(fh_stream *s)
{
    int64_t now = fh_now_ms();
    conn **pp = &s->over;
    while (*pp) {
        conn *c = *pp;
        if (c->kind == CONN_WS && !c->closing && ws_flush(s, c))
            continue; /* dropped: conn_drop unlinked it */
        int over = !c->closing && conn_queued(c) > s->client_queue_max;
        c->hold_budget_ms -= now - c->hold_seen_ms;
        c->hold_seen_ms = now;
        if (over && now - c->over_ms <= s->drain_grace_ms && c->hold_budget_ms >= 0) {
            pp = &c->next_over;
            continue;
        }
        *pp = c->next_over;
        c->next_over = NULL;
        c->over_ms = 0;
        if (over)
            close_conn(s, c, CLOSE_SLOW_CONSUMER,
                       "slow consumer: outbound queue full; resume from your last cursor");
    }
    return s->over == NULL;
}

static void ws_read(fh_stream *s, conn *c)
{
    unsigned char buf[16384];
    while (!c->dropped) {
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r == 0) {
            conn_drop(s, c);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            conn_drop(s, c);
            return;
        }
        c->last_active_ms = fh_now_ms();
        size_t off = 0;
        while (off < (size_t)r && !c->closing) {
            size_t used = 0;
            fh_ws_msg msg;
            int rc = fh_ws_parse(&c->parser, buf + off, (size_t)r - off, &used, &msg);
            off += used;
            if (rc == FH_WS_NEED_MORE)
                break;
            const char *text;
            size_t tlen;
            if (rc == FH_WS_MESSAGE) {
                if (msg.opcode != FH_WS_OP_TEXT)
                    close_conn(s, c, 1003, "binary messages are not supported");
                else if (!c->cloudevents && (text = client_text(s, c, &msg, &tlen)))
                    handle_client_message(s, c, text, tlen);
            } else if (rc == FH_WS_PING) {
                send_frame(s, c, FH_WS_OP_PONG, (const char *)msg.data, msg.len);
            } else if (rc == FH_WS_CLOSE) {
                close_conn(s, c, CLOSE_NORMAL, "bye");
            } else if (rc == FH_WS_ERROR) {
                close_conn(s, c, msg.close_code, msg.reason ? msg.reason : "protocol error");
            }
        }
        if (c->dirty && !c->want_write) {
            /* answer promptly */
            if (ws_flush(s, c))
                return;
        }
        if (c->closing)
            return;
    }
}

/* ---- the inbox --------------------------------------------------------------------------------
 */

static void on_new_ws(fh_stream *s, inmsg *m)
{
    conn *c = m->c;
    if (s->nconns >= s->max_conns) {
        unsigned char frame[128];
        size_t n = fh_ws_close_frame(frame, CLOSE_TOO_MANY, "too many connections");
        ssize_t w = write(c->fd, frame, n);
        (void)w;
        shutdown(c->fd, SHUT_RDWR);
        MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
        conn_unref(c);
        fh_metric_add(s->m_closed_other, 1);
        return;
    }
    conn_link(s, c);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (m->extra_len) {
        size_t off = 0;
        while (off < m->extra_len) {
            size_t used = 0;
            fh_ws_msg msg;
            int rc = fh_ws_parse(&c->parser, (unsigned char *)m->extra + off, m->extra_len - off,
                                 &used, &msg);
            off += used;
            if (rc == FH_WS_NEED_MORE)
                break;
            const char *text;
            size_t tlen;
            if (rc == FH_WS_MESSAGE && msg.opcode == FH_WS_OP_TEXT && !c->cloudevents &&
                (text = client_text(s, c, &msg, &tlen)))
                handle_client_message(s, c, text, tlen);
        }
    }
    if (c->cloudevents) {
        /* the cloudevents.json binding has no subscribe message: the URL's filter applies */
        fh_filter f = c->sse_filter;
        memset(&c->sse_filter, 0, sizeof(c->sse_filter));
        subscribe(s, c, "ce", &f, NULL);
    }
}

static void on_new_sse(fh_stream *s, conn *c)
{
    if (s->nconns >= s->max_conns) {
        fh_metric_add(s->m_closed_other, 1); /* as for a WebSocket refused with 4029 */
        pthread_mutex_lock(&c->mu);
        c->sse_end = 1;
        if (c->sse_waiting) {
            c->sse_waiting = 0;
            MHD_resume_connection(c->mhd);
        }
        pthread_mutex_unlock(&c->mu);
        conn_unref(c);
        return;
    }
    conn_link(s, c);
    json_t *from = NULL;
    if (c->sse_from) {
        int64_t ms;
        if (strcmp(c->sse_from, "latest") == 0 || strcmp(c->sse_from, "earliest") == 0)
            from = json_string(c->sse_from);
        else if (fh_time_parse(c->sse_from, &ms) == 0)
            from = json_pack("{s:s}", "time", c->sse_from);
        else
            from = json_pack("{s:s}", "cursor", c->sse_from);
    }
    fh_filter f = c->sse_filter;
    memset(&c->sse_filter, 0, sizeof(c->sse_filter));
    if (!subscribe(s, c, "sse", &f, from))
        close_conn(s, c, CLOSE_BAD_REQUEST, "bad from or cursor");
    json_decref(from);
}

static void drain_inbox(fh_stream *s)
{
    pthread_mutex_lock(&s->inbox_mu);
    inmsg *m = s->inbox_first;
    s->inbox_first = s->inbox_last = NULL;
    pthread_mutex_unlock(&s->inbox_mu);
    while (m) {
        inmsg *next = m->next;
        switch (m->kind) {
        case IN_WS:
            on_new_ws(s, m);
            break;
        case IN_SSE:
            on_new_sse(s, m->c);
            break;
        case IN_SSE_GONE:
            /* the response is gone: drop the stream's reference (if still linked) and its own */
            if (m->c->registered)
                conn_drop(s, m->c);
            conn_unref(m->c);
            break;
        default:
            on_catchup(s, m);
            break;
        }
        for (size_t i = 0; m->evs && i < m->nevs; i++)
            sev_unref(m->evs[i]);
        free(m->evs);
        free(m->vec);
        free(m);
        m = next;
    }
}

/* ---- Kafka side -------------------------------------------------------------------------------
 */

static int discover_partitions(fh_stream *s, char *err, size_t errsize)
{
    const char *topics[2] = {fh_kafka_topic(&s->b->cfg, FH_TOPIC_EVENTS),
                             fh_kafka_topic(&s->b->cfg, FH_TOPIC_LOGS)};
    s->nparts = 0;
    for (int t = 0; t < 2; t++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->rk, topics[t], NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(s->rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (e || !md || md->topic_cnt != 1 || md->topics[0].err ||
            md->topics[0].partition_cnt == 0) {
            snprintf(err, errsize, "metadata of %s: %s", topics[t],
                     e                     ? rd_kafka_err2str(e)
                     : md && md->topic_cnt ? rd_kafka_err2str(md->topics[0].err)
                                           : "no partitions");
            if (md)
                rd_kafka_metadata_destroy(md);
            return -1;
        }
        if (md->topics[0].partition_cnt > MAX_PARTS - s->nparts) {
            /* a cursor names every partition: reading only some would lose events silently */
            snprintf(err, errsize, "%s and %s have more than %d partitions together", topics[0],
                     topics[1], MAX_PARTS);
            rd_kafka_metadata_destroy(md);
            return -1;
        }
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
            s->part_topic[s->nparts] = strdup(topics[t]);
            s->part_id[s->nparts] = md->topics[0].partitions[i].id;
            s->nparts++;
        }
        rd_kafka_metadata_destroy(md);
    }
    /* stable order: topic order, then partition id */
    for (int i = 1; i < s->nparts; i++)
        for (int k = i; k > 0 && strcmp(s->part_topic[k - 1], s->part_topic[k]) == 0 &&
                        s->part_id[k - 1] > s->part_id[k];
             k--) {
            int tmp = s->part_id[k];
            s->part_id[k] = s->part_id[k - 1];
            s->part_id[k - 1] = tmp;
        }
    return 0;
}

static int kafka_start(fh_stream *s, char *err, size_t errsize)
{
    rd_kafka_conf_t *conf;
    static const char *const defaults[] = {"enable.auto.commit=false",
                                           "enable.auto.offset.store=false",
                                           "group.id=firehose-stream",
                                           "log_level=4",
                                           "fetch.wait.max.ms=5",
                                           "fetch.error.backoff.ms=50",
                                           "queued.max.messages.kbytes=8192",
                                           "queued.min.messages=10000",
                                           "fetch.max.bytes=4194304",
                                           NULL};
    if (fh_kafka_conf(&s->b->cfg, s->b->bootstrap, defaults, &conf, err, errsize))
        return -1;
    if (!(s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errsize)))
        return -1;
    rd_kafka_poll_set_consumer(s->rk); /* errors and logs arrive on the same queue */
    if (discover_partitions(s, err, errsize))
        return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
    for (int p = 0; p < s->nparts; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = watermarks(s->rk, s->part_topic[p], s->part_id[p], &lo, &hi, 10000);
        if (e) {
            snprintf(err, errsize, "watermarks of %s/%d: %s", s->part_topic[p], s->part_id[p],
                     rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(l);
            return -1;
        }
        s->hw[p] = s->evicted_hw[p] = hi;
        rd_kafka_topic_partition_list_add(l, s->part_topic[p], s->part_id[p])->offset = hi;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errsize, "assign: %s", rd_kafka_err2str(e));
        return -1;
    }
    /* a consumer created without subscribe still has a consumer queue to read from */
    s->rkq = rd_kafka_queue_get_consumer(s->rk);
    /* An eventfd takes only 8-byte writes: a shorter payload is refused and the stream thread
     * would see new records only when its epoll timeout fires. */
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(s->rkq, s->kafka_efd, &one, sizeof(one));
    return 0;
}

/* Routes one record of the events or logs topics: into the ring, then to live subscribers. */
static void kafka_route(fh_stream *s, rd_kafka_message_t *m)
{
    int p;
    if (!m->err && (p = part_index(s, rd_kafka_topic_name(m->rkt), m->partition)) >= 0 &&
        m->offset >= s->hw[p]) {
        s->hw[p] = m->offset + 1;
        sev *e = sev_build(s, &s->doc, m, p, 1);
        if (e) {
            e->seq = s->next_seq;
            ring_push(s, e);
            s->next_seq++;
            fh_metric_add(s->m_in, 1);
            route(s, e);
            sev_unref(e);
        }
    } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        fh_log(FH_LOG_WARN, "stream.kafka", "error=\"%s\"", rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
}

/* Takes records from Kafka and routes them, one at a time, stopping while a connection past its
 * queue cap holds the stream (the rest of the batch waits in s->kbatch). */
static void kafka_drain(fh_stream *s)
{
    for (int rounds = 0; rounds < 8; rounds++) {
        if (s->kb_i == s->kb_n) {
            ssize_t n = rd_kafka_consume_batch_queue(s->rkq, 0, s->kbatch, KAFKA_BATCH);
            s->kb_i = s->kb_n = 0;
            if (n <= 0)
                return;
            s->kb_n = (size_t)n;
        }
        while (s->kb_i < s->kb_n) {
            if (s->over && !holds_clear(s)) {
                if (!s->held_since_ms)
                    s->held_since_ms = fh_now_ms();
                flush_dirty(s);
                return;
            }
            if (s->held_since_ms) {
                fh_metric_add(s->m_held_ms, fh_now_ms() - s->held_since_ms);
                s->held_since_ms = 0;
            }
            kafka_route(s, s->kbatch[s->kb_i++]);
        }
        flush_dirty(s);
        if (s->kb_n < KAFKA_BATCH)
            return;
    }
}

/* ---- the stream thread ------------------------------------------------------------------------
 */

static void heartbeat(fh_stream *s)
{
    int64_t now = fh_now_ms();
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->kind == CONN_SSE) {
            sse_send(s, c, ": heartbeat\n\n", 13);
        } else if (now - c->last_active_ms > (int64_t)s->heartbeat_s * 1000) {
            send_frame(s, c, FH_WS_OP_PING, "hb", 2);
        }
    }
    flush_dirty(s);
}

/* Drops WebSocket connections the broker closed whose client has not read the close frame (a
 * slow consumer that stopped reading altogether would otherwise keep its socket and the frame
 * half written on it forever). */
static void close_timeouts(fh_stream *s)
{
    int64_t now = fh_now_ms();
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->kind == CONN_WS && c->closing && now - c->closing_ms > s->close_timeout_ms) {
            fh_log(FH_LOG_INFO, "stream.close_timeout",
                   "queued=%zu note=\"client did not read its close frame\"", c->q.bytes);
            conn_drop(s, c);
        }
    }
}

static void *stream_main(void *arg)
{
    fh_stream *s = arg;
    struct epoll_event evs[256];
    int64_t next_hb = fh_now_ms() + s->heartbeat_s * 1000, next_sweep = fh_now_ms() + 1000;
    int timeout = 100;
    kafka_drain(s);
    while (!atomic_load(&s->stop)) {
        int n = epoll_wait(s->epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s->kafka_efd) {
                drain(s->kafka_efd);
                kafka_drain(s);
            } else if (p == &s->inbox_efd) {
                drain(s->inbox_efd);
                drain_inbox(s);
            } else {
                conn *c = p;
                if (c->dropped)
                    continue; /* dropped earlier in this batch; reap() frees it after */
                if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                    conn_drop(s, c);
                    continue;
                }
                if ((evs[i].events & EPOLLOUT) && ws_flush(s, c))
                    continue;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
                    ws_read(s, c);
            }
        }
        /* Kafka's io-event fires on a non-empty queue; keep draining while there is work */
        kafka_drain(s);
        flush_dirty(s);
        int waiting = room_service(s);
        flush_dirty(s);
        /* do not sleep while work is ready (a replay whose queue drained meanwhile), nor long
         * while the stream is held (its deadline, and SSE drains, signal nothing); otherwise
         * EPOLLOUT and the SSE reader's wake-up say when a paced replay can go on */
        timeout = s->over ? 5 : 100;
        for (conn *c = s->conns; waiting && c; c = c->next)
            if (c->want_room && !c->closing && conn_queued(c) <= s->client_queue_max / 2)
                timeout = 0;
        if (fh_now_ms() >= next_hb) {
            heartbeat(s);
            next_hb = fh_now_ms() + s->heartbeat_s * 1000;
        }
        if (fh_now_ms() >= next_sweep) {
            close_timeouts(s);
            next_sweep = fh_now_ms() + 1000;
        }
        fh_metric_set(s->m_queued, (long long)s->total_queued);
        reap(s);
    }
    /* shutting down: tell every client, flush what we can */
    for (conn *c = s->conns; c; c = c->next)
        close_conn(s, c, CLOSE_SHUTDOWN, "broker shutting down");
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->kind == CONN_WS)
            ws_flush(s, c);
    }
    while (s->conns)
        conn_drop(s, s->conns);
    reap(s);
    return NULL;
}

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
    if (!m || fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0 ||
        extra_in_size > sizeof(m->extra)) {
        free(m);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        conn_unref(c);
        return;
    }
    m->kind = IN_WS;
    m->c = c;
    memcpy(m->extra, extra_in, extra_in_size);
    m->extra_len = extra_in_size;
    inbox_post(s, m);
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

static void ws_handler(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_stream *s = ctx;
    char accept[32];
    const char *upgrade = fh_http_header(req, "Upgrade");
    const char *connection = fh_http_header(req, "Connection");
    const char *key = fh_http_header(req, "Sec-WebSocket-Key");
    const char *version = fh_http_header(req, "Sec-WebSocket-Version");
    const char *protos = fh_http_header(req, "Sec-WebSocket-Protocol");
    if (!upgrade || strcasecmp(upgrade, "websocket") != 0 || !connection ||
        !header_has_token(connection, "upgrade")) {
        fh_http_error(resp, 426, "upgrade_required", NULL,
                      "/v1/stream is a WebSocket endpoint (for plain HTTP use /v1/events)");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        fh_http_error(resp, 426, "unsupported_version", "Sec-WebSocket-Version",
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
            conn_unref(c);
            fh_http_error(resp, 400, "bad_filter", filter_param(q.err), "%s", q.err);
            return;
        }
    }
    fh_ws_accept_key(key, accept);
    c->owner = s;
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgraded, c);
    if (!r) {
        conn_unref(c);
        fh_http_error(resp, 503, "unavailable", NULL, "cannot upgrade");
        return;
    }
    MHD_add_response_header(r, "Upgrade", "websocket");
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
        sev_unref(e->ev);
        free(e);
    }
    c->q.bytes -= out;
    c->owner->total_queued -= out;
    if (out && atomic_load(&c->want_room) && c->q.bytes <= c->owner->client_queue_max / 2)
        wake(c->owner->inbox_efd); /* a replay or catch-up can continue */
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
    inbox_post(c->owner, m);
}

static void sse_handler(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_stream *s = ctx;
    conn *c = conn_new(s, CONN_SSE, req->who);
    inmsg *m = calloc(1, sizeof(*m));
    if (!c || !m) {
        if (c)
            conn_unref(c);
        free(m);
        fh_http_error(resp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    qfilter q = {&c->sse_filter, "", 0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_query_field, &q);
    if (q.failed) {
        conn_unref(c);
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
        int64_t *vec = vec_new(s);
        fh_err rc =
            vec ? fh_wsmsg_from_text(start, s->nparts, vec, &kind, err, sizeof(err)) : FH_ERR_NOMEM;
        free(vec);
        if (rc == FH_OK && !(c->sse_from = strdup(start)))
            rc = FH_ERR_NOMEM;
        if (rc) {
            conn_unref(c);
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
        conn_unref(c);
        conn_unref(c);
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
    inbox_post(s, m);
    resp->raw = r;
    resp->status = 200;
}

size_t fh_stream_routes(fh_stream *s, fh_http_route *routes)
{
    routes[0] = (fh_http_route){"GET", "/v1/stream", FH_SCOPE_READ, NULL, ws_handler, s};
    routes[1] = (fh_http_route){"GET", "/v1/events", FH_SCOPE_READ, NULL, sse_handler, s};
    return FH_STREAM_ROUTES;
}

/* ---- start and stop ---------------------------------------------------------------------------
 */

static void register_metrics(fh_stream *s)
{
    s->m_in = fh_metric_new("firehose_stream_events_total", NULL, "Events read by the stream.", 0);
    s->m_deliveries = fh_metric_new("firehose_stream_deliveries_total", NULL,
                                    "Events queued to stream subscribers.", 0);
    s->m_slow = fh_metric_new("firehose_stream_disconnects_total", "reason=\"slow_consumer\"",
                              "Stream clients disconnected by the broker, by reason.", 0);
    s->m_closed_other = fh_metric_new("firehose_stream_disconnects_total", "reason=\"other\"",
                                      "Stream clients disconnected by the broker, by reason.", 0);
    s->m_connections = fh_metric_new("firehose_stream_connections", NULL,
                                     "Open WebSocket and SSE connections.", 1);
    s->m_queued =
        fh_metric_new("firehose_stream_queued_bytes", NULL, "Bytes queued for stream clients.", 1);
    s->m_ring_events =
        fh_metric_new("firehose_stream_ring_events", NULL, "Recent events held for resume.", 1);
    s->m_catchups =
        fh_metric_new("firehose_stream_catchups_total", NULL, "Resumes served from Kafka.", 0);
    s->m_ring_bytes = fh_metric_new("firehose_stream_ring_bytes", NULL,
                                    "Bytes the recent events held for resume cost.", 1);
    s->m_holds = fh_metric_new("firehose_stream_holds_total", NULL,
                               "Times a connection past stream.client_queue_bytes held the "
                               "stream (no record routed until it drained or was dropped).",
                               0);
    s->m_held_ms = fh_metric_new("firehose_stream_held_milliseconds_total", NULL,
                                 "Time the stream spent held by connections past their cap.", 0);
    s->m_z_plain = fh_metric_new("firehose_stream_deflate_bytes_total", "form=\"plain\"",
                                 "Payload bytes of compressed deliveries (permessage-deflate), "
                                 "before (plain) and after (sent) compression.",
                                 0);
    s->m_z_sent = fh_metric_new("firehose_stream_deflate_bytes_total", "form=\"sent\"",
                                "Payload bytes of compressed deliveries (permessage-deflate), "
                                "before (plain) and after (sent) compression.",
                                0);
}

fh_err fh_stream_start(fh_broker *b, fh_stream **out, char *errbuf, size_t errsize)
{
    fh_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return FH_ERR_NOMEM;
    s->b = b;
    s->ring_cap = (size_t)fh_config_int(&b->cfg, "stream.ring_events");
    s->ring_max_bytes = (size_t)fh_config_int(&b->cfg, "stream.ring_bytes");
    s->client_queue_max = (size_t)fh_config_int(&b->cfg, "stream.client_queue_bytes");
    s->max_total_queued = (size_t)fh_config_int(&b->cfg, "stream.total_queue_bytes");
    s->max_conns = (int)fh_config_int(&b->cfg, "stream.max_connections");
    s->max_subs = (int)fh_config_int(&b->cfg, "stream.max_subscriptions");
    s->max_message = (size_t)fh_config_int(&b->cfg, "stream.max_message_bytes");
    s->max_event_bytes = (size_t)fh_config_int(&b->cfg, "events.max_bytes");
    fh_json_doc_init(&s->doc, FH_EVENT_DOC_CAP(s->max_event_bytes));
    s->heartbeat_s = (int)fh_config_int(&b->cfg, "stream.heartbeat_s");
    s->max_jobs = (int)fh_config_int(&b->cfg, "stream.catchup_max");
    s->drain_grace_ms = fh_config_int(&b->cfg, "stream.drain_grace_ms");
    s->close_timeout_ms = fh_config_int(&b->cfg, "stream.close_timeout_ms");
    s->ring = calloc(s->ring_cap, sizeof(sev *));
    s->cur = malloc(CURSOR_MAX);
    s->next_seq = 1; /* 0 is "no event" in sub->mark */
    pthread_mutex_init(&s->inbox_mu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    pthread_cond_init(&s->ccond, NULL);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->kafka_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->inbox_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->ring || !s->cur || s->epfd < 0 || s->kafka_efd < 0 || s->inbox_efd < 0) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "stream: cannot allocate its ring or descriptors");
        goto err;
    }
    if (fh_config_bool(&b->cfg, "stream.permessage_deflate") &&
        (!(s->zd = fh_deflater_new((int)fh_config_int(&b->cfg, "stream.deflate_level"))) ||
         !(s->zi = fh_inflater_new()))) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "stream: cannot allocate its deflater");
        goto err;
    }
    register_metrics(s);
    if (kafka_start(s, errbuf, errsize))
        goto err;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->kafka_efd};
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->kafka_efd, &ev);
    ev.data.ptr = &s->inbox_efd;
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->inbox_efd, &ev);
    if (pthread_create(&s->thread, NULL, stream_main, s) ||
        pthread_create(&s->cthread, NULL, catchup_main, s)) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "stream: cannot start its threads");
        goto err;
    }
    s->ready = 1;
    *out = s;
    return FH_OK;
err:
    *out = NULL;
    fh_stream_free(s);
    return FH_ERR_KAFKA;
}

void fh_stream_stop(fh_stream *s)
{
    if (!s || atomic_exchange(&s->stop, 1))
        return;
    pthread_mutex_lock(&s->cmu);
    pthread_cond_broadcast(&s->ccond);
    pthread_mutex_unlock(&s->cmu);
    if (s->ready) {
        pthread_join(s->thread, NULL);
        pthread_join(s->cthread, NULL);
    }
}

void fh_stream_free(fh_stream *s)
{
    if (!s)
        return;
    fh_stream_stop(s);
    drain_inbox(s); /* SSE responses destroyed by the HTTP server left their last word here */
    while (s->ring_count)
        ring_evict_one(s);
    free(s->ring);
    free(s->cur);
    for (int i = 0; i < INDEX_BUCKETS; i++)
        for (ientry *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e->subs);
            free(e->value);
            free(e);
        }
    free(s->wild);
    while (s->qfree) {
        qent *e = s->qfree;
        s->qfree = e->next;
        free(e);
    }
    fh_json_doc_free(&s->doc);
    fh_deflater_free(s->zd);
    fh_inflater_free(s->zi);
    while (s->kb_i < s->kb_n)
        rd_kafka_message_destroy(s->kbatch[s->kb_i++]);
    if (s->rkq)
        rd_kafka_queue_destroy(s->rkq);
    if (s->rk) {
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    for (int p = 0; p < s->nparts; p++)
        free(s->part_topic[p]);
    for (cjob *j = s->jobs_first, *n; j; j = n) {
        n = j->next;
        free(j->from);
        free(j->to);
        free(j);
    }
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->kafka_efd >= 0)
        close(s->kafka_efd);
    if (s->inbox_efd >= 0)
        close(s->inbox_efd);
    pthread_mutex_destroy(&s->inbox_mu);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->ccond);
    free(s);
}
