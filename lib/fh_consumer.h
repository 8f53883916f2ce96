/* fh_consumer: every Kafka consumer of firehose, written once: creating it from the config, its
 * assignment policy, partitions added to its topics at run time, the wake-up of its owner's loop,
 * batches, and closing it; and what consumers ask of the cluster about the topics they read (how
 * many partitions a topic has, a partition's watermarks), asked again while a leader moves or a
 * topic is still being created. */
#ifndef FH_CONSUMER_H
#define FH_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include <sys/types.h>

#include "fh_config.h"
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

/* ---- the consumer itself ---------------------------------------------------------------------
 *
 * Every Kafka consumer of firehose is made, assigned, read and closed through these calls, in one
 * of three assignment policies:
 *  - group: subscribe to topics; the group assigns partitions (the rebalance callback, by default
 *    fh_kafka_rebalance_cb). Partitions added to the topics reach the group through librdkafka's
 *    metadata refresh, which fh_consumer_new sets to the partition check interval.
 *  - offsets: manual assignment at offsets the caller keeps (the view's SQLite positions).
 *  - position: manual assignment from a position: the end, the beginning, an offset or a time.
 * For both manual policies fh_consumer_check finds partitions added to the topics since the last
 * check and assigns them from their beginning (everything in a new partition is new). */

#define FH_CONSUMER_MAX_TOPICS 4

/* The config key of the partition check interval (the broker lists it in its table). */
#define FH_CONSUMER_CFG                                                                            \
    {                                                                                              \
        "kafka.partition_check_ms", NULL, FH_CFG_INT, "5000", 100, 3600000,                        \
            "how often the broker's consumers look for partitions added to their topics (manual "  \
            "assignment: a check; consumer groups: librdkafka's metadata refresh interval)"        \
    }

typedef enum fh_consumer_policy {
    FH_CONSUMER_GROUP,
    FH_CONSUMER_OFFSETS,
    FH_CONSUMER_POSITION,
} fh_consumer_policy;

/* Where a position-assigned consumer starts. */
typedef enum fh_consumer_from {
    FH_CONSUMER_AT_END,       /* the high watermark when assigned (the offsets are resolved) */
    FH_CONSUMER_AT_BEGINNING, /* the oldest record Kafka keeps */
    FH_CONSUMER_AT_OFFSET,    /* the given offset in every partition */
    FH_CONSUMER_AT_TIME,      /* the first record at or after the given time (ms); none: the end */
} fh_consumer_from;

typedef void (*fh_consumer_rebalance_fn)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                         rd_kafka_topic_partition_list_t *parts, void *opaque);
typedef void (*fh_consumer_error_fn)(rd_kafka_t *rk, int err, const char *reason, void *opaque);

typedef struct fh_consumer_opts {
    fh_consumer_policy policy;
    const char *bootstrap;
    const char *const *defaults; /* "prop=value", NULL-terminated; kafka.* keys override them */
    const char *group;           /* group.id (manual policies need one to assign), or NULL */
    const char *instance_id;     /* group.instance.id (static membership), or NULL / "" */
    fh_consumer_rebalance_fn rebalance; /* group policy; NULL: fh_kafka_rebalance_cb */
    fh_consumer_error_fn error;         /* NULL: librdkafka logs errors */
    void *opaque;                       /* the callbacks' opaque */
    int check_ms;                       /* partition check interval; <= 0: 5000 */
    int wake_fd; /* eventfd or pipe written when the queue becomes non-empty; -1: none */
    /* 1: errors and logs join the records on the consumer queue (rd_kafka_poll_set_consumer);
     * 0: they stay on librdkafka's main queue */
    int errors_with_records;
    /* manual policies: the topics fh_consumer_check watches (assign and assign_from add theirs) */
    const char *const *topics;
    int ntopics;
    /* 0: librdkafka's threads of this consumer run at the process's niceness; else each gives
     * itself this niceness as it starts (fh_thread_nice; a refusal leaves it as it was). Its
     * fetches then wait less behind other work, as the thread that reads its queue may. */
    int thread_nice;
} fh_consumer_opts;

typedef struct fh_consumer {
    rd_kafka_t *rk;      /* owned; the caller may use it for anything but destroying it */
    rd_kafka_queue_t *q; /* the consumer queue, where records, errors and logs arrive */
    fh_consumer_policy policy;
    int ntopics;
    char *topics[FH_CONSUMER_MAX_TOPICS];
    int known[FH_CONSUMER_MAX_TOPICS]; /* manual: partitions 0..known-1 of each topic assigned */
    int check_ms;
    int64_t next_check_ms;
    int wake_fd;
    int closed;
    long long prefetch_bound; /* counted in fh_consumer_prefetch_bound while it is open */
} fh_consumer;

