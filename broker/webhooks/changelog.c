/* webhooks/changelog.c: the records of the two webhook topics and the producer that writes them
 * (docs/webhooks.md, "Across hosts").
 *
 *   endpoints topic (topics.webhook_endpoints, 1 partition, compacted): key the endpoint id,
 *     value the endpoint as a JSON object with its secrets sealed (fh_aead), null to delete.
 *   delivery changelog (topics.webhook_deliveries, compact,delete, retention webhooks.history_ms):
 *     "p/EVENT/KIND"  one rendered body: a JSON line, "\n", the body's bytes; the JSON line also
 *                     names the deliveries of the body the record creates ("ds": endpoint ids,
 *                     with the event's fields they need), so a new delivery has no record of
 *                     its own
 *     "d/MSG"         a delivery's current state (the latest one wins compaction)
 *     "a/MSG/N"       failed attempt N of a delivery (each its own key: the log keeps them all)
 *     "r/MSG"         a redeliver request; "v/ENDPOINT/SINCE" a recover request
 *   A delivery's records go to the changelog partition of the slot its event came from
 *   (wh_cl_partition), after the body they need, so the owner of a slot finds everything in one
 *   partition, in order.
 *
 * The producer is idempotent with acks=all; its delivery reports are served by the reader thread
 * (rd_kafka_poll) and by wh_cl_flush. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fh_log.h"

/* An API write waiting for its record's acknowledgement: the delivery report fills it (under
 * rd_mu) and frees it when the waiter gave up. */
typedef struct wh_pub {
    int kind; /* WH_OPAQUE_PUB */
    int done, abandoned;
    rd_kafka_resp_err_t err;
    int64_t offset;
} wh_pub;

int wh_cl_partition(const fh_webhooks *w, int slot)
{
    int p = slot >= DERIVED_SLOT0 ? slot - DERIVED_SLOT0 : slot;
    return w->cl_parts > 0 ? p % w->cl_parts : 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    fh_webhooks *w = opaque;
    wh_pub *p = m->_private;
    (void)rk;
    if (p && *(const int *)m->_private == WH_OPAQUE_OUTCOME) {
        atomic_fetch_sub(&w->cl_outcomes, 1);
        p = (void *)((wh_outcome_tag *)m->_private)->batch;
    }
    if (p && *(const int *)p == WH_OPAQUE_BATCH) {
        wh_batch *b = (wh_batch *)p;
        if (m->err) {
            atomic_store(&b->failed, 1);
            fh_log(FH_LOG_ERROR, "webhook.changelog", "topic=%s partition=%d error=\"%s\"",
                   rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
        }
        if (atomic_fetch_sub(&b->pending, 1) == 1)
            wh_wake_thread(w); /* its offsets can be stored */
        return;
    }
    if (p) {
        pthread_mutex_lock(&w->rd_mu);
        if (p->abandoned) {
            free(p);
        } else {
            p->done = 1;
            p->err = m->err;
            p->offset = m->offset;
            pthread_cond_broadcast(&w->rd_cond);
        }
        pthread_mutex_unlock(&w->rd_mu);
        return;
    }
    if (m->err) {
        atomic_fetch_add(&w->cl_failed, 1);
        fh_log(FH_LOG_ERROR, "webhook.changelog", "topic=%s partition=%d error=\"%s\"",
               rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
    }
}

static int produce_wait(fh_webhooks *w, const char *topic, int32_t part, const char *key,
                        const char *val, size_t n, char *errbuf, size_t errsize);

wh_batch *wh_batch_new(void)
{
    wh_batch *b = calloc(1, sizeof(*b));
    if (b) {
        b->kind = WH_OPAQUE_BATCH;
        b->outcome = (wh_outcome_tag){.kind = WH_OPAQUE_OUTCOME, .batch = b};
        atomic_store(&b->pending, 1);
    }
    return b;
}

void wh_batch_free(wh_batch *b)
{
    if (!b)
        return;
    if (b->store)
        rd_kafka_topic_partition_list_destroy(b->store);
    if (b->first)
        rd_kafka_topic_partition_list_destroy(b->first);
    free(b);
}

static int produce(fh_webhooks *w, const char *topic, int32_t part, const char *key,
                   const void *val, size_t n, void *opaque)
{
    int own =
        w->tag_own && opaque &&
        (*(const int *)opaque == WH_OPAQUE_BATCH || *(const int *)opaque == WH_OPAQUE_OUTCOME);
    for (int tries = 0; tries < 100; tries++) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            w->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)val, n),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque),
            /* the webhook thread's own records, written to this file before they were produced
             * (not the migration's, nor requests and endpoints: the reader applies those) */
            RD_KAFKA_V_HEADER("fh-by", &w->incarnation, own ? sizeof(w->incarnation) : 0),
            RD_KAFKA_V_END);
        if (!err)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fh_log(FH_LOG_ERROR, "webhook.produce", "topic=%s error=\"%s\"", topic,
                   rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(w->prod, 100); /* the queue drains as Kafka acknowledges */
    }
    fh_log(FH_LOG_ERROR, "webhook.produce", "topic=%s error=\"queue full for 10 s\"", topic);
    return -1;
}

