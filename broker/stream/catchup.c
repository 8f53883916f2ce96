/* catchup: the catch-up thread, which serves resumes older than the ring from Kafka, and the
 * stream thread's side of its batches.
 *
 * One shared reader serves every active job (up to stream.catchup_max, plus continuations). It
 * reads each partition from one position (rpos), the lowest any riding job still needs, and checks
 * and parses each record once: the event is offered, through an index of the jobs' filters (the
 * routing index's code, index.c), to every riding job whose [pos, to) on that partition holds its
 * offset and whose filter matches; each takes a reference to the same event (the stream thread
 * then queues the shared bytes as it does for live events).
 *
 * Passes. A job "rides" the pass when it is attached to it, and "waits" otherwise (new, or
 * detached). A waiting job that has credit attaches when the reader is at or before its position
 * on every partition it needs (it skips what comes before its own position), or when it is at
 * most stream.catchup_rewind_events records behind in all: the reader then steps back to it, and
 * the riders skip again what they had. A job further behind waits for the pass to end (no rider
 * needs any partition), when every waiting job attaches to a new pass from their lowest position.
 * So jobs arriving together (a reconnect storm, a bench) share one pass: the first ones a few
 * records apart are rewound to, later ones far behind start the second pass together, and a pass
 * is never repeated for a single job while others wait behind. A waiting job is never left
 * without a wake-up: the stream thread gives its credit back once its batches are delivered, and
 * the tick timer runs step() in any case.
 *
 * Flow control. Each job has credit from the stream thread for stream.catchup_batches batches
 * (stream.catchup_batch_events events, or what came in BATCH_MS) in flight: the stream thread gives
 * a batch's credit back once it has queued all of that batch for the client (which it does only
 * while the client's queue is under half its cap), so one batch fills while the other is delivered.
 * When a record is for a riding job without credit the reader waits for it at most
 * stream.catchup_detach_ms; then the job is detached (it keeps its own position) and the others go
 * on. It attaches again once it has credit, as any waiting job. The stream thread only ever gets
 * bounded batches, so it keeps serving live traffic between them.
 *
 * The thread runs on its own fh_loop: the stream thread queues jobs, grants credit and cancels
 * (atomics, s->cmu for the queue) and wakes the loop; the consumer queue's eventfd wakes it when
 * records arrive; a tick timer posts batches and detaches; the partition timer asks Kafka for
 * the topics' partition counts while no job is active. Everything happens in step(). */
#include "internal.h"

#include <sys/resource.h>

#define BATCH_MS 200
#define TICK_MS 50
#define POLL_MAX 4096 /* records per loop pass: wakes and timers come between */
/* Kafka must make progress; waiting for the client (credit) does not count */
#define IDLE_MS 60000
/* The catch-up thread's niceness above the process's: a catch-up is bulk work, and on cores
 * shared with Kafka and the live path it would otherwise take the CPU live events wait for
 * (raising niceness needs no privilege). */
#define CATCHUP_NICE 10

/* ---- the stream thread's side ------------------------------------------------------------------
 */

void stream_cjob_unref(cjob *j)
{
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    for (size_t i = 0; i < j->n; i++)
        sev_unref(j->evs[i]);
    free(j->evs);
    free(j->from);
    free(j->to);
    free(j->pos);
    free(j->earliest);
    fh_filter_free(&j->filter);
    free(j);
}

/* Queues a job reading u's gap, [u->progress, the ring's start), from Kafka. admitted: the
 * continuation of a resume already under way (the ring moved on while it ran), which
 * stream.catchup_max does not refuse and the catch-up count does not count again. Returns 0, or
 * -1 with the error sent (busy, internal); the caller then removes u. */
