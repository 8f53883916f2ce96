/* catchup: the catch-up thread, which serves resumes older than the ring from Kafka one job at a
 * time with credit from the stream thread, and the stream thread's side of its batches. */
#include "internal.h"

/* ---- catch-up from Kafka ----------------------------------------------------------------------
 */

/* Queues a job reading u's gap, [u->progress, the ring's start), from Kafka. admitted: the
 * continuation of a resume already under way (the ring moved on while it ran), which
 * stream.catchup_max does not refuse and the catch-up count does not count again. Returns 0, or
 * -1 with the error sent (busy, internal); the caller then removes u. */
int stream_start_catchup(fh_stream *s, sub *u, int admitted)
{
    cjob *j = calloc(1, sizeof(*j));
    if (!j || !(j->from = stream_vec_new(s)) || !(j->to = stream_vec_new(s))) {
        if (j) {
            free(j->from);
            free(j);
        }
        stream_send_error(s, u->c, u->id, "internal", "out of memory");
        return -1;
    }
    pthread_mutex_lock(&s->cmu);
    if (!admitted && s->njobs >= s->max_jobs) {
        pthread_mutex_unlock(&s->cmu);
        free(j->from);
        free(j->to);
        free(j);
        stream_send_error(s, u->c, u->id, "busy",
                          "too many resumes from Kafka at once; retry shortly");
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
    pthread_mutex_unlock(&s->cmu);
    fh_loop_wake(s->cloop);
    u->state = SUB_CATCHUP;
    u->job = j->id;
    u->own_cursors = 1;
    if (!admitted)
        fh_metric_add(s->m_catchups, 1);
    return 0;
}

void stream_grant_credit(fh_stream *s, sub *u)
{
    pthread_mutex_lock(&s->cmu);
    if (s->running_job && s->running_job->id == u->job) {
        atomic_store(&s->running_job->credit, 1);
    }
    pthread_mutex_unlock(&s->cmu);
    fh_loop_wake(s->cloop);
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
    if (vec && (m->vec = stream_vec_new(s)))
        memcpy(m->vec, vec, (size_t)s->nparts * sizeof(int64_t));
    if (error)
        snprintf(m->error, sizeof(m->error), "%s", error);
    stream_inbox_post(s, m);
}

/* Resolves earliest (-1) and time (-2-ms) entries, and checks retention. A partition without a
 * record at or after the time gets its current end (what comes later is newer). Returns 0, 1 when
 * the cursor is older than what Kafka keeps (earliest gets the oldest position), -1 on error. */
static int resolve_positions(fh_stream *s, rd_kafka_t *rk, int64_t *from, int64_t *earliest,
                             char *err, size_t errsize)
{
    int expired = 0;
    rd_kafka_topic_partition_list_t *times = NULL;
    int64_t *hi = stream_vec_new(s);
    if (!hi) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    for (int p = 0; p < s->nparts; p++) {
        int64_t lo;
        rd_kafka_resp_err_t e =
            fh_consumer_watermarks(rk, s->part_topic[p], s->part_id[p], &lo, hi + p, 5000);
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

int stream_part_index(const fh_stream *s, const char *topic, int partition)
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

/* ---- the catch-up thread, on its own fh_loop ----------------------------------------------------
 *
 * One job at a time. The stream thread queues jobs, grants credit and cancels through s->cmu and
 * wakes this loop (fh_loop_wake); the consumer queue's eventfd wakes it when records arrive; the
 * batch timer ends a batch BATCH_MS after it opened; the partition timer asks Kafka for the
 * topics' partition counts between jobs. Everything happens in step(), after each pass. */

#define BATCH_MAX 1000
#define BATCH_MS 200
/* Kafka must make progress; waiting for the client (credit) does not count */
#define IDLE_MS 60000

typedef struct catchup {
    fh_stream *s;
    fh_loop *l;
    fh_consumer *kc;
    fh_consumer_watch w;
    fh_json_doc doc;
    cjob *j;                 /* the running job, or NULL */
    int64_t *earliest, *pos; /* the running job's */
    rd_kafka_topic_partition_list_t *paused;
    int assigned, pending, lost;
    int64_t idle_until, waited_from;
    sev **evs; /* the open batch (NULL: the job waits for credit) */
    size_t n;
    int batch_open, batch_over;
    uint64_t batch_timer;
    int look_due; /* the partition timer came while a job ran */
} catchup;

/* Resolves job j's positions and assigns its gap. Returns 0, or -1 with the failure posted. */
static int job_begin(catchup *c, cjob *j)
{
    fh_stream *s = c->s;
    char err[256];
    c->j = j;
    c->earliest = stream_vec_new(s);
    c->pos = stream_vec_new(s);
    c->pending = c->lost = c->assigned = 0;
    if (!c->earliest || !c->pos) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, NULL, "out of memory");
        return -1;
    }
    int rc = resolve_positions(s, c->kc->rk, j->from, c->earliest, err, sizeof(err));
    if (rc) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, rc > 0 ? c->earliest : NULL,
                     rc > 0 ? "cursor is older than what Kafka keeps" : err);
        return -1;
    }
    /* a time may resolve past the gap's end (into the ring): nothing to read there, and the
     * subscriber's position is the resolved one */
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(s->nparts);
    c->paused = rd_kafka_topic_partition_list_new(s->nparts);
    for (int p = 0; p < s->nparts; p++) {
        if (j->from[p] >= j->to[p])
            continue;
        rd_kafka_topic_partition_list_add(assign, s->part_topic[p], s->part_id[p])->offset =
            j->from[p];
        c->pending++;
    }
    if (c->pending) {
        fh_consumer_assign(c->kc, assign, err, sizeof(err));
        rd_kafka_resume_partitions(c->kc->rk, assign);
    }
    rd_kafka_topic_partition_list_destroy(assign);
    c->assigned = 1;
    memcpy(c->pos, j->from, (size_t)s->nparts * sizeof(int64_t));
    c->idle_until = fh_now_ms() + IDLE_MS;
    c->waited_from = fh_now_ms();
    return 0;
}

