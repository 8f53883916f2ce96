/* webhooks/consumer.c: the webhook consumer (group webhooks.group, shared by every broker
 * instance), on the webhook thread. Records become deliveries inside one SQLite transaction and
 * changelog records (changelog.c); the offsets of the records a COMMIT covers are stored only
 * once Kafka acknowledged those changelog records, so a delivery is durable in the cluster
 * before its record's offset can be committed (at-least-once). A newly assigned partition stays
 * paused, and its deliveries unsent, until the reader has applied its changelog partition up to
 * the end it had at the assignment (the previous owner's last word). At webhooks.queue_max
 * pending deliveries the partitions are paused; a revoke first records and commits what was
 * consumed and lets the transfers on the lost partitions finish. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fh_log.h"
#include "health.h"

/* ---- the transaction ------------------------------------------------------------------------ */

void wh_txn_begin(fh_webhooks *w)
{
    if (w->in_txn)
        return;
    if (wh_step_done(w->st[S_BEGIN]) == 0)
        w->in_txn = 1;
    else
        wh_sql_warn(w, "begin");
}

static void seek_back(fh_webhooks *w);

/* Commits the open transaction, then hands the offsets of the records it covers to the open
 * batch, closed here (wh_batches_store stores them once Kafka acknowledged its changelog
 * records). On a failed commit the consumer goes back to the first record of the transaction
 * (nothing is lost; the deliveries are inserted again, deduplicated by their ids). */
void wh_txn_commit(fh_webhooks *w)
{
    if (!w->in_txn)
        return;
    w->in_txn = 0;
    if (wh_step_done(w->st[S_COMMIT])) {
        wh_sql_warn(w, "commit");
        wh_step_done(w->st[S_ROLLBACK]);
        seek_back(w);
        return;
    }
    /* The offsets wait in the open batch until Kafka acknowledged every changelog record the
     * thread produced with them (wh_batches_store): a delivery is in the cluster before the
     * record that made it can be skipped. */
    rd_kafka_topic_partition_list_t *l = NULL, *f = NULL;
    for (int p = 0; p < MAX_PARTS; p++) {
        if (w->to_store[p] < 0)
            continue;
        if (!l) {
            l = rd_kafka_topic_partition_list_new(8);
            f = rd_kafka_topic_partition_list_new(8);
        }
        rd_kafka_topic_partition_list_add(l, wh_slot_topic(w, p), wh_slot_partition(p))->offset =
            w->to_store[p];
        rd_kafka_topic_partition_list_add(f, wh_slot_topic(w, p), wh_slot_partition(p))->offset =
            w->first_in_txn[p];
        w->to_store[p] = -1;
        w->first_in_txn[p] = -1;
    }
    wh_batch *nb = l ? wh_batch_new() : NULL;
    if (!nb) {
        if (l) { /* out of memory: wait for everything instead */
            if (wh_cl_flush(w, (int)w->cfg.timeout_ms + 10000) == 0)
                rd_kafka_offsets_store(w->rk, l);
            rd_kafka_topic_partition_list_destroy(l);
            rd_kafka_topic_partition_list_destroy(f);
        }
        wh_batches_store(w);
        return;
    }
    wh_batch *b = w->bcur;
    b->store = l;
    b->first = f;
    if (w->btail)
        w->btail->next = b;
    else
        w->bhead = b;
    w->btail = b;
    w->bcur = nb;
    atomic_fetch_sub(&b->pending, 1); /* closed: only its records hold it now */
    wh_batches_store(w);
}

/* Goes back to the offsets of list (a batch whose changelog records Kafka did not take): those
 * records are consumed again. */
