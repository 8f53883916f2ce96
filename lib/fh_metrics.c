#include "fh_metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static fh_metric metrics[FH_METRICS_MAX];
/* Entries below nmetrics are complete: a new one is filled in first, then published (release),
 * so a renderer on another thread (acquire) never sees a half-made entry. */
static _Atomic size_t nmetrics;
static pthread_mutex_t register_mu = PTHREAD_MUTEX_INITIALIZER;

fh_metric *fh_metric_new(const char *name, const char *labels, const char *help, int gauge)
{
    pthread_mutex_lock(&register_mu);
    size_t n = atomic_load_explicit(&nmetrics, memory_order_relaxed);
    fh_metric *m = NULL;
    if (n < FH_METRICS_MAX) {
        m = &metrics[n];
        m->name = name;
        m->labels = labels;
        m->help = help;
        m->gauge = gauge;
        atomic_init(&m->value, 0);
        atomic_store_explicit(&nmetrics, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&register_mu);
    return m;
}

void fh_metrics_register(void *base, const fh_metric_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *(fh_metric **)((char *)base + rows[i].off) =
            fh_metric_new(rows[i].name, rows[i].labels, rows[i].help, rows[i].gauge);
}

long long fh_rss_bytes(void)
{
    long long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%lld %lld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

int fh_metrics_render(fh_buf *out)
{
    size_t n = atomic_load_explicit(&nmetrics, memory_order_acquire);
    /* A family's series go out together under one HELP and TYPE, as the text format requires,
     * even when one of them was registered after other families. */
    for (size_t i = 0; i < n; i++) {
        fh_metric *m = &metrics[i];
        int first = 1;
        for (size_t k = 0; k < i && first; k++)
            if (strcmp(metrics[k].name, m->name) == 0)
                first = 0;
        if (!first)
            continue;
        if (fh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                          m->gauge ? "gauge" : "counter"))
            return -1;
        for (size_t k = i; k < n; k++) {
            fh_metric *s = &metrics[k];
            if (k > i && strcmp(s->name, m->name) != 0)
                continue;
            if (fh_buf_printf(out, "%s%s%s%s %lld\n", s->name, s->labels ? "{" : "",
                              s->labels ? s->labels : "", s->labels ? "}" : "", fh_metric_get(s)))
                return -1;
        }
    }
    return fh_buf_printf(
        out,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
        fh_rss_bytes());
}
