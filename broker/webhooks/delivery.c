/* webhooks/delivery.c: the delivery engine, on the webhook thread. One curl multi handle driven
 * by the thread's fh_loop (curl's sockets are watches, its timer a loop timer); a fixed set of
 * transfer slots (webhooks.max_in_flight), each keeping its easy handle and connection between
 * attempts. An attempt is signed (Standard Webhooks), its outcome recorded; a failure is retried
 * on webhooks.retry_schedule (with jitter, honouring Retry-After) until dead-lettered. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "fh_log.h"
#include "fh_whformat.h"

static void xfer_finish(fh_webhooks *w, xfer *x, CURLcode res);

/* Records the transfers curl finished. Called from the loop's after-pass work only (never from
 * a socket or timer callback): recording opens the transaction the pass then commits. */
void wh_delivery_reap(fh_webhooks *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode res = msg->data.result;
        curl_multi_remove_handle(w->multi, msg->easy_handle);
        if (x)
            xfer_finish(w, x, res);
    }
}

/* One of curl's sockets, watched on the loop for as long as curl wants it (its socketp). */
typedef struct wh_sock {
    fh_loop_io io;
    fh_webhooks *w;
    struct wh_sock *prev, *next; /* w->socks */
} wh_sock;

/* Tells curl what happened on one socket (only the sockets that are ready: the cost follows the
 * transfers that progress, not all of those in flight). */
static void on_sock_io(fh_loop *l, fh_loop_io *io, unsigned what)
{
    wh_sock *s = io->arg;
    int flags = 0, still;
    (void)l;
    if (what & (FH_LOOP_READ | FH_LOOP_HUP))
        flags |= CURL_CSELECT_IN;
    if (what & FH_LOOP_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(s->w->multi, io->fd, flags, &still);
}

static void sock_free(fh_webhooks *w, wh_sock *s)
{
    fh_loop_unwatch(w->loop, &s->io); /* its events later in this batch are forgotten */
    if (s->prev)
        s->prev->next = s->next;
    else
        w->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/* CURLMOPT_SOCKETFUNCTION: curl says which of its sockets to watch for what. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    fh_webhooks *w = userp;
    wh_sock *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_free(w, s);
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return -1; /* curl fails the transfer */
        s->io = (fh_loop_io){.fd = fd, .fn = on_sock_io, .arg = s};
        s->w = w;
        s->next = w->socks;
        if (w->socks)
            w->socks->prev = s;
        w->socks = s;
        curl_multi_assign(w->multi, fd, s);
    }
    unsigned ev = 0;
    if (what & CURL_POLL_IN)
        ev |= FH_LOOP_READ;
    if (what & CURL_POLL_OUT)
        ev |= FH_LOOP_WRITE;
    if (fh_loop_watch(w->loop, &s->io, ev) != FH_OK)
        fh_log(FH_LOG_WARN, "webhook.socket", "fd=%d error=\"cannot watch it\"", (int)fd);
    return 0;
}

static int64_t on_curl_timeout(fh_loop *l, void *arg)
{
    fh_webhooks *w = arg;
    int still;
    (void)l;
    w->curl_timer = 0; /* ended: curl may ask for a new one from inside socket_action */
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    return -1;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants CURL_SOCKET_TIMEOUT next (-1: never). One loop timer
 * follows it. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    fh_webhooks *w = userp;
    (void)multi;
    if (timeout_ms < 0) {
        fh_loop_timer_cancel(w->loop, w->curl_timer);
        w->curl_timer = 0;
    } else {
        w->curl_timer = fh_loop_timer_rearm(w->loop, w->curl_timer, timeout_ms, on_curl_timeout, w);
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    xfer *x = ctx;
    size_t len = size * n;
    if (x->resp_total + len > (size_t)x->w->cfg.response_max_bytes) {
        x->cut = 1;
        return 0; /* aborts the transfer: the status line is already known */
    }
    x->resp_total += len;
    size_t room = x->resp.len < x->resp.max ? x->resp.max - x->resp.len : 0;
    fh_buf_append(&x->resp, p, len < room ? len : room);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    xfer *x = ctx;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        char v[128];
        size_t vl = len - (sizeof(name) - 1);
        if (vl >= sizeof(v))
            vl = sizeof(v) - 1;
        memcpy(v, p + sizeof(name) - 1, vl);
        v[vl] = '\0';
        char *s = v, *end;
        while (*s == ' ' || *s == '\t')
            s++;
        s[strcspn(s, "\r\n")] = '\0';
        long secs = strtol(s, &end, 10);
        if (end != s && *end == '\0' && secs >= 0) {
            x->retry_after_s = secs;
        } else {
            time_t t = curl_getdate(s, NULL); /* an HTTP-date */
            if (t > 0)
                x->retry_after_s = t > time(NULL) ? (long)(t - time(NULL)) : 0;
        }
    }
    return len;
}

