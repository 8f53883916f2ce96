#include "fh_kafka.h"
#include "fh_log.h"
#include "fh_util.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fh_kafka_embedded {
    rd_kafka_t *rk; /* owns the mock cluster */
    rd_kafka_mock_cluster_t *mc;
    char bootstrap[256];
};

const char *fh_kafka_topic(const fh_config *c, fh_topic_kind kind)
{
    switch (kind) {
    case FH_TOPIC_LOGS:
        return fh_config_str(c, "topics.logs");
    case FH_TOPIC_DLQ:
        return fh_config_str(c, "topics.dlq");
    case FH_TOPIC_DERIVED:
        return fh_config_str(c, "topics.derived");
    default:
        return fh_config_str(c, "topics.events");
    }
}

static fh_err conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errbuf,
                       size_t errsize)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "kafka.%s: %s", k, err);
    return FH_OK;
}

/* librdkafka's own log lines, as structured records on our log. */
static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    char q[768];
    enum fh_log_level l = level <= 3   ? FH_LOG_ERROR
                          : level == 4 ? FH_LOG_WARN
                          : level <= 6 ? FH_LOG_INFO
                                       : FH_LOG_DEBUG;
    fh_log(l, "kafka.log", "client=%s facility=%s message=%s", rd_kafka_name(rk), fac,
           fh_log_quote(q, sizeof(q), buf));
}

fh_err fh_kafka_conf(const fh_config *c, const char *bootstrap, const char *const *defaults,
                     rd_kafka_conf_t **out, char *errbuf, size_t errsize)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    fh_err rc;
    if (!conf)
        return FH_ERR_NOMEM;
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    if (bootstrap && (rc = conf_set(conf, "bootstrap.servers", bootstrap, errbuf, errsize)))
        goto err;
    for (size_t i = 0; defaults && defaults[i]; i++) {
        char kv[512];
        snprintf(kv, sizeof(kv), "%s", defaults[i]);
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if ((rc = conf_set(conf, kv, eq + 1, errbuf, errsize)))
            goto err;
    }
    for (size_t i = 0; c && i < c->nkafka; i++)
        if ((rc = conf_set(conf, c->kafka_keys[i], c->kafka_vals[i], errbuf, errsize)))
            goto err;
    *out = conf;
    return FH_OK;
err:
    rd_kafka_conf_destroy(conf);
    return rc;
}

fh_err fh_kafka_producer(const fh_config *c, const char *bootstrap, const char *const *defaults,
                         void (*dr)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque),
                         void *opaque, rd_kafka_t **out, char *errbuf, size_t errsize)
{
    rd_kafka_conf_t *conf;
    fh_err rc = fh_kafka_conf(c, bootstrap, defaults, &conf, errbuf, errsize);
    if (rc)
        return rc;
    if (dr)
        rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_conf_set_opaque(conf, opaque);
    if (!(*out = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errsize)))
        return FH_ERR_KAFKA; /* as every caller before: conf is not destroyed after a failure */
    return FH_OK;
}

void fh_kafka_producer_free(rd_kafka_t *rk, int flush_ms)
{
    if (!rk)
        return;
    rd_kafka_flush(rk, flush_ms);
    rd_kafka_destroy(rk);
}

