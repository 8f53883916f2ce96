/* fh_lastgreen: see fh_lastgreen.h. The search lowers a candidate revision to each builder's
 * newest good revision at or below it until all builders agree; each lowering is a binary
 * search in that builder's verdicts. */
#include "fh_lastgreen.h"

#include <stdlib.h>
#include <string.h>

#include "fh_error.h"
#include "fh_util.h"

int fh_lastgreen_init(fh_lastgreen *lg, size_t nrevs, size_t nbuilders)
{
    lg->nrevs = nrevs;
    lg->nbuilders = nbuilders;
    lg->b = calloc(nbuilders ? nbuilders : 1, sizeof(*lg->b));
    return lg->b ? 0 : -1;
}

int fh_lastgreen_add(fh_lastgreen *lg, size_t builder, long rev, const fh_lg_build *build)
{
    if (builder >= lg->nbuilders || rev < 0 || (size_t)rev >= lg->nrevs)
        return -1;
    fh_lg_builder *b = &lg->b[builder];
    if (b->n == b->cap) {
        fh_lg_verdict *nv = fh_grow(b->v, &b->cap, sizeof(*nv), 32);
        if (!nv)
            return -1;
        b->v = nv;
    }
    fh_lg_verdict *v = &b->v[b->n++];
    v->rev = rev;
    v->build = *build;
    v->green = build->results == 0 || build->results == 1;
    return 0;
}

static int verdict_cmp(const void *a, const void *b)
{
    const fh_lg_verdict *x = a, *y = b;
    if (x->rev != y->rev)
        return x->rev < y->rev ? -1 : 1;
    return x->build.buildid < y->build.buildid ? -1 : x->build.buildid > y->build.buildid;
}

/* Sorts and collapses a builder's builds to one verdict per revision. */
static int collapse(fh_lg_builder *b)
{
    if (!b->n)
        return 0;
    qsort(b->v, b->n, sizeof(*b->v), verdict_cmp);
    size_t o = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (o && b->v[o - 1].rev == b->v[i].rev) {
            fh_lg_verdict *d = &b->v[o - 1];
            /* In buildid order: the later build replaces unless it would turn green red. */
            if (b->v[i].green || !d->green) {
                d->build = b->v[i].build;
                d->green = d->green || b->v[i].green;
            }
            continue;
        }
        b->v[o++] = b->v[i];
    }
    b->n = o;
    if (!(b->prev_green = malloc(b->n * sizeof(*b->prev_green))))
        return -1;
    long last = -1;
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].green)
            last = (long)i;
        b->prev_green[i] = last;
    }
    return 0;
}

/* The index of the last verdict at or before revision c, or -1. */
static long at_or_before(const fh_lg_builder *b, long c)
{
    long lo = 0, hi = (long)b->n - 1, ans = -1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (b->v[mid].rev <= c) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

/* The newest revision at or before c that is good for b, or -1. */
static long largest_good(const fh_lg_builder *b, long c)
{
    long j = at_or_before(b, c);
    if (j < 0)
        return -1;
    if (b->v[j].green && (b->v[j].rev == c || ((size_t)j + 1 < b->n && b->v[j + 1].green)))
        return c;
    long g = b->prev_green[j];
    return g < 0 ? -1 : b->v[g].rev;
}

int fh_lastgreen_decide(fh_lastgreen *lg, fh_lg_answer *ans)
{
    for (size_t i = 0; i < lg->nbuilders; i++)
        if (collapse(&lg->b[i]))
            return -1;
    long top = (long)lg->nrevs - 1, c = top;
    for (;;) {
        int changed = 0;
        for (size_t i = 0; i < lg->nbuilders; i++) {
            long g = c < 0 ? -1 : largest_good(&lg->b[i], c);
            if (g < 0) {
                ans->why = c == top ? FH_LG_NO_GREEN : FH_LG_NONE_COMMON;
                ans->rev = -1;
                ans->builder = i;
                return 0;
            }
            if (g < c) {
                c = g;
                changed = 1;
            }
        }
        if (!changed)
            break;
    }
    ans->why = c < 0 ? FH_LG_NO_GREEN : FH_LG_FOUND;
    ans->rev = c;
    ans->builder = 0;
    return 0;
}

void fh_lastgreen_reason(const fh_lastgreen *lg, size_t builder, long rev, fh_lg_reason *out)
{
    const fh_lg_builder *b = &lg->b[builder];
    long j = at_or_before(b, rev);
    memset(out, 0, sizeof(*out));
    if (j < 0)
        return;
    if (b->v[j].rev == rev) {
        out->build = &b->v[j];
    } else {
        out->between = 1;
        out->before = &b->v[j];
        out->after = (size_t)j + 1 < b->n ? &b->v[j + 1] : NULL;
    }
}

void fh_lastgreen_free(fh_lastgreen *lg)
{
    for (size_t i = 0; lg->b && i < lg->nbuilders; i++) {
        free(lg->b[i].v);
        free(lg->b[i].prev_green);
    }
    free(lg->b);
    memset(lg, 0, sizeof(*lg));
}

/* ---- required builders ----------------------------------------------------------------- */

static int names_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t fh_lg_names_sort(char **names, size_t n)
{
    if (!n)
        return 0;
    qsort(names, n, sizeof(*names), names_cmp);
    size_t kept = 1;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i], names[kept - 1]) == 0)
            free(names[i]);
        else
            names[kept++] = names[i];
    }
    return kept;
}