int stream_start_catchup(fh_stream *s, sub *u, int admitted)
{
    cjob *j = calloc(1, sizeof(*j));
    if (j)
        atomic_init(&j->refs, 1);
    if (!j || !(j->from = stream_vec_new(s)) || !(j->to = stream_vec_new(s)) ||
        !(j->pos = stream_vec_new(s)) || !(j->earliest = stream_vec_new(s)) ||
        fh_filter_copy(&j->filter, &u->filter)) {
        stream_cjob_unref(j);
        stream_send_error(s, u->c, u->id, "internal", "out of memory");
        return -1;
    }
    pthread_mutex_lock(&s->cmu);
    if (!admitted && s->njobs >= s->max_jobs) {
        pthread_mutex_unlock(&s->cmu);
        stream_cjob_unref(j);
        stream_send_error(s, u->c, u->id, "busy",
                          "too many resumes from Kafka at once; retry shortly");
        return -1;
    }
    memcpy(j->from, u->progress, (size_t)s->nparts * sizeof(int64_t));
    memcpy(j->to, s->evicted_hw, (size_t)s->nparts * sizeof(int64_t));
    atomic_init(&j->credit, s->catchup_credit);
    atomic_store(&j->refs, 2); /* the subscription's and the catch-up thread's */
    j->owner = u;
    if (s->jobs_last)
        s->jobs_last->next = j;
    else
        s->jobs_first = j;
    s->jobs_last = j;
    s->njobs++;
    pthread_mutex_unlock(&s->cmu);
    fh_loop_wake(s->cloop);
    u->cj = j;           /* u has no job here: it is new, or its last job ended before its replay */
    u->pend_batches = 0; /* the credit of an earlier job is not this one's */
    u->nends = 0;
    u->state = SUB_CATCHUP;
    u->own_cursors = 1;
    if (!admitted)
        fh_metric_add(s->m_catchups, 1);
    return 0;
}

void stream_grant_credit(fh_stream *s, sub *u)
{
    int n = u->pend_batches;
    u->pend_batches = 0;
    if (u->cj && n && atomic_fetch_add(&u->cj->credit, n) == 0)
        fh_loop_wake(s->cloop);
}

static void post_catchup(fh_stream *s, int kind, cjob *j, sev **evs, size_t n, const int64_t *vec,
                         const int64_t *upto, const char *error)
{
    inmsg *m = calloc(1, sizeof(*m));
    if (!m) {
        for (size_t i = 0; i < n; i++)
            sev_unref(evs[i]);
        free(evs);
        return;
    }
    m->kind = kind;
    atomic_fetch_add(&j->refs, 1);
    m->j = j;
    m->evs = evs;
    m->nevs = n;
    if (vec && (m->vec = stream_vec_new(s)))
        memcpy(m->vec, vec, (size_t)s->nparts * sizeof(int64_t));
    if (upto && (m->upto = stream_vec_new(s)))
        memcpy(m->upto, upto, (size_t)s->nparts * sizeof(int64_t));
    if (error)
        snprintf(m->error, sizeof(m->error), "%s", error);
    stream_inbox_post(s, m);
}

int stream_part_index(const fh_stream *s, const char *topic, int partition)
{
    for (int p = 0; p < s->nparts; p++)
        if (s->part_id[p] == partition && strcmp(s->part_topic[p], topic) == 0)
            return p;
    return -1;
}

/* ---- the catch-up thread -----------------------------------------------------------------------
 */

typedef struct catchup {
    fh_stream *s;
    fh_loop *l;
    fh_consumer *kc;
    fh_consumer_watch w;
    fh_json_doc doc;
    cjob *active; /* taken from the queue: riding or waiting */
    findex *idx;  /* the riding jobs, by filter */
    int nriding;
    int np;                     /* partitions this pass knows */
    int64_t rpos[MAX_PARTS];    /* the reader's next offset (where assigned) */
    int64_t need_to[MAX_PARTS]; /* the furthest end a rider needs (0: none) */
    int assigned[MAX_PARTS];    /* 0: not read, 1: read, 2: paused */
    int64_t lo[MAX_PARTS];      /* Kafka's oldest offsets, as of the last activation */
    rd_kafka_message_t *held;   /* a record waiting for a rider's credit */
    sev *held_ev;               /* its event */
    cjob **cand;                /* scratch: the riders a record goes to */
    size_t ncand, capcand;
    int64_t last_read_ms, last_flush_ms;
    int look_due; /* the partition timer came while jobs were active */
} catchup;

