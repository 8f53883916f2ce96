/* firehose-tail: subscribes to the broker's WebSocket stream (/v1/stream, protocol firehose) with
 * a filter, prints every matching event (NDJSON, or a readable line), keeps its cursor so that a
 * restart or a reconnect resumes without a gap or a duplicate, and can wait for a build or a
 * revision to finish, its exit status saying whether they were green. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_filter.h"
#include "fh_config.h"
#include "fh_cursor.h"
#include "fh_event.h"
#include "fh_json.h"
#include "fh_log.h"
#include "fh_util.h"
#include "fh_jscan.h"
#include "lws_client.h"
#include "netpolicy.h"
#include "ws_client.h"

/* Exit status (also in --help and docs/consumers.md). */
#define EXIT_GREEN 0
#define EXIT_NOT_GREEN 1
#define EXIT_FATAL 2   /* refused, bad filter, protocol error, gave up reconnecting */
#define EXIT_TIMEOUT 3 /* --timeout passed first */
#define EXIT_EXPIRED 4 /* the cursor is older than what Kafka keeps */
#define EXIT_USAGE 64
#define EXIT_INTERRUPTED 130

#define CURSOR_MAX (FH_CURSOR_SIZE(FH_CURSOR_MAX_PARTS) + 1) /* the longest the broker sends */
#define MAX_REQUESTS 65536 /* build requests tracked by --wait revision */
#define SUB_ID "tail"

