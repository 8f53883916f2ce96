/* rest/stats: step duration percentiles and build statistics per time bucket, over a window
 * of the view clock. */
#include "internal.h"

/* ---- stats ------------------------------------------------------------------------------ */

/* Nearest-rank percentile of sorted v[0..n-1]. */
static double pct(const double *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct step_stat {
    char *name;
    size_t count;
    double p50, p95, max, mean;
} step_stat;

static int step_stat_cmp(const void *a, const void *b)
{
    const step_stat *x = a, *y = b;
    if (x->p95 != y->p95)
        return x->p95 > y->p95 ? -1 : 1;
    return strcmp(x->name, y->name);
}

void rest_put_window(fh_buf *out, const view_asof *a, const rest_args *s)
{
    fh_buf_printf(out, "\"builder\":");
    fh_buf_json_str(out, s->builder);
    fh_buf_printf(out, ",\"window_s\":%lld,\"from\":", s->window);
    if (a->clock > 0) {
        rest_put_rfc3339(out, a->clock - (double)s->window);
        fh_buf_printf(out, ",\"to\":");
        rest_put_rfc3339(out, a->clock);
    } else {
        fh_buf_printf(out, "null,\"to\":null");
    }
}

int rest_render_step_stats(view_reader *r, const view_asof *a, const rest_args *s, fh_buf *out,
                           fh_http_response *resp)
{
    step_stat *stats = NULL;
    size_t nstats = 0, cap = 0, nd = 0, dcap = 0;
    double *d = NULL;
    char *cur = NULL;
    int rc = -1;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_STEP_STATS,
        "SELECT name, duration_s FROM steps WHERE finished = 1 AND complete_at > ?1"
        " AND complete_at <= ?2 AND (?3 IS NULL OR builder = ?3) AND duration_s IS NOT NULL"
        " AND name IS NOT NULL ORDER BY name, duration_s");
    if (!st)
        return -1;
    sqlite3_bind_double(st, 1, a->clock - (double)s->window);
    sqlite3_bind_double(st, 2, a->clock);
    rest_bind_opt(st, 3, s->builder);
    for (;;) {
        int src = sqlite3_step(st);
        const char *name = src == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (src != SQLITE_ROW && src != SQLITE_DONE)
            goto out;
        if (cur && (!name || strcmp(name, cur))) {
            if (nstats == cap) {
                step_stat *ns = fh_grow(stats, &cap, sizeof(*ns), 32);
                if (!ns)
                    goto out;
                stats = ns;
            }
            double sum = 0;
            for (size_t i = 0; i < nd; i++)
                sum += d[i];
            stats[nstats++] =
                (step_stat){cur, nd, pct(d, nd, 50), pct(d, nd, 95), d[nd - 1], sum / (double)nd};
            cur = NULL;
            nd = 0;
        }
        if (!name)
            break;
        if (!cur && !(cur = strdup(name)))
            goto out;
        if (nd == dcap) {
            double *nd2 = fh_grow(d, &dcap, sizeof(*d), 256);
            if (!nd2)
                goto out;
            d = nd2;
        }
        d[nd++] = sqlite3_column_double(st, 1);
    }
    if (nstats)
        qsort(stats, nstats, sizeof(*stats), step_stat_cmp);
    rest_put_window(out, a, s);
    fh_buf_printf(out, ",\"steps\":[");
    for (size_t i = 0; i < nstats && i < (size_t)s->limit; i++) {
        fh_buf_printf(out, "%s{\"name\":", i ? "," : "");
        fh_buf_json_str(out, stats[i].name);
        fh_buf_printf(out, ",\"count\":%zu,\"p50_s\":", stats[i].count);
        rest_put_double(out, stats[i].p50);
        fh_buf_printf(out, ",\"p95_s\":");
        rest_put_double(out, stats[i].p95);
        fh_buf_printf(out, ",\"max_s\":");
        rest_put_double(out, stats[i].max);
        fh_buf_printf(out, ",\"mean_s\":");
        rest_put_double(out, round(stats[i].mean * 1000.0) / 1000.0);
        fh_buf_printf(out, "}");
    }
    fh_buf_printf(out, "],\"total_steps\":%zu", nstats);
    rc = 0;
out:
    free(cur);
    for (size_t i = 0; i < nstats; i++)
        free(stats[i].name);
    free(stats);
    free(d);
    return rc;
}

typedef struct bucket_acc {
    long long counts[7];
    double *dur, *wait;
    size_t ndur, nwait, cdur, cwait;
} bucket_acc;

