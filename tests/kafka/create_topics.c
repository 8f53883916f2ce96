/* create_topics: creates Kafka topics through librdkafka's admin API, for tests/kafka/kafka.sh.
 *
 *   create_topics BOOTSTRAP [--config KEY=VALUE]... SPEC...
 *   SPEC: NAME:PARTITIONS:REPLICATION   or   NAME:PARTITIONS:@ASSIGNMENT, then any number of
 *         +KEY=VALUE: configs of that topic alone (e.g. +cleanup.policy=compact)
 *   ASSIGNMENT: the replicas of each partition, partitions separated by ',' and replicas by ':'
 *               (TopicCommand's --replica-assignment), e.g. 1:2:3,1:3:2
 *
 * Every topic is created in one CreateTopics request; a topic that already exists is not an error
 * (TopicCommand's --if-not-exists). --config applies to every topic. Exits 0 when every topic
 * exists afterwards, 1 otherwise (naming each topic that failed and why), 64 on bad usage.
 *
 * kafka.sh used to start one JVM (TopicCommand) per topic; on two cores a test module creating ten
 * topics spent half a minute starting JVMs. This is the same request without the JVM. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOPICS 256
#define MAX_CONFIGS 16
#define MAX_REPLICAS 16

static int usage(void)
{
    fprintf(stderr, "usage: create_topics BOOTSTRAP [--config KEY=VALUE]... "
                    "NAME:PARTITIONS:REPLICATION|NAME:PARTITIONS:@ASSIGNMENT...\n");
    return 64;
}

/* Sets partition p's replicas from "1:2:3". Returns 0, or -1 with errstr filled. */
static int set_assignment(rd_kafka_NewTopic_t *nt, int p, char *replicas, char *errstr,
                          size_t errsize)
{
    int32_t ids[MAX_REPLICAS];
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(replicas, ":", &save); tok;
         tok = strtok_r(NULL, ":", &save)) {
        if (n == MAX_REPLICAS) {
            snprintf(errstr, errsize, "more than %d replicas", MAX_REPLICAS);
            return -1;
        }
        ids[n++] = (int32_t)atoi(tok);
    }
    if (rd_kafka_NewTopic_set_replica_assignment(nt, p, ids, n, errstr, errsize))
        return -1;
    return 0;
}

/* A NewTopic from SPEC (modified in place), or NULL with errstr filled. */
static rd_kafka_NewTopic_t *new_topic(char *spec, char *errstr, size_t errsize)
{
    char *name = spec, *parts = strchr(spec, ':');
    char *how = parts ? strchr(parts + 1, ':') : NULL;
    if (!parts || !how) {
        snprintf(errstr, errsize, "bad spec (want NAME:PARTITIONS:REPLICATION or :@ASSIGNMENT)");
        return NULL;
    }
    *parts++ = '\0';
    *how++ = '\0';
    char *cfg = strchr(how, '+'); /* this topic's +KEY=VALUE configs */
    if (cfg)
        *cfg++ = '\0';
    int np = atoi(parts);
    if (np < 1) {
        snprintf(errstr, errsize, "bad partition count '%s'", parts);
        return NULL;
    }
    int assigned = how[0] == '@';
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(name, np, assigned ? -1 : atoi(how), errstr, errsize);
    if (!nt)
        return NULL;
    for (char *save = NULL, *kv = cfg ? strtok_r(cfg, "+", &save) : NULL; kv;
         kv = strtok_r(NULL, "+", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(errstr, errsize, "bad config '%s' (want +KEY=VALUE)", kv);
            rd_kafka_NewTopic_destroy(nt);
            return NULL;
        }
        *eq = '\0';
        rd_kafka_NewTopic_set_config(nt, kv, eq + 1);
    }
    if (!assigned)
        return nt;
    int p = 0;
    for (char *save = NULL, *row = strtok_r(how + 1, ",", &save); row;
         row = strtok_r(NULL, ",", &save), p++) {
        if (p == np || set_assignment(nt, p, row, errstr, errsize)) {
            if (p == np)
                snprintf(errstr, errsize, "more assignment rows than partitions");
            rd_kafka_NewTopic_destroy(nt);
            return NULL;
        }
    }
    if (p != np) {
        snprintf(errstr, errsize, "%d assignment rows for %d partitions", p, np);
        rd_kafka_NewTopic_destroy(nt);
        return NULL;
    }
    return nt;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    char errstr[512];
    rd_kafka_NewTopic_t *topics[MAX_TOPICS];
    char *configs[MAX_CONFIGS];
    size_t nt = 0, nc = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (++i == argc || !strchr(argv[i], '=') || nc == MAX_CONFIGS)
                return usage();
            configs[nc++] = argv[i];
        }
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            i++;
            continue;
        }
        if (nt == MAX_TOPICS)
            return usage();
        char *spec = argv[i];
        if (!(topics[nt] = new_topic(spec, errstr, sizeof(errstr)))) {
            fprintf(stderr, "create_topics: %s: %s\n", argv[i], errstr);
            return 64;
        }
        for (size_t c = 0; c < nc; c++) {
            char kv[512];
            snprintf(kv, sizeof(kv), "%s", configs[c]);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            rd_kafka_NewTopic_set_config(topics[nt], kv, eq + 1);
        }
        nt++;
    }
    if (!nt)
        return usage();

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr))) {
        fprintf(stderr, "create_topics: %s\n", errstr);
        return 64;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "create_topics: %s\n", errstr);
        return 1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, 60000, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_operation_timeout(opts, 60000, errstr, sizeof(errstr));
    rd_kafka_CreateTopics(rk, topics, nt, opts, q);

    int rc = 1;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 90000);
    if (!ev) {
        fprintf(stderr, "create_topics: no answer from %s in 90 s\n", argv[1]);
    } else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "create_topics: %s\n", rd_kafka_event_error_string(ev));
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rc = n == nt ? 0 : 1;
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
            if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                const char *why = rd_kafka_topic_result_error_string(res[i]);
                fprintf(stderr, "create_topics: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                        why ? why : rd_kafka_err2str(err));
                rc = 1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy_array(topics, nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}