/* Where a job is now on p: a rider is at the reader's position too (within its gap). */
static int64_t epos(const catchup *c, const cjob *j, int p)
{
    if (j->riding && j->pos[p] < j->to[p] && c->rpos[p] > j->pos[p])
        return c->rpos[p] < j->to[p] ? c->rpos[p] : j->to[p];
    return j->pos[p];
}

static void materialize(catchup *c, cjob *j)
{
    for (int p = 0; p < c->np; p++)
        j->pos[p] = epos(c, j, p);
}

/* The sum of j's positions once materialized (what job_post records as posted): a change in
 * it is a position to tell the subscriber. */
static int64_t epos_sum(const catchup *c, const cjob *j)
{
    int64_t sum = 0;
    for (int p = 0; p < c->np; p++)
        sum += epos(c, j, p);
    return sum;
}

/* Posts j's open batch (even empty: the subscriber's position moves with it). */
static void job_post(catchup *c, cjob *j)
{
    materialize(c, j);
    post_catchup(c->s, IN_CATCHUP_BATCH, j, j->evs, j->n, j->from, j->pos, NULL);
    j->evs = NULL;
    j->n = 0;
    j->posted = epos_sum(c, j);
}

/* Opens a batch for j when it has credit. Returns 1 when one is open. */
static int job_open(const fh_stream *s, cjob *j)
{
    if (j->evs)
        return 1;
    if (atomic_load(&j->credit) <= 0 ||
        !(j->evs = malloc((size_t)s->catchup_batch * sizeof(*j->evs))))
        return 0; /* out of memory: try again later */
    atomic_fetch_sub(&j->credit, 1);
    j->n = 0;
    j->stall_ms = 0;
    return 1;
}

static void job_detach(catchup *c, cjob *j)
{
    if (!j->riding)
        return;
    materialize(c, j);
    stream_findex_remove(c->idx, j, &j->filter, j->indexed);
    j->riding = 0;
    j->stall_ms = 0;
    c->nriding--;
}

/* Removes j from the active jobs and lets go of it. */
static void job_drop(catchup *c, cjob *j)
{
    fh_stream *s = c->s;
    job_detach(c, j);
    for (cjob **pp = &c->active; *pp; pp = &(*pp)->anext)
        if (*pp == j) {
            *pp = j->anext;
            break;
        }
    for (size_t i = 0; i < j->n; i++)
        sev_unref(j->evs[i]);
    free(j->evs);
    j->evs = NULL;
    j->n = 0;
    pthread_mutex_lock(&s->cmu);
    s->njobs--;
    pthread_mutex_unlock(&s->cmu);
    stream_cjob_unref(j);
}

/* Ends j: error NULL: read to its end (its last batch, then done), else how it failed
 * (earliest: cursor_expired with that position). Unless nobody waits for it. */
static void job_end(catchup *c, cjob *j, const char *error, const int64_t *earliest)
{
    fh_stream *s = c->s;
    if (atomic_load(&j->cancel) || atomic_load(&s->stop)) {
        /* nobody waits */
    } else if (error) {
        post_catchup(s, IN_CATCHUP_FAIL, j, NULL, 0, earliest, NULL, error);
    } else {
        materialize(c, j);
        if (j->evs || j->n)
            job_post(c, j); /* opened on credit: the stream thread takes it */
        /* the position after the gap: its end, or where a time put us beyond it */
        for (int p = 0; p < c->np; p++)
            if (j->pos[p] < j->to[p])
                j->pos[p] = j->to[p];
        post_catchup(s, IN_CATCHUP_DONE, j, NULL, 0, j->pos, NULL, NULL);
    }
    job_drop(c, j);
}

/* Resolves j's earliest (-1) and time (-2-ms) entries against Kafka's oldest offsets c->lo and
 * its ends hi, and checks retention. A partition without a record at or after the time gets its
 * current end (what comes later is newer). Returns 0, 1 when the cursor is older than what Kafka
 * keeps (j->earliest has the oldest position), -1 on error (in err). */
