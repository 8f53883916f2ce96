/* subs: subscriptions of a connection: subscribe and unsubscribe, replays from the ring and the
 * pacing of replays and catch-ups, and the client messages that drive them. */
#include "internal.h"

/* ---- subscriptions ----------------------------------------------------------------------------
 */

static sub *find_sub(conn *c, const char *id)
{
    for (sub *u = c->subs; u; u = u->next_in_conn)
        if (strcmp(u->id, id) == 0)
            return u;
    return NULL;
}

/* Drops u's reference to its catch-up job. */
static void release_job(sub *u)
{
    if (!u->cj)
        return;
    u->cj->owner = NULL;
    stream_cjob_unref(u->cj);
    u->cj = NULL;
}

/* Lets go of u's catch-up job: the catch-up thread drops it when it next looks. */
static void cancel_job(fh_stream *s, sub *u)
{
    if (!u->cj)
        return;
    atomic_store(&u->cj->cancel, 1);
    release_job(u);
    fh_loop_wake(s->cloop);
}

/* Drops a catch-up batch not yet delivered. */
void stream_pend_clear(sub *u)
{
    for (size_t i = u->ipend; i < u->npend; i++)
        sev_unref(u->pend[i]);
    free(u->pend);
    u->pend = NULL;
    u->npend = u->ipend = 0;
    u->nends = 0;
}

/* The batches of u's pending events queued wholly by now: their credit is owed to the job. */
static void batches_queued(sub *u)
{
    size_t k = 0;
    while (k < u->nends && u->pend_ends[k] <= u->ipend)
        k++;
    if (!k)
        return;
    u->pend_batches += (int)k;
    u->nends -= k;
    memmove(u->pend_ends, u->pend_ends + k, u->nends * sizeof(*u->pend_ends));
}

/* Appends a catch-up batch (evs[0..n), which u then owns; freed) to u's pending events and notes
 * where it ends, so that its credit goes back as soon as it has been queued, while the next
 * batch is still being delivered: the job fills one batch while the stream thread delivers
 * another. Returns 0, or -1 when out of memory (evs untouched). */
int stream_pend_add(sub *u, sev **evs, size_t n)
{
    batches_queued(u);
    if (u->nends == u->capends) {
        size_t *v = fh_grow(u->pend_ends, &u->capends, sizeof(*v), 4);
        if (!v)
            return -1;
        u->pend_ends = v;
    }
    if (u->ipend < u->npend) {
        /* the next batch came while this one is delivered (or a job's last one) */
        sev **all = realloc(u->pend, (u->npend + n) * sizeof(*all));
        if (!all)
            return -1;
        memcpy(all + u->npend, evs, n * sizeof(*all));
        u->pend = all;
        u->npend += n;
        free(evs);
    } else {
        free(u->pend); /* delivered: batches_queued took every end */
        u->pend = evs;
        u->npend = n;
        u->ipend = 0;
    }
    u->pend_ends[u->nends++] = u->npend;
    return 0;
}

static void sub_free(fh_stream *s, sub *u)
{
    cancel_job(s, u);
    stream_index_remove(s, u);
    fh_filter_free(&u->filter);
    stream_pend_clear(u);
    free(u->done_vec);
    free(u->pend_upto);
    free(u->pend_ends);
    free(u->progress);
    free(u);
}

void stream_sub_remove(fh_stream *s, conn *c, sub *u)
{
    for (sub **pp = &c->subs; *pp; pp = &(*pp)->next_in_conn)
        if (*pp == u) {
            *pp = u->next_in_conn;
            break;
        }
    c->nsubs--;
    sub_free(s, u);
}

/* 1 when c's queue has room for another slice of a replay or catch-up (at most half the cap is
 * filled that way, so live events and replies still fit); else asks to be called again once it
 * has drained (want_room) and returns 0.
 *
 * want_room is the connection's, not the subscription's: it says that some replay or catch-up
 * of c waits, and only on_drained (conn.c), which then steps every subscription of c, clears it.
 * So a look finding room leaves the flag as it was: clearing it here would forget a sibling that
 * is waiting (one that yielded after CATCHUP_STEP_EVENTS, or found no room before the queue
 * drained), and that sibling would wait for the next request for room by any other, possibly
 * forever (its batch undelivered, so its job never gets credit again). */
