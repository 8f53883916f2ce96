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
    pthread_cond_signal(&s->ccond);
    pthread_mutex_unlock(&s->cmu);
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

/* Reads [from, to) of every partition of job j and posts batches, waiting for credit between. */
static void run_job(fh_stream *s, fh_consumer *kc, fh_json_doc *doc, cjob *j)
{
    rd_kafka_t *rk = kc->rk;
    char err[256];
    int64_t *earliest = stream_vec_new(s), *pos = stream_vec_new(s);
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
        fh_consumer_assign(kc, assign, err, sizeof(err));
        rd_kafka_resume_partitions(rk, assign);
    }
    memcpy(pos, j->from, (size_t)s->nparts * sizeof(int64_t));
    /* Kafka must make progress; waiting for the client (credit) does not count */
    int64_t idle_until = fh_now_ms() + 60000;
    int lost = 0; /* Kafka deleted records of the gap before they were read */
    while (pending && !lost && !atomic_load(&j->cancel) && !atomic_load(&s->stop) &&
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
        while (evs && n < cap && pending && !lost && fh_now_ms() < batch_end) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (!m)
                continue;
            int p = m->err ? -1 : stream_part_index(s, rd_kafka_topic_name(m->rkt), m->partition);
            int64_t lost_to;
            if (p >= 0 && pos[p] < j->to[p] && m->offset > pos[p] &&
                fh_lost_check(rk, s->part_topic[p], s->part_id[p], pos[p],
                              m->offset < j->to[p] ? m->offset : j->to[p], &lost_to)) {
                /* the resume cannot be whole: the subscriber gets cursor_expired */
                health_records_lost("stream.catchup", s->part_topic[p], s->part_id[p], pos[p],
                                    lost_to);
                if (earliest[p] < lost_to)
                    earliest[p] = lost_to;
                lost = 1;
            } else if (p >= 0 && pos[p] < j->to[p] && m->offset >= pos[p]) {
                idle_until = fh_now_ms() + 60000;
                /* offsets may skip (compaction, transaction markers): past the end is the end */
                pos[p] = m->offset < j->to[p] ? m->offset + 1 : j->to[p];
                sev *e = m->offset < j->to[p] ? stream_sev_build(s, doc, m, p, 0) : NULL;
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
    } else if (lost) {
        post_catchup(s, IN_CATCHUP_FAIL, j->id, NULL, 0, earliest,
                     "cursor is older than what Kafka keeps (Kafka deleted records of the resume "
                     "before they were read)");
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
    fh_consumer_assign(kc, NULL, err, sizeof(err));
done:
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    if (paused)
        rd_kafka_topic_partition_list_destroy(paused);
    free(earliest);
    free(pos);
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

void *stream_catchup_main(void *arg)
{
    fh_stream *s = arg;
    char err[512];
    fh_consumer *kc = NULL;
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
    if (fh_consumer_new(&s->b->cfg, &o, &kc, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "stream.catchup", "error=\"%s\"", err);
        return NULL;
    }
    fh_json_doc doc;
    fh_json_doc_init(&doc, FH_EVENT_DOC_CAP(s->max_event_bytes));
    int64_t next_look = fh_now_ms() + s->check_ms;
    while (!atomic_load(&s->stop)) {
        pthread_mutex_lock(&s->cmu);
        while (!s->jobs_first && !atomic_load(&s->stop) && fh_now_ms() < next_look) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            int64_t ms = next_look - fh_now_ms();
            until.tv_sec += ms / 1000;
            until.tv_nsec += (ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->ccond, &s->cmu, &until);
        }
        cjob *j = s->jobs_first;
        if (j) {
            s->jobs_first = j->next;
            if (!s->jobs_first)
                s->jobs_last = NULL;
            s->running_job = j;
        }
        pthread_mutex_unlock(&s->cmu);
        if (fh_now_ms() >= next_look && !atomic_load(&s->stop)) {
            look_for_partitions(s, kc->rk);
            next_look = fh_now_ms() + s->check_ms;
        }
        if (!j)
            continue;
        if (!atomic_load(&j->cancel))
            run_job(s, kc, &doc, j);
        pthread_mutex_lock(&s->cmu);
        s->running_job = NULL;
        s->njobs--;
        pthread_mutex_unlock(&s->cmu);
        free(j->from);
        free(j->to);
        free(j);
    }
    fh_json_doc_free(&doc);
    fh_consumer_free(kc); /* closes before it destroys */
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
