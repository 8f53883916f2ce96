#include "fh_consumer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fh_kafka.h"
#include "fh_log.h"
#include "fh_util.h"

static _Atomic long long prefetch_total;

long long fh_consumer_prefetch_bound(void)
{
    return atomic_load_explicit(&prefetch_total, memory_order_relaxed);
}

/* An integer property of rk's configuration, 0 when it has none. */
static long long conf_int(rd_kafka_t *rk, const char *name)
{
    char v[64];
    size_t size = sizeof(v);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), name, v, &size) != RD_KAFKA_CONF_OK)
        return 0;
    return strtoll(v, NULL, 10);
}

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

/* ---- the consumer ---------------------------------------------------------------------------- */

#define MAX_DEFAULTS 64

/* The index of topic in k's topics, added when new (-1 when there is no room). */
static int topic_index(fh_consumer *k, const char *topic)
{
    for (int t = 0; t < k->ntopics; t++)
        if (strcmp(k->topics[t], topic) == 0)
            return t;
    if (k->ntopics == FH_CONSUMER_MAX_TOPICS || !(k->topics[k->ntopics] = strdup(topic)))
        return -1;
    k->known[k->ntopics] = 0;
    return k->ntopics++;
}

static fh_err add_topics(fh_consumer *k, const char *const *topics, int n, char *errbuf,
                         size_t errsize)
{
    for (int i = 0; i < n; i++)
        if (topic_index(k, topics[i]) < 0)
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "more than %d topics (%s)",
                           FH_CONSUMER_MAX_TOPICS, topics[i]);
    return FH_OK;
}

/* librdkafka interceptors that give each of its threads fh_consumer_opts.thread_nice (the
 * interceptor's opaque, as an intptr_t): on_new adds on_thread_start to the new handle. */
static rd_kafka_resp_err_t thread_start_nice(rd_kafka_t *rk, rd_kafka_thread_type_t type,
                                             const char *name, void *opaque)
{
    (void)rk;
    (void)type;
    (void)name;
    (void)fh_thread_nice((int)(intptr_t)opaque);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t new_nice(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *opaque,
                                    char *errstr, size_t errstr_size)
{
    (void)conf;
    (void)errstr;
    (void)errstr_size;
    return rd_kafka_interceptor_add_on_thread_start(rk, "firehose.nice", thread_start_nice, opaque);
}

fh_err fh_consumer_new(const fh_config *c, const fh_consumer_opts *o, fh_consumer **out,
                       char *errbuf, size_t errsize)
{
    const char *defaults[MAX_DEFAULTS + 4];
    char refresh[96];
    rd_kafka_conf_t *conf = NULL;
    size_t nd = 0;
    fh_err rc;
    *out = NULL;
    fh_consumer *k = calloc(1, sizeof(*k));
    if (!k)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
    k->policy = o->policy;
    k->check_ms = o->check_ms > 0 ? o->check_ms : 5000;
    k->wake_fd = o->wake_fd;
    if ((rc = add_topics(k, o->topics, o->ntopics, errbuf, errsize)))
        goto err;
    /* A group learns of partitions added to its topics when librdkafka refreshes their metadata
     * (default every 5 minutes): first, so the caller's defaults and kafka.* keys can change it. */
    if (o->policy == FH_CONSUMER_GROUP) {
        snprintf(refresh, sizeof(refresh), "topic.metadata.refresh.interval.ms=%d", k->check_ms);
        defaults[nd++] = refresh;
    }
    /* librdkafka prefetches up to 64 MiB (plus a 50 MiB fetch) per consumer by default: every
     * consumer gets a small bound unless its caller's defaults or kafka.* keys give another */
    defaults[nd++] = "queued.max.messages.kbytes=" FH_CONSUMER_PREFETCH_KIB;
    defaults[nd++] = "fetch.max.bytes=" FH_CONSUMER_FETCH_BYTES;
    for (size_t i = 0; o->defaults && o->defaults[i] && nd < MAX_DEFAULTS; i++)
        defaults[nd++] = o->defaults[i];
    defaults[nd] = NULL;
    if ((rc = fh_kafka_conf(c, o->bootstrap, defaults, &conf, errbuf, errsize)))
        goto err;
    if ((o->group && rd_kafka_conf_set(conf, "group.id", o->group, errbuf, errsize)) ||
        (o->instance_id && *o->instance_id &&
         rd_kafka_conf_set(conf, "group.instance.id", o->instance_id, errbuf, errsize))) {
        rc = FH_ERR_CONFIG;
        goto err;
    }
    if (o->policy == FH_CONSUMER_GROUP)
        rd_kafka_conf_set_rebalance_cb(conf, o->rebalance ? o->rebalance : fh_kafka_rebalance_cb);
    if (o->error)
        rd_kafka_conf_set_error_cb(conf, o->error);
    rd_kafka_conf_set_opaque(conf, o->opaque);
    if (o->thread_nice && rd_kafka_conf_interceptor_add_on_new(conf, "firehose.nice", new_nice,
                                                               (void *)(intptr_t)o->thread_nice)) {
        rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "cannot add the thread interceptor");
        goto err;
    }
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize);
    conf = NULL; /* rd_kafka_new took it, or destroyed it on failure */
    if (!k->rk) {
        rc = FH_ERR_KAFKA;
        goto err;
    }
    k->prefetch_bound =
        conf_int(k->rk, "queued.max.messages.kbytes") * 1024 + conf_int(k->rk, "fetch.max.bytes");
    atomic_fetch_add_explicit(&prefetch_total, k->prefetch_bound, memory_order_relaxed);
    if (o->errors_with_records)
        rd_kafka_poll_set_consumer(k->rk);
    /* a consumer without a subscription still has a consumer queue to read from */
    k->q = rd_kafka_queue_get_consumer(k->rk);
    if (k->wake_fd >= 0)
        fh_consumer_wake_on(k->q, k->wake_fd);
    *out = k;
    return FH_OK;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    fh_consumer_free(k);
    return rc;
}