/* Every connection passes the SSRF guard on the address curl actually connects to, so neither a
 * DNS answer that changed since the endpoint was created (rebinding) nor a second address of
 * the name can lead a delivery into a refused range: the vetted address is the one used. */
static curl_socket_t on_open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *a)
{
    xfer *x = ctx;
    fh_webhooks *w = x->w;
    (void)purpose;
    const char *why = fh_netguard_check(&w->guard, &a->addr);
    if (why) {
        char addr[64];
        snprintf(x->guard_err, sizeof(x->guard_err),
                 "refused by the SSRF guard: %s is %s (webhooks.allow_cidrs)",
                 fh_netguard_addr_text(&a->addr, addr, sizeof(addr)), why);
        fh_metric_add(w->m_refused, 1);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void ep_fly_remove(wh_ep *e, int64_t id)
{
    for (int i = 0; i < e->inflight; i++) {
        if (e->flying[i] == id) {
            e->flying[i] = e->flying[--e->inflight];
            return;
        }
    }
}

static int ep_flying(const wh_ep *e, int64_t id)
{
    for (int i = 0; i < e->inflight; i++)
        if (e->flying[i] == id)
            return 1;
    return 0;
}

static xfer *xfer_get(fh_webhooks *w)
{
    for (long long i = 0; i < w->cfg.max_in_flight; i++)
        if (!w->xfers[i].busy)
            return &w->xfers[i];
    return NULL;
}

/* An easy handle for x with every option that is the same for each of its attempts (set once:
 * resetting and setting them all again per attempt cost more than the HTTP exchange). */
static CURL *xfer_easy(fh_webhooks *w, xfer *x)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)w->cfg.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer, not a 2xx */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* no proxy from the environment around the guard */
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    return c;
}

