/* webhook_store: the SQLite file behind webhooks (webhooks.path), shared by the webhook thread,
 * the API handlers and every broker instance pointing at the same file. Internal to webhook*.c.
 *
 * Tables: endpoints; payloads (one body per event and format, shared by the deliveries that
 * carry it); deliveries (one per endpoint and body: the durable queue and the delivery log);
 * attempts; wh_meta (schema version and the endpoints version, bumped by every endpoint change so
 * every instance reloads). */
#ifndef FH_BROKER_WEBHOOK_STORE_H
#define FH_BROKER_WEBHOOK_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "fh_error.h"
#include "fh_netguard.h"

enum whs_state { WHS_PENDING = 0, WHS_DELIVERED = 1, WHS_FAILED = 2 };

#define WHS_ID_SIZE 40

/* Opens (creating when missing) the store: WAL, busy timeout, schema. Caller closes. */
fh_err whs_open(const char *path, sqlite3 **out, char *errbuf, size_t errsize);

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

/* Runs sql (no result rows); errbuf gets SQLite's message. */
int whs_exec(sqlite3 *db, const char *sql, char *errbuf, size_t errsize);

/* ---- between the API (webhook_api.c) and the webhook thread (webhook.c) ------------------- */

/* The SSRF guard built from webhooks.allow_cidrs (immutable while running). */
const fh_netguard *webhook_guard(void);
/* Tells the webhook thread that endpoints or deliveries changed: it reloads endpoints when their
 * version moved and looks for due work at once. Thread-safe, never blocks. */
void webhook_poke(void);
#endif