/* A changelog record of the webhook thread: counted in its open batch (consumer.c stores the
 * batch's offsets once Kafka acknowledged all of them), and an attempt's outcome also in
 * cl_outcomes (wh_backlogged: new attempts wait while too many outcomes are unacknowledged; a
 * new delivery's record does not hold them up, its event's offset waits for it anyway). */
static int produce_cl(fh_webhooks *w, int32_t part, const char *key, const void *val, size_t n,
                      int outcome)
{
    wh_batch *b = w->bcur;
    void *opaque = b;
    if (b) {
        atomic_fetch_add(&b->pending, 1);
        if (outcome) {
            atomic_fetch_add(&w->cl_outcomes, 1);
            opaque = &b->outcome;
        }
    }
    int rc = produce(w, w->cl_topic, part, key, val, n, opaque);
    if (rc && b) {
        atomic_fetch_sub(&b->pending, 1);
        if (outcome)
            atomic_fetch_sub(&w->cl_outcomes, 1);
    }
    return rc;
}

/* ---- the delivery changelog ------------------------------------------------------------------ */

static void put_int_or_null(fh_buf *o, const char *name, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        fh_buf_printf(o, ",\"%s\":null", name);
    else
        fh_buf_printf(o, ",\"%s\":%lld", name, (long long)sqlite3_column_int64(st, col));
}

static void put_str(fh_buf *o, const char *name, sqlite3_stmt *st, int col)
{
    fh_buf_printf(o, ",\"%s\":", name);
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        fh_buf_printf(o, "null");
    else
        fh_buf_json_str(o, (const char *)sqlite3_column_text(st, col));
}

int wh_cl_delivery(fh_webhooks *w, sqlite3 *db, int64_t id, const char *msg_id, int outcome)
{
    static const char sql[] =
        "SELECT d.msg_id, d.endpoint_id, d.event_id, d.event_type, p.kind, d.part, d.kafka_offset,"
        " d.produced_ms, d.build_key, d.state, d.tries, d.attempts, d.next_ms, d.created_ms,"
        " d.updated_ms, d.last_status, d.last_error, d.last_latency_ms, d.last_response,"
        " d.last_instance, d.requeued FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id"
        " WHERE d.id = ?1 OR d.msg_id = ?2";
    sqlite3_stmt *st = NULL;
    char key[WHS_ID_SIZE + 4];
    fh_buf o;
    int rc = -1;
    /* the thread's connection keeps it prepared; another (the migration's) prepares its own */
    int mine = db == w->db;
    if (mine && !w->cl_st &&
        sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &w->cl_st, NULL) != SQLITE_OK)
        return -1;
    if (mine)
        st = w->cl_st;
    else if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    if (msg_id)
        sqlite3_bind_text(st, 2, msg_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        if (mine) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
        } else {
            sqlite3_finalize(st);
        }
        return -1;
    }
    fh_buf_init(&o, 1 << 20);
    fh_buf_printf(&o, "{\"t\":\"d\"");
    put_str(&o, "m", st, 0);
    put_str(&o, "ep", st, 1);
    put_str(&o, "e", st, 2);
    put_str(&o, "ty", st, 3);
    put_str(&o, "k", st, 4);
    static const char *const ints[] = {"p", "o", "pr"};
    for (int i = 0; i < 3; i++)
        put_int_or_null(&o, ints[i], st, 5 + i);
    put_str(&o, "bk", st, 8);
    static const char *const more[] = {"s", "tr", "a", "n", "c", "u", "ls"};
    for (int i = 0; i < 7; i++)
        put_int_or_null(&o, more[i], st, 9 + i);
    put_str(&o, "le", st, 16);
    put_int_or_null(&o, "ll", st, 17);
    put_str(&o, "lr", st, 18);
    put_str(&o, "li", st, 19);
    put_int_or_null(&o, "rq", st, 20);
    fh_buf_printf(&o, "}");
    snprintf(key, sizeof(key), "d/%s", (const char *)sqlite3_column_text(st, 0));
    int slot = sqlite3_column_int(st, 5);
    if (mine) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else {
        sqlite3_finalize(st);
    }
    if (o.len < o.max)
        rc = produce_cl(w, wh_cl_partition(w, slot), key, o.data, o.len, outcome);
    fh_buf_free(&o);
    return rc;
}

