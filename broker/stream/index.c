/* index: the routing index, (field, value) -> items (subscriptions; the catch-up thread keeps its
 * own of catch-up jobs), so an event is offered only to candidates; routing a new event to the
 * live subscriptions. */
#include "internal.h"

/* ---- routing index ----------------------------------------------------------------------------
 */

static unsigned long hash_kv(int field, const char *v)
{
    unsigned long h = 5381u + (unsigned long)field * 131u;
    while (*v)
        h = h * 33u ^ (unsigned char)*v++;
    return h % INDEX_BUCKETS;
}

/* The link that points at the entry for (field, v), or the NULL link that ends its bucket. */
static ientry **index_link(findex *x, int field, const char *v)
{
    ientry **pe = &x->buckets[hash_kv(field, v)];
    while (*pe && ((*pe)->field != field || strcmp((*pe)->value, v) != 0))
        pe = &(*pe)->next;
    return pe;
}

static ientry *index_find(findex *x, int field, const char *v, int create)
{
    ientry **pe = index_link(x, field, v);
    if (*pe || !create)
        return *pe;
    ientry *e = calloc(1, sizeof(*e));
    if (!e || !(e->value = strdup(v))) {
        free(e);
        return NULL;
    }
    e->field = field;
    *pe = e;
    return e;
}

static void entry_free(ientry *e)
{
    free(e->items);
    free(e->value);
    free(e);
}

static int vec_add(void ***v, size_t *n, size_t *cap, void *u)
{
    if (*n == *cap) {
        void **nv = fh_grow(*v, cap, sizeof(*nv), 8);
        if (!nv)
            return -1;
        *v = nv;
    }
    (*v)[(*n)++] = u;
    return 0;
}

static void vec_remove(void **v, size_t *n, const void *u)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == u) {
            v[i] = v[--*n];
            return;
        }
}

/* The exact-match fields a subscription can be indexed under, most selective first. */
static const int index_order[] = {FH_F_BUILDID,  FH_F_BUILDREQUESTID, FH_F_BUILDER, FH_F_OWNER,
                                  FH_F_REVISION, FH_F_BUILDERID,      FH_F_BRANCH,  FH_F_WORKER,
                                  FH_F_PROJECT,  FH_F_MASTER,         FH_F_TYPE};

static const fh_filter_clause *index_clause(const fh_filter *f)
{
    for (size_t k = 0; k < sizeof(index_order) / sizeof(index_order[0]); k++)
        for (size_t i = 0; i < f->nclauses; i++) {
            const fh_filter_clause *c = &f->clauses[i];
            if ((int)c->field != index_order[k])
                continue;
            int exact = 1;
            for (size_t v = 0; v < c->nvals; v++)
                exact &= !c->vals[v].glob;
            if (exact)
                return c;
        }
    return NULL;
}

static void value_text(const fh_filter_value *v, char *buf, size_t size)
{
    if (v->str)
        snprintf(buf, size, "%s", v->str);
    else
        snprintf(buf, size, "%lld", v->num);
}

int stream_findex_add(findex *x, void *item, const fh_filter *f)
{
    const fh_filter_clause *c = index_clause(f);
    char val[FH_FILTER_MAX_STRLEN + 32];
    if (!c) {
        vec_add(&x->wild, &x->nwild, &x->capwild, item);
        return -1;
    }
    for (size_t i = 0; i < c->nvals; i++) {
        value_text(&c->vals[i], val, sizeof(val));
        ientry *e = index_find(x, (int)c->field, val, 1);
        if (e)
            vec_add(&e->items, &e->n, &e->cap, item);
    }
    x->field_used[c->field]++;
    return (int)c->field;
}

void stream_findex_free(findex *x)
{
    for (int i = 0; i < INDEX_BUCKETS; i++)
        for (ientry *e = x->buckets[i], *n; e; e = n) {
            n = e->next;
            entry_free(e);
        }
    free(x->wild);
}

void stream_findex_remove(findex *x, void *item, const fh_filter *f, int indexed)
{
    char val[FH_FILTER_MAX_STRLEN + 32];
    if (indexed == -1) {
        vec_remove(x->wild, &x->nwild, item);
    } else if (indexed >= 0) {
        const fh_filter_clause *c = index_clause(f);
        for (size_t i = 0; c && i < c->nvals; i++) {
            value_text(&c->vals[i], val, sizeof(val));
            /* an entry left empty goes: values seen once (a build id) must not pile up */
            ientry **pe = index_link(x, (int)c->field, val), *e = *pe;
            if (!e)
                continue;
            vec_remove(e->items, &e->n, item);
            if (e->n == 0) {
                *pe = e->next;
                entry_free(e);
            }
        }
        x->field_used[indexed]--;
    }
}

void stream_index_add(fh_stream *s, sub *u)
{
    u->indexed = stream_findex_add(&s->idx, u, &u->filter);
}

/* Frees the index's own memory (its entries and the unindexed list), not the subscriptions. */
void stream_index_free(fh_stream *s)
{
    stream_findex_free(&s->idx);
}

void stream_index_remove(fh_stream *s, sub *u)
{
    stream_findex_remove(&s->idx, u, &u->filter, u->indexed);
    u->indexed = -2;
}

/* The event's value of an indexable field as text (integers written into buf); NULL when the
 * event lacks it. */
static const char *event_field_text(const sev *e, int field, char *buf, size_t size)
{
    if (!(e->facts.present & (1u << field)))
        return NULL;
    if (!fh_filter_field_integer((fh_filter_field)field))
        return e->facts.str[field];
    snprintf(buf, size, "%lld", e->facts.num[field]);
    return buf;
}

void stream_findex_each(findex *x, sev *e, void (*fn)(void *item, sev *e, void *ctx), void *ctx)
{
    char val[FH_FILTER_MAX_STRLEN + 32];
    for (size_t i = 0; i < x->nwild;) {
        void *item = x->wild[i];
        fn(item, e, ctx);
        if (i < x->nwild && x->wild[i] == item)
            i++; /* else fn removed it: the next one took its place */
    }
    for (int f = 0; f < FH_F__COUNT; f++) {
        const char *v;
        if (!x->field_used[f] || !(v = event_field_text(e, f, val, sizeof(val))))
            continue;
        ientry *ie = index_find(x, f, v, 0);
        for (size_t i = 0; ie && i < ie->n; i++)
            fn(ie->items[i], e, ctx);
    }
}

static void route_to(void *item, sev *e, void *ctx)
{
    fh_stream *s = ctx;
    sub *u = item;
    if (u->mark == e->seq || u->state != SUB_LIVE || u->c->closing)
        return;
    u->mark = e->seq;
    if (stream_sub_matches(u, e))
        stream_deliver(s, u, e, 0);
}

/* Delivers a new ring event to every live subscription it matches. The cost follows the number of
 * candidate subscriptions (index hits plus unindexed ones), not the number of subscribers. */
void stream_route(fh_stream *s, sev *e)
{
    stream_findex_each(&s->idx, e, route_to, s);
}
