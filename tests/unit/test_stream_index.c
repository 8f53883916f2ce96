/* broker/stream/index.c on its own, without sockets or the stream thread: the routing index
 * offers a new event only to candidate subscriptions (those indexed under one of its values, and
 * the unindexed ones), so a subscription missing from a bucket would silently lose events. These
 * tests hold routing to the filter language's own answer, fh_filter_match. */
#include "fh_test.h"

#include "../../broker/stream/index.c"

/* ---- stand-ins for queue.c: what routing calls outside index.c ---------------------------- */

#define IX_MAX_SUBS 600

static int ix_hits[IX_MAX_SUBS]; /* deliveries per subscription (its id is its number) */
static int ix_offered;           /* candidates routing asked about */
static int ix_offered_indexed;   /* of those, subscriptions in a bucket (not unindexed) */

/* queue.c's test without its principal constraint: these connections are anonymous. */
int stream_sub_matches(const sub *u, const sev *e)
{
    ix_offered++;
    ix_offered_indexed += u->indexed >= 0;
    return fh_filter_match_facts(&u->filter, &e->facts);
}

int stream_deliver(fh_stream *s, sub *u, sev *e, int paced)
{
    (void)s;
    (void)e;
    (void)paced;
    ix_hits[atoi(u->id)]++;
    return 0;
}

/* ---- subscriptions and events ------------------------------------------------------------- */

static fh_contract *ix_contract;
static fh_json_doc ix_doc;
static conn ix_conn;

/* Opens a test on a fresh stream s (its index empty), or fails it. */
#define IX_OPEN(s)                                                                                 \
    fh_stream *s = ix_new();                                                                       \
    CHECK(s != NULL);                                                                              \
    if (!s)                                                                                        \
    return

static fh_stream *ix_new(void)
{
    char err[256];
    if (!ix_contract) {
        if (fh_contract_load(&ix_contract, err, sizeof(err))) {
            printf("  %s\n", err);
            return NULL;
        }
        fh_json_doc_init(&ix_doc, FH_EVENT_DOC_CAP(1 << 16));
    }
    fh_stream *s = calloc(1, sizeof(*s));
    if (s)
        s->next_seq = 1;
    return s;
}

/* Subscription number n with filter_json, live and in the index; NULL when the filter does not
 * parse. Removed and freed with ix_unsub. */
static sub *ix_sub(fh_stream *s, int n, const char *filter_json)
{
    char err[256];
    json_t *j = json_loads(filter_json, 0, NULL);
    sub *u = calloc(1, sizeof(*u));
    if (!j || !u || fh_filter_parse(j, &u->filter, err, sizeof(err))) {
        printf("  filter %s: %s\n", filter_json, j ? err : "not JSON");
        json_decref(j);
        if (u)
            fh_filter_free(&u->filter);
        free(u);
        return NULL;
    }
    json_decref(j);
    snprintf(u->id, sizeof(u->id), "%d", n);
    u->c = &ix_conn;
    u->state = SUB_LIVE;
    u->indexed = -2;
    stream_index_add(s, u);
    return u;
}

/* Frees a subscription already out of the index. */
static void ix_drop(sub *u)
{
    if (u)
        fh_filter_free(&u->filter);
    free(u);
}

static void ix_unsub(fh_stream *s, sub *u)
{
    if (u)
        stream_index_remove(s, u);
    ix_drop(u);
}

static void ix_free(fh_stream *s)
{
    stream_index_free(s);
    free(s);
}

/* 1 when u is still anywhere in the index (a bucket or the unindexed list). */
static int ix_listed(const fh_stream *s, const sub *u)
{
    for (size_t i = 0; i < s->idx.nwild; i++)
        if (s->idx.wild[i] == u)
            return 1;
    for (int b = 0; b < INDEX_BUCKETS; b++)
        for (const ientry *e = s->idx.buckets[b]; e; e = e->next)
            for (size_t i = 0; i < e->n; i++)
                if (e->items[i] == u)
                    return 1;
    return 0;
}