static const fh_cfg_opt tail_opts[] = {
    {"tail.url", "url", FH_CFG_STR, "ws://127.0.0.1:8080", 0, 0,
     "broker stream URL: ws://HOST:PORT[/v1/stream], or wss://HOST:PORT[/v1/stream] for TLS "
     "(the certificate and host name are verified)"},
    {"tail.token", "token", FH_CFG_STR, "", 0, 0,
     "bearer token (read scope); FIREHOSE_TAIL_TOKEN keeps it out of ps. Sent over plain ws:// "
     "only to a loopback host unless --allow-insecure-token"},
    {"tail.cacert", "cacert", FH_CFG_STR, "", 0, 0,
     "wss://: trust the CA certificate(s) in this PEM file instead of the system's"},
    {"tail.insecure", "insecure", FH_CFG_BOOL, "false", 0, 0,
     "DANGEROUS: wss:// without any certificate or host name check; anyone on the path can "
     "read and change the stream and take the token. For a throwaway test only; use --cacert"},
    {"tail.allow_insecure_token", "allow-insecure-token", FH_CFG_BOOL, "false", 0, 0,
     "DANGEROUS: send --token over plain ws:// to a host that is not loopback, where anyone on "
     "the path can read it; use wss:// instead"},
    {"tail.proxy", "proxy", FH_CFG_STR, "", 0, 0,
     "HTTP CONNECT proxy, http://[USER:PASS@]HOST:PORT; empty: https_proxy or HTTPS_PROXY for "
     "wss://, http_proxy for ws://, unless no_proxy or NO_PROXY names the host; none: no proxy"},
    {"tail.deflate", "deflate", FH_CFG_BOOL, "true", 0, 0,
     "offer permessage-deflate: the broker then sends events compressed"},
    {"tail.from", "from", FH_CFG_STR, "latest", 0, 0,
     "start position: latest, earliest, an RFC 3339 time, or a cursor"},
    {"tail.cursor_file", "cursor-file", FH_CFG_STR, "", 0, 0,
     "resume from the cursor in this file when it has one (it wins over --from), and keep it "
     "up to date: the cursor of the last event printed"},
    {"tail.format", "format", FH_CFG_STR, "auto", 0, 0,
     "ndjson (the events as produced), text (one readable line per event) or auto (text on a "
     "terminal, else ndjson)"},
    {"tail.color", "color", FH_CFG_STR, "auto", 0, 0, "colour text output: auto, always, never"},
    {"tail.wait", "wait", FH_CFG_STR, "", 0, 0,
     "build: exit when the first matching build finishes; revision=REV: exit when every build "
     "request seen for REV has completed. Exit 0 when green (results 0 or 1), else 1"},
    {"tail.settle_ms", NULL, FH_CFG_INT, "1000", 0, 600000,
     "--wait revision: keep listening this long after the last request completed, for requests "
     "of the revision still on their way"},
    {"tail.timeout_s", "timeout", FH_CFG_INT, "0", 0, 31536000,
     "give up after this many seconds (exit 3); 0: never"},
    {"tail.max_events", "max-events", FH_CFG_INT, "0", 0, 9223372036854775807LL,
     "exit 0 after printing this many events; 0: no limit"},
    {"tail.reconnects", "reconnects", FH_CFG_INT, "-1", -1, 1000000,
     "failed connection attempts in a row before giving up (exit 2); -1: never give up"},
    {"tail.backoff_ms", NULL, FH_CFG_INT, "250", 1, 600000,
     "first reconnect delay (doubles, jittered)"},
    {"tail.backoff_max_ms", NULL, FH_CFG_INT, "30000", 1, 3600000, "longest reconnect delay"},
    {"tail.connect_timeout_ms", NULL, FH_CFG_INT, "10000", 100, 600000,
     "TCP connect plus WebSocket upgrade"},
    {"tail.idle_timeout_s", NULL, FH_CFG_INT, "60", 1, 86400,
     "reconnect when nothing (not even a ping) arrived for this long"},
    {"tail.max_message_bytes", NULL, FH_CFG_INT, "16777216", 4096, 1073741824,
     "largest message accepted from the broker"},
    {"tail.quiet", "q", FH_CFG_BOOL, "false", 0, 0, "no connection notices on stderr"},
    {"log.level", NULL, FH_CFG_STR, "info", 0, 0, "debug, info, warn or error"},
    FH_CLI_FILTER_OPTS,
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

enum wait_kind { WAIT_NONE, WAIT_BUILD, WAIT_REVISION };

typedef struct request {
    long long id; /* 0: empty slot */
    int results;  /* -1 until complete */
} request;

typedef struct tail {
    fh_config cfg;
    fh_filter filter;
    json_t *filter_json;
    fh_wsc_url url;
    fh_lwc *lwc;
    char proxy[512]; /* "host:port" of the proxy to use, "" for none */
    const char *token, *cursor_file;
    json_t *from; /* the start position of the first subscription */
    char cursor[CURSOR_MAX];
    int have_cursor, cursor_dirty;
    int text, color, quiet;
    enum wait_kind wait;
    char revision[256];
    request *requests; /* --wait revision: open addressing, MAX_REQUESTS * 2 slots */
    size_t nrequests, ndone;
    int any_bad;
    uint64_t settled_at; /* mono ns when every request was complete; 0: not yet */
    long long printed, max_events;
    fh_json_doc doc;
    fh_buf line;
    int status; /* set when the run should end: the exit status + 1 */
} tail;

/* ---- cursor file --------------------------------------------------------------------------- */

static int cursor_load(tail *t)
{
    char buf[CURSOR_MAX];
    FILE *f = fopen(t->cursor_file, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    if (n) {
        memcpy(t->cursor, buf, n + 1);
        t->have_cursor = 1;
    }
    return 0;
}

/* Writes the cursor atomically (a temporary file renamed over the old one), after stdout has
 * been flushed: the file never names an event that has not been handed to the output. */
static void cursor_save(tail *t)
{
    char tmp[4096];
    fflush(stdout); /* also without a cursor file: a pipe reader sees events as they come */
    if (!t->cursor_dirty || !t->cursor_file || !*t->cursor_file)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", t->cursor_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", t->cursor) < 0 || fclose(f) != 0 || rename(tmp, t->cursor_file)) {
        fh_log(FH_LOG_WARN, "tail.cursor_file", "path=%s error=\"%s\"", t->cursor_file,
               strerror(errno));
        return;
    }
    t->cursor_dirty = 0;
}

static void cursor_set(tail *t, const char *v, const char *ve)
{
    int n = fh_jscan_str(v, ve, t->cursor, sizeof(t->cursor));
    if (n > 0) {
        t->have_cursor = 1;
        t->cursor_dirty = 1;
    } else if (n < 0) {
        fh_log(FH_LOG_WARN, "tail.cursor",
               "bytes=%zu note=\"cursor longer than %zu bytes not kept\"", (size_t)(ve - v),
               sizeof(t->cursor));
    }
}

