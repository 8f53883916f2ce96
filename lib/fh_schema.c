/* fh_schema, second half: validating an instance against a compiled tree (fh_schema_compile.c
 * builds it). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_schema_internal.h"
#include "fh_utf8.h"

/* ---- validating --------------------------------------------------------------------------- */

/* The path to the value being validated, kept as a stack of segments and rendered only when
 * validation fails, so the success path does no formatting. */
#define VPATH_DEPTH 32

typedef struct vseg {
    const char *name; /* NULL for an array index */
    size_t index;
} vseg;

typedef struct vpath {
    vseg seg[VPATH_DEPTH];
    size_t len; /* segments in use (may exceed VPATH_DEPTH; deeper ones are not recorded) */
} vpath;

static size_t path_push_name(vpath *p, const char *name)
{
    if (p->len < VPATH_DEPTH)
        p->seg[p->len].name = name;
    return p->len++;
}

static size_t path_push_index(vpath *p, size_t i)
{
    if (p->len < VPATH_DEPTH) {
        p->seg[p->len].name = NULL;
        p->seg[p->len].index = i;
    }
    return p->len++;
}

static void path_pop(vpath *p, size_t old)
{
    p->len = old;
}

static void path_render(const vpath *p, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < p->len && i < VPATH_DEPTH && o < size; i++) {
        int n = p->seg[i].name ? snprintf(buf + o, size - o, "%s%s", i ? "." : "", p->seg[i].name)
                               : snprintf(buf + o, size - o, "[%zu]", p->seg[i].index);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

static int fail(const vpath *p, fh_schema_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(const vpath *p, fh_schema_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        path_render(p, err->path, sizeof(err->path));
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return 0;
}

static unsigned instance_type(const fh_jv *j)
{
    switch (fh_jv_type(j)) {
    case FH_JV_NULL:
        return T_NULL;
    case FH_JV_TRUE:
    case FH_JV_FALSE:
        return T_BOOL;
    case FH_JV_OBJECT:
        return T_OBJECT;
    case FH_JV_ARRAY:
        return T_ARRAY;
    case FH_JV_STRING:
        return T_STRING;
    case FH_JV_INT:
        return T_NUMBER | T_INTEGER;
    case FH_JV_REAL: {
        double d = fh_jv_number(j);
        return T_NUMBER | (isfinite(d) && d == floor(d) ? T_INTEGER : 0);
    }
    }
    return 0;
}

static void types_text(unsigned types, char *buf, size_t size)
{
    static const char *names[] = {"null",   "boolean", "object", "array",
                                  "number", "string",  "integer"};
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < 7; i++) {
        if (!(types & (1u << i)))
            continue;
        int n = snprintf(buf + o, size - o, "%s%s", o ? " or " : "", names[i]);
        if (n < 0 || (size_t)n >= size - o)
            break;
        o += (size_t)n;
    }
}

static void value_text(const json_t *v, char *buf, size_t size)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, size, "%s", s ? s : "?");
    if (strlen(buf) == size - 1 && size > 4)
        memcpy(buf + size - 4, "...", 4);
    free(s);
}

static int validate(const fh_schema *s, const fh_jv *j, vpath *p, fh_schema_error *err);

/* Applies patternProperties, additionalProperties and propertyNames to one member (key is the
 * member's key as a string value, so propertyNames validates it without allocating). */
static int validate_member(const fh_schema *s, const fh_jv *key, const fh_jv *v, vpath *p,
                           fh_schema_error *err)
{
    const char *k = key->u.s;
    size_t klen = key->n;
    int matched = 0;
    for (size_t i = 0; i < s->nprops && !matched; i++)
        matched = s->props[i].len == klen && memcmp(s->props[i].name, k, klen) == 0;
    for (size_t i = 0; i < s->npats; i++) {
        /* regexec sees the key up to its first NUL: a key holding \u0000 (only possible with
         * FH_JSON_ALLOW_NUL) is matched on that prefix */
        if (regexec(&s->pats[i].re, k, 0, NULL, 0) != 0)
            continue;
        matched = 1;
        if (!validate(s->pats[i].s, v, p, err))
            return 0;
    }
    if (!matched && s->additional && !validate(s->additional, v, p, err)) {
        if (s->additional->bool_val == 0)
            fail(p, err, "unexpected field");
        return 0;
    }
    if (s->prop_names && !validate(s->prop_names, key, p, NULL))
        return fail(p, err, "property name not allowed");
    return 1;
}