int wh_cl_attempt(fh_webhooks *w, int slot, const char *msg_id, int n, int64_t at, int status,
                  long latency, const char *error, const char *resp, size_t resp_len,
                  const char *instance)
{
    char key[WHS_ID_SIZE + 16];
    fh_buf o;
    fh_buf_init(&o, 1 << 20);
    fh_buf_printf(&o, "{\"t\":\"a\",\"m\":");
    fh_buf_json_str(&o, msg_id);
    fh_buf_printf(&o, ",\"n\":%d,\"at\":%lld,\"st\":%d,\"ll\":%ld,\"le\":", n, (long long)at,
                  status, latency);
    if (error && *error)
        fh_buf_json_str(&o, error);
    else
        fh_buf_printf(&o, "null");
    fh_buf_printf(&o, ",\"lr\":");
    if (resp_len)
        fh_buf_json_strn(&o, resp, resp_len);
    else
        fh_buf_printf(&o, "null");
    fh_buf_printf(&o, ",\"li\":");
    fh_buf_json_str(&o, instance);
    fh_buf_printf(&o, "}");
    snprintf(key, sizeof(key), "a/%s/%d", msg_id, n);
    int rc = produce_cl(w, wh_cl_partition(w, slot), key, o.data, o.len, 1);
    fh_buf_free(&o);
    return rc;
}

int wh_cl_payload(fh_webhooks *w, int slot, const char *event_id, const char *kind,
                  const void *body, size_t n, int64_t created_ms, const wh_cl_new *nw)
{
    char key[256];
    fh_buf o;
    size_t neps = nw && nw->eps ? strlen(nw->eps) : 0;
    fh_buf_init(&o, n + neps + 2048);
    fh_buf_printf(&o, "{\"t\":\"p\",\"e\":");
    fh_buf_json_str(&o, event_id);
    fh_buf_printf(&o, ",\"k\":");
    fh_buf_json_str(&o, kind);
    fh_buf_printf(&o, ",\"c\":%lld", (long long)created_ms);
    if (neps) {
        fh_buf_printf(&o, ",\"v\":");
        fh_buf_json_str(&o, nw->variant);
        fh_buf_printf(&o, ",\"ty\":");
        fh_buf_json_str(&o, nw->type);
        fh_buf_printf(&o, ",\"p\":%d,\"o\":%lld,\"pr\":%lld,\"bk\":", slot, (long long)nw->offset,
                      (long long)nw->produced_ms);
        fh_buf_json_str(&o, nw->build_key);
        fh_buf_printf(&o, ",\"ds\":[");
        fh_buf_append(&o, nw->eps, neps);
        fh_buf_printf(&o, "]");
    }
    fh_buf_printf(&o, "}\n");
    if (o.len >= o.max) {
        fh_buf_free(&o);
        return -1;
    }
    fh_buf_append(&o, body, n);
    snprintf(key, sizeof(key), "p/%s/%s", event_id, kind);
    int rc = produce_cl(w, wh_cl_partition(w, slot), key, o.data, o.len, 0);
    fh_buf_free(&o);
    return rc;
}

