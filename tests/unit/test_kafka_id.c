/* fh_kafka_cluster_id: the id of a cluster (librdkafka's mock cluster here: "mockCluster<hex>",
 * new for every cluster), and no id within the timeout when nothing answers. */
#include "fh_kafka.h"
#include "fh_test.h"

#include <librdkafka/rdkafka_mock.h>
#include <string.h>

static rd_kafka_t *producer_of(const char *bootstrap)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "log_level", "0", err, sizeof(err))) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!rk)
        rd_kafka_conf_destroy(c);
    return rk;
}

TEST(kafka_cluster_id_of_two_mock_clusters_differ_and_say_mock)
{
    char err[256], id[2][256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "log_level", "0", err, sizeof(err));
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    CHECK(owner != NULL);
    if (!owner)
        return;
    rd_kafka_mock_cluster_t *mc[2] = {rd_kafka_mock_cluster_new(owner, 1),
                                      rd_kafka_mock_cluster_new(owner, 1)};
    for (int i = 0; i < 2; i++) {
        CHECK(mc[i] != NULL);
        rd_kafka_t *rk = mc[i] ? producer_of(rd_kafka_mock_cluster_bootstraps(mc[i])) : NULL;
        CHECK(rk != NULL);
        CHECK(rk &&
              fh_kafka_cluster_id(rk, 5000, id[i], sizeof(id[i])) == FH_KAFKA_CLUSTER_ID_KNOWN);
        CHECK(fh_kafka_id_is_mock(id[i]));
        if (rk)
            rd_kafka_destroy(rk);
    }
    CHECK(strcmp(id[0], id[1]) != 0);
    CHECK(!fh_kafka_id_is_mock("F89oG7_kuGa71GaeTVpOsg"));
    CHECK(!fh_kafka_id_is_mock(NULL));
    for (int i = 0; i < 2; i++)
        if (mc[i])
            rd_kafka_mock_cluster_destroy(mc[i]);
    rd_kafka_destroy(owner);
}

TEST(kafka_cluster_id_is_empty_when_nothing_answers_in_time)
{
    char id[64] = "stale";
    rd_kafka_t *rk = producer_of("127.0.0.1:1");
    CHECK(rk != NULL);
    if (!rk)
        return;
    CHECK(fh_kafka_cluster_id(rk, 300, id, sizeof(id)) == FH_KAFKA_CLUSTER_ID_TIMEOUT);
    CHECK_STR(id, "");
    rd_kafka_destroy(rk);
}