/* Ends the running job: tells the subscriber how it ended (unless nobody waits), gives the
 * consumer's partitions back, and frees the job. */
static void job_end(catchup *c)
{
    fh_stream *s = c->s;
    cjob *j = c->j;
    char err[256];
    for (size_t i = 0; i < c->n; i++)
        sev_unref(c->evs[i]); /* a batch open at stop: nobody reads it */
    free(c->evs);
    c->evs = NULL;
    c->n = 0;
    c->batch_open = 0;
    fh_loop_timer_cancel(c->l, c->batch_timer);
    c->batch_timer = 0;
    /* tell the subscriber first: unassigning can wait for a fetch in flight */
    if (!c->assigned || atomic_load(&j->cancel) || atomic_load(&s->stop)) {
        /* failed at its start (already told), or nobody waits for this job */
    } else if (c->lost) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, c->earliest,
                     "cursor is older than what Kafka keeps (Kafka deleted records of the resume "
                     "before they were read)");
    } else if (c->pending) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, NULL,
                     "reading the gap from Kafka timed out");
    } else {
        /* the position after the gap: its end, or where a time put us beyond it */
        for (int p = 0; p < s->nparts; p++)
            c->pos[p] = j->from[p] > j->to[p] ? j->from[p] : j->to[p];
        post_catchup(s, IN_CATCHUP_DONE, j->id, NULL, 0, c->pos, NULL);
    }
    if (c->assigned) {
        if (c->paused->cnt)
            rd_kafka_resume_partitions(c->kc->rk, c->paused);
        fh_consumer_assign(c->kc, NULL, err, sizeof(err));
    }
    if (c->paused)
        rd_kafka_topic_partition_list_destroy(c->paused);
    c->paused = NULL;
    free(c->earliest);
    free(c->pos);
    c->earliest = c->pos = NULL;
    c->assigned = 0;
    pthread_mutex_lock(&s->cmu);
    s->running_job = NULL;
    s->njobs--;
    pthread_mutex_unlock(&s->cmu);
    free(j->from);
    free(j->to);
    free(j);
    c->j = NULL;
}

/* Takes the next queued job, if any, as the running one. */
static cjob *job_next(fh_stream *s)
{
    pthread_mutex_lock(&s->cmu);
    cjob *j = s->jobs_first;
    if (j) {
        s->jobs_first = j->next;
        if (!s->jobs_first)
            s->jobs_last = NULL;
        s->running_job = j;
    }
    pthread_mutex_unlock(&s->cmu);
    return j;
}

static int64_t batch_timer(fh_loop *l, void *arg)
{
    catchup *c = arg;
    (void)l;
    c->batch_timer = 0;
    c->batch_over = 1;
    return -1;
}

/* Takes the credit the stream thread granted, if any, and opens a batch. Returns 1 when open. */
static int batch_open(catchup *c)
{
    fh_stream *s = c->s;
    pthread_mutex_lock(&s->cmu);
    int credit = atomic_exchange(&c->j->credit, 0);
    pthread_mutex_unlock(&s->cmu);
    if (!credit)
        return 0;
    c->idle_until += fh_now_ms() - c->waited_from;
    c->evs = calloc(BATCH_MAX, sizeof(*c->evs));
    c->n = 0;
    c->batch_open = 1;
    c->batch_over = !c->evs; /* no memory: an empty batch at once */
    if (c->evs)
        c->batch_timer = fh_loop_timer_rearm(c->l, c->batch_timer, BATCH_MS, batch_timer, c);
    return 1;
}

