/* view/consumer: the view's Kafka consumer (manual assignment of every partition from the
 * offsets stored in SQLite, watermarks for as_of.behind) and the view thread's loop. */
#include "internal.h"

#include "derive.h"
#include "fh_consumer.h"

/* ---- Kafka ------------------------------------------------------------------------------ */

/* Sends the consumer to every known partition at its committed position. */
void view_assign_all(void)
{
    char err[256];
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(64);
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < view_g.nparts[k]; i++)
            rd_kafka_topic_partition_list_add(l, view_g.topic[k], i)->offset =
                view_g.parts[k][i].committed >= 0 ? view_g.parts[k][i].committed
                                                  : RD_KAFKA_OFFSET_BEGINNING;
    if (fh_consumer_assign(view_g.kc, l, err, sizeof(err)))
        fh_log(FH_LOG_ERROR, "view.assign", "error=\"%s\"", err);
    else
        fh_log(FH_LOG_INFO, "view.assign", "partitions=%d events=%d logs=%d", l->cnt,
               view_g.nparts[TOPIC_EVENTS], view_g.nparts[TOPIC_LOGS]);
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t stored_offset(int k, int part)
{
    sqlite3_stmt *st = NULL;
    int64_t off = -1;
    if (sqlite3_prepare_v2(view_g.db,
                           "SELECT next_offset FROM offsets WHERE topic = ?1 AND part = ?2", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, view_g.topic[k], -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, part);
    if (sqlite3_step(st) == SQLITE_ROW)
        off = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return off;
}

/* fh_consumer_check offers the partitions added to a topic in order: each grows the partition
 * table and starts at its stored position (none: from its beginning, everything in a new
 * partition is new). */
static int on_partition_added(void *arg, const char *topic, int32_t part, int64_t *offset)
{
    (void)arg;
    for (int k = 0; k < NTOPICS; k++) {
        if (strcmp(view_g.topic[k], topic) != 0 || part != view_g.nparts[k])
            continue;
        vpart *np = realloc(view_g.parts[k], (size_t)(part + 1) * sizeof(*np));
        if (!np)
            return 1;
        np[part].committed = np[part].next = stored_offset(k, part);
        np[part].lo = np[part].hi = -1;
        np[part].lost_reported = -1;
        np[part].dirty = 0;
        view_g.parts[k] = np;
        view_g.nparts[k] = part + 1;
        if (np[part].committed >= 0)
            *offset = np[part].committed;
        return 0;
    }
    return 1;
}

/* Looks up the partition counts and assigns the partitions added since the last look. Called
 * only between batches, when every position equals its committed one. */
static void refresh_partitions(void)
{
    char err[512];
    int added;
    if (fh_consumer_check(view_g.kc, 1, 2000, on_partition_added, NULL, &added, err, sizeof(err))) {
        static int64_t warned;
        if (fh_now_ms() - warned > 60000) {
            warned = fh_now_ms();
            fh_log(FH_LOG_WARN, "view.metadata", "error=\"%s\"", err);
        }
    } else if (added) {
        fh_log(FH_LOG_INFO, "view.assign", "partitions=%d events=%d logs=%d added=%d",
               view_g.nparts[TOPIC_EVENTS] + view_g.nparts[TOPIC_LOGS], view_g.nparts[TOPIC_EVENTS],
               view_g.nparts[TOPIC_LOGS], added);
    }
}

/* Publishes how far the topics go, from librdkafka's cached watermarks; -1 until every
 * partition's high watermark is known (no fetch answered yet), so nobody reads "0 behind" off a
 * view that has not looked. */
static void publish_end(void)
{
    long long end = 0, behind = 0;
    int unknown = view_g.nparts[TOPIC_EVENTS] == 0 || view_g.nparts[TOPIC_LOGS] == 0;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < view_g.nparts[k]; i++) {
            vpart *p = &view_g.parts[k][i];
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(view_g.rk, view_g.topic[k], i, &lo, &hi) == 0 &&
                hi >= 0) {
                p->lo = lo;
                p->hi = hi;
            }
            int64_t next = p->committed > 0 ? p->committed : 0;
            int64_t reach = p->hi >= 0 ? p->hi : next;
            if (p->hi < 0)
                unknown = 1;
            /* Records below the low watermark are gone; they can never be applied. */
            if (p->lo > next)
                reach -= p->lo - next;
            if (reach < next)
                reach = next;
            end += reach;
            behind += reach - next;
        }
    atomic_store(&view_g.end_total, unknown ? -1 : end);
    fh_metric_set(view_g.m_behind, unknown ? -1 : behind);
}

