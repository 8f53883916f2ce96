#include "fh_fdlimit.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>

int fh_fdlimit_raise(long long *before, long long *after, long long *hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    *before = *after = (long long)rl.rlim_cur;
    *hard = (long long)rl.rlim_max;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY) {
        /* the kernel refuses more than fs.nr_open descriptors, unlimited or not */
        long long nr_open = 0;
        FILE *f = fopen("/proc/sys/fs/nr_open", "r");
        if (!f || fscanf(f, "%lld", &nr_open) != 1 || nr_open <= 0)
            nr_open = 1048576;
        if (f)
            fclose(f);
        want = (rlim_t)nr_open;
        *hard = nr_open;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
        return 0;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        *after = (long long)want;
    return 0;
}

long long fh_fdlimit_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    long long n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

int fh_fdlimit_fit(long long limit, long long open, int per_stream, long long *http_max,
                   long long *stream_max)
{
    long long avail = limit - open - FH_FDLIMIT_RESERVE;
    if (per_stream < 1)
        per_stream = 1;
    if (avail < 2)
        avail = 2;
    if (*http_max + (per_stream - 1) * *stream_max <= avail)
        return 0;
    long long rest = avail / 8 < 16 ? 16 : avail / 8;
    if (rest > avail / 2)
        rest = avail / 2;
    long long stream = (avail - rest) / per_stream;
    if (stream < 1)
        stream = 1;
    if (*stream_max > stream)
        *stream_max = stream;
    long long http = avail - (per_stream - 1) * *stream_max;
    if (http < 1)
        http = 1;
    if (*http_max > http)
        *http_max = http;
    return 1;
}
