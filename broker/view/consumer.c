/* view/consumer: the view's Kafka consumer (manual assignment of every partition from the
 * offsets stored in SQLite, watermarks for as_of.behind). The view thread's loop that polls it
 * is loop.c. */
#include "internal.h"

#include "fh_consumer.h"

/* ---- Kafka ------------------------------------------------------------------------------ */

/* Sends the consumer to every known partition at its committed position. */
void view_assign_all(fh_view *v)
{
    char err[256];
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(64);
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < v->nparts[k]; i++)
            rd_kafka_topic_partition_list_add(l, v->topic[k], i)->offset =
                v->parts[k][i].committed >= 0 ? v->parts[k][i].committed
                                              : RD_KAFKA_OFFSET_BEGINNING;
    if (fh_consumer_assign(v->kc, l, err, sizeof(err)))
        fh_log(FH_LOG_ERROR, "view.assign", "error=\"%s\"", err);
    else
        fh_log(FH_LOG_INFO, "view.assign", "partitions=%d events=%d logs=%d", l->cnt,
               v->nparts[TOPIC_EVENTS], v->nparts[TOPIC_LOGS]);
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t stored_offset(fh_view *v, int k, int part)
{
    sqlite3_stmt *st = NULL;
    int64_t off = -1;
    if (sqlite3_prepare_v2(v->db, "SELECT next_offset FROM offsets WHERE topic = ?1 AND part = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, v->topic[k], -1, SQLITE_STATIC);
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
    fh_view *v = arg;
    for (int k = 0; k < NTOPICS; k++) {
        if (strcmp(v->topic[k], topic) != 0 || part != v->nparts[k])
            continue;
        vpart *np = realloc(v->parts[k], (size_t)(part + 1) * sizeof(*np));
        if (!np)
            return 1;
        np[part].committed = np[part].next = stored_offset(v, k, part);
        np[part].lo = np[part].hi = -1;
        np[part].lost_reported = -1;
        np[part].dirty = 0;
        v->parts[k] = np;
        v->nparts[k] = part + 1;
        if (np[part].committed >= 0)
            *offset = np[part].committed;
        return 0;
    }
    return 1;
}

/* Looks up the partition counts and assigns the partitions added since the last look. Called
 * only between batches, when every position equals its committed one. */
void view_refresh_partitions(fh_view *v)
{
    char err[512];
    int added;
    if (fh_consumer_check(v->kc, 1, 2000, on_partition_added, v, &added, err, sizeof(err))) {
        if (fh_now_ms() - v->meta_warned_ms > 60000) {
            v->meta_warned_ms = fh_now_ms();
            fh_log(FH_LOG_WARN, "view.metadata", "error=\"%s\"", err);
        }
    } else if (added) {
        fh_log(FH_LOG_INFO, "view.assign", "partitions=%d events=%d logs=%d added=%d",
               v->nparts[TOPIC_EVENTS] + v->nparts[TOPIC_LOGS], v->nparts[TOPIC_EVENTS],
               v->nparts[TOPIC_LOGS], added);
    }
}

/* Publishes how far the topics go, from librdkafka's cached watermarks; -1 until every
 * partition's high watermark is known (no fetch answered yet), so nobody reads "0 behind" off a
 * view that has not looked. */
void view_publish_end(fh_view *v)
{
    long long end = 0, behind = 0;
    int unknown = v->nparts[TOPIC_EVENTS] == 0 || v->nparts[TOPIC_LOGS] == 0;
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < v->nparts[k]; i++) {
            vpart *p = &v->parts[k][i];
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(v->rk, v->topic[k], i, &lo, &hi) == 0 && hi >= 0) {
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
    atomic_store(&v->end_total, unknown ? -1 : end);
    fh_metric_set(v->m_behind, unknown ? -1 : behind);
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

int view_kafka_open(fh_view *v, char *errbuf, size_t errsize)
{
    char group[512];
    const char *topics[NTOPICS];
    for (int k = 0; k < NTOPICS; k++)
        topics[k] = v->topic[k];
    /* librdkafka wants a group id before it lets a consumer assign(); the view never joins the
     * group (no subscribe) and never commits to Kafka: its offsets live in SQLite. */
    snprintf(group, sizeof(group), "%s.view", v->cfg.group);
    fh_consumer_opts o = {.policy = FH_CONSUMER_OFFSETS,
                          .bootstrap = v->b->bootstrap,
                          .defaults = view_consumer_defaults,
                          .group = group,
                          .check_ms = (int)v->metadata_ms,
                          .wake_fd = -1,
                          .topics = topics,
                          .ntopics = NTOPICS};
    if (fh_consumer_new(&v->b->cfg, &o, &v->kc, errbuf, errsize))
        return -1;
    v->rk = v->kc->rk;
    return 0;
}
