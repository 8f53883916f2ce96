/* webhooks/internal.h: what the files of the webhooks module share, and nothing outside it
 * includes. The module as a whole is described in webhooks.c; docs/architecture.md draws its
 * threads.
 *
 *   webhooks.c   the handle: config, start and stop, the thread's loop, housekeeping, metrics
 *   consumer.c   the webhook consumer: transactions and offsets, partitions, pause, rebalance
 *   render.c     a record into deliveries: filter match, bodies rendered once per format
 *   delivery.c   the delivery engine: curl multi on the thread's fh_loop, signing, retries,
 *                dispatch, drain
 *   endpoints.c  the in-memory endpoint table and endpoint health
 *   api.c        /api/v1/webhooks: endpoint management
 *   api_log.c    /api/v1/webhooks: the delivery log, redelivery and recovery
 *   store.c      the SQLite file (schema, ids, schedule and URL checks)
 *   changelog.c  the records of the endpoints topic and the delivery changelog, and their producer
 *   reader.c     the reader thread: both topics into the local SQLite file (the read model)
 *   migrate.c    an old-design shared webhooks.db published to the topics once */
#ifndef FH_WEBHOOKS_INTERNAL_H
#define FH_WEBHOOKS_INTERNAL_H

#include "fh_consumer.h"
#include "webhooks.h"

#include <jansson.h>

#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dlq.h"
#include "fh_consumer.h"
#include "fh_error.h"
#include "fh_loop.h"
#include "fh_lost.h"
#include "fh_metrics.h"
#include "fh_netguard.h"
#include "fh_sign.h"
#include "fh_sqlite.h"
#include "fh_aead.h"

/* ---- the store (store.c): the SQLite file behind webhooks (webhooks.path), shared by the
 * webhook thread, the API handlers and every broker instance pointing at the same file.
 *
 * Tables: endpoints; payloads (one body per event and format, shared by the deliveries that
 * carry it); deliveries (one per endpoint and body: the durable queue and the delivery log);
 * attempts; wh_meta (schema version and the endpoints version, bumped by every endpoint change so
 * every instance reloads). */

enum whs_state { WHS_PENDING = 0, WHS_DELIVERED = 1, WHS_FAILED = 2 };

#define WHS_ID_SIZE 40

/* The schema number of the file at path: 0 when there is no file, -1 when it has none. */
int whs_schema_of(const char *path);
/* Opens (creating when missing) the store: WAL, busy timeout, schema, and the Kafka cluster the
 * file belongs to (cluster_id, the broker's; "" checks nothing): a file of another cluster is
 * refused. Caller closes. */
fh_err whs_open(const char *path, const char *cluster_id, sqlite3 **out, char *errbuf,
                size_t errsize);

/* Bumps the endpoints version (inside the caller's transaction, if any). */
int whs_bump_version(sqlite3 *db);
/* The endpoints version, -1 on error. */
long long whs_version(sqlite3 *db);

/* The stable webhook-id of one body of one event for one endpoint: "msg_" + 26 base32 chars of
 * SHA-256(endpoint "/" event "/" variant). Deterministic, so a retry, a redelivery and even a
 * record consumed twice carry the same id. */
void whs_msg_id(const char *endpoint_id, const char *event_id, const char *variant,
                char out[WHS_ID_SIZE]);

const char *whs_state_name(int state);
int whs_state_parse(const char *name);

/* Parses webhooks.retry_schedule: delays in ms into out (at most max). Returns the count, or -1
 * (errbuf names the entry). */
int whs_schedule_parse(const char *text, int64_t *out, int max, char *errbuf, size_t errsize);

/* Checks an endpoint URL (fh_netguard_url_check: http or https, a host, no credentials, a port
 * from 1 to 65535, no more than 2048 bytes); then resolves the host and refuses it when any
 * address it resolves to is refused by guard. errbuf explains. */
fh_err whs_url_check(const char *url, const fh_netguard *guard, char *errbuf, size_t errsize);

/* ---- the handle ----------------------------------------------------------------------------- */

#define MAX_SCHEDULE 32
#define MAX_PARTS 4096
/* Partition slots (topics.c): partition p of the events topic is slot p, partition p of the
 * derived topic slot DERIVED_SLOT0 + p. Per-partition state and the partition column of stored
 * deliveries hold slots, so the events topic's numbers are what they always were. */
