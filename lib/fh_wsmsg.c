#include "fh_wsmsg.h"

#include <stdio.h>
#include <string.h>

#include "fh_cursor.h"
#include "fh_utf8.h"

int fh_wsmsg_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > FH_WSMSG_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.' || ch == ':'))
            return 0;
    }
    return 1;
}

/* Copies at most max bytes of s into out (max + 1 bytes), cut at a character boundary, so text
 * quoted from the client stays UTF-8 (jansson gave us UTF-8). */
static void quote_cut(const char *s, size_t max, char *out)
{
    size_t n = fh_utf8_cut(s, strnlen(s, max + 1), max);
    memcpy(out, s, n);
    out[n] = '\0';
}

fh_err fh_wsmsg_parse(const char *data, size_t len, fh_wsmsg *out, char *errbuf, size_t errsize)
{
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    out->code = "bad_request";
    json_t *m = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(m)) {
        json_decref(m);
        if (m)
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "expected a JSON object");
        return fh_errf(errbuf, errsize, FH_ERR_PARSE, "not JSON: %s", jerr.text);
    }
    const char *op = json_string_value(json_object_get(m, "op"));
    const char *id = json_string_value(json_object_get(m, "id"));
    int id_ok = id && fh_wsmsg_id_valid(id);
    if (id_ok) /* only a valid id is echoed in an error: any other may be 64 KiB of anything */
        snprintf(out->id, sizeof(out->id), "%s", id);
    fh_err rc = FH_ERR_PARSE;
    if (!op) {
        fh_errf(errbuf, errsize, rc, "op: expected \"subscribe\", \"unsubscribe\" or \"ping\"");
    } else if (strcmp(op, "ping") == 0) {
        out->op = FH_WSMSG_PING;
        rc = FH_OK;
    } else if (strcmp(op, "subscribe") == 0 || strcmp(op, "unsubscribe") == 0) {
        out->op = op[0] == 's' ? FH_WSMSG_SUBSCRIBE : FH_WSMSG_UNSUBSCRIBE;
        if (id_ok)
            rc = FH_OK;
        else
            fh_errf(errbuf, errsize, rc, "id: expected 1-64 characters of A-Z a-z 0-9 _ - . :");
    } else {
        char shown[41];
        quote_cut(op, 40, shown);
        fh_errf(errbuf, errsize, rc, "op: unknown operation \"%s\"", shown);
    }
    if (rc) {
        json_decref(m);
        return rc;
    }
    out->msg = m;
    return FH_OK;
}

void fh_wsmsg_clear(fh_wsmsg *m)
{
    json_decref(m->msg);
    m->msg = NULL;
}

/* A start time: every vec entry -2 - ms (ms >= 0, so never earliest's -1 nor an offset).
 * Returns FH_OK; FH_ERR_PARSE when t is not an RFC 3339 time (errbuf untouched); FH_ERR_INVAL
 * for a time before 1970, with the message, after what, in errbuf. */
static fh_err from_time(const char *t, const char *what, int nparts, int64_t *vec,
                        fh_wsmsg_from_kind *kind, char *errbuf, size_t errsize)
{
    int64_t ms;
    if (fh_time_parse(t, &ms))
        return FH_ERR_PARSE;
    if (ms < 0)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL,
                       "%sbefore 1970-01-01T00:00:00Z, where Kafka timestamps start (\"earliest\" "
                       "is the oldest position)",
                       what);
    for (int p = 0; p < nparts; p++)
        vec[p] = -2 - ms;
    *kind = FH_FROM_TIME;
    return FH_OK;
}

/* latest and earliest, the words both forms share; FH_ERR_PARSE for any other. */
static fh_err from_word(const char *w, int nparts, int64_t *vec, fh_wsmsg_from_kind *kind)
{
    if (strcmp(w, "latest") == 0) {
        *kind = FH_FROM_LATEST;
        return FH_OK;
    }
    if (strcmp(w, "earliest") != 0)
        return FH_ERR_PARSE;
    for (int p = 0; p < nparts; p++)
        vec[p] = -1;
    *kind = FH_FROM_EARLIEST;
    return FH_OK;
}

fh_err fh_wsmsg_from(const json_t *from, int nparts, int64_t *vec, fh_wsmsg_from_kind *kind,
                     char *errbuf, size_t errsize)
{
    if (!from) {
        *kind = FH_FROM_LATEST;
        return FH_OK;
    }
    if (json_is_string(from) && from_word(json_string_value(from), nparts, vec, kind) == FH_OK)
        return FH_OK;
    const char *t = json_string_value(json_object_get(from, "time"));
    const char *c = json_string_value(json_object_get(from, "cursor"));
    if (json_is_object(from) && t && json_object_size(from) == 1) {
        fh_err rc = from_time(t, "from.time: ", nparts, vec, kind, errbuf, errsize);
        if (rc == FH_ERR_PARSE)
            fh_errf(errbuf, errsize, rc, "from.time: expected an RFC 3339 time");
        return rc;
    }
    if (json_is_object(from) && c && json_object_size(from) == 1) {
        if (fh_cursor_decode(c, nparts, vec))
            return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                           "from.cursor: not a cursor of this stream");
        *kind = FH_FROM_CURSOR;
        return FH_OK;
    }
    return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                   "from: expected \"latest\", \"earliest\", {\"time\": RFC 3339} or "
                   "{\"cursor\": C}");
}

fh_err fh_wsmsg_from_text(const char *text, int nparts, int64_t *vec, fh_wsmsg_from_kind *kind,
                          char *errbuf, size_t errsize)
{
    if (from_word(text, nparts, vec, kind) == FH_OK)
        return FH_OK;
    fh_err rc = from_time(text, "a time ", nparts, vec, kind, errbuf, errsize);
    if (rc != FH_ERR_PARSE)
        return rc;
    if (fh_cursor_decode(text, nparts, vec) == FH_OK) {
        *kind = FH_FROM_CURSOR;
        return FH_OK;
    }
    return fh_errf(errbuf, errsize, FH_ERR_PARSE,
                   "expected latest, earliest, an RFC 3339 time or a cursor");
}

fh_err fh_wsmsg_error_frame(fh_buf *out, int sse, const char *id, const char *code,
                            const char *message)
{
    size_t in = (id ? strlen(id) : 0) + strlen(code) + strlen(message);
    fh_buf_init(out, 64 + 6 * in + 6);
    int bad = sse ? fh_buf_printf(out, "event: error\ndata: {\"code\":")
                  : fh_buf_printf(out, "{\"op\":\"error\"");
    if (!sse && id)
        bad = bad || fh_buf_printf(out, ",\"id\":") || fh_buf_json_str(out, id);
    if (!sse)
        bad = bad || fh_buf_printf(out, ",\"code\":");
    bad = bad || fh_buf_json_str(out, code) || fh_buf_printf(out, ",\"message\":") ||
          fh_buf_json_str(out, message) || fh_buf_printf(out, sse ? "}\n\n" : "}");
    return bad ? FH_ERR_NOMEM : FH_OK;
}

fh_err fh_wsmsg_subscribed_frame(fh_buf *out, const char *id, const char *cursor)
{
    fh_buf_init(out, 64 + strlen(id) + (cursor ? strlen(cursor) : 0));
    int bad = fh_buf_printf(out, "{\"op\":\"subscribed\",\"id\":\"%s\"", id);
    if (cursor)
        bad = bad || fh_buf_printf(out, ",\"cursor\":\"%s\"", cursor);
    bad = bad || fh_buf_printf(out, "}");
    return bad ? FH_ERR_NOMEM : FH_OK;
}
