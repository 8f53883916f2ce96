/* fh_filter: the one filter language of the stream, SSE and webhooks.
 *
 * A filter is a JSON object. Keys are context fields (buildrequestid buildid builder builderid
 * branch revision repository project codebase owner) plus type, results, master and worker.
 * All keys must match (AND); a list value means any of its items (OR); in strings `*` matches any
 * run of characters. An event that lacks a filtered field does not match. {} matches everything. */
#ifndef FH_FILTER_H
#define FH_FILTER_H

#include <jansson.h>
#include <stdint.h>

#include "fh_error.h"
#include "fh_event.h"

typedef enum fh_filter_field {
    FH_F_TYPE = 0,
    FH_F_MASTER,
    FH_F_RESULTS,
    FH_F_BUILDREQUESTID,
    FH_F_BUILDID,
    FH_F_BUILDER,
    FH_F_BUILDERID,
    FH_F_BRANCH,
    FH_F_REVISION,
    FH_F_REPOSITORY,
    FH_F_PROJECT,
    FH_F_CODEBASE,
    FH_F_OWNER,
    FH_F_WORKER,
    FH_F__COUNT
} fh_filter_field;

typedef struct fh_filter_value {
    char *str;     /* owned; NULL for integer fields */
    long long num; /* integer fields */
    int glob;      /* str contains '*' */
} fh_filter_value;

typedef struct fh_filter_clause {
    fh_filter_field field;
    size_t nvals;
    fh_filter_value *vals; /* owned */
} fh_filter_clause;

typedef struct fh_filter {
    size_t nclauses;
    fh_filter_clause clauses[FH_F__COUNT];
} fh_filter;

/* Maximum values in one clause's list, and bytes in one string value. */
#define FH_FILTER_MAX_VALUES 64
#define FH_FILTER_MAX_STRLEN 256

const char *fh_filter_field_name(fh_filter_field f);
/* Returns the field, or -1 for an unknown name. */
int fh_filter_field_parse(const char *name);

/* Parses a filter object (NULL or {} match everything). On error errbuf names the key:
 * "filter.results: expected integers 0-6". Integer fields also accept decimal strings (query
 * parameters arrive as text). f must be released with fh_filter_free even after an error. */
fh_err fh_filter_parse(const json_t *obj, fh_filter *f, char *errbuf, size_t errsize);

/* Parses "a,b,c" style text for one field (used by SSE query parameters). */
fh_err fh_filter_add_text(fh_filter *f, const char *field, const char *text, char *errbuf,
                          size_t errsize);

/* Returns 1 when ev matches. */
int fh_filter_match(const fh_filter *f, const fh_event *ev);

/* The event types f can match, as bits (1 << fh_event_type): every type when f has no type
 * clause. A record whose type (fh_event_peek_type) is outside the mask cannot match, so it can be
 * passed over without being checked. */
uint64_t fh_filter_type_mask(const fh_filter *f);

/* 1 for the integer fields (results, buildrequestid, buildid, builderid), 0 for strings. */
int fh_filter_field_integer(fh_filter_field f);

/* Reads an event's value of field for fh_filter_match_with: sets *s (string fields; must stay
 * valid until the lookup is called again) or *n (integer fields) and returns 1, or returns 0 when
 * the event lacks the field (or has it with the wrong type). */
typedef int (*fh_filter_lookup)(void *ctx, fh_filter_field field, const char **s, long long *n);

/* fh_filter_match over any representation of an event (the consumers scan raw records instead
 * of decoding them): the same rules, fields read through lookup. Returns 1 when it matches. */
int fh_filter_match_with(const fh_filter *f, fh_filter_lookup lookup, void *ctx);

/* The values of an event that filters read, copied out of its JSON into one block so the parse
 * tree can go (the stream keeps these per event instead of a tree). Immutable once built. */
typedef struct fh_filter_facts {
    unsigned present;             /* bit f: the event has field f, with its type */
    long long num[FH_F__COUNT];   /* integer fields */
    const char *str[FH_F__COUNT]; /* string fields: inside blob, or static (type) */
    char *blob;                   /* owned */
    size_t blob_len;
} fh_filter_facts;

/* Fills *out from a validated event (fh_event_check). Returns FH_OK or FH_ERR_NOMEM (then *out
 * is empty). Release with fh_filter_facts_free. */
fh_err fh_filter_facts_from_view(const fh_event_view *ev, fh_filter_facts *out);
/* An fh_filter_lookup over fh_filter_facts (ctx is a const fh_filter_facts *). */
int fh_filter_facts_lookup(void *ctx, fh_filter_field field, const char **s, long long *n);
/* fh_filter_match for facts: the same answer fh_filter_match gives for the same event. */
int fh_filter_match_facts(const fh_filter *f, const fh_filter_facts *facts);
void fh_filter_facts_free(fh_filter_facts *facts);

/* Returns 1 when s matches the glob pattern (only `*` is special). */
int fh_glob_match(const char *pattern, const char *s);

/* A deep copy of src into dst (released with fh_filter_free). On FH_ERR_NOMEM dst is empty. */
fh_err fh_filter_copy(fh_filter *dst, const fh_filter *src);
void fh_filter_free(fh_filter *f);

#endif
