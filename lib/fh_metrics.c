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
/* Histograms, published as metrics are (under register_mu, then a release store). */
static fh_histogram hists[FH_HISTOGRAMS_MAX];
static _Atomic size_t nhists;

/* The next entry of a registry counted by *count (cap entries), or -1 when it is full. On
 * success register_mu is held until slot_publish. */
static long slot_take(_Atomic size_t *count, size_t cap)
{
    pthread_mutex_lock(&register_mu);
    size_t n = atomic_load_explicit(count, memory_order_relaxed);
    if (n < cap)
        return (long)n;
    pthread_mutex_unlock(&register_mu);
    return -1;
}

/* Makes entry n (filled in) visible to renderers and releases register_mu. */
static void slot_publish(_Atomic size_t *count, long n)
{
    atomic_store_explicit(count, (size_t)n + 1, memory_order_release);
    pthread_mutex_unlock(&register_mu);
}

fh_metric *fh_metric_new(const char *name, const char *labels, const char *help, int gauge)
{
    long n = slot_take(&nmetrics, FH_METRICS_MAX);
    if (n < 0)
        return NULL;
    fh_metric *m = &metrics[n];
    *m = (fh_metric){.name = name, .labels = labels, .help = help, .gauge = gauge};
    slot_publish(&nmetrics, n);
    return m;
}

void fh_metrics_register(void *base, const fh_metric_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *(fh_metric **)((char *)base + rows[i].off) =
            fh_metric_new(rows[i].name, rows[i].labels, rows[i].help, rows[i].gauge);
}

fh_histogram *fh_histogram_new(const char *name, const char *labels, const char *help,
                               const int64_t *le, int nle, double unit)
{
    if (!le || nle < 1 || nle > FH_HISTOGRAM_MAX_BOUNDS)
        return NULL;
    for (int i = 1; i < nle; i++)
        if (le[i] <= le[i - 1])
            return NULL;
    long n = slot_take(&nhists, FH_HISTOGRAMS_MAX);
    if (n < 0)
        return NULL;
    fh_histogram *h = &hists[n];
    *h = (fh_histogram){
        .name = name, .labels = labels, .help = help, .le = le, .nle = nle, .unit = unit};
    slot_publish(&nhists, n);
    return h;
}

void fh_histogram_observe_n(fh_histogram *h, int64_t v, long long n)
{
    if (!h || n <= 0)
        return;
    if (v < 0)
        v = 0;
    /* the first bound at or above v: a binary search over at most 32 */
    int lo = 0, hi = h->nle;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v <= h->le[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->bucket[lo], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v * n, memory_order_relaxed);
}

long long fh_histogram_count(fh_histogram *h)
{
    long long n = 0;
    for (int i = 0; h && i <= h->nle; i++)
        n += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    return n;
}

/* v in the rendered unit, as short decimal text ("0.00025", "1", "2.5"): no exponent, which
 * every Prometheus parser reads, and the same text for the same bound in every rendering. */
static void unit_text(double v, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%.9f", v);
    if (n <= 0 || (size_t)n >= size)
        return;
    char *end = buf + n - 1;
    while (end > buf && *end == '0')
        *end-- = '\0';
    if (*end == '.')
        *end = '\0';
}

static int render_histogram(fh_buf *out, fh_histogram *h)
{
    const char *l = h->labels ? h->labels : "", *comma = h->labels ? "," : "";
    char le[48];
    long long cum = 0;
    for (int i = 0; i <= h->nle; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < h->nle)
            unit_text((double)h->le[i] * h->unit, le, sizeof(le));
        if (fh_buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %lld\n", h->name, l, comma,
                          i < h->nle ? le : "+Inf", cum))
            return -1;
    }
    char sum[48];
    unit_text((double)atomic_load_explicit(&h->sum, memory_order_relaxed) * h->unit, sum,
              sizeof(sum));
    const char *open = h->labels ? "{" : "", *close = h->labels ? "}" : "";
    return fh_buf_printf(out, "%s_sum%s%s%s %s\n%s_count%s%s%s %lld\n", h->name, open, l, close,
                         sum, h->name, open, l, close, cum);
}

static const char *metric_name(size_t i)
{
    return metrics[i].name;
}

static const char *histogram_name(size_t i)
{
    return hists[i].name;
}

/* 1 when entry i of a table (its names read through name) opens its family: no earlier entry
 * has its name. A family's series go out together under one HELP and TYPE, as the text format
 * requires, even when one of them was registered after other families. */
static int family_first(size_t i, const char *(*name)(size_t))
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(name(k), name(i)) == 0)
            return 0;
    return 1;
}

/* Every histogram, a family's series together under one HELP and TYPE (as for metrics). */
static int render_histograms(fh_buf *out)
{
    size_t n = atomic_load_explicit(&nhists, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (!family_first(i, histogram_name))
            continue;
        if (fh_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", hists[i].name, hists[i].help,
                          hists[i].name))
            return -1;
        for (size_t k = i; k < n; k++)
            if ((k == i || strcmp(hists[k].name, hists[i].name) == 0) &&
                render_histogram(out, &hists[k]))
                return -1;
    }
    return 0;
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
    for (size_t i = 0; i < n; i++) {
        fh_metric *m = &metrics[i];
        if (!family_first(i, metric_name))
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
    if (render_histograms(out))
        return -1;
    return fh_buf_printf(
        out,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
        fh_rss_bytes());
}