#define DERIVED_SLOT0 (MAX_PARTS / 2)
#define LAT_BUCKETS 24

/* The webhook thread's prepared statements (stmt_sql in webhooks.c). */
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
    uint64_t types;      /* the event types filter can match (fh_filter_type_mask) */
    wh_key key, old_key; /* the previous key signs too until old_until_ms */
    int64_t old_until_ms;
    int64_t failing_since_ms; /* 0: not failing */
    int inflight;
    int64_t *flying;     /* owned: delivery ids in flight, inflight of them */
    int has_work;        /* something may be due: look now */
    int64_t next_due_ms; /* look again at the latest then */
} wh_ep;

struct fh_webhooks;

/* What a produced record's opaque points to (its first member says which). */
enum { WH_OPAQUE_PUB = 1, WH_OPAQUE_BATCH = 2, WH_OPAQUE_OUTCOME = 3 };

struct wh_batch;
/* The opaque of an attempt's outcome record (its batch's own): counted in cl_outcomes until
 * Kafka acknowledged it, then in its batch like the other records. */
typedef struct wh_outcome_tag {
    int kind; /* WH_OPAQUE_OUTCOME */
    struct wh_batch *batch;
} wh_outcome_tag;

/* The changelog records the webhook thread produced between two commits of events offsets, and
 * those offsets: they are stored once Kafka acknowledged every record (consumer.c). */
typedef struct wh_batch {
    int kind;                               /* WH_OPAQUE_BATCH */
    _Atomic long long pending;              /* unacknowledged records, +1 while it is open */
    _Atomic int failed;                     /* a record Kafka did not take */
    int discard;                            /* consumed again: never store its offsets */
    rd_kafka_topic_partition_list_t *store; /* the offsets to store (NULL: none) */
    rd_kafka_topic_partition_list_t *first; /* where to go back to when one failed */
    wh_outcome_tag outcome;                 /* the opaque of its outcome records */
    struct wh_batch *next;
} wh_batch;

