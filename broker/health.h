/* health: /healthz, /readyz and /metrics, and what they report of records lost. */
#ifndef FH_BROKER_HEALTH_H
#define FH_BROKER_HEALTH_H

#include <stdint.h>

#include "broker.h"
#include "http.h"

typedef struct fh_view fh_view;
typedef struct broker_memory broker_memory;

/* What the health routes read: the broker's state, the view (records lost for /readyz, the CI
 * metrics for /metrics/ci; NULL: none) and the memory gauges /metrics refreshes (NULL: none).
 * The caller keeps it alive while the HTTP server runs. */
typedef struct health_ctx {
    fh_broker *b;
    fh_view *view;
    broker_memory *mem;
} health_ctx;

/* Appends the health routes to routes (which has room for FH_HEALTH_ROUTES more); their ctx is
 * ctx (the view's for /metrics/ci). */
#define FH_HEALTH_ROUTES 4
size_t health_routes(health_ctx *ctx, fh_http_route *routes);

/* Reports that consumer ("ingest", "stream", "stream.catchup", "view", "webhooks") skipped
 * [from, to) of topic/partition because Kafka had deleted those records before it read them
 * (fh_lost.h): logs records.lost with the range, counts them in
 * firehose_records_lost_total{consumer,topic,partition}, and from then on /readyz says
 * "degraded" (still 200) with the counts. Any thread. */
void health_records_lost(const char *consumer, const char *topic, int partition, int64_t from,
                         int64_t to);

#endif
