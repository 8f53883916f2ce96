/* fh_metrics: counters, gauges and fixed-bucket histograms with fixed names, updated lock-free
 * from any thread and rendered as Prometheus text. Metrics are registered at start-up, or rarely
 * later from any thread (a labelled series first seen at run time); never on the hot path. The
 * registry has a hard cap (FH_METRICS_MAX). */
#ifndef FH_METRICS_H
#define FH_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fh_util.h"

#define FH_METRICS_MAX 256

typedef struct fh_metric {
    const char *name;   /* static: "firehose_events_in_total" */
    const char *labels; /* static (or kept until exit) or NULL: "type=\"build.finished\"" */
    const char *help;   /* static */
    int gauge;          /* 0 counter, 1 gauge */
    _Atomic long long value;
} fh_metric;

/* Registers a metric and returns it (NULL past the cap). Thread-safe; a metric registered while
 * another thread renders shows from the next rendering on. */
fh_metric *fh_metric_new(const char *name, const char *labels, const char *help, int gauge);

/* One row of a handle's metrics table: the offset of its fh_metric * field (FH_METRIC_ROW) and
 * what fh_metric_new gets. */
typedef struct fh_metric_row {
    size_t off;
    const char *name, *labels, *help;
    int gauge;
} fh_metric_row;

#define FH_METRIC_ROW(type, field, name, labels, help, gauge)                                      \
    {                                                                                              \
        offsetof(type, field), name, labels, help, gauge                                           \
    }

/* Registers rows[0..n) in order, each into the fh_metric * at (char *)base + row.off (NULL past
 * the registry's cap, as fh_metric_new). */
void fh_metrics_register(void *base, const fh_metric_row *rows, size_t n);

static inline void fh_metric_add(fh_metric *m, long long n)
{
    if (m)
        atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}

static inline void fh_metric_set(fh_metric *m, long long v)
{
    if (m)
        atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

static inline long long fh_metric_get(fh_metric *m)
{
    return m ? atomic_load_explicit(&m->value, memory_order_relaxed) : 0;
}

/* A histogram with fixed upper bounds (Prometheus `histogram`: `NAME_bucket{le="..."}`
 * cumulative, `NAME_sum`, `NAME_count`). Observations are integers in the caller's unit (say
 * nanoseconds); `unit` scales them to the rendered one (1e-9: rendered in seconds). Updated
 * lock-free from any thread (relaxed atomics: a rendering taken while others observe may count an
 * observation in the buckets and not yet in the sum, never half a bucket). The registry has a
 * hard cap (FH_HISTOGRAMS_MAX) and registration is not for the hot path, as for metrics. */
#define FH_HISTOGRAMS_MAX 32
#define FH_HISTOGRAM_MAX_BOUNDS 32

typedef struct fh_histogram {
    const char *name;   /* static: "firehose_stream_write_delay_seconds" (no suffix) */
    const char *labels; /* static or NULL, as for fh_metric */
    const char *help;   /* static */
    const int64_t *le;  /* static: nle upper bounds, strictly ascending, in observed units */
    int nle;
    double unit; /* rendered value of one observed unit */
    /* non-cumulative counts: bucket[i] holds le[i-1] < v <= le[i]; bucket[nle] v > le[nle-1] */
    _Atomic long long bucket[FH_HISTOGRAM_MAX_BOUNDS + 1];
    _Atomic long long sum; /* in observed units */
} fh_histogram;

/* Registers a histogram and returns it; NULL past the cap, or for bounds that are not 1 to
 * FH_HISTOGRAM_MAX_BOUNDS strictly ascending values. le must outlive the registry. */
fh_histogram *fh_histogram_new(const char *name, const char *labels, const char *help,
                               const int64_t *le, int nle, double unit);

/* Counts n observations of value v (negative values count as 0). h may be NULL (a no-op), as a
 * metric past the registry's cap is. */
void fh_histogram_observe_n(fh_histogram *h, int64_t v, long long n);

static inline void fh_histogram_observe(fh_histogram *h, int64_t v)
{
    fh_histogram_observe_n(h, v, 1);
}

/* Observations counted so far (the sum of the buckets); 0 for NULL. */
long long fh_histogram_count(fh_histogram *h);

/* Appends every metric and histogram in Prometheus text format (plus
 * process_resident_memory_bytes). */
int fh_metrics_render(fh_buf *out);

/* Resident set size of this process in bytes (from /proc/self/statm), 0 when unknown. */
long long fh_rss_bytes(void);

#endif
