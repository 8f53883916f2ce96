/* webhook: see webhook.h and docs/webhooks.md. This file is the webhook thread: it owns the
 * webhook consumer, its SQLite connection (statements, the temp table of owned partitions), the
 * in-memory endpoint table, the curl multi handle and every transfer. One loop does, in turn:
 *   wait (epoll: curl's sockets, its timer, the wake-up pipe of the consumer queue and the API)
 *   -> finish transfers (attempt rows, retry or dead-letter, endpoint health)
 *   -> consume records (one delivery row per matching endpoint and body)
 *   -> COMMIT, then store the offsets of the records that COMMIT covers
 *   -> start due deliveries of owned partitions, within the concurrency caps.
 * So a delivery is durable before the offset of its record can be committed (at-least-once),
 * and a partition's deliveries are sent only by the instance the group gave the partition to. */
#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dlq.h"
#include "fh_log.h"
#include "fh_lost.h"
#include "fh_metrics.h"
#include "fh_sign.h"
#include "health.h"
#include "fh_whformat.h"
#include "webhook_store.h"

#define MAX_SCHEDULE 32
#define MAX_PARTS 4096
#define LAT_BUCKETS 24

enum stmt {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_VERSION,
    S_EPS,
    S_PAYLOAD,
    S_INSERT,
    S_DUE,
    S_DUE_ORDERED,
    S_NEXT_DUE,
    S_DONE,
    S_ATTEMPT,
    S_EP_OK,
    S_EP_FAIL,
    S_EP_DISABLE,
    S_OWN_ADD,
    S_OWN_DEL,
    S_PENDING,
    S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_VERSION] = "SELECT endpoints_version FROM wh_meta WHERE id = 1",
    [S_EPS] = "SELECT id, url, filter, format, secret, old_secret, old_secret_until_ms, enabled,"
              " ordered, failing_since_ms FROM endpoints ORDER BY created_ms, id",
    [S_PAYLOAD] = "INSERT INTO payloads(event_id, kind, body, created_ms) VALUES(?1, ?2, ?3, ?4)"
                  " ON CONFLICT(event_id, kind) DO UPDATE SET kind = excluded.kind RETURNING id",
    [S_INSERT] =
        "INSERT INTO deliveries(msg_id, endpoint_id, event_id, event_type, payload_id, part,"
        " kafka_offset, produced_ms, build_key, next_ms, created_ms, updated_ms)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)"
        " ON CONFLICT(msg_id) DO NOTHING",
    [S_DUE] =
        "SELECT d.id, d.msg_id, d.part, d.tries, d.build_key, d.produced_ms, p.body, d.requeued"
        " FROM deliveries d JOIN payloads p ON p.id = d.payload_id"
        " WHERE d.endpoint_id = ?1 AND d.state = 0 AND d.next_ms <= ?2"
        " AND d.part IN (SELECT part FROM temp.owned) ORDER BY d.next_ms LIMIT ?3",
    /* A build's later deliveries wait while an earlier one is pending (in flight included). */
    [S_DUE_ORDERED] =
        "SELECT d.id, d.msg_id, d.part, d.tries, d.build_key, d.produced_ms, p.body, d.requeued"
        " FROM deliveries d JOIN payloads p ON p.id = d.payload_id"
        " WHERE d.endpoint_id = ?1 AND d.state = 0 AND d.next_ms <= ?2"
        " AND d.part IN (SELECT part FROM temp.owned) AND (d.build_key = '' OR NOT EXISTS ("
        "  SELECT 1 FROM deliveries e WHERE e.endpoint_id = d.endpoint_id AND e.state = 0"
        "  AND e.build_key = d.build_key AND e.build_key <> '' AND e.id < d.id))"
        " ORDER BY d.next_ms LIMIT ?3",
    [S_NEXT_DUE] = "SELECT min(next_ms) FROM deliveries WHERE endpoint_id = ?1 AND state = 0"
                   " AND next_ms > ?2 AND part IN (SELECT part FROM temp.owned)",
    [S_DONE] =
        "UPDATE deliveries SET state = ?2, tries = ?3, attempts = attempts + 1, next_ms = ?4,"
        " updated_ms = ?5, last_status = ?6, last_error = ?7, last_latency_ms = ?8,"
        " last_response = ?9, last_instance = ?10 WHERE id = ?1 AND state = 0 AND requeued = ?11",
    [S_ATTEMPT] = "INSERT INTO attempts(delivery_id, at_ms, status, latency_ms, error, response,"
                  " instance) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_EP_OK] = "UPDATE endpoints SET failing_since_ms = NULL WHERE id = ?1"
                " AND failing_since_ms IS NOT NULL",
    [S_EP_FAIL] = "UPDATE endpoints SET failing_since_ms = ?2 WHERE id = ?1"
                  " AND failing_since_ms IS NULL",
    [S_EP_DISABLE] = "UPDATE endpoints SET enabled = 0, disabled_reason = ?2, updated_ms = ?3"
                     " WHERE id = ?1 AND enabled = 1",
    [S_OWN_ADD] = "INSERT OR IGNORE INTO temp.owned(part) VALUES(?1)",
    [S_OWN_DEL] = "DELETE FROM temp.owned WHERE part = ?1",
    [S_PENDING] = "SELECT count(*) FROM deliveries WHERE state = 0"
                  " AND part IN (SELECT part FROM temp.owned)",
};

typedef struct wh_key {
    unsigned char k[FH_SIGN_MAX_KEY];
    size_t len;
} wh_key;

/* An endpoint as the thread holds it (rebuilt from the store when its version moves). */
typedef struct wh_ep {
    char id[WHS_ID_SIZE];
    char *url; /* owned */
    int format, enabled, ordered;
    fh_filter filter;    /* owned */
    wh_key key, old_key; /* the previous key signs too until old_until_ms */
    int64_t old_until_ms;
    int64_t failing_since_ms; /* 0: not failing */
    int inflight;
    int64_t *flying;     /* owned: delivery ids in flight, inflight of them */
    int has_work;        /* something may be due: look now */
    int64_t next_due_ms; /* look again at the latest then */
} wh_ep;

