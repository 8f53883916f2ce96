#include "fh_netguard.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct range {
    const char *cidr, *klass;
} range;

/* The special-purpose registries (RFC 6890 and successors), most specific first where one range
 * holds another (metadata inside link-local). */
static const range v4_ranges[] = {
    {"169.254.169.254/32", "cloud-metadata"}, /* AWS, GCP, Azure, OpenStack, ... */
    {"100.100.100.200/32", "cloud-metadata"}, /* Alibaba Cloud */
    {"192.0.0.192/32", "cloud-metadata"},     /* Oracle Cloud */
    {"0.0.0.0/8", "unspecified"},
    {"10.0.0.0/8", "private"},
    {"100.64.0.0/10", "shared"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},
    {"172.16.0.0/12", "private"},
    {"192.0.0.0/24", "reserved"},
    {"192.0.2.0/24", "documentation"},
    {"192.88.99.0/24", "reserved"},
    {"192.168.0.0/16", "private"},
    {"198.18.0.0/15", "benchmarking"},
    {"198.51.100.0/24", "documentation"},
    {"203.0.113.0/24", "documentation"},
    {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved"}, /* includes 255.255.255.255 */
};

static const range v6_ranges[] = {
    {"fd00:ec2::254/128", "cloud-metadata"}, /* AWS IMDS over IPv6 */
    {"::/128", "unspecified"},
    {"::1/128", "loopback"},
    {"::/96", "reserved"},     /* deprecated IPv4-compatible */
    {"100::/64", "reserved"},  /* discard-only */
    {"2001::/23", "reserved"}, /* IETF protocol assignments (Teredo, ORCHID, ...) */
    {"2001:db8::/32", "documentation"},
    {"fc00::/7", "unique-local"},
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local"},
    {"ff00::/8", "multicast"},
};

fh_err fh_cidr_parse(const char *text, fh_cidr *out, char *errbuf, size_t errsize)
{
    char buf[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    memset(out, 0, sizeof(*out));
    if (n == 0 || n >= sizeof(buf))
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "not an address");
    memcpy(buf, text, n);
    buf[n] = '\0';
    int maxbits;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        maxbits = 128;
    } else {
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "not an IPv4 or IPv6 address");
    }
    out->bits = maxbits;
    if (slash) {
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end || bits < 0 || bits > maxbits)
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "prefix length out of range");
        out->bits = (int)bits;
    }
    for (int i = out->bits; i < maxbits; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8)))
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "host bits set after /%d", out->bits);
    return FH_OK;
}

static int cidr_contains(const fh_cidr *c, int family, const unsigned char *addr)
{
    if (c->family != family)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return 0;
    if (rest) {
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        if ((c->addr[full] & mask) != (addr[full] & mask))
            return 0;
    }
    return 1;
}

fh_err fh_netguard_init(fh_netguard *g, const char *allow, char *errbuf, size_t errsize)
{
    char item[96], err[128];
    memset(g, 0, sizeof(*g));
    for (const char *p = allow ? allow : ""; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, ", ");
        if (n >= sizeof(item))
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "webhooks.allow_cidrs: entry too long");
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        if (g->nallow == FH_NETGUARD_MAX_CIDRS)
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                           "webhooks.allow_cidrs: more than %d entries", FH_NETGUARD_MAX_CIDRS);
        if (fh_cidr_parse(item, &g->allow[g->nallow], err, sizeof(err)))
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "webhooks.allow_cidrs: \"%s\": %s", item,
                           err);
        g->nallow++;
    }
    return FH_OK;
}

/* The address sa names, as (family, bytes); IPv4-mapped IPv6 becomes IPv4. 0 when neither. */
static int addr_of(const struct sockaddr *sa, unsigned char out[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, 12) == 0) {
            memcpy(out, a + 12, 4);
            return AF_INET;
        }
        memcpy(out, a, 16);
        return AF_INET6;
    }
    return 0;
}

static const char *class_in(const range *r, size_t n, int family, const unsigned char *addr)
{
    for (size_t i = 0; i < n; i++) {
        fh_cidr c;
        if (fh_cidr_parse(r[i].cidr, &c, NULL, 0) == FH_OK && cidr_contains(&c, family, addr))
            return r[i].klass;
    }
    return NULL;
}

