/* fh_event: the v1 event contract in C. Decodes bytes into a validated event, names its topic
 * and its partition key. Validation is driven by the schemas in schemas/ (embedded at build
 * time), so the C side and the published contract are the same thing. */
#ifndef FH_EVENT_H
#define FH_EVENT_H

#include <jansson.h>
#include <stddef.h>

#include "fh_error.h"
#include "fh_json.h"
#include "fh_util.h"

typedef enum fh_event_type {
    FH_EV_CHANGE_NEW = 0,
    FH_EV_BUILDREQUEST_NEW,
    FH_EV_BUILDREQUEST_CLAIMED,
    FH_EV_BUILDREQUEST_UNCLAIMED,
    FH_EV_BUILDREQUEST_COMPLETE,
    FH_EV_BUILD_STARTED,
    FH_EV_BUILD_UPDATED,
    FH_EV_BUILD_FINISHED,
    FH_EV_STEP_STARTED,
    FH_EV_STEP_FINISHED,
    FH_EV_LOG_NEW,
    FH_EV_LOG_FINISHED,
    FH_EV_LOG_CHUNK,
    FH_EV_PROPERTY_SET,
    FH_EV_WORKER_CONNECTED,
    FH_EV_WORKER_DISCONNECTED,
    FH_EV_MASTER_STARTED,
    FH_EV_MASTER_STOPPED,
    FH_EV_TEST_RESULT_SET,
    FH_EV_TEST_RESULTS,
    /* Derived by the broker's view from the events above (topics.derived; docs/events.md,
     * "Derived events"); never sent by a master. */
    FH_EV_BUILDER_BROKEN,
    FH_EV_BUILDER_FIXED,
    FH_EV_LKGR_ADVANCED,
    FH_EV_REQUEST_STALE,
    FH_EV_TEST_FLAKY,
    FH_EV__COUNT
} fh_event_type;

/* Largest record accepted by default (bytes); events.max_bytes overrides it. */
#define FH_EVENT_MAX_BYTES_DEFAULT (1024 * 1024)

/* "build.finished" for FH_EV_BUILD_FINISHED; NULL when out of range. */
const char *fh_event_type_name(int type);
/* Returns the fh_event_type, or -1 when name is not a v1 type. */
int fh_event_type_parse(const char *name);

/* FH_TOPIC_DERIVED holds the derived types (builder.broken ... test.flaky). */
typedef enum fh_topic_kind {
    FH_TOPIC_EVENTS = 0,
    FH_TOPIC_LOGS,
    FH_TOPIC_DLQ,
    FH_TOPIC_DERIVED
} fh_topic_kind;

/* The compiled contract. Immutable once loaded: share it between threads freely. */
typedef struct fh_contract fh_contract;

/* Compiles the embedded schemas. Caller frees with fh_contract_free. */
fh_err fh_contract_load(fh_contract **out, char *errbuf, size_t errsize);
void fh_contract_free(fh_contract *c);
/* Names and texts of the embedded schema files (for tools that print or compare them). */
size_t fh_contract_schema_count(void);
const char *fh_contract_schema_name(size_t i);
const char *fh_contract_schema_text(size_t i);

typedef struct fh_event {
    json_t *root; /* owned: the whole CloudEvent */
    json_t *data; /* borrowed from root */
    fh_event_type type;
    const char *id;     /* borrowed from root */
    const char *master; /* borrowed from root */
    long long seq;
    long long buildrequestid; /* 0 when the event is not build-scoped */
} fh_event;

/* Parses and validates one record. On success ev owns a reference to the JSON (release with
 * fh_event_clear). On failure ev is left empty, and errbuf gets "path: message" (just the message
 * when the whole record is at fault): FH_ERR_TOOBIG over max_bytes, FH_ERR_PARSE for bytes that
 * are not one JSON value, FH_ERR_SCHEMA for JSON the contract rejects. */
fh_err fh_event_decode(const fh_contract *c, const char *buf, size_t len, size_t max_bytes,
                       fh_event *ev, char *errbuf, size_t errsize);

/* Validates an already parsed value and fills ev. Takes a new reference to root on success. */
fh_err fh_event_from_json(const fh_contract *c, json_t *root, fh_event *ev, char *errbuf,
                          size_t errsize);

void fh_event_clear(fh_event *ev);

