/* broker/stream/subs.c's pacing on its own, without sockets or threads: replays and catch-ups of
 * one connection share its want_room flag ("some subscription of this connection waits for the
 * queue to drain"), and the stream thread steps them all again only while it is set. A
 * subscription that yields (a catch-up after CATCHUP_STEP_EVENTS, or one that found no room)
 * and whose flag a sibling then cleared would wait for good: its batch undelivered, its job
 * without credit, nothing to wake it. These tests step the subscriptions as the stream thread
 * does (on a batch for one of them, and on_drained for all of them) and hold every event to be
 * delivered and every batch credited. */
#include "fh_test.h"

/* the module's functions subs.c calls, under this test's names (other unit tests include
 * index.c and ring.c, whose symbols the test binary links already) */
#define stream_cjob_unref ts_cjob_unref
#define stream_close_conn ts_close_conn
#define stream_conn_queued ts_conn_queued
#define stream_cursor_encode ts_cursor_encode
#define stream_deliver ts_deliver
#define stream_from ts_from
#define stream_grant_credit ts_grant_credit
#define stream_index_add ts_index_add
#define stream_index_remove ts_index_remove
#define stream_ring_at_seq ts_ring_at_seq
#define stream_ring_covers ts_ring_covers
#define stream_send_error ts_send_error
#define stream_send_frame ts_send_frame
#define stream_send_json ts_send_json
#define stream_start_catchup ts_start_catchup
#define stream_sub_allowed ts_sub_allowed
#define stream_sub_matches ts_sub_matches
#define stream_progress_raise ts_progress_raise
#define stream_vec_new ts_vec_new

#include "../../broker/stream/subs.c"

/* ---- stand-ins: a connection whose queue holds ts_queued bytes -------------------------------
 */

#define TS_SUBS 4
#define TS_EVENTS 4096

static size_t ts_queued;                   /* what the connection's queue holds now */
static int64_t ts_got[TS_SUBS][TS_EVENTS]; /* offsets delivered per subscription, in order */
static size_t ts_ngot[TS_SUBS];
static int ts_credited[TS_SUBS]; /* batches credited back per subscription */

void stream_cjob_unref(cjob *j)
{
    (void)j;
}

void stream_close_conn(fh_stream *s, conn *c, unsigned code, const char *reason)
{
    (void)s;
    (void)code;
    (void)reason;
    c->closing = 1;
}

size_t stream_conn_queued(conn *c)
{
    (void)c;
    return ts_queued;
}

size_t stream_cursor_encode(fh_stream *s, const int64_t *vec, char *out, size_t size)
{
    (void)s;
    (void)vec;
    return (size_t)snprintf(out, size, "c");
}

int stream_deliver(fh_stream *s, sub *u, sev *e, int paced)
{
    int n = atoi(u->id);
    (void)s;
    (void)paced;
    if (ts_ngot[n] < TS_EVENTS)
        ts_got[n][ts_ngot[n]++] = e->offset;
    u->progress[e->part] = e->offset + 1;
    return 0;
}

fh_err stream_from(fh_stream *s, const json_t *from, const char *text, int64_t *vec,
                   fh_wsmsg_from_kind *kind, char *errbuf, size_t errsize)
{
    (void)s;
    (void)from;
    (void)text;
    (void)vec;
    (void)kind;
    snprintf(errbuf, errsize, "not in this test");
    return FH_ERR_INVAL;
}

void stream_grant_credit(fh_stream *s, sub *u)
{
    (void)s;
    ts_credited[atoi(u->id)] += u->pend_batches;
    u->pend_batches = 0;
}

void stream_index_add(fh_stream *s, sub *u)
{
    (void)s;
    (void)u;
}

void stream_index_remove(fh_stream *s, sub *u)
{
    (void)s;
    (void)u;
}

sev *stream_ring_at_seq(fh_stream *s, uint64_t seq)
{
    (void)s;
    (void)seq;
    return NULL;
}

int stream_ring_covers(const fh_stream *s, const int64_t *vec)
{
    (void)s;
    (void)vec;
    return 1;
}

void stream_send_error(fh_stream *s, conn *c, const char *id, const char *code, const char *message)
{
    (void)s;
    (void)c;
    (void)id;
    (void)code;
    (void)message;
}

