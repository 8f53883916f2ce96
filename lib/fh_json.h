/* fh_json: a strict RFC 8259 JSON parser into an immutable DOM held in an arena.
 *
 * Built for the ingest hot path: one fh_json_doc per thread, reset between records, so a typical
 * event is parsed without calling malloc. Every value is an fh_jv node; containers keep their
 * children in one contiguous array (objects as key, value, key, value... in source order);
 * strings are NUL-terminated copies with escapes decoded.
 *
 * Ownership: every pointer this module returns (nodes, strings, keys) points into the fh_json_doc
 * it was parsed or converted into, and lives until fh_json_doc_reset or fh_json_doc_free on that
 * doc. Nothing returned is ever freed on its own. A doc is not thread-safe; the nodes are
 * immutable, so once parsed they may be read from any thread while the doc is left alone.
 *
 * The parser is fh_json.c; the arena, accessors, equality and conversions are fh_json_doc.c. */
#ifndef FH_JSON_H
#define FH_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fh_error.h"

/* Nesting deeper than this (arrays + objects) is refused. */
#define FH_JSON_MAX_DEPTH 64

/* fh_json_parse flags. */
#define FH_JSON_ALLOW_NUL 0x1u        /* accept \u0000 inside strings */
#define FH_JSON_ALLOW_DUPLICATES 0x2u /* keep repeated object keys (fh_jv_get finds the first) */

typedef enum fh_jv_kind {
    FH_JV_NULL = 0,
    FH_JV_FALSE,
    FH_JV_TRUE,
    FH_JV_INT,    /* a number without fraction or exponent that fits int64_t */
    FH_JV_REAL,   /* any other number (always finite) */
    FH_JV_STRING, /* valid UTF-8; may contain NUL only when parsed with FH_JSON_ALLOW_NUL */
    FH_JV_ARRAY,
    FH_JV_OBJECT,
} fh_jv_kind;

typedef struct fh_jv fh_jv;

/* One value. The layout is public so the accessors below can be inlined; treat it as read-only
 * and prefer the accessors. */
struct fh_jv {
    unsigned type; /* fh_jv_kind */
    size_t n;      /* STRING: bytes (without the NUL); ARRAY: items; OBJECT: members */
    union {
        int64_t i;          /* INT */
        double d;           /* REAL */
        const char *s;      /* STRING: n bytes followed by a NUL */
        const fh_jv *items; /* ARRAY: n nodes; OBJECT: 2n nodes, key (a STRING) then value */
    } u;
};

/* The arena a parse writes into. Fields are private; the struct is public only so it can live on
 * the stack or inside another struct. */
typedef struct fh_json_block fh_json_block;
typedef struct fh_json_keyslot fh_json_keyslot;
typedef struct fh_json_doc {
    fh_json_block *first, *cur;
    size_t cap;   /* hard cap on every byte the doc holds */
    size_t held;  /* bytes held now: blocks + scratch stack + key table */
    fh_jv *stack; /* parser scratch: children of the containers being parsed */
    size_t stack_len, stack_cap;
    fh_json_keyslot *keys; /* duplicate-key table for large objects */
    size_t keys_cap, keys_used;
    uint64_t key_serial;
} fh_json_doc;

/* Prepares an empty doc that will never hold more than cap bytes (arena blocks, plus the parser's
 * scratch stack and duplicate-key table, all counted). Allocates nothing; cannot fail.
 * Sizing: a typical 600-byte event holds 16 KiB + 1.5 KiB (the first block and the scratch
 * stack); the worst case measured, a flat array of one-digit numbers, needs about 25 * N bytes
 * for N bytes of input, so a cap of 32 * N + 32 KiB accepts every document of up to N bytes. */
void fh_json_doc_init(fh_json_doc *doc, size_t cap);

