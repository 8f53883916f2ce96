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
#include "fh_util.h"

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

/* ---- the consumer: policies, batches, wake-up, partitions added ------------------------------ */

static fh_consumer *open_consumer(mock *m, fh_consumer_policy policy, int efd)
{
    static const char *const defaults[] = {"log_level=0", "enable.auto.commit=false",
                                           "auto.offset.reset=earliest", NULL};
    char err[256];
    fh_consumer_opts o = {.policy = policy,
                          .bootstrap = rd_kafka_mock_cluster_bootstraps(m->mc),
                          .defaults = defaults,
                          .group = "fh-consumer-test-2",
                          .check_ms = 700,
                          .wake_fd = efd};
    fh_consumer *k = NULL;
    CHECK(fh_consumer_new(NULL, &o, &k, err, sizeof(err)) == FH_OK);
    return k;
}

/* Reads records from k until want arrived or 10 s passed; returns how many, offsets of the
 * partition `part` in offs (at most 16). */
static int read_records(fh_consumer *k, int want, int part, int64_t *offs, int *nother)
{
    rd_kafka_message_t *msgs[8];
    int got = 0, noffs = 0;
    *nother = 0;
    for (int64_t until = fh_now_ms() + 10000; got < want && fh_now_ms() < until;) {
        ssize_t n = fh_consumer_batch(k, 200, msgs, 8);
        for (ssize_t i = 0; i < n; i++) {
            if (!msgs[i]->err) {
                got++;
                if (msgs[i]->partition == part && noffs < 16)
                    offs[noffs++] = msgs[i]->offset;
                else if (msgs[i]->partition != part)
                    (*nother)++;
            }
            rd_kafka_message_destroy(msgs[i]);
        }
    }
    return got;
}

TEST(consumer_group_policy_subscribes_refreshes_metadata_and_batches)
{
    /* the group learns of new partitions by librdkafka's metadata refresh: the check interval */
    mock m;
    int64_t offs[16];
    int other;
    char err[256], v[64];
    size_t vlen = sizeof(v);
    const char *topics[] = {"t.events"};
    CHECK(mock_start(&m) == 0);
    produce(&m, 2, 4);
    fh_consumer *k = open_consumer(&m, FH_CONSUMER_GROUP, -1);
    CHECK(k != NULL);
    if (!k)
        return mock_stop(&m);
    CHECK(rd_kafka_conf_get(rd_kafka_conf(k->rk), "topic.metadata.refresh.interval.ms", v, &vlen) ==
          RD_KAFKA_CONF_OK);
    CHECK_STR(v, "700");
    CHECK(fh_consumer_subscribe(k, topics, 1, err, sizeof(err)) == FH_OK);
    CHECK(read_records(k, 4, 2, offs, &other) == 4);
    CHECK(other == 0 && offs[0] == 0 && offs[3] == 3);
    int added = -1;
    CHECK(fh_consumer_check(k, 1, 2000, NULL, NULL, &added, err, sizeof(err)) == FH_OK);
    CHECK(added == 0); /* nothing for a group to do */
    fh_consumer_free(k);
    mock_stop(&m);
}

TEST(consumer_offsets_policy_starts_at_the_callers_offsets)
{
    mock m;
    int64_t offs[16];
    int other;
    char err[256];
    CHECK(mock_start(&m) == 0);
    produce(&m, 1, 5);
    fh_consumer *k = open_consumer(&m, FH_CONSUMER_OFFSETS, -1);
    CHECK(k != NULL);
    if (!k)
        return mock_stop(&m);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "t.events", 1)->offset = 3;
    CHECK(fh_consumer_assign(k, l, err, sizeof(err)) == FH_OK);
    rd_kafka_topic_partition_list_destroy(l);
    CHECK(k->ntopics == 1 && k->known[0] == 2); /* partitions 0 and 1 count as known */
    CHECK(read_records(k, 2, 1, offs, &other) == 2);
    CHECK(other == 0 && offs[0] == 3 && offs[1] == 4);
    fh_consumer_free(k);
    mock_stop(&m);
}

