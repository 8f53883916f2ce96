/* The consumers' pieces: the WebSocket client side of fh_ws (server frames parsed, client frames
 * masked), the ws:// URL and upgrade response checks, the filter flags, and the summary's
 * quantiles and caps. */
#include "fh_test.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_filter.h"
#include "fh_json.h"
#include "fh_ws.h"
#include "summary.h"
#include "ws_client.h"

/* ---- fh_ws client mode ------------------------------------------------------------------------
 */

TEST(ws_client_parses_unmasked_server_frames_of_every_length)
{
    static unsigned char buf[70000 + 20], payload[70000];
    size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 70000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        for (size_t i = 0; i < n; i++)
            payload[i] = (unsigned char)('a' + i % 26);
        size_t h = fh_ws_frame_header(buf, FH_WS_OP_TEXT, n);
        memcpy(buf + h, payload, n);
        fh_ws_parser p;
        fh_ws_msg m;
        size_t used = 0;
        fh_ws_parser_init_client(&p, 1 << 20);
        /* byte by byte for the small ones: a two-byte header must not stall the parser */
        int r = FH_WS_NEED_MORE;
        if (n < 200) {
            for (size_t i = 0; i < h + n && r == FH_WS_NEED_MORE; i++)
                r = fh_ws_parse(&p, buf + i, 1, &used, &m);
        } else {
            r = fh_ws_parse(&p, buf, h + n, &used, &m);
        }
        CHECK(r == FH_WS_MESSAGE);
        CHECK(m.len == n);
        CHECK(n == 0 || memcmp(m.data, payload, n) == 0);
        fh_ws_parser_free(&p);
    }
}

TEST(ws_client_refuses_masked_server_frames_and_server_refuses_unmasked)
{
    unsigned char key[4] = {1, 2, 3, 4}, buf[32];
    fh_ws_parser p;
    fh_ws_msg m;
    size_t used;
    size_t h = fh_ws_client_frame_header(buf, FH_WS_OP_TEXT, 2, key);
    buf[h] = 'h' ^ 1;
    buf[h + 1] = 'i' ^ 2;
    fh_ws_parser_init_client(&p, 1024);
    CHECK(fh_ws_parse(&p, buf, h + 2, &used, &m) == FH_WS_ERROR);
    CHECK(m.close_code == FH_WS_CLOSE_PROTOCOL);
    fh_ws_parser_free(&p);
    /* the same masked frame is what a server wants */
    fh_ws_parser_init(&p, 1024);
    CHECK(fh_ws_parse(&p, buf, h + 2, &used, &m) == FH_WS_MESSAGE);
    CHECK(m.len == 2 && memcmp(m.data, "hi", 2) == 0);
    fh_ws_parser_free(&p);
}

TEST(ws_client_frames_round_trip_through_the_server_parser)
{
    static unsigned char buf[70000 + 20], payload[70000];
    unsigned char key[4] = {0x9a, 0x01, 0xff, 0x37};
    size_t sizes[] = {0, 5, 125, 126, 65535, 65536, 70000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        unsigned pos = 0;
        for (size_t i = 0; i < n; i++)
            payload[i] = (unsigned char)(i * 7);
        size_t h = fh_ws_client_frame_header(buf, FH_WS_OP_BINARY, n, key);
        CHECK(h == (n < 126 ? 6u : n <= 65535 ? 8u : 14u));
        memcpy(buf + h, payload, n);
        /* masked in two pieces: the position carries over */
        fh_ws_mask(buf + h, n / 3, key, &pos);
        fh_ws_mask(buf + h + n / 3, n - n / 3, key, &pos);
        fh_ws_parser p;
        fh_ws_msg m;
        size_t used;
        fh_ws_parser_init(&p, 1 << 20);
        CHECK(fh_ws_parse(&p, buf, h + n, &used, &m) == FH_WS_MESSAGE);
        CHECK(m.len == n && (n == 0 || memcmp(m.data, payload, n) == 0));
        fh_ws_parser_free(&p);
    }
}

