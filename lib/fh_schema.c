#include "fh_schema.h"

#include "fh_pattern.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_utf8.h"

enum {
    T_NULL = 1,
    T_BOOL = 2,
    T_OBJECT = 4,
    T_ARRAY = 8,
    T_NUMBER = 16,
    T_STRING = 32,
    T_INTEGER = 64,
};

typedef struct named {
    const char *name;
    size_t len;
    fh_schema *s; /* NULL for a required name */
    size_t req;   /* properties: index of the same name in required, or SIZE_MAX */
} named;

/* Values of required members remembered while checking them, so properties that are also
 * required are not looked up twice. */
#define REQ_MEMO 32

typedef struct patprop {
    regex_t re;
    fh_schema *s;
} patprop;

/* An allOf entry of the form {"if": {"properties": {K: {"const": V}}, "required": [K]},
 * "then": T} (how the event schema picks the data schema by "type"): it applies T exactly when
 * the instance is an object whose member K is the string V, so validate compares V with the
 * member it looked up once instead of validating the "if" per entry. */
typedef struct disc {
    const char *val; /* NULL: an ordinary allOf entry */
    size_t len;
} disc;

struct fh_schema {
    const json_t *src;                  /* the JSON this node was compiled from (cache key) */
    fh_schema *next;                    /* every node, for freeing */
    int bool_val;                       /* -1: an object schema; 0: false; 1: true */
    unsigned types;                     /* T_* mask; 0 means any */
    const fh_jv *enum_vals, *const_val; /* converted at compile time, in reg->consts */
    const json_t *enum_src, *const_src; /* the same, for error messages */
    named *props;
    size_t nprops;
    named *required;
    size_t nreq;
    fh_schema *additional, *prop_names, *items, *not_, *if_, *then_, *else_, *ref;
    patprop *pats;
    size_t npats;
    fh_schema **prefix, **all_of, **any_of, **one_of;
    size_t nprefix, nall, nany, none;
    long long min_items, max_items, min_len, max_len, min_props, max_props;
    int unique;
    regex_t pattern;
    int has_pattern;
    const char *pattern_src;
    fh_pattern_fn fast_pattern; /* NULL: regexec (lib/fh_pattern.h) */
    disc *discs;          /* nall entries, or NULL when no allOf entry is a discriminated if */
    const char *disc_key; /* the member every discriminated entry tests */
    size_t disc_klen;
    int has_min, has_max, has_xmin, has_xmax, has_mult;
    double min, max, xmin, xmax, mult;
    /* An integer bound is also kept exactly: a double cannot tell 2^63 - 1 from 2^63. */
    int min_is_int, max_is_int, xmin_is_int, xmax_is_int;
    long long imin, imax, ixmin, ixmax;
};

typedef struct schema_doc {
    char *id;
    json_t *json;
} schema_doc;

struct fh_schema_registry {
    schema_doc *docs;
    size_t ndocs;
    fh_schema *nodes;
    fh_json_doc consts; /* const and enum values as fh_jv, for the validator */
};

fh_schema_registry *fh_schema_registry_new(void)
{
    fh_schema_registry *reg = calloc(1, sizeof(fh_schema_registry));
    if (reg)
        fh_json_doc_init(&reg->consts, SIZE_MAX); /* bounded by the schemas themselves */
    return reg;
}

static void node_free(fh_schema *s)
{
    for (size_t i = 0; i < s->npats; i++)
        regfree(&s->pats[i].re);
    if (s->has_pattern)
        regfree(&s->pattern);
    free(s->props);
    free(s->required);
    free(s->pats);
    free(s->prefix);
    free(s->all_of);
    free(s->discs);
    free(s->any_of);
    free(s->one_of);
    free(s);
}

void fh_schema_registry_free(fh_schema_registry *reg)
{
    if (!reg)
        return;
    for (fh_schema *s = reg->nodes, *n; s; s = n) {
        n = s->next;
        node_free(s);
    }
    for (size_t i = 0; i < reg->ndocs; i++) {
        free(reg->docs[i].id);
        json_decref(reg->docs[i].json);
    }
    free(reg->docs);
    fh_json_doc_free(&reg->consts);
    free(reg);
}