/* ---- output -------------------------------------------------------------------------------- */

static const char *results_name(long long r)
{
    static const char *const names[] = {"SUCCESS",   "WARNINGS", "FAILURE",  "SKIPPED",
                                        "EXCEPTION", "RETRY",    "CANCELLED"};
    return r >= 0 && r <= 6 ? names[r] : "?";
}

static const char *results_color(long long r)
{
    static const char *const colors[] = {"\033[32m", "\033[33m", "\033[31m", "\033[2m",
                                         "\033[35m", "\033[36m", "\033[2m"};
    return r >= 0 && r <= 6 ? colors[r] : "";
}

static void text_field(tail *t, const fh_jv *data, const char *key, const char *prefix,
                       size_t maxlen)
{
    size_t n;
    const char *s = fh_jv_str(fh_jv_get(data, key), &n);
    int64_t i;
    if (s && n) {
        fh_buf_printf(&t->line, " %s%.*s", prefix, (int)(n < maxlen ? n : maxlen), s);
    } else if (fh_jv_int(fh_jv_get(data, key), &i) == 0) {
        fh_buf_printf(&t->line, " %s%lld", prefix, (long long)i);
    }
}

/* One readable line: time, type, then what identifies the event, then its outcome. */
static void print_text(tail *t, const fh_jv *ev)
{
    const fh_jv *data = fh_jv_get(ev, "data");
    const char *type = fh_jv_str(fh_jv_get(ev, "type"), NULL);
    const char *time = fh_jv_str(fh_jv_get(ev, "time"), NULL);
    int64_t results;
    double dur;
    fh_buf_reset(&t->line);
    fh_buf_printf(&t->line, "%s %s%-22s%s", time ? time : "-", t->color ? "\033[1m" : "",
                  type ? type : "?", t->color ? "\033[0m" : "");
    text_field(t, data, "builder", "", 80);
    text_field(t, data, "buildid", "build ", 32);
    text_field(t, data, "number", "#", 32);
    if (type && strncmp(type, "step.", 5) == 0)
        text_field(t, data, "name", "step ", 80);
    else if (type && strncmp(type, "log.", 4) == 0)
        text_field(t, data, "name", "log ", 80);
    else if (type && (strncmp(type, "worker.", 7) == 0 || strncmp(type, "master.", 7) == 0))
        text_field(t, data, "name", "", 80);
    text_field(t, data, "branch", "", 80);
    text_field(t, data, "revision", "", 12);
    text_field(t, data, "owner", "", 80);
    text_field(t, data, "worker", "on ", 80);
    if (fh_jv_int(fh_jv_get(data, "results"), &results) == 0)
        fh_buf_printf(&t->line, " %s%s%s", t->color ? results_color(results) : "",
                      results_name(results), t->color ? "\033[0m" : "");
    const fh_jv *d = fh_jv_get(data, "duration_s");
    if (d && (d->type == FH_JV_INT || d->type == FH_JV_REAL)) {
        dur = d->type == FH_JV_INT ? (double)d->u.i : d->u.d;
        fh_buf_printf(&t->line, " %.1fs", dur);
    }
    if (type && strcmp(type, "log.chunk") == 0) {
        size_t n;
        const char *c = fh_jv_str(fh_jv_get(data, "content"), &n);
        size_t first = c ? strcspn(c, "\n") : 0;
        if (c)
            fh_buf_printf(&t->line, " | %.*s%s", (int)(first > 100 ? 100 : first), c,
                          first < n - 1 || first > 100 ? " …" : "");
    }
    fh_buf_append(&t->line, "\n", 1);
    fwrite(t->line.data, 1, t->line.len, stdout);
}

/* ---- --wait -------------------------------------------------------------------------------- */

static request *request_slot(tail *t, long long id, int create)
{
    size_t nslots = 2 * MAX_REQUESTS,
           i = (size_t)((unsigned long long)id * 0x9E3779B97F4A7C15ull >> 20) % nslots;
    for (size_t k = 0; k < nslots; k++, i = (i + 1) % nslots) {
        if (t->requests[i].id == id)
            return &t->requests[i];
        if (t->requests[i].id == 0) {
            if (!create || t->nrequests >= MAX_REQUESTS)
                return NULL;
            t->requests[i].id = id;
            t->requests[i].results = -1;
            t->nrequests++;
            return &t->requests[i];
        }
    }
    return NULL;
}