static int resolve(catchup *c, cjob *j, const int64_t *hi, char *err, size_t errsize)
{
    fh_stream *s = c->s;
    int expired = 0;
    rd_kafka_topic_partition_list_t *times = NULL;
    for (int p = 0; p < c->np; p++) {
        j->earliest[p] = c->lo[p];
        if (j->from[p] == -1) {
            j->from[p] = c->lo[p];
        } else if (j->from[p] <= -2) {
            if (!times)
                times = rd_kafka_topic_partition_list_new(c->np);
            rd_kafka_topic_partition_list_add(times, s->part_topic[p], s->part_id[p])->offset =
                -2 - j->from[p];
        } else if (j->from[p] < c->lo[p]) {
            expired = 1;
        }
    }
    if (times) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(c->kc->rk, times, 10000);
        if (e) {
            snprintf(err, errsize, "kafka offsets for times: %s", rd_kafka_err2str(e));
            expired = -1;
        }
        for (int i = 0; !e && i < times->cnt; i++) {
            int p = stream_part_index(s, times->elems[i].topic, times->elems[i].partition);
            if (p >= 0)
                j->from[p] = times->elems[i].offset >= 0 ? times->elems[i].offset : hi[p];
        }
        rd_kafka_topic_partition_list_destroy(times);
    }
    return expired;
}

/* Takes the queued jobs on: resolves where they start (one watermark query per partition for
 * all of them) and adds them to the active jobs, waiting. */
static void activate(catchup *c)
{
    fh_stream *s = c->s;
    char err[256];
    pthread_mutex_lock(&s->cmu);
    cjob *q = s->jobs_first;
    s->jobs_first = s->jobs_last = NULL;
    pthread_mutex_unlock(&s->cmu);
    if (!q)
        return;
    int64_t hi[MAX_PARTS];
    rd_kafka_resp_err_t e = 0;
    c->np = s->nparts;
    for (int p = 0; !e && p < c->np; p++)
        e = fh_consumer_watermarks(c->kc->rk, s->part_topic[p], s->part_id[p], c->lo + p, hi + p,
                                   5000);
    if (e)
        snprintf(err, sizeof(err), "kafka: %s", rd_kafka_err2str(e));
    while (q) {
        cjob *j = q;
        q = j->next;
        j->anext = c->active;
        c->active = j;
        if (atomic_load(&j->cancel)) {
            job_drop(c, j);
            continue;
        }
        int rc = e ? -1 : resolve(c, j, hi, err, sizeof(err));
        if (rc) {
            job_end(c, j, rc > 0 ? "cursor is older than what Kafka keeps" : err,
                    rc > 0 ? j->earliest : NULL);
            continue;
        }
        memcpy(j->pos, j->from, (size_t)c->np * sizeof(int64_t));
        j->posted = epos_sum(c, j);
    }
}

static void assign_all(catchup *c)
{
    fh_stream *s = c->s;
    char err[256];
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->np);
    for (int p = 0; p < c->np; p++)
        if (c->assigned[p]) {
            rd_kafka_topic_partition_list_add(l, s->part_topic[p], s->part_id[p])->offset =
                c->rpos[p];
            c->assigned[p] = 1;
        }
    if (c->held) {
        /* read again from rpos */
        rd_kafka_message_destroy(c->held);
        sev_unref(c->held_ev);
        c->held = NULL;
        c->held_ev = NULL;
    }
    if (fh_consumer_assign(c->kc, l->cnt ? l : NULL, err, sizeof(err)) == FH_OK && l->cnt)
        rd_kafka_resume_partitions(c->kc->rk, l); /* paused ones stay paused across assigns */
    else if (l->cnt)
        fh_log(FH_LOG_WARN, "stream.catchup", "error=\"%s\"", err);
    rd_kafka_topic_partition_list_destroy(l);
    c->last_read_ms = fh_loop_now(c->l);
}

/* Ends riders read to their ends, drops cancelled jobs, finds how far the pass must go per
 * partition, pauses partitions no rider needs, and gives up partitions when nobody rides. */