enum { EV_STARTED, EV_FINISHED, EV_WORKER, EV_CHANGE };

typedef struct ix_ev {
    const char *master, *builder, *branch, *owner, *worker;
    long long buildid;
    int results;
} ix_ev;

/* The members every build event has, from v (static buffer: one call per record). */
static const char *ix_build_part(const ix_ev *v)
{
    static char part[512];
    snprintf(part, sizeof(part),
             "\"buildrequestid\":9,\"buildid\":%lld,\"builder\":\"%s\",\"builderid\":12,"
             "\"branch\":\"%s\",\"revision\":\"abc\",\"repository\":\"r\",\"project\":"
             "\"p\",\"codebase\":\"\",\"owner\":\"%s\",\"number\":1",
             v->buildid, v->builder, v->branch, v->owner);
    return part;
}

/* A valid record of kind k with the values of v (the kinds without builds leave most out). */
static size_t ix_record(char *buf, size_t size, int k, const ix_ev *v)
{
    const char *type = k == EV_STARTED    ? "build.started"
                       : k == EV_FINISHED ? "build.finished"
                       : k == EV_WORKER   ? "worker.connected"
                                          : "change.new";
    int n = snprintf(buf, size,
                     "{\"specversion\":\"1.0\",\"id\":\"%s-1\",\"source\":\"buildbot://%s\","
                     "\"type\":\"%s\",\"time\":\"2026-11-22T05:01:02.113Z\",\"subject\":\"x/1\","
                     "\"datacontenttype\":\"application/json\",\"master\":\"%s\",\"seq\":1,"
                     "\"data\":",
                     v->master, v->master, type, v->master);
    if (k == EV_WORKER)
        n += snprintf(buf + n, size - (size_t)n, "{\"workerid\":7,\"name\":\"%s\"}}", v->worker);
    else if (k == EV_CHANGE)
        n += snprintf(buf + n, size - (size_t)n,
                      "{\"changeid\":4,\"author\":\"%s\",\"comments\":\"c\",\"files\":[],"
                      "\"when\":1795323655,\"category\":null,\"revlink\":\"\",\"branch\":\"%s\","
                      "\"revision\":\"abc\",\"repository\":\"r\",\"project\":\"p\","
                      "\"codebase\":\"\"}}",
                      v->owner, v->branch);
    else if (k == EV_STARTED)
        n += snprintf(buf + n, size - (size_t)n,
                      "{%s,\"worker\":\"%s\",\"started_at\":1795323662.1}}", ix_build_part(v),
                      v->worker);
    else
        n += snprintf(buf + n, size - (size_t)n,
                      "{%s,\"complete_at\":1795323901.45,\"results\":%d,\"state_string\":\"s\","
                      "\"duration_s\":1.5}}",
                      ix_build_part(v), v->results ? 2 : 0);
    return (size_t)n;
}

/* The stream's event for a record (as stream_sev_build makes it: facts and a seq), and, when ev
 * is given, the same record decoded for fh_filter_match. NULL when the record is not valid. */
static sev *ix_event(fh_stream *s, int k, const ix_ev *v, fh_event *ev)
{
    char buf[2048], err[256];
    size_t len = ix_record(buf, sizeof(buf), k, v);
    fh_event_view view;
    if (fh_event_check(ix_contract, &ix_doc, buf, len, sizeof(buf), &view, err, sizeof(err))) {
        printf("  record %s: %s\n", buf, err);
        return NULL;
    }
    sev *e = calloc(1, sizeof(*e));
    if (!e || fh_filter_facts_from_view(&view, &e->facts)) {
        free(e);
        return NULL;
    }
    atomic_init(&e->refs, 1);
    e->type = view.type;
    e->seq = s->next_seq++;
    if (ev && fh_event_decode(ix_contract, buf, len, sizeof(buf), ev, err, sizeof(err))) {
        printf("  record %s: %s\n", buf, err);
        sev_unref(e);
        return NULL;
    }
    return e;
}