TEST(ws_client_sees_ping_and_close_from_the_server)
{
    unsigned char buf[256];
    fh_ws_parser p;
    fh_ws_msg m;
    size_t used, h = fh_ws_frame_header(buf, FH_WS_OP_PING, 2);
    memcpy(buf + h, "hb", 2);
    size_t c = fh_ws_close_frame(buf + h + 2, 1001, "going away");
    fh_ws_parser_init_client(&p, 1024);
    CHECK(fh_ws_parse(&p, buf, h + 2 + c, &used, &m) == FH_WS_PING);
    CHECK(m.len == 2 && memcmp(m.data, "hb", 2) == 0);
    CHECK(fh_ws_parse(&p, buf + used, h + 2 + c - used, &used, &m) == FH_WS_CLOSE);
    CHECK(m.close_code == 1001);
    CHECK_STR(m.reason, "going away");
    fh_ws_parser_free(&p);
}

/* ---- ws:// URLs and the upgrade response ------------------------------------------------------
 */

TEST(ws_url_parse_accepts_ws_and_wss)
{
    fh_wsc_url u;
    char err[256];
    CHECK(fh_wsc_url_parse("ws://127.0.0.1:8080", &u, err, sizeof(err)) == FH_OK);
    CHECK_STR(u.host, "127.0.0.1");
    CHECK_STR(u.port, "8080");
    CHECK(strcmp(u.path, "/v1/stream") == 0);
    CHECK(fh_wsc_url_parse("ws://[::1]:9/v1/stream?type=build.finished", &u, err, sizeof(err)) ==
          FH_OK);
    CHECK_STR(u.host, "::1");
    CHECK(strcmp(u.path, "/v1/stream?type=build.finished") == 0);
    CHECK(fh_wsc_url_parse("ws://example.org?x=1", &u, err, sizeof(err)) == FH_OK);
    CHECK_STR(u.port, "80");
    CHECK(strcmp(u.path, "/v1/stream?x=1") == 0);
    CHECK(fh_wsc_url_parse("wss://example.org", &u, err, sizeof(err)) == FH_OK);
    CHECK(u.tls && strcmp(u.port, "443") == 0 && strcmp(u.path, "/v1/stream") == 0);
    CHECK(fh_wsc_url_parse("ws://example.org", &u, err, sizeof(err)) == FH_OK && !u.tls);
    CHECK(fh_wsc_url_parse("http://example.org", &u, err, sizeof(err)) == FH_ERR_UNSUPPORTED);
    CHECK(fh_wsc_url_parse("ws://h:80x", &u, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(fh_wsc_url_parse("ws://:80", &u, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(fh_wsc_url_parse("ws://h/a b", &u, err, sizeof(err)) == FH_ERR_PARSE);
}

TEST(ws_upgrade_response_checks_status_and_accept_key)
{
    /* the RFC 6455 example key and its accept value */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    const char *ok =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    const char *bad = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
    const char *refused = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}";
    char err[256];
    int st;
    CHECK(fh_wsc_check_response(ok, strlen(ok), key, &st, err, sizeof(err)) == FH_OK);
    CHECK(st == 101);
    CHECK(fh_wsc_check_response(bad, strlen(bad), key, &st, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(fh_wsc_check_response(refused, strlen(refused), key, &st, err, sizeof(err)) != FH_OK);
    CHECK(st == 401);
    CHECK(fh_wsc_check_response("garbage", 7, key, &st, err, sizeof(err)) == FH_ERR_PARSE);
    CHECK(st == 0);
}

/* ---- filter flags ------------------------------------------------------------------------------
 */

TEST(cli_filter_repeated_flags_mean_any_of)
{
    char *argv[] = {"prog", "--branch", "try",          "--type=build.finished", "--brokers",
                    "x:1",  "--branch", "main,release", "--filter.owner",        "me@example.com",
                    NULL};
    int argc = 10;
    fh_cli_filter cf = {0};
    char err[256];
    CHECK(fh_cli_filter_take(&cf, &argc, argv, err, sizeof(err)) == FH_OK);
    CHECK(argc == 3);
    CHECK_STR(argv[1], "--brokers");
    CHECK_STR(argv[2], "x:1");
    json_t *br = json_object_get(cf.flags, "branch");
    CHECK(json_array_size(br) == 3);
    CHECK_STR(json_string_value(json_array_get(br, 2)), "release");
    CHECK(json_array_size(json_object_get(cf.flags, "owner")) == 1);
    char *argv2[] = {"prog", "--results", NULL};
    int argc2 = 2;
    fh_cli_filter cf2 = {0};
    CHECK(fh_cli_filter_take(&cf2, &argc2, argv2, err, sizeof(err)) == FH_ERR_CONFIG);
    fh_cli_filter_free(&cf);
    fh_cli_filter_free(&cf2);
}

static int want_logs(int t)
{
    return t == FH_EV_LOG_CHUNK || t == FH_EV_LOG_NEW || t == FH_EV_LOG_FINISHED;
}

TEST(cli_filter_types_possible_follows_the_type_globs)
{
    fh_filter f;
    char err[256];
    json_t *o = json_pack("{s:[s,s]}", "type", "build.*", "step.finished");
    CHECK(fh_filter_parse(o, &f, err, sizeof(err)) == FH_OK);
    CHECK(!fh_cli_filter_types_possible(&f, want_logs));
    fh_filter_free(&f);
    json_decref(o);
    o = json_pack("{s:s}", "type", "*chunk");
    CHECK(fh_filter_parse(o, &f, err, sizeof(err)) == FH_OK);
    CHECK(fh_cli_filter_types_possible(&f, want_logs));
    fh_filter_free(&f);
    json_decref(o);
}

/* ---- summary -----------------------------------------------------------------------------------
 */

static void feed(fh_summary *s, fh_json_doc *doc, const char *json)
{
    const fh_jv *root;
    fh_json_doc_reset(doc);
    CHECK(fh_json_parse(doc, json, strlen(json), 0, &root, NULL, 0) == FH_OK);
    fh_summary_add(s, root);
}

/* Runs the summary over steps of durations 1..n for one key and returns the report. */
static json_t *summary_of(unsigned samples, size_t max_keys, int n, int keys)
{
    fh_summary_opts o = {.max_keys = max_keys, .samples = samples, .max_pending = 4};
    fh_summary *s;
    fh_json_doc doc;
    char line[512];
    fh_json_doc_init(&doc, 1 << 20);
    CHECK(fh_summary_new(&o, &s) == FH_OK);
    for (int k = 0; k < keys; k++)
        for (int i = 1; i <= n; i++) {
            snprintf(
                line, sizeof(line),
                "{\"type\":\"step.finished\",\"data\":{\"builder\":\"b%d\",\"name\":\"compile\","
                "\"duration_s\":%d}}",
                k, i);
            feed(s, &doc, line);
        }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(fh_summary_write(s, NULL, f) == 0);
    fclose(f);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    CHECK(j != NULL);
    free(text);
    fh_summary_free(s);
    fh_json_doc_free(&doc);
    return j;
}

TEST(summary_quantiles_are_nearest_rank_and_exact_under_the_sample_cap)
{
    json_t *j = summary_of(1024, 16, 20, 1);
    json_t *st = json_array_get(json_object_get(j, "steps"), 0);
    CHECK(json_integer_value(json_object_get(st, "count")) == 20);
    CHECK(json_number_value(json_object_get(st, "p50")) == 10.0); /* rank ceil(0.5 * 20) = 10 */
    CHECK(json_number_value(json_object_get(st, "p95")) == 19.0); /* rank ceil(0.95 * 20) = 19 */
    CHECK(json_number_value(json_object_get(st, "mean")) == 10.5);
    CHECK(json_is_true(json_object_get(st, "exact")));
    json_decref(j);
}

TEST(summary_past_the_sample_cap_keeps_exact_counts_and_estimates_quantiles)
{
    json_t *j = summary_of(64, 16, 10000, 1);
    json_t *st = json_array_get(json_object_get(j, "steps"), 0);
    CHECK(json_integer_value(json_object_get(st, "count")) == 10000);
    CHECK(json_number_value(json_object_get(st, "max")) == 10000.0);
    CHECK(json_number_value(json_object_get(st, "mean")) == 5000.5);
    CHECK(json_is_false(json_object_get(st, "exact")));
    double p50 = json_number_value(json_object_get(st, "p50"));
    CHECK(p50 > 2500 && p50 < 7500); /* a uniform sample of 64 puts the median well inside */
    json_decref(j);
}

TEST(summary_key_cap_sends_the_rest_to_other_and_counts_it)
{
    json_t *j = summary_of(8, 2, 3, 5);
    json_t *steps = json_object_get(j, "steps");
    CHECK(json_array_size(steps) == 3);
    long long total = 0, other = 0;
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *st = json_array_get(steps, i);
        total += json_integer_value(json_object_get(st, "count"));
        if (strcmp(json_string_value(json_object_get(st, "builder")), "(other)") == 0)
            other = json_integer_value(json_object_get(st, "count"));
    }
    CHECK(total == 15 && other == 9);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "capped"), "steps")) == 9);
    json_decref(j);
}

