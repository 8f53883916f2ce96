/* statuspush: POST /api/v1/ingest/buildbot?master=NAME, for masters that cannot run the firehose
 * plugin. Buildbot's stock HttpStatusPush reporter posts each build's data-API dictionary when the
 * build starts and when it finishes; each post becomes v1 events (build.started then property.set;
 * property.set then build.finished) that pass the contract and are produced to the events topic
 * before the answer (202), so a 503 makes the reporter retry and a retried post is the same events
 * (stable ids). What this mode cannot see is in docs/buildbot.md. Needs a token with the ingest
 * scope. */
#ifndef FH_BROKER_STATUSPUSH_H
#define FH_BROKER_STATUSPUSH_H

#include "broker.h"
#include "http.h"

#define FH_STATUSPUSH_ROUTES 1

/* clang-format off */
#define FH_STATUSPUSH_CFG                                                                          \
    {"ingest.statuspush", NULL, FH_CFG_BOOL, "true", 0, 0,                                         \
     "accept Buildbot HttpStatusPush posts at /api/v1/ingest/buildbot (tokens with the "           \
     "ingest scope)"}
/* clang-format on */

/* The module's handle: its producer, the per-master seq table, its metrics. */
typedef struct fh_statuspush fh_statuspush;

/* Makes the handle and, when ingest.statuspush is on, its producer (when off, the route answers
 * 503). Call after the Kafka address is known. On success *out is the handle (free it with
 * statuspush_free); on error *out is NULL and errbuf says why. */
fh_err statuspush_start(fh_broker *b, fh_statuspush **out, char *errbuf, size_t errsize);
/* Fills routes[0..FH_STATUSPUSH_ROUTES); returns how many. Their ctx is sp. */
size_t statuspush_routes(fh_statuspush *sp, fh_http_route *routes);
/* Flushes and destroys the producer, frees sp. Call after the HTTP server stopped. NULL is
 * fine. */
void statuspush_free(fh_statuspush *sp);

#endif
