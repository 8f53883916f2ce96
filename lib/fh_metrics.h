/* fh_metrics: counters and gauges with fixed names, updated lock-free from any thread and
 * rendered as Prometheus text. Metrics are registered at start-up, or rarely later from any
 * thread (a labelled series first seen at run time); never on the hot path. The registry has a
 * hard cap (FH_METRICS_MAX). */
#ifndef FH_METRICS_H
#define FH_METRICS_H

#include <stdatomic.h>
#include <stddef.h>

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

/* Appends every metric in Prometheus text format (plus process_resident_memory_bytes). */
int fh_metrics_render(fh_buf *out);

/* Resident set size of this process in bytes (from /proc/self/statm), 0 when unknown. */
long long fh_rss_bytes(void);

#endif