static int paced_room(fh_stream *s, conn *c)
{
    /* flag first, then look: an SSE reader draining meanwhile sees the flag and wakes us */
    int was = atomic_exchange(&c->want_room, 1);
    if (stream_conn_queued(c) > s->client_queue_max / 2)
        return 0;
    c->want_room = was;
    return 1;
}

/* Replays ring events at or after u->progress while the queue has room (so a large replay never
 * floods it); switches u to live once it reaches the ring's head. u->replay_seq 0 starts a
 * replay: from the ring's oldest event if the ring covers u->progress, else from Kafka first. */
void stream_replay_step(fh_stream *s, sub *u)
{
    uint64_t first = s->next_seq - s->ring_count;
    if (u->replay_seq < first) {
        /* the ring does not start at our position (any more): read the gap from Kafka */
        if (!stream_ring_covers(s, u->progress)) {
            if (stream_start_catchup(s, u, 1))
                stream_close_conn(s, u->c, CLOSE_INTERNAL,
                                  "out of memory"); /* cannot remove u here */
            return;
        }
        u->replay_seq = first;
    }
    while (u->replay_seq < s->next_seq) {
        if (u->c->closing || !paced_room(s, u->c))
            return;
        sev *e = stream_ring_at_seq(s, u->replay_seq++);
        if (!e || e->offset < u->progress[e->part])
            continue;
        if (stream_sub_matches(u, e))
            stream_deliver(s, u, e, 1);
        else
            u->progress[e->part] = e->offset + 1; /* a tighter cursor for the next delivery */
    }
    /* caught up: the ring's cursors are now at least this subscriber's progress */
    u->state = SUB_LIVE;
    u->own_cursors = 0;
    /* the newest ring event has been replayed; the next one routed must be delivered */
    u->mark = s->next_seq - 1;
}

/* Catch-up events one call of catchup_step queues at most. */
#define CATCHUP_STEP_EVENTS 256

/* Delivers u's pending catch-up batches while the queue has room (CATCHUP_STEP_EVENTS at a
 * time), giving each batch's credit back once it has been queued while there was room; once all
 * are delivered, asks the job for the next batch, or, once the job has ended, continues from the
 * ring (replay_step reads from Kafka again if the ring moved past the job's end meanwhile). */
void stream_catchup_step(fh_stream *s, sub *u)
{
    conn *c = u->c;
    batches_queued(u);
    for (int n = 0; u->ipend < u->npend; n++) {
        if (c->closing || !paced_room(s, c))
            return;
        if (u->pend_batches)
            stream_grant_credit(s, u); /* the job fills the next while this one is delivered */
        if (n == CATCHUP_STEP_EVENTS) {
            /* the rest on a later loop pass (room service): live records go between */
            c->want_room = 1;
            return;
        }
        sev *e = u->pend[u->ipend++];
        if (e->offset >= u->progress[e->part]) {
            if (stream_sub_allowed(u, e)) /* the job matched u's filter already */
                stream_deliver(s, u, e, 1);
            else
                u->progress[e->part] = e->offset + 1;
        }
        sev_unref(e);
        batches_queued(u);
    }
    stream_pend_clear(u);
    /* what the job read past the batch's last event matched nothing: a tighter cursor */
    stream_progress_raise(s, u, &u->pend_upto);
    if (u->done_vec) {
        stream_progress_raise(s, u, &u->done_vec);
        release_job(u); /* ended: the catch-up thread has dropped it already */
        u->state = SUB_REPLAY;
        u->replay_seq = 0;
        stream_replay_step(s, u);
    } else if (!c->closing && paced_room(s, c)) {
        stream_grant_credit(s, u);
    }
}

/* Positions u at vec: a replay from the ring when it covers vec, else a catch-up from Kafka.
 * Sends nothing on success; on failure (busy, out of memory) the error has been sent and the
 * caller removes u. The replay itself starts with replay_step. */
static int begin_from(fh_stream *s, sub *u, const int64_t *vec)
{
    memcpy(u->progress, vec, (size_t)s->nparts * sizeof(int64_t));
    u->own_cursors = 1;
    if (stream_ring_covers(s, vec)) {
        u->state = SUB_REPLAY;
        u->replay_seq = s->next_seq - s->ring_count;
        return 0;
    }
    return stream_start_catchup(s, u, 0);
}

/* Creates a subscription on c starting at from (fh_wsmsg_from; on_new_sse turns the SSE text into
 * the same JSON). Time and earliest need Kafka: the catch-up thread resolves them. Sends
 * "subscribed" (WebSocket) or errors. Returns the sub or NULL. */
