/* webhooks/reader.c: the reader thread. It reads the endpoints topic and every partition of the
 * delivery changelog (changelog.c describes their records) into this instance's SQLite file, the
 * read model the API answers from and the webhook thread delivers from, in transactions that also
 * record the next offset of each partition (wh_offsets): the file restarts where it stopped, and
 * a deleted file is rebuilt from the topics.
 *
 * It is the only writer of endpoints; the webhook thread writes the deliveries of the slots it
 * owns before producing them, so applying a delivery state keeps the newer one (requeued, then
 * attempts). After each batch it publishes the offsets it reached (cl_applied for the webhook
 * thread's catch-up, ep_applied under rd_mu for the API's read-your-writes) and pokes the webhook
 * thread when endpoints or requests changed. It also serves the producer's delivery reports. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_log.h"

#define BATCH 500
/* the longest the reader's offsets go unrecorded in the file while it reads (apply_batch) */
#define RD_SAVE_MS 1000

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void bind_text(sqlite3_stmt *st, int i, json_t *o, const char *k)
{
    const char *s = jstr(o, k);
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

static void bind_int(sqlite3_stmt *st, int i, json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v))
        sqlite3_bind_int64(st, i, json_integer_value(v));
    else if (json_is_boolean(v))
        sqlite3_bind_int(st, i, json_is_true(v));
}

/* The reader's prepared statement for sql (a string constant: cached by its address, prepared
 * once on the reader's connection, finalized by wh_reader_stop); NULL when it does not prepare. */
static sqlite3_stmt *cached(fh_webhooks *w, sqlite3 *db, const char *sql)
{
    int i = 0;
    for (; i < WH_RD_STMTS && w->rd_sql[i]; i++)
        if (w->rd_sql[i] == sql)
            return w->rd_st[i];
    if (i == WH_RD_STMTS ||
        sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &w->rd_st[i], NULL) != SQLITE_OK)
        return NULL;
    w->rd_sql[i] = sql;
    return w->rd_st[i];
}

/* Runs sql with the JSON members names[i] bound to ?i+1 (strings as text, integers as such);
 * sql is a constant (cached) unless once. */
static int run(fh_webhooks *w, sqlite3 *db, const char *sql, int once, json_t *o,
               const char *const *names, int n)
{
    sqlite3_stmt *st = NULL;
    if (once) {
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
            return -1;
    } else if (!(st = cached(w, db, sql))) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        json_t *v = json_object_get(o, names[i]);
        if (json_is_string(v))
            bind_text(st, i + 1, o, names[i]);
        else
            bind_int(st, i + 1, o, names[i]);
    }
    int rc = sqlite3_step(st);
    if (once) {
        sqlite3_finalize(st);
    } else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static int apply_endpoint(fh_webhooks *w, sqlite3 *db, const char *id, size_t idlen, json_t *o)
{
    char key[WHS_ID_SIZE];
    snprintf(key, sizeof(key), "%.*s", (int)idlen, id);
    if (!o) {
        /* a tombstone: the endpoint goes, with its deliveries and their attempts */
        json_t *k = json_pack("{ss}", "id", key);
        static const char *const idn[] = {"id"};
        int rc = run(w, db,
                     "DELETE FROM attempts WHERE delivery_id IN"
                     " (SELECT id FROM deliveries WHERE endpoint_id = ?1)",
                     0, k, idn, 1) ||
                 run(w, db, "DELETE FROM deliveries WHERE endpoint_id = ?1", 0, k, idn, 1) ||
                 run(w, db, "DELETE FROM endpoints WHERE id = ?1", 0, k, idn, 1);
        json_decref(k);
        return rc ? -1 : whs_bump_version(db);
    }
    static const char *const names[] = {"id",          "url",
                                        "filter",      "format",
                                        "description", "secret",
                                        "old_secret",  "old_secret_until_ms",
                                        "enabled",     "disabled_reason",
                                        "ordered",     "created_ms",
                                        "updated_ms"};
    /* failing_since_ms is each instance's own (its deliveries' streak): kept, except that
     * enabling an endpoint starts it afresh */
    if (run(w, db,
            "INSERT INTO endpoints(id, url, filter, format, description, secret, old_secret,"
            " old_secret_until_ms, enabled, disabled_reason, ordered, created_ms, updated_ms)"
            " VALUES(?1, ?2, ?3, ?4, coalesce(?5, ''), ?6, ?7, ?8, coalesce(?9, 1), ?10,"
            " coalesce(?11, 0), ?12, ?13) ON CONFLICT(id) DO UPDATE SET url = excluded.url,"
            " filter = excluded.filter, format = excluded.format,"
            " description = excluded.description, secret = excluded.secret,"
            " old_secret = excluded.old_secret, old_secret_until_ms = excluded.old_secret_until_ms,"
            " failing_since_ms = CASE WHEN excluded.enabled = 1 AND endpoints.enabled = 0 THEN NULL"
            "  ELSE endpoints.failing_since_ms END,"
            " enabled = excluded.enabled, disabled_reason = excluded.disabled_reason,"
            " ordered = excluded.ordered, created_ms = excluded.created_ms,"
            " updated_ms = excluded.updated_ms",
            0, o, names, 13))
        return -1;
    return whs_bump_version(db);
}

