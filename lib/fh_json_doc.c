/* fh_json's doc: the arena every node lives in, the accessors, equality and the jansson
 * conversions (the parser is fh_json.c; the contract in fh_json.h). */
#include "fh_json_internal.h"

#include <math.h>
#include <stdlib.h>

/* ---- the arena ------------------------------------------------------------------------------ */

#define FIRST_BLOCK_BYTES ((size_t)16384)         /* malloc'd size, header included */
#define MAX_BLOCK_BYTES ((size_t)4 * 1024 * 1024) /* doubling stops here */
#define STACK_INIT ((size_t)64)                   /* scratch nodes allocated up front */
#define FROM_JANSSON_MAX_DEPTH 2048               /* jansson's own parser limit */

size_t fh_json_stack_first(const fh_json_doc *d)
{
    size_t n = d->cap / 4 / sizeof(fh_jv);
    return n >= STACK_INIT ? STACK_INIT : n ? n : 1;
}

void fh_json_doc_init(fh_json_doc *doc, size_t cap)
{
    memset(doc, 0, sizeof(*doc));
    doc->cap = cap;
}

static void keys_drop(fh_json_doc *d)
{
    free(d->keys);
    d->held -= d->keys_cap * sizeof(fh_json_keyslot);
    d->keys = NULL;
    d->keys_cap = d->keys_used = 0;
}

void fh_json_doc_reset(fh_json_doc *doc)
{
    if (!doc)
        return;
    fh_json_block *b = doc->first ? doc->first->next : NULL;
    while (b) {
        fh_json_block *next = b->next;
        doc->held -= sizeof(fh_json_block) + b->size;
        free(b);
        b = next;
    }
    if (doc->first) {
        doc->first->next = NULL;
        doc->first->used = 0;
    }
    doc->cur = doc->first;
    if (doc->stack_cap > fh_json_stack_first(doc)) { /* back to its first size */
        free(doc->stack);
        doc->held -= doc->stack_cap * sizeof(fh_jv);
        doc->stack_cap = 0;
        if ((doc->stack = malloc(fh_json_stack_first(doc) * sizeof(fh_jv)))) {
            doc->stack_cap = fh_json_stack_first(doc);
            doc->held += doc->stack_cap * sizeof(fh_jv);
        }
    }
    doc->stack_len = 0;
    keys_drop(doc);
}

void fh_json_doc_free(fh_json_doc *doc)
{
    if (!doc)
        return;
    for (fh_json_block *b = doc->first, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(doc->stack);
    free(doc->keys);
    fh_json_doc_init(doc, doc->cap);
}

size_t fh_json_doc_bytes(const fh_json_doc *doc)
{
    return doc ? doc->held : 0;
}

fh_json_block *fh_json_block_add(fh_json_doc *d, size_t n, fh_err *rc)
{
    const size_t hdr = sizeof(fh_json_block);
    size_t want;
    if (fh_json_room(d) < hdr || n > fh_json_room(d) - hdr) {
        *rc = FH_ERR_TOOBIG;
        return NULL;
    }
    if (!d->first) {
        want = FIRST_BLOCK_BYTES;
    } else {
        size_t prev = hdr + d->cur->size;
        want = prev > MAX_BLOCK_BYTES / 2 ? MAX_BLOCK_BYTES : 2 * prev;
    }
    if (want < hdr + n)
        want = hdr + n;
    if (want > fh_json_room(d))
        want = d->first ? hdr + n : fh_json_room(d);
    fh_json_block *b = malloc(want);
    if (!b) {
        *rc = FH_ERR_NOMEM;
        return NULL;
    }
    b->next = NULL;
    b->size = want - hdr;
    b->used = 0;
    d->held += want;
    if (d->cur)
        d->cur->next = b;
    else
        d->first = b;
    d->cur = b;
    return b;
}

void *fh_json_arena_alloc(fh_json_doc *d, size_t n, size_t align, fh_err *rc)
{
    void *m;
    if (d->cur && (m = fh_json_block_take(d->cur, n, align)))
        return m;
    if (!fh_json_block_add(d, n, rc))
        return NULL;
    /* a fresh block's data is max-aligned and holds at least n bytes */
    return fh_json_block_take(d->cur, n, align);
}

/* ---- accessors ------------------------------------------------------------------------------- */

const fh_jv *fh_jv_get_n(const fh_jv *obj, const char *key, size_t keylen)
{
    if (!obj || obj->type != FH_JV_OBJECT || !key)
        return NULL;
    const fh_jv *it = obj->u.items;
    for (size_t i = 0; i < obj->n; i++, it += 2)
        if (it->n == keylen && fh_json_same_bytes(it->u.s, key, keylen))
            return it + 1;
    return NULL;
}

const fh_jv *fh_jv_get(const fh_jv *obj, const char *key)
{
    return key ? fh_jv_get_n(obj, key, strlen(key)) : NULL;
}

/* An INT and a REAL are equal only when the REAL is exactly that integer. */
static int int_equals_real(int64_t i, double d)
{
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
        return 0;
    return (int64_t)d == i;
}

int fh_jv_equal(const fh_jv *a, const fh_jv *b)
{
    if (!a || !b)
        return a == b;
    if (a->type == FH_JV_INT && b->type == FH_JV_INT)
        return a->u.i == b->u.i;
    if (a->type == FH_JV_REAL && b->type == FH_JV_REAL)
        return a->u.d == b->u.d;
    if (a->type == FH_JV_INT && b->type == FH_JV_REAL)
        return int_equals_real(a->u.i, b->u.d);
    if (a->type == FH_JV_REAL && b->type == FH_JV_INT)
        return int_equals_real(b->u.i, a->u.d);
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case FH_JV_STRING:
        return fh_json_same_str(a, b);
    case FH_JV_ARRAY:
        if (a->n != b->n)
            return 0;
        for (size_t i = 0; i < a->n; i++)
            if (!fh_jv_equal(&a->u.items[i], &b->u.items[i]))
                return 0;
        return 1;
    case FH_JV_OBJECT:
        if (a->n != b->n)
            return 0;
        for (size_t i = 0; i < a->n; i++) {
            const fh_jv *k = &a->u.items[2 * i];
            const fh_jv *w = fh_jv_get_n(b, k->u.s, k->n);
            if (!w || !fh_jv_equal(&a->u.items[2 * i + 1], w))
                return 0;
        }
        return 1;
    default:
        return 1; /* null, true, false */
    }
}