fh_err fh_kafka_embedded_start(const fh_config *c, int partitions, fh_kafka_embedded **out,
                               char *errbuf, size_t errsize)
{
    char err[512];
    fh_kafka_embedded *e = calloc(1, sizeof(*e));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    fh_err rc = FH_ERR_KAFKA;
    if (!e || !conf) {
        rc = FH_ERR_NOMEM;
        goto err;
    }
    /* A quiet handle whose only job is to own the mock cluster. */
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    conf = NULL; /* rd_kafka_new took it, or destroyed it on failure */
    if (!e->rk) {
        fh_errf(errbuf, errsize, rc, "embedded kafka: %s", err);
        goto err;
    }
    e->mc = rd_kafka_mock_cluster_new(e->rk, 1);
    if (!e->mc) {
        fh_errf(errbuf, errsize, rc, "embedded kafka: cannot start the mock cluster");
        goto err;
    }
    snprintf(e->bootstrap, sizeof(e->bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(e->mc));
    for (int k = FH_TOPIC_EVENTS; k <= FH_TOPIC_DERIVED; k++) {
        const char *t = fh_kafka_topic(c, (fh_topic_kind)k);
        rd_kafka_resp_err_t kerr = rd_kafka_mock_topic_create(e->mc, t, partitions, 1);
        if (kerr) {
            fh_errf(errbuf, errsize, rc, "embedded kafka: creating %s: %s", t,
                    rd_kafka_err2str(kerr));
            goto err;
        }
    }
    *out = e;
    return FH_OK;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    fh_kafka_embedded_stop(e);
    *out = NULL;
    return rc;
}

const char *fh_kafka_embedded_bootstrap(const fh_kafka_embedded *e)
{
    return e->bootstrap;
}

int fh_kafka_id_is_mock(const char *id)
{
    /* rdkafka_mock names its clusters "mockCluster<hex>"; a real Kafka's id is 22 characters of
     * base64. */
    return id && strncmp(id, "mockCluster", 11) == 0;
}

int fh_kafka_cluster_id(rd_kafka_t *rk, int timeout_ms, char *out, size_t size)
{
    uint64_t t0 = fh_mono_ns();
    char *id = rd_kafka_clusterid(rk, timeout_ms);
    if (size)
        *out = '\0';
    if (id) {
        snprintf(out, size, "%s", id);
        rd_kafka_mem_free(rk, id);
        return FH_KAFKA_CLUSTER_ID_KNOWN;
    }
    /* rd_kafka_clusterid answers NULL at once when metadata came without an id, and only after
     * timeout_ms when no metadata came at all. */
    return fh_mono_ns() - t0 < (uint64_t)timeout_ms * 1000000u ? FH_KAFKA_CLUSTER_ID_NONE
                                                               : FH_KAFKA_CLUSTER_ID_TIMEOUT;
}

int fh_kafka_is_embedded(rd_kafka_t *rk, int timeout_ms)
{
    char id[256];
    return fh_kafka_cluster_id(rk, timeout_ms, id, sizeof(id)) == FH_KAFKA_CLUSTER_ID_KNOWN &&
           fh_kafka_id_is_mock(id);
}

void fh_kafka_embedded_stop(fh_kafka_embedded *e)
{
    if (!e)
        return;
    if (e->mc)
        rd_kafka_mock_cluster_destroy(e->mc);
    if (e->rk)
        rd_kafka_destroy(e->rk);
    free(e);
}

/* A topic Kafka has just created answers "not leader for partition" until its leaders have
 * taken over (a moment after CreateTopics returns): waits until every partition of topic answers
 * a watermark query, or until deadline_ms. Returns 0, or the last error. */
static rd_kafka_resp_err_t await_leaders(rd_kafka_t *rk, const char *topic, int64_t deadline_ms)
{
    const struct timespec pause = {0, 100 * 1000 * 1000};
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
        rd_kafka_topic_destroy(rkt);
        if (!e && (md->topic_cnt != 1 || md->topics[0].err))
            e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        for (int i = 0; !e && i < md->topics[0].partition_cnt; i++) {
            int64_t lo, hi;
            e = rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[i].id, &lo,
                                                 &hi, 2000);
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (!e || fh_now_ms() >= deadline_ms)
            return e;
        nanosleep(&pause, NULL);
    }
}

fh_err fh_kafka_create_topics(rd_kafka_t *rk, const fh_config *c, int partitions, int replication,
                              int timeout_ms, char *errbuf, size_t errsize)
{
    rd_kafka_NewTopic_t *nt[4] = {NULL, NULL, NULL, NULL};
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    fh_err rc = FH_OK;
    char err[256];

    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, err, sizeof(err));
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, err, sizeof(err));
    for (int k = 0; k < 4; k++) {
        nt[k] = rd_kafka_NewTopic_new(fh_kafka_topic(c, (fh_topic_kind)k), partitions, replication,
                                      err, sizeof(err));
        if (!nt[k]) {
            rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "topic %s: %s",
                         fh_kafka_topic(c, (fh_topic_kind)k), err);
            goto done;
        }
    }
    rd_kafka_CreateTopics(rk, nt, 4, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "creating topics: no answer in %d ms",
                     timeout_ms);
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "creating topics: %s",
                     rd_kafka_event_error_string(ev));
        goto done;
    }
    size_t n;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(res[i]);
        if (terr && terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "creating topic %s: %s",
                         rd_kafka_topic_result_name(res[i]),
                         rd_kafka_topic_result_error_string(res[i]));
            goto done;
        }
    }
    /* Consumers starting right after this (the stream reads watermarks at start-up) must find
     * the new topics led. */
    int64_t deadline = fh_now_ms() + timeout_ms;
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_topic_result_error(res[i]))
            continue;
        rd_kafka_resp_err_t lerr = await_leaders(rk, rd_kafka_topic_result_name(res[i]), deadline);
        if (lerr) {
            rc = fh_errf(errbuf, errsize, FH_ERR_KAFKA, "topic %s has no leaders: %s",
                         rd_kafka_topic_result_name(res[i]), rd_kafka_err2str(lerr));
            goto done;
        }
    }
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (int k = 0; k < 4; k++)
        if (nt[k])
            rd_kafka_NewTopic_destroy(nt[k]);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    return rc;
}

void fh_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* NULL when the group has no protocol (yet, or any more: a consumer closing during a
     * rebalance); then it is an eager assignment. */
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int cooperative = proto && strcmp(proto, "COOPERATIVE") == 0;
    (void)opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        fh_log(FH_LOG_INFO, "kafka.assign", "partitions=%d protocol=%s", parts->cnt,
               cooperative ? "cooperative" : "eager");
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            ret = rd_kafka_assign(rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        fh_log(FH_LOG_INFO, "kafka.revoke", "partitions=%d lost=%d", parts->cnt,
               rd_kafka_assignment_lost(rk));
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            ret = rd_kafka_assign(rk, NULL);
    } else {
        fh_log(FH_LOG_ERROR, "kafka.rebalance", "error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
    if (error) {
        fh_log(FH_LOG_ERROR, "kafka.rebalance", "error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (ret) {
        fh_log(FH_LOG_ERROR, "kafka.rebalance", "error=\"%s\"", rd_kafka_err2str(ret));
    }
}