/* Looks at one event for the --wait condition; sets t->status when the run is over. */
static void wait_check(tail *t, const fh_jv *ev)
{
    const char *type = fh_jv_str(fh_jv_get(ev, "type"), NULL);
    const fh_jv *data = fh_jv_get(ev, "data");
    int64_t results, brid;
    if (!type)
        return;
    if (t->wait == WAIT_BUILD) {
        if (strcmp(type, "build.finished") == 0 &&
            fh_jv_int(fh_jv_get(data, "results"), &results) == 0)
            t->status = 1 + (results == 0 || results == 1 ? EXIT_GREEN : EXIT_NOT_GREEN);
        return;
    }
    const char *rev = fh_jv_str(fh_jv_get(data, "revision"), NULL);
    if (!rev || strcmp(rev, t->revision) != 0 ||
        fh_jv_int(fh_jv_get(data, "buildrequestid"), &brid) || brid <= 0)
        return;
    request *rq = request_slot(t, brid, 1);
    if (!rq) {
        fprintf(stderr, "firehose-tail: --wait revision: more than %d build requests\n",
                MAX_REQUESTS);
        t->status = 1 + EXIT_FATAL;
        return;
    }
    if (strcmp(type, "buildrequest.complete") == 0 && rq->results < 0 &&
        fh_jv_int(fh_jv_get(data, "results"), &results) == 0) {
        rq->results = (int)results;
        t->ndone++;
        if (results != 0 && results != 1)
            t->any_bad = 1;
    }
    /* every request seen is complete: wait settle_ms for late ones, then end */
    t->settled_at = t->ndone == t->nrequests ? fh_mono_ns() : 0;
}

/* ---- one subscription's messages ----------------------------------------------------------- */

/* Handles one message from the broker. Returns 0 to go on, 1 to reconnect (after a backoff). */
static int handle_message(tail *t, const char *p, size_t n)
{
    const char *v, *ve, *op;
    size_t oplen;
    if (fh_jscan_member(p, p + n, "op", 2, &v, &ve) != 1) {
        fh_log(FH_LOG_WARN, "tail.message", "error=\"a message without op\"");
        return 0;
    }
    op = v;
    oplen = (size_t)(ve - v);
#define OP_IS(s) (oplen == sizeof(s) + 1 && memcmp(op + 1, s, sizeof(s) - 1) == 0)
    if (OP_IS("event")) {
        const char *e, *ee;
        if (fh_jscan_member(p, p + n, "event", 5, &e, &ee) != 1)
            return 0;
        const fh_jv *root = NULL;
        if (t->text || t->wait != WAIT_NONE) {
            fh_json_doc_reset(&t->doc);
            if (fh_json_parse(&t->doc, e, (size_t)(ee - e), FH_JSON_ALLOW_DUPLICATES, &root, NULL,
                              0))
                root = NULL;
        }
        if (t->text && root) {
            print_text(t, root);
        } else {
            fwrite(e, 1, (size_t)(ee - e), stdout);
            fputc('\n', stdout);
        }
        t->printed++;
        if (fh_jscan_member(p, p + n, "cursor", 6, &v, &ve) == 1)
            cursor_set(t, v, ve);
        if (root && t->wait != WAIT_NONE)
            wait_check(t, root);
        if (t->max_events && t->printed >= t->max_events && !t->status)
            t->status = 1 + EXIT_GREEN;
        return 0;
    }
    if (OP_IS("subscribed")) {
        /* "latest" is resolved here: keep it, so a reconnect before any event loses nothing */
        if (fh_jscan_member(p, p + n, "cursor", 6, &v, &ve) == 1)
            cursor_set(t, v, ve);
        if (!t->quiet)
            fprintf(stderr, "firehose-tail: subscribed\n");
        return 0;
    }
    if (OP_IS("error")) {
        char code[64] = "", msg[1024] = "";
        if (fh_jscan_member(p, p + n, "code", 4, &v, &ve) == 1)
            fh_jscan_str(v, ve, code, sizeof(code));
        if (fh_jscan_member(p, p + n, "message", 7, &v, &ve) == 1)
            fh_jscan_str(v, ve, msg, sizeof(msg));
        fprintf(stderr, "firehose-tail: the broker says %s: %s\n", code, msg);
        if (strcmp(code, "busy") == 0 || strcmp(code, "unavailable") == 0 ||
            strcmp(code, "internal") == 0)
            return 1;
        t->status = 1 + (strcmp(code, "cursor_expired") == 0 ? EXIT_EXPIRED : EXIT_FATAL);
        return 0;
    }
#undef OP_IS
    return 0; /* pong, unsubscribed: nothing to do */
}

