#include "summary.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_PART_MAX 256 /* bytes of a builder or step name used in a key */

/* ---- statistics per key -------------------------------------------------------------------- */

typedef struct stat {
    char *key; /* owned; parts separated by NUL, keylen bytes */
    size_t keylen;
    long long count;
    double sum, min, max;
    double *samples; /* owned; at most the table's samples_cap */
    unsigned nsamples, samples_alloc;
    uint64_t rng;
    long long results[8]; /* failure_rate: builds per results code, [7] = out of range */
} stat;

typedef struct stat_table {
    stat **slots; /* open addressing, linear probing; nslots is a power of two >= 2 * max_keys */
    size_t nslots, used, max_keys;
    unsigned samples_cap;
    stat other;       /* everything past max_keys */
    long long capped; /* values that went to other */
} stat_table;

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static fh_err table_init(stat_table *t, size_t max_keys, unsigned samples_cap)
{
    memset(t, 0, sizeof(*t));
    t->nslots = 16;
    while (t->nslots < 2 * max_keys)
        t->nslots *= 2;
    t->slots = calloc(t->nslots, sizeof(*t->slots));
    t->max_keys = max_keys;
    t->samples_cap = samples_cap;
    t->other.rng = 0x9E3779B97F4A7C15ull;
    t->other.key = NULL;
    return t->slots ? FH_OK : FH_ERR_NOMEM;
}

static void stat_free(stat *s)
{
    free(s->key);
    free(s->samples);
}

static void table_free(stat_table *t)
{
    for (size_t i = 0; t->slots && i < t->nslots; i++)
        if (t->slots[i]) {
            stat_free(t->slots[i]);
            free(t->slots[i]);
        }
    free(t->slots);
    stat_free(&t->other);
    memset(t, 0, sizeof(*t));
}

/* Returns the entry for key, creating it; the "(other)" entry when the table is full or memory is
 * short (so a value is never lost from count, mean, min and max). */
static stat *table_get(stat_table *t, const char *key, size_t keylen)
{
    uint64_t h = hash_bytes(key, keylen);
    size_t mask = t->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        stat *s = t->slots[i];
        if (!s) {
            if (t->used >= t->max_keys)
                break;
            if (!(s = calloc(1, sizeof(*s))) || !(s->key = malloc(keylen ? keylen : 1))) {
                free(s);
                break;
            }
            memcpy(s->key, key, keylen);
            s->keylen = keylen;
            s->rng = h | 1; /* a fixed seed per key: the same input gives the same sample */
            t->slots[i] = s;
            t->used++;
            return s;
        }
        if (s->keylen == keylen && memcmp(s->key, key, keylen) == 0)
            return s;
    }
    t->capped++;
    return &t->other;
}

static void stat_add(stat *s, unsigned cap, double x)
{
    if (s->count == 0 || x < s->min)
        s->min = x;
    if (s->count == 0 || x > s->max)
        s->max = x;
    s->count++;
    s->sum += x;
    if (s->nsamples < cap) {
        if (s->nsamples == s->samples_alloc) {
            unsigned n = s->samples_alloc ? s->samples_alloc * 2 : 8;
            if (n > cap)
                n = cap;
            double *p = realloc(s->samples, n * sizeof(*p));
            if (!p)
                return; /* the value still counts in count, mean, min and max */
            s->samples = p;
            s->samples_alloc = n;
        }
        s->samples[s->nsamples++] = x;
        return;
    }
    /* algorithm R: the count-th value replaces a random kept one with probability cap / count */
    uint64_t j = xorshift(&s->rng) % (uint64_t)s->count;
    if (j < cap)
        s->samples[j] = x;
}

/* ---- pending build requests: buildrequestid -> submitted_at ------------------------------- */

typedef struct pending_slot {
    long long id; /* 0: empty */
    double submitted;
} pending_slot;

typedef struct pending_table {
    pending_slot *slots;
    size_t nslots, used, max;
    long long full; /* requests not tracked because the table was full */
} pending_table;

static size_t pending_hash(long long id, size_t mask)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 17) & mask;
}

static void pending_put(pending_table *p, long long id, double submitted)
{
    size_t mask = p->nslots - 1;
    for (size_t i = pending_hash(id, mask);; i = (i + 1) & mask) {
        if (p->slots[i].id == id) {
            p->slots[i].submitted = submitted; /* a duplicate: the later one wins */
            return;
        }
        if (p->slots[i].id == 0) {
            if (p->used >= p->max) {
                p->full++;
                return;
            }
            p->slots[i].id = id;
            p->slots[i].submitted = submitted;
            p->used++;
            return;
        }
    }
}

