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

/* 1 when fh_netguard_url_check accepts url and finds host want. */
static int url_ok(const char *url, const char *want)
{
    char host[256], err[512];
    return fh_netguard_url_check(url, host, sizeof(host), err, sizeof(err)) == FH_OK &&
           strcmp(host, want) == 0;
}

/* 1 when fh_netguard_url_check refuses url with a message containing needle and none of the
 * URL's userinfo (alice, s3cret). */
static int url_refused(const char *url, const char *needle)
{
    char host[256], err[512];
    if (fh_netguard_url_check(url, host, sizeof(host), err, sizeof(err)) == FH_OK)
        return 0;
    if (!strstr(err, needle) || strstr(err, "alice") || strstr(err, "s3cret")) {
        printf("  %s: %s\n", url, err);
        return 0;
    }
    return 1;
}

TEST(netguard_url_check_refuses_credentials_and_port_zero)
{
    char big[FH_NETGUARD_URL_MAX + 32];
    CHECK(url_ok("https://hooks.example.org/x?y=1", "hooks.example.org"));
    CHECK(url_ok("http://hooks.example.org:8080/x", "hooks.example.org"));
    CHECK(url_ok("http://hooks.example.org:65535/", "hooks.example.org"));
    CHECK(url_ok("http://[2001:db8::1]:443/x", "2001:db8::1"));
    /* every spelling of userinfo; the message never repeats it */
    CHECK(url_refused("http://alice:s3cret@hooks.example.org/x", "credentials"));
    CHECK(url_refused("http://alice@hooks.example.org/", "credentials"));
    CHECK(url_refused("http://:s3cret@hooks.example.org/", "credentials"));
    CHECK(url_refused("http://@hooks.example.org/", "credentials"));
    CHECK(url_refused("https://alice:s3cret@[2001:db8::1]:8443/", "credentials"));
    CHECK(url_refused("http://hooks.example.org:0/x", "bad port 0"));
    CHECK(url_refused("http://hooks.example.org:000/x", "bad port 0"));
    CHECK(url_refused("http://hooks.example.org:65536/", "bad port"));
    CHECK(url_refused("http://hooks.example.org:-1/", "bad port"));
    CHECK(url_refused("ftp://hooks.example.org/", "scheme"));
    CHECK(url_refused("not a url", "absolute"));
    CHECK(url_refused("/relative/only", "absolute"));
    memcpy(big, "http://hooks.example.org/", 25);
    memset(big + 25, 'a', sizeof(big) - 26);
    big[sizeof(big) - 1] = '\0';
    CHECK(url_refused(big, "longer than 2048"));
}

TEST(netguard_url_redact_drops_userinfo_only)
{
    char out[256];
    CHECK_STR(fh_netguard_url_redact("https://alice:s3cret@hooks.example.org:8443/x?a=b@c", out,
                                     sizeof(out)),
              "https://hooks.example.org:8443/x?a=b@c");
    CHECK_STR(fh_netguard_url_redact("http://a:b@c:d@host/", out, sizeof(out)), "http://host/");
    CHECK_STR(fh_netguard_url_redact("http://token@host", out, sizeof(out)), "http://host");
    CHECK_STR(fh_netguard_url_redact("http://host/p@th#f@g", out, sizeof(out)),
              "http://host/p@th#f@g");
    CHECK_STR(fh_netguard_url_redact("http://host?x=@y", out, sizeof(out)), "http://host?x=@y");
    CHECK_STR(fh_netguard_url_redact("no scheme@all", out, sizeof(out)), "no scheme@all");
    CHECK_STR(fh_netguard_url_redact("", out, sizeof(out)), "");
}
