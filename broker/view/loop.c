/* view/loop: the view thread on lib/fh_loop. The consumer queue's eventfd is a watch; after each
 * pass the thread polls what the queue holds into the open batch (opening one as needed). Timers:
 * the batch timer commits a batch view.batch_ms after its first record (a full batch commits at
 * once), the hold timer ends the second of rest after an SQLite failure, and the housekeeping
 * timers look for new partitions, prune, give derivation its turns and publish how far the
 * topics go. The partition lookup, pruning and derivation run between batches only: while one
 * is open they try again when it has committed (or at their next turn). */
#include "derive.h"
#include "internal.h"

/* A warning repeated by a broken consumer is logged once per this many ms. */
#define KAFKA_WARN_MS 10000
/* How long consuming rests after SQLite failed (disk full, I/O) before the batch is retried. */
#define HOLD_MS 1000
/* How often derivation gets a turn between batches (derive_timer). */
#define DERIVE_TICK_MS 100

static int64_t hold_timer(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    (void)l;
    v->held = 0;
    return -1;
}

/* SQLite failed: the batch was rolled back and the consumer sent back to the committed
 * positions; retry from there a second later. */
static void hold(fh_view *v)
{
    v->held = 1;
    if (!fh_loop_timer(v->loop, HOLD_MS, hold_timer, v))
        v->held = 0; /* no room for the timer: retry at once rather than never */
}

/* Commits (or, when empty, rolls back) the open batch. */
static void close_batch(fh_view *v)
{
    if (!v->in_txn)
        return;
    fh_loop_timer_cancel(v->loop, v->batch_timer);
    v->batch_timer = 0;
    if (v->batch_n == 0) {
        view_wexec(v, W_ROLLBACK);
        v->in_txn = 0;
    } else if (view_commit_batch(v)) {
        hold(v);
    } else {
        view_ckpt_tail(v);
    }
}

static int64_t batch_timer(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    (void)l;
    v->batch_timer = 0; /* ended: close_batch must not cancel it */
    close_batch(v);
    return -1;
}

static void warn_kafka(fh_view *v, const rd_kafka_message_t *m)
{
    char q[420];
    if (fh_now_ms() - v->kafka_warned_ms <= KAFKA_WARN_MS)
        return;
    v->kafka_warned_ms = fh_now_ms();
    fh_log(FH_LOG_WARN, "view.kafka", "error=%s",
           fh_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
}

/* Records taken from the consumer queue in one call: one lock round trip and one look at the
 * clock for up to this many records, instead of one each. */
#define POLL_BATCH 256

/* One record taken from the queue into the open batch (opening one as needed; the batch takes
 * m). Returns 0, or -1 when the batch failed and consuming must stop for now. */
static int take(fh_view *v, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            warn_kafka(v, m);
        rd_kafka_message_destroy(m);
        return 0;
    }
    if (!v->in_txn) {
        if (view_begin_batch(v)) {
            rd_kafka_message_destroy(m);
            view_abort_batch(v);
            hold(v);
            return -1;
        }
        v->batch_timer = fh_loop_timer_rearm(v->loop, v->batch_timer, v->batch_ms, batch_timer, v);
    }
    if (view_handle_record(v, m)) { /* the batch holds m */
        /* SQLite failed (disk full, I/O): undo the batch and retry it from the committed
         * positions a second later. */
        fh_loop_timer_cancel(v->loop, v->batch_timer);
        v->batch_timer = 0;
        view_abort_batch(v);
        hold(v);
        return -1;
    }
    if (v->batch_n >= v->batch_max)
        close_batch(v);
    return 0;
}

/* Polls what the consumer queue holds into batches: at most view.batch_max records a pass, so
 * the timers keep their turn; a full batch commits at once. Records taken but not handled (the
 * batch failed, or the view stops) are dropped: the consumer reads them again from the committed
 * positions. */