fh_err fh_consumer_subscribe(fh_consumer *k, const char *const *topics, int n, char *errbuf,
                             size_t errsize)
{
    fh_err rc = add_topics(k, topics, n, errbuf, errsize);
    if (rc)
        return rc;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "subscribe: %s", rd_kafka_err2str(e));
    return FH_OK;
}

fh_err fh_consumer_assign(fh_consumer *k, const rd_kafka_topic_partition_list_t *l, char *errbuf,
                          size_t errsize)
{
    rd_kafka_topic_partition_list_t *copy = l ? rd_kafka_topic_partition_list_copy(l) : NULL;
    rd_kafka_resp_err_t e = rd_kafka_assign(k->rk, copy && copy->cnt ? copy : NULL);
    for (int i = 0; !e && copy && i < copy->cnt; i++) {
        int t = topic_index(k, copy->elems[i].topic);
        if (t >= 0 && copy->elems[i].partition + 1 > k->known[t])
            k->known[t] = copy->elems[i].partition + 1;
    }
    if (copy)
        rd_kafka_topic_partition_list_destroy(copy);
    if (e)
        return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "assign: %s", rd_kafka_err2str(e));
    return FH_OK;
}

/* The offsets of l's partitions at from (arg: offset or time), resolved as assign_from says. */
static fh_err resolve_from(fh_consumer *k, rd_kafka_topic_partition_list_t *l,
                           fh_consumer_from from, int64_t arg, int timeout_ms, char *errbuf,
                           size_t errsize)
{
    if (from == FH_CONSUMER_AT_TIME) {
        for (int i = 0; i < l->cnt; i++)
            l->elems[i].offset = arg;
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(k->rk, l, timeout_ms);
        if (e)
            return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "offsets for times: %s",
                           rd_kafka_err2str(e));
    }
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *p = &l->elems[i];
        if (from == FH_CONSUMER_AT_BEGINNING) {
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
        } else if (from == FH_CONSUMER_AT_OFFSET) {
            p->offset = arg;
        } else if (from == FH_CONSUMER_AT_END || p->offset < 0) {
            int64_t lo, hi;
            rd_kafka_resp_err_t e =
                fh_consumer_watermarks(k->rk, p->topic, p->partition, &lo, &hi, timeout_ms);
            if (e)
                return fh_errf(errbuf, errsize, FH_ERR_KAFKA, "watermarks of %s/%d: %s", p->topic,
                               (int)p->partition, rd_kafka_err2str(e));
            p->offset = hi;
        }
    }
    return FH_OK;
}

#define MAX_IDS 4096 /* partitions of one topic assign_from takes on */

