/* deflate_bench: what permessage-deflate costs the broker per event and per delivery, and what it
 * saves, on the project's example events (schemas/examples/valid, log chunks left out unless
 * --logs), each framed as the stream frames it: `","cursor":"C","event":RAW}` with a cursor of 6
 * partitions.
 *
 *   deflate_bench [--rounds N] [--logs] [--dir schemas/examples/valid]
 *
 * For zlib levels 1, 3, 6 and 9 it prints, per event: the ns to compress it once (on the stream
 * thread, shared by every compressed subscriber), the compressed/plain ratio, and the ns a client
 * spends inflating it; and per delivery: the ns to build a compressed delivery's head (frame
 * header, stored block, subscription id) against a plain one's. Single thread, CLOCK_MONOTONIC,
 * the median of 5 timed passes of N rounds over every event. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fh_deflate.h"
#include "fh_util.h"
#include "fh_ws.h"

#define MAX_EVENTS 64
#define PASSES 5

static char *events[MAX_EVENTS];
static size_t lens[MAX_EVENTS];
static int nevents;

static void load(const char *dir, int logs)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d) {
        perror(dir);
        exit(64);
    }
    while ((de = readdir(d)) && nevents < MAX_EVENTS) {
        char path[1024];
        if (!strstr(de->d_name, ".json") || (!logs && strncmp(de->d_name, "log-", 4) == 0))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        char raw[70000];
        size_t n = fread(raw, 1, sizeof(raw) - 1, f);
        fclose(f);
        while (n && (raw[n - 1] == '\n' || raw[n - 1] == ' '))
            n--;
        /* compact it as a producer would send it: drop whitespace outside strings */
        char *c = malloc(n + 64);
        size_t k = 0;
        int in_str = 0;
        k += (size_t)sprintf(c, "\",\"cursor\":\"6.2a.2t.35.w.x.13\",\"event\":");
        for (size_t i = 0; i < n; i++) {
            char ch = raw[i];
            if (in_str) {
                c[k++] = ch;
                if (ch == '\\' && i + 1 < n)
                    c[k++] = raw[++i];
                else if (ch == '"')
                    in_str = 0;
            } else if (ch == '"') {
                in_str = 1;
                c[k++] = ch;
            } else if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t') {
                c[k++] = ch;
            }
        }
        c[k++] = '}';
        events[nevents] = c;
        lens[nevents++] = k;
    }
    closedir(d);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v)
{
    qsort(v, PASSES, sizeof(*v), cmp_u64);
    return v[PASSES / 2];
}

static volatile size_t sink;

int main(int argc, char **argv)
{
    int rounds = 2000, logs = 0;
    const char *dir = "schemas/examples/valid";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--logs") == 0)
            logs = 1;
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: deflate_bench [--rounds N] [--logs] [--dir DIR]\n");
            return 64;
        }
    }
    load(dir, logs);
    if (!nevents) {
        fprintf(stderr, "deflate_bench: no events in %s\n", dir);
        return 1;
    }
    size_t plain = 0;
    for (int i = 0; i < nevents; i++)
        plain += lens[i];
    printf("deflate_bench: %d events, mean %zu bytes framed, %d rounds x %d passes\n", nevents,
           plain / (size_t)nevents, rounds, PASSES);

    /* per delivery: the head of a plain delivery and of a compressed one */
    {
        uint64_t tp[PASSES], tz[PASSES];
        char head[256];
        const char *id = "my-subscription-1";
        for (int pass = 0; pass < PASSES; pass++) {
            uint64_t t0 = fh_mono_ns();
            for (int r = 0; r < rounds * 100; r++) {
                char *body = head + 10;
                int bl = sprintf(body, "{\"op\":\"event\",\"sub\":\"%s", id);
                size_t h =
                    fh_ws_frame_header((unsigned char *)head, FH_WS_OP_TEXT, (uint64_t)bl + 600);
                memmove(head + h, body, (size_t)bl);
                sink += h;
            }
            uint64_t t1 = fh_mono_ns();
            for (int r = 0; r < rounds * 100; r++) {
                char *body = head + 10;
                int bl = sprintf(body + 5, "{\"op\":\"event\",\"sub\":\"%s", id);
                fh_deflate_stored_header((unsigned char *)body, (size_t)bl);
                size_t h = fh_deflate_frame_header((unsigned char *)head, (uint64_t)bl + 5 + 400);
                memmove(head + h, body, (size_t)bl + 5);
                sink += h;
            }
            uint64_t t2 = fh_mono_ns();
            tp[pass] = t1 - t0;
            tz[pass] = t2 - t1;
        }
        printf("per delivery: head plain %.1f ns, head compressed %.1f ns\n",
               (double)median(tp) / (rounds * 100.0), (double)median(tz) / (rounds * 100.0));
    }

    printf("%-6s %12s %8s %14s\n", "level", "compress_ns", "ratio", "client_inflate_ns");
    int levels[] = {1, 3, 6, 9};
    for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]); li++) {
        fh_deflater *d = fh_deflater_new(levels[li]);
        fh_inflater *f = fh_inflater_new();
        uint64_t tc[PASSES], ti[PASSES];
        size_t zbytes = 0;
        unsigned char *z[MAX_EVENTS];
        size_t zl[MAX_EVENTS];
        for (int i = 0; i < nevents; i++) {
            fh_deflate_message(d, events[i], lens[i], &z[i], &zl[i]);
            zbytes += zl[i];
        }
        for (int pass = 0; pass < PASSES; pass++) {
            uint64_t t0 = fh_mono_ns();
            for (int r = 0; r < rounds; r++)
                for (int i = 0; i < nevents; i++) {
                    unsigned char *out;
                    size_t ol;
                    fh_deflate_message(d, events[i], lens[i], &out, &ol);
                    sink += ol;
                    free(out);
                }
            uint64_t t1 = fh_mono_ns();
            for (int r = 0; r < rounds; r++)
                for (int i = 0; i < nevents; i++) {
                    const unsigned char *out;
                    size_t ol;
                    char err[64];
                    fh_inflate_message(f, z[i], zl[i], 1 << 20, &out, &ol, err, sizeof(err));
                    sink += ol;
                }
            uint64_t t2 = fh_mono_ns();
            tc[pass] = t1 - t0;
            ti[pass] = t2 - t1;
        }
        double per = (double)rounds * nevents;
        printf("%-6d %12.0f %8.3f %14.0f\n", levels[li], (double)median(tc) / per,
               (double)zbytes / (double)plain, (double)median(ti) / per);
        for (int i = 0; i < nevents; i++)
            free(z[i]);
        fh_deflater_free(d);
        fh_inflater_free(f);
    }
    for (int i = 0; i < nevents; i++)
        free(events[i]);
    return 0;
}