/* A delivery's state: inserted, or kept when the local one is newer (requeued first, then
 * attempts: an attempt that finished before a redelivery must not undo it). */
static int apply_delivery(fh_webhooks *w, sqlite3 *db, json_t *o)
{
    static const char *const names[] = {"m",  "ep", "e",  "ty", "k",  "p",  "o",
                                        "pr", "bk", "s",  "tr", "a",  "n",  "c",
                                        "u",  "ls", "le", "ll", "lr", "li", "rq"};
    return run(w, db,
               "INSERT INTO deliveries(msg_id, endpoint_id, event_id, event_type, payload_id, part,"
               " kafka_offset, produced_ms, build_key, state, tries, attempts, next_ms, created_ms,"
               " updated_ms, last_status, last_error, last_latency_ms, last_response,"
               " last_instance, requeued) VALUES(?1, ?2, ?3, ?4,"
               " coalesce((SELECT id FROM payloads WHERE event_id = ?3 AND kind = ?5), -1), ?6,"
               " ?7, ?8, coalesce(?9, ''), ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,"
               " ?20, coalesce(?21, 0)) ON CONFLICT(msg_id) DO UPDATE SET"
               " payload_id = CASE WHEN deliveries.payload_id < 0 THEN excluded.payload_id"
               "  ELSE deliveries.payload_id END,"
               " state = excluded.state, tries = excluded.tries, attempts = excluded.attempts,"
               " next_ms = excluded.next_ms, updated_ms = excluded.updated_ms,"
               " last_status = excluded.last_status, last_error = excluded.last_error,"
               " last_latency_ms = excluded.last_latency_ms,"
               " last_response = excluded.last_response, last_instance = excluded.last_instance,"
               " requeued = excluded.requeued WHERE excluded.requeued > deliveries.requeued OR"
               " (excluded.requeued = deliveries.requeued AND"
               "  excluded.attempts >= deliveries.attempts)",
               0, o, names, 21);
}

/* The deliveries a body record creates ("ds": ["ENDPOINT",ORDERED] items): inserted pending
 * unless there (a delivery state applied before its body keeps its state and gets the body). */