static void sweep(catchup *c)
{
    fh_stream *s = c->s;
    int64_t now = fh_loop_now(c->l);
    int idle = c->nriding && !c->held && now - c->last_read_ms > IDLE_MS;
    memset(c->need_to, 0, sizeof(c->need_to));
    for (cjob *j = c->active, *n; j; j = n) {
        n = j->anext;
        if (atomic_load(&j->cancel)) {
            job_drop(c, j);
            continue;
        }
        int done = 1;
        for (int p = 0; p < c->np; p++)
            done &= epos(c, j, p) >= j->to[p];
        if (done) {
            job_end(c, j, NULL, NULL);
        } else if (j->riding && idle) {
            job_end(c, j, "reading the gap from Kafka timed out", NULL);
        } else if (j->riding) {
            for (int p = 0; p < c->np; p++)
                if (j->pos[p] < j->to[p] && j->to[p] > c->need_to[p])
                    c->need_to[p] = j->to[p];
        }
    }
    int any = 0;
    for (int p = 0; p < c->np; p++) {
        if (c->assigned[p] == 1 && c->need_to[p] <= c->rpos[p]) {
            rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(one, s->part_topic[p], s->part_id[p]);
            rd_kafka_pause_partitions(c->kc->rk, one);
            rd_kafka_topic_partition_list_destroy(one);
            c->assigned[p] = 2;
        }
        any |= c->assigned[p] != 0;
    }
    if (!c->nriding && any) {
        memset(c->assigned, 0, sizeof(c->assigned));
        assign_all(c); /* nothing: unassigned */
    }
}

/* Makes room in c->cand for n jobs. Returns -1 when out of memory. */
static int cand_room(catchup *c, size_t n)
{
    while (n > c->capcand) {
        cjob **v = fh_grow(c->cand, &c->capcand, sizeof(*v), 64);
        if (!v)
            return -1;
        c->cand = v;
    }
    return 0;
}

/* Appends j to c->cand. Returns -1 when out of memory. */
static int cand_push(catchup *c, cjob *j)
{
    if (cand_room(c, c->ncand + 1))
        return -1;
    c->cand[c->ncand++] = j;
    return 0;
}

/* Attaches the waiting jobs that have credit and are not far behind the pass (see the header),
 * stepping the reader back or starting partitions for them. */
static void attach(catchup *c)
{
    int64_t newpos[MAX_PARTS];
    int busy[MAX_PARTS], changed = 0, n = 0;
    for (int p = 0; p < c->np; p++) {
        busy[p] = c->assigned[p] && c->need_to[p] > c->rpos[p];
        newpos[p] = busy[p] ? c->rpos[p] : INT64_MAX;
    }
    c->ncand = 0;
    for (cjob *j = c->active; j; j = j->anext) {
        if (j->riding || !(j->evs || atomic_load(&j->credit) > 0))
            continue;
        int64_t behind = 0;
        for (int p = 0; p < c->np; p++)
            if (busy[p] && j->pos[p] < j->to[p] && j->pos[p] < c->rpos[p])
                behind += c->rpos[p] - j->pos[p];
        if (behind > c->s->catchup_rewind && c->nriding)
            continue;
        if (cand_push(c, j))
            break;
        for (int p = 0; p < c->np; p++)
            if (j->pos[p] < j->to[p] && j->pos[p] < newpos[p])
                newpos[p] = j->pos[p];
    }
    /* a record goes to each rider at most once: collect never needs more room than this */
    if (!c->ncand || cand_room(c, (size_t)c->nriding + c->ncand)) {
        c->ncand = 0;
        return;
    }
    for (int p = 0; p < c->np; p++)
        changed |= newpos[p] != INT64_MAX && (c->assigned[p] != 1 || newpos[p] != c->rpos[p]);
    if (changed) /* the riders keep their positions while the reader moves */
        for (cjob *j = c->active; j; j = j->anext)
            if (j->riding)
                materialize(c, j);
    if (!c->nriding)
        fh_metric_add(c->s->m_cu_passes, 1);
    for (size_t i = 0; i < c->ncand; i++) {
        cjob *j = c->cand[i];
        j->indexed = stream_findex_add(c->idx, j, &j->filter);
        j->riding = 1;
        j->stall_ms = 0;
        if (j->detached)
            fh_metric_add(c->s->m_cu_rejoins, 1);
        j->detached = 0;
        c->nriding++;
        n++;
        for (int p = 0; p < c->np; p++)
            if (j->pos[p] < j->to[p] && j->to[p] > c->need_to[p])
                c->need_to[p] = j->to[p];
    }
    c->ncand = 0;
    if (!changed)
        return;
    long long back = 0; /* records the reader steps back over for the joining jobs */
    for (int p = 0; p < c->np; p++)
        back += busy[p] && newpos[p] < c->rpos[p] ? c->rpos[p] - newpos[p] : 0;
    fh_log(FH_LOG_INFO, "stream.catchup.pass", "riders=%d joined=%d new_pass=%d rewound=%lld",
           c->nriding, n, n == c->nriding, back);
    for (int p = 0; p < c->np; p++)
        if (newpos[p] != INT64_MAX) {
            c->rpos[p] = newpos[p];
            c->assigned[p] = 1;
        }
    assign_all(c);
}