static fh_err reg_put(fh_schema_registry *reg, const char *id, json_t *json)
{
    for (size_t i = 0; i < reg->ndocs; i++)
        if (strcmp(reg->docs[i].id, id) == 0)
            return FH_OK; /* first registration wins */
    schema_doc *nd = realloc(reg->docs, (reg->ndocs + 1) * sizeof(*nd));
    if (!nd)
        return FH_ERR_NOMEM;
    reg->docs = nd;
    nd[reg->ndocs].id = strdup(id);
    if (!nd[reg->ndocs].id)
        return FH_ERR_NOMEM;
    nd[reg->ndocs].json = json_incref(json);
    reg->ndocs++;
    return FH_OK;
}

static json_t *reg_get(const fh_schema_registry *reg, const char *id, size_t idlen)
{
    for (size_t i = 0; i < reg->ndocs; i++)
        if (strlen(reg->docs[i].id) == idlen && memcmp(reg->docs[i].id, id, idlen) == 0)
            return reg->docs[i].json;
    return NULL;
}

fh_err fh_schema_registry_add(fh_schema_registry *reg, json_t *doc, const char *fallback_id,
                              char *errbuf, size_t errsize)
{
    const char *id = NULL;
    if (json_is_object(doc))
        id = json_string_value(json_object_get(doc, "$id"));
    if (!id)
        id = fallback_id;
    if (!id)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "schema has no $id");
    /* an id ending in '#' (empty fragment) names the same resource */
    size_t n = strlen(id);
    char tmp[512];
    if (n > 0 && id[n - 1] == '#' && n < sizeof(tmp)) {
        memcpy(tmp, id, n - 1);
        tmp[n - 1] = '\0';
        id = tmp;
    }
    if (reg_put(reg, id, doc))
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
    return FH_OK;
}

/* ---- compiling ---------------------------------------------------------------------------- */

typedef struct cctx {
    fh_schema_registry *reg;
    char *errbuf;
    size_t errsize;
} cctx;

static fh_err compile(cctx *c, const json_t *root, const json_t *js, fh_schema **out);

/* Decodes one JSON Pointer token (RFC 6901, with URI percent-decoding) into buf. */
static int ptr_token(const char *p, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            unsigned v;
            if (sscanf(p + i + 1, "%2x", &v) != 1)
                return -1;
            ch = (char)v;
            i += 2;
        }
        if (ch == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
            ch = p[i + 1] == '0' ? '~' : '/';
            i++;
        }
        if (o + 1 >= size)
            return -1;
        buf[o++] = ch;
    }
    buf[o] = '\0';
    return 0;
}

static const json_t *ptr_resolve(const json_t *root, const char *frag)
{
    const json_t *cur = root;
    if (*frag == '\0')
        return root;
    if (*frag != '/')
        return NULL;
    while (*frag == '/' && cur) {
        const char *start = ++frag;
        while (*frag && *frag != '/')
            frag++;
        char tok[256];
        if (ptr_token(start, (size_t)(frag - start), tok, sizeof(tok)))
            return NULL;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(tok, &end, 10);
            cur = (*tok && !*end) ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
    }
    return cur;
}

static fh_err resolve_ref(cctx *c, const json_t *root, const char *ref, fh_schema **out)
{
    const char *hash = strchr(ref, '#');
    size_t baselen = hash ? (size_t)(hash - ref) : strlen(ref);
    const char *frag = hash ? hash + 1 : "";
    const json_t *docroot = root;

    if (baselen > 0) {
        docroot = reg_get(c->reg, ref, baselen);
        if (!docroot)
            return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED, "$ref %s: unknown schema",
                           ref);
    }
    if (*frag && *frag != '/')
        return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED,
                       "$ref %s: anchors are not supported", ref);
    const json_t *target = ptr_resolve(docroot, frag);
    if (!target)
        return fh_errf(c->errbuf, c->errsize, FH_ERR_NOTFOUND, "$ref %s: no such location", ref);
    return compile(c, docroot, target, out);
}

static unsigned type_bit(const char *t)
{
    static const struct {
        const char *name;
        unsigned bit;
    } map[] = {{"null", T_NULL},      {"boolean", T_BOOL},  {"object", T_OBJECT},
               {"array", T_ARRAY},    {"number", T_NUMBER}, {"string", T_STRING},
               {"integer", T_INTEGER}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(t, map[i].name) == 0)
            return map[i].bit;
    return 0;
}

