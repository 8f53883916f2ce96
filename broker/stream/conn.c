/* conn: connection lifecycle on the stream thread (link, drop, deferred free), writing WebSocket
 * queues, holds of connections past their cap, reading client frames, and the inbox of new
 * connections. */
#include "internal.h"

/* ---- connections ------------------------------------------------------------------------------
 */

void stream_conn_unref(conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        fh_filter_free(&c->sse_filter);
        free(c->sse_from);
        fh_ws_parser_free(&c->parser);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
}

/* Ends an SSE response: marks it and wakes it when it waits for data, so it finishes. */
static void sse_end(conn *c)
{
    pthread_mutex_lock(&c->mu);
    c->sse_end = 1;
    if (c->sse_waiting) {
        c->sse_waiting = 0;
        MHD_resume_connection(c->mhd);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Unlinks c from everything the stream thread walks and closes its transport. The stream
 * thread's reference is released later, by stream_reap() at the end of the loop's pass: an epoll
 * batch or a list walk earlier in the same pass may still hold c, and must find it marked dropped
 * rather than freed. Dropping twice is a no-op. */
void stream_conn_drop(fh_stream *s, conn *c)
{
    if (c->dropped)
        return;
    c->dropped = 1;
    while (c->subs)
        stream_sub_remove(s, c, c->subs);
    stream_conn_lock(c);
    stream_q_free_all(s, c);
    stream_conn_unlock(c);
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
        fh_loop_unwatch(s->loop, &c->io);
        shutdown(c->fd, SHUT_RDWR);
        MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    } else {
        sse_end(c);
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
void stream_reap(fh_stream *s)
{
    while (s->dead) {
        conn *c = s->dead;
        s->dead = c->next_dead;
        stream_conn_unref(c);
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
int stream_ws_flush(fh_stream *s, conn *c)
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
                    fh_loop_rewatch(s->loop, &c->io, FH_LOOP_READ | FH_LOOP_WRITE);
                    c->want_write = 1;
                }
                return 0;
            }
            if (errno == EINTR)
                continue;
            stream_conn_drop(s, c);
            return -1;
        }
        size_t left = (size_t)w;
        uint64_t now = 0;
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
            stream_delivery_written(s, e, &now);
            sev_unref(e->ev);
            stream_qent_put(s, e);
        }
    }
    if (c->want_write) {
        fh_loop_rewatch(s->loop, &c->io, FH_LOOP_READ);
        c->want_write = 0;
    }
    if (c->closing) {
        stream_conn_drop(s, c);
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
void stream_flush_dirty(fh_stream *s)
{
    while (s->dirty) {
        conn *c = s->dirty;
        s->dirty = c->next_dirty;
        c->dirty = 0;
        if (c->kind == CONN_WS) {
            if (!c->want_write)
                stream_ws_flush(s, c);
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
        stream_close_conn(s, big, CLOSE_SLOW_CONSUMER,
                          "slow consumer: the broker's buffers are full");
        if (big->kind == CONN_WS)
            stream_ws_flush(s, big);
        else
            sse_kick(big);
    }
}

/* Continues replays and catch-ups of c once its queue has drained to half the cap. */
static void on_drained(fh_stream *s, conn *c)
{
    if (c->closing || stream_conn_queued(c) > s->client_queue_max / 2)
        return;
    c->want_room = 0;
    for (sub *u = c->subs; u; u = u->next_in_conn) {
        if (u->state == SUB_REPLAY)
            stream_replay_step(s, u);
        else if (u->state == SUB_CATCHUP)
            stream_catchup_step(s, u);
    }
}

/* Continues every paced replay or catch-up whose connection has room again, whatever drained it
 * (a write that emptied the queue without EAGAIN brings no EPOLLOUT; SSE drains on libmicrohttpd's
 * thread). Returns 1 when some connection still waits for room. Walks the connections only when
 * s->room_check says one may wait (a walk of every connection on every pass of the loop was 5%
 * of the stream thread with a thousand live subscribers), or ROOM_WALK_MS after the last walk. */
#define ROOM_WALK_MS 50
int stream_room_service(fh_stream *s)
{
    int64_t now = fh_loop_now(s->loop);
    if (!s->room_check && now - s->room_walked_ms < ROOM_WALK_MS)
        return 0;
    s->room_walked_ms = now;
    int waiting = 0;
    for (conn *c = s->conns; c; c = c->next)
        if (c->want_room && !c->closing && !c->dropped) {
            on_drained(s, c);
            waiting |= c->want_room;
        }
    s->room_check = waiting;
    return waiting;
}

/* Connections whose queue passed stream.client_queue_bytes hold the stream (no further record is
 * taken from Kafka, which then stops fetching: nothing is dropped) while their sockets drain, so
 * a client that reads promptly survives a burst bigger than its queue. One still past the cap
 * after stream.drain_grace_ms is a slow consumer. Returns 1 when nothing holds the stream. */
int stream_holds_clear(fh_stream *s)
{
    int64_t now = fh_now_ms();
    conn **pp = &s->over;
    while (*pp) {
        conn *c = *pp;
        if (c->kind == CONN_WS && !c->closing && stream_ws_flush(s, c))
            continue; /* dropped: conn_drop unlinked it */
        int over = !c->closing && stream_conn_queued(c) > s->client_queue_max;
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
            stream_close_conn(s, c, CLOSE_SLOW_CONSUMER,
                              "slow consumer: outbound queue full; resume from your last cursor");
    }
    return s->over == NULL;
}

void stream_ws_read(fh_stream *s, conn *c)
{
    unsigned char buf[16384];
    while (!c->dropped) {
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r == 0) {
            stream_conn_drop(s, c);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            stream_conn_drop(s, c);
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
                    stream_close_conn(s, c, 1003, "binary messages are not supported");
                else if (!c->cloudevents && (text = stream_client_text(s, c, &msg, &tlen))) {
                    stream_handle_client_message(s, c, text, tlen);
                    s->room_check = 1; /* it may have started a replay */
                }
            } else if (rc == FH_WS_PING) {
                stream_send_frame(s, c, FH_WS_OP_PONG, (const char *)msg.data, msg.len);
            } else if (rc == FH_WS_CLOSE) {
                stream_close_conn(s, c, CLOSE_NORMAL, "bye");
            } else if (rc == FH_WS_ERROR) {
                stream_close_conn(s, c, msg.close_code, msg.reason ? msg.reason : "protocol error");
            }
        }
        if (c->dirty && !c->want_write) {
            /* answer promptly */
            if (stream_ws_flush(s, c))
                return;
        }
        if (c->closing)
            return;
    }
}