TEST(summary_queue_wait_joins_request_and_build_within_the_pending_cap)
{
    fh_summary_opts o = {.max_keys = 8, .samples = 8, .max_pending = 2};
    fh_summary *s;
    fh_json_doc doc;
    char line[256];
    fh_json_doc_init(&doc, 1 << 20);
    CHECK(fh_summary_new(&o, &s) == FH_OK);
    for (int id = 1; id <= 3; id++) {
        snprintf(
            line, sizeof(line),
            "{\"type\":\"buildrequest.new\",\"data\":{\"buildrequestid\":%d,\"submitted_at\":100}}",
            id);
        feed(s, &doc, line);
    }
    for (int id = 1; id <= 3; id++) {
        snprintf(line, sizeof(line),
                 "{\"type\":\"build.started\",\"data\":{\"buildrequestid\":%d,\"builder\":\"b\","
                 "\"started_at\":%d}}",
                 id, 100 + id);
        feed(s, &doc, line);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(fh_summary_write(s, NULL, f) == 0);
    fclose(f);
    json_t *j = json_loads(text, 0, NULL);
    json_t *qw = json_object_get(json_object_get(j, "queue_wait"), "overall");
    CHECK(json_integer_value(json_object_get(qw, "count")) == 2); /* the third did not fit */
    CHECK(json_number_value(json_object_get(qw, "max")) == 2.0);
    json_t *capped = json_object_get(j, "capped");
    CHECK(json_integer_value(json_object_get(capped, "pending_full")) == 1);
    CHECK(json_integer_value(json_object_get(capped, "queue_wait_unmatched")) == 1);
    json_decref(j);
    free(text);
    fh_summary_free(s);
    fh_json_doc_free(&doc);
}

TEST(summary_num_is_the_shortest_exact_form)
{
    char buf[40];
    CHECK_STR(fh_summary_num(0.1, buf, sizeof(buf)), "0.1");
    CHECK_STR(fh_summary_num(37.857, buf, sizeof(buf)), "37.857");
    CHECK(strtod(fh_summary_num(1.0 / 3.0, buf, sizeof(buf)), NULL) == 1.0 / 3.0);
}

/* ---- firehose-tail's network policy (consumers/netpolicy.c) -------------------------------- */

#include "netpolicy.h"

static const char *const *fake_env;

static const char *env_lookup(const char *name)
{
    for (const char *const *e = fake_env; e && *e; e += 2)
        if (strcmp(e[0], name) == 0)
            return e[1];
    return NULL;
}

TEST(netpolicy_loopback_is_decided_by_the_text_alone)
{
    CHECK(fh_host_is_loopback("127.0.0.1") && fh_host_is_loopback("127.8.9.10"));
    CHECK(fh_host_is_loopback("::1") && fh_host_is_loopback("localhost"));
    CHECK(fh_host_is_loopback("LocalHost") && fh_host_is_loopback("broker.localhost"));
    CHECK(!fh_host_is_loopback("128.0.0.1") && !fh_host_is_loopback("10.0.0.1"));
    CHECK(!fh_host_is_loopback("localhost.example.org") && !fh_host_is_loopback("::2"));
    CHECK(!fh_host_is_loopback("firehose.example.org") && !fh_host_is_loopback(""));
}

TEST(netpolicy_proxy_follows_curls_environment_conventions)
{
    fh_wsc_url ws, wss;
    char out[256], err[256];
    fh_wsc_url_parse("ws://firehose.example.org", &ws, err, sizeof(err));
    fh_wsc_url_parse("wss://firehose.example.org:8443", &wss, err, sizeof(err));
    static const char *const env1[] = {
        "https_proxy", "http://proxy.corp:3128", "HTTPS_PROXY", "http://upper:1",
        "http_proxy",  "http://plain.corp",      "HTTP_PROXY",  "http://never:2",
        NULL};
    fake_env = env1;
    CHECK(fh_proxy_for(&wss, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "proxy.corp:3128");
    CHECK(fh_proxy_for(&ws, "", env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "plain.corp:80"); /* lower-case http_proxy only; port 80 added */
    CHECK(fh_proxy_for(&wss, "none", env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "");
    CHECK(fh_proxy_for(&wss, "http://u:p@[::1]:8080/", env_lookup, out, sizeof(out), err,
                       sizeof(err)) == FH_OK);
    CHECK_STR(out, "u:p@[::1]:8080");
    static const char *const env2[] = {"HTTPS_PROXY", "127.0.0.1:9", "no_proxy",
                                       "localhost, .example.org,10.1.2.3:443", NULL};
    fake_env = env2;
    CHECK(fh_proxy_for(&wss, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, ""); /* a domain suffix in no_proxy */
    fh_wsc_url other;
    fh_wsc_url_parse("wss://example.com", &other, err, sizeof(err));
    CHECK(fh_proxy_for(&other, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "127.0.0.1:9"); /* HTTPS_PROXY, upper case, counts for wss:// */
    fh_wsc_url_parse("wss://notexample.org", &other, err, sizeof(err));
    CHECK(fh_proxy_for(&other, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "127.0.0.1:9"); /* a suffix match is at a dot */
    fh_wsc_url_parse("wss://10.1.2.3", &other, err, sizeof(err));
    CHECK(fh_proxy_for(&other, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "");
    static const char *const env3[] = {"NO_PROXY", "*", "https_proxy", "http://p:1", NULL};
    fake_env = env3;
    CHECK(fh_proxy_for(&wss, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "");
    fake_env = NULL;
    CHECK(fh_proxy_for(&wss, NULL, env_lookup, out, sizeof(out), err, sizeof(err)) == FH_OK);
    CHECK_STR(out, "");
    CHECK(fh_proxy_for(&wss, "https://p:1", env_lookup, out, sizeof(out), err, sizeof(err)) ==
          FH_ERR_UNSUPPORTED);
    CHECK(fh_proxy_for(&wss, "http://:1", env_lookup, out, sizeof(out), err, sizeof(err)) ==
          FH_ERR_PARSE);
    CHECK(fh_proxy_for(&wss, "http://proxy:1", env_lookup, out, 5, err, sizeof(err)) ==
          FH_ERR_TOOBIG);
}
