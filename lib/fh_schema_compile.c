/* fh_schema, first half: the registry of schema documents and compiling a schema into the tree
 * the validator walks (fh_schema.c is the other half). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_schema_internal.h"

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