/* The loop's callback for a WebSocket: a hang-up drops it, room to write flushes its queue, input
 * is read. (A connection dropped earlier in the same batch was unwatched, so it is never called.)
 */
void stream_conn_io(fh_loop *l, fh_loop_io *io, unsigned what)
{
    conn *c = io->arg;
    fh_stream *s = c->owner;
    (void)l;
    if (what & FH_LOOP_HUP) {
        stream_conn_drop(s, c);
        return;
    }
    if ((what & FH_LOOP_WRITE) && stream_ws_flush(s, c))
        return;
    if (what & FH_LOOP_READ)
        stream_ws_read(s, c);
}

/* ---- the inbox --------------------------------------------------------------------------------
 */

/* Refuses an upgraded socket the stream cannot take for want of resources: close 4029 (retry
 * later), as for too many connections, and counted. Any thread. */
void stream_ws_refuse(fh_stream *s, int fd, struct MHD_UpgradeResponseHandle *urh)
{
    unsigned char frame[128];
    size_t n = fh_ws_close_frame(frame, CLOSE_TOO_MANY, "the broker is out of resources");
    ssize_t w = send(fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    shutdown(fd, SHUT_RDWR);
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    fh_metric_add(s->m_refused, 1);
}

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
        stream_conn_unref(c);
        fh_metric_add(s->m_closed_other, 1);
        return;
    }
    c->io = (fh_loop_io){.fd = c->fd, .fn = stream_conn_io, .arg = c};
    if (fh_loop_watch(s->loop, &c->io, FH_LOOP_READ) != FH_OK) {
        /* the kernel will not watch one more socket (ENOMEM, fs.epoll.max_user_watches) */
        stream_ws_refuse(s, c->fd, c->urh);
        stream_conn_unref(c);
        return;
    }
    conn_link(s, c);
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
                (text = stream_client_text(s, c, &msg, &tlen)))
                stream_handle_client_message(s, c, text, tlen);
        }
    }
    if (c->cloudevents) {
        /* the cloudevents.json binding has no subscribe message: the URL's filter applies */
        fh_filter f = c->sse_filter;
        memset(&c->sse_filter, 0, sizeof(c->sse_filter));
        stream_subscribe(s, c, "ce", &f, NULL);
    }
}

void stream_on_new_sse(fh_stream *s, conn *c)
{
    if (s->nconns >= s->max_conns) {
        fh_metric_add(s->m_closed_other, 1); /* as for a WebSocket refused with 4029 */
        sse_end(c);
        stream_conn_unref(c);
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
    if (!stream_subscribe(s, c, "sse", &f, from))
        stream_close_conn(s, c, CLOSE_BAD_REQUEST, "bad from or cursor");
    json_decref(from);
}

/* Catch-up events one inbox drain takes on at most: the rest waits for the next loop pass, so
 * live records are routed between catch-up batches. */
#define INBOX_CATCHUP_EVENTS 2048

/* Puts m and what follows it back at the inbox's head (they came first) and wakes the loop. */
static void inbox_putback(fh_stream *s, inmsg *m)
{
    inmsg *last = m;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&s->inbox_mu);
    last->next = s->inbox_first;
    if (!s->inbox_first)
        s->inbox_last = last;
    s->inbox_first = m;
    pthread_mutex_unlock(&s->inbox_mu);
    fh_loop_wake(s->loop);
}

void stream_drain_inbox(fh_stream *s)
{
    size_t catchup_events = 0;
    /* new subscriptions may replay, catch-up batches go on, an SSE reader that drained wakes us */
    s->room_check = 1;
    pthread_mutex_lock(&s->inbox_mu);
    inmsg *m = s->inbox_first;
    s->inbox_first = s->inbox_last = NULL;
    pthread_mutex_unlock(&s->inbox_mu);
    while (m) {
        inmsg *next = m->next;
        if (m->kind == IN_CATCHUP_BATCH && catchup_events >= INBOX_CATCHUP_EVENTS) {
            inbox_putback(s, m);
            return;
        }
        catchup_events += m->kind == IN_CATCHUP_BATCH ? m->nevs : 0;
        switch (m->kind) {
        case IN_WS:
            on_new_ws(s, m);
            break;
        case IN_SSE:
            stream_on_new_sse(s, m->c);
            break;
        case IN_SSE_GONE:
            /* the response is gone: drop the stream's reference (if still linked) and its own */
            if (m->c->registered)
                stream_conn_drop(s, m->c);
            stream_conn_unref(m->c);
            break;
        default:
            stream_on_catchup(s, m);
            break;
        }
        for (size_t i = 0; m->evs && i < m->nevs; i++)
            sev_unref(m->evs[i]);
        free(m->evs);
        free(m->vec);
        free(m->upto);
        stream_cjob_unref(m->j);
        free(m);
        m = next;
    }
}
