/* The SSRF guard: private, loopback, link-local, metadata and unique-local ranges are refused in
 * every spelling (IPv4-mapped, NAT64, 6to4), public addresses pass, and the allow-list exempts
 * exactly what it names. */
#include "fh_netguard.h"
#include "fh_test.h"

#include <string.h>

static const char *check(const fh_netguard *g, const char *ip)
{
    const char *k = fh_netguard_check_text(g, ip);
    return k ? k : "allowed";
}

TEST(netguard_refuses_private_loopback_link_local_and_metadata)
{
    fh_netguard g;
    char err[128];
    CHECK(fh_netguard_init(&g, "", err, sizeof(err)) == FH_OK);
    CHECK_STR(check(&g, "10.0.0.0"), "private");
    CHECK_STR(check(&g, "10.255.255.255"), "private");
    CHECK_STR(check(&g, "172.16.0.1"), "private");
    CHECK_STR(check(&g, "172.31.255.255"), "private");
    CHECK_STR(check(&g, "172.15.255.255"), "allowed");
    CHECK_STR(check(&g, "172.32.0.0"), "allowed");
    CHECK_STR(check(&g, "192.168.0.1"), "private");
    CHECK_STR(check(&g, "192.168.255.255"), "private");
    CHECK_STR(check(&g, "192.169.0.1"), "allowed");
    CHECK_STR(check(&g, "169.254.169.254"), "cloud-metadata");
    CHECK_STR(check(&g, "169.254.1.1"), "link-local");
    CHECK_STR(check(&g, "127.0.0.1"), "loopback");
    CHECK_STR(check(&g, "127.0.0.2"), "loopback");
    CHECK_STR(check(&g, "0.0.0.0"), "unspecified");
    CHECK_STR(check(&g, "100.64.0.1"), "shared");
    CHECK_STR(check(&g, "224.0.0.1"), "multicast");
    CHECK_STR(check(&g, "255.255.255.255"), "reserved");
    CHECK_STR(check(&g, "8.8.8.8"), "allowed");
    CHECK_STR(check(&g, "93.184.216.34"), "allowed");
    CHECK_STR(check(&g, "::1"), "loopback");
    CHECK_STR(check(&g, "::"), "unspecified");
    CHECK_STR(check(&g, "fc00::1"), "unique-local");
    CHECK_STR(check(&g, "fdff:ffff::1"), "unique-local");
    CHECK_STR(check(&g, "fd00:ec2::254"), "cloud-metadata");
    CHECK_STR(check(&g, "fe80::1"), "link-local");
    CHECK_STR(check(&g, "ff02::1"), "multicast");
    CHECK_STR(check(&g, "2606:4700:4700::1111"), "allowed");
    /* IPv4-mapped, NAT64 and 6to4 spellings reach the IPv4 address they carry. */
    CHECK_STR(check(&g, "::ffff:127.0.0.1"), "loopback");
    CHECK_STR(check(&g, "::ffff:10.1.2.3"), "private");
    CHECK_STR(check(&g, "::ffff:169.254.169.254"), "cloud-metadata");
    CHECK_STR(check(&g, "::ffff:192.168.1.1"), "private");
    CHECK_STR(check(&g, "::ffff:8.8.8.8"), "allowed");
    CHECK_STR(check(&g, "64:ff9b::a00:1"), "private");
    CHECK_STR(check(&g, "2002:7f00:1::"), "loopback");
    CHECK_STR(check(&g, "not an ip"), "not-an-address");
}

TEST(netguard_allow_list_exempts_exactly_its_ranges)
{
    fh_netguard g;
    char err[128];
    CHECK(fh_netguard_init(&g, "127.0.0.1/32, 10.1.0.0/16,fd12::/16", err, sizeof(err)) == FH_OK);
    CHECK(g.nallow == 3);
    CHECK_STR(check(&g, "127.0.0.1"), "allowed");
    CHECK_STR(check(&g, "::ffff:127.0.0.1"), "allowed"); /* the same destination */
    CHECK_STR(check(&g, "127.0.0.2"), "loopback");
    CHECK_STR(check(&g, "::1"), "loopback");
    CHECK_STR(check(&g, "10.1.200.3"), "allowed");
    CHECK_STR(check(&g, "10.2.0.1"), "private");
    CHECK_STR(check(&g, "fd12:3456::1"), "allowed");
    CHECK_STR(check(&g, "fd13::1"), "unique-local");
    CHECK_STR(check(&g, "169.254.169.254"), "cloud-metadata");

    CHECK(fh_netguard_init(&g, "10.0.0.0/33", err, sizeof(err)) != FH_OK);
    CHECK(strstr(err, "10.0.0.0/33") != NULL);
    CHECK(fh_netguard_init(&g, "10.0.0.1/8", err, sizeof(err)) != FH_OK);
    CHECK(fh_netguard_init(&g, "example.org", err, sizeof(err)) != FH_OK);
    CHECK(fh_netguard_init(&g, "::1", err, sizeof(err)) == FH_OK && g.allow[0].bits == 128);
}