TEST(consumer_position_policy_from_end_beginning_and_offset)
{
    mock m;
    int64_t offs[16];
    int other;
    char err[256];
    const char *topics[] = {"t.events"};
    rd_kafka_topic_partition_list_t *out = NULL;
    CHECK(mock_start(&m) == 0);
    produce(&m, 0, 3);
    /* the end: offsets resolved to the high watermarks, and only newer records are read */
    fh_consumer *k = open_consumer(&m, FH_CONSUMER_POSITION, -1);
    CHECK(k && fh_consumer_assign_from(k, topics, 1, 1, FH_CONSUMER_AT_END, 0, 5000, &out, err,
                                       sizeof(err)) == FH_OK);
    CHECK(out && out->cnt == 3 && out->elems[0].partition == 0 && out->elems[0].offset == 3 &&
          out->elems[1].offset == 0 && out->elems[2].offset == 0);
    if (out)
        rd_kafka_topic_partition_list_destroy(out);
    produce(&m, 0, 2);
    CHECK(read_records(k, 2, 0, offs, &other) == 2 && offs[0] == 3 && offs[1] == 4);
    fh_consumer_free(k);
    /* the beginning, and an offset */
    k = open_consumer(&m, FH_CONSUMER_POSITION, -1);
    CHECK(k && fh_consumer_assign_from(k, topics, 1, 1, FH_CONSUMER_AT_BEGINNING, 0, 5000, NULL,
                                       err, sizeof(err)) == FH_OK);
    CHECK(read_records(k, 5, 0, offs, &other) == 5 && offs[0] == 0 && offs[4] == 4);
    fh_consumer_free(k);
    k = open_consumer(&m, FH_CONSUMER_POSITION, -1);
    CHECK(k && fh_consumer_assign_from(k, topics, 1, 1, FH_CONSUMER_AT_OFFSET, 4, 5000, NULL, err,
                                       sizeof(err)) == FH_OK);
    CHECK(read_records(k, 1, 0, offs, &other) == 1 && offs[0] == 4);
    fh_consumer_free(k);
    mock_stop(&m);
}

/* The seam of discovery: the consumer knows partition 0 only, so partitions 1 and 2 are "added"
 * (librdkafka 2.0.2's mock cluster cannot add partitions to a topic; the real-Kafka case is
 * tests/integration/test_partitions_added.py). */
typedef struct seen {
    int n, refuse;
    int32_t parts[8];
} seen;

static int on_added(void *arg, const char *topic, int32_t partition, int64_t *offset)
{
    seen *s = arg;
    CHECK(strcmp(topic, "t.events") == 0 && *offset == RD_KAFKA_OFFSET_BEGINNING);
    if (s->refuse && partition == 2)
        return 1;
    if (s->n < 8)
        s->parts[s->n++] = partition;
    return 0;
}

