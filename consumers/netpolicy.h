/* netpolicy: firehose-tail's decisions about where its connection goes and what it may carry:
 * which HTTP proxy the environment names for a URL (curl's conventions), and whether a host is
 * this machine (a bearer token may cross plain ws:// only to loopback unless told otherwise).
 * Pure functions, unit-tested; the environment is read through a callback. */
#ifndef FH_NETPOLICY_H
#define FH_NETPOLICY_H

#include <stddef.h>

#include "fh_error.h"
#include "ws_client.h"

/* 1 when host is loopback by its text alone: "localhost" (or a name under ".localhost"), an IPv4
 * address in 127.0.0.0/8, or ::1. Names are not resolved: a name that happens to resolve to
 * 127.0.0.1 does not count. */
int fh_host_is_loopback(const char *host);

/* Reads an environment variable; NULL when unset. getenv fits. */
typedef const char *(*fh_env_fn)(const char *name);

/* The proxy for url: explicit when set ("none": no proxy, "" or NULL: ask the environment);
 * else for wss:// https_proxy, then HTTPS_PROXY, and for ws:// http_proxy (lower case only, as
 * curl: HTTP_PROXY can be set by a web request's headers in CGI). no_proxy / NO_PROXY (a comma
 * list of host names, domain suffixes with or without a leading dot, addresses, or "*") turns
 * it off for hosts it names. Writes "host:port" or "user:pass@host:port" (the http:// scheme
 * removed; port 80 when none) into out, "" when there is no proxy. FH_ERR_UNSUPPORTED for a
 * proxy URL that is not http:// (a TLS connection to the proxy itself is not offered),
 * FH_ERR_PARSE for one without a host, FH_ERR_TOOBIG when out is too small. */
fh_err fh_proxy_for(const fh_wsc_url *url, const char *explicit_proxy, fh_env_fn env, char *out,
                    size_t size, char *errbuf, size_t errsize);

#endif