/* Collects a rider the record is for (findex_each callback). */
static void collect(void *item, sev *e, void *ctx)
{
    catchup *c = ctx;
    cjob *j = item;
    if (e->offset < j->pos[e->part] || e->offset >= j->to[e->part] ||
        !fh_filter_match_facts(&j->filter, &e->facts))
        return;
    c->cand[c->ncand++] = j; /* attach made room for every rider */
}

/* Riders of p lose what Kafka deleted between the reader's position and offset: they end with
 * cursor_expired. */
static void check_lost(catchup *c, int p, int64_t offset)
{
    fh_stream *s = c->s;
    int64_t lost_to, end = offset < c->need_to[p] ? offset : c->need_to[p];
    if (end <= c->rpos[p] ||
        !fh_lost_check(c->kc->rk, s->part_topic[p], s->part_id[p], c->rpos[p], end, &lost_to))
        return;
    health_records_lost("stream.catchup", s->part_topic[p], s->part_id[p], c->rpos[p], lost_to);
    for (cjob *j = c->active, *n; j; j = n) {
        n = j->anext;
        if (!j->riding || epos(c, j, p) >= end)
            continue;
        if (j->earliest[p] < lost_to)
            j->earliest[p] = lost_to;
        job_end(c, j,
                "cursor is older than what Kafka keeps (Kafka deleted records of the resume "
                "before they were read)",
                j->earliest);
    }
}

/* Offers record m to the riders. Returns 1 when it must wait for a rider's credit (kept in
 * c->held), else 0 (consumed). */
static int offer(catchup *c, rd_kafka_message_t *m)
{
    fh_stream *s = c->s;
    int p = m->err ? -1 : stream_part_index(s, rd_kafka_topic_name(m->rkt), m->partition);
    if (p < 0 || p >= c->np || c->assigned[p] != 1 || m->offset < c->rpos[p])
        return 0; /* not for this pass (or from before an assign) */
    int64_t now = fh_loop_now(c->l);
    c->last_read_ms = now;
    if (m->offset >= c->need_to[p]) {
        c->rpos[p] = m->offset + 1; /* past every rider's gap: sweep pauses it */
        return 0;
    }
    sev *e = c->held_ev;
    if (!e) {
        if (m->offset > c->rpos[p])
            check_lost(c, p, m->offset);
        if (!(e = stream_sev_build(s, &c->doc, m, p, 0))) {
            c->rpos[p] = m->offset + 1; /* malformed: the live path skips it too */
            return 0;
        }
    }
    c->held_ev = NULL;
    c->ncand = 0;
    stream_findex_each(c->idx, e, collect, c);
    for (size_t i = 0; i < c->ncand; i++) {
        cjob *j = c->cand[i];
        if (job_open(s, j))
            continue;
        if (!j->stall_ms)
            j->stall_ms = now;
        if (now - j->stall_ms < s->catchup_detach_ms) {
            c->held_ev = e;
            return 1;
        }
        job_detach(c, j); /* too slow: the others go on; it attaches again with credit */
        j->detached = 1;
        fh_metric_add(s->m_cu_detaches, 1);
        c->cand[i] = NULL;
    }
    c->rpos[p] = m->offset + 1;
    for (size_t i = 0; i < c->ncand; i++) {
        cjob *j = c->cand[i];
        if (!j)
            continue;
        j->evs[j->n++] = sev_ref(e);
        if (j->n == (size_t)s->catchup_batch)
            job_post(c, j);
    }
    c->ncand = 0;
    sev_unref(e);
    return 0;
}