/* Removes id; returns 1 and its submitted_at in *out when it was there. Backward-shift deletion
 * keeps every probe chain unbroken without tombstones. */
static int pending_take(pending_table *p, long long id, double *out)
{
    size_t mask = p->nslots - 1, i = pending_hash(id, mask);
    for (;; i = (i + 1) & mask) {
        if (p->slots[i].id == 0)
            return 0;
        if (p->slots[i].id == id)
            break;
    }
    if (out)
        *out = p->slots[i].submitted;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (p->slots[j].id == 0)
            break;
        size_t home = pending_hash(p->slots[j].id, mask);
        /* move j back to i when its home is not cyclically within (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            p->slots[i] = p->slots[j];
            i = j;
        }
    }
    p->slots[i].id = 0;
    p->used--;
    return 1;
}

/* ---- the summary --------------------------------------------------------------------------- */

struct fh_summary {
    fh_summary_opts o;
    stat_table steps, days, builders, waits;
    stat builds_all, waits_all;
    pending_table pending;
    long long seen, used, missing_fields, waits_unmatched;
};

fh_err fh_summary_new(const fh_summary_opts *o, fh_summary **out)
{
    fh_summary *s;
    *out = NULL;
    if (!o->max_keys || !o->samples || !o->max_pending)
        return FH_ERR_INVAL;
    if (!(s = calloc(1, sizeof(*s))))
        return FH_ERR_NOMEM;
    s->o = *o;
    s->builds_all.rng = 0x2545F4914F6CDD1Dull;
    s->waits_all.rng = 0x2545F4914F6CDD1Dull;
    s->pending.max = o->max_pending;
    s->pending.nslots = 16;
    while (s->pending.nslots < 2 * o->max_pending)
        s->pending.nslots *= 2;
    if (table_init(&s->steps, o->max_keys, o->samples) ||
        table_init(&s->days, o->max_keys, o->samples) || table_init(&s->builders, o->max_keys, 1) ||
        table_init(&s->waits, o->max_keys, o->samples) ||
        !(s->pending.slots = calloc(s->pending.nslots, sizeof(pending_slot)))) {
        fh_summary_free(s);
        return FH_ERR_NOMEM;
    }
    *out = s;
    return FH_OK;
}

void fh_summary_free(fh_summary *s)
{
    if (!s)
        return;
    table_free(&s->steps);
    table_free(&s->days);
    table_free(&s->builders);
    table_free(&s->waits);
    stat_free(&s->builds_all);
    stat_free(&s->waits_all);
    free(s->pending.slots);
    free(s);
}

static int get_num(const fh_jv *data, const char *k, double *out)
{
    const fh_jv *v = fh_jv_get(data, k);
    if (!v)
        return -1;
    if (v->type == FH_JV_INT) {
        *out = (double)v->u.i;
        return 0;
    }
    if (v->type == FH_JV_REAL) {
        *out = v->u.d;
        return 0;
    }
    return -1;
}

/* Appends one key part (cut to KEY_PART_MAX bytes) and, unless last, a NUL separator. */
static size_t key_part(char *key, size_t o, const char *s, size_t n, int last)
{
    if (n > KEY_PART_MAX)
        n = KEY_PART_MAX;
    memcpy(key + o, s, n);
    o += n;
    if (!last)
        key[o++] = '\0';
    return o;
}

void fh_summary_add(fh_summary *s, const fh_jv *root)
{
    const char *type;
    const fh_jv *data;
    char key[2 * KEY_PART_MAX + 2];
    size_t blen = 0, nlen = 0;
    const char *builder;
    double x, t;
    int64_t n;

    s->seen++;
    if (!root)
        return;
    type = fh_jv_str(fh_jv_get(root, "type"), NULL);
    data = fh_jv_get(root, "data");
    if (!type || !data || data->type != FH_JV_OBJECT)
        return;
    builder = fh_jv_str(fh_jv_get(data, "builder"), &blen);
    if (strcmp(type, "step.finished") == 0) {
        const char *name = fh_jv_str(fh_jv_get(data, "name"), &nlen);
        if (!builder || !name || get_num(data, "duration_s", &x)) {
            s->missing_fields++;
            return;
        }
        size_t o = key_part(key, 0, builder, blen, 0);
        o = key_part(key, o, name, nlen, 1);
        stat_add(table_get(&s->steps, key, o), s->o.samples, x);
    } else if (strcmp(type, "build.finished") == 0) {
        if (!builder || get_num(data, "duration_s", &x) ||
            fh_jv_int(fh_jv_get(data, "results"), &n)) {
            s->missing_fields++;
            return;
        }
        if (get_num(data, "complete_at", &t) == 0) {
            time_t secs = (time_t)floor(t);
            struct tm tm;
            char day[16];
            gmtime_r(&secs, &tm);
            size_t dl = strftime(day, sizeof(day), "%Y-%m-%d", &tm);
            size_t o = key_part(key, 0, builder, blen, 0);
            o = key_part(key, o, day, dl, 1);
            stat_add(table_get(&s->days, key, o), s->o.samples, x);
        }
        stat *b = table_get(&s->builders, builder, blen > KEY_PART_MAX ? KEY_PART_MAX : blen);
        int r = n >= 0 && n <= 6 ? (int)n : 7;
        b->results[r]++;
        b->count++;
        s->builds_all.results[r]++;
        s->builds_all.count++;
    } else if (strcmp(type, "buildrequest.new") == 0) {
        if (fh_jv_int(fh_jv_get(data, "buildrequestid"), &n) || n == 0 ||
            get_num(data, "submitted_at", &t)) {
            s->missing_fields++;
            return;
        }
        pending_put(&s->pending, n, t);
    } else if (strcmp(type, "buildrequest.complete") == 0) {
        /* a request cancelled before any build: forget it, it will never start */
        if (fh_jv_int(fh_jv_get(data, "buildrequestid"), &n) == 0)
            pending_take(&s->pending, n, NULL);
    } else if (strcmp(type, "build.started") == 0) {
        double submitted;
        if (!builder || fh_jv_int(fh_jv_get(data, "buildrequestid"), &n) ||
            get_num(data, "started_at", &t)) {
            s->missing_fields++;
            return;
        }
        /* the first build of a request measures its wait; a retry's build finds nothing */
        if (!pending_take(&s->pending, n, &submitted)) {
            s->waits_unmatched++;
            return;
        }
        x = t - submitted;
        stat_add(table_get(&s->waits, builder, blen > KEY_PART_MAX ? KEY_PART_MAX : blen),
                 s->o.samples, x);
        stat_add(&s->waits_all, s->o.samples, x);
    } else {
        return;
    }
    s->used++;
}

/* ---- the report ---------------------------------------------------------------------------- */

static void put_str(FILE *out, const char *p, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void put_num(FILE *out, double x)
{
    char buf[40];
    if (!isfinite(x))
        fputs("null", out);
    else
        fputs(fh_summary_num(x, buf, sizeof(buf)), out);
}

const char *fh_summary_num(double x, char *buf, size_t size)
{
    /* the shortest of %.15g and %.17g that reads back as x: 0.1 stays 0.1 */
    snprintf(buf, size, "%.15g", x);
    if (strtod(buf, NULL) != x)
        snprintf(buf, size, "%.17g", x);
    return buf;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the value at rank ceil(p * n / 100) (1-based) of the sorted samples. */
static double quantile(const stat *s, unsigned pct)
{
    if (!s->nsamples)
        return NAN;
    size_t rank = ((size_t)pct * s->nsamples + 99) / 100;
    if (rank < 1)
        rank = 1;
    return s->samples[rank - 1];
}

/* The samples must be sorted (entries() does it). */
static void put_stats(FILE *out, const stat *s)
{
    fprintf(out, "\"count\":%lld,\"mean\":", s->count);
    put_num(out, s->count ? s->sum / (double)s->count : NAN);
    fputs(",\"min\":", out);
    put_num(out, s->count ? s->min : NAN);
    fputs(",\"max\":", out);
    put_num(out, s->count ? s->max : NAN);
    fputs(",\"p50\":", out);
    put_num(out, quantile(s, 50));
    fputs(",\"p95\":", out);
    put_num(out, quantile(s, 95));
    fprintf(out, ",\"exact\":%s", s->count <= (long long)s->nsamples ? "true" : "false");
}

/* Writes the key parts as named members: "builder":"…","step":"…". */
static void put_key(FILE *out, const stat *s, const char *const *names, int nparts)
{
    size_t o = 0;
    for (int i = 0; i < nparts; i++) {
        const char *p = s->key ? s->key + o : "(other)";
        size_t n = 0;
        if (s->key) {
            while (o + n < s->keylen && p[n])
                n++;
            o += n + 1;
        } else {
            n = 7;
        }
        fprintf(out, "%s\"%s\":", i ? "," : "", names[i]);
        put_str(out, p, n);
    }
}

static int cmp_key(const void *a, const void *b);

/* Collects the table's entries (and other, when used) into a new array, each with its samples
 * sorted for the quantiles. */
static stat **entries(stat_table *t, size_t *n)
{
    stat **v = malloc((t->used + 1) * sizeof(*v));
    size_t k = 0;
    if (!v)
        return NULL;
    for (size_t i = 0; i < t->nslots; i++)
        if (t->slots[i])
            v[k++] = t->slots[i];
    if (t->other.count || t->other.results[0] || t->capped)
        v[k++] = &t->other;
    for (size_t i = 0; i < k; i++)
        if (v[i]->nsamples)
            qsort(v[i]->samples, v[i]->nsamples, sizeof(double), cmp_double);
    *n = k;
    return v;
}

/* Slowest first: p95 descending, then p50, then the key. */
static int cmp_slowest(const void *a, const void *b)
{
    const stat *x = *(stat *const *)a, *y = *(stat *const *)b;
    double x95 = quantile(x, 95), y95 = quantile(y, 95), x50 = quantile(x, 50),
           y50 = quantile(y, 50);
    if (x95 != y95)
        return x95 < y95 ? 1 : -1;
    if (x50 != y50)
        return x50 < y50 ? 1 : -1;
    return cmp_key(a, b);
}

static int cmp_key(const void *a, const void *b)
{
    const stat *x = *(stat *const *)a, *y = *(stat *const *)b;
    if (!x->key || !y->key)
        return !x->key - !y->key; /* (other) last */
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->keylen > y->keylen) - (x->keylen < y->keylen);
}

static void put_table(FILE *out, stat_table *t, const char *name, const char *const *names,
                      int nparts, int slowest_first, int last)
{
    size_t n = 0;
    stat **v = entries(t, &n);
    fprintf(out, "\"%s\":[", name);
    if (v) {
        qsort(v, n, sizeof(*v), slowest_first ? cmp_slowest : cmp_key);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",\n  {" : "\n  {", out);
            put_key(out, v[i], names, nparts);
            fputc(',', out);
            put_stats(out, v[i]);
            fputc('}', out);
        }
    }
    free(v);
    fprintf(out, "]%s\n", last ? "" : ",");
}

