#include "netpolicy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int fh_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0 ||
        (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0))
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* 1 when the no_proxy list names host. */
static int no_proxy_matches(const char *list, const char *host)
{
    size_t hl = strlen(host);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p + strcspn(p, ",");
        const char *ee = e;
        while (ee > p && ee[-1] == ' ')
            ee--;
        const char *colon = memchr(p, ':', (size_t)(ee - p));
        if (colon && !memchr(colon + 1, ':', (size_t)(ee - colon - 1)))
            ee = colon; /* "host:port": the port is not compared */
        if (*p == '.')
            p++;
        size_t n = (size_t)(ee - p);
        if (n == 1 && *p == '*')
            return 1;
        if (n && n <= hl && strncasecmp(host + hl - n, p, n) == 0 &&
            (n == hl || host[hl - n - 1] == '.'))
            return 1;
        p = e;
    }
    return 0;
}

fh_err fh_proxy_for(const fh_wsc_url *url, const char *explicit_proxy, fh_env_fn env, char *out,
                    size_t size, char *errbuf, size_t errsize)
{
    const char *p = explicit_proxy;
    if (size)
        out[0] = '\0';
    if (p && strcmp(p, "none") == 0)
        return FH_OK;
    if (!p || !*p) {
        const char *np = env("no_proxy");
        if (!np || !*np)
            np = env("NO_PROXY");
        if (np && no_proxy_matches(np, url->host))
            return FH_OK;
        if (url->tls) {
            p = env("https_proxy");
            if (!p || !*p)
                p = env("HTTPS_PROXY");
        } else {
            p = env("http_proxy");
        }
        if (!p || !*p)
            return FH_OK;
    }
    const char *rest = p;
    if (strncasecmp(p, "http://", 7) == 0)
        rest = p + 7;
    else if (strstr(p, "://"))
        return fh_errf(errbuf, errsize, FH_ERR_UNSUPPORTED,
                       "proxy %s: only http:// proxies (HTTP CONNECT) are supported", p);
    size_t n = strcspn(rest, "/");
    const char *at = memchr(rest, '@', n);
    const char *hostpart = at ? at + 1 : rest;
    size_t hn = n - (size_t)(hostpart - rest);
    if (hn == 0 || *hostpart == ':')
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "proxy %s: no host", p);
    /* a port is needed: after the last ':' that is not inside an IPv6 literal's brackets */
    const char *close = memchr(hostpart, ']', hn);
    const char *after = close ? close + 1 : hostpart;
    int has_port = memchr(after, ':', hn - (size_t)(after - hostpart)) != NULL;
    int w = snprintf(out, size, "%.*s%s", (int)n, rest, has_port ? "" : ":80");
    if (w < 0 || (size_t)w >= size) {
        if (size)
            out[0] = '\0';
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "proxy %s: too long", p);
    }
    return FH_OK;
}