/* Routes one record of kind k with v's values and returns how many subscriptions routing
 * offered it to; ix_hits counts the deliveries. */
static int ix_route(fh_stream *s, int k, const ix_ev *v)
{
    memset(ix_hits, 0, sizeof(ix_hits));
    ix_offered = 0;
    sev *e = ix_event(s, k, v, NULL);
    CHECK(e != NULL);
    if (e)
        stream_route(s, e);
    sev_unref(e);
    return ix_offered;
}

/* ix_route for a build.started of builder b on branch (other values fixed). */
static int ix_route_builder(fh_stream *s, const char *b, const char *branch)
{
    ix_ev v = {"m1", b, branch, "alice", "w1", 5, 0};
    return ix_route(s, EV_STARTED, &v);
}

/* Unsubscribes the n subscriptions of u and frees the stream. */
static void ix_close(fh_stream *s, sub **u, int n)
{
    for (int i = 0; i < n; i++)
        ix_unsub(s, u[i]);
    ix_free(s);
}

/* ---- tests -------------------------------------------------------------------------------- */

TEST(stream_index_builder_filter_receives_only_that_builder)
{
    IX_OPEN(s);
    sub *u = ix_sub(s, 0, "{\"builder\":\"x\"}");
    CHECK(u && u->indexed == FH_F_BUILDER && s->idx.field_used[FH_F_BUILDER] == 1 &&
          s->idx.nwild == 0);
    ix_route_builder(s, "x", "trunk");
    CHECK(ix_hits[0] == 1);
    /* another builder does not even reach the subscription's filter: the index passes it by */
    CHECK(ix_route_builder(s, "y", "trunk") == 0 && ix_hits[0] == 0);
    CHECK(ix_route_builder(s, "xx", "trunk") == 0 && ix_hits[0] == 0);
    ix_route_builder(s, "x", "dev");
    CHECK(ix_hits[0] == 1);
    ix_unsub(s, u);
    ix_free(s);
}

