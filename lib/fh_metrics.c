#include "fh_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static fh_metric metrics[FH_METRICS_MAX];
static size_t nmetrics;

fh_metric *fh_metric_new(const char *name, const char *labels, const char *help, int gauge)
{
    if (nmetrics == FH_METRICS_MAX)
        return NULL;
    fh_metric *m = &metrics[nmetrics++];
    m->name = name;
    m->labels = labels;
    m->help = help;
    m->gauge = gauge;
    atomic_init(&m->value, 0);
    return m;
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

static int appendf(fh_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int appendf(fh_buf *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return fh_buf_append(out, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

int fh_metrics_render(fh_buf *out)
{
    for (size_t i = 0; i < nmetrics; i++) {
        fh_metric *m = &metrics[i];
        int first = 1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(metrics[k].name, m->name) == 0)
                first = 0;
        if (first && (appendf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                              m->gauge ? "gauge" : "counter")))
            return -1;
        if (appendf(out, "%s%s%s%s %lld\n", m->name, m->labels ? "{" : "",
                    m->labels ? m->labels : "", m->labels ? "}" : "", fh_metric_get(m)))
            return -1;
    }
    return appendf(
        out,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
        fh_rss_bytes());
}
