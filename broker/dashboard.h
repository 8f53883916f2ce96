/* dashboard: the page at / (web/ embedded at build time), plain HTML, CSS and JS that read the
 * REST API and the SSE stream like any other client. */
#ifndef FH_BROKER_DASHBOARD_H
#define FH_BROKER_DASHBOARD_H

#include <stddef.h>

#include "http.h"

#define FH_DASHBOARD_ROUTES 4

/* Fills routes[0..FH_DASHBOARD_ROUTES) and returns how many it wrote. The pages are public: they
 * hold no data, and every request they make carries the user's token. */
size_t dashboard_routes(fh_http_route *routes);

#endif