void stream_send_frame(fh_stream *s, conn *c, int opcode, const char *payload, size_t len)
{
    (void)s;
    (void)c;
    (void)opcode;
    (void)payload;
    (void)len;
}

void stream_send_json(fh_stream *s, conn *c, const char *fmt, ...)
{
    (void)s;
    (void)c;
    (void)fmt;
}

int stream_start_catchup(fh_stream *s, sub *u, int admitted)
{
    (void)s;
    (void)u;
    (void)admitted;
    return -1;
}

int stream_sub_matches(const sub *u, const sev *e)
{
    (void)u;
    (void)e;
    return 1;
}

int stream_sub_allowed(const sub *u, const sev *e)
{
    (void)u;
    (void)e;
    return 1;
}

void stream_progress_raise(const fh_stream *s, sub *u, int64_t **vec)
{
    for (int p = 0; *vec && p < s->nparts; p++)
        if (u->progress[p] < (*vec)[p])
            u->progress[p] = (*vec)[p];
    free(*vec);
    *vec = NULL;
}

int64_t *stream_vec_new(const fh_stream *s)
{
    return calloc((size_t)s->nparts, sizeof(int64_t));
}

/* ---- the connection and its subscriptions ---------------------------------------------------
 */

static fh_stream ts_s;
static conn ts_c;
static sub ts_subs[TS_SUBS];
static int64_t ts_progress[TS_SUBS];

/* A connection with n subscriptions catching up (ids "0".."n-1"), nothing pending, room in its
 * queue, and a stream of one partition. */
static void ts_open(int n)
{
    memset(&ts_s, 0, sizeof(ts_s));
    memset(&ts_c, 0, sizeof(ts_c));
    memset(ts_subs, 0, sizeof(ts_subs));
    memset(ts_ngot, 0, sizeof(ts_ngot));
    memset(ts_credited, 0, sizeof(ts_credited));
    memset(ts_progress, 0, sizeof(ts_progress));
    ts_s.nparts = 1;
    ts_s.client_queue_max = 1 << 20;
    ts_queued = 0;
    for (int i = n - 1; i >= 0; i--) {
        sub *u = &ts_subs[i];
        snprintf(u->id, sizeof(u->id), "%d", i);
        u->c = &ts_c;
        u->state = SUB_CATCHUP;
        u->progress = &ts_progress[i];
        u->next_in_conn = ts_c.subs;
        ts_c.subs = u;
        ts_c.nsubs++;
    }
}

/* A batch of n events from offset first for u, as stream_on_catchup hands it over. */
static void ts_batch(sub *u, int64_t first, size_t n)
{
    sev **evs = calloc(n ? n : 1, sizeof(*evs));
    CHECK(evs != NULL);
    for (size_t i = 0; evs && i < n; i++) {
        CHECK((evs[i] = calloc(1, sizeof(sev))) != NULL);
        if (evs[i]) {
            atomic_init(&evs[i]->refs, 1);
            evs[i]->offset = first + (int64_t)i;
        }
    }
    if (!evs)
        return;
    CHECK(stream_pend_add(u, evs, n) == 0);
    stream_catchup_step(&ts_s, u);
}

/* The stream thread before it sleeps (stream_room_service -> on_drained): while the flag is set
 * and the queue has room, clears it and steps every paced subscription. Returns the rounds. */
static int ts_room_service(void)
{
    int rounds = 0;
    while (ts_c.want_room && ts_queued <= ts_s.client_queue_max / 2 && rounds < 100) {
        rounds++;
        ts_c.want_room = 0;
        for (sub *u = ts_c.subs; u; u = u->next_in_conn)
            if (u->state == SUB_CATCHUP)
                stream_catchup_step(&ts_s, u);
    }
    return rounds;
}

/* 1 when subscription i got exactly offsets [0, n) in order. */
static int ts_got_all(int i, size_t n)
{
    if (ts_ngot[i] != n)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (ts_got[i][k] != (int64_t)k)
            return 0;
    return 1;
}

static void ts_close(void)
{
    for (int i = 0; i < TS_SUBS; i++) {
        stream_pend_clear(&ts_subs[i]);
        free(ts_subs[i].pend_ends);
    }
}

/* ---- tests -----------------------------------------------------------------------------------
 */