static int validate_object(const fh_schema *s, const fh_jv *j, vpath *p, fh_schema_error *err)
{
    size_t nkeys = fh_jv_object_size(j);
    if (s->min_props >= 0 && (long long)nkeys < s->min_props)
        return fail(p, err, "expected at least %lld members", s->min_props);
    if (s->max_props >= 0 && (long long)nkeys > s->max_props)
        return fail(p, err, "expected at most %lld members", s->max_props);
    const fh_jv *reqv[REQ_MEMO];
    for (size_t i = 0; i < s->nreq; i++) {
        const fh_jv *v = fh_jv_get_n(j, s->required[i].name, s->required[i].len);
        if (i < REQ_MEMO)
            reqv[i] = v;
        if (!v) {
            size_t old = path_push_name(p, s->required[i].name);
            fail(p, err, "missing required field");
            path_pop(p, old);
            return 0;
        }
    }
    for (size_t i = 0; i < s->nprops; i++) {
        const fh_jv *v = s->props[i].req < REQ_MEMO
                             ? reqv[s->props[i].req]
                             : fh_jv_get_n(j, s->props[i].name, s->props[i].len);
        if (!v)
            continue;
        size_t old = path_push_name(p, s->props[i].name);
        int ok = validate(s->props[i].s, v, p, err);
        path_pop(p, old);
        if (!ok)
            return 0;
    }
    if (s->npats || s->additional || s->prop_names) {
        for (size_t i = 0; i < nkeys; i++) {
            const fh_jv *key = &j->u.items[2 * i];
            size_t old = path_push_name(p, key->u.s);
            int ok = validate_member(s, key, &j->u.items[2 * i + 1], p, err);
            path_pop(p, old);
            if (!ok)
                return 0;
        }
    }
    return 1;
}

static int validate_array(const fh_schema *s, const fh_jv *j, vpath *p, fh_schema_error *err)
{
    size_t n = fh_jv_array_size(j);
    if (s->min_items >= 0 && (long long)n < s->min_items)
        return fail(p, err, "expected at least %lld items", s->min_items);
    if (s->max_items >= 0 && (long long)n > s->max_items)
        return fail(p, err, "expected at most %lld items", s->max_items);
    for (size_t i = 0; i < n; i++) {
        const fh_schema *is = i < s->nprefix ? s->prefix[i] : s->items;
        if (!is)
            continue;
        size_t old = path_push_index(p, i);
        int ok = validate(is, &j->u.items[i], p, err);
        path_pop(p, old);
        if (!ok)
            return 0;
    }
    if (s->unique)
        for (size_t i = 0; i < n; i++)
            for (size_t k = i + 1; k < n; k++)
                if (fh_jv_equal(&j->u.items[i], &j->u.items[k]))
                    return fail(p, err, "items %zu and %zu are equal", i, k);
    return 1;
}

/* Compares the number j with the integer m exactly: -1, 0 or 1. A REAL beyond the int64 range
 * (18446744073709551616 is one: fh_json keeps integers past int64 as REAL) is beyond every m. */
static int cmp_int_bound(const fh_jv *j, long long m)
{
    if (j->type == FH_JV_INT)
        return j->u.i < m ? -1 : j->u.i > m;
    double d = j->u.d;
    if (d >= 9223372036854775808.0)
        return 1;
    if (d < -9223372036854775808.0)
        return -1;
    long long t = (long long)d; /* toward zero, exact: |d| < 2^63 */
    if (t != m)
        return t < m ? -1 : 1;
    return d < (double)t ? -1 : d > (double)t;
}

