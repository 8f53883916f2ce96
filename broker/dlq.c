#include "dlq.h"
#include "fh_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_TRUNCATE_BYTES 65536

struct fh_dlq {
    fh_broker *b;
    const char *consumer;
    rd_kafka_t *rk;           /* made on first send */
    rd_kafka_resp_err_t last; /* delivery result of the record being sent */
};

static const char *const producer_defaults[] = {"acks=all", "enable.idempotence=true",
                                                "linger.ms=5", "log_level=4", NULL};

static const char *consumer_name(const fh_dlq *d)
{
    return d->consumer ? d->consumer : "ingest";
}

/* Runs inside rd_kafka_flush on the thread that sent the record. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    fh_dlq *d = opaque;
    (void)rk;
    d->last = m->err;
}

fh_dlq *fh_dlq_new(fh_broker *b, const char *consumer)
{
    fh_dlq *d = calloc(1, sizeof(*d));
    if (d) {
        d->b = b;
        d->consumer = consumer;
    }
    return d;
}

fh_err fh_dlq_producer(fh_dlq *d, rd_kafka_t **out, char *errbuf, size_t errsize)
{
    fh_err e = FH_OK;
    if (!d->rk)
        e = fh_kafka_producer(&d->b->cfg, d->b->bootstrap, producer_defaults, on_delivery, d,
                              &d->rk, errbuf, errsize);
    *out = d->rk;
    return e;
}

static int open_producer(fh_dlq *d)
{
    char err[512];
    rd_kafka_t *rk;
    if (fh_dlq_producer(d, &rk, err, sizeof(err)) == FH_OK)
        return 0;
    fh_log(FH_LOG_ERROR, "dlq.config", "consumer=%s error=\"%s\"", consumer_name(d), err);
    return -1;
}

static rd_kafka_resp_err_t produce(fh_dlq *d, const rd_kafka_message_t *m, const char *reason,
                                   size_t len)
{
    char part[16], off[32], size[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    snprintf(part, sizeof(part), "%d", m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "firehose-error", -1, reason, -1);
    if (d->consumer)
        rd_kafka_header_add(h, "firehose-consumer", -1, d->consumer, -1);
    rd_kafka_header_add(h, "firehose-source-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(h, "firehose-source-partition", -1, part, -1);
    rd_kafka_header_add(h, "firehose-source-offset", -1, off, -1);
    if (len < m->len) {
        snprintf(size, sizeof(size), "%zu", m->len);
        rd_kafka_header_add(h, "firehose-truncated", -1, size, -1);
    }
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            d->rk, RD_KAFKA_V_TOPIC(fh_kafka_topic(&d->b->cfg, FH_TOPIC_DLQ)),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!err)
            break;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && d->b->run && *d->b->run) {
            rd_kafka_poll(d->rk, 50);
            continue;
        }
        rd_kafka_headers_destroy(h);
        return err;
    }
    d->last = RD_KAFKA_RESP_ERR__TIMED_OUT;
    rd_kafka_flush(d->rk, 10000);
    return d->last;
}

int fh_dlq_send(fh_dlq *d, const rd_kafka_message_t *m, const char *reason)
{
    char q[420];
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__STATE;
    if (d->consumer) /* ingest logs event.invalid itself */
        fh_log(FH_LOG_WARN, "dlq.record", "consumer=%s topic=%s partition=%d offset=%lld reason=%s",
               d->consumer, rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
               fh_log_quote(q, sizeof(q), reason));
    if (d->rk || open_producer(d) == 0) {
        err = produce(d, m, reason, m->len);
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && m->len > DLQ_TRUNCATE_BYTES)
            err = produce(d, m, reason, DLQ_TRUNCATE_BYTES);
    }
    if (!err) {
        fh_metric_add(d->b->dlq_total, 1);
        return 0;
    }
    fh_metric_add(d->b->dlq_failed, 1);
    if (d->consumer)
        fh_log(FH_LOG_ERROR, "dlq.failed", "consumer=%s error=\"%s\"", d->consumer,
               rd_kafka_err2str(err));
    else
        fh_log(FH_LOG_ERROR, "dlq.failed", "error=\"%s\"", rd_kafka_err2str(err));
    return -1;
}

void fh_dlq_free(fh_dlq *d)
{
    if (!d)
        return;
    fh_kafka_producer_free(d->rk, 10000);
    free(d);
}
