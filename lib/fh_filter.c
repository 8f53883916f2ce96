#include "fh_filter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int integer;
} fields[FH_F__COUNT] = {
    [FH_F_TYPE] = {"type", 0},           [FH_F_MASTER] = {"master", 0},
    [FH_F_RESULTS] = {"results", 1},     [FH_F_BUILDREQUESTID] = {"buildrequestid", 1},
    [FH_F_BUILDID] = {"buildid", 1},     [FH_F_BUILDER] = {"builder", 0},
    [FH_F_BUILDERID] = {"builderid", 1}, [FH_F_BRANCH] = {"branch", 0},
    [FH_F_REVISION] = {"revision", 0},   [FH_F_REPOSITORY] = {"repository", 0},
    [FH_F_PROJECT] = {"project", 0},     [FH_F_CODEBASE] = {"codebase", 0},
    [FH_F_OWNER] = {"owner", 0},         [FH_F_WORKER] = {"worker", 0},
};

const char *fh_filter_field_name(fh_filter_field f)
{
    return f < FH_F__COUNT ? fields[f].name : NULL;
}

int fh_filter_field_parse(const char *name)
{
    for (int i = 0; i < FH_F__COUNT; i++)
        if (strcmp(fields[i].name, name) == 0)
            return i;
    return -1;
}

int fh_glob_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

static fh_filter_clause *clause_for(fh_filter *f, fh_filter_field field)
{
    for (size_t i = 0; i < f->nclauses; i++)
        if (f->clauses[i].field == field)
            return &f->clauses[i];
    fh_filter_clause *c = &f->clauses[f->nclauses++];
    memset(c, 0, sizeof(*c));
    c->field = field;
    return c;
}

static fh_err bad_value(fh_filter_field field, char *errbuf, size_t errsize)
{
    if (field == FH_F_RESULTS)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "filter.results: expected integers 0-6");
    if (field == FH_F_TYPE)
        return fh_errf(
            errbuf, errsize, FH_ERR_INVAL,
            "filter.type: expected event type names (e.g. \"build.finished\", \"step.*\")");
    if (fields[field].integer)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "filter.%s: expected integers",
                       fields[field].name);
    return fh_errf(errbuf, errsize, FH_ERR_INVAL, "filter.%s: expected strings of at most %d bytes",
                   fields[field].name, FH_FILTER_MAX_STRLEN);
}

/* Adds one value (a JSON string or integer) to the clause. */
static fh_err add_value(fh_filter_clause *c, const json_t *v, char *errbuf, size_t errsize)
{
    fh_filter_value val = {0};
    if (c->nvals >= FH_FILTER_MAX_VALUES)
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG, "filter.%s: more than %d values",
                       fields[c->field].name, FH_FILTER_MAX_VALUES);
    if (fields[c->field].integer) {
        if (json_is_integer(v)) {
            val.num = json_integer_value(v);
        } else if (json_is_string(v)) {
            const char *s = json_string_value(v);
            char *end;
            if (!*s)
                return bad_value(c->field, errbuf, errsize);
            errno = 0;
            val.num = strtoll(s, &end, 10);
            /* past int64, strtoll gives LLONG_MAX: a different id from the one asked for */
            if (*end || errno == ERANGE)
                return bad_value(c->field, errbuf, errsize);
        } else {
            return bad_value(c->field, errbuf, errsize);
        }
        if (c->field == FH_F_RESULTS && (val.num < 0 || val.num > 6))
            return bad_value(c->field, errbuf, errsize);
    } else {
        const char *s = json_string_value(v);
        /* a string holding \u0000 would be matched on its prefix: "trunk\u0000x" as "trunk" */
        if (!s || strlen(s) > FH_FILTER_MAX_STRLEN || strlen(s) != json_string_length(v))
            return bad_value(c->field, errbuf, errsize);
        if (c->field == FH_F_TYPE && !strchr(s, '*') && fh_event_type_parse(s) < 0)
            return fh_errf(errbuf, errsize, FH_ERR_INVAL,
                           "filter.type: unknown event type \"%.64s\"", s);
        val.glob = strchr(s, '*') != NULL;
        if (!(val.str = strdup(s)))
            return FH_ERR_NOMEM;
    }
    fh_filter_value *nv = realloc(c->vals, (c->nvals + 1) * sizeof(*nv));
    if (!nv) {
        free(val.str);
        return FH_ERR_NOMEM;
    }
    c->vals = nv;
    c->vals[c->nvals++] = val;
    return FH_OK;
}

