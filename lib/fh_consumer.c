#include "fh_consumer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fh_util.h"

static int cmp_id(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A metadata error that goes away by itself: the topic is being created, or its leaders are being
 * elected (a new topic on a cluster, or metadata that has not reached the node asked yet). */
static int passing_error(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
           e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

static void pause_200ms(void)
{
    struct timespec pause = {0, 200 * 1000000L};
    nanosleep(&pause, NULL);
}

fh_err fh_consumer_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int32_t *ids,
                              int cap, int *n, char *errbuf, size_t errsize)
{
    int64_t until = fh_now_ms() + timeout_ms;
    *n = 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "topic %s: %s", topic,
                       rd_kafka_err2str(rd_kafka_last_error()));
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = until - fh_now_ms();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, left > 100 ? (int)left : 100);
        if (!e && (!md || md->topic_cnt != 1))
            e = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (!e)
            e = md->topics[0].err;
        int count = e ? 0 : md->topics[0].partition_cnt;
        if (!e && count > 0) {
            int k = count < cap ? count : cap;
            for (int i = 0; i < k; i++)
                ids[i] = md->topics[0].partitions[i].id;
            rd_kafka_metadata_destroy(md);
            rd_kafka_topic_destroy(rkt);
            qsort(ids, (size_t)k, sizeof(*ids), cmp_id);
            *n = count;
            return FH_OK;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if ((e && !passing_error(e)) || fh_now_ms() + 200 >= until) {
            rd_kafka_topic_destroy(rkt);
            return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "metadata of %s: %s", topic,
                           e ? rd_kafka_err2str(e) : "no partitions");
        }
        pause_200ms(); /* being created, or its leaders elected: ask again */
    }
}

rd_kafka_resp_err_t fh_consumer_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                           int64_t *lo, int64_t *hi, int budget_ms)
{
    int64_t until = fh_now_ms() + budget_ms;
    for (;;) {
        int64_t left = until - fh_now_ms();
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi,
                                                                 left > 100 ? (int)left : 100);
        if (!passing_error(e) || fh_now_ms() + 200 >= until)
            return e;
        pause_200ms();
    }
}

void fh_consumer_wake_on(rd_kafka_queue_t *q, int efd)
{
    static const uint64_t one = 1;
    if (efd < 0)
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
    else
        rd_kafka_queue_io_event_enable(q, efd, &one, sizeof(one));
}

void fh_consumer_watch_init(fh_consumer_watch *w)
{
    memset(w, 0, sizeof(*w));
    w->io.fd = -1;
}

static void on_queue(fh_loop *l, fh_loop_io *io, unsigned what)
{
    fh_consumer_watch *w = io->arg;
    uint64_t n;
    ssize_t r = read(io->fd, &n, sizeof(n));
    (void)l;
    (void)what;
    (void)r; /* EAGAIN: another pass read it already */
    if (w->fn)
        w->fn(w->arg);
}

fh_err fh_consumer_watch_start(fh_consumer_watch *w, fh_loop *l, rd_kafka_queue_t *q,
                               void (*fn)(void *arg), void *arg, char *errbuf, size_t errsize)
{
    fh_consumer_watch_init(w);
    w->q = q;
    w->fn = fn;
    w->arg = arg;
    w->io = (fh_loop_io){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = on_queue, .arg = w};
    if (w->io.fd < 0)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "consumer queue: eventfd: %s", strerror(errno));
    if (fh_loop_watch(l, &w->io, FH_LOOP_READ) != FH_OK)
        return fh_errf(errbuf, errsize, FH_ERR_IO, "consumer queue: cannot watch its eventfd: %s",
                       strerror(errno));
    fh_consumer_wake_on(q, w->io.fd);
    return FH_OK;
}

void fh_consumer_watch_stop(fh_consumer_watch *w, fh_loop *l)
{
    if (w->io.fd < 0)
        return;
    if (w->q)
        fh_consumer_wake_on(w->q, -1);
    if (l)
        fh_loop_unwatch(l, &w->io);
    close(w->io.fd);
    w->io.fd = -1;
    w->q = NULL;
}
