#include "fh_lost.h"

#include <stdlib.h>
#include <string.h>

int64_t fh_lost_range(int64_t expected, int64_t offset, int64_t lo, int64_t *to)
{
    *to = expected;
    if (expected < 0 || lo < 0 || offset <= expected || lo <= expected)
        return 0;
    /* A watermark cached after m was fetched may already be past m: m itself was not lost. */
    *to = lo < offset ? lo : offset;
    return *to - expected;
}

int64_t fh_lost_check(rd_kafka_t *rk, const char *topic, int partition, int64_t expected,
                      int64_t offset, int64_t *to)
{
    int64_t lo = -1, hi = -1;
    *to = expected;
    if (expected < 0 || offset <= expected)
        return 0;
    if (rd_kafka_get_watermark_offsets(rk, topic, partition, &lo, &hi) || lo < 0)
        if (rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi, 2000))
            return 0;
    return fh_lost_range(expected, offset, lo, to);
}

void fh_lost_table_free(fh_lost_table *t)
{
    for (int i = 0; i < t->ntopics; i++) {
        free(t->t[i].topic);
        free(t->t[i].next);
    }
    memset(t, 0, sizeof(*t));
}

static int topic_index(const fh_lost_table *t, const char *topic)
{
    for (int i = 0; i < t->ntopics; i++)
        if (strcmp(t->t[i].topic, topic) == 0)
            return i;
    return -1;
}

/* The slot of topic/partition, made (and grown) when create; NULL past the caps or out of
 * memory. */
static int64_t *slot(fh_lost_table *t, const char *topic, int partition, int create)
{
    if (partition < 0 || partition >= FH_LOST_MAX_PARTITIONS)
        return NULL;
    int i = topic_index(t, topic);
    if (i < 0) {
        if (!create || t->ntopics == FH_LOST_TOPICS || !(t->t[t->ntopics].topic = strdup(topic)))
            return NULL;
        i = t->ntopics++;
    }
    if (partition >= t->t[i].n) {
        if (!create)
            return NULL;
        int n = partition + 1 > 2 * t->t[i].n ? partition + 1 : 2 * t->t[i].n;
        if (n > FH_LOST_MAX_PARTITIONS)
            n = FH_LOST_MAX_PARTITIONS;
        int64_t *next = realloc(t->t[i].next, (size_t)n * sizeof(*next));
        if (!next)
            return NULL;
        for (int k = t->t[i].n; k < n; k++)
            next[k] = -1;
        t->t[i].next = next;
        t->t[i].n = n;
    }
    return &t->t[i].next[partition];
}

void fh_lost_table_set(fh_lost_table *t, const char *topic, int partition, int64_t next)
{
    int64_t *s = slot(t, topic, partition, next >= 0);
    if (s)
        *s = next < 0 ? -1 : next;
}

int64_t fh_lost_table_get(const fh_lost_table *t, const char *topic, int partition)
{
    int64_t *s = slot((fh_lost_table *)t, topic, partition, 0);
    return s ? *s : -1;
}

void fh_lost_table_assigned(fh_lost_table *t, rd_kafka_t *rk,
                            const rd_kafka_topic_partition_list_t *parts, int timeout_ms)
{
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
    if (!c)
        return;
    int ok = rd_kafka_committed(rk, c, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < c->cnt; i++)
        fh_lost_table_set(t, c->elems[i].topic, c->elems[i].partition,
                          ok && !c->elems[i].err && c->elems[i].offset >= 0 ? c->elems[i].offset
                                                                            : -1);
    rd_kafka_topic_partition_list_destroy(c);
}

void fh_lost_table_revoked(fh_lost_table *t, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++)
        fh_lost_table_set(t, parts->elems[i].topic, parts->elems[i].partition, -1);
}

int64_t fh_lost_table_check(fh_lost_table *t, rd_kafka_t *rk, const rd_kafka_message_t *m,
                            int64_t *from, int64_t *to)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    int64_t *s = slot(t, topic, m->partition, 1);
    int64_t n = 0;
    *from = *to = m->offset;
    if (!s)
        return 0;
    if (*s >= 0 && m->offset > *s) {
        *from = *s;
        n = fh_lost_check(rk, topic, m->partition, *s, m->offset, to);
    }
    *s = m->offset + 1;
    return n;
}