/* Prefetching is capped (8 MiB queued, 4 MiB per fetch) so a view that is far behind does not
 * hold hundreds of MiB of fetched records; it still catches up at tens of thousands of records
 * a second. A fetch waits for 64 KiB or 10 ms (the view commits every view.batch_ms anyway),
 * where an answer per record would cost a wake-up of every thread on the way. kafka.* keys
 * override these. */
static const char *const view_consumer_defaults[] = {
    "enable.auto.commit=false",
    "enable.auto.offset.store=false",
    "auto.offset.reset=earliest",
    "enable.partition.eof=false",
    "fetch.wait.max.ms=10",
    "fetch.min.bytes=65536",
    "queued.max.messages.kbytes=8192",
    "queued.min.messages=10000",
    "fetch.max.bytes=4194304",
    "log_level=4",
    NULL,
};

int view_kafka_open(char *errbuf, size_t errsize)
{
    char group[512];
    const char *topics[NTOPICS];
    for (int k = 0; k < NTOPICS; k++)
        topics[k] = view_g.topic[k];
    /* librdkafka wants a group id before it lets a consumer assign(); the view never joins the
     * group (no subscribe) and never commits to Kafka: its offsets live in SQLite. */
    snprintf(group, sizeof(group), "%s.view", fh_config_str(&view_g.b->cfg, "kafka.group"));
    fh_consumer_opts o = {.policy = FH_CONSUMER_OFFSETS,
                          .bootstrap = view_g.b->bootstrap,
                          .defaults = view_consumer_defaults,
                          .group = group,
                          .check_ms = (int)view_g.metadata_ms,
                          .wake_fd = -1,
                          .topics = topics,
                          .ntopics = NTOPICS};
    if (fh_consumer_new(&view_g.b->cfg, &o, &view_g.kc, errbuf, errsize))
        return -1;
    view_g.rk = view_g.kc->rk;
    return 0;
}

void *view_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "fh-view");
    view_thread_nice("view");
    int64_t next_meta = 0, next_prune = fh_now_ms() + 1000, next_end = 0;
    while (view_running()) {
        int64_t now = fh_now_ms();
        if (!view_g.in_txn) {
            if (now >= next_meta) {
                refresh_partitions();
                next_meta = now + view_g.metadata_ms;
            }
            if (now >= next_prune) {
                view_prune();
                next_prune = now + view_g.prune_interval_s * 1000;
            }
            derive_tick(now);
        }
        if (now >= next_end) {
            publish_end();
            next_end = now + 100;
        }
        int timeout = 100;
        if (view_g.in_txn) {
            int64_t left = view_g.batch_first_ms + view_g.batch_ms - now;
            timeout = left < 0 ? 0 : (int)left;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(view_g.rk, timeout);
        if (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    static int64_t warned;
                    char q[420];
                    if (fh_now_ms() - warned > 10000) {
                        warned = fh_now_ms();
                        fh_log(FH_LOG_WARN, "view.kafka", "error=%s",
                               fh_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
                    }
                }
            } else if ((!view_g.in_txn && view_begin_batch()) || view_handle_record(m)) {
                /* SQLite failed (disk full, I/O): undo the batch and retry it from the committed
                 * positions a second later. */
                view_abort_batch();
                rd_kafka_message_destroy(m);
                struct timespec ts = {1, 0};
                nanosleep(&ts, NULL);
                continue;
            }
            rd_kafka_message_destroy(m);
        }
        if (view_g.in_txn && (view_g.batch_n >= view_g.batch_max ||
                              fh_now_ms() >= view_g.batch_first_ms + view_g.batch_ms)) {
            if (view_g.batch_n == 0) {
                view_wexec(W_ROLLBACK);
                view_g.in_txn = 0;
            } else if (view_commit_batch()) {
                struct timespec ts = {1, 0};
                nanosleep(&ts, NULL);
            } else {
                view_ckpt_tail();
            }
        }
    }
    if (view_g.in_txn) {
        if (view_g.batch_n)
            view_commit_batch();
        else
            view_wexec(W_ROLLBACK);
        view_g.in_txn = 0;
    }
    return NULL;
}