/* Reads up to POLL_MAX records. Returns 1 when more may be waiting. */
static int read_some(catchup *c)
{
    for (int i = 0; i < POLL_MAX && c->nriding; i++) {
        rd_kafka_message_t *m = c->held ? c->held : rd_kafka_consumer_poll(c->kc->rk, 0);
        c->held = NULL;
        if (!m)
            return 0;
        if (offer(c, m)) {
            c->held = m;
            return 0; /* credit or the tick wakes the loop */
        }
        rd_kafka_message_destroy(m);
    }
    return c->nriding > 0;
}

/* Posts the riders' batches open BATCH_MS (those with events, or whose position moved). */
static void flush(catchup *c)
{
    c->last_flush_ms = fh_loop_now(c->l);
    for (cjob *j = c->active; j; j = j->anext) {
        if (!j->evs)
            continue;
        if (j->n) {
            job_post(c, j);
            continue;
        }
        if (epos_sum(c, j) != j->posted)
            job_post(c, j);
    }
}

static void step(catchup *c)
{
    fh_stream *s = c->s;
    if (atomic_load(&s->stop))
        return;
    activate(c);
    sweep(c);
    attach(c);
    int more = read_some(c);
    if (fh_loop_now(c->l) - c->last_flush_ms >= BATCH_MS)
        flush(c);
    sweep(c);
    if (more)
        fh_loop_no_sleep(c->l);
}

static int64_t tick(fh_loop *l, void *arg)
{
    (void)l;
    (void)arg;
    return TICK_MS; /* step() runs after the pass */
}

/* Asks Kafka how many partitions the stream's topics have now, for the stream thread's partition
 * timer (partitions added at run time): here, so the stream thread never waits for metadata. */
static void look_for_partitions(fh_stream *s, rd_kafka_t *rk)
{
    char err[256];
    int counts[FH_CONSUMER_MAX_TOPICS];
    if (fh_consumer_counts(rk, s->kc, 2000, counts, err, sizeof(err)) == FH_OK) {
        for (int t = 0; t < s->kc->ntopics; t++)
            atomic_store(&s->seen_counts[t], counts[t]);
    } else {
        static int64_t warned;
        if (fh_now_ms() - warned > 60000) {
            warned = fh_now_ms();
            fh_log(FH_LOG_WARN, "stream.partitions", "error=\"%s\"", err);
        }
    }
}

static int64_t partition_timer(fh_loop *l, void *arg)
{
    catchup *c = arg;
    (void)l;
    if (c->active)
        c->look_due = 1; /* while no job is active only: after these */
    else
        look_for_partitions(c->s, c->kc->rk);
    return c->s->check_ms;
}

static void after_pass(fh_loop *l, void *arg)
{
    catchup *c = arg;
    (void)l;
    step(c);
    if (!c->active && c->look_due && !atomic_load(&c->s->stop)) {
        c->look_due = 0;
        look_for_partitions(c->s, c->kc->rk);
    }
}