int wh_cl_request(fh_webhooks *w, int part, const char *endpoint, const char *msg_id,
                  int64_t since_ms, char *errbuf, size_t errsize)
{
    char key[256];
    fh_buf o;
    int rc = 0;
    fh_buf_init(&o, 4096);
    fh_buf_printf(&o, "{\"t\":\"%s\",\"ep\":", msg_id ? "r" : "v");
    fh_buf_json_str(&o, endpoint);
    if (msg_id) {
        fh_buf_printf(&o, ",\"m\":");
        fh_buf_json_str(&o, msg_id);
        snprintf(key, sizeof(key), "r/%s", msg_id);
    } else {
        fh_buf_printf(&o, ",\"since\":%lld", (long long)since_ms);
        snprintf(key, sizeof(key), "v/%s/%lld", endpoint, (long long)since_ms);
    }
    fh_buf_printf(&o, ",\"at\":%lld}", (long long)fh_now_ms());
    for (int p = part < 0 ? 0 : part; p < (part < 0 ? w->cl_parts : part + 1) && !rc; p++)
        rc = produce_wait(w, w->cl_topic, p, key, o.data, o.len, errbuf, errsize);
    fh_buf_free(&o);
    return rc;
}

int wh_cl_flush(fh_webhooks *w, int timeout_ms)
{
    return rd_kafka_flush(w->prod, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* ---- endpoints ------------------------------------------------------------------------------- */

json_t *wh_ep_row(sqlite3 *db, const char *id)
{
    static const char sql[] =
        "SELECT id, url, filter, format, description, secret, old_secret, old_secret_until_ms,"
        " enabled, disabled_reason, ordered, created_ms, updated_ms FROM endpoints WHERE id = ?1";
    static const char *const names[] = {"id",          "url",
                                        "filter",      "format",
                                        "description", "secret",
                                        "old_secret",  "old_secret_until_ms",
                                        "enabled",     "disabled_reason",
                                        "ordered",     "created_ms",
                                        "updated_ms"};
    sqlite3_stmt *st = NULL;
    json_t *o = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && (o = json_object())) {
        for (int i = 0; i < 13; i++) {
            json_t *v;
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_NULL:
                v = json_null();
                break;
            case SQLITE_INTEGER:
                v = json_integer(sqlite3_column_int64(st, i));
                break;
            default:
                v = json_string((const char *)sqlite3_column_text(st, i));
            }
            json_object_set_new(o, names[i], v);
        }
    }
    sqlite3_finalize(st);
    return o;
}

/* Produces one record and waits (bounded by webhooks.api_wait_ms) for Kafka's acknowledgement
 * (acks=all), then for this instance's reader to have applied its offset, so the answer that
 * follows shows the change (read-your-writes). 0, or -1 with errbuf naming the cause. */