static fh_err add_field(fh_filter *f, const char *key, const json_t *v, char *errbuf,
                        size_t errsize)
{
    int field = fh_filter_field_parse(key);
    if (field < 0)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL,
                       "filter.%.64s: unknown field (known: type, master, results, buildrequestid, "
                       "buildid, builder, builderid, branch, revision, repository, project, "
                       "codebase, owner, worker)",
                       key);
    fh_filter_clause *c = clause_for(f, (fh_filter_field)field);
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        if (json_array_size(v) == 0)
            return fh_errf(errbuf, errsize, FH_ERR_INVAL, "filter.%s: empty list matches nothing",
                           key);
        json_array_foreach(v, i, item)
        {
            fh_err rc = add_value(c, item, errbuf, errsize);
            if (rc)
                return rc;
        }
        return FH_OK;
    }
    return add_value(c, v, errbuf, errsize);
}

fh_err fh_filter_parse(const json_t *obj, fh_filter *f, char *errbuf, size_t errsize)
{
    const char *key;
    json_t *v;
    memset(f, 0, sizeof(*f));
    if (!obj || json_is_null(obj))
        return FH_OK;
    if (!json_is_object(obj))
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "filter: expected an object");
    json_object_foreach((json_t *)obj, key, v)
    {
        fh_err rc = add_field(f, key, v, errbuf, errsize);
        if (rc)
            return rc;
    }
    return FH_OK;
}

fh_err fh_filter_add_text(fh_filter *f, const char *field, const char *text, char *errbuf,
                          size_t errsize)
{
    json_t *list = json_array();
    fh_err rc = FH_ERR_NOMEM;
    const char *p = text;
    if (!list)
        return rc;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (json_array_append_new(list, json_stringn(p, n)))
            goto done;
        if (!comma)
            break;
        p = comma + 1;
    }
    rc = add_field(f, field, list, errbuf, errsize);
done:
    json_decref(list);
    return rc;
}

/* Reads the event's value for a field: *s for strings, *n for integers. Returns 0 when absent. */
static int event_value(const fh_event *ev, fh_filter_field field, const char **s, long long *n)
{
    switch (field) {
    case FH_F_TYPE:
        *s = fh_event_type_name(ev->type);
        return 1;
    case FH_F_MASTER:
        *s = ev->master;
        return *s != NULL;
    default:
        break;
    }
    if (fields[field].integer)
        return fh_event_int(ev, fields[field].name, n) == 0;
    *s = fh_event_str(ev, fields[field].name);
    return *s != NULL;
}

static int event_lookup(void *ctx, fh_filter_field field, const char **s, long long *n)
{
    return event_value(ctx, field, s, n);
}

int fh_filter_match(const fh_filter *f, const fh_event *ev)
{
    return fh_filter_match_with(f, event_lookup, (void *)ev);
}

/* The event's value of field in the view: like event_value, from an fh_json tree. */
static int view_value(const fh_event_view *ev, fh_filter_field field, const char **s, size_t *len,
                      long long *n)
{
    int64_t i;
    switch (field) {
    case FH_F_TYPE:
        *s = fh_event_type_name(ev->type);
        *len = *s ? strlen(*s) : 0;
        return *s != NULL;
    case FH_F_MASTER:
        *s = ev->master;
        *len = *s ? strlen(*s) : 0;
        return *s != NULL;
    default:
        break;
    }
    const fh_jv *v = fh_jv_get(ev->data, fields[field].name);
    if (fields[field].integer) {
        if (fh_jv_integer(v, &i))
            return 0;
        *n = (long long)i;
        return 1;
    }
    *s = fh_jv_str(v, len);
    return *s != NULL;
}

