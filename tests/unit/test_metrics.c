/* fh_metrics' histograms: buckets, sum and count as Prometheus reads them, bounds checked at
 * registration, and observations from several threads at once all counted. */
#include "fh_metrics.h"
#include "fh_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const int64_t test_le[] = {100, 250, 1000, 2500000000};

/* The rendered text of every metric; caller frees. */
static char *render_all(void)
{
    fh_buf b;
    fh_buf_init(&b, 1 << 22);
    CHECK(fh_metrics_render(&b) == 0);
    CHECK(fh_buf_append(&b, "", 1) == 0);
    return b.data;
}

TEST(histogram_renders_cumulative_buckets_sum_and_count)
{
    fh_histogram *h =
        fh_histogram_new("fh_test_delay_seconds", NULL, "A test histogram.", test_le, 4, 1e-9);
    CHECK(h != NULL);
    fh_histogram_observe(h, 0);
    fh_histogram_observe(h, 100); /* on the first bound: in it */
    fh_histogram_observe(h, 101); /* just past it: the second */
    fh_histogram_observe(h, -5);  /* counts as 0 */
    fh_histogram_observe_n(h, 200, 3);
    fh_histogram_observe(h, 3000000000); /* past every bound: +Inf only */
    fh_histogram_observe_n(h, 1, 0);     /* nothing */
    CHECK(fh_histogram_count(h) == 8);
    char *t = render_all();
    CHECK(strstr(t, "# HELP fh_test_delay_seconds A test histogram.\n"
                    "# TYPE fh_test_delay_seconds histogram\n"
                    "fh_test_delay_seconds_bucket{le=\"0.0000001\"} 3\n"
                    "fh_test_delay_seconds_bucket{le=\"0.00000025\"} 7\n"
                    "fh_test_delay_seconds_bucket{le=\"0.000001\"} 7\n"
                    "fh_test_delay_seconds_bucket{le=\"2.5\"} 7\n"
                    "fh_test_delay_seconds_bucket{le=\"+Inf\"} 8\n"
                    "fh_test_delay_seconds_sum 3.000000801\n"
                    "fh_test_delay_seconds_count 8\n") != NULL);
    free(t);
}

TEST(histogram_family_keeps_its_labelled_series_together)
{
    static const int64_t le[] = {1000};
    fh_histogram *a =
        fh_histogram_new("fh_test_fam_seconds", "stage=\"a\"", "Two series.", le, 1, 1e-3);
    fh_metric *between = fh_metric_new("fh_test_between_total", NULL, "Registered between.", 0);
    fh_histogram *b =
        fh_histogram_new("fh_test_fam_seconds", "stage=\"b\"", "Two series.", le, 1, 1e-3);
    CHECK(a && b && between);
    fh_histogram_observe(b, 1500);
    char *t = render_all();
    CHECK(strstr(t, "# TYPE fh_test_fam_seconds histogram\n"
                    "fh_test_fam_seconds_bucket{stage=\"a\",le=\"1\"} 0\n"
                    "fh_test_fam_seconds_bucket{stage=\"a\",le=\"+Inf\"} 0\n"
                    "fh_test_fam_seconds_sum{stage=\"a\"} 0\n"
                    "fh_test_fam_seconds_count{stage=\"a\"} 0\n"
                    "fh_test_fam_seconds_bucket{stage=\"b\",le=\"1\"} 0\n"
                    "fh_test_fam_seconds_bucket{stage=\"b\",le=\"+Inf\"} 1\n"
                    "fh_test_fam_seconds_sum{stage=\"b\"} 1.5\n"
                    "fh_test_fam_seconds_count{stage=\"b\"} 1\n") != NULL);
    CHECK(strstr(t, "# TYPE fh_test_between_total counter\nfh_test_between_total 0\n") != NULL);
    free(t);
}

TEST(histogram_refuses_bounds_out_of_order_or_too_many)
{
    static const int64_t down[] = {5, 5};
    static int64_t many[FH_HISTOGRAM_MAX_BOUNDS + 1];
    for (int i = 0; i <= FH_HISTOGRAM_MAX_BOUNDS; i++)
        many[i] = i + 1;
    CHECK(fh_histogram_new("fh_test_bad_seconds", NULL, "x", down, 2, 1) == NULL);
    CHECK(fh_histogram_new("fh_test_bad_seconds", NULL, "x", many, FH_HISTOGRAM_MAX_BOUNDS + 1,
                           1) == NULL);
    CHECK(fh_histogram_new("fh_test_bad_seconds", NULL, "x", NULL, 0, 1) == NULL);
    fh_histogram_observe(NULL, 1); /* a histogram past the cap is NULL: a no-op */
    CHECK(fh_histogram_count(NULL) == 0);
}

static void *observe_many(void *arg)
{
    fh_histogram *h = arg;
    for (int i = 0; i < 100000; i++)
        fh_histogram_observe(h, i % 300);
    return NULL;
}

TEST(histogram_counts_every_observation_from_concurrent_threads)
{
    fh_histogram *h =
        fh_histogram_new("fh_test_threads_seconds", NULL, "Concurrent.", test_le, 4, 1e-9);
    CHECK(h != NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, observe_many, h) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(fh_histogram_count(h) == 400000);
    /* each thread: 0..299 repeated; 101 of each 300 at or under 100, 150 more up to 250 */
    long long per = 100000 / 300, rest = 100000 % 300; /* 333 full rounds, then 0..99 */
    CHECK(atomic_load(&h->bucket[0]) == 4 * (per * 101 + rest));
    CHECK(atomic_load(&h->bucket[1]) == 4 * per * 150);
    CHECK(atomic_load(&h->bucket[2]) == 4 * per * 49);
    long long sum = 0;
    for (int i = 0; i < 100000; i++)
        sum += i % 300;
    CHECK(atomic_load(&h->sum) == 4 * sum);
}
