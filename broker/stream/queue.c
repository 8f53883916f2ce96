/* queue: per-connection outbound queues and what goes into them (deliveries of shared events,
 * control frames, SSE text, errors, close), and the hand-over inbox from other threads. */
#include "internal.h"

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
void stream_qent_put(fh_stream *s, qent *e)
{
    if (!e->small || s->nqfree >= QFREE_MAX) {
        free(e);
        return;
    }
    e->next = s->qfree;
    s->qfree = e;
    s->nqfree++;
}

void stream_inbox_post(fh_stream *s, inmsg *m)
{
    pthread_mutex_lock(&s->inbox_mu);
    m->next = NULL;
    if (s->inbox_last)
        s->inbox_last->next = m;
    else
        s->inbox_first = m;
    s->inbox_last = m;
    pthread_mutex_unlock(&s->inbox_mu);
    fh_loop_wake(s->loop);
}

int64_t *stream_vec_new(const fh_stream *s)
{
    return calloc((size_t)(s->vec_cap ? s->vec_cap : 1), sizeof(int64_t));
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

void stream_q_free_all(fh_stream *s, conn *c)
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

void stream_conn_lock(conn *c)
{
    if (c->kind == CONN_SSE)
        pthread_mutex_lock(&c->mu);
}

void stream_conn_unlock(conn *c)
{
    if (c->kind == CONN_SSE)
        pthread_mutex_unlock(&c->mu);
}

/* Bytes queued for c (an SSE reader drains its queue on another thread). */
size_t stream_conn_queued(conn *c)
{
    stream_conn_lock(c);
    size_t n = c->q.bytes;
    stream_conn_unlock(c);
    return n;
}

/* Queues a whole WebSocket frame of inline bytes (control messages, JSON replies). */
void stream_send_frame(fh_stream *s, conn *c, int opcode, const char *payload, size_t len)
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

void stream_send_json(fh_stream *s, conn *c, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        stream_send_frame(s, c, FH_WS_OP_TEXT, buf,
                          (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Queues len bytes of SSE text (comments, error events) on an SSE connection. */
void stream_sse_send(fh_stream *s, conn *c, const char *text, size_t len)
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
void stream_send_error(fh_stream *s, conn *c, const char *id, const char *code, const char *message)
{
    fh_buf b;
    /* out of memory: nothing rather than half a frame */
    if (fh_wsmsg_error_frame(&b, c->kind == CONN_SSE, id, code, message) == FH_OK) {
        if (c->kind == CONN_SSE)
            stream_sse_send(s, c, b.data, b.len);
        else
            stream_send_frame(s, c, FH_WS_OP_TEXT, b.data, b.len);
    }
    fh_buf_free(&b);
}

/* Queues a close frame; the connection is dropped once it is flushed. */
void stream_close_conn(fh_stream *s, conn *c, unsigned code, const char *reason)
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

/* ---- delivering -------------------------------------------------------------------------------
 */

#define ZHEAD_EXTRA 5 /* a compressed delivery's head holds a stored-block header too */
static int deliver_deflated(fh_stream *s, sub *u, sev *e, qent *q, const char *cur, size_t clen);

/* The firehose protocol's per-subscriber text in front of an event's shared bytes:
 * `{"op":"event","sub":"ID` and, for a subscriber with its own cursor (cur not NULL),
 * `","cursor":"C"`. Written into out (room for 34 + sizeof(u->id) + clen bytes); returns its
 * length. Built by hand rather than with printf: it is made once per delivery. */
static size_t event_head(char *out, const sub *u, const char *cur, size_t clen)
{
    static const char op[] = "{\"op\":\"event\",\"sub\":\"", cu[] = "\",\"cursor\":\"";
    size_t n = sizeof(op) - 1, idlen = strlen(u->id);
    memcpy(out, op, n);
    memcpy(out + n, u->id, idlen);
    n += idlen;
    if (cur) {
        memcpy(out + n, cu, sizeof(cu) - 1);
        n += sizeof(cu) - 1;
        memcpy(out + n, cur, clen);
        n += clen;
        out[n++] = '"';
    }
    return n;
}

void stream_progress_raise(const fh_stream *s, sub *u, int64_t **vec)
{
    if (!*vec)
        return;
    for (int p = 0; p < s->nparts; p++)
        if (u->progress[p] < (*vec)[p])
            u->progress[p] = (*vec)[p];
    free(*vec);
    *vec = NULL;
}

int stream_sub_allowed(const sub *u, const sev *e)
{
    return !u->c->who || !u->c->who->constrained ||
           fh_filter_match_facts(&u->c->who->constraint, &e->facts);
}

int stream_sub_matches(const sub *u, const sev *e)
{
    return fh_filter_match_facts(&u->filter, &e->facts) && stream_sub_allowed(u, e);
}

/* Queues e for u (which matched). paced: a replay or catch-up, which stops at half the queue cap
 * by itself; a live delivery that takes the queue past the cap puts the connection on s->over,
 * which holds the stream until it drains (holds_clear). Returns -1 when c is closing or out of
 * memory. */
int stream_deliver(fh_stream *s, sub *u, sev *e, int paced)
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
        clen = stream_cursor_encode(s, u->progress, cur, CURSOR_MAX);
    } else {
        /* the shared cursor sits inside the tail: `","cursor":"C"` */
        cs = e->tail + 12;
        clen = e->b_off - 13;
    }
    if (c->kind == CONN_SSE && stream_sev_sse(s, e))
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
        memcpy(q->head, "id: ", 4);
        memcpy(q->head + 4, cs, clen);
        q->head[4 + clen] = '\n';
        n = (int)clen + 5;
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
        size_t bl = event_head(body, u, u->own_cursors ? cur : NULL, clen);
        if (u->own_cursors) {
            q->shared = e->tail + e->b_off;
            q->shared_len = e->tail_len - e->b_off;
        } else {
            q->shared = e->tail;
            q->shared_len = e->tail_len;
        }
        n = (int)fh_ws_frame_header((unsigned char *)q->head, FH_WS_OP_TEXT,
                                    (uint64_t)bl + q->shared_len);
        memmove(q->head + n, body, bl);
        n += (int)bl;
    }
    q->head_len = (size_t)n;
    if (!paced) {
        q->queued_ns = s->route_ns;
        s->live_queued++;
    }
    stream_conn_lock(c);
    q_push(s, c, q);
    size_t queued = c->q.bytes;
    stream_conn_unlock(c);
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

void stream_delivery_written(fh_stream *s, const qent *e, uint64_t *now)
{
    if (!e->queued_ns || !e->ev)
        return;
    if (!*now)
        *now = fh_mono_ns();
    fh_histogram_observe(s->h_write, (int64_t)(*now - e->queued_ns));
    if (e->ev->kafka_ns >= 0)
        fh_histogram_observe(s->h_total, e->ev->kafka_ns + (int64_t)(*now - e->ev->taken_ns));
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
    size_t tl =
        v == ZV_CLOUDEVENTS ? 0 : event_head(text, u, v == ZV_OWN_CURSOR ? cur : NULL, clen);
    if (tl > FH_DEFLATE_STORED_MAX)
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
const char *stream_client_text(fh_stream *s, conn *c, const fh_ws_msg *m, size_t *len)
{
    const unsigned char *out;
    char err[128];
    *len = m->len;
    if (!m->compressed)
        return (const char *)m->data;
    fh_err rc = s->zi ? fh_inflate_message(s->zi, m->data, m->len, s->max_message, &out, len, err,
                                           sizeof(err))
                      : FH_ERR_NOMEM;
    if (rc == FH_OK && fh_utf8_valid(out, *len))
        return (const char *)out;
    stream_close_conn(s, c,
                      rc == FH_ERR_TOOBIG  ? CLOSE_TOO_BIG
                      : rc == FH_ERR_NOMEM ? CLOSE_INTERNAL
                                           : FH_WS_CLOSE_BAD_DATA,
                      rc == FH_ERR_TOOBIG ? "message too big"
                      : rc == FH_OK       ? "text is not UTF-8"
                                          : "bad compressed data");
    return NULL;
}
