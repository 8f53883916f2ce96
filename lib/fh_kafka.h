/* fh_kafka: Kafka helpers every program shares: configuration from the fh_config table, the
 * embedded (in-process, in-memory) mock cluster, topic creation and the topic layout. */
#ifndef FH_KAFKA_H
#define FH_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "fh_config.h"
#include "fh_error.h"
#include "fh_event.h"

/* Returns the topic name for kind from c (topics.events, topics.logs, topics.dlq, topics.derived).
 */
const char *fh_kafka_topic(const fh_config *c, fh_topic_kind kind);

/* Builds a librdkafka conf: bootstrap.servers = bootstrap, then the defaults given as
 * "prop=value" strings (NULL-terminated, may be NULL), then every kafka.* pass-through key of c,
 * so the user always wins. Caller owns the result (hand it to rd_kafka_new, which takes it). */
fh_err fh_kafka_conf(const fh_config *c, const char *bootstrap, const char *const *defaults,
                     rd_kafka_conf_t **out, char *errbuf, size_t errsize);

/* A producer: fh_kafka_conf(c, bootstrap, defaults), the delivery report callback dr (NULL:
 * none) with opaque as the handle's opaque, then rd_kafka_new. *out is the caller's
 * (fh_kafka_producer_free). FH_ERR_CONFIG on a bad property, FH_ERR_KAFKA when librdkafka
 * refuses (errbuf says why). */
fh_err fh_kafka_producer(const fh_config *c, const char *bootstrap, const char *const *defaults,
                         void (*dr)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque),
                         void *opaque, rd_kafka_t **out, char *errbuf, size_t errsize);

/* Waits at most flush_ms for what rk still holds, then destroys it. NULL is a no-op. */
void fh_kafka_producer_free(rd_kafka_t *rk, int flush_ms);

/* An in-process mock cluster: librdkafka's rdkafka_mock, listening on loopback. Everything it
 * holds lives in memory and is gone when it is destroyed. It keeps at most
 * FH_KAFKA_EMBEDDED_PARTITION_BYTES of record batches (or 100,000 batches) per partition: each
 * append drops the oldest batches past that, whether a consumer read them or not (librdkafka's
 * fixed limits; nothing configures them). */
#define FH_KAFKA_EMBEDDED_PARTITION_BYTES (5 * 1024 * 1024)
/* The largest record firehose lets into the embedded cluster: a fifth of a partition, so one
 * record cannot push out more than a fifth of what a consumer may still need. */
#define FH_KAFKA_EMBEDDED_MAX_RECORD (1024 * 1024)
typedef struct fh_kafka_embedded fh_kafka_embedded;

/* Starts a one-broker mock cluster and creates the events, logs, dlq and derived topics of c with
 * `partitions` partitions. *out owns the cluster; fh_kafka_embedded_bootstrap names it. */
fh_err fh_kafka_embedded_start(const fh_config *c, int partitions, fh_kafka_embedded **out,
                               char *errbuf, size_t errsize);
const char *fh_kafka_embedded_bootstrap(const fh_kafka_embedded *e);
void fh_kafka_embedded_stop(fh_kafka_embedded *e);

/* 1 when rk talks to a librdkafka mock cluster (an embedded Kafka, this process's or a broker's):
 * its cluster id says so. Waits at most timeout_ms for the id; 0 when none came. */
int fh_kafka_is_embedded(rd_kafka_t *rk, int timeout_ms);

/* What fh_kafka_cluster_id learned. */
enum fh_kafka_cluster_id_result {
    FH_KAFKA_CLUSTER_ID_KNOWN = 0,   /* out holds the id */
    FH_KAFKA_CLUSTER_ID_NONE = 1,    /* the cluster answered without an id (out is "") */
    FH_KAFKA_CLUSTER_ID_TIMEOUT = 2, /* no metadata within timeout_ms (out is "") */
};

/* The id of the cluster rk talks to (rd_kafka_clusterid: waits at most timeout_ms for the first
 * metadata) into out, truncated to size. A real Kafka's id is fixed when its storage is
 * formatted; an embedded (mock) cluster's is "mockCluster<hex>", new every time one starts.
 * Returns an enum fh_kafka_cluster_id_result. */
int fh_kafka_cluster_id(rd_kafka_t *rk, int timeout_ms, char *out, size_t size);

/* 1 when id names a librdkafka mock cluster (an embedded Kafka). */
int fh_kafka_id_is_mock(const char *id);

/* Creates the events, logs, dlq and derived topics on a real cluster through rk (any handle);
 * topics that already exist are left as they are. Returns once every partition of the topics it
 * created has a leader that answers (all within timeout_ms), so consumers can start at once. */
fh_err fh_kafka_create_topics(rd_kafka_t *rk, const fh_config *c, int partitions, int replication,
                              int timeout_ms, char *errbuf, size_t errsize);

/* The rebalance callback of every firehose consumer: handles both the cooperative and the eager
 * protocol, as librdkafka's examples do. */
void fh_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque);

#endif
