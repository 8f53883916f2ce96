/* webhooks: signed, retried, durable delivery of events to HTTP endpoints (docs/webhooks.md),
 * and the /api/v1/webhooks API that manages them. One module, one handle (fh_webhooks).
 *
 * Threads: the webhook thread owns the webhook consumer (group webhooks.group, shared by every
 * broker instance), its SQLite connection, the curl multi handle and every transfer. The reader
 * thread reads the endpoints topic and the delivery changelog into this instance's SQLite file
 * (webhooks.path, a cache of the topics). HTTP handlers (libmicrohttpd threads) read that file
 * and write through the topics (waiting until the reader applied their record). Instances share
 * nothing but the Kafka cluster. */
#ifndef FH_BROKER_WEBHOOKS_H
#define FH_BROKER_WEBHOOKS_H

#include "broker.h"
#include "http.h"

/* The webhook keys, one entry of broker_opts in main.c; fh_webhooks_config_read reads them. */
/* clang-format off */
#define FH_WEBHOOK_CFG \
    {"webhooks.enabled", NULL, FH_CFG_BOOL, "true", 0, 0, \
     "deliver events to webhook endpoints and serve /api/v1/webhooks"}, \
    {"webhooks.path", NULL, FH_CFG_STR, "var/webhooks-cache.db", 0, 0, \
     "this instance's own SQLite file (WAL): a cache of the endpoints topic and the delivery " \
     "changelog, rebuilt from them when it is missing; never shared between instances"}, \
    {"webhooks.migrate_from", NULL, FH_CFG_STR, "var/webhooks.db", 0, 0, \
     "an old-design shared webhooks.db: its endpoints and pending deliveries are published to " \
     "the topics once (marked done in it); empty or missing: nothing to migrate"}, \
    {"webhooks.secret_key", NULL, FH_CFG_STR, "", 0, 0, \
     "64 hex characters: the AES-256-GCM key that seals endpoint secrets in Kafka and on disk " \
     "(make one with: openssl rand -hex 32); every instance needs the same one"}, \
    {"webhooks.secret_key_file", NULL, FH_CFG_STR, "", 0, 0, \
     "a file holding webhooks.secret_key's 64 hex characters (instead of the key itself)"}, \
    {"webhooks.history_ms", NULL, FH_CFG_INT, "604800000", 60000, 31536000000, \
     "how long the delivery log is kept: retention.ms of the delivery changelog and the local " \
     "pruning age of finished deliveries"}, \
    {"webhooks.api_wait_ms", NULL, FH_CFG_INT, "10000", 100, 600000, \
     "an API change waits this long at most for Kafka's acknowledgement and for this instance " \
     "to read it back; then 503 naming which did not come"}, \
    {"topics.webhook_endpoints", NULL, FH_CFG_STR, "firehose.webhooks.endpoints", 0, 0, \
     "compacted topic of webhook endpoints (1 partition; key: endpoint id; secrets sealed)"}, \
    {"topics.webhook_deliveries", NULL, FH_CFG_STR, "firehose.webhooks.deliveries", 0, 0, \
     "changelog of webhook deliveries (topics.partitions partitions, compact,delete, " \
     "retention webhooks.history_ms)"}, \
    {"webhooks.group", NULL, FH_CFG_STR, "firehose-webhooks", 0, 0, \
     "consumer group of webhook delivery, shared by every broker instance"}, \
    {"webhooks.instance_id", NULL, FH_CFG_STR, "", 0, 0, \
     "static group membership (group.instance.id): a restarted instance gets its partitions " \
     "back at once; empty: dynamic membership"}, \
    {"webhooks.retry_schedule", NULL, FH_CFG_STR, "0,5,300,1800,7200,18000,36000,50400,72000,86400", \
     0, 0, "delay in seconds before each attempt (fractions allowed), the first being the " \
     "initial attempt; after the last a delivery is dead-lettered"}, \
    {"webhooks.retry_jitter_pct", NULL, FH_CFG_INT, "10", 0, 100, \
     "each retry delay is stretched by a random 0..this percent"}, \
    {"webhooks.retry_after_max_s", NULL, FH_CFG_INT, "86400", 0, 604800, \
     "longest Retry-After (429, 503) honoured"}, \
    {"webhooks.allow_cidrs", NULL, FH_CFG_STR, "", 0, 0, \
     "comma-separated CIDRs exempt from the SSRF guard (e.g. 127.0.0.1/32)"}, \
    {"webhooks.connect_timeout_ms", NULL, FH_CFG_INT, "5000", 10, 600000, "connect timeout"}, \
    {"webhooks.timeout_ms", NULL, FH_CFG_INT, "15000", 10, 600000, \
     "total time of one attempt (connect, send, response)"}, \
    {"webhooks.response_max_bytes", NULL, FH_CFG_INT, "65536", 0, 16777216, \
     "response body read at most; a longer response is cut off (its status still counts)"}, \
    {"webhooks.response_log_bytes", NULL, FH_CFG_INT, "1024", 0, 65536, \
     "response body kept in the delivery log"}, \
    {"webhooks.endpoint_concurrency", NULL, FH_CFG_INT, "8", 1, 1024, \
     "attempts in flight per endpoint at most"}, \
    {"webhooks.max_in_flight", NULL, FH_CFG_INT, "1024", 1, 65536, \
     "attempts in flight per instance at most"}, \
    {"webhooks.queue_max", NULL, FH_CFG_INT, "1000000", 1, 1000000000, \
     "pending deliveries per instance at most; at the cap the webhook consumer pauses its " \
     "partitions (no record is dropped) until the queue is below 90% of it"}, \
    {"webhooks.batch_max", NULL, FH_CFG_INT, "2000", 1, 100000, \
     "records turned into deliveries in one SQLite transaction at most"}, \
    {"webhooks.disable_after_s", NULL, FH_CFG_INT, "432000", 1, 31536000, \
     "an endpoint that fails without a single success for this long is disabled"}, \
    {"webhooks.secret_overlap_s", NULL, FH_CFG_INT, "86400", 0, 2592000, \
     "after a secret rotation the previous secret also signs for this long (default)"}, \
    {"webhooks.retention_s", NULL, FH_CFG_INT, "604800", 60, 315360000, \
     "old name of webhooks.history_ms (in seconds): used when set and webhooks.history_ms is " \
     "left at its default"}, \
    {"webhooks.scan_interval_ms", NULL, FH_CFG_INT, "1000", 10, 60000, \
     "how often due work and the endpoint table are looked at again (the reader thread also " \
     "wakes the delivery thread at once when the topics change them)"}, \
    {"webhooks.changelog_backlog_max", NULL, FH_CFG_INT, "2000", 10, 1000000, \
     "attempts' outcome records awaiting Kafka's acknowledgement at most before new attempts " \
     "wait (new deliveries' records do not count: their events' offsets wait for them): " \
     "bounds the attempts a SIGKILL can make a new owner send again"}, \
    {"webhooks.max_endpoints", NULL, FH_CFG_INT, "10000", 1, 1000000, "endpoints at most"}
