/* fh_wsmsg: the client side of the stream's WebSocket protocol firehose (docs/stream.md):
 * parsing {"op":"subscribe","id":…,"filter":…,"from":…}, {"op":"unsubscribe","id":…} and
 * {"op":"ping"}; the start position "from" (also the SSE from= and Last-Event-ID text); and the
 * text of the error and subscribed frames. Pure functions of their input, so they are unit tested
 * and fuzzed (tests/fuzz/fuzz_wsmsg.c) without a connection; broker/stream.c applies the results
 * to its subscriptions. */
#ifndef FH_WSMSG_H
#define FH_WSMSG_H

#include <jansson.h>
#include <stdint.h>

#include "fh_error.h"
#include "fh_util.h"

/* A subscription id: 1 to FH_WSMSG_ID_MAX characters of A-Z a-z 0-9 _ - . : */
#define FH_WSMSG_ID_MAX 64

typedef enum fh_wsmsg_op {
    FH_WSMSG_PING = 0,
    FH_WSMSG_SUBSCRIBE,
    FH_WSMSG_UNSUBSCRIBE,
} fh_wsmsg_op;

typedef struct fh_wsmsg {
    fh_wsmsg_op op;
    /* subscribe, unsubscribe: the id. After a refusal: the request's id when it was a valid one
     * (an error echoes only such an id), else "". */
    char id[FH_WSMSG_ID_MAX + 1];
    json_t *msg;      /* the message object, owned (NULL after a refusal): "filter" and "from" */
    const char *code; /* after a refusal: the error code, "bad_request" (static text) */
} fh_wsmsg;

/* 1 when id is a valid subscription id. */
int fh_wsmsg_id_valid(const char *id);

/* Parses one client text message (len bytes, not NUL-terminated). Returns FH_OK with out->op and,
 * for subscribe and unsubscribe, a valid out->id; or FH_ERR_PARSE (not JSON, not an object, a
 * missing or unknown op, a missing or invalid id) with out->code and the message in errbuf
 * ("op: unknown operation \"dance\""). The filter and from are not looked at here: the caller
 * checks what depends on the connection (a duplicate id, too many subscriptions) first, then
 * parses them (fh_filter_parse, fh_wsmsg_from). Release out with fh_wsmsg_clear after either. */
fh_err fh_wsmsg_parse(const char *data, size_t len, fh_wsmsg *out, char *errbuf, size_t errsize);
void fh_wsmsg_clear(fh_wsmsg *m);

/* Where a subscription starts. */
typedef enum fh_wsmsg_from_kind {
    FH_FROM_LATEST = 0, /* vec untouched */
    FH_FROM_EARLIEST,   /* every vec entry -1 */
    FH_FROM_TIME,       /* every vec entry -2 - ms, with ms >= 0 (so <= -2) */
    FH_FROM_CURSOR,     /* vec holds the cursor's offsets (>= 0) */
} fh_wsmsg_from_kind;

/* Parses "from": NULL or "latest" | "earliest" | {"time": RFC 3339} | {"cursor": C}, for a stream
 * of nparts partitions (vec holds nparts entries). Earliest and times are resolved to offsets
 * later, against Kafka. Returns FH_OK and *kind; FH_ERR_PARSE when from is none of those, or
 * FH_ERR_INVAL for a time before 1970-01-01T00:00:00Z (Kafka timestamps start there; "earliest"
 * is the position wanted then), with a message naming the member ("from.time: ...") in errbuf. */
fh_err fh_wsmsg_from(const json_t *from, int nparts, int64_t *vec, fh_wsmsg_from_kind *kind,
                     char *errbuf, size_t errsize);

/* The same for the SSE text form (from=, Last-Event-ID): "latest", "earliest", an RFC 3339 time
 * or a cursor; the same codes. The message in errbuf does not name the parameter. */
fh_err fh_wsmsg_from_text(const char *text, int nparts, int64_t *vec, fh_wsmsg_from_kind *kind,
                          char *errbuf, size_t errsize);

/* Builds an error frame's text into out (initialised here; the caller frees it with fh_buf_free,
 * also after an error). WebSocket (sse 0): {"op":"error"[,"id":ID],"code":CODE,"message":MSG};
 * SSE (sse 1): "event: error\ndata: {"code":CODE,"message":MSG}\n\n" (no id). id may be NULL.
 * The text is always JSON (and UTF-8) whatever the strings hold and however long they are: the
 * buffer is sized from them, and bytes that are not UTF-8 become U+FFFD. Returns FH_OK or
 * FH_ERR_NOMEM. */
fh_err fh_wsmsg_error_frame(fh_buf *out, int sse, const char *id, const char *code,
                            const char *message);

/* Builds {"op":"subscribed","id":ID[,"cursor":C]} into out (initialised here; caller frees).
 * id is a valid subscription id; cursor may be NULL (a start resolved later). Returns FH_OK or
 * FH_ERR_NOMEM. */
fh_err fh_wsmsg_subscribed_frame(fh_buf *out, const char *id, const char *cursor);

#endif