static int apply_new(fh_webhooks *w, sqlite3 *db, json_t *o, int64_t payload)
{
    json_t *ds = json_object_get(o, "ds");
    const char *ev = jstr(o, "e"), *variant = jstr(o, "v");
    if (!json_is_array(ds) || !ev)
        return 0;
    sqlite3_stmt *st =
        cached(w, db,
               "INSERT INTO deliveries(msg_id, endpoint_id, event_id, event_type, payload_id, part,"
               " kafka_offset, produced_ms, build_key, next_ms, created_ms, updated_ms)"
               " VALUES(?1, ?2, ?3, coalesce(?4, ''), ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)"
               " ON CONFLICT(msg_id) DO UPDATE SET payload_id = excluded.payload_id"
               " WHERE deliveries.payload_id < 0");
    if (!st)
        return -1;
    size_t i;
    json_t *d;
    char msg_id[WHS_ID_SIZE];
    json_array_foreach(ds, i, d)
    {
        const char *ep = json_string_value(json_array_get(d, 0));
        if (!ep)
            continue;
        whs_msg_id(ep, ev, variant ? variant : "", msg_id);
        sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, ep, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ev, -1, SQLITE_STATIC);
        bind_text(st, 4, o, "ty");
        sqlite3_bind_int64(st, 5, payload);
        bind_int(st, 6, o, "p");
        bind_int(st, 7, o, "o");
        bind_int(st, 8, o, "pr");
        const char *bk =
            json_is_true(json_array_get(d, 1)) || json_integer_value(json_array_get(d, 1)) == 1
                ? jstr(o, "bk")
                : "";
        sqlite3_bind_text(st, 9, bk ? bk : "", -1, SQLITE_STATIC);
        bind_int(st, 10, o, "c");
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE)
            return -1;
    }
    return 0;
}

static int apply_changelog(fh_webhooks *w, sqlite3 *db, int32_t part, const rd_kafka_message_t *m,
                           int *poke)
{
    const char *v = m->payload;
    size_t n = m->len, meta = n;
    json_error_t jerr;
    if (!v || !n)
        return 0; /* a tombstone: nothing to do */
    const char *nl = memchr(v, '\n', n);
    if (nl)
        meta = (size_t)(nl - v);
    json_t *o = json_loadb(v, meta, 0, &jerr);
    const char *t = o ? jstr(o, "t") : NULL;
    int rc = 0;
    if (!t) {
        fh_log(FH_LOG_WARN, "webhook.changelog_record", "partition=%d offset=%lld error=\"%s\"",
               (int)part, (long long)m->offset, o ? "no type" : jerr.text);
    } else if (strcmp(t, "p") == 0 && nl) {
        sqlite3_stmt *st = cached(w, db,
                                  "INSERT INTO payloads(event_id, kind, body, created_ms)"
                                  " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(event_id, kind)"
                                  " DO UPDATE SET kind = excluded.kind RETURNING id");
        int64_t payload = -1;
        if (!st)
            rc = -1;
        else {
            bind_text(st, 1, o, "e");
            bind_text(st, 2, o, "k");
            sqlite3_bind_blob(st, 3, nl + 1, (int)(n - meta - 1), SQLITE_STATIC);
            bind_int(st, 4, o, "c");
            if ((payload = wh_step_id(st)) < 0)
                rc = -1;
        }
        if (!rc)
            rc = apply_new(w, db, o, payload);
    } else if (strcmp(t, "d") == 0) {
        rc = apply_delivery(w, db, o);
    } else if (strcmp(t, "a") == 0) {
        static const char *const names[] = {"m", "n", "at", "st", "ll", "le", "lr", "li"};
        rc = run(w, db,
                 "INSERT OR IGNORE INTO attempts(delivery_id, n, at_ms, status, latency_ms, error,"
                 " response, instance) SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, '')"
                 " FROM deliveries WHERE msg_id = ?1",
                 0, o, names, 8);
    } else if (strcmp(t, "r") == 0) {
        static const char *const names[] = {"m", "ep", "at"};
        rc = run(w, db,
                 "UPDATE deliveries SET state = 0, tries = 0, next_ms = ?3, updated_ms = ?3,"
                 " requeued = requeued + 1 WHERE msg_id = ?1 AND endpoint_id = ?2",
                 0, o, names, 3);
        *poke = 1;
    } else if (strcmp(t, "v") == 0) {
        /* one copy went to each partition: each recovers the deliveries of its own slots */
        char sql[512];
        static const char *const names[] = {"ep", "since", "at"};
        snprintf(sql, sizeof(sql),
                 "UPDATE deliveries SET state = 0, tries = 0, next_ms = ?3, updated_ms = ?3,"
                 " requeued = requeued + 1 WHERE endpoint_id = ?1 AND state = 2 AND"
                 " created_ms >= ?2 AND ((CASE WHEN part >= %d THEN part - %d ELSE part END)"
                 " %% %d) = %d",
                 DERIVED_SLOT0, DERIVED_SLOT0, w->cl_parts > 0 ? w->cl_parts : 1, (int)part);
        rc = run(w, db, sql, 1, o, names, 3);
        *poke = 1;
    }
    json_decref(o);
    return rc;
}