static void seek_to(fh_webhooks *w, rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++)
        fh_lost_table_set(&w->next, l->elems[i].topic, l->elems[i].partition, l->elems[i].offset);
    if (l->cnt) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(w->rk, l, 5000);
        if (e) {
            fh_log(FH_LOG_ERROR, "webhook.seek", "error=\"%s\"", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
}

void wh_batches_store(fh_webhooks *w)
{
    while (w->bhead && atomic_load(&w->bhead->pending) == 0) {
        wh_batch *b = w->bhead;
        w->bhead = b->next;
        if (!w->bhead)
            w->btail = NULL;
        if (!b->discard && atomic_load(&b->failed)) {
            /* its records are consumed again, and so is everything after them: no batch
             * closed or open now may store its offsets */
            fh_log(FH_LOG_WARN, "webhook.changelog",
                   "error=\"Kafka did not take changelog records: consuming again\"");
            seek_to(w, b->first);
            for (wh_batch *x = w->bhead; x; x = x->next)
                x->discard = 1;
            w->bcur->discard = 1;
            for (int p = 0; p < MAX_PARTS; p++)
                w->to_store[p] = w->first_in_txn[p] = -1;
        } else if (!b->discard && b->store) {
            rd_kafka_resp_err_t err = rd_kafka_offsets_store(w->rk, b->store);
            /* A partition revoked meanwhile refuses the store: its next owner starts from the
             * last committed offset and finds these deliveries in the changelog. */
            if (err && err != RD_KAFKA_RESP_ERR__STATE)
                fh_log(FH_LOG_WARN, "webhook.offsets", "error=\"%s\"", rd_kafka_err2str(err));
        }
        wh_batch_free(b);
    }
}

static void seek_back(fh_webhooks *w)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < MAX_PARTS; p++) {
        if (w->first_in_txn[p] >= 0) {
            rd_kafka_topic_partition_list_add(l, wh_slot_topic(w, p), wh_slot_partition(p))
                ->offset = w->first_in_txn[p];
            fh_lost_table_set(&w->next, wh_slot_topic(w, p), wh_slot_partition(p),
                              w->first_in_txn[p]);
        }
        w->first_in_txn[p] = -1;
        w->to_store[p] = -1;
    }
    if (l->cnt) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(w->rk, l, 5000);
        if (e) {
            fh_log(FH_LOG_ERROR, "webhook.seek", "error=\"%s\"", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- partitions ---------------------------------------------------------------------------- */

void wh_recount_pending(fh_webhooks *w)
{
    sqlite3_stmt *st = w->st[S_PENDING];
    if (sqlite3_step(st) == SQLITE_ROW)
        w->pending = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    fh_metric_set(w->m_pending, w->pending);
}

static void own(fh_webhooks *w, int p, int yes)
{
    if (p < 0 || p >= MAX_PARTS)
        return;
    if (!yes)
        w->catchup[p] = -1;
    w->owned[p] = (unsigned char)yes;
    sqlite3_stmt *st = w->st[yes ? S_OWN_ADD : S_OWN_DEL];
    sqlite3_bind_int(st, 1, p);
    wh_step_done(st);
}

static void pause_parts(fh_webhooks *w, rd_kafka_topic_partition_list_t *l, int pause)
{
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(w->rk, l) : rd_kafka_resume_partitions(w->rk, l);
    if (err)
        fh_log(FH_LOG_WARN, "webhook.pause", "error=\"%s\"", rd_kafka_err2str(err));
}

/* At webhooks.queue_max pending deliveries the consumer stops fetching (records already fetched
 * are still turned into deliveries: nothing fetched is dropped); below 90% it fetches again. */
void wh_check_pause(fh_webhooks *w)
{
    int want;
    if (!w->paused)
        want = w->pending >= w->cfg.queue_max;
    else
        want = w->pending >= w->cfg.queue_max - w->cfg.queue_max / 10;
    if (want == w->paused)
        return;
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(w->rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l) {
        /* a partition still catching up stays paused */
        for (int i = l->cnt - 1; !want && i >= 0; i--) {
            int slot = wh_slot(w, l->elems[i].topic, l->elems[i].partition);
            if (slot >= 0 && w->catchup[slot] >= 0)
                rd_kafka_topic_partition_list_del_by_idx(l, i);
        }
        pause_parts(w, l, want);
        rd_kafka_topic_partition_list_destroy(l);
    }
    w->paused = want;
    fh_metric_set(w->m_paused, want);
    fh_log(want ? FH_LOG_WARN : FH_LOG_INFO, want ? "webhook.paused" : "webhook.resumed",
           "pending=%lld queue_max=%lld", w->pending, w->cfg.queue_max);
}

void wh_catchup(fh_webhooks *w)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int slot = 0; slot < MAX_PARTS; slot++) {
        if (w->catchup[slot] < 0)
            continue;
        int64_t at = atomic_load(&w->cl_applied[wh_cl_partition(w, slot)]);
        if (at < w->catchup[slot])
            continue;
        fh_log(FH_LOG_INFO, "webhook.caught_up", "slot=%d changelog_partition=%d offset=%lld", slot,
               wh_cl_partition(w, slot), (long long)at);
        w->catchup[slot] = -1;
        own(w, slot, 1);
        if (!l)
            l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, wh_slot_topic(w, slot), wh_slot_partition(slot));
    }
    if (!l)
        return;
    if (!w->paused)
        pause_parts(w, l, 0);
    rd_kafka_topic_partition_list_destroy(l);
    wh_recount_pending(w);
    for (size_t i = 0; i < w->neps; i++)
        w->eps[i].has_work = 1;
}

/* ---- consuming ------------------------------------------------------------------------------ */

