/* libFuzzer target for the REST request path: route matching, the checks every request passes
 * (path and query text, unknown parameters, auth scope), each handler's parameter parsing, and
 * the answers themselves, rendered from a real materialised view (broker/view.c) that is empty:
 * it runs on a temporary SQLite file and follows librdkafka's in-process mock cluster (the
 * embedded Kafka), so nothing leaves the process. The file lives in /tmp/fuzz_rest.XXXXXX, removed
 * at exit (a run that dies on a crash leaves it behind).
 *
 * Input: the first byte picks the method ('H' HEAD, 'P' POST, 'X' PATCH, 'D' DELETE, any other
 * GET), the rest is the request target as a client sends it, "PATH?QUERY", still percent-encoded.
 * It is decoded the way libmicrohttpd does (broker/http.c keeps the path's length, libmicrohttpd
 * gives each query key and value with its length: '&' and '=' split, '+' is a space, %HH a byte,
 * including %00) and handed to fh_http_route_request with the broker's REST, health and dashboard
 * routes.
 *
 * Checked for every answer: the status is one the API documents; a JSON answer (every one but
 * the dashboard's pages) is valid UTF-8 and parses with jansson as one object without duplicate
 * keys (\u0000 is allowed: a 400 names a parameter whose name holds %00 exactly); an error
 * carries "error" and "message" strings. Build and run: see tests/fuzz/README.md. */
#include "broker.h"
#include "dashboard.h"
#include "fh_json.h"
#include "fh_kafka.h"
#include "fh_log.h"
#include "fh_utf8.h"
#include "fh_util.h"
#include "health.h"
#include "memory.h"
#include "http.h"
#include "rest/rest.h"
#include "view/cimetrics.h"
#include "view/derive.h"
#include "view/view.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* librdkafka's own threads (the mock cluster, the view's consumer) allocate and free while an
 * input runs; LeakSanitizer's check between inputs can catch their objects in flight and report
 * them as leaked. Nothing of the code under test lives in librdkafka. */
const char *__lsan_default_suppressions(void)
{
    return "leak:librdkafka.so\n";
}

static const fh_cfg_opt opts[] = {
    FH_CFG_COMMON,
    {"kafka.group", NULL, FH_CFG_STR, "fuzz-rest", 0, 0, "consumer group"},
    {"topics.partitions", NULL, FH_CFG_INT, "1", 1, 10000, "partitions"},
    FH_VIEW_CFG,
    FH_CIMETRICS_CFG,
    FH_DERIVE_CFG,
};

static fh_broker b;
static fh_view *view;
static health_ctx health;
static volatile sig_atomic_t run = 1;
static fh_http_route routes[FH_REST_ROUTES + FH_HEALTH_ROUTES + FH_DASHBOARD_ROUTES];
static size_t nroutes;
static char dir[] = "/tmp/fuzz_rest.XXXXXX";
static int verbose; /* FUZZ_REST_VERBOSE=1 prints each request and the start of its answer */

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_rest: %s: %s\n", what, err);
    exit(1);
}

/* The health routes refresh the memory gauges (broker/memory.c) on /metrics; this target runs
 * no stream and has none (health.mem is NULL), so memory.c and the stream it reads stay out. */
void memory_refresh(broker_memory *m)
{
    (void)m;
}

static void cleanup(void)
{
    char cmd[64];
    fh_view_free(view);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_rest: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512], path[128];
    (void)argc;
    (void)argv;
    fh_log_init("fuzz_rest", FH_LOG_ERROR);
    verbose = getenv("FUZZ_REST_VERBOSE") != NULL;
    if (!mkdtemp(dir))
        die("mkdtemp", "cannot create a temporary directory");
    snprintf(path, sizeof(path), "--view.path=%s/view.db", dir);
    /* view.nice=0: the fuzzer may not raise priorities; one reader keeps the pool small; no
     * derived events (nothing of the REST surface). */
    char *args[] = {"fuzz_rest", path, "--view.nice=0", "--view.read_connections=2",
                    "--derive.enabled=false", NULL};
    int help = 0;
    b.run = &run;
    if (fh_config_init(&b.cfg, "fuzz_rest", "", "", opts, sizeof(opts) / sizeof(opts[0])) ||
        fh_config_load(&b.cfg, 5, args, &help, err, sizeof(err)))
        die("config", err);
    if (fh_auth_init(&b.auth, "fuzz-admin-token", "", 1, err, sizeof(err)))
        die("auth", err);
    if (fh_contract_load(&b.contract, err, sizeof(err)))
        die("contract", err);
    if (fh_kafka_embedded_start(&b.cfg, 1, &b.embedded, err, sizeof(err)))
        die("embedded kafka", err);
    snprintf(b.bootstrap, sizeof(b.bootstrap), "%s", fh_kafka_embedded_bootstrap(b.embedded));
    b.ready = 1;
    fh_view_config vcfg;
    fh_view_config_read(&b.cfg, &vcfg);
    if (fh_view_start(&b, &vcfg, &view, err, sizeof(err)))
        die("view", err);
    atexit(cleanup);
    health = (health_ctx){.b = &b, .view = view}; /* no memory gauges here */
    nroutes += rest_routes(view, routes + nroutes);
    nroutes += health_routes(&health, routes + nroutes);
    nroutes += dashboard_routes(routes + nroutes);
    return 0;
}

