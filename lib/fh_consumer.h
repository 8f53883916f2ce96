/* fh_consumer: what every Kafka consumer of firehose asks of the cluster about the topics it reads,
 * written once: how many partitions a topic has, and a partition's watermarks, asked again while a
 * leader moves or a topic is still being created. */
#ifndef FH_CONSUMER_H
#define FH_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "fh_error.h"
#include "fh_loop.h"

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

/* A consumer queue watched on a thread's fh_loop: an eventfd of its own, written by q when it
 * becomes non-empty (fh_consumer_wake_on), is a watch whose callback reads it and calls fn(arg)
 * on the loop's thread (fn NULL: the wake-up alone, the caller polls in a hook). Memory the caller
 * owns and keeps in place while watched (embed it in the handle). */
typedef struct fh_consumer_watch {
    fh_loop_io io;       /* io.fd is the eventfd, owned; -1 when not started */
    rd_kafka_queue_t *q; /* borrowed */
    void (*fn)(void *arg);
    void *arg;
} fh_consumer_watch;

/* Makes w->io.fd -1, so fh_consumer_watch_stop is safe before (or without) fh_consumer_watch. */
void fh_consumer_watch_init(fh_consumer_watch *w);
/* Creates the eventfd, watches it on l and has q write it. FH_ERR_IO when it cannot (errbuf
 * says why; call fh_consumer_watch_stop to undo what was made). */
fh_err fh_consumer_watch_start(fh_consumer_watch *w, fh_loop *l, rd_kafka_queue_t *q,
                               void (*fn)(void *arg), void *arg, char *errbuf, size_t errsize);
/* Stops q writing, unwatches (l may be NULL when the loop is gone) and closes the eventfd. Call
 * before q is destroyed. Safe on a watch never started or already stopped. */
void fh_consumer_watch_stop(fh_consumer_watch *w, fh_loop *l);

#endif