/* The handle is the consumer's opaque (rd_kafka_conf_set_opaque). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    fh_webhooks *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS && atomic_load(&w->stop)) {
        /* The first join can complete while the consumer is closing: take nothing on. */
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
        /* records below the committed offsets that Kafka deleted meanwhile are lost to us */
        fh_lost_table_assigned(&w->next, rk, parts, 5000);
        /* each partition waits, paused, until the reader reached its changelog partition's end
         * as of now (wh_catchup) */
        for (int i = 0; i < parts->cnt; i++) {
            int slot = wh_slot(w, parts->elems[i].topic, parts->elems[i].partition);
            int64_t lo = 0, hi = 0;
            if (slot < 0)
                continue;
            rd_kafka_resp_err_t kerr = fh_consumer_watermarks(
                w->prod, w->cl_topic, wh_cl_partition(w, slot), &lo, &hi, 5000);
            if (kerr)
                fh_log(FH_LOG_WARN, "webhook.catchup", "slot=%d error=\"%s\"", slot,
                       rd_kafka_err2str(kerr));
            w->catchup[slot] = kerr ? 0 : hi;
        }
        pause_parts(w, parts, 1);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Record what was consumed so far and commit its offsets while the partitions are
         * still ours, stop starting new attempts on them, and let the running ones finish. */
        wh_txn_commit(w);
        if (wh_cl_flush(w, (int)w->cfg.timeout_ms + 10000)) /* every batch acknowledged */
            fh_log(FH_LOG_WARN, "webhook.changelog", "error=\"unacknowledged at the revoke\"");
        wh_batches_store(w);
        if (!rd_kafka_assignment_lost(rk))
            rd_kafka_commit(rk, NULL, 0);
        for (int i = 0; i < parts->cnt; i++)
            own(w, wh_slot(w, parts->elems[i].topic, parts->elems[i].partition), 0);
        wh_drain(w, parts);
        /* the next owner reads the changelog to its end when it is assigned: ours must be in */
        if (wh_cl_flush(w, (int)w->cfg.timeout_ms + 10000))
            fh_log(FH_LOG_WARN, "webhook.changelog", "error=\"unacknowledged at the revoke\"");
        fh_lost_table_revoked(&w->next, parts);
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
    } else {
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
    }
    wh_recount_pending(w);
    int owned = 0;
    for (int p = 0; p < MAX_PARTS; p++)
        owned += w->owned[p];
    fh_log(FH_LOG_INFO, "webhook.partitions", "change=%s count=%d owned=%d pending=%lld",
           err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assigned" : "revoked", parts->cnt, owned,
           w->pending);
    for (size_t i = 0; i < w->neps; i++)
        w->eps[i].has_work = 1;
}

void wh_consume(fh_webhooks *w)
{
    for (long long n = 0; n < w->cfg.batch_max && wh_running(w); n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 0);
        if (!m)
            return;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fh_log(FH_LOG_WARN, "webhook.consume", "error=\"%s\"", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int p = wh_slot(w, rd_kafka_topic_name(m->rkt), m->partition);
        int64_t from, to;
        if (fh_lost_table_check(&w->next, w->rk, m, &from, &to))
            health_records_lost("webhooks", rd_kafka_topic_name(m->rkt), m->partition, from, to);
        if (p >= 0 && p < MAX_PARTS) {
            wh_txn_begin(w);
            if (w->first_in_txn[p] < 0)
                w->first_in_txn[p] = m->offset;
            if (wh_ingest(w, m)) {
                wh_sql_warn(w, "ingest");
                rd_kafka_message_destroy(m);
                w->in_txn = 0;
                wh_step_done(w->st[S_ROLLBACK]);
                seek_back(w);
                usleep(100000); /* a failing disk: do not spin */
                return;
            }
            w->to_store[p] = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
    }
}

/* The eager assignors, not cooperative-sticky: librdkafka before 2.3 aborts when a
 * cooperative-sticky consumer is closed before its first assignment (an assertion in
 * rd_kafka_sticky_assignor_state_destroy) and can hang closing one while an assignment arrives,
 * and Debian 12 ships 2.0.2. A rebalance then revokes every partition of the group for a moment;
 * deliveries stay at least once with unchanged webhook ids either way. */
static const char *const consumer_defaults[] = {
    "enable.auto.commit=true",
    "enable.auto.offset.store=false",
    "auto.commit.interval.ms=1000",
    "auto.offset.reset=earliest",
    "partition.assignment.strategy=range,roundrobin",
    "session.timeout.ms=10000",
    "heartbeat.interval.ms=1000",
    "log_level=4",
    "queued.max.messages.kbytes=4096",
    "queued.min.messages=5000",
    "fetch.max.bytes=2097152",
    /* a fetch waits for 64 KiB or 10 ms rather than answering per record */
    "fetch.min.bytes=65536",
    "fetch.wait.max.ms=10",
    NULL,
};

int wh_start_consumer(fh_webhooks *w, char *err, size_t errsize)
{
    fh_broker *b = w->b;
    const char *topics[2];
    int nt = wh_topics(w, topics);
    fh_consumer_opts o = {.policy = FH_CONSUMER_GROUP,
                          .bootstrap = b->bootstrap,
                          .defaults = consumer_defaults,
                          .group = w->cfg.group,
                          .instance_id = w->cfg.instance_id,
                          .rebalance = on_rebalance,
                          .opaque = w,
                          .check_ms = (int)fh_config_int(&b->cfg, "kafka.partition_check_ms"),
                          .wake_fd = -1, /* the thread watches the queue (fh_consumer_watch) */
                          .errors_with_records = 1};
    if (fh_consumer_new(&b->cfg, &o, &w->kc, err, errsize))
        return -1;
    w->rk = w->kc->rk;
    w->rkq = w->kc->q;
    return fh_consumer_subscribe(w->kc, topics, nt, err, errsize) ? -1 : 0;
}