typedef struct xfer {
    CURL *easy;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    char guard_err[160]; /* why the SSRF guard refused the connection; "" when it did not */
    char ep_id[WHS_ID_SIZE], msg_id[WHS_ID_SIZE];
    size_t ep; /* index into W.eps (re-mapped on reload; checked against ep_id) */
    int64_t delivery_id, produced_ms;
    int part, tries;
    long long requeued;
    char *body;
    size_t body_len, body_cap;
    fh_buf resp;
    size_t resp_total;
    int cut;            /* the response was longer than webhooks.response_max_bytes */
    long retry_after_s; /* -1 when absent */
    uint64_t t0;
    int busy;
} xfer;

static struct wh {
    fh_broker *b;
    int started;
    pthread_t thread;
    _Atomic int stop;
    _Atomic int poke;
    char path[1024], instance[160], topic[256];
    fh_netguard guard;
    int64_t schedule[MAX_SCHEDULE];
    int nschedule, jitter_pct;
    long long retry_after_max_s, connect_timeout_ms, timeout_ms, resp_max, resp_log, conc,
        max_in_flight, queue_max, batch_max, disable_after_ms, retention_ms, scan_ms;
    size_t max_record_bytes;

    /* webhook thread */
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    int in_txn;
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkq;
    int wake[2];         /* the consumer queue's io event and the API's pokes write to wake[1] */
    int epfd;            /* curl's sockets (CURLMOPT_SOCKETFUNCTION) and wake[0] */
    int64_t timer_at_ms; /* curl's timer (CURLMOPT_TIMERFUNCTION), monotonic ms; -1: none */
    CURLM *multi;
    wh_ep *eps;
    size_t neps;
    long long eps_version;
    xfer *xfers; /* max_in_flight of them */
    long long inflight;
    unsigned char owned[MAX_PARTS];
    int64_t to_store[MAX_PARTS];     /* next offset to store after the open transaction; -1 none */
    int64_t first_in_txn[MAX_PARTS]; /* first offset consumed in the open transaction; -1 none */
    fh_lost_table next;              /* per partition, the next offset the group still needs */
    long long pending;
    int paused;
    int64_t next_scan_ms, next_prune_ms, next_recount_ms;
    fh_buf body;
    fh_json_doc doc; /* each record is checked in it before any jansson tree is built */
    fh_dlq *dlq;     /* valid records some endpoint wants but that cannot be delivered */

    fh_metric *m_created, *m_delivered, *m_failed_attempts, *m_dead, *m_refused, *m_disabled,
        *m_inflight, *m_pending, *m_paused, *m_lat[LAT_BUCKETS + 1], *m_lat_count, *m_lat_sum;
} W;

static const int lat_le[LAT_BUCKETS] = {1,   2,    3,    4,    5,     7,     10,    15,
                                        20,  30,   50,   75,   100,   150,   200,   300,
                                        500, 1000, 2000, 5000, 10000, 30000, 60000, 300000};

const fh_netguard *webhook_guard(void)
{
    return &W.guard;
}

/* Wakes the webhook thread from any thread (a pipe write is async-signal and thread safe). */
static void wake_thread(void)
{
    if (W.multi && W.wake[1] >= 0) {
        ssize_t w = write(W.wake[1], "1", 1);
        (void)w; /* a full pipe is awake already */
    }
}

void webhook_poke(void)
{
    atomic_store(&W.poke, 1);
    wake_thread();
}

static int running(void)
{
    return !atomic_load(&W.stop) && *W.b->run;
}

/* ---- SQL helpers ------------------------------------------------------------------------- */

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void sql_warn(const char *what)
{
    fh_log(FH_LOG_ERROR, "webhook.sql", "what=%s error=\"%s\"", what, sqlite3_errmsg(W.db));
}

static void txn_begin(void)
{
    if (W.in_txn)
        return;
    if (step_done(W.st[S_BEGIN]) == 0)
        W.in_txn = 1;
    else
        sql_warn("begin");
}

static void seek_back(void);

/* Commits the open transaction, then stores the offsets of the records it covers. On a failed
 * commit the consumer goes back to the first record of the transaction (nothing is lost; the
 * deliveries are inserted again, deduplicated by their ids). */
static void txn_commit(void)
{
    if (!W.in_txn)
        return;
    W.in_txn = 0;
    if (step_done(W.st[S_COMMIT])) {
        sql_warn("commit");
        step_done(W.st[S_ROLLBACK]);
        seek_back();
        return;
    }
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int p = 0; p < MAX_PARTS; p++) {
        if (W.to_store[p] < 0)
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, W.topic, p)->offset = W.to_store[p];
        W.to_store[p] = -1;
        W.first_in_txn[p] = -1;
    }
    if (l) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(W.rk, l);
        /* A partition revoked meanwhile refuses the store: its next owner starts from the last
         * committed offset and finds these deliveries already recorded. */
        if (err && err != RD_KAFKA_RESP_ERR__STATE)
            fh_log(FH_LOG_WARN, "webhook.offsets", "error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(l);
    }
}

