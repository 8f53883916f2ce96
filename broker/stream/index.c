/* index: the routing index, (field, value) -> subscriptions, so an event is offered only to
 * candidate subscriptions; routing a new event to the live ones. */
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

static ientry *index_find(fh_stream *s, int field, const char *v, int create)
{
    unsigned long h = hash_kv(field, v);
    for (ientry *e = s->buckets[h]; e; e = e->next)
        if (e->field == field && strcmp(e->value, v) == 0)
            return e;
    if (!create)
        return NULL;
    ientry *e = calloc(1, sizeof(*e));
    if (!e || !(e->value = strdup(v))) {
        free(e);
        return NULL;
    }
    e->field = field;
    e->next = s->buckets[h];
    s->buckets[h] = e;
    return e;
}

static int vec_add(sub ***v, size_t *n, size_t *cap, sub *u)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        sub **nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = u;
    return 0;
}

static void vec_remove(sub **v, size_t *n, sub *u)
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

static const fh_filter_clause *index_clause(const sub *u)
{
    for (size_t k = 0; k < sizeof(index_order) / sizeof(index_order[0]); k++)
        for (size_t i = 0; i < u->filter.nclauses; i++) {
            const fh_filter_clause *c = &u->filter.clauses[i];
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

void stream_index_add(fh_stream *s, sub *u)
{
    const fh_filter_clause *c = index_clause(u);
    char val[FH_FILTER_MAX_STRLEN + 32];
    if (!c) {
        vec_add(&s->wild, &s->nwild, &s->capwild, u);
        u->indexed = -1;
        return;
    }
    for (size_t i = 0; i < c->nvals; i++) {
        value_text(&c->vals[i], val, sizeof(val));
        ientry *e = index_find(s, (int)c->field, val, 1);
        if (e)
            vec_add(&e->subs, &e->n, &e->cap, u);
    }
    s->field_used[c->field]++;
    u->indexed = (int)c->field;
}

/* Frees the index's own memory (its entries and the unindexed list), not the subscriptions. */
void stream_index_free(fh_stream *s)
{
    for (int i = 0; i < INDEX_BUCKETS; i++)
        for (ientry *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e->subs);
            free(e->value);
            free(e);
        }
    free(s->wild);
}

void stream_index_remove(fh_stream *s, sub *u)
{
    char val[FH_FILTER_MAX_STRLEN + 32];
    if (u->indexed == -1) {
        vec_remove(s->wild, &s->nwild, u);
    } else if (u->indexed >= 0) {
        const fh_filter_clause *c = index_clause(u);
        for (size_t i = 0; c && i < c->nvals; i++) {
            value_text(&c->vals[i], val, sizeof(val));
            ientry *e = index_find(s, (int)c->field, val, 0);
            if (e)
                vec_remove(e->subs, &e->n, u);
        }
        s->field_used[u->indexed]--;
    }
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

static void route_to(fh_stream *s, sub *u, sev *e)
{
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
    char val[FH_FILTER_MAX_STRLEN + 32];
    for (size_t i = 0; i < s->nwild;) {
        sub *u = s->wild[i];
        route_to(s, u, e);
        if (i < s->nwild && s->wild[i] == u)
            i++;
    }
    for (int f = 0; f < FH_F__COUNT; f++) {
        const char *v;
        if (!s->field_used[f] || !(v = event_field_text(e, f, val, sizeof(val))))
            continue;
        ientry *ie = index_find(s, f, v, 0);
        for (size_t i = 0; ie && i < ie->n; i++)
            route_to(s, ie->subs[i], e);
    }
}