fh_err fh_filter_facts_from_view(const fh_event_view *ev, fh_filter_facts *out)
{
    const char *str[FH_F__COUNT] = {0};
    size_t len[FH_F__COUNT] = {0}, total = 0;
    memset(out, 0, sizeof(*out));
    for (int f = 0; f < FH_F__COUNT; f++) {
        if (!view_value(ev, (fh_filter_field)f, &str[f], &len[f], &out->num[f]))
            continue;
        out->present |= 1u << f;
        if (str[f] && f != FH_F_TYPE)
            total += len[f] + 1;
    }
    if (total && !(out->blob = malloc(total))) {
        memset(out, 0, sizeof(*out));
        return FH_ERR_NOMEM;
    }
    out->blob_len = total;
    char *p = out->blob;
    for (int f = 0; f < FH_F__COUNT; f++) {
        if (!str[f])
            continue;
        if (f == FH_F_TYPE) {
            out->str[f] = str[f]; /* a static name */
            continue;
        }
        memcpy(p, str[f], len[f] + 1);
        out->str[f] = p;
        p += len[f] + 1;
    }
    return FH_OK;
}

int fh_filter_facts_lookup(void *ctx, fh_filter_field field, const char **s, long long *n)
{
    const fh_filter_facts *x = ctx;
    if (field >= FH_F__COUNT || !(x->present & (1u << field)))
        return 0;
    *s = x->str[field];
    *n = x->num[field];
    return 1;
}

int fh_filter_match_facts(const fh_filter *f, const fh_filter_facts *facts)
{
    return fh_filter_match_with(f, fh_filter_facts_lookup, (void *)facts);
}

void fh_filter_facts_free(fh_filter_facts *facts)
{
    free(facts->blob);
    memset(facts, 0, sizeof(*facts));
}

int fh_filter_field_integer(fh_filter_field f)
{
    return f < FH_F__COUNT && fields[f].integer;
}

int fh_filter_match_with(const fh_filter *f, fh_filter_lookup lookup, void *ctx)
{
    for (size_t i = 0; i < f->nclauses; i++) {
        const fh_filter_clause *c = &f->clauses[i];
        const char *s = NULL;
        long long n = 0;
        int ok = 0;
        if (!lookup(ctx, c->field, &s, &n))
            return 0;
        for (size_t k = 0; k < c->nvals && !ok; k++) {
            const fh_filter_value *v = &c->vals[k];
            if (!v->str)
                ok = v->num == n;
            else if (v->glob)
                ok = fh_glob_match(v->str, s);
            else
                ok = strcmp(v->str, s) == 0;
        }
        if (!ok)
            return 0;
    }
    return 1;
}

static int type_only(void *ctx, fh_filter_field field, const char **s, long long *n)
{
    (void)n;
    if (field != FH_F_TYPE)
        return 0;
    *s = ctx;
    return 1;
}

uint64_t fh_filter_type_mask(const fh_filter *f)
{
    uint64_t all = FH_EV__COUNT >= 64 ? ~0ull : (1ull << FH_EV__COUNT) - 1, mask = 0;
    for (size_t i = 0; i < f->nclauses; i++) {
        if (f->clauses[i].field != FH_F_TYPE)
            continue;
        /* the type clause alone, judged by the same rules as a whole match */
        fh_filter only = {.nclauses = 1, .clauses = {f->clauses[i]}};
        for (int t = 0; t < FH_EV__COUNT && t < 64; t++)
            if (fh_filter_match_with(&only, type_only, (void *)fh_event_type_name(t)))
                mask |= 1ull << t;
        return mask;
    }
    return all;
}

fh_err fh_filter_copy(fh_filter *dst, const fh_filter *src)
{
    int failed = 0;
    *dst = *src;
    for (size_t i = 0; i < src->nclauses; i++) {
        fh_filter_clause *c = &dst->clauses[i];
        c->vals = calloc(c->nvals ? c->nvals : 1, sizeof(*c->vals));
        if (!c->vals) {
            c->nvals = 0;
            failed = 1;
        }
        for (size_t k = 0; k < c->nvals; k++) {
            const fh_filter_value *v = &src->clauses[i].vals[k];
            c->vals[k] = *v;
            c->vals[k].str = v->str ? strdup(v->str) : NULL;
            failed |= v->str && !c->vals[k].str;
        }
    }
    if (failed) {
        fh_filter_free(dst);
        return FH_ERR_NOMEM;
    }
    return FH_OK;
}

void fh_filter_free(fh_filter *f)
{
    for (size_t i = 0; i < f->nclauses; i++) {
        for (size_t k = 0; k < f->clauses[i].nvals; k++)
            free(f->clauses[i].vals[k].str);
        free(f->clauses[i].vals);
    }
    memset(f, 0, sizeof(*f));
}