static void seek_back(void)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < MAX_PARTS; p++) {
        if (W.first_in_txn[p] >= 0) {
            rd_kafka_topic_partition_list_add(l, W.topic, p)->offset = W.first_in_txn[p];
            fh_lost_table_set(&W.next, W.topic, p, W.first_in_txn[p]);
        }
        W.first_in_txn[p] = -1;
        W.to_store[p] = -1;
    }
    if (l->cnt) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(W.rk, l, 5000);
        if (e) {
            fh_log(FH_LOG_ERROR, "webhook.seek", "error=\"%s\"", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- endpoints --------------------------------------------------------------------------- */

static void ep_free(wh_ep *e)
{
    free(e->url);
    free(e->flying);
    fh_filter_free(&e->filter);
}

static wh_ep *ep_find(const char *id)
{
    for (size_t i = 0; i < W.neps; i++)
        if (strcmp(W.eps[i].id, id) == 0)
            return &W.eps[i];
    return NULL;
}

/* Rebuilds the endpoint table from the store when its version moved; transfers in flight are
 * re-attached to their endpoint by id. */
static void eps_reload(int force)
{
    sqlite3_stmt *st = W.st[S_VERSION];
    long long v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (v < 0 || (!force && v == W.eps_version))
        return;
    wh_ep *eps = NULL;
    size_t n = 0, cap = 0;
    char err[256];
    st = W.st[S_EPS];
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            wh_ep *ne = realloc(eps, nc * sizeof(*ne));
            if (!ne)
                break;
            eps = ne;
            cap = nc;
        }
        wh_ep *e = &eps[n];
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%s", (const char *)sqlite3_column_text(st, 0));
        e->url = strdup((const char *)sqlite3_column_text(st, 1));
        e->flying = calloc((size_t)W.conc, sizeof(*e->flying));
        json_t *fj = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
        int bad =
            !e->url || !e->flying || fh_filter_parse(fj, &e->filter, err, sizeof(err)) != FH_OK;
        json_decref(fj);
        e->format = fh_wh_format_parse((const char *)sqlite3_column_text(st, 3));
        long kl = fh_sign_secret_key((const char *)sqlite3_column_text(st, 4), e->key.k, err,
                                     sizeof(err));
        e->key.len = kl > 0 ? (size_t)kl : 0;
        if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
            kl = fh_sign_secret_key((const char *)sqlite3_column_text(st, 5), e->old_key.k, err,
                                    sizeof(err));
            e->old_key.len = kl > 0 ? (size_t)kl : 0;
            e->old_until_ms = sqlite3_column_int64(st, 6);
        }
        e->enabled = sqlite3_column_int(st, 7);
        e->ordered = sqlite3_column_int(st, 8);
        e->failing_since_ms = sqlite3_column_int64(st, 9);
        if (bad || e->format < 0 || !e->key.len) {
            /* Only the API writes this table and it validates; a row that still does not load
             * is skipped (never delivered to) and said so. */
            fh_log(FH_LOG_ERROR, "webhook.endpoint_unusable", "endpoint=%s", e->id);
            ep_free(e);
            continue;
        }
        e->has_work = 1;
        n++;
    }
    sqlite3_reset(st);
    /* Carry over what is in flight. */
    for (long long i = 0; i < W.max_in_flight; i++) {
        xfer *x = &W.xfers[i];
        if (!x->busy)
            continue;
        x->ep = (size_t)-1;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(eps[j].id, x->ep_id) == 0) {
                if (eps[j].inflight < W.conc)
                    eps[j].flying[eps[j].inflight++] = x->delivery_id;
                x->ep = j;
                break;
            }
        }
    }
    for (size_t i = 0; i < W.neps; i++)
        ep_free(&W.eps[i]);
    free(W.eps);
    W.eps = eps;
    W.neps = n;
    W.eps_version = v;
    fh_log(FH_LOG_INFO, "webhook.endpoints", "count=%zu version=%lld", n, v);
}

static void ep_set_failing(wh_ep *e, int64_t since)
{
    sqlite3_stmt *st = W.st[since ? S_EP_FAIL : S_EP_OK];
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
    if (since)
        sqlite3_bind_int64(st, 2, since);
    if (step_done(st))
        sql_warn("endpoint_health");
    e->failing_since_ms = since;
}

static void ep_disable(wh_ep *e, const char *reason)
{
    sqlite3_stmt *st = W.st[S_EP_DISABLE];
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, fh_now_ms());
    if (step_done(st))
        sql_warn("endpoint_disable");
    whs_bump_version(W.db);
    e->enabled = 0;
    fh_metric_add(W.m_disabled, 1);
    char q[400];
    fh_log(FH_LOG_WARN, "webhook.endpoint_disabled", "endpoint=%s reason=%s", e->id,
           fh_log_quote(q, sizeof(q), reason));
}

/* ---- partitions ---------------------------------------------------------------------------- */

static void recount_pending(void)
{
    sqlite3_stmt *st = W.st[S_PENDING];
    if (sqlite3_step(st) == SQLITE_ROW)
        W.pending = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    fh_metric_set(W.m_pending, W.pending);
}

static void own(int p, int yes)
{
    if (p < 0 || p >= MAX_PARTS)
        return;
    W.owned[p] = (unsigned char)yes;
    sqlite3_stmt *st = W.st[yes ? S_OWN_ADD : S_OWN_DEL];
    sqlite3_bind_int(st, 1, p);
    step_done(st);
}

static void pause_parts(rd_kafka_topic_partition_list_t *l, int pause)
{
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(W.rk, l) : rd_kafka_resume_partitions(W.rk, l);
    if (err)
        fh_log(FH_LOG_WARN, "webhook.pause", "error=\"%s\"", rd_kafka_err2str(err));
}

/* At webhooks.queue_max pending deliveries the consumer stops fetching (records already fetched
 * are still turned into deliveries: nothing fetched is dropped); below 90% it fetches again. */
static void check_pause(void)
{
    int want;
    if (!W.paused)
        want = W.pending >= W.queue_max;
    else
        want = W.pending >= W.queue_max - W.queue_max / 10;
    if (want == W.paused)
        return;
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(W.rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l) {
        pause_parts(l, want);
        rd_kafka_topic_partition_list_destroy(l);
    }
    W.paused = want;
    fh_metric_set(W.m_paused, want);
    fh_log(want ? FH_LOG_WARN : FH_LOG_INFO, want ? "webhook.paused" : "webhook.resumed",
           "pending=%lld queue_max=%lld", W.pending, W.queue_max);
}

/* ---- transfers ------------------------------------------------------------------------------ */

static void xfer_finish(xfer *x, CURLcode res);
static void pump(int timeout_ms);

static void xfers_done(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(W.multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode res = msg->data.result;
        curl_multi_remove_handle(W.multi, msg->easy_handle);
        if (x)
            xfer_finish(x, res);
    }
}

static int64_t mono_ms(void)
{
    return (int64_t)(fh_mono_ns() / 1000000u);
}

/* CURLMOPT_SOCKETFUNCTION: curl says which of its sockets to watch for what. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)userp;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(W.epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = fd};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(W.epfd, EPOLL_CTL_MOD, fd, &ev) && errno == ENOENT)
        epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants CURL_SOCKET_TIMEOUT next (-1: never). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    (void)userp;
    W.timer_at_ms = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    return 0;
}

/* Runs the multi handle: waits up to timeout_ms for curl's sockets, its timer or the wake-up
 * pipe, tells curl what happened (only the sockets that are ready: the cost follows the
 * transfers that progress, not all of those in flight), then finishes the completed ones. */