/* Starts one attempt of the delivery in the current row of st (S_DUE / S_DUE_ORDERED). */
static int xfer_start(fh_webhooks *w, wh_ep *e, size_t ep_index, sqlite3_stmt *st)
{
    char hv[64 + 2 * FH_SIGN_SIG_SIZE + 32], sig[FH_SIGN_SIG_SIZE], sig2[FH_SIGN_SIG_SIZE];
    xfer *x = xfer_get(w);
    if (!x)
        return -1;
    const void *body = sqlite3_column_blob(st, 6);
    size_t blen = (size_t)sqlite3_column_bytes(st, 6);
    if (blen + 1 > x->body_cap) {
        char *nb = realloc(x->body, blen + 1);
        if (!nb)
            return -1;
        x->body = nb;
        x->body_cap = blen + 1;
    }
    memcpy(x->body, body ? body : "", blen);
    x->body[blen] = '\0';
    x->body_len = blen;
    x->delivery_id = sqlite3_column_int64(st, 0);
    snprintf(x->msg_id, sizeof(x->msg_id), "%s", (const char *)sqlite3_column_text(st, 1));
    x->part = sqlite3_column_int(st, 2);
    x->tries = sqlite3_column_int(st, 3);
    x->produced_ms = sqlite3_column_int64(st, 5);
    x->requeued = sqlite3_column_int64(st, 7);
    x->attempts = sqlite3_column_int(st, 8);
    snprintf(x->ep_id, sizeof(x->ep_id), "%s", e->id);
    x->ep = ep_index;
    x->guard_err[0] = x->errbuf[0] = '\0';
    x->cut = 0;
    x->retry_after_s = -1;
    x->resp_total = 0;
    fh_buf_reset(&x->resp);

    int64_t now = fh_now_ms(), ts = now / 1000;
    if (fh_sign(e->key.k, e->key.len, x->msg_id, ts, x->body, x->body_len, sig))
        return -1;
    /* During a rotation both secrets sign: receivers holding either one verify. */
    if (e->old_key.len && now < e->old_until_ms &&
        fh_sign(e->old_key.k, e->old_key.len, x->msg_id, ts, x->body, x->body_len, sig2) == FH_OK)
        snprintf(hv, sizeof(hv), "webhook-signature: %s %s", sig, sig2);
    else
        snprintf(hv, sizeof(hv), "webhook-signature: %s", sig);
    struct curl_slist *h = NULL;
    char idh[80], tsh[64], cth[80];
    snprintf(idh, sizeof(idh), "webhook-id: %s", x->msg_id);
    snprintf(tsh, sizeof(tsh), "webhook-timestamp: %lld", (long long)ts);
    snprintf(cth, sizeof(cth), "Content-Type: %s", fh_wh_format_content_type(e->format));
    const char *lines[] = {cth, idh, tsh, hv, "User-Agent: firehose-webhooks/1", "Expect:", NULL};
    for (int i = 0; lines[i]; i++) {
        struct curl_slist *nh = curl_slist_append(h, lines[i]);
        if (!nh) {
            curl_slist_free_all(h);
            return -1;
        }
        h = nh;
    }
    if (!x->easy && !(x->easy = xfer_easy(w, x))) {
        curl_slist_free_all(h);
        return -1;
    }
    curl_slist_free_all(x->hdrs);
    x->hdrs = h;
    CURL *c = x->easy;
    /* only what differs between attempts: the handle keeps the rest (and its connection) */
    curl_easy_setopt(c, CURLOPT_URL, e->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    x->t0 = fh_mono_ns();
    if (curl_multi_add_handle(w->multi, c) != CURLM_OK)
        return -1;
    x->busy = 1;
    e->flying[e->inflight++] = x->delivery_id;
    w->inflight++;
    return 0;
}

/* Printable ASCII only: the log shows the response as a JSON string whatever its bytes were. */
static void sanitize(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            s[i] = (s[i] == '\n' || s[i] == '\t') ? ' ' : '?';
}

static int64_t jittered(fh_webhooks *w, int64_t ms)
{
    uint32_t r = 0;
    if (w->cfg.retry_jitter_pct <= 0 || ms <= 0 ||
        getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
        return ms;
    return ms + (int64_t)((double)ms * w->cfg.retry_jitter_pct / 100.0 * (r / 4294967296.0));
}

static void xfer_finish(fh_webhooks *w, xfer *x, CURLcode res)
{
    long status = 0;
    char err[CURL_ERROR_SIZE + 200] = "";
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    int64_t now = fh_now_ms();
    long latency = (long)((fh_mono_ns() - x->t0) / 1000000);
    int ok =
        status >= 200 && status < 300 && (res == CURLE_OK || (res == CURLE_WRITE_ERROR && x->cut));
    if (res != CURLE_OK && !(res == CURLE_WRITE_ERROR && x->cut)) {
        if (x->guard_err[0])
            snprintf(err, sizeof(err), "%s", x->guard_err);
        else
            snprintf(err, sizeof(err), "%s%s%s", curl_easy_strerror(res), x->errbuf[0] ? ": " : "",
                     x->errbuf);
        status = 0;
    } else if (!ok) {
        snprintf(err, sizeof(err), "HTTP %ld", status);
    }
    if (x->cut && !err[0])
        snprintf(err, sizeof(err), "response longer than %lld bytes: cut off",
                 w->cfg.response_max_bytes);

    wh_ep *e = x->ep < w->neps && strcmp(w->eps[x->ep].id, x->ep_id) == 0 ? &w->eps[x->ep]
                                                                          : wh_ep_find(w, x->ep_id);
    wh_txn_begin(w);
    if (x->resp.len)
        sanitize(x->resp.data, x->resp.len);
    sqlite3_stmt *st;
    if (!ok) {
        st = w->st[S_ATTEMPT];
        sqlite3_bind_int64(st, 1, x->delivery_id);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int(st, 3, (int)status);
        sqlite3_bind_int64(st, 4, latency);
        if (err[0])
            sqlite3_bind_text(st, 5, err, -1, SQLITE_STATIC);
        if (x->resp.len)
            sqlite3_bind_text(st, 6, x->resp.data, (int)x->resp.len, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, w->instance, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 8, x->attempts + 1);
        if (wh_step_done(st))
            wh_sql_warn(w, "attempt");
        wh_cl_attempt(w, x->part, x->msg_id, x->attempts + 1, now, (int)status, latency, err,
                      x->resp.data, x->resp.len, w->instance);
    }

    int state = WHS_PENDING, tries = x->tries + 1;
    int64_t next = now;
    if (ok) {
        state = WHS_DELIVERED;
        fh_metric_add(w->m_delivered, 1);
        if (x->tries == 0)
            wh_observe_latency(w, now - x->produced_ms);
        if (e && e->failing_since_ms)
            wh_ep_set_failing(w, e, 0);
    } else {
        fh_metric_add(w->m_failed_attempts, 1);
        if (status == 410 && e) {
            char reason[200];
            char when[32];
            snprintf(reason, sizeof(reason),
                     "the endpoint answered 410 Gone at %s: it asked to receive no more deliveries",
                     fh_time_rfc3339(now, when, sizeof(when)));
            wh_ep_disable(w, e, reason);
            tries = x->tries; /* not the delivery's fault: it goes out again if re-enabled */
        } else if (tries >= w->nschedule) {
            state = WHS_FAILED;
            fh_metric_add(w->m_dead, 1);
        } else {
            int64_t delay = jittered(w, w->schedule[tries]);
            if ((status == 429 || status == 503) && x->retry_after_s >= 0) {
                int64_t ra = (int64_t)(x->retry_after_s < w->cfg.retry_after_max_s
                                           ? x->retry_after_s
                                           : w->cfg.retry_after_max_s) *
                             1000;
                if (ra > delay)
                    delay = ra;
            }
            next = now + delay;
        }
        if (e && e->enabled) {
            if (!e->failing_since_ms) {
                wh_ep_set_failing(w, e, now);
            } else if (now - e->failing_since_ms >= w->disable_after_ms) {
                char reason[CURL_ERROR_SIZE + 300], since[32];
                snprintf(reason, sizeof(reason),
                         "failing continuously since %s (%lld s without a success, "
                         "webhooks.disable_after_s=%lld); last error: %s",
                         fh_time_rfc3339(e->failing_since_ms, since, sizeof(since)),
                         (long long)((now - e->failing_since_ms) / 1000),
                         w->disable_after_ms / 1000, err);
                wh_ep_disable(w, e, reason);
            }
        }
        if (e && state == WHS_PENDING && next < e->next_due_ms)
            e->next_due_ms = next;
    }
    st = w->st[S_DONE];
    sqlite3_bind_int64(st, 1, x->delivery_id);
    sqlite3_bind_int(st, 2, state);
    sqlite3_bind_int(st, 3, tries);
    sqlite3_bind_int64(st, 4, next);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int(st, 6, (int)status);
    if (err[0])
        sqlite3_bind_text(st, 7, err, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, latency);
    if (x->resp.len)
        sqlite3_bind_text(st, 9, x->resp.data, (int)x->resp.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, w->instance, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, x->requeued);
    if (wh_step_done(st))
        wh_sql_warn(w, "delivery");
    int changed = sqlite3_changes(w->db) > 0;
    if (changed) /* the delivery's new state, for every instance's log and the next owner */
        wh_cl_delivery(w, w->db, x->delivery_id, NULL, 1);
    if (state != WHS_PENDING && changed && w->pending > 0)
        w->pending--;
    if (e)
        ep_fly_remove(e, x->delivery_id);
    x->busy = 0;
    w->inflight--;
}

/* Starts due deliveries, endpoint by endpoint, each within webhooks.endpoint_concurrency: an
 * endpoint that is slow or down only ever holds its own slots, never another's. */
int wh_backlogged(fh_webhooks *w)
{
    return atomic_load(&w->cl_outcomes) > w->cfg.changelog_backlog_max;
}

void wh_dispatch(fh_webhooks *w)
{
    int64_t now = fh_now_ms();
    /* An attempt's outcome is durable once Kafka acknowledged it: a SIGKILL makes the next owner
     * send again what finished without that. Bounding the backlog bounds those. */
    if (wh_backlogged(w))
        return;
    for (size_t i = 0; i < w->neps && w->inflight < w->cfg.max_in_flight; i++) {
        wh_ep *e = &w->eps[i];
        long long free_slots = w->cfg.endpoint_concurrency - e->inflight;
        if (!e->enabled || free_slots <= 0 || (!e->has_work && now < e->next_due_ms))
            continue;
        /* Wait for half the slots when some are busy: fewer, fuller queries. */
        if (e->inflight > 0 && free_slots < (w->cfg.endpoint_concurrency + 1) / 2 &&
            now < e->next_due_ms)
            continue;
        sqlite3_stmt *st = w->st[e->ordered ? S_DUE_ORDERED : S_DUE];
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, w->cfg.endpoint_concurrency);
        long long rows = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            rows++;
            int64_t id = sqlite3_column_int64(st, 0);
            if (ep_flying(e, id))
                continue;
            if (e->inflight >= w->cfg.endpoint_concurrency || w->inflight >= w->cfg.max_in_flight)
                break;
            if (xfer_start(w, e, i, st))
                break;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            wh_sql_warn(w, "due");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rows < w->cfg.endpoint_concurrency) {
            /* Nothing more is due now: sleep until the next retry, or the next scan. */
            e->has_work = 0;
            e->next_due_ms = now + w->cfg.scan_interval_ms;
            st = w->st[S_NEXT_DUE];
            sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, now);
            if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
                sqlite3_column_int64(st, 0) < e->next_due_ms)
                e->next_due_ms = sqlite3_column_int64(st, 0);
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
        } else {
            e->has_work = 1;
        }
    }
    fh_metric_set(w->m_inflight, w->inflight);
}

