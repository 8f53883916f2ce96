/* The stream's client messages, start positions, cursors and error frames (lib/fh_wsmsg,
 * lib/fh_cursor), moved out of broker/stream.c: what the broker did, plus the three bugs fixed on
 * the way (an echoed id that broke the error frame's JSON, a time before 1970 read as a Kafka
 * offset, cursors too long for their buffers past about 100 partitions). */
#include "fh_cursor.h"
#include "fh_test.h"
#include "fh_wsmsg.h"

#include <stdlib.h>
#include <string.h>

/* Parses frame text as JSON; caller decrefs. */
static json_t *frame_json(const fh_buf *b)
{
    json_error_t jerr;
    return b->data ? json_loadb(b->data, b->len, 0, &jerr) : NULL;
}

static fh_err parse(const char *text, fh_wsmsg *m, char *err, size_t errsize)
{
    return fh_wsmsg_parse(text, strlen(text), m, err, errsize);
}

TEST(cursor_encode_decode_round_trip)
{
    int64_t vec[4] = {0, 35, 36, INT64_MAX}, back[4] = {0};
    char buf[FH_CURSOR_SIZE(4)];
    size_t n = fh_cursor_encode(vec, 4, buf, sizeof(buf));
    CHECK_STR(buf, "4.0.z.10.1y2p0ij32e8e7");
    CHECK(n == strlen(buf));
    CHECK(fh_cursor_decode(buf, 4, back) == FH_OK);
    CHECK(memcmp(vec, back, sizeof(vec)) == 0);
    /* negative entries (unresolved positions) are written as 0 */
    int64_t neg[2] = {-1, -7};
    CHECK(fh_cursor_encode(neg, 2, buf, sizeof(buf)) == 5);
    CHECK_STR(buf, "2.0.0");
}

TEST(cursor_encode_writes_a_count_of_several_digits_and_refuses_a_short_buffer)
{
    int64_t vec[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1295};
    char buf[FH_CURSOR_SIZE(12)];
    const char *want = "12.0.1.2.3.4.5.6.7.8.9.a.zz";
    size_t len = strlen(want);
    CHECK(fh_cursor_encode(vec, 12, buf, sizeof(buf)) == len);
    CHECK_STR(buf, want);
    CHECK(fh_cursor_encode(vec, 12, buf, len + 1) == len); /* exactly room for the NUL */
    CHECK_STR(buf, want);
    CHECK(fh_cursor_encode(vec, 12, buf, len) == 0 && buf[0] == '\0');
    CHECK(fh_cursor_encode(vec, 12, buf, 2) == 0 && buf[0] == '\0'); /* not even the count */
    CHECK(fh_cursor_encode(vec, 0, buf, sizeof(buf)) == 1);
    CHECK_STR(buf, "0");
}