static void pump(int timeout_ms)
{
    struct epoll_event evs[256];
    int still;
    if (W.timer_at_ms >= 0) {
        int64_t left = W.timer_at_ms - mono_ms();
        if (left < timeout_ms)
            timeout_ms = left < 0 ? 0 : (int)left;
    }
    int n = epoll_wait(W.epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd == W.wake[0]) {
            char junk[64];
            while (read(W.wake[0], junk, sizeof(junk)) > 0) {
            }
            continue;
        }
        int flags = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP))
            flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (evs[i].events & EPOLLERR)
            flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(W.multi, fd, flags, &still);
    }
    if (W.timer_at_ms >= 0 && mono_ms() >= W.timer_at_ms) {
        W.timer_at_ms = -1;
        curl_multi_socket_action(W.multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
    xfers_done();
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    xfer *x = ctx;
    size_t len = size * n;
    if (x->resp_total + len > (size_t)W.resp_max) {
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
    (void)purpose;
    const char *why = fh_netguard_check(&W.guard, &a->addr);
    if (why) {
        char addr[64];
        snprintf(x->guard_err, sizeof(x->guard_err),
                 "refused by the SSRF guard: %s is %s (webhooks.allow_cidrs)",
                 fh_netguard_addr_text(&a->addr, addr, sizeof(addr)), why);
        fh_metric_add(W.m_refused, 1);
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

static xfer *xfer_get(void)
{
    for (long long i = 0; i < W.max_in_flight; i++)
        if (!W.xfers[i].busy)
            return &W.xfers[i];
    return NULL;
}

/* An easy handle for x with every option that is the same for each of its attempts (set once:
 * resetting and setting them all again per attempt cost more than the HTTP exchange). */
static CURL *xfer_easy(xfer *x)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)W.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)W.timeout_ms);
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
static int xfer_start(wh_ep *e, size_t ep_index, sqlite3_stmt *st)
{
    char hv[64 + 2 * FH_SIGN_SIG_SIZE + 32], sig[FH_SIGN_SIG_SIZE], sig2[FH_SIGN_SIG_SIZE];
    xfer *x = xfer_get();
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
    if (!x->easy && !(x->easy = xfer_easy(x))) {
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
    if (curl_multi_add_handle(W.multi, c) != CURLM_OK)
        return -1;
    x->busy = 1;
    e->flying[e->inflight++] = x->delivery_id;
    W.inflight++;
    return 0;
}

/* Printable ASCII only: the log shows the response as a JSON string whatever its bytes were. */
static void sanitize(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            s[i] = (s[i] == '\n' || s[i] == '\t') ? ' ' : '?';
}

static int64_t jittered(int64_t ms)
{
    uint32_t r = 0;
    if (W.jitter_pct <= 0 || ms <= 0 || getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
        return ms;
    return ms + (int64_t)((double)ms * W.jitter_pct / 100.0 * (r / 4294967296.0));
}

static void observe_latency(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int i = 0;
    while (i < LAT_BUCKETS && ms > lat_le[i])
        i++;
    for (; i <= LAT_BUCKETS; i++) /* Prometheus buckets are cumulative */
        fh_metric_add(W.m_lat[i], 1);
    fh_metric_add(W.m_lat_count, 1);
    fh_metric_add(W.m_lat_sum, ms);
}

static void xfer_finish(xfer *x, CURLcode res)
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
        snprintf(err, sizeof(err), "response longer than %lld bytes: cut off", W.resp_max);

    wh_ep *e = x->ep < W.neps && strcmp(W.eps[x->ep].id, x->ep_id) == 0 ? &W.eps[x->ep]
                                                                        : ep_find(x->ep_id);
    txn_begin();
    if (x->resp.len)
        sanitize(x->resp.data, x->resp.len);
    sqlite3_stmt *st;
    if (!ok) {
        st = W.st[S_ATTEMPT];
        sqlite3_bind_int64(st, 1, x->delivery_id);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int(st, 3, (int)status);
        sqlite3_bind_int64(st, 4, latency);
        if (err[0])
            sqlite3_bind_text(st, 5, err, -1, SQLITE_STATIC);
        if (x->resp.len)
            sqlite3_bind_text(st, 6, x->resp.data, (int)x->resp.len, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, W.instance, -1, SQLITE_STATIC);
        if (step_done(st))
            sql_warn("attempt");
    }

    int state = WHS_PENDING, tries = x->tries + 1;
    int64_t next = now;
    if (ok) {
        state = WHS_DELIVERED;
        fh_metric_add(W.m_delivered, 1);
        if (x->tries == 0)
            observe_latency(now - x->produced_ms);
        if (e && e->failing_since_ms)
            ep_set_failing(e, 0);
    } else {
        fh_metric_add(W.m_failed_attempts, 1);
        if (status == 410 && e) {
            char reason[200];
            char when[32];
            snprintf(reason, sizeof(reason),
                     "the endpoint answered 410 Gone at %s: it asked to receive no more deliveries",
                     fh_time_rfc3339(now, when, sizeof(when)));
            ep_disable(e, reason);
            tries = x->tries; /* not the delivery's fault: it goes out again if re-enabled */
        } else if (tries >= W.nschedule) {
            state = WHS_FAILED;
            fh_metric_add(W.m_dead, 1);
        } else {
            int64_t delay = jittered(W.schedule[tries]);
            if ((status == 429 || status == 503) && x->retry_after_s >= 0) {
                int64_t ra =
                    (int64_t)(x->retry_after_s < W.retry_after_max_s ? x->retry_after_s
                                                                     : W.retry_after_max_s) *
                    1000;
                if (ra > delay)
                    delay = ra;
            }
            next = now + delay;
        }
        if (e && e->enabled) {
            if (!e->failing_since_ms) {
                ep_set_failing(e, now);
            } else if (now - e->failing_since_ms >= W.disable_after_ms) {
                char reason[CURL_ERROR_SIZE + 300], since[32];
                snprintf(reason, sizeof(reason),
                         "failing continuously since %s (%lld s without a success, "
                         "webhooks.disable_after_s=%lld); last error: %s",
                         fh_time_rfc3339(e->failing_since_ms, since, sizeof(since)),
                         (long long)((now - e->failing_since_ms) / 1000), W.disable_after_ms / 1000,
                         err);
                ep_disable(e, reason);
            }
        }
        if (e && state == WHS_PENDING && next < e->next_due_ms)
            e->next_due_ms = next;
    }
    st = W.st[S_DONE];
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
    sqlite3_bind_text(st, 10, W.instance, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, x->requeued);
    if (step_done(st))
        sql_warn("delivery");
    if (state != WHS_PENDING && sqlite3_changes(W.db) > 0 && W.pending > 0)
        W.pending--;
    if (e)
        ep_fly_remove(e, x->delivery_id);
    x->busy = 0;
    W.inflight--;
}

/* Starts due deliveries, endpoint by endpoint, each within webhooks.endpoint_concurrency: an
 * endpoint that is slow or down only ever holds its own slots, never another's. */
static void dispatch(void)
{
    int64_t now = fh_now_ms();
    for (size_t i = 0; i < W.neps && W.inflight < W.max_in_flight; i++) {
        wh_ep *e = &W.eps[i];
        long long free_slots = W.conc - e->inflight;
        if (!e->enabled || free_slots <= 0 || (!e->has_work && now < e->next_due_ms))
            continue;
        /* Wait for half the slots when some are busy: fewer, fuller queries. */
        if (e->inflight > 0 && free_slots < (W.conc + 1) / 2 && now < e->next_due_ms)
            continue;
        sqlite3_stmt *st = W.st[e->ordered ? S_DUE_ORDERED : S_DUE];
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, W.conc);
        long long rows = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            rows++;
            int64_t id = sqlite3_column_int64(st, 0);
            if (ep_flying(e, id))
                continue;
            if (e->inflight >= W.conc || W.inflight >= W.max_in_flight)
                break;
            if (xfer_start(e, i, st))
                break;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            sql_warn("due");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rows < W.conc) {
            /* Nothing more is due now: sleep until the next retry, or the next scan. */
            e->has_work = 0;
            e->next_due_ms = now + W.scan_ms;
            st = W.st[S_NEXT_DUE];
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
    fh_metric_set(W.m_inflight, W.inflight);
}

/* Lets what is in flight on partitions we are about to lose finish and be recorded, so the next
 * owner does not send them again (bounded by webhooks.timeout_ms). parts NULL: everything. */
static void drain(const rd_kafka_topic_partition_list_t *parts)
{
    uint64_t deadline = fh_mono_ns() + (uint64_t)(W.timeout_ms + 1000) * 1000000ULL;
    for (;;) {
        int left = 0;
        for (long long i = 0; i < W.max_in_flight; i++) {
            if (!W.xfers[i].busy)
                continue;
            if (!parts) {
                left = 1;
                break;
            }
            for (int k = 0; k < parts->cnt; k++)
                if (parts->elems[k].partition == W.xfers[i].part &&
                    strcmp(parts->elems[k].topic, W.topic) == 0)
                    left = 1;
        }
        if (!left || fh_mono_ns() > deadline)
            break;
        pump(50);
        txn_commit();
    }
    txn_commit();
}

/* ---- consuming ------------------------------------------------------------------------------ */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS && atomic_load(&W.stop)) {
        /* The first join can complete while the consumer is closing: take nothing on. */
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
        /* records below the committed offsets that Kafka deleted meanwhile are lost to us */
        fh_lost_table_assigned(&W.next, rk, parts, 5000);
        for (int i = 0; i < parts->cnt; i++)
            if (strcmp(parts->elems[i].topic, W.topic) == 0)
                own(parts->elems[i].partition, 1);
        if (W.paused)
            pause_parts(parts, 1);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Record what was consumed so far and commit its offsets while the partitions are
         * still ours, stop starting new attempts on them, and let the running ones finish. */
        txn_commit();
        if (!rd_kafka_assignment_lost(rk))
            rd_kafka_commit(rk, NULL, 0);
        for (int i = 0; i < parts->cnt; i++)
            if (strcmp(parts->elems[i].topic, W.topic) == 0)
                own(parts->elems[i].partition, 0);
        drain(parts);
        fh_lost_table_revoked(&W.next, parts);
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
    } else {
        fh_kafka_rebalance_cb(rk, err, parts, opaque);
    }
    recount_pending();
    int owned = 0;
    for (int p = 0; p < MAX_PARTS; p++)
        owned += W.owned[p];
    fh_log(FH_LOG_INFO, "webhook.partitions", "change=%s count=%d owned=%d pending=%lld",
           err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assigned" : "revoked", parts->cnt, owned,
           W.pending);
    for (size_t i = 0; i < W.neps; i++)
        W.eps[i].has_work = 1;
}

