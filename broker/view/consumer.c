/* view/consumer: the view's Kafka consumer (manual assignment of every partition from the
 * offsets stored in SQLite, watermarks for as_of.behind). The view thread's loop that polls it
 * is loop.c. */
#include "internal.h"

#include "fh_consumer.h"

/* ---- Kafka ------------------------------------------------------------------------------ */

/* Sends the consumer to every known partition at its committed position. */
void view_assign_all(fh_view *v)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(64);
    for (int k = 0; k < NTOPICS; k++)
        for (int i = 0; i < v->nparts[k]; i++)
            rd_kafka_topic_partition_list_add(l, v->topic[k], i)->offset =
                v->parts[k][i].committed >= 0 ? v->parts[k][i].committed
                                              : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(v->rk, l);
    if (err)
        fh_log(FH_LOG_ERROR, "view.assign", "error=\"%s\"", rd_kafka_err2str(err));
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

/* Looks up the partition counts; grows the partition table and reassigns when they grew.
 * Called only between batches, when every position equals its committed one. */
void view_refresh_partitions(fh_view *v)
{
    int changed = 0;
    for (int k = 0; k < NTOPICS; k++) {
        char err[512];
        int32_t first;
        int n = 0;
        if (fh_consumer_partitions(v->rk, v->topic[k], 2000, &first, 1, &n, err, sizeof(err))) {
            if (fh_now_ms() - v->meta_warned_ms > 60000) {
                v->meta_warned_ms = fh_now_ms();
                fh_log(FH_LOG_WARN, "view.metadata", "topic=%s error=\"%s\"", v->topic[k], err);
            }
            continue;
        }
        if (n <= v->nparts[k])
            continue;
        vpart *np = realloc(v->parts[k], (size_t)n * sizeof(*np));
        if (!np)
            continue;
        for (int i = v->nparts[k]; i < n; i++) {
            np[i].committed = np[i].next = stored_offset(v, k, i);
            np[i].lo = np[i].hi = -1;
            np[i].lost_reported = -1;
            np[i].dirty = 0;
        }
        v->parts[k] = np;
        v->nparts[k] = n;
        changed = 1;
    }
    if (changed)
        view_assign_all(v);
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
    rd_kafka_conf_t *conf;
    char group[512];
    if (fh_kafka_conf(&v->b->cfg, v->b->bootstrap, view_consumer_defaults, &conf, errbuf, errsize))
        return -1;
    /* librdkafka wants a group id before it lets a consumer assign(); the view never joins the
     * group (no subscribe) and never commits to Kafka: its offsets live in SQLite. */
    snprintf(group, sizeof(group), "%s.view", v->cfg.group);
    if (rd_kafka_conf_set(conf, "group.id", group, errbuf, errsize) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (!(v->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return -1; /* rd_kafka_new destroyed conf */
    return 0;
}