TEST(stream_subs_a_catch_up_that_yields_keeps_its_turn_when_a_sibling_finds_room)
{
    ts_open(2);
    ts_batch(&ts_subs[0], 0, 512); /* more than one step queues: it yields for the rest */
    CHECK(ts_ngot[0] == CATCHUP_STEP_EVENTS);
    CHECK(ts_c.want_room);
    ts_batch(&ts_subs[1], 0, 3); /* a sibling's short batch, in the same inbox drain */
    CHECK(ts_got_all(1, 3));
    CHECK(ts_credited[1] == 1);
    CHECK(ts_c.want_room); /* still asked for: the first one has not finished */
    CHECK(ts_room_service() >= 1);
    CHECK(ts_got_all(0, 512));
    CHECK(ts_credited[0] == 1); /* its job may read on */
    CHECK(!ts_c.want_room);     /* nobody waits: the stream thread may sleep */
    ts_close();
}

TEST(stream_subs_a_catch_up_waiting_for_room_goes_on_when_a_sibling_stepped_first)
{
    ts_open(3);
    ts_queued = ts_s.client_queue_max; /* full: nothing is queued, the flag asks for room */
    ts_batch(&ts_subs[2], 0, 100);
    CHECK(ts_ngot[2] == 0);
    CHECK(ts_c.want_room);
    ts_queued = 0;                /* the client read it all */
    ts_batch(&ts_subs[0], 0, 10); /* before the room service, a sibling's batch */
    ts_batch(&ts_subs[1], 0, 0);  /* and an empty one (a position only) */
    CHECK(ts_got_all(0, 10));
    CHECK(ts_ngot[2] == 0);
    CHECK(ts_room_service() >= 1);
    CHECK(ts_got_all(2, 100));
    for (int i = 0; i < 3; i++)
        CHECK(ts_credited[i] == 1);
    CHECK(!ts_c.want_room);
    ts_close();
}

TEST(stream_subs_catch_ups_with_nothing_to_do_do_not_keep_the_stream_awake)
{
    ts_open(3);
    ts_batch(&ts_subs[0], 0, 5);
    ts_batch(&ts_subs[1], 0, 0);
    CHECK(!ts_c.want_room); /* all delivered, room to spare: nothing waits */
    CHECK(ts_room_service() == 0);
    CHECK(ts_got_all(0, 5));
    CHECK(ts_credited[0] == 1 && ts_credited[1] == 1);
    ts_close();
}

TEST(stream_subs_a_batch_is_credited_once_queued_while_the_next_one_is_delivered)
{
    ts_open(1);
    sub *u = &ts_subs[0];
    ts_queued = ts_s.client_queue_max; /* the client is behind: both batches wait */
    ts_batch(u, 0, 300);
    ts_batch(u, 300, 300);
    CHECK(ts_ngot[0] == 0 && ts_credited[0] == 0);
    ts_queued = 0;
    CHECK(ts_room_service() >= 1);
    CHECK(ts_got_all(0, 600));
    CHECK(ts_credited[0] == 2);
    /* each step queues CATCHUP_STEP_EVENTS: the second step passes the end of the first batch,
     * whose credit goes back then, while the second batch is still being delivered */
    ts_batch(u, 600, 300);
    CHECK(ts_ngot[0] == 600 + CATCHUP_STEP_EVENTS && ts_credited[0] == 2);
    ts_batch(u, 900, 300);
    CHECK(ts_ngot[0] == 600 + 2 * CATCHUP_STEP_EVENTS);
    CHECK(ts_credited[0] == 3);
    CHECK(ts_c.want_room);
    CHECK(ts_room_service() >= 1);
    CHECK(ts_got_all(0, 1200));
    CHECK(ts_credited[0] == 4);
    ts_close();
}

TEST(stream_subs_an_empty_batch_is_credited_too)
{
    ts_open(1);
    ts_batch(&ts_subs[0], 0, 0); /* a position only */
    CHECK(ts_credited[0] == 1);
    ts_batch(&ts_subs[0], 0, 10);
    ts_batch(&ts_subs[0], 10, 0);
    CHECK(ts_got_all(0, 10));
    CHECK(ts_credited[0] == 3);
    CHECK(!ts_c.want_room);
    ts_close();
}