/* clang-format on */

/* Every key the module reads, read once by fh_webhooks_config_read. Strings are borrowed from
 * the fh_config they were read from, which must outlive the handle. */
typedef struct fh_webhooks_config {
    int enabled;
    const char *path, *group, *instance_id, *retry_schedule, *allow_cidrs;
    const char *migrate_from, *secret_key, *secret_key_file, *ep_topic, *cl_topic;
    long long history_ms, api_wait_ms;
    int retry_jitter_pct;
    long long retry_after_max_s, connect_timeout_ms, timeout_ms, response_max_bytes,
        response_log_bytes, endpoint_concurrency, max_in_flight, queue_max, batch_max,
        disable_after_s, secret_overlap_s, retention_s, scan_interval_ms, max_endpoints,
        changelog_backlog_max;
    const char *topic;         /* the events topic (kafka.topic_events) */
    const char *derived_topic; /* topics.derived when the view derives events, else NULL */
    size_t max_record_bytes;   /* events.max_bytes */
} fh_webhooks_config;

/* Fills cfg from c: every webhooks.* key of FH_WEBHOOK_CFG, the events topic and
 * events.max_bytes. */
void fh_webhooks_config_read(const fh_config *c, fh_webhooks_config *cfg);

typedef struct fh_webhooks fh_webhooks;

/* Starts webhook delivery: opens the store, starts the thread and its consumer. With
 * cfg->enabled false it starts nothing, and the routes answer 503. b (the Kafka bootstrap, the
 * contract, the run flag) must outlive the handle. On success *out is the handle (free it with
 * fh_webhooks_free); on error *out is NULL and errbuf says why. */
fh_err fh_webhooks_start(fh_broker *b, const fh_webhooks_config *cfg, fh_webhooks **out,
                         char *errbuf, size_t errsize);

/* Writes the /api/v1/webhooks routes (FH_WEBHOOK_ROUTES of them) into routes; returns how many.
 * Their ctx is w. */
#define FH_WEBHOOK_ROUTES 9
size_t fh_webhooks_routes(fh_webhooks *w, fh_http_route *routes);

/* Stops the thread: lets transfers in flight finish (bounded by webhooks.timeout_ms), records
 * them, closes the consumer (committing stored offsets) and the thread's store connection.
 * NULL and a stopped handle are fine. */
void fh_webhooks_stop(fh_webhooks *w);
/* Stops if needed, closes the API's store connection and frees w. Call after the HTTP server
 * stopped (its handlers use w). NULL is fine. */
void fh_webhooks_free(fh_webhooks *w);

#endif