static json_t *position(tail *t)
{
    if (t->have_cursor)
        return json_pack("{s:s}", "cursor", t->cursor);
    return json_incref(t->from);
}

/* One connection: connect, subscribe, read until it ends. Returns 1 when it got as far as a
 * subscription (the backoff starts over), 0 when it failed before. */
static int run_connection(tail *t, uint64_t deadline_ns)
{
    fh_lwc *c = t->lwc;
    char err[512];
    int subscribed = 0, pinged = 0;
    int idle_ms = (int)fh_config_int(&t->cfg, "tail.idle_timeout_s") * 1000;
    uint64_t last_rx = fh_mono_ns();
    unsigned long activity = 0;

    if (fh_lwc_connect(c, &t->url, t->token, (int)fh_config_int(&t->cfg, "tail.connect_timeout_ms"),
                       err, sizeof(err))) {
        int st = fh_lwc_http_status(c);
        if (st == 400 || st == 401 || st == 403 || st == 404 || st == 426) {
            fprintf(stderr, "firehose-tail: %s\n", err);
            t->status = 1 + EXIT_FATAL;
        } else if (!t->quiet) {
            fprintf(stderr, "firehose-tail: %s\n", err);
        }
        return 0;
    }
    json_t *sub = json_pack("{s:s,s:s,s:O,s:o}", "op", "subscribe", "id", SUB_ID, "filter",
                            t->filter_json, "from", position(t));
    char *text = sub ? json_dumps(sub, JSON_COMPACT) : NULL;
    json_decref(sub);
    if (!text || fh_lwc_send_text(c, text, strlen(text), 5000, err, sizeof(err))) {
        if (!t->quiet)
            fprintf(stderr, "firehose-tail: subscribing: %s\n", text ? err : "out of memory");
        free(text);
        fh_lwc_close(c, 0);
        return 0;
    }
    free(text);
    if (!t->quiet)
        fprintf(stderr, "firehose-tail: connected to %s://%s:%s%s%s%s\n", t->url.tls ? "wss" : "ws",
                t->url.host, t->url.port, t->url.path, t->proxy[0] ? " through a proxy" : "",
                fh_lwc_compressed(c) ? " (compressed)" : "");
    while (!stop_requested && !t->status) {
        fh_ws_msg m;
        int wait_ms = 500;
        uint64_t now = fh_mono_ns();
        if (deadline_ns && now >= deadline_ns) {
            t->status = 1 + EXIT_TIMEOUT;
            break;
        }
        if (t->settled_at &&
            now >= t->settled_at + (uint64_t)fh_config_int(&t->cfg, "tail.settle_ms") * 1000000u) {
            t->status = 1 + (t->any_bad ? EXIT_NOT_GREEN : EXIT_GREEN);
            break;
        }
        int r = fh_lwc_next(c, wait_ms, &m, err, sizeof(err));
        if (fh_lwc_activity(c) != activity) { /* a fragment or a pong: the broker is alive */
            activity = fh_lwc_activity(c);
            last_rx = fh_mono_ns();
            pinged = 0;
        }
        if (r == FH_WS_NEED_MORE) {
            cursor_save(t);
            uint64_t quiet = fh_mono_ns() - last_rx;
            if (!pinged && quiet > (uint64_t)idle_ms * 1000000u / 3) {
                /* the broker's own pings do not reach us through libwebsockets: ask for a pong */
                fh_lwc_ping(c);
                pinged = 1;
            }
            if (quiet > (uint64_t)idle_ms * 1000000u) {
                if (!t->quiet)
                    fprintf(stderr, "firehose-tail: nothing received for %d s; reconnecting\n",
                            idle_ms / 1000);
                break;
            }
            continue;
        }
        last_rx = fh_mono_ns();
        if (r == FH_WS_MESSAGE) {
            subscribed = 1;
            if (handle_message(t, (const char *)m.data, m.len))
                break;
            if (!fh_lwc_queued(c)) /* nothing more received: a good moment to save */
                cursor_save(t);
            continue;
        }
        if (r == FH_WS_CLOSE) {
            unsigned code = m.close_code;
            if (!t->quiet || code != 1001)
                fprintf(stderr, "firehose-tail: the broker closed the connection: %u %s\n", code,
                        m.reason ? m.reason : "");
            /* our own mistakes will not get better by retrying */
            if (code == 1002 || code == 1003 || code == 1007 || code == 1009 || code == 4000 ||
                code == 4001)
                t->status = 1 + EXIT_FATAL;
            break;
        }
        if (!t->quiet)
            fprintf(stderr, "firehose-tail: %s\n", err);
        break;
    }
    cursor_save(t);
    fh_lwc_close(c, t->status || stop_requested ? FH_WS_CLOSE_NORMAL : 0);
    return subscribed;
}