static int get_count(const json_t *v, long long *out)
{
    double d;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return *out >= 0 ? 0 : -1;
    }
    if (json_is_real(v) && (d = json_real_value(v)) >= 0 && d == floor(d) && d < 9e18) {
        *out = (long long)d;
        return 0;
    }
    return -1;
}

static fh_err compile_list(cctx *c, const json_t *root, const json_t *arr, fh_schema ***out,
                           size_t *n)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL,
                       "expected a non-empty array of schemas");
    *n = json_array_size(arr);
    *out = calloc(*n, sizeof(**out));
    if (!*out)
        return FH_ERR_NOMEM;
    for (size_t i = 0; i < *n; i++) {
        fh_err rc = compile(c, root, json_array_get(arr, i), &(*out)[i]);
        if (rc)
            return rc;
    }
    return FH_OK;
}

static int is_annotation(const char *k)
{
    static const char *ann[] = {"$schema",         "$comment",  "title",       "description",
                                "examples",        "default",   "format",      "deprecated",
                                "readOnly",        "writeOnly", "$vocabulary", "contentMediaType",
                                "contentEncoding", "$defs",     "definitions", "$id"};
    for (size_t i = 0; i < sizeof(ann) / sizeof(ann[0]); i++)
        if (strcmp(k, ann[i]) == 0)
            return 1;
    return 0;
}

/* is_int and iout may be NULL (multipleOf); else they record an integer bound exactly. */
static fh_err compile_number(cctx *c, const char *k, const json_t *v, int *has, double *out,
                             int *is_int, long long *iout)
{
    if (!json_is_number(v))
        return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "%s: expected a number", k);
    *has = 1;
    *out = json_number_value(v);
    if (is_int && json_is_integer(v)) {
        *is_int = 1;
        *iout = json_integer_value(v);
    }
    return FH_OK;
}

