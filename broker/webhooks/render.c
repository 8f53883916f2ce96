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
 * open transaction. Bodies are rendered once per format and shared through the payloads table. */
int wh_ingest(fh_webhooks *w, const rd_kafka_message_t *m)
{
    char err[384], key[160], msg_id[WHS_ID_SIZE], kind[48];
    int64_t payload[FH_WH__COUNT][FH_WH_MAX_BODIES];
    const char *pvariant[FH_WH__COUNT][FH_WH_MAX_BODIES];
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
    memset(payload, 0xff, sizeof(payload));
    int64_t now = fh_now_ms();
    rd_kafka_timestamp_type_t tst;
    int64_t produced = rd_kafka_message_timestamp(m, &tst);
    if (produced <= 0)
        produced = now;
    fh_event_key(&ev, key, sizeof(key));
    int rc = 0, dead = 0; /* dead: already dead-lettered once */
    for (size_t i = 0; i < w->neps && rc == 0; i++) {
        wh_ep *e = &w->eps[i];
        if (!e->enabled || !fh_filter_match(&e->filter, &ev))
            continue;
        int n = fh_wh_body_count(e->format, &ev);
        for (int b = 0; b < n; b++) {
            const char *variant = "";
            if (payload[e->format][b] < 0) {
                fh_buf_reset(&w->body);
                if (fh_wh_render(e->format, &ev, b, &w->body, &variant)) {
                    /* Over the body cap (re-encoding can grow a record: 1E-9 becomes
                     * 1.0000000000000001e-09): no endpoint of this format gets it, so the
                     * record goes to the dead-letter topic instead of vanishing. */
                    fh_log(FH_LOG_WARN, "webhook.render", "event=%s format=%s", ev.id,
                           fh_wh_format_name(e->format));
                    snprintf(reason, sizeof(reason),
                             "webhooks: cannot render the %s body (over %zu bytes)",
                             fh_wh_format_name(e->format), w->body.max);
                    if (!dead && fh_dlq_send(w->dlq, m, reason)) {
                        rc = -1;
                        break;
                    }
                    dead = 1;
                    continue;
                }
                snprintf(kind, sizeof(kind), "%s%s%s", fh_wh_format_name(e->format),
                         *variant ? "." : "", variant);
                sqlite3_stmt *st = w->st[S_PAYLOAD];
                sqlite3_bind_text(st, 1, ev.id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 3, w->body.data ? w->body.data : "", (int)w->body.len,
                                  SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, now);
                if (sqlite3_step(st) == SQLITE_ROW)
                    payload[e->format][b] = sqlite3_column_int64(st, 0);
                else
                    rc = -1;
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
                /* the body goes to the changelog before the deliveries that need it */
                if (rc || wh_cl_payload(w, slot, ev.id, kind, w->body.data ? w->body.data : "",
                                        w->body.len, now)) {
                    rc = -1;
                    break;
                }
                pvariant[e->format][b] = variant;
            } else {
                variant = pvariant[e->format][b];
            }
            whs_msg_id(e->id, ev.id, variant, msg_id);
            sqlite3_stmt *st = w->st[S_INSERT];
            sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, ev.id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, fh_event_type_name(ev.type), -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, payload[e->format][b]);
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
            /* also when it was there (consumed again): its current state, which is harmless */
            if (wh_cl_delivery(w, w->db, 0, msg_id)) {
                rc = -1;
                break;
            }
        }
    }
    fh_event_clear(&ev);
    return rc;
}