sub *stream_subscribe(fh_stream *s, conn *c, const char *id, fh_filter *filter, const json_t *from)
{
    char err[256], cur[CURSOR_MAX];
    fh_wsmsg_from_kind kind = FH_FROM_LATEST;
    sub *u = calloc(1, sizeof(*u));
    int64_t *vec = stream_vec_new(s);
    if (!u || !vec || !(u->progress = stream_vec_new(s))) {
        free(u ? u->progress : NULL);
        free(u);
        free(vec);
        fh_filter_free(filter);
        stream_send_error(s, c, id, "internal", "out of memory");
        return NULL;
    }
    snprintf(u->id, sizeof(u->id), "%s", id);
    u->c = c;
    u->filter = *filter; /* ownership moves to the subscription */
    memset(filter, 0, sizeof(*filter));
    u->indexed = -2;
    if (stream_from(s, from, NULL, vec, &kind, err, sizeof(err))) {
        stream_send_error(s, c, id, "bad_request", err);
        sub_free(s, u);
        free(vec);
        return NULL;
    }
    for (int p = 0; kind == FH_FROM_CURSOR && p < s->nparts; p++)
        if (vec[p] < 0 && s->evicted_hw[p] == 0)
            vec[p] = 0; /* a partition added since the cursor, all of it in the ring */
    u->next_in_conn = c->subs;
    c->subs = u;
    c->nsubs++;
    stream_index_add(s, u);
    if (kind == FH_FROM_LATEST) {
        u->state = SUB_LIVE;
        u->mark = s->next_seq - 1; /* "latest": after the newest ring event, not the next one */
        memcpy(u->progress, s->hw, (size_t)s->nparts * sizeof(int64_t));
    } else if (begin_from(s, u, vec)) {
        stream_sub_remove(s, c, u);
        free(vec);
        return NULL;
    }
    if (c->kind == CONN_WS && !c->closing && !c->cloudevents) {
        /* earliest and time are resolved to offsets later: their cursor comes with each event */
        int with_cursor = kind == FH_FROM_LATEST || kind == FH_FROM_CURSOR;
        fh_buf b;
        if (with_cursor)
            stream_cursor_encode(s, kind == FH_FROM_LATEST ? s->hw : vec, cur, sizeof(cur));
        if (fh_wsmsg_subscribed_frame(&b, u->id, with_cursor ? cur : NULL) == FH_OK)
            stream_send_frame(s, c, FH_WS_OP_TEXT, b.data, b.len);
        fh_buf_free(&b);
    }
    free(vec);
    if (u->state == SUB_REPLAY)
        stream_replay_step(s, u); /* after "subscribed": the replayed events follow it */
    return u;
}

/* Handles one client text message on the "firehose" protocol. */
void stream_handle_client_message(fh_stream *s, conn *c, const char *data, size_t len)
{
    char err[320];
    fh_wsmsg m;
    if (fh_wsmsg_parse(data, len, &m, err, sizeof(err))) {
        stream_send_error(s, c, m.id[0] ? m.id : NULL, m.code, err);
    } else if (m.op == FH_WSMSG_PING) {
        stream_send_json(s, c, "{\"op\":\"pong\"}");
    } else if (m.op == FH_WSMSG_UNSUBSCRIBE) {
        sub *u = find_sub(c, m.id);
        if (u) {
            stream_sub_remove(s, c, u);
            stream_send_json(s, c, "{\"op\":\"unsubscribed\",\"id\":\"%s\"}", m.id);
        } else {
            stream_send_error(s, c, m.id, "unknown_subscription", "no subscription with this id");
        }
    } else if (find_sub(c, m.id)) {
        stream_send_error(s, c, m.id, "duplicate_id", "a subscription with this id exists");
    } else if (c->nsubs >= s->max_subs) {
        snprintf(err, sizeof(err), "at most %d subscriptions per connection", s->max_subs);
        stream_send_error(s, c, m.id, "too_many_subscriptions", err);
    } else {
        fh_filter f;
        if (fh_filter_parse(json_object_get(m.msg, "filter"), &f, err, sizeof(err))) {
            stream_send_error(s, c, m.id, "bad_filter", err);
            fh_filter_free(&f);
        } else {
            stream_subscribe(s, c, m.id, &f, json_object_get(m.msg, "from"));
        }
    }
    fh_wsmsg_clear(&m);
}