static fh_err compile_keyword(cctx *c, const json_t *root, fh_schema *s, const char *k,
                              const json_t *v)
{
    fh_err rc = FH_OK;
    if (strcmp(k, "type") == 0) {
        if (json_is_string(v)) {
            s->types = type_bit(json_string_value(v));
        } else if (json_is_array(v)) {
            size_t i;
            const json_t *t;
            json_array_foreach(v, i, t)
            {
                s->types |= json_is_string(t) ? type_bit(json_string_value(t)) : 0;
            }
        }
        if (!s->types)
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "type: unknown type name");
    } else if (strcmp(k, "enum") == 0) {
        if (!json_is_array(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "enum: expected an array");
        s->enum_src = v;
        if (fh_jv_from_jansson(&c->reg->consts, v, &s->enum_vals))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_NOMEM, "enum: out of memory");
    } else if (strcmp(k, "const") == 0) {
        s->const_src = v;
        if (fh_jv_from_jansson(&c->reg->consts, v, &s->const_val))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_NOMEM, "const: out of memory");
    } else if (strcmp(k, "properties") == 0) {
        const char *name;
        size_t namelen;
        json_t *sub;
        if (!json_is_object(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "properties: expected an object");
        s->props = calloc(json_object_size(v) + 1, sizeof(named));
        if (!s->props)
            return FH_ERR_NOMEM;
        json_object_keylen_foreach((json_t *)v, name, namelen, sub)
        {
            s->props[s->nprops].name = name;
            s->props[s->nprops].len = namelen;
            if ((rc = compile(c, root, sub, &s->props[s->nprops].s)))
                return rc;
            s->nprops++;
        }
    } else if (strcmp(k, "required") == 0) {
        size_t i;
        const json_t *r;
        if (!json_is_array(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "required: expected an array");
        s->required = calloc(json_array_size(v) + 1, sizeof(named));
        if (!s->required)
            return FH_ERR_NOMEM;
        json_array_foreach(v, i, r)
        {
            if (!json_is_string(r))
                return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "required: expected strings");
            s->required[s->nreq].name = json_string_value(r);
            s->required[s->nreq++].len = json_string_length(r);
        }
    } else if (strcmp(k, "additionalProperties") == 0) {
        rc = compile(c, root, v, &s->additional);
    } else if (strcmp(k, "patternProperties") == 0) {
        const char *pat;
        const json_t *sub;
        if (!json_is_object(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL,
                           "patternProperties: expected an object");
        s->pats = calloc(json_object_size(v) + 1, sizeof(patprop));
        if (!s->pats)
            return FH_ERR_NOMEM;
        json_object_foreach((json_t *)v, pat, sub)
        {
            if (regcomp(&s->pats[s->npats].re, pat, REG_EXTENDED | REG_NOSUB))
                return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED,
                               "patternProperties: cannot compile /%s/", pat);
            s->npats++;
            if ((rc = compile(c, root, sub, &s->pats[s->npats - 1].s)))
                return rc;
        }
    } else if (strcmp(k, "propertyNames") == 0) {
        rc = compile(c, root, v, &s->prop_names);
    } else if (strcmp(k, "items") == 0) {
        if (json_is_array(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED,
                           "items: array form is draft 2019 (use prefixItems)");
        rc = compile(c, root, v, &s->items);
    } else if (strcmp(k, "prefixItems") == 0) {
        rc = compile_list(c, root, v, &s->prefix, &s->nprefix);
    } else if (strcmp(k, "minItems") == 0 || strcmp(k, "maxItems") == 0 ||
               strcmp(k, "minLength") == 0 || strcmp(k, "maxLength") == 0 ||
               strcmp(k, "minProperties") == 0 || strcmp(k, "maxProperties") == 0) {
        long long n;
        if (get_count(v, &n))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "%s: expected a count", k);
        long long *slot = k[1] == 'i' ? (k[3] == 'I'   ? &s->min_items
                                         : k[3] == 'L' ? &s->min_len
                                                       : &s->min_props)
                                      : (k[3] == 'I'   ? &s->max_items
                                         : k[3] == 'L' ? &s->max_len
                                                       : &s->max_props);
        *slot = n;
    } else if (strcmp(k, "uniqueItems") == 0) {
        s->unique = json_is_true(v);
    } else if (strcmp(k, "pattern") == 0) {
        if (!json_is_string(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "pattern: expected a string");
        s->pattern_src = json_string_value(v);
        if (regcomp(&s->pattern, s->pattern_src, REG_EXTENDED | REG_NOSUB))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED,
                           "pattern: cannot compile /%s/", s->pattern_src);
        s->has_pattern = 1;
        s->fast_pattern = fh_pattern_fast(s->pattern_src);
    } else if (strcmp(k, "minimum") == 0) {
        rc = compile_number(c, k, v, &s->has_min, &s->min, &s->min_is_int, &s->imin);
    } else if (strcmp(k, "maximum") == 0) {
        rc = compile_number(c, k, v, &s->has_max, &s->max, &s->max_is_int, &s->imax);
    } else if (strcmp(k, "exclusiveMinimum") == 0) {
        rc = compile_number(c, k, v, &s->has_xmin, &s->xmin, &s->xmin_is_int, &s->ixmin);
    } else if (strcmp(k, "exclusiveMaximum") == 0) {
        rc = compile_number(c, k, v, &s->has_xmax, &s->xmax, &s->xmax_is_int, &s->ixmax);
    } else if (strcmp(k, "multipleOf") == 0) {
        rc = compile_number(c, k, v, &s->has_mult, &s->mult, NULL, NULL);
        if (!rc && s->mult <= 0)
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "multipleOf: must be > 0");
    } else if (strcmp(k, "allOf") == 0) {
        rc = compile_list(c, root, v, &s->all_of, &s->nall);
    } else if (strcmp(k, "anyOf") == 0) {
        rc = compile_list(c, root, v, &s->any_of, &s->nany);
    } else if (strcmp(k, "oneOf") == 0) {
        rc = compile_list(c, root, v, &s->one_of, &s->none);
    } else if (strcmp(k, "not") == 0) {
        rc = compile(c, root, v, &s->not_);
    } else if (strcmp(k, "if") == 0) {
        rc = compile(c, root, v, &s->if_);
    } else if (strcmp(k, "then") == 0) {
        rc = compile(c, root, v, &s->then_);
    } else if (strcmp(k, "else") == 0) {
        rc = compile(c, root, v, &s->else_);
    } else if (strcmp(k, "$ref") == 0) {
        if (!json_is_string(v))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL, "$ref: expected a string");
        rc = resolve_ref(c, root, json_string_value(v), &s->ref);
    } else if (!is_annotation(k)) {
        return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED, "keyword %s is not supported", k);
    }
    return rc;
}

/* V when js is {"if": {"properties": {K: {"const": V}}, "required": [K]}, "then": ...} with V a
 * string (and K into *key, *klen), else NULL. Nothing else may be in either object: any other
 * keyword would make "if" mean more than "member K is V". */
