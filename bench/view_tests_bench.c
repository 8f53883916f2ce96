/* view_tests_bench: how fast the view applies test.results (broker/view/tests.c), on its own
 * SQLite file, without Kafka: chunks of 500 results decoded and applied as the view thread does,
 * committed ten chunks to a transaction. Each run is done twice side by side: with derivation
 * off, and on (tests.c then asks view_test_flaky_first per stored pass or fail; the derive side is
 * the harness's stub, so this measures the view's own per-result cost of spotting flips). Prints
 * one line per run; docs/performance.md has the figures.
 *
 * Usage: view_tests_bench [CHUNKS (2000)] [RUNS (3)] */
#include "../tests/unit/view_harness.h"

#include <stdlib.h>
#include <sys/resource.h>

/* CPU seconds (user + system) this process has used: on a shared machine wall time measures
 * the neighbours too. */
static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
           ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec) / 1e6;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int chunks = argc > 1 ? atoi(argv[1]) : 2000, runs = argc > 2 ? atoi(argv[2]) : 3;
    double rate[2][16], cpu_rate[2][16];
    fh_buf t;
    if (chunks < 1 || runs < 1 || runs > 16) {
        fprintf(stderr, "usage: view_tests_bench [CHUNKS] [RUNS 1-16]\n");
        return 64;
    }
    fh_buf_init(&t, 1 << 20);
    for (int r = 0; r < runs * 2; r++) {
        int on = r % 2;
        harness_derive_on = on;
        harness_flips = 0;
        if (open_view("20000", "1000000")) {
            fprintf(stderr, "view_tests_bench: cannot open the view\n");
            return 1;
        }
        uint64_t t0 = fh_mono_ns();
        double c0 = cpu_s();
        for (int i = 0; i < chunks; i++) {
            char builder[16], rev[16];
            fh_buf_reset(&t);
            /* 5 builders x 2000 tests; 2% fail; a revision is built by 10 sets in a row */
            for (int k = 0; k < 500; k++)
                fh_buf_printf(&t,
                              "%s{\"name\":\"Suite%d.Case%d\",\"code_path\":null,\"line\":null,"
                              "\"value\":\"%d\",\"outcome\":\"%s\",\"duration_s\":0.%03d}",
                              k ? "," : "", i % 4, k, (i + k) % 50 ? 1 : 0,
                              (i + k) % 50 ? "pass" : "fail", (k * 7) % 1000);
            snprintf(builder, sizeof(builder), "b%d", (i / 4) % 5);
            snprintf(rev, sizeof(rev), "r%d", i / 40);
            if (apply_chunk(builder, rev, 1 + i / 4, i % 4, t.data) != SQLITE_OK) {
                fprintf(stderr, "view_tests_bench: apply failed: %s\n", sqlite3_errmsg(hv->db));
                return 1;
            }
            if (i % 10 == 9 && (view_wexec(hv, W_COMMIT) || view_wexec(hv, W_BEGIN)))
                return 1;
        }
        double s = (double)(fh_mono_ns() - t0) / 1e9, c = cpu_s() - c0;
        rate[on][r / 2] = 500.0 * chunks / s;
        cpu_rate[on][r / 2] = 500.0 * chunks / c;
        printf("view_tests_bench: run=%d derive=%s chunks=%d results=%d elapsed=%.3fs cpu=%.3fs "
               "results_per_s=%.0f results_per_cpu_s=%.0f rows=%lld tests=%lld flips=%d\n",
               r / 2 + 1, on ? "on" : "off", chunks, 500 * chunks, s, c, rate[on][r / 2],
               cpu_rate[on][r / 2], count("SELECT count(*) FROM test_runs"),
               count("SELECT count(*) FROM tests"), harness_flips);
        close_view();
    }
    for (int on = 0; on < 2; on++) {
        qsort(rate[on], (size_t)runs, sizeof(rate[on][0]), cmp_dbl);
        qsort(cpu_rate[on], (size_t)runs, sizeof(cpu_rate[on][0]), cmp_dbl);
        printf("view_tests_bench: derive=%s results/s median=%.0f min=%.0f max=%.0f, per CPU s "
               "median=%.0f min=%.0f max=%.0f (%d runs)\n",
               on ? "on" : "off", rate[on][runs / 2], rate[on][0], rate[on][runs - 1],
               cpu_rate[on][runs / 2], cpu_rate[on][0], cpu_rate[on][runs - 1], runs);
    }
    fh_buf_free(&t);
    fh_contract_free(tc);
    return 0;
}