static void consume(fh_view *v)
{
    rd_kafka_message_t *ms[POLL_BATCH];
    long long n = 0;
    while (n < v->batch_max && !v->held && view_running(v)) {
        size_t want = v->batch_max - n < POLL_BATCH ? (size_t)(v->batch_max - n) : POLL_BATCH;
        ssize_t got = fh_consumer_batch(v->kc, 0, ms, want), i = 0;
        if (got <= 0)
            return;
        while (i < got && !v->held && view_running(v) && take(v, ms[i++]) == 0)
            n++;
        while (i < got)
            rd_kafka_message_destroy(ms[i++]);
        if ((size_t)got < want)
            return;
    }
}

static int64_t metadata_timer(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    (void)l;
    if (v->in_txn)
        return v->batch_ms; /* between batches only */
    view_refresh_partitions(v);
    return v->metadata_ms;
}

static int64_t prune_timer(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    (void)l;
    if (v->in_txn)
        return v->batch_ms;
    view_prune(v);
    return v->prune_interval_s * 1000;
}

/* Derivation's time-driven work between batches (request.stale, delivery retries, pruning,
 * last-green when due): derive_tick acts at most every derive.check_interval_ms itself; this
 * timer only gives it its turns, as often as the loop without it woke when idle. */
static int64_t derive_timer(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    (void)l;
    if (!v->in_txn)
        derive_tick(v, fh_now_ms());
    return DERIVE_TICK_MS;
}

static int64_t end_timer(fh_loop *l, void *arg)
{
    (void)l;
    view_publish_end(arg);
    return 100;
}

/* The queue's io event fires when it becomes non-empty; records left after a pass (more than
 * view.batch_max) are polled on the next one without sleeping. */
static void before_sleep(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    if (!v->held && rd_kafka_queue_length(v->rkq) > 0)
        fh_loop_no_sleep(l);
}

static void after_pass(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    consume(v);
    if (!view_running(v))
        fh_loop_stop(l);
}

int view_loop_open(fh_view *v, char *errbuf, size_t errsize)
{
    if (fh_loop_new(&v->loop, 16, 8, errbuf, errsize) != FH_OK)
        return -1;
    /* the after-pass work polls what the queue's wake-up announced */
    if (!(v->rkq = rd_kafka_queue_get_consumer(v->rk))) {
        fh_errf(errbuf, errsize, FH_ERR_KAFKA, "view: the consumer has no queue");
        return -1;
    }
    if (fh_consumer_watch_start(&v->kq, v->loop, v->rkq, NULL, NULL, errbuf, errsize))
        return -1;
    fh_loop_before_sleep(v->loop, before_sleep, v);
    fh_loop_after_pass(v->loop, after_pass, v);
    fh_loop_timer(v->loop, 0, metadata_timer, v);
    fh_loop_timer(v->loop, 1000, prune_timer, v);
    fh_loop_timer(v->loop, 0, end_timer, v);
    fh_loop_timer(v->loop, 0, derive_timer, v);
    return 0;
}

/* After the thread ended and before the consumer closes. */
void view_loop_close(fh_view *v)
{
    fh_consumer_watch_stop(&v->kq, v->loop);
    if (v->rkq)
        rd_kafka_queue_destroy(v->rkq);
    v->rkq = NULL;
    fh_loop_free(v->loop);
    v->loop = NULL;
}

void *view_main(void *arg)
{
    fh_view *v = arg;
    pthread_setname_np(pthread_self(), "fh-view");
    view_thread_nice(v, "view");
    /* the idle tick: records, the batch deadline and the housekeeping are events and timers */
    fh_loop_run(v->loop, 1000);
    if (v->in_txn) {
        fh_loop_timer_cancel(v->loop, v->batch_timer);
        v->batch_timer = 0;
        if (v->batch_n)
            view_commit_batch(v);
        else
            view_wexec(v, W_ROLLBACK);
        v->in_txn = 0;
    }
    return NULL;
}
