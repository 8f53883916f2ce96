/* fh_schema's insides, shared by its two halves: fh_schema_compile.c (the registry and compiling
 * a schema into a tree of nodes) and fh_schema.c (validating an instance against the tree).
 * Nothing outside those two files includes this. */
#ifndef FH_SCHEMA_INTERNAL_H
#define FH_SCHEMA_INTERNAL_H

#include <regex.h>
#include <stddef.h>

#include "fh_pattern.h"
#include "fh_schema.h"

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

#endif
