/* fh_netguard: the SSRF guard of outbound webhooks. Classifies a destination address and refuses
 * the ranges a webhook must never reach (loopback, private, link-local, cloud metadata, shared,
 * multicast, reserved, documentation, and their IPv4-mapped / NAT64 / 6to4 forms) unless the
 * address is in the allow-list (webhooks.allow_cidrs). IPv4-mapped IPv6 addresses are judged as
 * the IPv4 address they carry, for both the ranges and the allow-list. It also vets an endpoint
 * URL before anything is resolved (fh_netguard_url_check) and hides a URL's userinfo from
 * listings (fh_netguard_url_redact).
 *
 * The guard is immutable after fh_netguard_init: share it between threads freely. */
#ifndef FH_NETGUARD_H
#define FH_NETGUARD_H

#include <stddef.h>
#include <sys/socket.h>

#include "fh_error.h"

#define FH_NETGUARD_MAX_CIDRS 64

typedef struct fh_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network order; 4 bytes used for AF_INET */
    int bits;
} fh_cidr;

typedef struct fh_netguard {
    fh_cidr allow[FH_NETGUARD_MAX_CIDRS];
    size_t nallow;
} fh_netguard;

/* Parses "10.0.0.0/8", "::1/128" or a bare address (a host route). Host bits must be zero. */
fh_err fh_cidr_parse(const char *text, fh_cidr *out, char *errbuf, size_t errsize);

/* Parses a comma-separated allow-list (spaces allowed; "" allows nothing extra). Errors name the
 * entry: "webhooks.allow_cidrs: \"10.0.0.0/33\": prefix length out of range". */
fh_err fh_netguard_init(fh_netguard *g, const char *allow_cidrs, char *errbuf, size_t errsize);

/* The class of a non-public address as a static string ("loopback", "private", "link-local",
 * "cloud-metadata", "shared", "multicast", "reserved", "unspecified", "documentation",
 * "unique-local", ...), or NULL for a public unicast address. */
const char *fh_netguard_class(const struct sockaddr *sa);

/* NULL when sa may be connected to (public, or allow-listed); else the class that forbids it. */
const char *fh_netguard_check(const fh_netguard *g, const struct sockaddr *sa);

/* fh_netguard_check on a numeric address in text; "not-an-address" when it does not parse. */
const char *fh_netguard_check_text(const fh_netguard *g, const char *ip);

/* Writes sa's address as text (IPv4-mapped addresses as IPv4). Returns buf. */
char *fh_netguard_addr_text(const struct sockaddr *sa, char *buf, size_t size);

#define FH_NETGUARD_URL_MAX 2048

/* Checks a webhook URL without resolving it, parsed by libcurl as the delivery will parse it: an
 * absolute http:// or https:// URL of at most FH_NETGUARD_URL_MAX bytes with a host, no user
 * name or password (an endpoint's URL is stored and listed; receivers authenticate deliveries by
 * their signature instead), and, when a port is given, one from 1 to 65535. On success copies
 * the host (an IPv6 address without its brackets) into host. errbuf says what is wrong, without
 * repeating the URL's userinfo. */
fh_err fh_netguard_url_check(const char *url, char *host, size_t hostsize, char *errbuf,
                             size_t errsize);

/* Writes url into out (size bytes; strlen(url) + 1 always suffice) without its userinfo:
 * everything between "://" and the last '@' before the authority ends ('/', '?' or '#') is
 * dropped, so a URL stored with credentials is never shown with them. Returns out. */
char *fh_netguard_url_redact(const char *url, char *out, size_t size);

#endif