static int validate_number(const fh_schema *s, const fh_jv *j, vpath *p, fh_schema_error *err)
{
    double d = fh_jv_number(j);
    if (s->has_min && (s->min_is_int ? cmp_int_bound(j, s->imin) < 0 : d < s->min))
        return s->min_is_int ? fail(p, err, "must be >= %lld", s->imin)
                             : fail(p, err, "must be >= %g", s->min);
    if (s->has_max && (s->max_is_int ? cmp_int_bound(j, s->imax) > 0 : d > s->max))
        return s->max_is_int ? fail(p, err, "must be <= %lld", s->imax)
                             : fail(p, err, "must be <= %g", s->max);
    if (s->has_xmin && (s->xmin_is_int ? cmp_int_bound(j, s->ixmin) <= 0 : d <= s->xmin))
        return s->xmin_is_int ? fail(p, err, "must be > %lld", s->ixmin)
                              : fail(p, err, "must be > %g", s->xmin);
    if (s->has_xmax && (s->xmax_is_int ? cmp_int_bound(j, s->ixmax) >= 0 : d >= s->xmax))
        return s->xmax_is_int ? fail(p, err, "must be < %lld", s->ixmax)
                              : fail(p, err, "must be < %g", s->xmax);
    if (s->has_mult) {
        double q = d / s->mult;
        if (!isfinite(q) || fabs(q - nearbyint(q)) > 1e-9 * fmax(1.0, fabs(q)))
            return fail(p, err, "must be a multiple of %g", s->mult);
    }
    return 1;
}

/* pattern sees the string up to its first NUL (see validate_member); lengths count all of it. */
static int validate_string(const fh_schema *s, const fh_jv *j, vpath *p, fh_schema_error *err)
{
    const char *str = j->u.s;
    size_t bytes = j->n;
    if (s->min_len >= 0 || s->max_len >= 0) {
        size_t n = fh_utf8_count(str, bytes);
        if (s->min_len >= 0 && (long long)n < s->min_len)
            return fail(p, err, "shorter than %lld characters", s->min_len);
        if (s->max_len >= 0 && (long long)n > s->max_len)
            return fail(p, err, "longer than %lld characters", s->max_len);
    }
    /* regexec sees the string up to its first NUL (only possible with FH_JSON_ALLOW_NUL), and so
     * does the C matcher */
    if (s->has_pattern && (s->fast_pattern ? !s->fast_pattern(str, strnlen(str, bytes))
                                           : regexec(&s->pattern, str, 0, NULL, 0) != 0))
        return fail(p, err, "does not match /%s/", s->pattern_src);
    return 1;
}

/* The failures that format a value, kept out of line so validate's frame stays small: it is
 * entered for every subschema of every instance. */
static __attribute__((noinline)) int fail_types(const vpath *p, fh_schema_error *err,
                                                unsigned types)
{
    char t[96];
    types_text(types, t, sizeof(t));
    return fail(p, err, "expected %s", t);
}

static __attribute__((noinline)) int fail_const(const vpath *p, fh_schema_error *err,
                                                const json_t *val)
{
    char v[96];
    value_text(val, v, sizeof(v));
    return fail(p, err, "expected %s", v);
}

static __attribute__((noinline)) int fail_enum(const vpath *p, fh_schema_error *err,
                                               const json_t *vals)
{
    char v[160];
    value_text(vals, v, sizeof(v));
    return fail(p, err, "expected one of %s", v);
}

/* allOf. A discriminated entry (see disc) applies its "then" only when the member it tests is its
 * string: the member is looked up once for all of them. Entries stay in their order, so the
 * first failure reported is the one plain evaluation would report. */