fh_err fh_consumer_assign_from(fh_consumer *k, const char *const *topics, int n, int required,
                               fh_consumer_from from, int64_t arg, int timeout_ms,
                               rd_kafka_topic_partition_list_t **out, char *errbuf, size_t errsize)
{
    int32_t *ids = malloc(MAX_IDS * sizeof(*ids));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    char skipped[512] = "";
    fh_err rc = ids ? FH_OK : FH_ERR_NOMEM;
    for (int t = 0; !rc && t < n; t++) {
        int count = 0;
        rc = fh_consumer_partitions(k->rk, topics[t], timeout_ms, ids, MAX_IDS, &count, errbuf,
                                    errsize);
        if (rc && t >= required) {
            snprintf(skipped, sizeof(skipped), "%s", errbuf); /* optional: left out */
            rc = FH_OK;
            continue;
        }
        if (!rc)
            rc = add_topics(k, &topics[t], 1, errbuf, errsize);
        if (!rc && count > MAX_IDS)
            rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "%s has more than %d partitions", topics[t],
                         MAX_IDS);
        for (int i = 0; !rc && i < count; i++)
            rd_kafka_topic_partition_list_add(l, topics[t], ids[i]);
    }
    if (!rc)
        rc = resolve_from(k, l, from, arg, timeout_ms, errbuf, errsize);
    if (!rc)
        rc = fh_consumer_assign(k, l, errbuf, errsize);
    if (!rc)
        snprintf(errbuf, errsize, "%s", skipped);
    free(ids);
    if (!rc && out)
        *out = l;
    else
        rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* ---- partitions added at run time ------------------------------------------------------------ */

fh_err fh_consumer_counts(rd_kafka_t *rk, const fh_consumer *k, int timeout_ms, int *counts,
                          char *errbuf, size_t errsize)
{
    for (int t = 0; t < k->ntopics; t++) {
        int32_t first;
        fh_err rc = fh_consumer_partitions(rk, k->topics[t], timeout_ms, &first, 1, &counts[t],
                                           errbuf, errsize);
        if (rc)
            return rc;
    }
    return FH_OK;
}

fh_err fh_consumer_grow(fh_consumer *k, const int *counts, fh_consumer_added_fn added, void *arg,
                        int *nadded, char *errbuf, size_t errsize)
{
    int upto[FH_CONSUMER_MAX_TOPICS];
    *nadded = 0;
    if (k->policy == FH_CONSUMER_GROUP)
        return FH_OK; /* the group's metadata refresh sees them, and rebalances */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int t = 0; t < k->ntopics; t++) {
        /* partition ids are 0..count-1: the new ones follow the known ones */
        for (upto[t] = k->known[t]; upto[t] < counts[t]; upto[t]++) {
            int64_t off = RD_KAFKA_OFFSET_BEGINNING;
            if (added && added(arg, k->topics[t], upto[t], &off))
                break; /* offered again at the next check */
            rd_kafka_topic_partition_list_add(l, k->topics[t], upto[t])->offset = off;
        }
    }
    fh_err rc = FH_OK;
    if (l->cnt) {
        rd_kafka_error_t *e = rd_kafka_incremental_assign(k->rk, l);
        if (e) {
            rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "assigning new partitions: %s",
                         rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        } else {
            for (int t = 0; t < k->ntopics; t++) {
                if (upto[t] > k->known[t] && k->known[t] > 0) /* not the first take-on */
                    fh_log(FH_LOG_INFO, "kafka.partitions_added",
                           "client=%s topic=%s first=%d last=%d", rd_kafka_name(k->rk),
                           k->topics[t], k->known[t], upto[t] - 1);
                k->known[t] = upto[t];
            }
            *nadded = l->cnt;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

fh_err fh_consumer_check(fh_consumer *k, int force, int timeout_ms, fh_consumer_added_fn added,
                         void *arg, int *nadded, char *errbuf, size_t errsize)
{
    int counts[FH_CONSUMER_MAX_TOPICS];
    int64_t now = fh_now_ms();
    *nadded = 0;
    if (k->policy == FH_CONSUMER_GROUP || (!force && now < k->next_check_ms))
        return FH_OK;
    k->next_check_ms = now + k->check_ms;
    fh_err rc = fh_consumer_counts(k->rk, k, timeout_ms, counts, errbuf, errsize);
    return rc ? rc : fh_consumer_grow(k, counts, added, arg, nadded, errbuf, errsize);
}

ssize_t fh_consumer_batch(fh_consumer *k, int timeout_ms, rd_kafka_message_t **out, size_t cap)
{
    return rd_kafka_consume_batch_queue(k->q, timeout_ms, out, cap);
}

void fh_consumer_close(fh_consumer *k)
{
    if (!k || k->closed)
        return;
    k->closed = 1;
    if (k->q && k->wake_fd >= 0)
        fh_consumer_wake_on(k->q, -1);
    if (k->rk)
        rd_kafka_consumer_close(k->rk);
}

void fh_consumer_free(fh_consumer *k)
{
    if (!k)
        return;
    fh_consumer_close(k);
    if (k->q)
        rd_kafka_queue_destroy(k->q);
    if (k->rk)
        rd_kafka_destroy(k->rk);
    atomic_fetch_sub_explicit(&prefetch_total, k->prefetch_bound, memory_order_relaxed);
    for (int t = 0; t < k->ntopics; t++)
        free(k->topics[t]);
    free(k);
}