/* The prefetch every consumer gets unless its defaults or kafka.* keys say otherwise
 * (queued.max.messages.kbytes, fetch.max.bytes): librdkafka's own are 64 MiB and 50 MiB. */
#define FH_CONSUMER_PREFETCH_KIB "4096"
#define FH_CONSUMER_FETCH_BYTES "2097152"

/* Creates a consumer: fh_kafka_conf(c, o->bootstrap, o->defaults), then group.id, the callbacks,
 * the metadata refresh (group policy), the prefetch bound (FH_CONSUMER_PREFETCH_KIB), the
 * consumer queue and its wake-up. *out is the caller's
 * (fh_consumer_free). FH_ERR_CONFIG on a bad property, FH_ERR_KAFKA when librdkafka refuses. */
fh_err fh_consumer_new(const fh_config *c, const fh_consumer_opts *o, fh_consumer **out,
                       char *errbuf, size_t errsize);

/* What librdkafka may hold prefetched for the consumers open now, summed: for each, its
 * queued.max.messages.kbytes plus one fetch response (fetch.max.bytes), as configured. A bound,
 * not what is queued at the moment (librdkafka reports that only in its statistics). Any
 * thread. */
long long fh_consumer_prefetch_bound(void);

/* Group policy: subscribes to topics[0..n). */
fh_err fh_consumer_subscribe(fh_consumer *k, const char *const *topics, int n, char *errbuf,
                             size_t errsize);

/* Offsets policy (and any manual re-assignment): assigns exactly l (the caller's offsets; NULL
 * or empty: nothing), replacing the assignment. Partitions of l's topics count as known to
 * fh_consumer_check from now on. */
fh_err fh_consumer_assign(fh_consumer *k, const rd_kafka_topic_partition_list_t *l, char *errbuf,
                          size_t errsize);

/* Position policy: assigns every partition of topics[0..n) from `from` (arg: the offset or the
 * time in ms). topics[required..n) are optional: one whose metadata fails (it does not exist) is
 * left out, its error in errbuf although the call succeeds (errbuf is "" when nothing was left
 * out); only the topics taken on are the consumer's. When out is not NULL it gets the assigned
 * list, topic by topic in the order given, with concrete offsets for FH_CONSUMER_AT_END and
 * FH_CONSUMER_AT_TIME (the caller destroys it). Waits at most timeout_ms for metadata and
 * watermarks. */
fh_err fh_consumer_assign_from(fh_consumer *k, const char *const *topics, int n, int required,
                               fh_consumer_from from, int64_t arg, int timeout_ms,
                               rd_kafka_topic_partition_list_t **out, char *errbuf, size_t errsize);

/* Called for each partition fh_consumer_check is about to assign, before it is: *offset is where
 * it starts (RD_KAFKA_OFFSET_BEGINNING unless changed). Returns 0 to assign it, non-zero to leave
 * it out (it is offered again at the next check). */
typedef int (*fh_consumer_added_fn)(void *arg, const char *topic, int32_t partition,
                                    int64_t *offset);

/* The partition counts of the consumer's topics now (counts[0..ntopics)), from a metadata request
 * through rk (any handle, so another thread may ask; at most timeout_ms). */
fh_err fh_consumer_counts(rd_kafka_t *rk, const fh_consumer *k, int timeout_ms, int *counts,
                          char *errbuf, size_t errsize);

/* Manual policies: assigns (incrementally) the partitions counts[] names beyond what is known,
 * asking added first; *nadded gets how many were assigned. Group policy: nothing to do. */
fh_err fh_consumer_grow(fh_consumer *k, const int *counts, fh_consumer_added_fn added, void *arg,
                        int *nadded, char *errbuf, size_t errsize);

/* fh_consumer_counts then fh_consumer_grow, at most once per check interval (force: now). Blocks
 * for the metadata request (timeout_ms at most). */
fh_err fh_consumer_check(fh_consumer *k, int force, int timeout_ms, fh_consumer_added_fn added,
                         void *arg, int *nadded, char *errbuf, size_t errsize);

/* Up to cap records (or errors) from the consumer queue into out, waiting at most timeout_ms for
 * the first. Returns how many (the caller destroys each), or -1. */
ssize_t fh_consumer_batch(fh_consumer *k, int timeout_ms, rd_kafka_message_t **out, size_t cap);

/* Turns the wake-up off and closes the consumer (leaving its group; the rebalance callback runs
 * the last revoke), for an owner with work between closing and destroying. Once only. */
void fh_consumer_close(fh_consumer *k);

/* Turns the wake-up off, closes the consumer (unless fh_consumer_close did) (leaving its group,
 * committing what the defaults say) and destroys it. NULL is fine. */
void fh_consumer_free(fh_consumer *k);

#endif