/* ---- conversions ----------------------------------------------------------------------------- */

json_t *fh_jv_to_jansson(const fh_jv *v)
{
    json_t *j = NULL;
    if (!v)
        return NULL;
    switch (v->type) {
    case FH_JV_NULL:
        return json_null();
    case FH_JV_FALSE:
        return json_false();
    case FH_JV_TRUE:
        return json_true();
    case FH_JV_INT:
        return json_integer((json_int_t)v->u.i);
    case FH_JV_REAL:
        return json_real(v->u.d);
    case FH_JV_STRING:
        return json_stringn(v->u.s, v->n);
    case FH_JV_ARRAY:
        if (!(j = json_array()))
            return NULL;
        for (size_t i = 0; i < v->n; i++)
            if (json_array_append_new(j, fh_jv_to_jansson(&v->u.items[i])))
                goto fail;
        return j;
    case FH_JV_OBJECT:
        if (!(j = json_object()))
            return NULL;
        for (size_t i = 0; i < v->n; i++) {
            const fh_jv *k = &v->u.items[2 * i];
            if (json_object_setn_new(j, k->u.s, k->n, fh_jv_to_jansson(&v->u.items[2 * i + 1])))
                goto fail;
        }
        return j;
    }
fail:
    json_decref(j);
    return NULL;
}

static fh_err copy_str(fh_json_doc *d, const char *s, size_t n, fh_jv *out)
{
    fh_err rc = FH_OK;
    char *m = fh_json_arena_alloc(d, n + 1, 1, &rc);
    if (!m)
        return rc;
    memcpy(m, s, n);
    m[n] = '\0';
    out->type = FH_JV_STRING;
    out->n = n;
    out->u.s = m;
    return FH_OK;
}

static fh_err from_jansson(fh_json_doc *d, const json_t *j, fh_jv *out, int depth)
{
    fh_err rc = FH_OK;
    fh_jv *items;
    size_t n;
    out->n = 0;
    switch (json_typeof(j)) {
    case JSON_NULL:
        out->type = FH_JV_NULL;
        return FH_OK;
    case JSON_FALSE:
        out->type = FH_JV_FALSE;
        return FH_OK;
    case JSON_TRUE:
        out->type = FH_JV_TRUE;
        return FH_OK;
    case JSON_INTEGER:
        out->type = FH_JV_INT;
        out->u.i = (int64_t)json_integer_value(j);
        return FH_OK;
    case JSON_REAL:
        out->type = FH_JV_REAL;
        out->u.d = json_real_value(j);
        return FH_OK;
    case JSON_STRING:
        return copy_str(d, json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    }
    if (depth >= FROM_JANSSON_MAX_DEPTH)
        return FH_ERR_TOOBIG;
    int obj = json_is_object(j);
    n = obj ? json_object_size(j) : json_array_size(j);
    if (n > SIZE_MAX / (2 * sizeof(fh_jv)))
        return FH_ERR_TOOBIG;
    items = NULL;
    if (n &&
        !(items = fh_json_arena_alloc(d, (obj ? 2 : 1) * n * sizeof(fh_jv), _Alignof(fh_jv), &rc)))
        return rc;
    out->type = obj ? FH_JV_OBJECT : FH_JV_ARRAY;
    out->n = n;
    out->u.items = items;
    if (!obj) {
        for (size_t i = 0; i < n; i++)
            if ((rc = from_jansson(d, json_array_get(j, i), &items[i], depth + 1)))
                return rc;
        return FH_OK;
    }
    const char *key;
    size_t klen, i = 0;
    json_t *v;
    json_object_keylen_foreach((json_t *)j, key, klen, v)
    {
        if (i == n)
            break;
        if ((rc = copy_str(d, key, klen, &items[2 * i])) ||
            (rc = from_jansson(d, v, &items[2 * i + 1], depth + 1)))
            return rc;
        i++;
    }
    return FH_OK;
}

fh_err fh_jv_from_jansson(fh_json_doc *doc, const json_t *j, const fh_jv **out)
{
    fh_err rc = FH_OK;
    if (out)
        *out = NULL;
    if (!doc || !j || !out)
        return FH_ERR_INVAL;
    fh_jv *r = fh_json_arena_alloc(doc, sizeof(fh_jv), _Alignof(fh_jv), &rc);
    if (!r)
        return rc;
    if ((rc = from_jansson(doc, j, r, 0)))
        return rc;
    *out = r;
    return FH_OK;
}