/* Which topic an event type belongs on: log.* and test.results (bulk: lines and per-test
 * results) to the logs topic, the derived types to the derived topic, everything else to
 * events. */
fh_topic_kind fh_event_type_topic(fh_event_type type);
fh_topic_kind fh_event_topic(const fh_event *ev);

/* Writes the partition key: "buildrequest/<id>" for build-scoped events, "change/<changeid>",
 * "worker/<workerid>", "master/<name>". Returns its length (truncated to size-1). */
size_t fh_event_key(const fh_event *ev, char *buf, size_t size);

/* A validated event seen in place, without a jansson tree: what a producer needs to route a
 * record. Every pointer points into the fh_json_doc given to fh_event_check and lives until that
 * doc is reset or freed. */
typedef struct fh_event_view {
    const fh_jv *root, *data;
    fh_event_type type;
    const char *id, *master;
    long long seq;
    long long buildrequestid; /* 0 when the event is not build-scoped */
} fh_event_view;

/* Doc cap that lets fh_event_check accept every record of up to max_bytes (see fh_json.h). */
#define FH_EVENT_DOC_CAP(max_bytes) (32 * (size_t)(max_bytes) + 32 * 1024)

/* fh_event_decode's judgement without jansson: resets doc, parses buf into it and validates.
 * Same errors as fh_event_decode (FH_ERR_TOOBIG, FH_ERR_PARSE "not JSON: ...", FH_ERR_SCHEMA
 * "path: message"), plus FH_ERR_TOOBIG/FH_ERR_NOMEM when doc's cap or memory runs out. On
 * failure *ev is zeroed. The doc stays the caller's; reuse it across records so a typical
 * record is checked without calling malloc. */
fh_err fh_event_check(const fh_contract *c, fh_json_doc *doc, const char *buf, size_t len,
                      size_t max_bytes, fh_event_view *ev, char *errbuf, size_t errsize);
fh_topic_kind fh_event_view_topic(const fh_event_view *ev);
/* The jansson form of an event seen in place, as fh_event_decode would give it (ev is not checked
 * again). 0, or -1 out of memory (*out empty). Release with fh_event_clear. */
int fh_event_from_view(const fh_event_view *ev, fh_event *out);
/* fh_event_str, _int, _num, _bool and _member_json for an event seen in place: the same answers
 * and the same JSON text (a member's text is jansson's compact form of it, as for fh_event). */
const char *fh_event_view_str(const fh_event_view *ev, const char *field);
int fh_event_view_int(const fh_event_view *ev, const char *field, long long *out);
int fh_event_view_num(const fh_event_view *ev, const char *field, double *out);
int fh_event_view_bool(const fh_event_view *ev, const char *field, int *out);
int fh_event_view_member_json(const fh_event_view *ev, const char *field, fh_buf *out);
/* The same key as fh_event_key. */
size_t fh_event_view_key(const fh_event_view *ev, char *buf, size_t size);

/* The type a record says it has, read from its raw bytes without parsing them (fh_jscan): the
 * value of the top-level "type" member when it is a v1 type name. -1 when it cannot tell (then
 * decode the record; it may still be valid). A record it names a
 * type for is not thereby valid: it tells what a valid record would be, so a consumer may skip a
 * record of a type nobody wants without checking it. */
int fh_event_peek_type(const char *buf, size_t len);

/* Reads a string member of data (NULL when absent or not a string). */
const char *fh_event_str(const fh_event *ev, const char *field);
/* Reads an integer member of data into *out; returns 0, or -1 when absent or not an integer.
 * An integral real within the int64 range (5.0, 5e0) counts, as JSON Schema counts it. */
int fh_event_int(const fh_event *ev, const char *field, long long *out);
/* Reads a number member of data (integer or real) into *out; returns 0, or -1. */
int fh_event_num(const fh_event *ev, const char *field, double *out);
/* Reads a boolean member of data into *out (0/1); returns 0, or -1. */
int fh_event_bool(const fh_event *ev, const char *field, int *out);
/* Appends a member of data as compact JSON text to out ("null" when absent). Returns 0, or -1
 * at out's cap. */
int fh_event_member_json(const fh_event *ev, const char *field, fh_buf *out);
/* Appends the whole event as compact JSON text to out. Returns 0, or -1 at out's cap. */
int fh_event_to_json(const fh_event *ev, fh_buf *out);

#endif