/* Lets what is in flight on partitions we are about to lose finish and be recorded, so the next
 * owner does not send them again (bounded by webhooks.timeout_ms). parts NULL: everything. */
void wh_drain(fh_webhooks *w, const rd_kafka_topic_partition_list_t *parts)
{
    uint64_t deadline = fh_mono_ns() + (uint64_t)(w->cfg.timeout_ms + 1000) * 1000000ULL;
    for (;;) {
        int left = 0;
        for (long long i = 0; i < w->cfg.max_in_flight; i++) {
            if (!w->xfers[i].busy)
                continue;
            if (!parts) {
                left = 1;
                break;
            }
            for (int k = 0; k < parts->cnt; k++)
                if (wh_slot(w, parts->elems[k].topic, parts->elems[k].partition) ==
                    w->xfers[i].part)
                    left = 1;
        }
        if (!left || fh_mono_ns() > deadline)
            break;
        wh_pump(w, 50);
    }
    wh_txn_commit(w);
}

/* ---- set-up ---------------------------------------------------------------------------------- */

int wh_delivery_open(fh_webhooks *w, char *err, size_t errsize)
{
    if (!(w->xfers = calloc((size_t)w->cfg.max_in_flight, sizeof(*w->xfers)))) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    for (long long i = 0; i < w->cfg.max_in_flight; i++) {
        w->xfers[i].w = w;
        fh_buf_init(&w->xfers[i].resp, (size_t)w->cfg.response_log_bytes);
    }
    if (!(w->multi = curl_multi_init())) {
        snprintf(err, errsize, "curl_multi_init failed");
        return -1;
    }
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->cfg.max_in_flight);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    return 0;
}

void wh_delivery_close(fh_webhooks *w)
{
    for (long long i = 0; w->xfers && i < w->cfg.max_in_flight; i++) {
        xfer *x = &w->xfers[i];
        if (x->easy) {
            if (x->busy)
                curl_multi_remove_handle(w->multi, x->easy);
            curl_easy_cleanup(x->easy);
        }
        curl_slist_free_all(x->hdrs);
        free(x->body);
        fh_buf_free(&x->resp);
    }
    free(w->xfers);
    w->xfers = NULL;
    if (w->multi)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
    while (w->socks) /* those of cached connections curl closed without a CURL_POLL_REMOVE */
        sock_free(w, w->socks);
    if (w->loop)
        fh_loop_timer_cancel(w->loop, w->curl_timer);
    w->curl_timer = 0;
}
