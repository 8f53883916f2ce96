#include "health.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "fh_log.h"
#include "memory.h"
#include "view/cimetrics.h"
#include "view/view.h"

/* Records lost, for /metrics and /readyz. firehose_records_lost_total has one series per
 * consumer, topic and partition that lost records, made when the first loss is reported; past
 * LOST_SERIES - LOST_SPARE series a consumer's further partitions of a topic share its
 * partition="other" series (LOST_SPARE leaves room for those). */
#define LOST_SERIES 64
#define LOST_SPARE 16
#define LOST_CONSUMERS 8

typedef struct lost_series {
    char consumer[32], topic[256];
    int partition; /* -1: "other" */
    char labels[384];
    fh_metric *m;
} lost_series;

static struct {
    pthread_mutex_t mu;
    lost_series s[LOST_SERIES];
    int n;
    struct {
        char name[32];
        long long records;
    } by[LOST_CONSUMERS];
    int nby;
} lost = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The series of consumer/topic/partition, made when missing; NULL when none is left. Under
 * lost.mu. */
static fh_metric *lost_metric(const char *consumer, const char *topic, int partition)
{
    for (int i = 0; i < lost.n; i++)
        if (lost.s[i].partition == partition && strcmp(lost.s[i].consumer, consumer) == 0 &&
            strcmp(lost.s[i].topic, topic) == 0)
            return lost.s[i].m;
    if (lost.n >= (partition >= 0 ? LOST_SERIES - LOST_SPARE : LOST_SERIES))
        return partition >= 0 ? lost_metric(consumer, topic, -1) : NULL;
    lost_series *s = &lost.s[lost.n];
    snprintf(s->consumer, sizeof(s->consumer), "%s", consumer);
    snprintf(s->topic, sizeof(s->topic), "%s", topic);
    s->partition = partition;
    char part[16];
    snprintf(part, sizeof(part), "%d", partition);
    snprintf(s->labels, sizeof(s->labels), "consumer=\"%s\",topic=\"%s\",partition=\"%s\"",
             consumer, topic, partition >= 0 ? part : "other");
    /* labels lives in a static table that is never reused: it outlasts the registry's use */
    s->m = fh_metric_new("firehose_records_lost_total", s->labels,
                         "Records a consumer still needed that Kafka had deleted (retention, or "
                         "the embedded cluster's cap), by consumer, topic and partition.",
                         0);
    if (!s->m)
        return NULL;
    lost.n++;
    return s->m;
}

void health_records_lost(const char *consumer, const char *topic, int partition, int64_t from,
                         int64_t to)
{
    if (to <= from)
        return;
    fh_log(FH_LOG_ERROR, "records.lost",
           "consumer=%s topic=%s partition=%d from=%" PRId64 " to=%" PRId64 " records=%" PRId64
           " note=\"Kafka deleted these records before this consumer read them\"",
           consumer, topic, partition, from, to, to - from);
    pthread_mutex_lock(&lost.mu);
    fh_metric_add(lost_metric(consumer, topic, partition), to - from);
    int i = 0;
    while (i < lost.nby && strcmp(lost.by[i].name, consumer) != 0)
        i++;
    if (i == lost.nby && lost.nby < LOST_CONSUMERS)
        snprintf(lost.by[lost.nby++].name, sizeof(lost.by[i].name), "%s", consumer);
    if (i < lost.nby)
        lost.by[i].records += to - from;
    pthread_mutex_unlock(&lost.mu);
}

/* Appends ,"records_lost":{...} when some consumer lost records: those of this run, and for the
 * view, what its file says it lost in any run. Returns the total. */
static long long lost_json(fh_view *v, fh_buf *out)
{
    long long total = 0, view = view_records_lost(v);
    char body[1024];
    size_t o = 0;
    pthread_mutex_lock(&lost.mu);
    for (int i = 0; i < lost.nby; i++) {
        if (strcmp(lost.by[i].name, "view") == 0)
            continue;
        int k = snprintf(body + o, sizeof(body) - o, "%s\"%s\":%lld", o ? "," : "", lost.by[i].name,
                         lost.by[i].records);
        if (k > 0 && (size_t)k < sizeof(body) - o)
            o += (size_t)k;
        total += lost.by[i].records;
    }
    pthread_mutex_unlock(&lost.mu);
    if (view > 0) {
        int k = snprintf(body + o, sizeof(body) - o, "%s\"view\":%lld", o ? "," : "", view);
        if (k > 0 && (size_t)k < sizeof(body) - o)
            o += (size_t)k;
        total += view;
    }
    body[o] = '\0';
    if (total)
        fh_buf_printf(out, ",\"records_lost\":{%s}", body);
    return total;
}

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
    health_ctx *h = ctx;
    fh_broker *b = h->b;
    (void)req;
    resp->max_age = -1;
    resp->no_etag = 1;
    if (atomic_load(&b->ready) && !atomic_load(&b->kafka_down)) {
        /* Lost records do not heal by waiting and the broker still serves what it has: it stays
         * in rotation (200) and says so; alert on firehose_records_lost_total. */
        fh_buf body;
        fh_buf_init(&body, 4096);
        if (lost_json(h->view, &body))
            fh_buf_printf(&resp->body,
                          "{\"status\":\"degraded\",\"reason\":\"Kafka deleted records before "
                          "this broker read them (topic retention, or the embedded Kafka's "
                          "per-partition cap): answers, streams and webhooks may miss their "
                          "events; see the records.lost log lines\"%.*s}\n",
                          (int)body.len, body.data ? body.data : "");
        else
            fh_buf_printf(&resp->body, "{\"status\":\"ready\"}\n");
        fh_buf_free(&body);
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
    health_ctx *h = ctx;
    (void)req;
    memory_refresh(h->mem);
    resp->max_age = -1;
    resp->no_etag = 1;
    resp->content_type = "text/plain; version=0.0.4";
    fh_metrics_render(&resp->body);
}

size_t health_routes(health_ctx *ctx, fh_http_route *routes)
{
    const fh_http_route r[FH_HEALTH_ROUTES] = {
        {"GET", "/healthz", 0, "", healthz, ctx},
        {"GET", "/readyz", 0, "", readyz, ctx},
        {"GET", "/metrics", 0, "", metrics, ctx},
        /* CI metrics name builders and branches, as the REST answers do: read scope; its ctx is
         * the view */
        {"GET", "/metrics/ci", FH_SCOPE_READ, "", view_ci_handle, ctx->view},
    };
    for (size_t i = 0; i < FH_HEALTH_ROUTES; i++)
        routes[i] = r[i];
    return FH_HEALTH_ROUTES;
}