TEST(consumer_check_assigns_added_partitions_from_their_beginning)
{
    mock m;
    int64_t offs[16];
    int other, added = -1;
    char err[256];
    seen s = {.refuse = 1};
    CHECK(mock_start(&m) == 0);
    produce(&m, 2, 3);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    fh_consumer *k = open_consumer(&m, FH_CONSUMER_OFFSETS, efd);
    CHECK(k != NULL);
    if (!k)
        return mock_stop(&m);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "t.events", 0)->offset = RD_KAFKA_OFFSET_END;
    CHECK(fh_consumer_assign(k, l, err, sizeof(err)) == FH_OK);
    rd_kafka_topic_partition_list_destroy(l);
    /* the owner refuses partition 2 this time: only 1 is assigned, 2 is offered again */
    CHECK(fh_consumer_check(k, 1, 5000, on_added, &s, &added, err, sizeof(err)) == FH_OK);
    CHECK(added == 1 && s.n == 1 && s.parts[0] == 1 && k->known[0] == 2);
    /* not due yet: no metadata request, nothing offered */
    CHECK(fh_consumer_check(k, 0, 5000, on_added, &s, &added, err, sizeof(err)) == FH_OK);
    CHECK(added == 0 && s.n == 1);
    s.refuse = 0;
    CHECK(fh_consumer_check(k, 1, 5000, on_added, &s, &added, err, sizeof(err)) == FH_OK);
    CHECK(added == 1 && s.n == 2 && s.parts[1] == 2 && k->known[0] == 3);
    /* its records, from offset 0, wake the owner through the eventfd */
    struct pollfd pfd = {.fd = efd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 10000) == 1);
    CHECK(read_records(k, 3, 2, offs, &other) == 3);
    CHECK(other == 0 && offs[0] == 0 && offs[2] == 2);
    /* the assignment grew: partitions 0, 1 and 2 */
    rd_kafka_topic_partition_list_t *a = NULL;
    CHECK(rd_kafka_assignment(k->rk, &a) == 0 && a && a->cnt == 3);
    if (a)
        rd_kafka_topic_partition_list_destroy(a);
    /* the same counts again add nothing */
    int counts[1] = {3};
    CHECK(fh_consumer_grow(k, counts, on_added, &s, &added, err, sizeof(err)) == FH_OK);
    CHECK(added == 0 && s.n == 2);
    fh_consumer_free(k);
    close(efd);
    mock_stop(&m);
}

TEST(consumer_assign_from_leaves_out_an_optional_topic_it_cannot_read)
{
    /* a topic past `required` that the cluster refuses is left out and named, the rest read */
    mock m;
    char err[256];
    const char *topics[] = {"t.events", "t.optional"};
    rd_kafka_topic_partition_list_t *out = NULL;
    CHECK(mock_start(&m) == 0);
    rd_kafka_mock_topic_set_error(m.mc, "t.optional", RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    fh_consumer *k = open_consumer(&m, FH_CONSUMER_POSITION, -1);
    CHECK(k && fh_consumer_assign_from(k, topics, 2, 1, FH_CONSUMER_AT_END, 0, 2000, &out, err,
                                       sizeof(err)) == FH_OK);
    CHECK(strstr(err, "t.optional") != NULL);
    CHECK(k && k->ntopics == 1 && strcmp(k->topics[0], "t.events") == 0 && k->known[0] == 3);
    CHECK(out && out->cnt == 3);
    if (out)
        rd_kafka_topic_partition_list_destroy(out);
    fh_consumer_free(k);
    /* required, it fails the call */
    k = open_consumer(&m, FH_CONSUMER_POSITION, -1);
    CHECK(k && fh_consumer_assign_from(k, topics, 2, 2, FH_CONSUMER_AT_END, 0, 2000, NULL, err,
                                       sizeof(err)) == FH_ERR_KAFKA);
    CHECK(strstr(err, "t.optional") != NULL);
    fh_consumer_free(k);
    mock_stop(&m);
}

TEST(consumer_counts_names_a_refused_topic)
{
    mock m;
    char err[256];
    int counts[2];
    CHECK(mock_start(&m) == 0);
    fh_consumer *k = open_consumer(&m, FH_CONSUMER_OFFSETS, -1);
    const char *topics[] = {"t.events", "t.denied"};
    CHECK(k && fh_consumer_assign_from(k, topics, 1, 1, FH_CONSUMER_AT_END, 0, 5000, NULL, err,
                                       sizeof(err)) == FH_OK);
    CHECK(fh_consumer_counts(k->rk, k, 2000, counts, err, sizeof(err)) == FH_OK && counts[0] == 3);
    rd_kafka_mock_topic_set_error(m.mc, "t.denied", RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    k->topics[k->ntopics] = strdup(topics[1]);
    k->known[k->ntopics++] = 0;
    CHECK(fh_consumer_counts(k->rk, k, 2000, counts, err, sizeof(err)) == FH_ERR_KAFKA);
    CHECK(strstr(err, "t.denied") != NULL);
    fh_consumer_free(k);
    mock_stop(&m);
}