int wh_apply(fh_webhooks *w, sqlite3 *db, const char *topic, int32_t part,
             const rd_kafka_message_t *m)
{
    int poke = 0;
    if (strcmp(topic, w->ep_topic) == 0) {
        json_t *o = NULL;
        if (m->payload && m->len && !(o = json_loadb(m->payload, m->len, 0, NULL))) {
            fh_log(FH_LOG_WARN, "webhook.endpoint_record", "offset=%lld error=\"not JSON\"",
                   (long long)m->offset);
            return 0;
        }
        int rc = m->key ? apply_endpoint(w, db, m->key, m->key_len, o) : 0;
        json_decref(o);
        return rc;
    }
    return apply_changelog(w, db, part, m, &poke);
}

/* ---- offsets ------------------------------------------------------------------------------- */

static int64_t stored_offset(sqlite3 *db, const char *topic, int part)
{
    sqlite3_stmt *st = NULL;
    int64_t off = -1;
    if (sqlite3_prepare_v2(db, "SELECT next FROM wh_offsets WHERE topic = ?1 AND part = ?2", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, part);
        if (sqlite3_step(st) == SQLITE_ROW)
            off = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return off;
}

static int store_offset(fh_webhooks *w, sqlite3 *db, const char *topic, int part, int64_t next)
{
    sqlite3_stmt *st = cached(w, db,
                              "INSERT INTO wh_offsets(topic, part, next) VALUES(?1, ?2, ?3)"
                              " ON CONFLICT DO UPDATE SET next = excluded.next");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, part);
    sqlite3_bind_int64(st, 3, next);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* ---- the thread ------------------------------------------------------------------------------ */

/* Publishes what the reader reached: the changelog's per partition, the endpoints' under rd_mu
 * (API writers wait on rd_cond for it). */
static void publish(fh_webhooks *w, int cl_part, int64_t next, int64_t ep_next)
{
    pthread_mutex_lock(&w->rd_mu);
    if (cl_part >= 0 && cl_part < MAX_PARTS && next > atomic_load(&w->cl_applied[cl_part]))
        atomic_store(&w->cl_applied[cl_part], next);
    if (ep_next > w->ep_applied)
        w->ep_applied = ep_next;
    pthread_cond_broadcast(&w->rd_cond);
    pthread_mutex_unlock(&w->rd_mu);
}

/* 1 when m is a body, a delivery state or an attempt this process produced: its webhook thread
 * wrote it to this file before producing it (a request or an endpoint is applied all the same). */
static int own_record(fh_webhooks *w, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, "fh-by", &v, &n) ||
        n != sizeof(w->incarnation))
        return 0;
    return memcmp(v, &w->incarnation, n) == 0;
}

/* Writes the offsets the reader reached but has not recorded in the file yet (rd_unsaved) inside
 * the caller's transaction. */
static void save_offsets(fh_webhooks *w, sqlite3 *db)
{
    for (int p = 0; p <= MAX_PARTS / 2; p++) {
        if (w->rd_unsaved[p] < 0)
            continue;
        store_offset(w, db, p == MAX_PARTS / 2 ? w->ep_topic : w->cl_topic,
                     p == MAX_PARTS / 2 ? 0 : p, w->rd_unsaved[p]);
        w->rd_unsaved[p] = -1;
    }
    w->rd_saved_ms = fh_now_ms();
}

