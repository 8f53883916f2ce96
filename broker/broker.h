/* broker: what firehose-broker's modules share. main.c owns the one fh_broker; modules receive
 * it at start-up and keep a pointer. Threads: main (Kafka ingest loop), libmicrohttpd workers
 * (HTTP handlers), and each module's own threads (see docs/architecture.md). */
#ifndef FH_BROKER_H
#define FH_BROKER_H

#include <signal.h>

#include "fh_auth.h"
#include "fh_config.h"
#include "fh_event.h"
#include "fh_kafka.h"
#include "fh_metrics.h"

typedef struct fh_broker {
    fh_config cfg;
    fh_contract *contract; /* immutable after start-up: shared by every thread */
    fh_auth auth;          /* immutable after start-up */
    fh_kafka_embedded *embedded;
    char bootstrap[512]; /* the Kafka actually used (embedded or kafka.brokers) */
    /* The id of that cluster ("" when it has none or did not answer at start-up): the local
     * files (view.path, webhooks.path) record it and are checked against it. */
    char cluster_id[256];
    volatile sig_atomic_t *run;
    _Atomic int ready;      /* 1 once the ingest consumer has its partitions */
    _Atomic int kafka_down; /* 1 while librdkafka reports every broker down (ALL_BROKERS_DOWN) */
    fh_metric *events_in[FH_EV__COUNT];
    fh_metric *dlq_total, *dlq_failed;
} fh_broker;

#endif