/* 1 when some enabled endpoint's filter matches the record: checked in place (no jansson tree),
 * so records nobody subscribed to cost a parse and no allocation. 0 also for invalid records. */
static int wanted(const rd_kafka_message_t *m)
{
    fh_event_view view;
    fh_filter_facts facts;
    char err[384];
    int any = 0;
    if (fh_event_check(W.b->contract, &W.doc, m->payload, m->len, W.max_record_bytes, &view, err,
                       sizeof(err)))
        return 0;
    if (fh_filter_facts_from_view(&view, &facts))
        return 1; /* out of memory: let the full path decide */
    for (size_t i = 0; i < W.neps && !any; i++)
        any = W.eps[i].enabled && fh_filter_match_facts(&W.eps[i].filter, &facts);
    fh_filter_facts_free(&facts);
    return any;
}

/* Turns one record into deliveries: one row per matching enabled endpoint and body, inside the
 * open transaction. Bodies are rendered once per format and shared through the payloads table. */
static int ingest(const rd_kafka_message_t *m)
{
    char err[384], key[160], msg_id[WHS_ID_SIZE], kind[48];
    int64_t payload[FH_WH__COUNT][FH_WH_MAX_BODIES];
    const char *pvariant[FH_WH__COUNT][FH_WH_MAX_BODIES];
    char reason[512];
    fh_event ev;
    if (m->partition < 0 || m->partition >= MAX_PARTS || !wanted(m))
        return 0;
    /* wanted() found it valid, and decoding uses the same parser and check: a failure here is
     * not the contract's (memory), so the record is dead-lettered rather than dropped. */
    if (fh_event_decode(W.b->contract, m->payload, m->len, W.max_record_bytes, &ev, err,
                        sizeof(err))) {
        snprintf(reason, sizeof(reason), "webhooks: cannot decode: %s", err);
        return fh_dlq_send(W.dlq, m, reason);
    }
    memset(payload, 0xff, sizeof(payload));
    int64_t now = fh_now_ms();
    rd_kafka_timestamp_type_t tst;
    int64_t produced = rd_kafka_message_timestamp(m, &tst);
    if (produced <= 0)
        produced = now;
    fh_event_key(&ev, key, sizeof(key));
    int rc = 0, dead = 0; /* dead: already dead-lettered once */
    for (size_t i = 0; i < W.neps && rc == 0; i++) {
        wh_ep *e = &W.eps[i];
        if (!e->enabled || !fh_filter_match(&e->filter, &ev))
            continue;
        int n = fh_wh_body_count(e->format, &ev);
        for (int b = 0; b < n; b++) {
            const char *variant = "";
            if (payload[e->format][b] < 0) {
                fh_buf_reset(&W.body);
                if (fh_wh_render(e->format, &ev, b, &W.body, &variant)) {
                    /* Over the body cap (re-encoding can grow a record: 1E-9 becomes
                     * 1.0000000000000001e-09): no endpoint of this format gets it, so the
                     * record goes to the dead-letter topic instead of vanishing. */
                    fh_log(FH_LOG_WARN, "webhook.render", "event=%s format=%s", ev.id,
                           fh_wh_format_name(e->format));
                    snprintf(reason, sizeof(reason),
                             "webhooks: cannot render the %s body (over %zu bytes)",
                             fh_wh_format_name(e->format), W.body.max);
                    if (!dead && fh_dlq_send(W.dlq, m, reason)) {
                        rc = -1;
                        break;
                    }
                    dead = 1;
                    continue;
                }
                snprintf(kind, sizeof(kind), "%s%s%s", fh_wh_format_name(e->format),
                         *variant ? "." : "", variant);
                sqlite3_stmt *st = W.st[S_PAYLOAD];
                sqlite3_bind_text(st, 1, ev.id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 3, W.body.data ? W.body.data : "", (int)W.body.len,
                                  SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, now);
                if (sqlite3_step(st) == SQLITE_ROW)
                    payload[e->format][b] = sqlite3_column_int64(st, 0);
                else
                    rc = -1;
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
                if (rc)
                    break;
                pvariant[e->format][b] = variant;
            } else {
                variant = pvariant[e->format][b];
            }
            whs_msg_id(e->id, ev.id, variant, msg_id);
            sqlite3_stmt *st = W.st[S_INSERT];
            sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, ev.id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, fh_event_type_name(ev.type), -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, payload[e->format][b]);
            sqlite3_bind_int(st, 6, m->partition);
            sqlite3_bind_int64(st, 7, m->offset);
            sqlite3_bind_int64(st, 8, produced);
            sqlite3_bind_text(st, 9, e->ordered ? key : "", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 10, now);
            if (step_done(st)) {
                rc = -1;
                break;
            }
            if (sqlite3_changes(W.db) > 0) {
                W.pending++;
                e->has_work = 1;
                fh_metric_add(W.m_created, 1);
            }
        }
    }
    fh_event_clear(&ev);
    return rc;
}

