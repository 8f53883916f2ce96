/* fh_consumer: what every Kafka consumer of firehose asks of the cluster about the topics it reads,
 * written once: how many partitions a topic has, and a partition's watermarks, asked again while a
 * leader moves or a topic is still being created. */
#ifndef FH_CONSUMER_H
#define FH_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "fh_error.h"

/* The partition ids of topic, ascending, into ids (at most cap; *n gets how many the topic has,
 * which may exceed cap: the caller decides whether that is an error). Asks again every 200 ms,
 * within timeout_ms in all, while the topic is unknown, has no partitions yet or no leaders (being
 * created, or metadata not yet on the node asked). FH_ERR_KAFKA when it fails (errbuf says why). */
fh_err fh_consumer_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int32_t *ids,
                              int cap, int *n, char *errbuf, size_t errsize);

/* rd_kafka_query_watermark_offsets, asked again (every 200 ms, within budget_ms in all) while
 * the answer says the partition is passing between leaders or its topic is still being created.
 * Returns the last answer's error (0: *lo and *hi are set). */
rd_kafka_resp_err_t fh_consumer_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                           int64_t *lo, int64_t *hi, int budget_ms);

/* Makes q write an 8-byte 1 to the eventfd efd whenever it becomes non-empty (an eventfd takes
 * only 8-byte writes: a shorter payload is refused, and the reader would see new records only when
 * its poll times out). efd -1 turns it off. */
void fh_consumer_wake_on(rd_kafka_queue_t *q, int efd);

#endif