static int push_dbl(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        double *nv = fh_grow(*v, cap, sizeof(*nv), 16);
        if (!nv)
            return -1;
        *v = nv;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static void put_dist(fh_buf *out, const char *name, double *v, size_t n)
{
    fh_buf_printf(out, ",\"%s\":", name);
    if (!n) {
        fh_buf_printf(out, "null");
        return;
    }
    qsort(v, n, sizeof(*v), dbl_cmp);
    fh_buf_printf(out, "{\"p50\":");
    rest_put_double(out, pct(v, n, 50));
    fh_buf_printf(out, ",\"p95\":");
    rest_put_double(out, pct(v, n, 95));
    fh_buf_printf(out, ",\"max\":");
    rest_put_double(out, v[n - 1]);
    fh_buf_printf(out, "}");
}

int rest_render_build_stats(view_reader *r, const view_asof *a, const rest_args *s, fh_buf *out,
                            fh_http_response *resp)
{
    static const char *const names[7] = {"success",   "warnings", "failure",  "skipped",
                                         "exception", "retry",    "cancelled"};
    double from = a->clock - (double)s->window;
    double first = floor(from / (double)s->bucket) * (double)s->bucket;
    size_t nbk = a->clock > 0 ? (size_t)((a->clock - first) / (double)s->bucket) + 1 : 0;
    bucket_acc *bk = calloc(nbk ? nbk : 1, sizeof(*bk));
    int rc = -1;
    (void)resp;
    if (!bk)
        return -1;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILD_STATS,
        "SELECT b.complete_at, b.results, b.duration_s, b.started_at - q.submitted_at"
        " FROM builds b LEFT JOIN buildrequests q ON q.buildrequestid = b.buildrequestid"
        " WHERE b.finished = 1 AND b.complete_at > ?1 AND b.complete_at <= ?2"
        " AND (?3 IS NULL OR b.builder = ?3)");
    if (!st)
        goto out;
    sqlite3_bind_double(st, 1, from);
    sqlite3_bind_double(st, 2, a->clock);
    rest_bind_opt(st, 3, s->builder);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        double t = sqlite3_column_double(st, 0);
        size_t i = (size_t)((t - first) / (double)s->bucket);
        if (i >= nbk)
            continue;
        int res = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 1);
        if (res >= 0 && res < 7)
            bk[i].counts[res]++;
        if (sqlite3_column_type(st, 2) != SQLITE_NULL &&
            push_dbl(&bk[i].dur, &bk[i].ndur, &bk[i].cdur, sqlite3_column_double(st, 2)))
            goto out;
        if (sqlite3_column_type(st, 3) != SQLITE_NULL &&
            push_dbl(&bk[i].wait, &bk[i].nwait, &bk[i].cwait,
                     fmax(0.0, round(sqlite3_column_double(st, 3) * 1000.0) / 1000.0)))
            goto out;
    }
    if (src != SQLITE_DONE)
        goto out;
    rest_put_window(out, a, s);
    fh_buf_printf(out, ",\"bucket_s\":%lld,\"buckets\":[", s->bucket);
    for (size_t i = 0; i < nbk; i++) {
        bucket_acc *b = &bk[i];
        long long n = 0;
        for (int k = 0; k < 7; k++)
            n += b->counts[k];
        fh_buf_printf(out, "%s{\"start\":", i ? "," : "");
        rest_put_rfc3339(out, first + (double)i * (double)s->bucket);
        fh_buf_printf(out, ",\"builds\":%lld,\"results\":{", n);
        for (int k = 0; k < 7; k++)
            fh_buf_printf(out, "%s\"%s\":%lld", k ? "," : "", names[k], b->counts[k]);
        long long failed = b->counts[2] + b->counts[4];
        long long judged = failed + b->counts[0] + b->counts[1];
        fh_buf_printf(out, "},\"failure_rate\":");
        if (judged)
            rest_put_double(out, round((double)failed / (double)judged * 10000.0) / 10000.0);
        else
            fh_buf_printf(out, "null");
        put_dist(out, "duration_s", b->dur, b->ndur);
        put_dist(out, "queue_wait_s", b->wait, b->nwait);
        fh_buf_printf(out, "}");
    }
    fh_buf_printf(out, "]");
    rc = 0;
out:
    for (size_t i = 0; i < nbk; i++) {
        free(bk[i].dur);
        free(bk[i].wait);
    }
    free(bk);
    return rc;
}
