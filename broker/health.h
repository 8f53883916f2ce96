/* health: /healthz, /readyz and /metrics. */
#ifndef FH_BROKER_HEALTH_H
#define FH_BROKER_HEALTH_H

#include "broker.h"
#include "http.h"

/* Appends the health routes to routes (which has room for FH_HEALTH_ROUTES more). */
#define FH_HEALTH_ROUTES 3
size_t health_routes(fh_broker *b, fh_http_route *routes);

#endif