static void consume(void)
{
    for (long long n = 0; n < W.batch_max && running(); n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(W.rk, 0);
        if (!m)
            return;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fh_log(FH_LOG_WARN, "webhook.consume", "error=\"%s\"", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int p = m->partition;
        int64_t from, to;
        if (fh_lost_table_check(&W.next, W.rk, m, &from, &to))
            health_records_lost("webhooks", W.topic, p, from, to);
        if (p >= 0 && p < MAX_PARTS) {
            txn_begin();
            if (W.first_in_txn[p] < 0)
                W.first_in_txn[p] = m->offset;
            if (ingest(m)) {
                sql_warn("ingest");
                rd_kafka_message_destroy(m);
                W.in_txn = 0;
                step_done(W.st[S_ROLLBACK]);
                seek_back();
                usleep(100000); /* a failing disk: do not spin */
                return;
            }
            W.to_store[p] = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
    }
}

/* ---- housekeeping -------------------------------------------------------------------------- */

/* Deletes delivered and failed deliveries older than webhooks.retention_s, with their attempts
 * and the bodies nothing refers to any more, a bounded amount per round. */
static void prune(void)
{
    char sql[768], err[256];
    int64_t cutoff = fh_now_ms() - W.retention_ms;
    snprintf(
        sql, sizeof(sql),
        "BEGIN IMMEDIATE;"
        "CREATE TEMP TABLE IF NOT EXISTS gone(id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.gone;"
        "INSERT INTO temp.gone SELECT id FROM deliveries WHERE state <> 0 AND updated_ms < %lld"
        " LIMIT 20000;"
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM temp.gone);"
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM temp.gone);"
        "DELETE FROM payloads WHERE id IN (SELECT id FROM payloads WHERE created_ms < %lld"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.payload_id = payloads.id)"
        " LIMIT 20000);"
        "COMMIT;",
        (long long)cutoff, (long long)cutoff);
    if (whs_exec(W.db, sql, err, sizeof(err))) {
        sqlite3_exec(W.db, "ROLLBACK", NULL, NULL, NULL);
        fh_log(FH_LOG_WARN, "webhook.prune", "error=\"%s\"", err);
    }
}

static void housekeeping(void)
{
    int64_t now = fh_now_ms();
    if (atomic_exchange(&W.poke, 0) || now >= W.next_scan_ms) {
        eps_reload(0);
        for (size_t i = 0; i < W.neps; i++)
            W.eps[i].has_work = 1;
        W.next_scan_ms = now + W.scan_ms;
    }
    if (now >= W.next_recount_ms) {
        recount_pending();
        W.next_recount_ms = now + 10000;
    }
    if (now >= W.next_prune_ms) {
        prune();
        W.next_prune_ms = now + 60000;
    }
    fh_metric_set(W.m_pending, W.pending);
    check_pause();
}

