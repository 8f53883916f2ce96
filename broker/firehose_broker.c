/* firehose-broker: consumes the event topics and, for now, counts what it sees per type.
 * Malformed records go to the dead-letter topic with the reason. With kafka.brokers=embedded it
 * starts librdkafka's in-memory mock cluster first and says where it listens. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_config.h"
#include "fh_event.h"
#include "fh_kafka.h"
#include "fh_log.h"
#include "fh_util.h"

static const fh_cfg_opt broker_opts[] = {
    FH_CFG_COMMON,
    {"kafka.group", "group", FH_CFG_STR, "firehose-broker", 0, 0, "consumer group id"},
    {"topics.partitions", NULL, FH_CFG_INT, "6", 1, 10000,
     "partitions of each topic the broker creates (embedded, or topics.create on a real cluster)"},
    {"topics.create", NULL, FH_CFG_BOOL, "true", 0, 0,
     "create missing topics on a real cluster at start-up"},
    {"topics.replication", NULL, FH_CFG_INT, "1", 1, 16, "replication factor of created topics"},
    {"broker.stats_interval_ms", NULL, FH_CFG_INT, "5000", 100, 3600000,
     "how often the per-type counts are logged (when they changed)"},
};

static const char *const consumer_defaults[] = {
    "enable.auto.commit=true", "enable.auto.offset.store=false", "auto.offset.reset=earliest",
    "log_level=4", NULL,
};
static const char *const producer_defaults[] = {
    "enable.idempotence=true", "acks=all", "linger.ms=5", "log_level=4", NULL,
};

static volatile sig_atomic_t run = 1;

static void on_signal(int sig)
{
    (void)sig;
    run = 0;
}

typedef struct broker {
    fh_config cfg;
    fh_contract *contract;
    fh_kafka_embedded *embedded;
    rd_kafka_t *consumer, *producer;
    char bootstrap[512];
    long long counts[FH_EV__COUNT], total, dlq, dlq_failed;
    long long logged_total, logged_dlq;
    size_t max_bytes;
} broker;

static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    broker *b = opaque;
    (void)rk;
    if (m->err) {
        b->dlq_failed++;
        fh_log(FH_LOG_ERROR, "dlq.failed", "error=\"%s\"", rd_kafka_err2str(m->err));
    } else {
        b->dlq++;
    }
}

static void log_counts(broker *b, const char *event)
{
    char line[2048];
    size_t o = 0;
    for (int t = 0; t < FH_EV__COUNT; t++) {
        if (!b->counts[t])
            continue;
        int n = snprintf(line + o, sizeof(line) - o, " %s=%lld", fh_event_type_name(t),
                         b->counts[t]);
        if (n < 0 || (size_t)n >= sizeof(line) - o)
            break;
        o += (size_t)n;
    }
    line[o] = '\0';
    fh_log(FH_LOG_INFO, event, "total=%lld dlq=%lld%s", b->total, b->dlq, line);
    b->logged_total = b->total;
    b->logged_dlq = b->dlq;
}

/* Hands a rejected record to the dead-letter topic and waits for it to be durable there, so its
 * offset is stored only once the record is safe (invalid records are rare; the wait is cheap).
 * Returns 0 when delivered. */
static int send_to_dlq(broker *b, const rd_kafka_message_t *m, const char *reason)
{
    long long failed_before = b->dlq_failed;
    char part[16], off[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    snprintf(part, sizeof(part), "%d", m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "firehose-error", -1, reason, -1);
    rd_kafka_header_add(h, "firehose-source-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(h, "firehose-source-partition", -1, part, -1);
    rd_kafka_header_add(h, "firehose-source-offset", -1, off, -1);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            b->producer, RD_KAFKA_V_TOPIC(fh_kafka_topic(&b->cfg, FH_TOPIC_DLQ)),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!err)
            break;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && run) {
            rd_kafka_poll(b->producer, 50);
            continue;
        }
        b->dlq_failed++;
        fh_log(FH_LOG_ERROR, "dlq.failed", "error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_headers_destroy(h);
        return -1;
    }
    if (rd_kafka_flush(b->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return b->dlq_failed == failed_before ? 0 : -1;
}

static void handle_message(broker *b, rd_kafka_message_t *m)
{
    char err[384], q[420];
    fh_event ev;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fh_log(FH_LOG_WARN, "kafka.consume", "error=%s",
                   fh_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
        return;
    }
    if (fh_event_decode(b->contract, m->payload, m->len, b->max_bytes, &ev, err, sizeof(err))) {
        fh_log(FH_LOG_WARN, "event.invalid", "topic=%s partition=%d offset=%lld reason=%s",
               rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), err));
        if (send_to_dlq(b, m, err))
            return; /* not stored: the record is consumed again after a restart */
    } else {
        b->counts[ev.type]++;
        b->total++;
        fh_event_clear(&ev);
    }
    rd_kafka_offset_store(m->rkt, m->partition, m->offset);
}