void *stream_catchup_main(void *arg)
{
    fh_stream *s = arg;
    char err[512];
    catchup c = {.s = s, .l = s->cloop};
    fh_consumer_watch_init(&c.w);
    /* auto.offset.reset=earliest: a position Kafka deleted moves to the oldest record it kept
     * (not to the end, librdkafka's default), so only deleted records are skipped. The reader
     * reads backlogs flat out: it fetches ahead stream.catchup_prefetch_kib (librdkafka's own
     * 64 MiB by default) in fetches of up to 50 MiB, not the small bound of the live consumers
     * (with 4 MiB a partition waited for its next fetch most of the time: 123,000 deliveries/s
     * to 10 full-stream catch-ups against 1,017,000 with 64 MiB, bench/catchup.sh) */
    char prefetch[64];
    snprintf(prefetch, sizeof(prefetch), "queued.max.messages.kbytes=%lld",
             (long long)s->catchup_prefetch_kib);
    const char *const defaults[] = {"enable.auto.commit=false",
                                    "enable.auto.offset.store=false",
                                    "auto.offset.reset=earliest",
                                    "group.id=firehose-stream-catchup",
                                    "log_level=3",
                                    "fetch.wait.max.ms=20",
                                    prefetch,
                                    "fetch.max.bytes=52428800",
                                    NULL};
    fh_consumer_opts o = {.policy = FH_CONSUMER_OFFSETS,
                          .bootstrap = s->b->bootstrap,
                          .defaults = defaults,
                          .wake_fd = -1};
    if (!(c.idx = calloc(1, sizeof(*c.idx))) ||
        fh_consumer_new(&s->b->cfg, &o, &c.kc, err, sizeof(err)) ||
        fh_consumer_watch_start(&c.w, c.l, c.kc->q, NULL, NULL, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "stream.catchup", "error=\"%s\"", c.idx ? err : "out of memory");
        fh_consumer_watch_stop(&c.w, c.l);
        if (c.kc)
            fh_consumer_free(c.kc);
        free(c.idx);
        return NULL;
    }
    fh_json_doc_init(&c.doc, FH_EVENT_DOC_CAP(s->max_event_bytes));
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0) + CATCHUP_NICE;
    if (errno || fh_thread_nice(nice > 19 ? 19 : nice))
        fh_log(FH_LOG_INFO, "stream.catchup", "nice=%d applied=false error=\"%s\"", nice,
               strerror(errno));
    fh_loop_after_pass(c.l, after_pass, &c);
    fh_loop_timer(c.l, s->check_ms, partition_timer, &c);
    fh_loop_timer(c.l, TICK_MS, tick, &c);
    fh_loop_run(c.l, -1);
    while (c.active)
        job_drop(&c, c.active); /* stopped: nobody waits for them */
    if (c.held) {
        rd_kafka_message_destroy(c.held);
        sev_unref(c.held_ev);
    }
    fh_consumer_watch_stop(&c.w, c.l);
    fh_json_doc_free(&c.doc);
    fh_consumer_free(c.kc); /* closes before it destroys */
    stream_findex_free(c.idx);
    free(c.idx);
    free(c.cand);
    return NULL;
}

void stream_on_catchup(fh_stream *s, inmsg *m)
{
    sub *u = m->j ? m->j->owner : NULL;
    if (!u)
        return; /* gone: drain_inbox drops the events */
    conn *c = u->c;
    if (m->kind == IN_CATCHUP_BATCH) {
        stream_progress_raise(s, u, &m->vec); /* earliest and time resolved to offsets */
        if (m->upto) {
            free(u->pend_upto); /* the newer position covers the older one's events too */
            u->pend_upto = m->upto;
            m->upto = NULL;
        }
        if (stream_pend_add(u, m->evs, m->nevs)) {
            /* its events would be lost: the client resumes from its last cursor instead */
            stream_close_conn(s, c, CLOSE_INTERNAL, "out of memory");
            return;
        }
        m->evs = NULL;
        m->nevs = 0;
        stream_catchup_step(s, u);
    } else if (m->kind == IN_CATCHUP_DONE) {
        free(u->done_vec);
        u->done_vec = m->vec; /* applied once the pending batch is delivered */
        m->vec = NULL;
        stream_catchup_step(s, u);
    } else {
        char msg[CURSOR_MAX + 600], cur[CURSOR_MAX];
        fh_log(FH_LOG_WARN, "stream.catchup", "sub=%s sse=%d error=\"%s\"", u->id,
               c->kind == CONN_SSE, m->error);
        stream_pend_clear(u);
        if (m->vec) {
            stream_cursor_encode(s, m->vec, cur, sizeof(cur));
            snprintf(msg, sizeof(msg), "%s; the earliest position is cursor %s", m->error, cur);
            stream_send_error(s, c, u->id, "cursor_expired", msg);
        } else {
            stream_send_error(s, c, u->id, "unavailable", m->error);
        }
        if (c->kind == CONN_SSE)
            stream_close_conn(s, c, CLOSE_BAD_REQUEST, m->error); /* ends after the error event */
        else
            stream_sub_remove(s, c, u);
    }
}
