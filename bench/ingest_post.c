/* ingest_post: the ingest benchmark's HTTP client. Posts webhook deliveries to the broker over
 * C keep-alive connections (libcurl multi) and reports requests/s and events/s.
 *
 * The deliveries come from a vector file (tests/vectors/: `deliveries`, or with --statuspush
 * the `statuspush.posts` of a Buildbot vector). One lifecycle is every delivery of the file in
 * order, posted one after another on one connection; lifecycle k sets each --id-path member of
 * every body to base + k (so no two lifecycles share a job or a delivery id) and names its
 * deliveries "bench-<base>-<k>-<i>". GitHub deliveries are signed (X-Hub-Signature-256),
 * GitLab's carry the token, HttpStatusPush posts a bearer token. Events are counted from each
 * answer's "accepted".
 *
 * Usage: ingest_post --url URL --vector FILE [--statuspush] --id-path a.b [--id-path ...]
 *            --lifecycles N --concurrency C --base B
 *            [--github-secret S | --gitlab-token T | --bearer T]
 * Prints: requests=N ok=N failed=N events=N elapsed=S req_per_s=R events_per_s=E
 * Exits 1 when any answer is not 2xx (the first one is printed on stderr). */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fh_sign.h"
#include "fh_util.h"

#define MAX_PATHS 8
#define MAX_SLOTS 256

typedef struct delivery {
    json_t *headers; /* NULL for HttpStatusPush posts */
    json_t *body;
} delivery;

typedef struct opts {
    const char *url, *vector, *github_secret, *gitlab_token, *bearer;
    const char *paths[MAX_PATHS];
    int npaths, statuspush, concurrency;
    long long lifecycles, base;
} opts;

typedef struct slot {
    CURL *h;
    struct curl_slist *hdrs;
    char *body;
    fh_buf answer;
    long long lifecycle;
    size_t step;
} slot;

static delivery *dels;
static size_t ndels;
static opts o;
static long long next_lifecycle, requests, ok, failed, events;
static int reported;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    slot *s = ud;
    fh_buf_append(&s->answer, p, size * n); /* capped: the head holds "accepted" */
    return size * n;
}

/* Sets a dotted member path of body to v. */
static void set_path(json_t *body, const char *path, long long v)
{
    char buf[128], *save = NULL, *part, *next;
    json_t *o2 = body;
    snprintf(buf, sizeof(buf), "%s", path);
    for (part = strtok_r(buf, ".", &save); part; part = next) {
        next = strtok_r(NULL, ".", &save);
        if (!next) {
            json_object_set_new(o2, part, json_integer(v));
            return;
        }
        if (!(o2 = json_object_get(o2, part)))
            return;
    }
}

/* Prepares slot s for the next step of its lifecycle; 0 when there is nothing left to post. */
static int prepare(CURLM *m, slot *s)
{
    char hdr[256], id[96];
    if (s->step == ndels) {
        if (next_lifecycle >= o.lifecycles)
            return 0;
        s->lifecycle = next_lifecycle++;
        s->step = 0;
    }
    const delivery *d = &dels[s->step];
    json_t *body = json_deep_copy(d->body);
    for (int i = 0; i < o.npaths; i++)
        set_path(body, o.paths[i], o.base + s->lifecycle);
    free(s->body);
    s->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    curl_slist_free_all(s->hdrs);
    s->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(id, sizeof(id), "bench-%lld-%lld-%zu", o.base, s->lifecycle, s->step);
    const char *k;
    json_t *v;
    json_object_foreach(d->headers, k, v)
    {
        int is_id = !strcasecmp(k, "X-GitHub-Delivery") || !strcasecmp(k, "Idempotency-Key") ||
                    !strcasecmp(k, "X-Gitlab-Event-UUID");
        snprintf(hdr, sizeof(hdr), "%s: %s", k, is_id ? id : json_string_value(v));
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    }
    if (o.github_secret) {
        unsigned char mac[FH_HMAC_SHA256_BYTES];
        fh_hmac_sha256(o.github_secret, strlen(o.github_secret), s->body, strlen(s->body), mac);
        int n = snprintf(hdr, sizeof(hdr), "X-Hub-Signature-256: sha256=");
        for (size_t i = 0; i < sizeof(mac); i++)
            n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "%02x", mac[i]);
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    } else if (o.gitlab_token) {
        snprintf(hdr, sizeof(hdr), "X-Gitlab-Token: %s", o.gitlab_token);
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    } else if (o.bearer) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", o.bearer);
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    }
    fh_buf_reset(&s->answer);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    curl_multi_add_handle(m, s->h);
    return 1;
}