/* How long the loop may wait: until the earliest endpoint look, at most 100 ms. */
static int wait_ms(long long consumed_full)
{
    if (consumed_full || atomic_load(&W.poke))
        return 0;
    int64_t now = fh_now_ms(), t = 100;
    for (size_t i = 0; i < W.neps; i++) {
        wh_ep *e = &W.eps[i];
        if (!e->enabled || e->inflight >= W.conc)
            continue;
        if (e->has_work)
            return 0;
        if (e->next_due_ms - now < t)
            t = e->next_due_ms - now;
    }
    return t < 0 ? 0 : (int)t;
}

static void *thread_main(void *arg)
{
    (void)arg;
    while (running()) {
        pump(wait_ms(0));
        txn_commit();
        housekeeping();
        consume();
        txn_commit();
        dispatch();
    }
    fh_log(FH_LOG_INFO, "webhook.stopping", "in_flight=%lld", W.inflight);
    drain(NULL);
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------------------- */

static void register_metrics(void)
{
    static char labels[LAT_BUCKETS + 1][24];
    W.m_created = fh_metric_new("firehose_webhook_deliveries_created_total", NULL,
                                "Deliveries recorded (one per matching endpoint and body).", 0);
    W.m_delivered = fh_metric_new("firehose_webhook_delivered_total", NULL,
                                  "Deliveries acknowledged with a 2xx.", 0);
    W.m_failed_attempts = fh_metric_new("firehose_webhook_failed_attempts_total", NULL,
                                        "Attempts that did not get a 2xx.", 0);
    W.m_dead = fh_metric_new("firehose_webhook_dead_total", NULL,
                             "Deliveries dead-lettered after the last scheduled attempt.", 0);
    W.m_refused = fh_metric_new("firehose_webhook_ssrf_refused_total", NULL,
                                "Connections refused by the SSRF guard.", 0);
    W.m_disabled = fh_metric_new("firehose_webhook_endpoints_disabled_total", NULL,
                                 "Endpoints disabled by delivery (410 Gone, failing too long).", 0);
    W.m_inflight = fh_metric_new("firehose_webhook_in_flight", NULL, "Attempts in flight.", 1);
    W.m_pending = fh_metric_new("firehose_webhook_pending", NULL,
                                "Pending deliveries on this instance's partitions.", 1);
    W.m_paused = fh_metric_new("firehose_webhook_paused", NULL,
                               "1 while the webhook consumer is paused at webhooks.queue_max.", 1);
    for (int i = 0; i <= LAT_BUCKETS; i++) {
        if (i < LAT_BUCKETS)
            snprintf(labels[i], sizeof(labels[i]), "le=\"%d\"", lat_le[i]);
        else
            snprintf(labels[i], sizeof(labels[i]), "le=\"+Inf\"");
        W.m_lat[i] = fh_metric_new("firehose_webhook_latency_ms_bucket", labels[i],
                                   "Produce (Kafka timestamp) to 2xx of first attempts, ms.", 0);
    }
    W.m_lat_count =
        fh_metric_new("firehose_webhook_latency_ms_count", NULL, "First attempts acknowledged.", 0);
    W.m_lat_sum = fh_metric_new("firehose_webhook_latency_ms_sum", NULL,
                                "Sum of produce to acknowledgement, ms.", 0);
}

static int open_store(char *err, size_t errsize)
{
    if (whs_open(W.path, &W.db, err, errsize))
        return -1;
    if (whs_exec(W.db, "CREATE TEMP TABLE owned(part INTEGER PRIMARY KEY)", err, errsize))
        return -1;
    for (int i = 0; i < S__COUNT; i++) {
        if (sqlite3_prepare_v3(W.db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &W.st[i], NULL) !=
            SQLITE_OK) {
            fh_errf(err, errsize, FH_ERR_IO, "webhooks.path: preparing statement %d: %s", i,
                    sqlite3_errmsg(W.db));
            return -1;
        }
    }
    return 0;
}

static const char *const consumer_defaults[] = {
    "enable.auto.commit=true",
    "enable.auto.offset.store=false",
    "auto.commit.interval.ms=1000",
    "auto.offset.reset=earliest",
    "partition.assignment.strategy=cooperative-sticky",
    "session.timeout.ms=10000",
    "heartbeat.interval.ms=1000",
    "log_level=4",
    "queued.max.messages.kbytes=4096",
    "queued.min.messages=5000",
    "fetch.max.bytes=2097152",
    NULL,
};

static int start_consumer(char *err, size_t errsize)
{
    rd_kafka_conf_t *conf;
    fh_broker *b = W.b;
    if (fh_kafka_conf(&b->cfg, b->bootstrap, consumer_defaults, &conf, err, errsize))
        return -1;
    const char *inst = fh_config_str(&b->cfg, "webhooks.instance_id");
    if (rd_kafka_conf_set(conf, "group.id", fh_config_str(&b->cfg, "webhooks.group"), err,
                          errsize) != RD_KAFKA_CONF_OK ||
        (*inst &&
         rd_kafka_conf_set(conf, "group.instance.id", inst, err, errsize) != RD_KAFKA_CONF_OK)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    if (!(W.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errsize)))
        return -1;
    rd_kafka_poll_set_consumer(W.rk);
    W.rkq = rd_kafka_queue_get_consumer(W.rk);
    /* The consumer queue writes a byte to the pipe when it becomes non-empty: the loop sleeps in
     * epoll_wait (pump) and still wakes for records at once. */
    rd_kafka_queue_io_event_enable(W.rkq, W.wake[1], "1", 1);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, W.topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(W.rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (serr) {
        fh_errf(err, errsize, FH_ERR_KAFKA, "subscribe: %s", rd_kafka_err2str(serr));
        return -1;
    }
    return 0;
}

int webhook_start(fh_broker *b)
{
    char err[512], host[64] = "";
    fh_config *c = &b->cfg;
    W.b = b;
    if (!fh_config_bool(c, "webhooks.enabled"))
        return 0;
    /* Before any other thread uses curl (the API parses URLs with it). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fh_log(FH_LOG_ERROR, "webhook.start", "error=\"curl_global_init failed\"");
        return -1;
    }
    snprintf(W.path, sizeof(W.path), "%s", fh_config_str(c, "webhooks.path"));
    snprintf(W.topic, sizeof(W.topic), "%s", fh_kafka_topic(c, FH_TOPIC_EVENTS));
    gethostname(host, sizeof(host) - 1);
    const char *inst = fh_config_str(c, "webhooks.instance_id");
    if (*inst)
        snprintf(W.instance, sizeof(W.instance), "%s", inst);
    else
        snprintf(W.instance, sizeof(W.instance), "%s:%d", host, (int)getpid());
    W.jitter_pct = (int)fh_config_int(c, "webhooks.retry_jitter_pct");
    W.retry_after_max_s = fh_config_int(c, "webhooks.retry_after_max_s");
    W.connect_timeout_ms = fh_config_int(c, "webhooks.connect_timeout_ms");
    W.timeout_ms = fh_config_int(c, "webhooks.timeout_ms");
    W.resp_max = fh_config_int(c, "webhooks.response_max_bytes");
    W.resp_log = fh_config_int(c, "webhooks.response_log_bytes");
    W.conc = fh_config_int(c, "webhooks.endpoint_concurrency");
    W.max_in_flight = fh_config_int(c, "webhooks.max_in_flight");
    W.queue_max = fh_config_int(c, "webhooks.queue_max");
    W.batch_max = fh_config_int(c, "webhooks.batch_max");
    W.disable_after_ms = fh_config_int(c, "webhooks.disable_after_s") * 1000;
    W.retention_ms = fh_config_int(c, "webhooks.retention_s") * 1000;
    W.scan_ms = fh_config_int(c, "webhooks.scan_interval_ms");
    W.max_record_bytes = (size_t)fh_config_int(c, "events.max_bytes");
    W.wake[0] = W.wake[1] = W.epfd = -1;
    for (int p = 0; p < MAX_PARTS; p++)
        W.to_store[p] = W.first_in_txn[p] = -1;
    fh_buf_init(&W.body, W.max_record_bytes * 4 + 65536);
    fh_json_doc_init(&W.doc, FH_EVENT_DOC_CAP(W.max_record_bytes));
    if (!(W.dlq = fh_dlq_new(b, "webhooks"))) {
        snprintf(err, sizeof(err), "out of memory");
        goto err;
    }
    if ((W.nschedule = whs_schedule_parse(fh_config_str(c, "webhooks.retry_schedule"), W.schedule,
                                          MAX_SCHEDULE, err, sizeof(err))) < 0 ||
        fh_netguard_init(&W.guard, fh_config_str(c, "webhooks.allow_cidrs"), err, sizeof(err)))
        goto err;
    if (open_store(err, sizeof(err)))
        goto err;
    if (pipe2(W.wake, O_NONBLOCK | O_CLOEXEC)) {
        snprintf(err, sizeof(err), "pipe: %s", strerror(errno));
        goto err;
    }
    if (!(W.xfers = calloc((size_t)W.max_in_flight, sizeof(*W.xfers)))) {
        snprintf(err, sizeof(err), "out of memory");
        goto err;
    }
    for (long long i = 0; i < W.max_in_flight; i++)
        fh_buf_init(&W.xfers[i].resp, (size_t)W.resp_log);
    if (!(W.multi = curl_multi_init())) {
        snprintf(err, sizeof(err), "curl_multi_init failed");
        goto err;
    }
    curl_multi_setopt(W.multi, CURLMOPT_MAXCONNECTS, (long)W.max_in_flight);
    curl_multi_setopt(W.multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(W.multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    W.timer_at_ms = -1;
    struct epoll_event wev = {.events = EPOLLIN, .data.fd = W.wake[0]};
    if ((W.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        epoll_ctl(W.epfd, EPOLL_CTL_ADD, W.wake[0], &wev)) {
        snprintf(err, sizeof(err), "epoll: %s", strerror(errno));
        goto err;
    }
    register_metrics();
    eps_reload(1);
    recount_pending();
    if (start_consumer(err, sizeof(err)))
        goto err;
    if (pthread_create(&W.thread, NULL, thread_main, NULL)) {
        snprintf(err, sizeof(err), "cannot start the webhook thread");
        goto err;
    }
    W.started = 1;
    fh_log(FH_LOG_INFO, "webhook.started",
           "path=%s group=%s instance=%s endpoints=%zu schedule_attempts=%d allow_cidrs=%zu",
           W.path, fh_config_str(c, "webhooks.group"), W.instance, W.neps, W.nschedule,
           W.guard.nallow);
    return 0;
err:
    fh_log(FH_LOG_ERROR, "webhook.start", "error=\"%s\"", err);
    return -1;
}

void webhook_stop(void)
{
    if (W.started) {
        atomic_store(&W.stop, 1);
        wake_thread();
        pthread_join(W.thread, NULL);
        W.started = 0;
    }
    if (W.rk) {
        rd_kafka_queue_io_event_enable(W.rkq, -1, NULL, 0);
        rd_kafka_consumer_close(W.rk); /* the revoke drains nothing more, commits stored offsets */
        txn_commit();
        rd_kafka_queue_destroy(W.rkq);
        rd_kafka_destroy(W.rk);
        W.rk = NULL;
    }
    for (long long i = 0; W.xfers && i < W.max_in_flight; i++) {
        xfer *x = &W.xfers[i];
        if (x->easy) {
            if (x->busy)
                curl_multi_remove_handle(W.multi, x->easy);
            curl_easy_cleanup(x->easy);
        }
        curl_slist_free_all(x->hdrs);
        free(x->body);
        fh_buf_free(&x->resp);
    }
    free(W.xfers);
    W.xfers = NULL;
    if (W.multi)
        curl_multi_cleanup(W.multi);
    W.multi = NULL;
    for (size_t i = 0; i < W.neps; i++)
        ep_free(&W.eps[i]);
    free(W.eps);
    W.eps = NULL;
    W.neps = 0;
    for (int i = 0; i < S__COUNT; i++)
        if (W.st[i])
            sqlite3_finalize(W.st[i]);
    memset(W.st, 0, sizeof(W.st));
    if (W.db)
        sqlite3_close(W.db);
    W.db = NULL;
    for (int i = 0; i < 2; i++)
        if (W.wake[i] >= 0)
            close(W.wake[i]);
    if (W.epfd >= 0)
        close(W.epfd);
    W.wake[0] = W.wake[1] = W.epfd = -1;
    fh_buf_free(&W.body);
    fh_json_doc_free(&W.doc);
    fh_lost_table_free(&W.next);
    fh_dlq_free(W.dlq);
    W.dlq = NULL;
}
