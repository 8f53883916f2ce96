/* Fitting the connection limits into the descriptors: unchanged when they fit, the stream below
 * the HTTP port with room left for REST and health checks when they do not, TLS's socket pairs
 * counted, and the counting helpers agree with what the process holds. */
#include "fh_fdlimit.h"
#include "fh_test.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

TEST(fdlimit_fit_keeps_limits_that_fit)
{
    long long http = 24576, stream = 20000;
    CHECK(fh_fdlimit_fit(65536, 120, 1, &http, &stream) == 0);
    CHECK(http == 24576 && stream == 20000);
    http = 60;
    stream = 50;
    CHECK(fh_fdlimit_fit(256, 99, 1, &http, &stream) == 0); /* 60 <= 256 - 99 - 64 */
    CHECK(http == 60 && stream == 50);
}

TEST(fdlimit_fit_lowers_the_defaults_under_a_small_ulimit)
{
    long long http = 24576, stream = 20000;
    CHECK(fh_fdlimit_fit(256, 99, 1, &http, &stream) == 1);
    CHECK(http == 256 - 99 - FH_FDLIMIT_RESERVE); /* 93: all that is left */
    CHECK(stream == http - 16);                   /* at least 16 left to REST and health */
    /* a large limit leaves an eighth */
    http = 1000000;
    stream = 1000000;
    CHECK(fh_fdlimit_fit(100000, 36, 1, &http, &stream) == 1);
    CHECK(http == 100000 - 36 - FH_FDLIMIT_RESERVE);
    CHECK(stream == http - http / 8);
    /* only the port over: the stream's limit stays */
    http = 24576;
    stream = 10;
    CHECK(fh_fdlimit_fit(256, 99, 1, &http, &stream) == 1);
    CHECK(http == 93 && stream == 10);
    /* only the stream over (http <= stream as configured): both fit, the stream below */
    http = 90;
    stream = 5000;
    CHECK(fh_fdlimit_fit(256, 99, 1, &http, &stream) == 0); /* 90 fit: the port refuses first */
    CHECK(http == 90 && stream == 5000);
}

TEST(fdlimit_fit_counts_tls_socket_pairs)
{
    long long http = 24576, stream = 20000;
    CHECK(fh_fdlimit_fit(1024, 100, 3, &http, &stream) == 1);
    long long avail = 1024 - 100 - FH_FDLIMIT_RESERVE; /* 860 */
    CHECK(stream == (avail - avail / 8) / 3);
    CHECK(http == avail - 2 * stream);
    CHECK(http + 2 * stream <= avail && http > stream);
    /* a port limit that fits alone but not with the pairs of its stream connections */
    http = 500;
    stream = 400;
    CHECK(fh_fdlimit_fit(1024, 100, 3, &http, &stream) == 1);
    CHECK(http + 2 * stream <= avail && http > stream);
}

TEST(fdlimit_fit_never_goes_below_one)
{
    long long http = 24576, stream = 20000;
    CHECK(fh_fdlimit_fit(64, 80, 1, &http, &stream) == 1);
    CHECK(http >= 1 && stream >= 1 && http <= 2);
    http = 24576;
    stream = 20000;
    CHECK(fh_fdlimit_fit(64, 80, 3, &http, &stream) == 1);
    CHECK(http >= 1 && stream >= 1);
}

TEST(fdlimit_raise_and_open_count)
{
    long long before, after, hard, n = fh_fdlimit_open();
    struct rlimit rl;
    CHECK(n >= 3);
    int fd = open("/dev/null", O_RDONLY);
    CHECK(fd >= 0 && fh_fdlimit_open() == n + 1);
    close(fd);
    CHECK(fh_fdlimit_raise(&before, &after, &hard) == 0);
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0 && (long long)rl.rlim_cur == after);
    CHECK(after >= before && after <= hard);
}