static int validate_all_of(const fh_schema *s, const fh_jv *j, unsigned it, vpath *p,
                           fh_schema_error *err)
{
    const fh_jv *m = NULL;
    if (s->discs && (it & T_OBJECT)) {
        m = fh_jv_get_n(j, s->disc_key, s->disc_klen);
        if (m && fh_jv_type(m) != FH_JV_STRING)
            m = NULL; /* no string const matches it */
    }
    for (size_t i = 0; i < s->nall; i++) {
        const fh_schema *e = s->all_of[i];
        if (s->discs && s->discs[i].val && (it & T_OBJECT)) {
            if (!m || m->n != s->discs[i].len || memcmp(m->u.s, s->discs[i].val, m->n) != 0)
                continue;
            e = e->then_;
        }
        if (!validate(e, j, p, err))
            return 0;
    }
    return 1;
}

static int validate(const fh_schema *s, const fh_jv *j, vpath *p, fh_schema_error *err)
{
    if (s->bool_val == 1)
        return 1;
    if (s->bool_val == 0)
        return fail(p, err, "not allowed");

    unsigned it = instance_type(j);
    if (!err && (s->types && !(s->types & it)))
        return 0;
    if (s->types && !(s->types & it))
        return fail_types(p, err, s->types);
    if (s->const_val && !fh_jv_equal(s->const_val, j)) {
        if (!err)
            return 0; /* probing (anyOf, if, not): no message needed */
        return fail_const(p, err, s->const_src);
    }
    if (s->enum_vals) {
        int found = 0;
        for (size_t i = 0; i < fh_jv_array_size(s->enum_vals) && !found; i++)
            found = fh_jv_equal(fh_jv_array_get(s->enum_vals, i), j);
        if (!found) {
            if (!err)
                return 0;
            return fail_enum(p, err, s->enum_src);
        }
    }
    if ((it & T_OBJECT) && !validate_object(s, j, p, err))
        return 0;
    if ((it & T_ARRAY) && !validate_array(s, j, p, err))
        return 0;
    if ((it & T_NUMBER) && !validate_number(s, j, p, err))
        return 0;
    if ((it & T_STRING) && !validate_string(s, j, p, err))
        return 0;
    if (s->ref && !validate(s->ref, j, p, err))
        return 0;
    if (s->nall && !validate_all_of(s, j, it, p, err))
        return 0;
    if (s->nany) {
        size_t i;
        for (i = 0; i < s->nany; i++)
            if (validate(s->any_of[i], j, p, NULL))
                break;
        if (i == s->nany) {
            /* one alternative's own error tells more than "no match" when there is just one */
            if (s->nany == 1)
                return validate(s->any_of[0], j, p, err);
            return fail(p, err, "matches none of the %zu allowed forms", s->nany);
        }
    }
    if (s->none) {
        size_t matches = 0;
        for (size_t i = 0; i < s->none; i++)
            matches += (size_t)validate(s->one_of[i], j, p, NULL);
        if (matches != 1)
            return fail(p, err, "matches %zu of the allowed forms, expected exactly one", matches);
    }
    if (s->not_ && validate(s->not_, j, p, NULL))
        return fail(p, err, "matches a form that is not allowed");
    if (s->if_) {
        const fh_schema *branch = validate(s->if_, j, p, NULL) ? s->then_ : s->else_;
        if (branch && !validate(branch, j, p, err))
            return 0;
    }
    return 1;
}

int fh_schema_validate_jv(const fh_schema *schema, const fh_jv *instance, fh_schema_error *err)
{
    vpath p;
    p.len = 0;
    if (err)
        err->path[0] = err->message[0] = '\0';
    return validate(schema, instance, &p, err);
}

int fh_schema_validate(const fh_schema *schema, const json_t *instance, fh_schema_error *err)
{
    fh_json_doc doc;
    const fh_jv *v;
    int ok = 0;
    fh_json_doc_init(&doc, SIZE_MAX); /* bounded by the jansson value, already in memory */
    fh_err rc = fh_jv_from_jansson(&doc, instance, &v);
    if (!rc) {
        ok = fh_schema_validate_jv(schema, v, err);
    } else if (err) {
        err->path[0] = '\0';
        snprintf(err->message, sizeof(err->message), "cannot validate: %s", fh_strerror(rc));
    }
    fh_json_doc_free(&doc);
    return ok;
}