/* Polls what the consumer queue holds into the open batch. */
static void batch_fill(catchup *c)
{
    fh_stream *s = c->s;
    cjob *j = c->j;
    rd_kafka_t *rk = c->kc->rk;
    while (c->n < BATCH_MAX && c->pending && !c->lost && !c->batch_over) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 0);
        if (!m)
            return;
        int p = m->err ? -1 : stream_part_index(s, rd_kafka_topic_name(m->rkt), m->partition);
        int64_t lost_to, *pos = c->pos;
        if (p >= 0 && pos[p] < j->to[p] && m->offset > pos[p] &&
            fh_lost_check(rk, s->part_topic[p], s->part_id[p], pos[p],
                          m->offset < j->to[p] ? m->offset : j->to[p], &lost_to)) {
            /* the resume cannot be whole: the subscriber gets cursor_expired */
            health_records_lost("stream.catchup", s->part_topic[p], s->part_id[p], pos[p], lost_to);
            if (c->earliest[p] < lost_to)
                c->earliest[p] = lost_to;
            c->lost = 1;
        } else if (p >= 0 && pos[p] < j->to[p] && m->offset >= pos[p]) {
            c->idle_until = fh_now_ms() + IDLE_MS;
            /* offsets may skip (compaction, transaction markers): past the end is the end */
            pos[p] = m->offset < j->to[p] ? m->offset + 1 : j->to[p];
            sev *e = m->offset < j->to[p] ? stream_sev_build(s, &c->doc, m, p, 0) : NULL;
            if (e)
                c->evs[c->n++] = e;
            if (pos[p] >= j->to[p]) {
                c->pending--;
                part_done(s, rk, c->paused, p);
            }
        }
        rd_kafka_message_destroy(m);
    }
}

/* Posts the open batch (a full one, the gap's end, or BATCH_MS after it opened, even empty: the
 * subscriber's progress moves with it) and waits for credit again. */
static void batch_close(catchup *c)
{
    fh_loop_timer_cancel(c->l, c->batch_timer);
    c->batch_timer = 0;
    post_catchup(c->s, IN_CATCHUP_BATCH, c->j->id, c->evs, c->n, c->j->from, NULL);
    c->evs = NULL;
    c->n = 0;
    c->batch_open = 0;
    c->waited_from = fh_now_ms();
}

/* Moves the jobs on as far as they go without waiting: starts the next, opens a batch on credit,
 * fills and posts it, ends the job when read, lost, timed out or cancelled. */
static void step(catchup *c)
{
    fh_stream *s = c->s;
    while (!atomic_load(&s->stop)) {
        if (!c->j) {
            cjob *j = job_next(s);
            if (!j)
                return;
            c->j = j;
            if (atomic_load(&j->cancel) || job_begin(c, j) || !c->pending)
                job_end(c);
            continue;
        }
        if (!c->batch_open) {
            if (atomic_load(&c->j->cancel)) {
                job_end(c);
                continue;
            }
            if (!batch_open(c))
                return; /* the stream thread's credit wakes the loop */
        }
        batch_fill(c);
        if (c->n < BATCH_MAX && c->pending && !c->lost && !c->batch_over)
            return; /* records or the batch timer wake the loop */
        batch_close(c);
        if (!c->pending || c->lost || atomic_load(&c->j->cancel) || fh_now_ms() >= c->idle_until)
            job_end(c);
    }
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
    if (c->j)
        c->look_due = 1; /* between jobs only: after this one */
    else
        look_for_partitions(c->s, c->kc->rk);
    return c->s->check_ms;
}

static void after_pass(fh_loop *l, void *arg)
{
    catchup *c = arg;
    (void)l;
    step(c);
    if (!c->j && c->look_due && !atomic_load(&c->s->stop)) {
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
     * (not to the end, librdkafka's default), so only deleted records are skipped */
    static const char *const defaults[] = {"enable.auto.commit=false",
                                           "enable.auto.offset.store=false",
                                           "auto.offset.reset=earliest",
                                           "group.id=firehose-stream-catchup",
                                           "log_level=3",
                                           "fetch.wait.max.ms=20",
                                           NULL};
    fh_consumer_opts o = {.policy = FH_CONSUMER_OFFSETS,
                          .bootstrap = s->b->bootstrap,
                          .defaults = defaults,
                          .wake_fd = -1};
    if (fh_consumer_new(&s->b->cfg, &o, &c.kc, err, sizeof(err)) ||
        fh_consumer_watch_start(&c.w, c.l, c.kc->q, NULL, NULL, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "stream.catchup", "error=\"%s\"", err);
        fh_consumer_watch_stop(&c.w, c.l);
        fh_consumer_free(c.kc);
        return NULL;
    }
    fh_json_doc_init(&c.doc, FH_EVENT_DOC_CAP(s->max_event_bytes));
    fh_loop_after_pass(c.l, after_pass, &c);
    fh_loop_timer(c.l, s->check_ms, partition_timer, &c);
    fh_loop_run(c.l, -1);
    if (c.j)
        job_end(&c); /* stopped mid-job: nobody waits for it */
    fh_consumer_watch_stop(&c.w, c.l);
    fh_json_doc_free(&c.doc);
    fh_consumer_free(c.kc); /* closes before it destroys */
    return NULL;
}

void stream_on_catchup(fh_stream *s, inmsg *m)
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
            stream_pend_clear(u);
            u->pend = m->evs; /* the batch moves to the sub, delivered as the queue drains */
            u->npend = m->nevs;
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