TEST(cursor_decode_refuses_what_is_not_a_cursor_of_this_stream)
{
    int64_t v[3];
    CHECK(fh_cursor_decode("3.1.2.3", 3, v) == FH_OK && v[0] == 1 && v[2] == 3);
    CHECK(fh_cursor_decode("3.1.2.3", 2, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("3.1.2", 3, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("3.1.2.3.", 3, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("3.1..3", 3, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("3.1.2.3x!", 3, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("", 3, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("garbage", 3, v) == FH_ERR_PARSE);
    /* past INT64_MAX, and a negative offset */
    CHECK(fh_cursor_decode("1.1y2p0ij32e8e8", 1, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode("1.-1", 1, v) == FH_ERR_PARSE);
}

/* CURSOR_MAX was 1400 bytes: past about 100 partitions with large offsets the cursor did not fit,
 * events carried an empty one and "subscribed" printed an unterminated buffer. */
TEST(cursor_of_1024_partitions_per_topic_fits_its_size)
{
    int n = 2 * 1024;
    int64_t *vec = malloc((size_t)n * sizeof(*vec)), *back = calloc((size_t)n, sizeof(*back));
    char *buf = malloc(FH_CURSOR_SIZE(FH_CURSOR_MAX_PARTS));
    CHECK(vec && back && buf);
    if (!vec || !back || !buf)
        goto done;
    for (int i = 0; i < n; i++)
        vec[i] = INT64_MAX - i;
    size_t len = fh_cursor_encode(vec, n, buf, FH_CURSOR_SIZE(n));
    CHECK(len > 14 * (size_t)(n - 1) && len < FH_CURSOR_SIZE(n));
    CHECK(fh_cursor_decode(buf, n, back) == FH_OK);
    CHECK(memcmp(vec, back, (size_t)n * sizeof(*vec)) == 0);
    /* one byte short of what it needs: refused, and the text is "" rather than unterminated */
    memset(buf, 'x', len + 1);
    CHECK(fh_cursor_encode(vec, n, buf, len) == 0 && buf[0] == '\0');
    CHECK(fh_cursor_encode(vec, n, buf, len + 1) == len);
    /* the cap itself */
    free(vec);
    vec = malloc(FH_CURSOR_MAX_PARTS * sizeof(*vec));
    CHECK(vec != NULL);
    if (!vec)
        goto done;
    for (int i = 0; i < FH_CURSOR_MAX_PARTS; i++)
        vec[i] = INT64_MAX;
    len = fh_cursor_encode(vec, FH_CURSOR_MAX_PARTS, buf, FH_CURSOR_SIZE(FH_CURSOR_MAX_PARTS));
    CHECK(len == 4 + 14 * (size_t)FH_CURSOR_MAX_PARTS);
done:
    free(vec);
    free(back);
    free(buf);
}

TEST(wsmsg_parse_ops_and_ids)
{
    char err[320];
    fh_wsmsg m;
    CHECK(parse("{\"op\":\"ping\"}", &m, err, sizeof(err)) == FH_OK && m.op == FH_WSMSG_PING);
    fh_wsmsg_clear(&m);
    CHECK(parse("{\"op\":\"subscribe\",\"id\":\"s1:a-b_c.d\",\"filter\":{\"branch\":\"try\"}}", &m,
                err, sizeof(err)) == FH_OK);
    CHECK(m.op == FH_WSMSG_SUBSCRIBE);
    CHECK_STR(m.id, "s1:a-b_c.d");
    CHECK(json_is_object(json_object_get(m.msg, "filter")));
    fh_wsmsg_clear(&m);
    CHECK(m.msg == NULL);
    CHECK(parse("{\"op\":\"unsubscribe\",\"id\":\"s1\"}", &m, err, sizeof(err)) == FH_OK);
    CHECK(m.op == FH_WSMSG_UNSUBSCRIBE);
    CHECK_STR(m.id, "s1");
    fh_wsmsg_clear(&m);
}

TEST(wsmsg_parse_refusals_say_what_is_wrong)
{
    char err[320];
    fh_wsmsg m;
    CHECK(parse("this is not JSON", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(strncmp(err, "not JSON: ", 10) == 0);
    CHECK_STR(m.code, "bad_request");
    CHECK(m.id[0] == '\0' && m.msg == NULL);
    CHECK(parse("[1, 2]", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK_STR(err, "expected a JSON object");
    CHECK(parse("{\"op\": \"subscribe\", \"op\": \"ping\"}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(strncmp(err, "not JSON: ", 10) == 0);
    /* no op: a valid id is echoed */
    CHECK(parse("{\"id\":\"x2\"}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(strncmp(err, "op: ", 4) == 0);
    CHECK_STR(m.id, "x2");
    CHECK(parse("{\"op\":\"dance\",\"id\":\"x1\"}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK_STR(err, "op: unknown operation \"dance\"");
    CHECK_STR(m.id, "x1");
    /* an invalid id is never echoed */
    CHECK(parse("{\"op\":\"subscribe\",\"id\":\"bad id!\"}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(strncmp(err, "id: ", 4) == 0 && m.id[0] == '\0');
    CHECK(parse("{\"op\":\"dance\",\"id\":\"bad id!\"}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(m.id[0] == '\0');
    CHECK(parse("{\"op\":\"unsubscribe\",\"id\":7}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(parse("{\"op\":\"subscribe\"}", &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(m.id[0] == '\0');
    char id65[80];
    memset(id65, 'x', 65);
    id65[65] = '\0';
    CHECK(!fh_wsmsg_id_valid(id65) && fh_wsmsg_id_valid(id65 + 1) && !fh_wsmsg_id_valid(""));
}

/* An id of about 4,000 bytes or more overflowed send_error's 4096-byte buffer inside
 * fh_buf_json_str, and the frame went out as {"op":"error","id":,"code":...}. Now only a valid id
 * is echoed, and the frame is sized from what it holds. */
TEST(wsmsg_error_frame_is_json_whatever_the_id)
{
    size_t n = 60000;
    char *msg = malloc(n + 64), *id = malloc(5001), err[320];
    CHECK(msg && id);
    if (!msg || !id)
        goto done;
    memset(id, 'a', 5000);
    id[5000] = '\0';
    int w = snprintf(msg, n + 64, "{\"op\":\"dance\",\"id\":\"%s\"}", id);
    fh_wsmsg m;
    CHECK(fh_wsmsg_parse(msg, (size_t)w, &m, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(m.id[0] == '\0');
    fh_buf b;
    CHECK(fh_wsmsg_error_frame(&b, 0, m.id[0] ? m.id : NULL, m.code, err) == FH_OK);
    json_t *j = frame_json(&b);
    CHECK(j && !json_object_get(j, "id"));
    CHECK_STR(json_string_value(json_object_get(j, "code")), "bad_request");
    CHECK_STR(json_string_value(json_object_get(j, "message")), "op: unknown operation \"dance\"");
    json_decref(j);
    fh_buf_free(&b);
    /* the builder itself: a long id (escapes six times over) and a long message come out whole */
    memset(id, 1, 5000);
    memset(msg, '"', n);
    msg[n] = '\0';
    CHECK(fh_wsmsg_error_frame(&b, 0, id, "cursor_expired", msg) == FH_OK);
    j = frame_json(&b);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "op")), "error");
    CHECK_STR(json_string_value(json_object_get(j, "id")), id);
    CHECK_STR(json_string_value(json_object_get(j, "message")), msg);
    json_decref(j);
    fh_buf_free(&b);
done:
    free(msg);
    free(id);
}

TEST(wsmsg_error_frame_sse_form_and_utf8)
{
    fh_buf b;
    CHECK(fh_wsmsg_error_frame(&b, 1, "ignored", "unavailable", "it \"timed\" out\n") == FH_OK);
    CHECK_STR(b.data,
              "event: error\ndata: {\"code\":\"unavailable\",\"message\":\"it \\\"timed\\\" "
              "out\\u000a\"}\n\n");
    fh_buf_free(&b);
    /* bytes that are not UTF-8 become U+FFFD; UTF-8 passes as it is */
    CHECK(fh_wsmsg_error_frame(&b, 0, NULL, "bad_request", "a\xe9z \xc3\xa9 \xed\xa0\x80") ==
          FH_OK);
    CHECK_STR(b.data, "{\"op\":\"error\",\"code\":\"bad_request\",\"message\":\"a\\ufffdz \xc3\xa9 "
                      "\\ufffd\\ufffd\\ufffd\"}");
    json_t *j = frame_json(&b);
    CHECK(j != NULL);
    json_decref(j);
    fh_buf_free(&b);
}

/* "op: unknown operation \"%.40s\"" cut a multi-byte character in two: the error frame was not
 * UTF-8 (a WebSocket client closes with 1007 on such a text frame). */
TEST(wsmsg_unknown_op_is_quoted_at_a_character_boundary)
{
    char text[128], err[320], op[64];
    memset(op, 'a', 39);
    memcpy(op + 39, "\xc3\xa9\xc3\xa9", 5);
    snprintf(text, sizeof(text), "{\"op\":\"%s\"}", op);
    fh_wsmsg m;
    CHECK(parse(text, &m, err, sizeof(err)) == FH_ERR_PARSE);
    op[39] = '\0';
    char want[128];
    snprintf(want, sizeof(want), "op: unknown operation \"%s\"", op);
    CHECK_STR(err, want);
}

static fh_err from_json(const char *text, int64_t *vec, fh_wsmsg_from_kind *kind, char *err)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    fh_err rc = fh_wsmsg_from(j, 3, vec, kind, err, 256);
    json_decref(j);
    return rc;
}

TEST(wsmsg_from_positions)
{
    int64_t v[3] = {7, 7, 7};
    char err[256];
    fh_wsmsg_from_kind k;
    CHECK(fh_wsmsg_from(NULL, 3, v, &k, err, sizeof(err)) == FH_OK && k == FH_FROM_LATEST);
    CHECK(from_json("\"latest\"", v, &k, err) == FH_OK && k == FH_FROM_LATEST && v[0] == 7);
    CHECK(from_json("\"earliest\"", v, &k, err) == FH_OK && k == FH_FROM_EARLIEST);
    CHECK(v[0] == -1 && v[1] == -1 && v[2] == -1);
    CHECK(from_json("{\"time\":\"2026-11-22T05:00:00Z\"}", v, &k, err) == FH_OK);
    CHECK(k == FH_FROM_TIME && v[0] == -2 - 1795323600000LL && v[2] == v[0]);
    CHECK(from_json("{\"cursor\":\"3.a.b.c\"}", v, &k, err) == FH_OK && k == FH_FROM_CURSOR);
    CHECK(v[0] == 10 && v[1] == 11 && v[2] == 12);
    CHECK(from_json("\"yesterday\"", v, &k, err) == FH_ERR_PARSE && strncmp(err, "from:", 5) == 0);
    CHECK(from_json("7", v, &k, err) == FH_ERR_PARSE && strncmp(err, "from:", 5) == 0);
    CHECK(from_json("null", v, &k, err) == FH_ERR_PARSE && strncmp(err, "from:", 5) == 0);
    CHECK(from_json("{\"time\":\"2026-11-22T05:00:00Z\",\"cursor\":\"3.0.0.0\"}", v, &k, err) ==
              FH_ERR_PARSE &&
          strncmp(err, "from:", 5) == 0);
    CHECK(from_json("{\"cursor\":\"garbage\"}", v, &k, err) == FH_ERR_PARSE);
    CHECK_STR(err, "from.cursor: not a cursor of this stream");
    CHECK(from_json("{\"cursor\":\"6.0.0.0.0.0.0\"}", v, &k, err) == FH_ERR_PARSE);
    CHECK(from_json("{\"time\":\"last tuesday\"}", v, &k, err) == FH_ERR_PARSE);
    CHECK_STR(err, "from.time: expected an RFC 3339 time");
}

/* parse_from stored a time as -2 - ms: before 1970 (ms <= -2) that is a non-negative value, read
 * as a Kafka offset ("1969-12-31T23:59:59.990Z" started at offset 8), and ms == -1 as earliest. */
TEST(wsmsg_from_time_before_1970_is_refused)
{
    int64_t v[3] = {5, 5, 5};
    char err[256];
    fh_wsmsg_from_kind k = FH_FROM_LATEST;
    CHECK(from_json("{\"time\":\"1969-12-31T23:59:59.990Z\"}", v, &k, err) == FH_ERR_INVAL);
    CHECK(strncmp(err, "from.time: before 1970-01-01T00:00:00Z", 38) == 0);
    CHECK(from_json("{\"time\":\"1969-12-31T23:59:59.999Z\"}", v, &k, err) == FH_ERR_INVAL);
    CHECK(from_json("{\"time\":\"1970-01-01T00:30:00+01:00\"}", v, &k, err) == FH_ERR_INVAL);
    CHECK(from_json("{\"time\":\"0000-01-01T00:00:00Z\"}", v, &k, err) == FH_ERR_INVAL);
    CHECK(v[0] == 5 && k == FH_FROM_LATEST);
    CHECK(from_json("{\"time\":\"1970-01-01T00:00:00Z\"}", v, &k, err) == FH_OK);
    CHECK(k == FH_FROM_TIME && v[0] == -2);
    CHECK(from_json("{\"time\":\"1970-01-01T00:00:00.001Z\"}", v, &k, err) == FH_OK && v[1] == -3);
    CHECK(fh_wsmsg_from_text("1969-12-31T23:59:59.990Z", 3, v, &k, err, sizeof(err)) ==
          FH_ERR_INVAL);
    CHECK(strncmp(err, "a time before 1970", 18) == 0);
}

TEST(wsmsg_from_text_sse_forms)
{
    int64_t v[2] = {0, 0};
    char err[256];
    fh_wsmsg_from_kind k;
    CHECK(fh_wsmsg_from_text("latest", 2, v, &k, err, sizeof(err)) == FH_OK && k == FH_FROM_LATEST);
    CHECK(fh_wsmsg_from_text("earliest", 2, v, &k, err, sizeof(err)) == FH_OK);
    CHECK(k == FH_FROM_EARLIEST && v[1] == -1);
    CHECK(fh_wsmsg_from_text("2026-11-22T05:00:00.5+02:00", 2, v, &k, err, sizeof(err)) == FH_OK);
    CHECK(k == FH_FROM_TIME && v[0] == -2 - (1795323600000LL - 7200000 + 500));
    CHECK(fh_wsmsg_from_text("2.1.z", 2, v, &k, err, sizeof(err)) == FH_OK);
    CHECK(k == FH_FROM_CURSOR && v[0] == 1 && v[1] == 35);
    CHECK(fh_wsmsg_from_text("3.1.z.0", 2, v, &k, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK_STR(err, "expected latest, earliest, an RFC 3339 time or a cursor");
    CHECK(fh_wsmsg_from_text("", 2, v, &k, err, sizeof(err)) == FH_ERR_PARSE);
}

TEST(wsmsg_subscribed_frame_with_a_long_cursor)
{
    int n = 2 * 1024;
    int64_t *vec = calloc((size_t)n, sizeof(*vec));
    char *cur = malloc(FH_CURSOR_SIZE(n));
    CHECK(vec && cur);
    if (!vec || !cur)
        goto done;
    for (int i = 0; i < n; i++)
        vec[i] = 1000000000000LL + i;
    CHECK(fh_cursor_encode(vec, n, cur, FH_CURSOR_SIZE(n)) > 2048);
    fh_buf b;
    CHECK(fh_wsmsg_subscribed_frame(&b, "s1", cur) == FH_OK);
    json_t *j = frame_json(&b);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "cursor")), cur);
    json_decref(j);
    fh_buf_free(&b);
    CHECK(fh_wsmsg_subscribed_frame(&b, "s1", NULL) == FH_OK);
    CHECK_STR(b.data, "{\"op\":\"subscribed\",\"id\":\"s1\"}");
    fh_buf_free(&b);
done:
    free(vec);
    free(cur);
}

TEST(cursor_of_fewer_partitions_is_read_in_the_grown_layout)
{
    /* a partition added to a topic while the stream ran: a cursor made before it is still a
     * cursor of this stream, the added partition read from its beginning (-1) */
    int64_t v[8];
    fh_cursor_layout grew_events[] = {{2, {3, 2}}, {2, {4, 2}}};
    CHECK(fh_cursor_decode_grown("5.a.b.c.d.e", grew_events, 2, v) == FH_OK);
    CHECK(v[0] == 10 && v[1] == 11 && v[2] == 12 && v[3] == -1 && v[4] == 13 && v[5] == 14);
    fh_cursor_layout grew_logs[] = {{2, {3, 2}}, {2, {3, 3}}};
    CHECK(fh_cursor_decode_grown("5.a.b.c.d.e", grew_logs, 2, v) == FH_OK);
    CHECK(v[0] == 10 && v[2] == 12 && v[3] == 13 && v[4] == 14 && v[5] == -1);
    /* a count the stream never had (made before it started): the events topic grew */
    fh_cursor_layout now[] = {{2, {5, 2}}};
    CHECK(fh_cursor_decode_grown("5.a.b.c.d.e", now, 1, v) == FH_OK);
    CHECK(v[2] == 12 && v[3] == -1 && v[4] == -1 && v[5] == 13 && v[6] == 14);
    /* as many or more partitions than now, and malformed ones, are refused */
    CHECK(fh_cursor_decode_grown("7.1.2.3.4.5.6.7", now, 1, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode_grown("8.1.2.3.4.5.6.7.8", now, 1, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode_grown("5.a.b.c.d", grew_events, 2, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode_grown("1.a", grew_events, 2, v) == FH_ERR_PARSE);
    CHECK(fh_cursor_decode_grown("x", grew_events, 2, v) == FH_ERR_PARSE);
    /* three topics (a third one read after the logs): the third one grew */
    fh_cursor_layout three[] = {{3, {2, 1, 1}}, {3, {2, 1, 3}}};
    CHECK(fh_cursor_decode_grown("4.a.b.c.d", three, 2, v) == FH_OK);
    CHECK(v[0] == 10 && v[1] == 11 && v[2] == 12 && v[3] == 13 && v[4] == -1 && v[5] == -1);
}
