/* webhooks/render.c: one record into deliveries, on the webhook thread. A record is checked in
 * place against the enabled endpoints' filters first (no jansson tree for records nobody wants);
 * a wanted one is decoded, each body is rendered once per format and stored once in payloads,
 * and each matching endpoint gets one delivery row per body, inside the open transaction; each
 * body and each delivery is also produced to the delivery changelog (changelog.c). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#include "fh_log.h"
#include "fh_whformat.h"

/* 1 when some enabled endpoint's filter matches the record: checked in place (no jansson tree),
 * so records nobody subscribed to cost a parse and no allocation. 0 also for invalid records.
 * A record whose type no enabled endpoint's filter admits is passed over before that, from its
 * raw bytes (fh_event_peek_type): most subscriptions name the types they want, and checking every
 * record was most of this thread's work. */
static int wanted(fh_webhooks *w, const rd_kafka_message_t *m)
{
    fh_event_view view;
    fh_filter_facts facts;
    char err[384];
    int any = 0, t;
    uint64_t types = 0;
    for (size_t i = 0; i < w->neps; i++)
        if (w->eps[i].enabled)
            types |= w->eps[i].types;
    if (!types)
        return 0;
    if (m->payload && (t = fh_event_peek_type(m->payload, m->len)) >= 0 && t < 64 &&
        !(types & (1ull << t)))
        return 0;
    if (fh_event_check(w->b->contract, &w->doc, m->payload, m->len, w->cfg.max_record_bytes, &view,
                       err, sizeof(err)))
        return 0;
    if (fh_filter_facts_from_view(&view, &facts))
        return 1; /* out of memory: let the full path decide */
    for (size_t i = 0; i < w->neps && !any; i++)
        any = w->eps[i].enabled && fh_filter_match_facts(&w->eps[i].filter, &facts);
    fh_filter_facts_free(&facts);
    return any;
}

/* Turns one record into deliveries: one row per matching enabled endpoint and body, inside the
 * open transaction. Bodies are rendered once per format and shared through the payloads table;
 * each body goes to the changelog once, as a "p/" record naming the deliveries it creates (their
 * ids follow from endpoint, event and variant), so a new delivery costs the changelog an
 * endpoint id rather than a record of its own. */
int wh_ingest(fh_webhooks *w, const rd_kafka_message_t *m)
{
    char err[384], key[160], msg_id[WHS_ID_SIZE], kind[48];
    char reason[512];
    fh_event ev;
    int slot = wh_slot(w, rd_kafka_topic_name(m->rkt), m->partition);
    if (slot < 0 || !wanted(w, m))
        return 0;
    /* wanted() found it valid, and decoding uses the same parser and check: a failure here is
     * not the contract's (memory), so the record is dead-lettered rather than dropped. */
    if (fh_event_decode(w->b->contract, m->payload, m->len, w->cfg.max_record_bytes, &ev, err,
                        sizeof(err))) {
        snprintf(reason, sizeof(reason), "webhooks: cannot decode: %s", err);
        return fh_dlq_send(w->dlq, m, reason);
    }
    int64_t now = fh_now_ms();
    rd_kafka_timestamp_type_t tst;
    int64_t produced = rd_kafka_message_timestamp(m, &tst);
    if (produced <= 0)
        produced = now;
    fh_event_key(&ev, key, sizeof(key));
    wh_cl_new nw = {.type = fh_event_type_name(ev.type),
                    .offset = m->offset,
                    .produced_ms = produced,
                    .build_key = key};
    fh_buf eps;
    fh_buf_init(&eps, (size_t)1 << 24);
    int rc = 0, dead = 0; /* dead: already dead-lettered once */
    for (int f = 0; f < FH_WH__COUNT && rc == 0; f++) {
        int n = fh_wh_body_count(f, &ev);
        for (int b = 0; b < n && rc == 0; b++) {
            int64_t payload = -1;
            const char *variant = "";
            fh_buf_reset(&eps);
            for (size_t i = 0; i < w->neps; i++) {
                wh_ep *e = &w->eps[i];
                if (e->format != f || !e->enabled || !fh_filter_match(&e->filter, &ev))
                    continue;
                if (payload < 0) {
                    fh_buf_reset(&w->body);
                    if (fh_wh_render(f, &ev, b, &w->body, &variant)) {
                        /* Over the body cap (re-encoding can grow a record: 1E-9 becomes
                         * 1.0000000000000001e-09): no endpoint of this format gets it, so the
                         * record goes to the dead-letter topic instead of vanishing. */
                        fh_log(FH_LOG_WARN, "webhook.render", "event=%s format=%s", ev.id,
                               fh_wh_format_name(f));
                        snprintf(reason, sizeof(reason),
                                 "webhooks: cannot render the %s body (over %zu bytes)",
                                 fh_wh_format_name(f), w->body.max);
                        if (!dead && fh_dlq_send(w->dlq, m, reason))
                            rc = -1;
                        dead = 1;
                        break;
                    }
                    snprintf(kind, sizeof(kind), "%s%s%s", fh_wh_format_name(f),
                             *variant ? "." : "", variant);
                    sqlite3_stmt *st = w->st[S_PAYLOAD];
                    sqlite3_bind_text(st, 1, ev.id, -1, SQLITE_STATIC);
                    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
                    sqlite3_bind_blob(st, 3, w->body.data ? w->body.data : "", (int)w->body.len,
                                      SQLITE_STATIC);
                    sqlite3_bind_int64(st, 4, now);
                    if ((payload = wh_step_id(st)) < 0) {
                        rc = -1;
                        break;
                    }
                }
                whs_msg_id(e->id, ev.id, variant, msg_id);
                sqlite3_stmt *st = w->st[S_INSERT];
                sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, ev.id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, nw.type, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 5, payload);
                sqlite3_bind_int(st, 6, slot);
                sqlite3_bind_int64(st, 7, m->offset);
                sqlite3_bind_int64(st, 8, produced);
                sqlite3_bind_text(st, 9, e->ordered ? key : "", -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 10, now);
                if (wh_step_done(st)) {
                    rc = -1;
                    break;
                }
                if (sqlite3_changes(w->db) > 0) {
                    w->pending++;
                    e->has_work = 1;
                    fh_metric_add(w->m_created, 1);
                }
                /* also when it was there (consumed again): creating it again is harmless */
                fh_buf_printf(&eps, "%s[", eps.len ? "," : "");
                fh_buf_json_str(&eps, e->id);
                fh_buf_printf(&eps, ",%d]", e->ordered ? 1 : 0);
            }
            if (rc || payload < 0)
                continue;
            /* the body and the deliveries it creates, before any of their outcomes */
            nw.variant = variant;
            nw.eps = eps.data;
            if (eps.len >= eps.max ||
                wh_cl_payload(w, slot, ev.id, kind, w->body.data ? w->body.data : "", w->body.len,
                              now, &nw))
                rc = -1;
        }
    }
    fh_buf_free(&eps);
    fh_event_clear(&ev);
    return rc;
}