static void fail(const char *what, const fh_http_request *req, const fh_http_response *resp)
{
    fprintf(stderr, "fuzz_rest: %s\n  %s %.*s (%zu query arguments)\n  status %d body: %.*s\n",
            what, req->method, (int)req->path_len, req->path, req->nargs, resp->status,
            (int)resp->body.len, resp->body.data ? resp->body.data : "");
    abort();
}

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fh_http_arg args[MAX_ARGS];
    fh_http_request req;
    fh_http_response resp;
    if (size < 1 || size > 4096)
        return 0;
    /* The target, NUL-free as on the wire (a raw NUL ends libmicrohttpd's request line). */
    char *t = malloc(size);
    size_t tn = size - 1;
    memcpy(t, data + 1, tn);
    t[tn] = '\0';
    tn = strlen(t);
    memset(&req, 0, sizeof(req));
    req.method = data[0] == 'H'   ? "HEAD"
                 : data[0] == 'P' ? "POST"
                 : data[0] == 'X' ? "PATCH"
                 : data[0] == 'D' ? "DELETE"
                                  : "GET";
    char *q = strchr(t, '?');
    if (q)
        *q++ = '\0';
    req.path = t;
    req.path_len = fh_pct_decode(t, strlen(t), t, 0);
    /* libmicrohttpd's MHD_parse_arguments_: '&' separates, the first '=' splits key and value. */
    for (char *a = q; a && *a && req.nargs < MAX_ARGS;) {
        char *amp = strchr(a, '&');
        if (amp)
            *amp = '\0';
        char *eq = strchr(a, '=');
        fh_http_arg *g = &args[req.nargs++];
        if (eq)
            *eq = '\0';
        g->key = a;
        g->key_len = fh_pct_decode(a, strlen(a), a, 1);
        g->value = eq ? eq + 1 : NULL;
        g->value_len = eq ? fh_pct_decode(eq + 1, strlen(eq + 1), eq + 1, 1) : 0;
        a = amp ? amp + 1 : NULL;
    }
    req.args = args;
    req.body = "";

    memset(&resp, 0, sizeof(resp));
    fh_buf_init(&resp.body, 16 * 1024 * 1024);
    fh_http_route_request(routes, nroutes, &b.auth, &req, &resp);
    int status = resp.status ? resp.status : 200;
    if (verbose)
        fprintf(stderr, "%s %.*s -> %d %.*s\n", req.method, (int)req.path_len, req.path, status,
                (int)(resp.body.len < 300 ? resp.body.len : 300),
                resp.body.data ? resp.body.data : "");
    switch (status) {
    case 200:
    case 400:
    case 401:
    case 403:
    case 404:
    case 405:
    case 503:
        break;
    default:
        fail("unexpected status", &req, &resp);
    }
    const char *ct = resp.content_type ? resp.content_type : "application/json";
    if (strcmp(ct, "application/json") == 0) {
        json_error_t e;
        if (!fh_utf8_valid(resp.body.data ? resp.body.data : "", resp.body.len))
            fail("the answer is not valid UTF-8", &req, &resp);
        json_t *j = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len,
                               JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
        if (!json_is_object(j))
            fail(j ? "the answer is not a JSON object" : e.text, &req, &resp);
        if (status != 200 && (!json_is_string(json_object_get(j, "error")) ||
                              !json_is_string(json_object_get(j, "message"))))
            fail("an error answer without error and message strings", &req, &resp);
        json_decref(j);
    } else if (status != 200) {
        fail("an error answer that is not JSON", &req, &resp);
    }
    fh_buf_free(&resp.body);
    free(t);
    return 0;
}