/* Records the offsets not recorded yet in a transaction of their own, when RD_SAVE_MS passed
 * since the last time (force: now). */
static void save_due(fh_webhooks *w, int force)
{
    char err[256];
    int unsaved = 0;
    if (!force && fh_now_ms() - w->rd_saved_ms < RD_SAVE_MS)
        return;
    for (int p = 0; p <= MAX_PARTS / 2 && !unsaved; p++)
        unsaved = w->rd_unsaved[p] >= 0;
    if (!unsaved || fh_sqlite_exec(w->rd_db, "BEGIN IMMEDIATE", err, sizeof(err)))
        return;
    save_offsets(w, w->rd_db);
    if (fh_sqlite_exec(w->rd_db, "COMMIT", err, sizeof(err)))
        sqlite3_exec(w->rd_db, "ROLLBACK", NULL, NULL, NULL);
}

/* Applies one batch (the first record m, then what is already fetched) in one transaction, with
 * the next offset of each partition it read. A batch of this process's own records only (what a
 * single instance mostly reads) applies nothing: it opens no transaction, and its offsets are
 * recorded with the next batch that does, or after RD_SAVE_MS. The file then restarts up to that
 * long before where the reader was, and applies those records again (harmless: a delivery state
 * keeps the newer one, bodies and attempts are inserted once), while the webhook thread never
 * waits behind a write transaction of the reader that carries nothing. */
