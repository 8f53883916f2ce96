#include "health.h"

#include <stdatomic.h>

static void healthz(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    (void)ctx;
    (void)req;
    resp->max_age = -1;
    resp->no_etag = 1;
    fh_buf_printf(&resp->body, "{\"status\":\"ok\"}\n");
}

static void readyz(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    fh_broker *b = ctx;
    (void)req;
    resp->max_age = -1;
    resp->no_etag = 1;
    if (atomic_load(&b->ready) && !atomic_load(&b->kafka_down)) {
        fh_buf_printf(&resp->body, "{\"status\":\"ready\"}\n");
        return;
    }
    resp->status = 503;
    if (atomic_load(&b->kafka_down)) {
        fh_buf_printf(&resp->body,
                      "{\"status\":\"not_ready\",\"reason\":\"Kafka is unreachable "
                      "(every broker down); serving what is known, resuming when it is "
                      "back\"}\n");
        return;
    }
    fh_buf_printf(&resp->body,
                  "{\"status\":\"not_ready\",\"reason\":\"the Kafka consumer has no partitions yet "
                  "(Kafka unreachable or still joining)\"}\n");
}

static void metrics(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    (void)ctx;
    (void)req;
    resp->max_age = -1;
    resp->no_etag = 1;
    resp->content_type = "text/plain; version=0.0.4";
    fh_metrics_render(&resp->body);
}

size_t health_routes(fh_broker *b, fh_http_route *routes)
{
    const fh_http_route r[FH_HEALTH_ROUTES] = {
        {"GET", "/healthz", 0, "", healthz, b},
        {"GET", "/readyz", 0, "", readyz, b},
        {"GET", "/metrics", 0, "", metrics, b},
    };
    for (size_t i = 0; i < FH_HEALTH_ROUTES; i++)
        routes[i] = r[i];
    return FH_HEALTH_ROUTES;
}