static const char *class_of(int family, const unsigned char *a)
{
    if (family == AF_INET)
        return class_in(v4_ranges, sizeof(v4_ranges) / sizeof(v4_ranges[0]), AF_INET, a);
    if (family != AF_INET6)
        return "unsupported";
    /* IPv6 forms that carry an IPv4 address reach that address: judge the address. */
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a, nat64, 12) == 0) {
        const char *k = class_of(AF_INET, a + 12);
        return k ? k : NULL;
    }
    if (a[0] == 0x20 && a[1] == 0x02) { /* 6to4 2002::/16: the IPv4 address in bits 16-47 */
        const char *k = class_of(AF_INET, a + 2);
        if (k)
            return k;
    }
    return class_in(v6_ranges, sizeof(v6_ranges) / sizeof(v6_ranges[0]), AF_INET6, a);
}

const char *fh_netguard_class(const struct sockaddr *sa)
{
    unsigned char a[16];
    int family = addr_of(sa, a);
    return class_of(family, a);
}

const char *fh_netguard_check(const fh_netguard *g, const struct sockaddr *sa)
{
    unsigned char a[16];
    int family = addr_of(sa, a);
    const char *k = class_of(family, a);
    if (!k)
        return NULL;
    for (size_t i = 0; g && i < g->nallow; i++)
        if (cidr_contains(&g->allow[i], family, a))
            return NULL;
    return k;
}

const char *fh_netguard_check_text(const fh_netguard *g, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1)
        a4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1)
        a6->sin6_family = AF_INET6;
    else
        return "not-an-address";
    return fh_netguard_check(g, (struct sockaddr *)&ss);
}

char *fh_netguard_addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    unsigned char a[16];
    int family = addr_of(sa, a);
    if (!family || !inet_ntop(family, a, buf, (socklen_t)size))
        snprintf(buf, size, "?");
    return buf;
}

fh_err fh_netguard_url_check(const char *url, char *host, size_t hostsize, char *errbuf,
                             size_t errsize)
{
    CURLU *u;
    char *scheme = NULL, *name = NULL, *user = NULL, *password = NULL, *port = NULL;
    fh_err rc = FH_OK;
    if (strlen(url) > FH_NETGUARD_URL_MAX)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "longer than %d bytes", FH_NETGUARD_URL_MAX);
    if (!(u = curl_url()))
        return FH_ERR_NOMEM;
    CURLUcode set = curl_url_set(u, CURLUPART_URL, url, 0);
    if (set == CURLUE_BAD_PORT_NUMBER) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "bad port (expected 1-65535)");
        goto done;
    }
    if (set != CURLUE_OK || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &name, 0) != CURLUE_OK || !*name) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "expected an absolute http:// or https:// URL");
        goto done;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "scheme must be http or https, not %.16s",
                     scheme);
        goto done;
    }
    /* "user@", "user:password@", ":password@" and even "@" alone: curl would send them as Basic
     * credentials, and the URL would keep them in the store and in every listing. */
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL,
                     "credentials in the URL (user:password@) are refused: they would be stored "
                     "and listed in clear; receivers authenticate deliveries by their signature "
                     "(the endpoint's secret)");
        goto done;
    }
    /* curl refuses ports over 65535 and takes 0, which no server listens on. */
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && strtol(port, NULL, 10) == 0) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "bad port 0 (expected 1-65535)");
        goto done;
    }
    /* curl gives IPv6 hosts in brackets. */
    size_t hn = strlen(name);
    if (name[0] == '[' && hn > 2) {
        name[hn - 1] = '\0';
        memmove(name, name + 1, hn - 1);
        hn -= 2;
    }
    if (hn >= hostsize) {
        rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "host name too long");
        goto done;
    }
    memcpy(host, name, hn + 1);
done:
    curl_free(scheme);
    curl_free(name);
    curl_free(user);
    curl_free(password);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

char *fh_netguard_url_redact(const char *url, char *out, size_t size)
{
    const char *auth = strstr(url, "://"), *at = NULL;
    if (auth) {
        auth += 3;
        for (const char *p = auth; *p && !strchr("/?#", *p); p++)
            if (*p == '@')
                at = p;
    }
    if (!at)
        snprintf(out, size, "%s", url);
    else
        snprintf(out, size, "%.*s%s", (int)(auth - url), url, at + 1);
    return out;
}
