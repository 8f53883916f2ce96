/* view_tests_bench: how fast the view applies test.results (broker/view/tests.c), on its own
 * SQLite file, without Kafka: chunks of 500 results decoded and applied as the view thread does,
 * committed ten chunks to a transaction. Prints one line per run; docs/performance.md has the
 * figures.
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
    double rate[16], cpu_rate[16];
    fh_buf t;
    if (chunks < 1 || runs < 1 || runs > 16) {
        fprintf(stderr, "usage: view_tests_bench [CHUNKS] [RUNS 1-16]\n");
        return 64;
    }
    fh_buf_init(&t, 1 << 20);
    for (int r = 0; r < runs; r++) {
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
                fprintf(stderr, "view_tests_bench: apply failed: %s\n", sqlite3_errmsg(view_g.db));
                return 1;
            }
            if (i % 10 == 9 && (view_wexec(W_COMMIT) || view_wexec(W_BEGIN)))
                return 1;
        }
        double s = (double)(fh_mono_ns() - t0) / 1e9, c = cpu_s() - c0;
        rate[r] = 500.0 * chunks / s;
        cpu_rate[r] = 500.0 * chunks / c;
        printf("view_tests_bench: run=%d chunks=%d results=%d elapsed=%.3fs cpu=%.3fs "
               "results_per_s=%.0f results_per_cpu_s=%.0f rows=%lld tests=%lld\n",
               r + 1, chunks, 500 * chunks, s, c, rate[r], cpu_rate[r],
               count("SELECT count(*) FROM test_runs"), count("SELECT count(*) FROM tests"));
        close_view();
    }
    qsort(rate, (size_t)runs, sizeof(rate[0]), cmp_dbl);
    printf("view_tests_bench: results/s median=%.0f min=%.0f max=%.0f (%d runs)\n", rate[runs / 2],
           rate[0], rate[runs - 1], runs);
    fh_buf_free(&t);
    fh_contract_free(tc);
    return 0;
}
