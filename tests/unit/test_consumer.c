/* fh_consumer against librdkafka's in-process mock cluster: partition ids in order (and the count
 * past the caller's room), watermarks after producing, a refused topic named in the error, and the
 * queue's wake-up written to an eventfd as 8 bytes. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fh_consumer.h"
#include "fh_test.h"

typedef struct mock {
    rd_kafka_t *owner, *rk;
    rd_kafka_mock_cluster_t *mc;
} mock;

static rd_kafka_t *client(const char *bootstrap, rd_kafka_type_t type)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "fh-consumer-test", err, sizeof(err));
    rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    return rd_kafka_new(type, conf, err, sizeof(err));
}

static int mock_start(mock *m)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    memset(m, 0, sizeof(*m));
    if (!(m->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) ||
        !(m->mc = rd_kafka_mock_cluster_new(m->owner, 1)))
        return -1;
    rd_kafka_mock_topic_create(m->mc, "t.events", 3, 1);
    m->rk = client(rd_kafka_mock_cluster_bootstraps(m->mc), RD_KAFKA_CONSUMER);
    return m->rk ? 0 : -1;
}

static void mock_stop(mock *m)
{
    if (m->rk) {
        rd_kafka_consumer_close(m->rk);
        rd_kafka_destroy(m->rk);
    }
    if (m->mc)
        rd_kafka_mock_cluster_destroy(m->mc);
    if (m->owner)
        rd_kafka_destroy(m->owner);
}

TEST(consumer_partitions_come_in_order_and_count_past_the_room)
{
    mock m;
    char err[256];
    int32_t ids[8];
    int n = -1;
    CHECK(mock_start(&m) == 0);
    CHECK(fh_consumer_partitions(m.rk, "t.events", 5000, ids, 8, &n, err, sizeof(err)) == FH_OK);
    CHECK(n == 3 && ids[0] == 0 && ids[1] == 1 && ids[2] == 2);
    n = -1;
    CHECK(fh_consumer_partitions(m.rk, "t.events", 5000, ids, 2, &n, err, sizeof(err)) == FH_OK);
    CHECK(n == 3); /* the caller sees it had too little room */
    /* a topic the cluster refuses (the mock creates unknown topics on the fly, so refuse one) */
    rd_kafka_mock_topic_set_error(m.mc, "t.denied", RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    CHECK(fh_consumer_partitions(m.rk, "t.denied", 2000, ids, 8, &n, err, sizeof(err)) ==
          FH_ERR_KAFKA);
    CHECK(n == 0 && strstr(err, "t.denied"));
    mock_stop(&m);
}

static void produce(mock *m, int partition, int n)
{
    rd_kafka_t *p = client(rd_kafka_mock_cluster_bootstraps(m->mc), RD_KAFKA_PRODUCER);
    CHECK(p != NULL);
    for (int i = 0; p && i < n; i++)
        CHECK(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("t.events"), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_END) == 0);
    if (p) {
        CHECK(rd_kafka_flush(p, 10000) == 0);
        rd_kafka_destroy(p);
    }
}

TEST(consumer_wake_writes_eight_bytes_to_an_eventfd)
{
    /* records fetched into the consumer queue must wake a reader polling the eventfd; a payload
     * the eventfd refuses (not 8 bytes) would leave it asleep with records waiting */
    mock m;
    CHECK(mock_start(&m) == 0);
    produce(&m, 1, 3);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(efd >= 0);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(m.rk);
    fh_consumer_wake_on(q, efd);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "t.events", 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
    CHECK(rd_kafka_assign(m.rk, l) == 0);
    rd_kafka_topic_partition_list_destroy(l);
    struct pollfd pfd = {.fd = efd, .events = POLLIN};
    int ready = poll(&pfd, 1, 10000);
    uint64_t v = 0;
    ssize_t r = read(efd, &v, sizeof(v));
    CHECK(ready == 1 && r == 8 && v >= 1);
    rd_kafka_message_t *msg = rd_kafka_consume_queue(q, 5000);
    CHECK(msg && !msg->err && msg->offset == 0);
    if (msg)
        rd_kafka_message_destroy(msg);
    fh_consumer_wake_on(q, -1);
    rd_kafka_queue_destroy(q);
    close(efd);
    mock_stop(&m);
}

static void count_wake(void *arg)
{
    ++*(int *)arg;
}

TEST(consumer_watch_wakes_a_loop_for_fetched_records)
{
    /* a thread sleeping in its loop must be woken by records reaching the consumer queue, and
     * the watch must come apart cleanly (ASan: nothing left open or watched) */
    mock m;
    char err[256];
    CHECK(mock_start(&m) == 0);
    produce(&m, 2, 2);
    fh_loop *l = NULL;
    CHECK(fh_loop_new(&l, 8, 2, err, sizeof(err)) == FH_OK);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(m.rk);
    fh_consumer_watch w;
    fh_consumer_watch_init(&w);
    fh_consumer_watch_stop(&w, l); /* never started: a no-op */
    int woken = 0;
    CHECK(fh_consumer_watch_start(&w, l, q, count_wake, &woken, err, sizeof(err)) == FH_OK);
    rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(pl, "t.events", 2)->offset = RD_KAFKA_OFFSET_BEGINNING;
    CHECK(rd_kafka_assign(m.rk, pl) == 0);
    rd_kafka_topic_partition_list_destroy(pl);
    for (int i = 0; i < 100 && !woken; i++)
        fh_loop_once(l, 100); /* 10 s at most */
    CHECK(woken >= 1);
    rd_kafka_message_t *msg = rd_kafka_consume_queue(q, 5000);
    CHECK(msg && !msg->err);
    if (msg)
        rd_kafka_message_destroy(msg);
    fh_consumer_watch_stop(&w, l);
    CHECK(w.io.fd == -1 && !w.io.watched);
    fh_consumer_watch_stop(&w, l); /* twice: a no-op */
    rd_kafka_queue_destroy(q);
    fh_loop_free(l);
    mock_stop(&m);
}

TEST(consumer_watermarks_follow_what_was_produced)
{
    mock m;
    CHECK(mock_start(&m) == 0);
    produce(&m, 1, 5);
    int64_t lo = -1, hi = -1;
    CHECK(fh_consumer_watermarks(m.rk, "t.events", 1, &lo, &hi, 5000) == 0);
    CHECK(lo == 0 && hi == 5);
    CHECK(fh_consumer_watermarks(m.rk, "t.events", 2, &lo, &hi, 5000) == 0);
    CHECK(lo == 0 && hi == 0);
    mock_stop(&m);
}