static const char *disc_of(const json_t *js, const char **key, size_t *vlen)
{
    const json_t *iff = json_object_get(js, "if"), *props, *req, *k0, *cv;
    if (!json_is_object(js) || json_object_size(js) != 2 || !iff || !json_object_get(js, "then") ||
        !json_is_object(iff) || json_object_size(iff) != 2)
        return NULL;
    props = json_object_get(iff, "properties");
    req = json_object_get(iff, "required");
    if (!json_is_object(props) || json_object_size(props) != 1 || !json_is_array(req) ||
        json_array_size(req) != 1 || !json_is_string(k0 = json_array_get(req, 0)))
        return NULL;
    const json_t *m = json_object_get(props, json_string_value(k0));
    if (!json_is_object(m) || json_object_size(m) != 1 ||
        !json_is_string(cv = json_object_get(m, "const")))
        return NULL;
    *key = json_string_value(k0);
    *vlen = json_string_length(cv);
    return json_string_value(cv);
}

/* Marks the allOf entries disc_of recognises, when at least two test the same member. */
static fh_err compile_discs(fh_schema *s)
{
    const char *key = NULL, *k, *v;
    size_t n = 0, len;
    for (size_t i = 0; i < s->nall; i++)
        if ((v = disc_of(s->all_of[i]->src, &k, &len)) && (!key || strcmp(k, key) == 0)) {
            key = k;
            n++;
        }
    if (n < 2)
        return FH_OK;
    if (!(s->discs = calloc(s->nall, sizeof(*s->discs))))
        return FH_ERR_NOMEM;
    for (size_t i = 0; i < s->nall; i++)
        if ((v = disc_of(s->all_of[i]->src, &k, &len)) && strcmp(k, key) == 0) {
            s->discs[i].val = v;
            s->discs[i].len = len;
        }
    s->disc_key = key;
    s->disc_klen = strlen(key);
    return FH_OK;
}

static fh_err compile(cctx *c, const json_t *root, const json_t *js, fh_schema **out)
{
    for (fh_schema *s = c->reg->nodes; s; s = s->next)
        if (s->src == js) {
            *out = s;
            return FH_OK;
        }
    if (!json_is_object(js) && !json_is_boolean(js))
        return fh_errf(c->errbuf, c->errsize, FH_ERR_INVAL,
                       "a schema must be an object or boolean");

    fh_schema *s = calloc(1, sizeof(*s));
    if (!s)
        return FH_ERR_NOMEM;
    s->src = js;
    s->bool_val = json_is_boolean(js) ? json_is_true(js) : -1;
    s->min_items = s->min_len = s->min_props = -1;
    s->max_items = s->max_len = s->max_props = -1;
    s->next = c->reg->nodes; /* linked before children compile, so cycles find it */
    c->reg->nodes = s;
    *out = s;
    if (s->bool_val >= 0)
        return FH_OK;

    const char *id = json_string_value(json_object_get(js, "$id"));
    if (id && js != root) {
        if (!strchr(id, ':'))
            return fh_errf(c->errbuf, c->errsize, FH_ERR_UNSUPPORTED,
                           "relative $id %s is not supported", id);
        if (reg_put(c->reg, id, (json_t *)js))
            return FH_ERR_NOMEM;
        root = js;
    }

    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)js, k, v)
    {
        fh_err rc = compile_keyword(c, root, s, k, v);
        if (rc)
            return rc;
    }
    if (s->nall && compile_discs(s))
        return FH_ERR_NOMEM;
    for (size_t i = 0; i < s->nprops; i++) {
        s->props[i].req = SIZE_MAX;
        for (size_t r = 0; r < s->nreq && r < REQ_MEMO; r++)
            if (s->required[r].len == s->props[i].len &&
                memcmp(s->required[r].name, s->props[i].name, s->props[i].len) == 0) {
                s->props[i].req = r;
                break;
            }
    }
    return FH_OK;
}

fh_err fh_schema_compile(fh_schema_registry *reg, const char *uri, fh_schema **out, char *errbuf,
                         size_t errsize)
{
    cctx c = {reg, errbuf, errsize};
    if (errbuf && errsize)
        errbuf[0] = '\0';
    return resolve_ref(&c, NULL, uri, out);
}

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