static void finished(CURLM *m, slot *s, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(m, s->h);
    requests++;
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        const char *a;
        ok++;
        fh_buf_append(&s->answer, "", 1);
        if ((a = strstr(s->answer.data ? s->answer.data : "", "\"accepted\":")))
            events += atoll(a + 11);
    } else {
        failed++;
        if (!reported++)
            fprintf(stderr, "ingest_post: %s -> %ld %s %.*s\n", o.url, status,
                    rc ? curl_easy_strerror(rc) : "", (int)s->answer.len,
                    s->answer.data ? s->answer.data : "");
    }
    s->step++;
}

static int load(void)
{
    json_error_t err;
    json_t *v = json_load_file(o.vector, 0, &err), *list, *d;
    size_t i;
    if (!v) {
        fprintf(stderr, "ingest_post: %s: %s\n", o.vector, err.text);
        return -1;
    }
    list = o.statuspush ? json_object_get(json_object_get(v, "statuspush"), "posts")
                        : json_object_get(v, "deliveries");
    ndels = json_array_size(list);
    if (!ndels || !(dels = calloc(ndels, sizeof(*dels)))) {
        fprintf(stderr, "ingest_post: %s: no deliveries\n", o.vector);
        return -1;
    }
    json_array_foreach(list, i, d)
    {
        dels[i].body = json_incref(o.statuspush ? d : json_object_get(d, "body"));
        dels[i].headers = o.statuspush ? json_object() : json_incref(json_object_get(d, "headers"));
    }
    json_decref(v);
    return 0;
}

int main(int argc, char **argv)
{
    static slot slots[MAX_SLOTS];
    o.concurrency = 8;
    o.lifecycles = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--statuspush")) {
            o.statuspush = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr,
                    "ingest_post: %s needs a value (see the header of bench/ingest_post.c)\n", a);
            return 64;
        }
        i++;
        if (!strcmp(a, "--url"))
            o.url = v;
        else if (!strcmp(a, "--vector"))
            o.vector = v;
        else if (!strcmp(a, "--id-path") && o.npaths < MAX_PATHS)
            o.paths[o.npaths++] = v;
        else if (!strcmp(a, "--lifecycles"))
            o.lifecycles = atoll(v);
        else if (!strcmp(a, "--concurrency"))
            o.concurrency = atoi(v);
        else if (!strcmp(a, "--base"))
            o.base = atoll(v);
        else if (!strcmp(a, "--github-secret"))
            o.github_secret = v;
        else if (!strcmp(a, "--gitlab-token"))
            o.gitlab_token = v;
        else if (!strcmp(a, "--bearer"))
            o.bearer = v;
        else {
            fprintf(stderr, "ingest_post: unknown option %s\n", a);
            return 64;
        }
    }
    if (!o.url || !o.vector || o.concurrency < 1 || o.concurrency > MAX_SLOTS || load())
        return 64;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)o.concurrency);
    uint64_t t0 = fh_mono_ns();
    int active = 0;
    for (int i = 0; i < o.concurrency; i++) {
        slot *s = &slots[i];
        s->h = curl_easy_init();
        s->step = ndels; /* takes a lifecycle first */
        fh_buf_init(&s->answer, 4096);
        curl_easy_setopt(s->h, CURLOPT_URL, o.url);
        curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->h, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(s->h, CURLOPT_TCP_NODELAY, 1L);
        active += prepare(m, s);
    }
    while (active > 0) {
        int running, left;
        CURLMsg *msg;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left))) {
            slot *s;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            finished(m, s, msg->data.result);
            if (!prepare(m, s))
                active--;
        }
        if (active > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double secs = (double)(fh_mono_ns() - t0) / 1e9;
    printf("requests=%lld ok=%lld failed=%lld events=%lld elapsed=%.3fs req_per_s=%.0f "
           "events_per_s=%.0f\n",
           requests, ok, failed, events, secs, requests / secs, events / secs);
    for (int i = 0; i < o.concurrency; i++) {
        curl_easy_cleanup(slots[i].h);
        curl_slist_free_all(slots[i].hdrs);
        free(slots[i].body);
        fh_buf_free(&slots[i].answer);
    }
    for (size_t i = 0; i < ndels; i++) {
        json_decref(dels[i].body);
        json_decref(dels[i].headers);
    }
    free(dels);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
