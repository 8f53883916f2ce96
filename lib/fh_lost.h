/* fh_lost: notices records a Kafka consumer still needed and Kafka deleted before it read them
 * (retention, or the embedded mock cluster's per-partition cap).
 *
 * librdkafka answers a fetch below the partition's low watermark (offset out of range) by moving
 * the position as auto.offset.reset says (firehose's consumers say earliest) and logs no more
 * than a warning; what the consumer sees is a gap: the next record lies past the one it expected.
 * Not every gap is a loss (transaction markers, aborted transactions and compaction leave offsets
 * no consumer gets), but what lies below the low watermark was deleted: only that is counted.
 * A loss is noticed with the next record the consumer reads from that partition. */
#ifndef FH_LOST_H
#define FH_LOST_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

/* The part of the gap [expected, offset) that lies below the low watermark lo: returns how many
 * offsets it holds and sets *to to its end, so [expected, *to) is what was lost. 0 (and *to =
 * expected) when nothing was, and when expected or lo is unknown (negative). */
int64_t fh_lost_range(int64_t expected, int64_t offset, int64_t lo, int64_t *to);

/* fh_lost_range with the low watermark of topic/partition from rk: the one librdkafka cached
 * from its last fetch answer (each carries it), or when that is unknown, Kafka's answer to a
 * query (waits at most 2 s). Call on the consumer's thread when a record arrives at offset >
 * expected; cheap when the watermark is cached. */
int64_t fh_lost_check(rd_kafka_t *rk, const char *topic, int partition, int64_t expected,
                      int64_t offset, int64_t *to);

/* The next offset a consumer needs, per partition, for consumers that keep none of their own
 * (group members). Tracks at most FH_LOST_TOPICS topics and partitions below
 * FH_LOST_MAX_PARTITIONS (Kafka's own practical ceiling); others are simply not checked. Used by
 * one thread. A zeroed table is empty; fh_lost_table_free releases it. */
#define FH_LOST_TOPICS 4
#define FH_LOST_MAX_PARTITIONS 100000
typedef struct fh_lost_table {
    struct {
        char *topic;
        int64_t *next; /* -1: unknown */
        int n;
    } t[FH_LOST_TOPICS];
    int ntopics;
} fh_lost_table;

void fh_lost_table_free(fh_lost_table *t);

/* Sets the next offset needed of topic/partition (-1: unknown, nothing is checked until a record
 * of it arrives). */
void fh_lost_table_set(fh_lost_table *t, const char *topic, int partition, int64_t next);
int64_t fh_lost_table_get(const fh_lost_table *t, const char *topic, int partition);

/* For a rebalance callback that has just assigned parts: each partition's expectation becomes
 * the group's committed offset (asked of the coordinator, waiting at most timeout_ms), unknown
 * when there is none or the coordinator does not answer. */
void fh_lost_table_assigned(fh_lost_table *t, rd_kafka_t *rk,
                            const rd_kafka_topic_partition_list_t *parts, int timeout_ms);

/* Forgets the expectations of parts (revoked: the next owner checks them). */
void fh_lost_table_revoked(fh_lost_table *t, const rd_kafka_topic_partition_list_t *parts);

/* Checks record m (m->err == 0) against its partition's expectation, then expects m->offset + 1.
 * Returns how many records were lost before m and sets [*from, *to) to them; 0 when none. */
int64_t fh_lost_table_check(fh_lost_table *t, rd_kafka_t *rk, const rd_kafka_message_t *m,
                            int64_t *from, int64_t *to);

#endif