/* ---- main ---------------------------------------------------------------------------------- */

static int sleep_interruptible(uint64_t ms, uint64_t deadline_ns)
{
    uint64_t until = fh_mono_ns() + ms * 1000000u;
    if (deadline_ns && until > deadline_ns)
        until = deadline_ns;
    while (!stop_requested && fh_mono_ns() < until) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return stop_requested;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

static int want_build_finished(int type)
{
    return type == FH_EV_BUILD_FINISHED;
}

static int want_request_complete(int type)
{
    return type == FH_EV_BUILDREQUEST_COMPLETE;
}

static int setup(tail *t, int argc, char **argv, fh_cli_filter *cf, int *help, char *err,
                 size_t errsize)
{
    const char *s;
    if (fh_cli_filter_take(cf, &argc, argv, err, errsize) ||
        fh_config_init(&t->cfg, "firehose-tail", "[OPTIONS] [FILTER FLAGS]",
                       "Subscribes to the broker's WebSocket stream with a filter and prints the "
                       "matching events; reconnects with backoff and resumes from the last cursor. "
                       "ws:// or wss:// (TLS, verified; --cacert, --insecure), through an HTTP "
                       "proxy when the environment names one. Exit status: 0 done (or "
                       "--wait green), 1 --wait not green, 2 refused / bad filter / gave up, "
                       "3 --timeout, 4 cursor expired, 64 usage, 130 interrupted.",
                       tail_opts, sizeof(tail_opts) / sizeof(tail_opts[0])) ||
        fh_config_load(&t->cfg, argc, argv, help, err, errsize))
        return EXIT_USAGE;
    if (*help)
        return 0;
    if (t->cfg.nargs)
        return fh_errf(err, errsize, FH_ERR_CONFIG, "unexpected argument \"%s\" (see --help)",
                       t->cfg.args[0]),
               EXIT_USAGE;
    if (fh_wsc_url_parse(fh_config_str(&t->cfg, "tail.url"), &t->url, err, errsize))
        return EXIT_USAGE;
    t->token = fh_config_str(&t->cfg, "tail.token");
    if (!t->url.tls && t->token && *t->token && !fh_host_is_loopback(t->url.host) &&
        !fh_config_bool(&t->cfg, "tail.allow_insecure_token"))
        return fh_errf(err, errsize, FH_ERR_CONFIG,
                       "refusing to send the token in clear text over ws:// to %s: use wss:// "
                       "(or --allow-insecure-token if you accept that anyone on the path can read "
                       "it)",
                       t->url.host),
               EXIT_USAGE;
    if (fh_proxy_for(&t->url, fh_config_str(&t->cfg, "tail.proxy"), env_get, t->proxy,
                     sizeof(t->proxy), err, errsize))
        return EXIT_USAGE;
    s = fh_config_str(&t->cfg, "tail.wait");
    if (strcmp(s, "build") == 0) {
        t->wait = WAIT_BUILD;
    } else if (strncmp(s, "revision=", 9) == 0 && s[9] && strlen(s + 9) < sizeof(t->revision)) {
        t->wait = WAIT_REVISION;
        snprintf(t->revision, sizeof(t->revision), "%s", s + 9);
    } else if (*s) {
        return fh_errf(err, errsize, FH_ERR_CONFIG,
                       "--wait: expected build or revision=REV, got \"%s\"", s),
               EXIT_USAGE;
    }
    if (fh_cli_filter_build(cf, &t->cfg, &t->filter_json, &t->filter, err, errsize))
        return EXIT_USAGE;
    if (t->wait == WAIT_REVISION && !json_object_get(t->filter_json, "revision")) {
        /* the subscription only needs the revision's events */
        fh_filter_free(&t->filter);
        if (json_object_set_new(t->filter_json, "revision", json_string(t->revision)) ||
            fh_filter_parse(t->filter_json, &t->filter, err, errsize))
            return EXIT_USAGE;
    }
    if (t->wait == WAIT_REVISION) {
        json_t *r = json_object_get(t->filter_json, "revision");
        if (!json_is_string(r) || strcmp(json_string_value(r), t->revision) != 0)
            return fh_errf(err, errsize, FH_ERR_CONFIG,
                           "--wait revision=%s: the filter selects another revision", t->revision),
                   EXIT_USAGE;
    }
    if (t->wait == WAIT_BUILD && !fh_cli_filter_types_possible(&t->filter, want_build_finished))
        return fh_errf(err, errsize, FH_ERR_CONFIG,
                       "--wait build: the type filter excludes build.finished"),
               EXIT_USAGE;
    if (t->wait == WAIT_REVISION &&
        !fh_cli_filter_types_possible(&t->filter, want_request_complete))
        return fh_errf(err, errsize, FH_ERR_CONFIG,
                       "--wait revision: the type filter excludes buildrequest.complete"),
               EXIT_USAGE;
    s = fh_config_str(&t->cfg, "tail.format");
    if (strcmp(s, "auto") == 0)
        t->text = isatty(STDOUT_FILENO);
    else if (strcmp(s, "text") == 0 || strcmp(s, "ndjson") == 0)
        t->text = strcmp(s, "text") == 0;
    else
        return fh_errf(err, errsize, FH_ERR_CONFIG, "--format: expected auto, ndjson or text"),
               EXIT_USAGE;
    s = fh_config_str(&t->cfg, "tail.color");
    if (strcmp(s, "auto") == 0)
        t->color = t->text && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    else if (strcmp(s, "always") == 0 || strcmp(s, "never") == 0)
        t->color = t->text && strcmp(s, "always") == 0;
    else
        return fh_errf(err, errsize, FH_ERR_CONFIG, "--color: expected auto, always or never"),
               EXIT_USAGE;
    s = fh_config_str(&t->cfg, "tail.from");
    int64_t ms;
    if (strcmp(s, "latest") == 0 || strcmp(s, "earliest") == 0)
        t->from = json_string(s);
    else if (fh_time_parse(s, &ms) == 0)
        t->from = json_pack("{s:s}", "time", s);
    else if (*s)
        t->from = json_pack("{s:s}", "cursor", s);
    else
        return fh_errf(err, errsize, FH_ERR_CONFIG, "--from: empty"), EXIT_USAGE;
    t->cursor_file = fh_config_str(&t->cfg, "tail.cursor_file");
    if (t->cursor_file && *t->cursor_file && cursor_load(t))
        return fh_errf(err, errsize, FH_ERR_IO, "--cursor-file %s: %s", t->cursor_file,
                       strerror(errno)),
               EXIT_USAGE;
    t->quiet = fh_config_bool(&t->cfg, "tail.quiet");
    t->max_events = fh_config_int(&t->cfg, "tail.max_events");
    return 0;
}

int main(int argc, char **argv)
{
    static tail t;
    static fh_cli_filter cf;
    char err[1024] = "";
    int help = 0, status;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocking poll returns at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fh_buf_init(&t.line, 64 * 1024);
    if ((status = setup(&t, argc, argv, &cf, &help, err, sizeof(err)))) {
        fprintf(stderr, "firehose-tail: %s\n", err);
        goto out;
    }
    if (help) {
        help == 2 ? fh_config_markdown(&t.cfg, stdout) : fh_config_help(&t.cfg, stdout);
        goto out;
    }
    int level = fh_log_level_parse(fh_config_str(&t.cfg, "log.level"));
    fh_log_init("firehose-tail", level < 0 ? FH_LOG_INFO : (enum fh_log_level)level);
    if (t.wait == WAIT_REVISION && !(t.requests = calloc(2 * MAX_REQUESTS, sizeof(request)))) {
        fprintf(stderr, "firehose-tail: out of memory\n");
        status = EXIT_FATAL;
        goto out;
    }
    fh_json_doc_init(&t.doc,
                     FH_EVENT_DOC_CAP((size_t)fh_config_int(&t.cfg, "tail.max_message_bytes")));
    if (t.url.tls && fh_config_bool(&t.cfg, "tail.insecure"))
        fprintf(stderr, "firehose-tail: --insecure: the broker's certificate is NOT checked\n");
    fh_lwc_opts lo = {
        .subprotocol = "firehose.v1",
        .cacert = fh_config_str(&t.cfg, "tail.cacert"),
        .insecure = fh_config_bool(&t.cfg, "tail.insecure"),
        .proxy = t.proxy[0] ? t.proxy : NULL,
        .deflate = fh_config_bool(&t.cfg, "tail.deflate"),
        .max_message = (size_t)fh_config_int(&t.cfg, "tail.max_message_bytes"),
        .debug = level == FH_LOG_DEBUG,
    };
    if (!(t.lwc = fh_lwc_new(&lo, err, sizeof(err)))) {
        fprintf(stderr, "firehose-tail: %s\n", err);
        status = EXIT_USAGE;
        goto out;
    }

    long long timeout_s = fh_config_int(&t.cfg, "tail.timeout_s");
    uint64_t deadline = timeout_s ? fh_mono_ns() + (uint64_t)timeout_s * 1000000000ull : 0;
    long long max_attempts = fh_config_int(&t.cfg, "tail.reconnects");
    uint64_t backoff0 = (uint64_t)fh_config_int(&t.cfg, "tail.backoff_ms");
    uint64_t backoff_max = (uint64_t)fh_config_int(&t.cfg, "tail.backoff_max_ms");
    uint64_t backoff = backoff0;
    long long failures = 0;
    unsigned seed = (unsigned)fh_mono_ns();
    while (!stop_requested && !t.status) {
        if (run_connection(&t, deadline)) {
            failures = 0;
            backoff = backoff0;
        } else {
            failures++;
        }
        if (t.status || stop_requested)
            break;
        if (deadline && fh_mono_ns() >= deadline) {
            t.status = 1 + EXIT_TIMEOUT;
            break;
        }
        if (max_attempts >= 0 && failures > max_attempts) {
            fprintf(stderr, "firehose-tail: giving up after %lld failed attempts\n", failures);
            t.status = 1 + EXIT_FATAL;
            break;
        }
        /* full jitter: a fleet of tails does not reconnect in step after a broker restart */
        uint64_t delay = backoff / 2 + (uint64_t)rand_r(&seed) % (backoff / 2 + 1);
        if (!t.quiet)
            fprintf(stderr, "firehose-tail: reconnecting in %llu ms%s\n", (unsigned long long)delay,
                    t.have_cursor ? " (resuming from the last cursor)" : "");
        if (sleep_interruptible(delay, deadline))
            break;
        backoff = backoff * 2 > backoff_max ? backoff_max : backoff * 2;
    }
    cursor_save(&t);
    fflush(stdout);
    if (t.status)
        status = t.status - 1;
    else
        status = stop_requested ? EXIT_INTERRUPTED : EXIT_GREEN;
    if (status == EXIT_TIMEOUT)
        fprintf(stderr, "firehose-tail: timed out after %lld s\n", timeout_s);
out:
    fh_lwc_free(t.lwc);
    free(t.requests);
    fh_buf_free(&t.line);
    fh_json_doc_free(&t.doc);
    fh_filter_free(&t.filter);
    json_decref(t.filter_json);
    json_decref(t.from);
    fh_cli_filter_free(&cf);
    fh_config_free(&t.cfg);
    return status;
}