/* One attempt in flight (a slot of max_in_flight; its easy handle is kept between attempts). */
typedef struct xfer {
    struct fh_webhooks *w;
    CURL *easy;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    char guard_err[160]; /* why the SSRF guard refused the connection; "" when it did not */
    char ep_id[WHS_ID_SIZE], msg_id[WHS_ID_SIZE];
    size_t ep; /* index into w->eps (re-mapped on reload; checked against ep_id) */
    int64_t delivery_id, produced_ms;
    int part, tries, attempts;
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

/* A housekeeping chore of the webhook thread, run by a loop timer (webhooks.c). */
#define WH_CHORES 3
typedef struct wh_chore {
    struct fh_webhooks *w;
    void (*run)(struct fh_webhooks *w);
    int64_t first_ms, period_ms;
} wh_chore;

struct fh_webhooks {
    fh_broker *b;
    fh_webhooks_config cfg; /* strings borrowed from b->cfg */
    int started;
    pthread_t thread;
    _Atomic int stop;
    _Atomic int poke;
    char instance[160]; /* webhooks.instance_id, or host:pid */
    fh_netguard guard;  /* from webhooks.allow_cidrs; immutable while running, read by the API */
    int64_t schedule[MAX_SCHEDULE];
    int nschedule;
    long long disable_after_ms, retention_ms;

    /* webhook thread */
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    int in_txn;
    fh_consumer *kc; /* the webhook consumer (group policy); rk and rkq are its handle, queue */
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkq;
    fh_loop *loop;        /* the thread's; other threads only fh_loop_wake / fh_loop_stop it */
    fh_consumer_watch kq; /* the consumer queue's wake-up, watched on the loop */
    uint64_t curl_timer;  /* curl's timer (CURLMOPT_TIMERFUNCTION) on the loop; 0: none */
    uint64_t due_timer;   /* the next endpoint look (a retry or a look coming due); 0: none */
    int nested;           /* inside wh_pump's nested pass: the hooks only run curl and commit */
    wh_chore chores[WH_CHORES];
    struct wh_sock *socks; /* curl's sockets watched on the loop (delivery.c; owned) */
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
    fh_buf body;
    fh_json_doc doc; /* each record is checked in it before any jansson tree is built */
    fh_dlq *dlq;     /* valid records some endpoint wants but that cannot be delivered */

    fh_metric *m_created, *m_delivered, *m_failed_attempts, *m_dead, *m_refused, *m_disabled,
        *m_inflight, *m_pending, *m_paused, *m_lat[LAT_BUCKETS + 1], *m_lat_count, *m_lat_sum;

    /* API handlers (libmicrohttpd threads): one connection of their own, under api_mu */
    pthread_mutex_t api_mu;
    sqlite3 *api_db;
    char off_why[700];       /* why webhooks are off although enabled (no key): the API's 503 */
    char migrate_path[1100]; /* the old-design file to migrate from (webhooks.c) */

    /* changelog.c: the producer of both topics (acks=all, idempotent), used by the thread, the
     * API and the migration; thread-safe */
    fh_aead_key key;
    rd_kafka_t *prod;
    const char *ep_topic, *cl_topic;
    int cl_parts;                   /* partitions of the changelog */
    sqlite3_stmt *cl_st;            /* thread: wh_cl_delivery's statement on its connection */
    _Atomic long long cl_failed;    /* changelog records Kafka did not take */
    _Atomic long long cl_outcomes;  /* attempts' outcome records not yet acknowledged */
    int64_t catchup[MAX_PARTS];     /* thread: changelog end a newly assigned slot waits for; -1 */
    wh_batch *bcur, *bhead, *btail; /* thread: the open batch, and the closed ones in order */
    long long history_ms, api_wait_ms;

    /* reader.c: the reader thread and its own connection and consumer */
#define WH_RD_STMTS 16
    const char *rd_sql[WH_RD_STMTS]; /* its cached statements, by the address of their SQL */
    sqlite3_stmt *rd_st[WH_RD_STMTS];
    int tag_own;          /* set before the webhook thread starts (not for the migration) */
    uint64_t incarnation; /* random, per process: the "fh-by" header of the changelog records
                           * this process produced (its reader does not apply them again) */
    pthread_t rd_thread;
    int rd_started;
    rd_kafka_t *rd;
    sqlite3 *rd_db;
    pthread_mutex_t rd_mu;
    pthread_cond_t rd_cond;
    int64_t ep_applied;                    /* under rd_mu: next endpoints offset applied */
    _Atomic int64_t cl_applied[MAX_PARTS]; /* next changelog offset applied, per partition */
    /* reader thread: per partition (the endpoints topic's last), the next offset it reached but
     * has not recorded in the file yet (-1: none), and when it last recorded them */
    int64_t rd_unsaved[MAX_PARTS / 2 + 1];
    int64_t rd_saved_ms;
};

/* ---- changelog.c ----------------------------------------------------------------------------- */

/* The changelog partition of a slot: events p -> p, derived q -> q, modulo its partitions. */
int wh_cl_partition(const fh_webhooks *w, int slot);
/* Makes the producer, creates the two topics when topics.create says so and reads the
 * changelog's partition count. */
int wh_cl_open(fh_webhooks *w, char *err, size_t errsize);
void wh_cl_close(fh_webhooks *w);
/* Produces the current row of delivery id, or msg_id when not NULL (db: the caller's connection),
 * as its "d/" record; outcome: it records an attempt's outcome (counted in cl_outcomes, what
 * webhooks.changelog_backlog_max bounds), not a new delivery. */
int wh_cl_delivery(fh_webhooks *w, sqlite3 *db, int64_t id, const char *msg_id, int outcome);
/* Produces a failed attempt, number n of delivery msg_id on slot, as its "a/" record. */
int wh_cl_attempt(fh_webhooks *w, int slot, const char *msg_id, int n, int64_t at, int status,
                  long latency, const char *error, const char *resp, size_t resp_len,
                  const char *instance);
/* The new deliveries a "p/" record creates: all of one event and body, one per endpoint. */
typedef struct wh_cl_new {
    const char *variant;   /* the body's (whs_msg_id) */
    const char *type;      /* the event's type name */
    int64_t offset;        /* the event's Kafka offset */
    int64_t produced_ms;   /* its Kafka timestamp */
    const char *build_key; /* the event's build key: an ordered endpoint's deliveries carry it */
    const char *eps;       /* the endpoints, as JSON array items: ["ID",ORDERED],... */
} wh_cl_new;
/* Produces one body as its "p/" record; nw (NULL: none) names the deliveries it creates, each
 * pending with created_ms as of its creation (the reader inserts those it does not have). */
int wh_cl_payload(fh_webhooks *w, int slot, const char *event_id, const char *kind,
                  const void *body, size_t n, int64_t created_ms, const wh_cl_new *nw);
/* A redeliver (msg_id) or recover (msg_id NULL: failed deliveries since since_ms) request,
 * carried out by every instance's reader. part: the changelog partition (-1: every one). Waits
 * as wh_ep_publish does; 0, or -1 with errbuf naming the cause. */
int wh_cl_request(fh_webhooks *w, int part, const char *endpoint, const char *msg_id,
                  int64_t since_ms, char *errbuf, size_t errsize);
/* Waits until Kafka acknowledged everything produced so far; 0, or -1 after timeout_ms. */
int wh_cl_flush(fh_webhooks *w, int timeout_ms);
/* A new open batch (pending 1); NULL when out of memory. */
wh_batch *wh_batch_new(void);
void wh_batch_free(wh_batch *b);
/* Produces an endpoint (a JSON object; NULL: a tombstone) and, when wait, waits for Kafka's
 * acknowledgement and for this instance's reader to apply it (bounded by webhooks.api_wait_ms).
 * Returns 0, or -1 with errbuf naming the cause. */
int wh_ep_publish(fh_webhooks *w, const char *id, json_t *value, int wait, char *errbuf,
                  size_t errsize);
/* The endpoint row id of db as the object wh_ep_publish takes (secrets sealed as stored);
 * NULL when there is none. Caller decrefs. */
json_t *wh_ep_row(sqlite3 *db, const char *id);

/* ---- reader.c -------------------------------------------------------------------------------- */

int wh_reader_start(fh_webhooks *w, char *err, size_t errsize);
void wh_reader_stop(fh_webhooks *w);
/* Applies one record of either topic to db inside the caller's transaction; 0, or -1. */
int wh_apply(fh_webhooks *w, sqlite3 *db, const char *topic, int32_t part,
             const rd_kafka_message_t *m);

/* ---- migrate.c ------------------------------------------------------------------------------- */

/* Publishes an old-design webhooks.db (path; none there: nothing) once. */
void wh_migrate(fh_webhooks *w, const char *path);

/* ---- webhooks.c ------------------------------------------------------------------------------ */

/* Tells the webhook thread that endpoints or deliveries changed: it reloads endpoints when their
 * version moved and looks for due work at once. Thread-safe, never blocks. */
void wh_poke(fh_webhooks *w);
/* Wakes the webhook thread from any thread (the loop's eventfd). */
void wh_wake_thread(fh_webhooks *w);
/* One nested pass of the thread's loop (on the thread, from inside its after-pass work, or after
 * the loop stopped): waits up to timeout_ms for curl's sockets and timer, runs curl, records the
 * attempts that finished and commits; consumes and dispatches nothing. */
void wh_pump(fh_webhooks *w, int timeout_ms);
/* 1 until stop or the broker's run flag says otherwise. */
int wh_running(fh_webhooks *w);
/* Steps st to its end, then resets it and clears its bindings; 0 when it ended in SQLITE_DONE. */
int wh_step_done(sqlite3_stmt *st);
/* Steps st once: its first row's first column (an id), or -1 when it gave no row or failed;
 * then as wh_step_done. */
int64_t wh_step_id(sqlite3_stmt *st);
/* Logs the thread connection's last SQLite error. */
void wh_sql_warn(fh_webhooks *w, const char *what);
void wh_observe_latency(fh_webhooks *w, int64_t ms);

/* ---- consumer.c (webhook thread) ------------------------------------------------------------- */

/* Opens the transaction records become deliveries in, unless one is open. */
void wh_txn_begin(fh_webhooks *w);
/* Commits the open transaction and closes the open batch with the offsets of the records it
 * covers (stored once Kafka acknowledged the batch's changelog records). */
void wh_txn_commit(fh_webhooks *w);
/* Stores the offsets of the batches Kafka acknowledged, in order; goes back (seek) when one had
 * a record Kafka did not take. */
void wh_batches_store(fh_webhooks *w);
void wh_recount_pending(fh_webhooks *w);
void wh_check_pause(fh_webhooks *w);
/* Owns and resumes the assigned slots whose changelog partition the reader has caught up on. */
void wh_catchup(fh_webhooks *w);
/* Turns up to webhooks.batch_max fetched records into deliveries. */
void wh_consume(fh_webhooks *w);
/* Creates the consumer and subscribes to the events topic (webhooks.c watches its queue). */
int wh_start_consumer(fh_webhooks *w, char *err, size_t errsize);

/* ---- render.c -------------------------------------------------------------------------------- */

/* Turns one record into deliveries inside the open transaction; 0, or -1 on a store error. */
int wh_ingest(fh_webhooks *w, const rd_kafka_message_t *m);

/* ---- delivery.c (webhook thread) ------------------------------------------------------------- */

/* The multi handle (its sockets and timer on w->loop, which must exist until
 * wh_delivery_close) and the transfer slots; wh_delivery_close frees what was made. */
int wh_delivery_open(fh_webhooks *w, char *err, size_t errsize);
void wh_delivery_close(fh_webhooks *w);
/* Records the attempts curl finished (opens the transaction they are written in). */
void wh_delivery_reap(fh_webhooks *w);
/* 1 while more than webhooks.changelog_backlog_max attempts' outcome records await Kafka's
 * acknowledgement. */
int wh_backlogged(fh_webhooks *w);
/* Starts due deliveries within the concurrency caps (none while backlogged). */
void wh_dispatch(fh_webhooks *w);
/* Lets transfers on parts (NULL: all) finish and be recorded, bounded by webhooks.timeout_ms. */
void wh_drain(fh_webhooks *w, const rd_kafka_topic_partition_list_t *parts);

/* ---- endpoints.c (webhook thread) ------------------------------------------------------------ */

void wh_ep_free(wh_ep *e);
wh_ep *wh_ep_find(fh_webhooks *w, const char *id);
/* Rebuilds the endpoint table from the store when its version moved (force: always). */
void wh_eps_reload(fh_webhooks *w, int force);
void wh_ep_set_failing(fh_webhooks *w, wh_ep *e, int64_t since);
void wh_ep_disable(fh_webhooks *w, wh_ep *e, const char *reason);

/* ---- api.c, api_log.c (HTTP handlers) -------------------------------------------------------- */

/* Common gate: 503 when webhooks are off. Takes api_mu on success; wh_api_leave drops it. */
int wh_api_enter(fh_webhooks *w, fh_http_response *resp);
void wh_api_leave(fh_webhooks *w);
sqlite3_stmt *wh_api_prep(fh_webhooks *w, const char *sql, fh_http_response *resp);
void wh_api_store_error(fh_webhooks *w, fh_http_response *resp);
json_t *wh_api_body_object(const fh_http_request *req, fh_http_response *resp);
int wh_api_check_fields(json_t *j, const char *const *allowed, fh_http_response *resp);
int wh_api_endpoint_exists(fh_webhooks *w, const char *id, fh_http_response *resp);
void wh_api_put_time(fh_buf *o, const char *name, sqlite3_stmt *st, int col);
void wh_api_put_text(fh_buf *o, const char *name, sqlite3_stmt *st, int col);
void wh_api_deliveries(void *ctx, fh_http_request *req, fh_http_response *resp);
void wh_api_delivery(void *ctx, fh_http_request *req, fh_http_response *resp);
void wh_api_redeliver(void *ctx, fh_http_request *req, fh_http_response *resp);
void wh_api_recover(void *ctx, fh_http_request *req, fh_http_response *resp);

/* topics.c */
/* The slot of (topic, partition), or -1 when it is not one of ours or out of range. */
int wh_slot(const fh_webhooks *w, const char *topic, int32_t partition);
const char *wh_slot_topic(const fh_webhooks *w, int slot);
int32_t wh_slot_partition(int slot);
/* The topics webhooks read: the events topic, and the derived topic when there is one. */
int wh_topics(const fh_webhooks *w, const char *topics[2]);

#endif