/* Forgets every value parsed into doc (their pointers become invalid), frees every block but the
 * first, and drops scratch memory that grew past its initial size, so the next parse of a small
 * document allocates nothing and a reused doc behaves exactly like a fresh one. */
void fh_json_doc_reset(fh_json_doc *doc);

/* Frees everything doc holds; doc may be initialised again afterwards. NULL is a no-op. */
void fh_json_doc_free(fh_json_doc *doc);

/* Bytes the doc holds right now (counted against its cap). */
size_t fh_json_doc_bytes(const fh_json_doc *doc);

/* Parses exactly one JSON value (surrounding whitespace allowed) from buf[0..len), which need not
 * be NUL-terminated and is never read past len. Strict RFC 8259: valid UTF-8 only (no overlongs,
 * no encoded surrogates, nothing past U+10FFFF), no control characters in strings, \uXXXX
 * surrogates must pair, no \u0000 unless FH_JSON_ALLOW_NUL, no duplicate keys unless
 * FH_JSON_ALLOW_DUPLICATES, nesting at most FH_JSON_MAX_DEPTH, numbers per the grammar (no leading
 * zeros, no '+', no NaN/Infinity). Integers that do not fit int64_t become REAL; a number whose
 * magnitude overflows a double is refused; one that underflows becomes 0 or a subnormal.
 *
 * Values parsed earlier into the same doc stay valid. On success *root points into doc (valid
 * until reset/free). On failure *root is NULL, the space used by the failed parse is not
 * reclaimed until reset, and errbuf (may be NULL) says what and where, the column being the
 * byte offset + 1: FH_ERR_PARSE ("unexpected character 'x' at column 12", "invalid UTF-8 at
 * column 40", "duplicate key \"id\" at column 30", "nesting deeper than 64 at column 200"),
 * FH_ERR_TOOBIG ("document over the 1048576-byte cap"), FH_ERR_NOMEM, FH_ERR_INVAL (NULL
 * arguments). */
fh_err fh_json_parse(fh_json_doc *doc, const char *buf, size_t len, unsigned flags,
                     const fh_jv **root, char *errbuf, size_t errsize);

/* Reads the escape at p (a backslash) inside a JSON string whose closing quote is at end: one of
 * \" \\ \/ \b \f \n \r \t, a \uXXXX, or a \uXXXX\uXXXX surrogate pair. Returns the bytes it spans
 * (2, 6 or 12) and sets *cp to the code point it stands for (\u0000 gives 0: refusing it is the
 * caller's choice); FH_JSON_ESC_BAD for an unknown escape, FH_JSON_ESC_BAD_U for a \u without
 * four hex digits, FH_JSON_ESC_LONE_SURROGATE (*cp the unpaired unit) for a surrogate that is not
 * half of a pair. The parser and fh_jscan share it. */
#define FH_JSON_ESC_BAD (-1)
#define FH_JSON_ESC_BAD_U (-2)
#define FH_JSON_ESC_LONE_SURROGATE (-3)
int fh_json_escape(const char *p, const char *end, unsigned *cp);

/* ---- accessors: none allocates; every pointer returned lives until reset/free of the doc ---- */

static inline fh_jv_kind fh_jv_type(const fh_jv *v)
{
    return (fh_jv_kind)v->type;
}

/* The string's bytes (NUL-terminated) and, when len is not NULL, their count; NULL when v is not
 * a string. A string holding \u0000 (FH_JSON_ALLOW_NUL) is cut short for C string functions. */
static inline const char *fh_jv_str(const fh_jv *v, size_t *len)
{
    if (!v || v->type != FH_JV_STRING)
        return NULL;
    if (len)
        *len = v->n;
    return v->u.s;
}

/* Returns 0 and sets *out when v is an INT; -1 otherwise (a REAL such as 1.0 included). */
static inline int fh_jv_int(const fh_jv *v, int64_t *out)
{
    if (!v || v->type != FH_JV_INT)
        return -1;
    *out = v->u.i;
    return 0;
}