TEST(stream_index_fields_and_lists_or_and_globs_match)
{
    IX_OPEN(s);
    sub *u[6] = {
        ix_sub(s, 0, "{\"builder\":\"x\",\"branch\":\"trunk\"}"), /* AND */
        ix_sub(s, 1, "{\"builder\":[\"x\",\"y\"]}"),              /* OR */
        ix_sub(s, 2, "{\"builder\":\"l*x\"}"),                    /* glob: unindexed */
        ix_sub(s, 3, "{\"builder\":\"l*\",\"branch\":[\"dev\",\"rel\"]}"),
        ix_sub(s, 4, "{\"buildid\":5,\"builder\":\"*\"}"), /* an integer field, indexed */
        ix_sub(s, 5, "{\"buildid\":\"6\"}"),               /* integers also come as text */
    };
    for (int i = 0; i < 6; i++)
        CHECK(u[i] != NULL);
    CHECK(u[0] && u[0]->indexed == FH_F_BUILDER);
    CHECK(u[2] && u[2]->indexed == -1);
    CHECK(u[3] && u[3]->indexed == FH_F_BRANCH); /* the exact clause, not the glob */
    CHECK(u[4] && u[4]->indexed == FH_F_BUILDID);
    static const struct {
        const char *builder, *branch;
        int want[6];
    } cases[] = {
        {"x", "trunk", {1, 1, 0, 0, 1, 0}}, {"x", "dev", {0, 1, 0, 0, 1, 0}},
        {"y", "trunk", {0, 1, 0, 0, 1, 0}}, {"linux", "trunk", {0, 0, 1, 0, 1, 0}},
        {"lx", "dev", {0, 0, 1, 1, 1, 0}},  {"lin", "rel", {0, 0, 0, 1, 1, 0}},
        {"z", "main", {0, 0, 0, 0, 1, 0}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        ix_route_builder(s, cases[c].builder, cases[c].branch);
        for (int i = 0; i < 6; i++)
            if (ix_hits[i] != cases[c].want[i]) {
                printf("  builder %s branch %s: sub %d got %d\n", cases[c].builder, cases[c].branch,
                       i, ix_hits[i]);
                CHECK(ix_hits[i] == cases[c].want[i]);
            }
    }
    /* buildid 6 as the number it is in the event */
    ix_ev v = {"m1", "x", "trunk", "alice", "w1", 6, 0};
    ix_route(s, EV_FINISHED, &v);
    CHECK(ix_hits[5] == 1 && ix_hits[4] == 0 && ix_hits[0] == 1);
    ix_close(s, u, 6);
}

TEST(stream_index_empty_filter_receives_everything)
{
    IX_OPEN(s);
    sub *u = ix_sub(s, 0, "{}");
    CHECK(u && u->indexed == -1 && s->idx.nwild == 1);
    ix_ev v = {"m2", "b", "dev", "bob", "w9", 77, 1};
    for (int k = EV_STARTED; k <= EV_CHANGE; k++) {
        ix_route(s, k, &v);
        CHECK(ix_hits[0] == 1);
    }
    ix_unsub(s, u);
    CHECK(s->idx.nwild == 0);
    ix_free(s);
}

TEST(stream_index_unsubscribe_removes_it_from_every_bucket)
{
    IX_OPEN(s);
    sub *keep = ix_sub(s, 1, "{\"builder\":[\"x\",\"y\"]}");
    sub *u = ix_sub(s, 0, "{\"builder\":[\"x\",\"y\",\"z\"],\"branch\":\"trunk\"}");
    sub *w = ix_sub(s, 2, "{\"branch\":\"t*\"}");
    CHECK(keep && u && w && ix_listed(s, u) && ix_listed(s, w));
    if (!keep || !u || !w) {
        ix_unsub(s, keep);
        ix_unsub(s, u);
        ix_unsub(s, w);
        ix_free(s);
        return;
    }
    CHECK(s->idx.field_used[FH_F_BUILDER] == 2);
    /* out of the index but still allocated: a delivery would be counted, not a use after free */
    stream_index_remove(s, u);
    stream_index_remove(s, w);
    CHECK(!ix_listed(s, u) && !ix_listed(s, w));
    CHECK(ix_listed(s, keep));
    CHECK(s->idx.field_used[FH_F_BUILDER] == 1 && s->idx.nwild == 0);
    const char *bs[] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++) {
        ix_route_builder(s, bs[i], "trunk");
        CHECK(ix_hits[0] == 0 && ix_hits[2] == 0);
        CHECK(ix_hits[1] == (i < 2));
    }
    ix_drop(u);
    ix_drop(w);
    ix_unsub(s, keep);
    CHECK(s->idx.field_used[FH_F_BUILDER] == 0);
    CHECK(ix_route_builder(s, "x", "trunk") == 0);
    ix_free(s); /* the emptied entries go here; ASan reports anything left over */
}

/* Entries held in the index's buckets. */
static size_t ix_entries(const fh_stream *s)
{
    size_t n = 0;
    for (int b = 0; b < INDEX_BUCKETS; b++)
        for (const ientry *e = s->idx.buckets[b]; e; e = e->next)
            n++;
    return n;
}

TEST(stream_index_entry_goes_with_its_last_subscription)
{
    IX_OPEN(s);
    sub *a = ix_sub(s, 0, "{\"buildid\":[7,8]}");
    sub *b = ix_sub(s, 1, "{\"buildid\":8}");
    CHECK(a && b);
    if (!a || !b) {
        ix_unsub(s, a);
        ix_unsub(s, b);
        ix_free(s);
        return;
    }
    CHECK(ix_entries(s) == 2);
    ix_unsub(s, a); /* 7 had a alone; 8 still has b */
    CHECK(ix_entries(s) == 1 && ix_listed(s, b));
    ix_unsub(s, b);
    CHECK(ix_entries(s) == 0); /* values seen once (build ids) do not pile up */
    ix_free(s);
}

