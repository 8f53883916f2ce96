/* dlq: the dead-letter topic (topics.dlq) for the broker's own consumers beyond ingest: the view
 * and the webhook thread. The ingest consumer dead-letters what the contract refuses; these send
 * what the contract accepts but they still cannot handle (a row SQLite refuses, a body that
 * cannot be rendered), so no valid record is ever dropped without a trace. Same record and
 * headers as ingest's (firehose-error, firehose-source-topic/-partition/-offset,
 * firehose-truncated) plus firehose-consumer naming who gave up on it.
 *
 * One fh_dlq per thread: its producer is made on first use and each send waits for the
 * delivery report on the calling thread (while the queue is full it waits its turn, until the
 * broker stops). */
#ifndef FH_BROKER_DLQ_H
#define FH_BROKER_DLQ_H

#include <librdkafka/rdkafka.h>

#include "broker.h"

typedef struct fh_dlq fh_dlq;

/* A dead-letter sender for consumer ("view", "webhooks"; a static string), or NULL for the
 * ingest consumer, whose records carry no firehose-consumer header (it logs event.invalid for
 * each itself). b must outlive it. Allocates nothing until the first send. NULL when out of
 * memory. */
fh_dlq *fh_dlq_new(fh_broker *b, const char *consumer);

/* The sender's producer in *out, made now if it was not yet (the ingest thread makes it at
 * start-up and borrows it to create topics). FH_ERR_CONFIG or FH_ERR_KAFKA (errbuf says why). */
fh_err fh_dlq_producer(fh_dlq *d, rd_kafka_t **out, char *errbuf, size_t errsize);

/* Produces m (key, value, source) to topics.dlq with reason as firehose-error and waits until
 * Kafka has it (at most 10 s); a record too large for the topic goes there cut to its first
 * 64 KiB, with firehose-truncated. Counts it in firehose_dlq_total, or a failure in
 * firehose_dlq_failed_total. Returns 0 when delivered, -1 otherwise (logged). */
int fh_dlq_send(fh_dlq *d, const rd_kafka_message_t *m, const char *reason);

/* Flushes and frees. NULL is a no-op. */
void fh_dlq_free(fh_dlq *d);

#endif