/* JSON Schema's integer (any number with a zero fractional part, so 1.0 and 1e3 too) as int64:
 * returns 0 and sets *out when v is an INT, or a REAL with an integral value within the int64
 * range; -1 otherwise. The contract bounds every integer it defines to int64, so a valid event's
 * integers always read here. */
static inline int fh_jv_integer(const fh_jv *v, int64_t *out)
{
    /* Range first: converting a double outside int64 is undefined. */
    if (v && v->type == FH_JV_REAL && v->u.d >= -9223372036854775808.0 &&
        v->u.d < 9223372036854775808.0 && v->u.d == (double)(int64_t)v->u.d) {
        *out = (int64_t)v->u.d;
        return 0;
    }
    return fh_jv_int(v, out);
}

/* The value of an INT or REAL as a double; 0.0 for anything else. */
static inline double fh_jv_number(const fh_jv *v)
{
    if (!v)
        return 0.0;
    if (v->type == FH_JV_INT)
        return (double)v->u.i;
    return v->type == FH_JV_REAL ? v->u.d : 0.0;
}

/* Items of an array; 0 when v is not an array. */
static inline size_t fh_jv_array_size(const fh_jv *v)
{
    return v && v->type == FH_JV_ARRAY ? v->n : 0;
}

/* Item i of an array; NULL when v is not an array or i is out of range. */
static inline const fh_jv *fh_jv_array_get(const fh_jv *v, size_t i)
{
    return v && v->type == FH_JV_ARRAY && i < v->n ? &v->u.items[i] : NULL;
}

/* Members of an object; 0 when v is not an object. */
static inline size_t fh_jv_object_size(const fh_jv *v)
{
    return v && v->type == FH_JV_OBJECT ? v->n : 0;
}

/* Key of member i in source order (NUL-terminated; *len gets its bytes when len is not NULL);
 * NULL when v is not an object or i is out of range. */
static inline const char *fh_jv_object_key(const fh_jv *v, size_t i, size_t *len)
{
    if (!v || v->type != FH_JV_OBJECT || i >= v->n)
        return NULL;
    return fh_jv_str(&v->u.items[2 * i], len);
}

/* Value of member i in source order; NULL when v is not an object or i is out of range. */
static inline const fh_jv *fh_jv_object_value(const fh_jv *v, size_t i)
{
    return v && v->type == FH_JV_OBJECT && i < v->n ? &v->u.items[2 * i + 1] : NULL;
}

/* The value of member key (first match), or NULL when obj is not an object or has no such key.
 * A linear scan: objects are expected to be small. */
const fh_jv *fh_jv_get(const fh_jv *obj, const char *key);
const fh_jv *fh_jv_get_n(const fh_jv *obj, const char *key, size_t keylen);

/* JSON Schema equality: numbers compare by exact value whatever their kind (1 == 1.0), strings by
 * bytes, arrays item by item, objects by members regardless of order. 1 when equal, else 0. */
int fh_jv_equal(const fh_jv *a, const fh_jv *b);

/* ---- conversions for code that still speaks jansson ----------------------------------------- */

/* Returns a new jansson value (caller owns the reference) equal to v, or NULL when out of memory.
 * Duplicate keys (FH_JSON_ALLOW_DUPLICATES) collapse to the last one, as jansson does. */
json_t *fh_jv_to_jansson(const fh_jv *v);

/* Copies j into doc; *out points into doc (valid until reset/free). j is only read: the caller
 * keeps its reference. Object members keep jansson's iteration (insertion) order. Returns
 * FH_ERR_TOOBIG past the doc's cap or past 2048 levels of nesting, FH_ERR_NOMEM, FH_ERR_INVAL for
 * a NULL argument; *out is NULL on failure. */
fh_err fh_jv_from_jansson(fh_json_doc *doc, const json_t *j, const fh_jv **out);

#endif