TEST(stream_index_many_subscriptions_on_one_value_each_get_it_once)
{
    IX_OPEN(s);
    enum { N = 500 };
    static sub *u[N];
    for (int i = 0; i < N; i++)
        CHECK((u[i] = ix_sub(s, i, "{\"builder\":\"x\"}")) != NULL);
    CHECK(s->idx.field_used[FH_F_BUILDER] == N);
    CHECK(ix_route_builder(s, "x", "trunk") == N);
    int once = 1;
    for (int i = 0; i < N; i++)
        once &= ix_hits[i] == 1;
    CHECK(once);
    CHECK(ix_route_builder(s, "y", "trunk") == 0);
    for (int i = 0; i < N; i += 2) {
        ix_unsub(s, u[i]);
        u[i] = NULL;
    }
    CHECK(ix_route_builder(s, "x", "trunk") == N / 2);
    int odd_only = 1;
    for (int i = 0; i < N; i++)
        odd_only &= ix_hits[i] == (i % 2);
    CHECK(odd_only);
    ix_close(s, u, N);
}

TEST(stream_index_event_lacking_a_filtered_field_does_not_match)
{
    IX_OPEN(s);
    sub *u[3] = {ix_sub(s, 0, "{\"builder\":\"x\"}"), ix_sub(s, 1, "{\"builder\":\"*\"}"),
                 ix_sub(s, 2, "{\"results\":[0,2]}")};
    CHECK(u[0] && u[1] && u[2]);
    ix_ev v = {"m1", "x", "trunk", "alice", "x", 5, 1};
    /* a worker named x and a change: neither has a builder; build.started has no results */
    for (int k = EV_STARTED; k <= EV_CHANGE; k++) {
        ix_route(s, k, &v);
        int build = k == EV_STARTED || k == EV_FINISHED;
        CHECK(ix_hits[0] == build && ix_hits[1] == build);
        CHECK(ix_hits[2] == (k == EV_FINISHED));
    }
    ix_close(s, u, 3);
}

TEST(stream_index_routes_only_to_live_subscriptions)
{
    IX_OPEN(s);
    sub *u[3] = {ix_sub(s, 0, "{\"builder\":\"x\"}"), ix_sub(s, 1, "{\"builder\":\"x\"}"),
                 ix_sub(s, 2, "{}")};
    CHECK(u[0] && u[1] && u[2]);
    if (u[0] && u[1] && u[2]) {
        u[0]->state = SUB_REPLAY; /* replay_step delivers its events from the ring */
        u[2]->state = SUB_CATCHUP;
        ix_route_builder(s, "x", "trunk");
        CHECK(ix_hits[0] == 0 && ix_hits[1] == 1 && ix_hits[2] == 0);
        /* the event a subscription was last routed (u->mark) is not delivered again */
        u[0]->state = SUB_LIVE;
        u[0]->mark = s->next_seq;
        ix_route_builder(s, "x", "trunk");
        CHECK(ix_hits[0] == 0 && ix_hits[1] == 1);
    }
    ix_close(s, u, 3);
}

/* ---- differential: the index against fh_filter_match ------------------------------------- */

static unsigned long long ix_rng = 0x9e3779b97f4a7c15ull;

static unsigned ix_rand(unsigned n)
{
    ix_rng ^= ix_rng << 13;
    ix_rng ^= ix_rng >> 7;
    ix_rng ^= ix_rng << 17;
    return (unsigned)(ix_rng % n);
}

static const char *ix_pick(const char *const *pool, size_t n)
{
    return pool[ix_rand((unsigned)n)];
}

#define PICK(pool) ix_pick(pool, sizeof(pool) / sizeof(pool[0]))

