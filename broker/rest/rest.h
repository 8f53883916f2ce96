/* rest: the /api/v1 read endpoints over the materialised view (docs/api.md,
 * docs/openapi.yaml): pending, running, last-green, revisions, builds, builders, stats and flaky.
 *
 * The endpoints are one table (rest/rest.c) served by one handler on libmicrohttpd's threads: it
 * validates the query (400 naming the parameter), builds a canonical cache key, and serves the
 * rendered answer from the view's cache when it is current; otherwise it renders it in one read
 * transaction on a pooled read-only connection, so the answer and its "as_of" describe the same
 * committed version of the view. */
#ifndef FH_BROKER_REST_H
#define FH_BROKER_REST_H

#include "broker.h"
#include "http.h"

typedef struct fh_view fh_view;

/* Appends the REST routes over the view v to routes (room for FH_REST_ROUTES more); returns how
 * many. Their ctx is v, which must outlive the HTTP server. With the view disabled or stopping
 * they answer 503. */
#define FH_REST_ROUTES 12
size_t rest_routes(fh_view *v, fh_http_route *routes);

#endif