static int produce_wait(fh_webhooks *w, const char *topic, int32_t part, const char *key,
                        const char *val, size_t n, char *errbuf, size_t errsize)
{
    wh_pub *p = calloc(1, sizeof(*p));
    int rc = -1, is_ep = strcmp(topic, w->ep_topic) == 0;
    if (!p) {
        snprintf(errbuf, errsize, "out of memory");
        return -1;
    }
    p->kind = WH_OPAQUE_PUB;
    if (produce(w, topic, part, key, val, n, p)) {
        free(p);
        snprintf(errbuf, errsize, "Kafka refused the record (topic %s)", topic);
        return -1;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += w->api_wait_ms / 1000;
    dl.tv_nsec += (w->api_wait_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->rd_mu);
    while (!p->done && pthread_cond_timedwait(&w->rd_cond, &w->rd_mu, &dl) == 0)
        ;
    if (!p->done) {
        p->abandoned = 1; /* the delivery report frees it */
        p = NULL;
        snprintf(errbuf, errsize,
                 "Kafka did not acknowledge the change on %s within %lld ms "
                 "(webhooks.api_wait_ms); it may still be applied",
                 topic, w->api_wait_ms);
    } else if (p->err) {
        snprintf(errbuf, errsize, "Kafka did not take the change on %s: %s", topic,
                 rd_kafka_err2str(p->err));
    } else {
#define APPLIED() (is_ep ? w->ep_applied : atomic_load(&w->cl_applied[part]))
        while (APPLIED() <= p->offset && pthread_cond_timedwait(&w->rd_cond, &w->rd_mu, &dl) == 0)
            ;
        fh_log(FH_LOG_DEBUG, "webhook.published", "topic=%s partition=%d offset=%lld applied=%lld",
               topic, (int)part, (long long)p->offset, (long long)APPLIED());
        if (APPLIED() > p->offset)
            rc = 0;
        else
            snprintf(errbuf, errsize,
                     "Kafka took the change (%s [%d] offset %lld) but this instance did not "
                     "read it back within %lld ms (webhooks.api_wait_ms)",
                     topic, (int)part, (long long)p->offset, w->api_wait_ms);
#undef APPLIED
    }
    pthread_mutex_unlock(&w->rd_mu);
    free(p);
    return rc;
}

int wh_ep_publish(fh_webhooks *w, const char *id, json_t *value, int wait, char *errbuf,
                  size_t errsize)
{
    char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;
    int rc;
    if (value && !text) {
        snprintf(errbuf, errsize, "out of memory");
        return -1;
    }
    size_t n = text ? strlen(text) : 0;
    if (wait) {
        rc = produce_wait(w, w->ep_topic, 0, id, text, n, errbuf, errsize);
    } else if ((rc = produce(w, w->ep_topic, 0, id, text, n, NULL))) {
        snprintf(errbuf, errsize, "Kafka refused the endpoint record (topic %s)", w->ep_topic);
    }
    free(text);
    return rc;
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static const char *const producer_defaults[] = {
    "acks=all",
    "enable.idempotence=true",
    "linger.ms=5",
    "message.timeout.ms=30000",
    "compression.type=lz4",
    "log_level=4",
    NULL,
};

int wh_cl_open(fh_webhooks *w, char *err, size_t errsize)
{
    fh_broker *b = w->b;
    rd_kafka_conf_t *conf;
    char e[512];
    if (fh_kafka_conf(&b->cfg, b->bootstrap, producer_defaults, &conf, err, errsize))
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, w);
    if (!(w->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e)))) {
        snprintf(err, errsize, "webhook producer: %s", e);
        return -1;
    }
    int parts = (int)fh_config_int(&b->cfg, "topics.partitions");
    if (b->embedded) {
        if (fh_kafka_embedded_topic(b->embedded, w->ep_topic, 1, err, errsize) ||
            fh_kafka_embedded_topic(b->embedded, w->cl_topic, parts, err, errsize))
            return -1;
    } else if (fh_config_bool(&b->cfg, "topics.create")) {
        char retention[64];
        const char *const ep_cfg[] = {"cleanup.policy=compact", NULL};
        const char *const cl_cfg[] = {"cleanup.policy=compact,delete", retention, NULL};
        int repl = (int)fh_config_int(&b->cfg, "topics.replication");
        snprintf(retention, sizeof(retention), "retention.ms=%lld", w->history_ms);
        if (fh_kafka_create_topic_list(w->prod, &w->ep_topic, 1, 1, repl, ep_cfg, 15000, e,
                                       sizeof(e)) ||
            fh_kafka_create_topic_list(w->prod, &w->cl_topic, 1, parts, repl, cl_cfg, 15000, e,
                                       sizeof(e)))
            fh_log(FH_LOG_WARN, "webhook.topics", "error=\"%s\"", e);
    }
    int32_t ids[MAX_PARTS / 2];
    int n = 0;
    if (fh_consumer_partitions(w->prod, w->cl_topic, 15000, ids, MAX_PARTS / 2, &n, e, sizeof(e)) ||
        n <= 0 || n > MAX_PARTS / 2) {
        snprintf(err, errsize,
                 "the delivery changelog %s has no usable partitions (create it, or set "
                 "topics.create): %s",
                 w->cl_topic, e);
        return -1;
    }
    w->cl_parts = n;
    if (!(w->bcur = wh_batch_new())) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    return 0;
}

void wh_cl_close(fh_webhooks *w)
{
    if (!w->prod)
        return;
    if (wh_cl_flush(w, 10000))
        fh_log(FH_LOG_WARN, "webhook.changelog", "error=\"records left unacknowledged at stop\"");
    rd_kafka_destroy(w->prod); /* every delivery report has run: the batches are free to go */
    w->prod = NULL;
    while (w->bhead) {
        wh_batch *b = w->bhead;
        w->bhead = b->next;
        wh_batch_free(b);
    }
    w->btail = NULL;
    wh_batch_free(w->bcur);
    w->bcur = NULL;
}