static int start_kafka(broker *b)
{
    char err[512];
    rd_kafka_conf_t *conf;
    const char *brokers = fh_config_str(&b->cfg, "kafka.brokers");
    int partitions = (int)fh_config_int(&b->cfg, "topics.partitions");

    if (strcmp(brokers, "embedded") == 0) {
        if (fh_kafka_embedded_start(&b->cfg, partitions, &b->embedded, err, sizeof(err))) {
            fh_log(FH_LOG_ERROR, "kafka.embedded", "error=\"%s\"", err);
            return -1;
        }
        snprintf(b->bootstrap, sizeof(b->bootstrap), "%s", fh_kafka_embedded_bootstrap(b->embedded));
        fh_log(FH_LOG_WARN, "kafka.embedded",
               "bootstrap=%s partitions=%d note=\"embedded Kafka (librdkafka mock cluster) keeps "
               "everything in memory: every event is lost when the broker stops; set "
               "kafka.brokers for a real cluster\"",
               b->bootstrap, partitions);
    } else {
        snprintf(b->bootstrap, sizeof(b->bootstrap), "%s", brokers);
    }

    if (fh_kafka_conf(&b->cfg, b->bootstrap, producer_defaults, &conf, err, sizeof(err)))
        goto conf_err;
    rd_kafka_conf_set_dr_msg_cb(conf, on_dlq_delivery);
    rd_kafka_conf_set_opaque(conf, b);
    if (!(b->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))))
        goto conf_err;
    if (!b->embedded && fh_config_bool(&b->cfg, "topics.create")) {
        if (fh_kafka_create_topics(b->producer, &b->cfg, partitions,
                                   (int)fh_config_int(&b->cfg, "topics.replication"), 15000, err,
                                   sizeof(err)))
            fh_log(FH_LOG_WARN, "kafka.topics", "error=\"%s\"", err);
    }

    if (fh_kafka_conf(&b->cfg, b->bootstrap, consumer_defaults, &conf, err, sizeof(err)))
        goto conf_err;
    if (rd_kafka_conf_set(conf, "group.id", fh_config_str(&b->cfg, "kafka.group"), err,
                          sizeof(err)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        goto conf_err;
    }
    rd_kafka_conf_set_rebalance_cb(conf, fh_kafka_rebalance_cb);
    if (!(b->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))))
        goto conf_err;
    rd_kafka_poll_set_consumer(b->consumer);

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, fh_kafka_topic(&b->cfg, FH_TOPIC_EVENTS),
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, fh_kafka_topic(&b->cfg, FH_TOPIC_LOGS),
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(b->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (serr) {
        fh_log(FH_LOG_ERROR, "kafka.subscribe", "error=\"%s\"", rd_kafka_err2str(serr));
        return -1;
    }
    fh_log(FH_LOG_INFO, "broker.ready", "bootstrap=%s events=%s logs=%s dlq=%s group=%s",
           b->bootstrap, fh_kafka_topic(&b->cfg, FH_TOPIC_EVENTS),
           fh_kafka_topic(&b->cfg, FH_TOPIC_LOGS), fh_kafka_topic(&b->cfg, FH_TOPIC_DLQ),
           fh_config_str(&b->cfg, "kafka.group"));
    return 0;
conf_err:
    fh_log(FH_LOG_ERROR, "kafka.config", "error=\"%s\"", err);
    return -1;
}

static void stop_kafka(broker *b)
{
    if (b->consumer) {
        rd_kafka_consumer_close(b->consumer);
        rd_kafka_destroy(b->consumer);
    }
    if (b->producer) {
        rd_kafka_flush(b->producer, 10000);
        rd_kafka_destroy(b->producer);
    }
    fh_kafka_embedded_stop(b->embedded);
}

int main(int argc, char **argv)
{
    static broker b;
    char err[512];
    int help, status = 0;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (fh_config_init(&b.cfg, "firehose-broker", "[OPTIONS]",
                       "Consumes the firehose topics and fans the events out. With no Kafka "
                       "configured it runs an embedded in-memory Kafka.",
                       broker_opts, sizeof(broker_opts) / sizeof(broker_opts[0])) ||
        fh_config_load(&b.cfg, argc, argv, &help, err, sizeof(err))) {
        fprintf(stderr, "firehose-broker: %s\n", err);
        return 64;
    }
    if (help) {
        help == 2 ? fh_config_markdown(&b.cfg, stdout) : fh_config_help(&b.cfg, stdout);
        fh_config_free(&b.cfg);
        return 0;
    }
    if (b.cfg.nargs) {
        fprintf(stderr, "firehose-broker: unexpected argument '%s' (see --help)\n", b.cfg.args[0]);
        fh_config_free(&b.cfg);
        return 64;
    }
    int level = fh_log_level_parse(fh_config_str(&b.cfg, "log.level"));
    fh_log_init("firehose-broker", level < 0 ? FH_LOG_INFO : (enum fh_log_level)level);
    b.max_bytes = (size_t)fh_config_int(&b.cfg, "events.max_bytes");
    if (fh_contract_load(&b.contract, err, sizeof(err))) {
        fh_log(FH_LOG_ERROR, "contract.load", "error=\"%s\"", err);
        status = 1;
        goto out;
    }
    if (start_kafka(&b)) {
        status = 1;
        goto out;
    }

    long long interval_ms = fh_config_int(&b.cfg, "broker.stats_interval_ms");
    int64_t next_stats = fh_now_ms() + interval_ms;
    while (run) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(b.consumer, 100);
        if (m) {
            handle_message(&b, m);
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(b.producer, 0);
        if (fh_now_ms() >= next_stats) {
            if (b.total != b.logged_total || b.dlq != b.logged_dlq)
                log_counts(&b, "broker.counts");
            next_stats = fh_now_ms() + interval_ms;
        }
    }
    log_counts(&b, "broker.stopping");
out:
    stop_kafka(&b);
    fh_contract_free(b.contract);
    fh_config_free(&b.cfg);
    return status;
}