static const char *const ix_builders[] = {"x", "y", "lx", "linux", "mac"};
static const char *const ix_branches[] = {"trunk", "dev", "rel-1"};
static const char *const ix_people[] = {"alice", "bob"};
static const char *const ix_masters[] = {"m1", "m2"};
static const char *const ix_workers[] = {"w1", "w2", "x"};

/* Filter values: the event pools plus globs and values no event has. */
static const char *const ix_fbuilders[] = {"x", "y", "lx", "linux", "mac", "l*", "*x", "*", "zz"};
static const char *const ix_fbranches[] = {"trunk", "dev", "rel-1", "rel-*", "*", "main"};
static const char *const ix_fpeople[] = {"alice", "bob", "a*", "carol"};
static const char *const ix_fmasters[] = {"m1", "m2", "m*"};
static const char *const ix_fworkers[] = {"w1", "w2", "x", "w*"};
static const char *const ix_ftypes[] = {"\"build.started\"", "\"build.finished\"",
                                        "\"worker.connected\"", "\"change.new\"", "\"build.*\""};
static const char *const ix_fnums[] = {"5", "6", "\"7\""};
static const char *const ix_fresults[] = {"0", "2", "1"};

/* A random filter of up to four keys, each a value or a list of up to three. */
static void ix_random_filter(char *buf, size_t size)
{
    static const char *const keys[] = {"builder", "branch", "owner",   "master",
                                       "worker",  "type",   "buildid", "results"};
    const char *const *pools[] = {ix_fbuilders, ix_fbranches, ix_fpeople, ix_fmasters,
                                  ix_fworkers,  ix_ftypes,    ix_fnums,   ix_fresults};
    const size_t sizes[] = {9, 6, 4, 3, 4, 5, 3, 3};
    int quoted[] = {1, 1, 1, 1, 1, 0, 0, 0};
    unsigned used = 0;
    size_t n = (size_t)snprintf(buf, size, "{");
    unsigned nkeys = ix_rand(5);
    for (unsigned k = 0; k < nkeys; k++) {
        unsigned f = ix_rand(8);
        if (used & (1u << f))
            continue;
        used |= 1u << f;
        unsigned nv = 1 + ix_rand(3), list = nv > 1 || ix_rand(2);
        n += (size_t)snprintf(buf + n, size - n, "%s\"%s\":%s", used != (1u << f) ? "," : "",
                              keys[f], list ? "[" : "");
        for (unsigned i = 0; i < nv; i++)
            n += (size_t)snprintf(buf + n, size - n, quoted[f] ? "%s\"%s\"" : "%s%s", i ? "," : "",
                                  ix_pick(pools[f], sizes[f]));
        n += (size_t)snprintf(buf + n, size - n, "%s", list ? "]" : "");
    }
    snprintf(buf + n, size - n, "}");
}