static void apply_batch(fh_webhooks *w, rd_kafka_message_t *m)
{
    int64_t next[MAX_PARTS / 2 + 1];
    int poke = 0, n = 0, in_txn = 0;
    char err[256];
    for (int i = 0; i <= MAX_PARTS / 2; i++)
        next[i] = -1;
    sqlite3 *db = w->rd_db;
    while (m) {
        const char *t = rd_kafka_topic_name(m->rkt);
        int is_ep = strcmp(t, w->ep_topic) == 0;
        int slot = is_ep ? MAX_PARTS / 2 : m->partition;
        if (slot < 0 || slot > MAX_PARTS / 2) {
            /* not one of ours */
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* the end: a partition whose records Kafka deleted (retention) is caught up too;
             * published after the COMMIT like the rest of the batch */
            if (m->offset > next[slot])
                next[slot] = m->offset;
        } else if (m->err) {
            fh_log(FH_LOG_WARN, "webhook.reader", "error=\"%s\"", rd_kafka_message_errstr(m));
        } else {
            int request = m->len > 8 && (memcmp(m->payload, "{\"t\":\"r\"", 8) == 0 ||
                                         memcmp(m->payload, "{\"t\":\"v\"", 8) == 0);
            if (is_ep || request || !own_record(w, m)) {
                if (!in_txn && fh_sqlite_exec(db, "BEGIN IMMEDIATE", err, sizeof(err))) {
                    /* a failing disk: the records are lost to this file until it is rebuilt */
                    fh_log(FH_LOG_ERROR, "webhook.reader_sql", "what=begin error=\"%s\"", err);
                } else {
                    in_txn = 1;
                    if (wh_apply(w, db, t, m->partition, m))
                        fh_log(FH_LOG_ERROR, "webhook.reader_sql",
                               "topic=%s offset=%lld error=\"%s\"", t, (long long)m->offset,
                               sqlite3_errmsg(db));
                }
            }
            /* endpoint records and requests change what the webhook thread should do */
            poke |= is_ep || request;
            next[slot] = w->rd_unsaved[slot] = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
        m = ++n < BATCH ? rd_kafka_consumer_poll(w->rd, 0) : NULL;
    }
    if (!in_txn) {
        save_due(w, 0);
    } else {
        save_offsets(w, db);
        if (fh_sqlite_exec(db, "COMMIT", err, sizeof(err))) {
            fh_log(FH_LOG_ERROR, "webhook.reader_sql", "what=commit error=\"%s\"", err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return; /* a failing disk: the records are lost to this file until it is rebuilt */
        }
    }
    for (int p = 0; p < MAX_PARTS / 2; p++)
        if (next[p] >= 0)
            publish(w, p, next[p], -1);
    if (next[MAX_PARTS / 2] >= 0)
        publish(w, -1, 0, next[MAX_PARTS / 2]);
    if (poke)
        wh_poke(w);
    else
        wh_wake_thread(w); /* a partition may be waiting for this catch-up */
}

static void *reader_main(void *arg)
{
    fh_webhooks *w = arg;
    while (wh_running(w)) {
        rd_kafka_poll(w->prod, 0); /* the producer's delivery reports */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rd, 50);
        if (m)
            apply_batch(w, m);
        else
            save_due(w, 0); /* idle: what it read last is recorded within RD_SAVE_MS too */
    }
    return NULL;
}

static const char *const reader_defaults[] = {
    "log_level=4",
    "enable.auto.commit=false",
    "enable.auto.offset.store=false",
    "auto.offset.reset=earliest",
    "enable.partition.eof=true",
    /* another instance's change is here within about this long */
    "fetch.wait.max.ms=50",
    "fetch.min.bytes=1",
    NULL,
};

int wh_reader_start(fh_webhooks *w, char *err, size_t errsize)
{
    fh_broker *b = w->b;
    rd_kafka_conf_t *conf;
    char e[512], group[256];
    if (whs_open(w->cfg.path, w->b->cluster_id, &w->rd_db, err, errsize))
        return -1;
    if (fh_kafka_conf(&b->cfg, b->bootstrap, reader_defaults, &conf, err, errsize))
        return -1;
    /* assign() only: the group id is never joined nor committed to */
    snprintf(group, sizeof(group), "%s.reader", w->cfg.group);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    if (!(w->rd = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
        snprintf(err, errsize, "webhook reader: %s", e);
        return -1;
    }
    rd_kafka_poll_set_consumer(w->rd);
    for (int p = 0; p <= MAX_PARTS / 2; p++)
        w->rd_unsaved[p] = -1;
    w->rd_saved_ms = fh_now_ms();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(w->cl_parts + 1);
    int64_t off = stored_offset(w->rd_db, w->ep_topic, 0);
    rd_kafka_topic_partition_list_add(l, w->ep_topic, 0)->offset =
        off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    w->ep_applied = off >= 0 ? off : 0;
    for (int p = 0; p < w->cl_parts; p++) {
        off = stored_offset(w->rd_db, w->cl_topic, p);
        rd_kafka_topic_partition_list_add(l, w->cl_topic, p)->offset =
            off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
        atomic_store(&w->cl_applied[p], off >= 0 ? off : 0);
    }
    rd_kafka_resp_err_t kerr = rd_kafka_assign(w->rd, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (kerr) {
        snprintf(err, errsize, "webhook reader: assign: %s", rd_kafka_err2str(kerr));
        return -1;
    }
    if (pthread_create(&w->rd_thread, NULL, reader_main, w)) {
        snprintf(err, errsize, "cannot start the webhook reader thread");
        return -1;
    }
    w->rd_started = 1;
    return 0;
}

void wh_reader_stop(fh_webhooks *w)
{
    if (w->rd_started) {
        pthread_join(w->rd_thread, NULL); /* it stops with wh_running */
        w->rd_started = 0;
        save_due(w, 1);
    }
    if (w->rd) {
        rd_kafka_consumer_close(w->rd);
        rd_kafka_destroy(w->rd);
        w->rd = NULL;
    }
    for (int i = 0; i < WH_RD_STMTS; i++) {
        if (w->rd_sql[i])
            sqlite3_finalize(w->rd_st[i]);
        w->rd_sql[i] = NULL;
        w->rd_st[i] = NULL;
    }
    if (w->rd_db)
        sqlite3_close(w->rd_db);
    w->rd_db = NULL;
}