static void put_results(FILE *out, const stat *s)
{
    long long green = s->results[0] + s->results[1];
    fprintf(out, "\"builds\":%lld,\"green\":%lld,\"not_green\":%lld,\"rate\":", s->count, green,
            s->count - green);
    put_num(out, s->count ? (double)(s->count - green) / (double)s->count : NAN);
    fputs(",\"results\":{", out);
    static const char *const names[8] = {"0", "1", "2", "3", "4", "5", "6", "other"};
    for (int i = 0; i < 8; i++)
        fprintf(out, "%s\"%s\":%lld", i ? "," : "", names[i], s->results[i]);
    fputc('}', out);
}

int fh_summary_write(fh_summary *s, const char *extra, FILE *out)
{
    static const char *const step_names[] = {"builder", "step"};
    static const char *const day_names[] = {"builder", "day"};
    static const char *const builder_names[] = {"builder"};
    size_t n = 0;
    stat **v;

    fprintf(out, "{%s\"events\":%lld,\"used\":%lld,\"missing_fields\":%lld,\n", extra ? extra : "",
            s->seen, s->used, s->missing_fields);
    fprintf(out,
            "\"bounds\":{\"max_keys\":%zu,\"samples\":%u,\"max_pending\":%zu},\n"
            "\"capped\":{\"steps\":%lld,\"build_duration\":%lld,\"failure_rate\":%lld,"
            "\"queue_wait\":%lld,\"pending_full\":%lld,\"pending_left\":%zu,"
            "\"queue_wait_unmatched\":%lld},\n",
            s->o.max_keys, s->o.samples, s->o.max_pending, s->steps.capped, s->days.capped,
            s->builders.capped, s->waits.capped, s->pending.full, s->pending.used,
            s->waits_unmatched);
    put_table(out, &s->steps, "steps", step_names, 2, 1, 0);
    put_table(out, &s->days, "build_duration", day_names, 2, 0, 0);

    fputs("\"failure_rate\":{\"overall\":{", out);
    put_results(out, &s->builds_all);
    fputs("},\"builders\":[", out);
    if ((v = entries(&s->builders, &n))) {
        qsort(v, n, sizeof(*v), cmp_key);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",\n  {" : "\n  {", out);
            put_key(out, v[i], builder_names, 1);
            fputc(',', out);
            put_results(out, v[i]);
            fputc('}', out);
        }
        free(v);
    }
    fputs("]},\n\"queue_wait\":{\"overall\":{", out);
    if (s->waits_all.nsamples)
        qsort(s->waits_all.samples, s->waits_all.nsamples, sizeof(double), cmp_double);
    put_stats(out, &s->waits_all);
    fputs("},\n", out);
    put_table(out, &s->waits, "builders", builder_names, 1, 0, 1);
    fputs("}}\n", out);
    return ferror(out) ? -1 : 0;
}