TEST(stream_index_routes_exactly_the_subscriptions_fh_filter_match_accepts)
{
    enum { NSUBS = 300, NEVENTS = 400 };
    IX_OPEN(s);
    static sub *u[NSUBS];
    char f[512];
    for (int i = 0; i < NSUBS; i++) {
        ix_random_filter(f, sizeof(f));
        CHECK((u[i] = ix_sub(s, i, f)) != NULL);
    }
    int indexed = 0, wild = 0, delivered = 0, offered = 0, pairs = 0, wrong = 0;
    for (int i = 0; i < NSUBS; i++) {
        indexed += u[i] && u[i]->indexed >= 0;
        wild += u[i] && u[i]->indexed == -1;
    }
    for (int n = 0; n < NEVENTS; n++) {
        if (n == NEVENTS / 2) /* half way: a third of the subscriptions leave */
            for (int i = 0; i < NSUBS; i += 3) {
                ix_unsub(s, u[i]);
                u[i] = NULL;
            }
        ix_ev v = {PICK(ix_masters), PICK(ix_builders), PICK(ix_branches), PICK(ix_people),
                   PICK(ix_workers), 5 + ix_rand(3),    (int)ix_rand(2)};
        fh_event ev;
        memset(ix_hits, 0, sizeof(ix_hits));
        ix_offered_indexed = 0;
        sev *e = ix_event(s, (int)ix_rand(4), &v, &ev);
        CHECK(e != NULL);
        if (!e)
            continue;
        stream_route(s, e);
        offered += ix_offered_indexed;
        for (int i = 0; i < NSUBS; i++)
            pairs += u[i] && u[i]->indexed >= 0;
        for (int i = 0; i < NSUBS; i++) {
            int want = u[i] && fh_filter_match(&u[i]->filter, &ev);
            delivered += ix_hits[i];
            if (ix_hits[i] != want && wrong++ < 5) {
                fh_buf b;
                fh_buf_init(&b, 4096);
                fh_event_to_json(&ev, &b);
                printf("  sub %d got %d, fh_filter_match says %d; event %s\n", i, ix_hits[i], want,
                       b.data);
                fh_buf_free(&b);
            }
        }
        fh_event_clear(&ev);
        sev_unref(e);
    }
    CHECK(wrong == 0);
    /* the run means something: both kinds of subscription, matches, and the index narrowing
     * (an indexed subscription is offered only events with one of its values) */
    CHECK(indexed > NSUBS / 4 && wild > NSUBS / 10);
    CHECK(delivered > NEVENTS);
    CHECK(offered * 3 < pairs);
    for (int i = 0; i < NSUBS; i++)
        ix_unsub(s, u[i]);
    for (int fld = 0; fld < FH_F__COUNT; fld++)
        CHECK(s->idx.field_used[fld] == 0);
    CHECK(s->idx.nwild == 0);
    ix_free(s);
}

/* The same index over other items (the catch-up thread's jobs): each_ offers an event to the
 * items indexed under its values and the unindexed ones, and to nothing removed. */
static int ix_item_seen[3];

static void ix_item_cb(void *item, sev *e, void *ctx)
{
    (void)e;
    (void)ctx;
    ix_item_seen[(int *)item - (int *)ctx]++;
}

TEST(stream_findex_over_other_items_offers_only_candidates)
{
    IX_OPEN(s);
    static const char *const flt[3] = {"{\"builder\":\"linux\"}", "{\"builder\":\"mac\"}",
                                       "{\"type\":\"build.*\"}"};
    int items[3] = {0, 1, 2}, how[3];
    fh_filter f[3];
    findex *x = calloc(1, sizeof(*x));
    CHECK(x != NULL);
    for (int i = 0; x && i < 3; i++) {
        char err[256];
        json_t *j = json_loads(flt[i], 0, NULL);
        CHECK(fh_filter_parse(j, &f[i], err, sizeof(err)) == FH_OK);
        json_decref(j);
        how[i] = stream_findex_add(x, &items[i], &f[i]);
    }
    CHECK(x && how[0] == FH_F_BUILDER && how[1] == FH_F_BUILDER && how[2] == -1);
    ix_ev v = {"m1", "linux", "main", "alice", "w1", 5, 0};
    sev *e = ix_event(s, EV_STARTED, &v, NULL);
    CHECK(e != NULL);
    if (x && e) {
        memset(ix_item_seen, 0, sizeof(ix_item_seen));
        stream_findex_each(x, e, ix_item_cb, items);
        CHECK(ix_item_seen[0] == 1 && ix_item_seen[1] == 0 && ix_item_seen[2] == 1);
        stream_findex_remove(x, &items[0], &f[0], how[0]);
        stream_findex_remove(x, &items[2], &f[2], how[2]);
        memset(ix_item_seen, 0, sizeof(ix_item_seen));
        stream_findex_each(x, e, ix_item_cb, items);
        CHECK(ix_item_seen[0] == 0 && ix_item_seen[1] == 0 && ix_item_seen[2] == 0);
    }
    sev_unref(e);
    for (int i = 0; x && i < 3; i++)
        fh_filter_free(&f[i]);
    if (x)
        stream_findex_free(x);
    free(x);
    ix_free(s);
}