long fh_lg_names_find(char *const *names, size_t n, const char *name)
{
    char *const *p = n ? bsearch(&name, names, n, sizeof(*names), names_cmp) : NULL;
    return p ? (long)(p - names) : -1;
}

/* Splits "a, b,,c" into r->builders. Returns 0 or -1 out of memory. */
static int split_builders(fh_lg_rule *r, const char *list, size_t listlen)
{
    const char *p = list, *end = list + listlen;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma ? (size_t)(comma - p) : (size_t)(end - p);
        const char *next = comma ? comma + 1 : p + len;
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            char **nb = realloc(r->builders, (r->n + 1) * sizeof(*nb));
            if (!nb)
                return -1;
            r->builders = nb;
            if (!(nb[r->n] = strndup(p, len)))
                return -1;
            r->n++;
        }
        p = next;
    }
    r->n = fh_lg_names_sort(r->builders, r->n);
    return 0;
}

int fh_lg_rules_parse(fh_lg_rules *rules, const char *spec, char *errbuf, size_t errsize)
{
    const char *p = spec;
    while (p && *p) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len == 0) {
            p = semi ? semi + 1 : NULL;
            continue;
        }
        if (!eq || eq == p || (size_t)(eq - p) + 1 >= len) {
            fh_lg_rules_free(rules);
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                           "view.required_builders: expected BRANCH=BUILDER[,BUILDER...] "
                           "separated by ';', got \"%.*s\"",
                           (int)len, p);
        }
        fh_lg_rule *r = realloc(rules->r, (rules->n + 1) * sizeof(*r));
        if (!r)
            goto oom;
        rules->r = r;
        r = &rules->r[rules->n++];
        memset(r, 0, sizeof(*r));
        if (!(r->branch = strndup(p, (size_t)(eq - p))) ||
            split_builders(r, eq + 1, len - (size_t)(eq - p) - 1))
            goto oom;
        p = semi ? semi + 1 : NULL;
    }
    return 0;
oom:
    fh_lg_rules_free(rules);
    return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "view.required_builders: out of memory");
}

const fh_lg_rule *fh_lg_rules_find(const fh_lg_rules *rules, const char *branch)
{
    for (size_t i = 0; i < rules->n; i++)
        if (strcmp(rules->r[i].branch, branch) == 0)
            return &rules->r[i];
    return NULL;
}

void fh_lg_rules_free(fh_lg_rules *rules)
{
    for (size_t i = 0; i < rules->n; i++) {
        free(rules->r[i].branch);
        for (size_t j = 0; j < rules->r[i].n; j++)
            free(rules->r[i].builders[j]);
        free(rules->r[i].builders);
    }
    free(rules->r);
    rules->r = NULL;
    rules->n = 0;
}
