/* firehose-sim: realistic, self-consistent Buildbot event streams as NDJSON on stdout, ready for
 * firehose-emit. A discrete-event simulation: changes land on branches and schedule build
 * requests on builders; requests wait in the queue, are claimed, builds run their steps, steps
 * write logs in chunks, set properties and finish; a RETRY unclaims the request and it runs
 * again; a few requests are cancelled while pending; workers disconnect and come back.
 *
 * Deterministic for a seed: the same options give the same bytes, whatever the pacing. Pacing
 * only decides when each event is written: flat out (default), at a fixed rate (--rate), or on
 * the simulated clock (--realtime, optionally faster with --speed).
 *
 * History (--history S): the simulation starts S seconds before --start and writes those seconds
 * flat out, whatever the pacing, without log events and at their own job rate; the pacing applies
 * from --start on. One world and one clock throughout, so ids, build numbers and seq go on across
 * the boundary.
 *
 * Memory is bounded: at most sim.max_inflight build requests are alive at once; arrivals past
 * that are not simulated and are counted in the closing summary. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "fh_ci.h"
#include "fh_config.h"
#include "fh_testres.h"
#include "fh_util.h"

#define EXIT_WRITE 1
#define EXIT_USAGE 64
#define OUT_FLUSH_BYTES (256 * 1024)
#define MAX_BUILDERS 100000
#define MAX_MASTERS 1000
#define MAX_WORKERS 20000
#define MAX_PROJECTS 3 /* projects of a profile at most */

static const fh_cfg_opt sim_opts[] = {
    {"sim.profile", "profile", FH_CFG_STR, "demo", 0, 0,
     "traffic profile: demo (small, fast builds), mozilla-2010 (the seeds' figures: ~130 jobs/h, "
     "~4,773 steps/h, log traffic at 10 Mbit/s) or mixed (one repository built by a Buildbot "
     "master and by GitHub Actions, its events as the GitHub ingest makes them)"},
    {"sim.scale", "scale", FH_CFG_INT, "1", 1, 10000,
     "multiplies the profile's job and log rates (and its builders and masters, within their "
     "caps)"},
    {"sim.seed", "seed", FH_CFG_INT, "1", 0, 2147483647, "random seed; same seed, same stream"},
    {"sim.count", "count", FH_CFG_INT, "0", 0, 9000000000000000000LL,
     "stop after this many events (0: no limit)"},
    {"sim.duration_s", "duration", FH_CFG_INT, "0", 0, 31536000,
     "stop after this many wall-clock seconds (0: no limit)"},
    {"sim.rate", "rate", FH_CFG_INT, "0", 0, 100000000,
     "write this many events per second (0: as fast as possible, unless --realtime)"},
    {"sim.realtime", "realtime", FH_CFG_BOOL, "false", 0, 0,
     "write each event when the wall clock reaches its simulated time (see --speed)"},
    {"sim.speed", "speed", FH_CFG_INT, "1", 1, 1000000,
     "with --realtime: simulated seconds per second"},
    {"sim.start", "start", FH_CFG_STR, "2026-11-22T05:00:00.000Z", 0, 0,
     "simulated time of the first event: RFC 3339, or \"now\""},
    {"sim.masters", "masters", FH_CFG_INT, "0", 0, MAX_MASTERS, "masters (0: the profile's)"},
    {"sim.builders", "builders", FH_CFG_INT, "0", 0, MAX_BUILDERS, "builders (0: the profile's)"},
    {"sim.logs", "logs", FH_CFG_BOOL, "true", 0, 0,
     "emit log.* events (--logs=false: status only)"},
    {"sim.log_chunk_bytes", "log-chunk-bytes", FH_CFG_INT, "0", 0, 60000,
     "approximate content bytes per log.chunk (0: the profile's)"},
    {"sim.tests", "tests", FH_CFG_INT, "0", 0, 100000,
     "tests in each test step's test result set (steps named *test*): test.results chunks and a "
     "test.result_set before step.finished; a few tests are flaky (failed, then passed on retry "
     "in the same set); 0: none"},
    {"sim.test_chunk", "test-chunk", FH_CFG_INT, "500", 1, 500,
     "results per test.results event at most (also cut at 256 KiB)"},
    {"sim.max_inflight", NULL, FH_CFG_INT, "200000", 100, 10000000,
     "cap on build requests alive at once; arrivals past it are skipped and counted"},
    {"sim.history_s", "history", FH_CFG_INT, "0", 0, 31536000,
     "first simulate this many seconds before --start, written flat out and status only (no log "
     "events), then go on from --start at the chosen pacing; stderr gets a line when the history "
     "is written"},
    {"sim.history_jobs_per_hour", "history-jobs-per-hour", FH_CFG_INT, "0", 0, 100000000,
     "job rate during --history (0: the profile's, times --scale)"},
    {"sim.quiet", "q", FH_CFG_BOOL, "false", 0, 0, "print no summary (nor the history line)"},
};

/* ---- projects and profiles ----------------------------------------------------------------- */

typedef struct project {
    const char *name, *repository, *codebase, *revlink;
    const char *branches[3];
    int weights[3];
    const char *builder_prefix; /* builder names start with it; NULL: the name */
} project;

static const project projects[] = {
    {"chromium",
     "https://git.example.org/chromium/src.git",
     "",
     "https://git.example.org/chromium/src/+/",
     {"main", "refs/branch-heads/6723", "try"},
     {6, 1, 4},
     NULL},
    {"skia",
     "https://git.example.org/skia.git",
     "skia",
     "https://git.example.org/skia/+/",
     {"main", "try", NULL},
     {3, 2, 0},
     NULL},
    {"firefox",
     "https://hg.example.org/mozilla-central",
     "",
     "https://hg.example.org/mozilla-central/rev/",
     {"default", "try", "release"},
     {4, 3, 1},
     NULL},
};

/* The mixed profile's one repository, built by a Buildbot master and by GitHub Actions. Its
 * repository and project are what the GitHub ingest writes for it by default (html_url,
 * full_name), so both systems' builds meet in one revision. */
static const project mixed_projects[] = {
    {"acme-ci/widget",
     "https://github.com/acme-ci/widget",
     "",
     "https://github.com/acme-ci/widget/commit/",
     {"main", "release/2026.11", "try"},
     {6, 1, 2},
     "widget"},
};

typedef struct profile {
    const char *name;
    int masters, builders;
    double jobs_per_hour;
    int steps_min, steps_max;       /* steps per build, uniform */
    double step_s;                  /* mean step duration (exponential) */
    double wait_s;                  /* mean time a request waits in the queue (exponential) */
    double log_bytes_per_s;         /* all log content together, at scale 1 */
    int chunk_bytes;                /* content per log.chunk */
    int requests_min, requests_max; /* build requests per change */
    const project *projects;        /* the repositories changes land in */
    int nprojects;
    int github; /* 1: GitHub Actions also builds every change but try (workflow runs, jobs) */
} profile;

static const profile profiles[] = {
    /* Small and quick, so `make run` shows builds start and finish within a minute. */
    {"demo", 3, 24, 1200, 5, 9, 3.0, 8.0, 60000, 600, 1, 4, projects, 3, 0},
    /* The seeds: 6-10 masters, ~130 jobs/h, ~4,773 steps/h (36.7 steps a job), log traffic at
     * 10 Mbit/s (kept up as a sustained rate, the peak of the posts). Step time is chosen so a
     * build lasts about an hour, as 2010's builds and test runs did. */
    {"mozilla-2010", 8, 120, 130, 30, 44, 100.0, 300.0, 1250000, 4000, 4, 16, projects, 3, 0},
    /* One repository built by one Buildbot master (6 builders) and by GitHub Actions (two
     * workflows, four jobs, for every change but try), at the demo's pace, so pending, running
     * and last-green show both systems side by side. */
    {"mixed", 1, 6, 600, 4, 8, 4.0, 8.0, 30000, 600, 1, 3, mixed_projects, 1, 1},
};

/* ---- deterministic randomness (xoshiro256**, seeded by splitmix64) ------------------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [lo, hi]. */
static int rng_int(rng *r, int lo, int hi)
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Exponential with the given mean, in milliseconds, at least 1. */
static int64_t rng_exp_ms(rng *r, double mean_s)
{
    double ms = -log(1.0 - rng_unit(r)) * mean_s * 1000.0;
    return ms < 1.0 ? 1 : (int64_t)ms;
}

/* ---- the world ----------------------------------------------------------------------------- */

static const char *const platforms[] = {"linux-x64", "linux-arm64", "mac-x64",  "mac-arm64",
                                        "win-x64",   "android-arm", "ios-arm64"};
static const char *const variants[] = {"rel", "dbg", "asan", "tsan", "tests", "perf", "msan"};
static const char *const authors[] = {"alice", "bob",    "carol",  "dave",   "erin",  "frank",
                                      "grace", "heidi",  "ivan",   "judy",   "oscar", "peggy",
                                      "trent", "victor", "walter", "mallory"};
static const char *const dirs[] = {
    "base",   "net/http",    "content/browser", "gpu/command_buffer", "v8/src/compiler",
    "ui/gfx", "media/audio", "js/src/jit",      "layout/generic",     "netwerk/protocol/http"};
static const char *const suites[] = {"FileUtilTest",  "HttpCacheTest", "URLParserTest",
                                     "SchedulerTest", "IPCTest",       "WebSocketTest"};
static const char *const step_names[] = {
    "git",           "set_build_properties", "gclient runhooks", "generate_build_files",
    "compile",       "check_binary_size",    "base_unittests",   "net_unittests",
    "browser_tests", "upload build"};
#define NSTEP_NAMES (sizeof(step_names) / sizeof(step_names[0]))
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

enum { SUCCESS = 0, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED };
static const char *const build_state[] = {"build successful", "warnings", "failed",   "skipped",
                                          "exception",        "retry",    "cancelled"};

typedef struct builder {
    char name[64];
    int id, project, next_number;
} builder;

typedef struct worker {
    char name[48];
    int id, master, connected;
} worker;

typedef struct master {
    char name[32];
    long long seq;
} master;

enum job_state {
    J_ARRIVAL = 0, /* the change process: lands changes, spawns requests */
    J_FLAP,        /* the worker process: disconnects and reconnects workers */
    J_NEW,
    J_CANCEL,
    J_CLAIM,
    J_BSTART,
    J_PROPS,
    J_STEP_START,
    J_LOG_NEW,
    J_LOG_CHUNK,
    J_LOG_FIN,
    J_STEP_FIN,
    J_BFIN,
    J_UNCLAIM,
    J_COMPLETE,
    J_GH_RUN,    /* GitHub Actions: a workflow run is requested; it queues its jobs */
    J_GH_QUEUED, /* a job is queued for a runner */
    J_GH_START,  /* a runner takes it */
    J_GH_DONE,   /* it completes (or is cancelled while queued) */
};

#define GH_STEPS 5

typedef struct job {
    int64_t t;      /* simulated time of its next event, ms */
    uint64_t order; /* tie-break for equal times, so the heap order is deterministic */
    enum job_state state;
    long long brid, buildid, buildsetid, stepid, logid;
    int builder, master, sched_master, branch, owner, worker;
    int cancel, nsteps, step, step_results, build_results, failed, chunks_left, line, logs_left;
    int64_t submitted, started, step_started, step_end;
    char revision[41];
    int flap_worker; /* J_FLAP: the worker now disconnected, -1 when none */
    /* GitHub Actions (the mixed profile): the workflow (J_GH_RUN) or job definition, ids as
     * GitHub numbers them, the outcome drawn at the start and each step's end */
    int gh_def, gh_outcome;
    long long gh_run, gh_job, gh_runner;
    int64_t change_t, gh_step_end[GH_STEPS];
    char gh_message[160];
} job;

typedef struct sim {
    profile p;
    rng r;
    int logs;
    int tests, test_chunk; /* --tests, --test-chunk */
    long long ids_testset;
    int64_t live_from; /* --start: before it is history (status only, its own job rate) */
    double history_jobs_per_hour;
    int chunk_bytes;
    double chunk_interval_s;    /* per build: one chunk every this many seconds */
    double requests_per_change; /* expected, so changes arrive at the rate that gives jobs/h */
    builder *builders;
    int nbuilders;
    int proj_first[MAX_PROJECTS], proj_count[MAX_PROJECTS]; /* each project's builders */
    worker *workers;
    int nworkers;
    master *masters;
    int nmasters;
    long long ids_change, ids_buildset, ids_br, ids_build, ids_step, ids_log;
    long long gh_seq, gh_run, gh_job, gh_runner, gh_unmapped; /* the mixed profile's GitHub side */
    job **heap;
    size_t nheap, capheap;
    uint64_t order;
    long long inflight, max_inflight, skipped, jobs_done;
    fh_buf out;     /* NDJSON not yet written to stdout */
    fh_buf content; /* scratch for one log chunk's text */
    size_t event_start;
    int first;
    int64_t cur_t, last_t; /* simulated time of the open event, of the newest one written */
    long long events, bytes, log_bytes;
    int write_failed;
} sim;

/* ---- the event queue: a binary min-heap on (t, order) -------------------------------------- */

static int job_before(const job *a, const job *b)
{
    return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static int heap_push(sim *s, job *j)
{
    if (s->nheap == s->capheap) {
        job **h = fh_grow(s->heap, &s->capheap, sizeof(*h), 1024);
        if (!h)
            return -1;
        s->heap = h;
    }
    j->order = s->order++;
    size_t i = s->nheap++;
    while (i > 0 && job_before(j, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = j;
    return 0;
}

static job *heap_pop(sim *s)
{
    if (!s->nheap)
        return NULL;
    job *top = s->heap[0], *last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && job_before(s->heap[c + 1], s->heap[c]))
            c++;
        if (!job_before(s->heap[c], last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

/* ---- writing events ------------------------------------------------------------------------ */

/* Data members are written comma-led after the first; event_open resets the flag. */
static void sep(sim *s)
{
    if (s->first)
        s->first = 0;
    else
        fh_buf_append(&s->out, ",", 1);
}

static void put_epoch(sim *s, const char *key, int64_t ms)
{
    sep(s);
    fh_buf_printf(&s->out, "\"%s\":%lld.%03lld", key, (long long)(ms / 1000),
                  (long long)(ms % 1000));
}

static void put_str(sim *s, const char *key, const char *v)
{
    sep(s);
    fh_buf_printf(&s->out, "\"%s\":", key);
    fh_buf_json_str(&s->out, v);
}

static void put_int(sim *s, const char *key, long long v)
{
    sep(s);
    fh_buf_printf(&s->out, "\"%s\":%lld", key, v);
}

/* Opens an event: the envelope up to "data":{. The caller writes data's members with the put_*
 * helpers (raw fh_buf_printf only for members that start with a comma, never the first), then
 * calls event_end. The id is a UUID v4 drawn from the seeded generator, so it repeats with the
 * seed. */
static void event_open(sim *s, int64_t t, int m, const char *type, const char *subject)
{
    char ts[32], id[37];
    uint64_t a = rng_next(&s->r), b = rng_next(&s->r);
    snprintf(id, sizeof(id), "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
             (unsigned long long)(b & 0xffffffffffffULL));
    fh_time_rfc3339(t, ts, sizeof(ts));
    s->masters[m].seq++;
    s->event_start = s->out.len;
    s->cur_t = t;
    s->first = 1;
    fh_buf_printf(
        &s->out,
        "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"buildbot://%s\",\"type\":\"%s\","
        "\"time\":\"%s\",\"subject\":\"%s\",\"datacontenttype\":\"application/json\","
        "\"master\":\"%s\",\"seq\":%lld,\"data\":{",
        id, s->masters[m].name, type, ts, subject, s->masters[m].name, s->masters[m].seq);
}

static void event_end(sim *s)
{
    fh_buf_append(&s->out, "}}\n", 3);
    s->last_t = s->cur_t;
    s->events++;
    s->bytes += (long long)(s->out.len - s->event_start);
}

static int flush_out(sim *s)
{
    size_t off = 0;
    while (off < s->out.len) {
        ssize_t n = write(STDOUT_FILENO, s->out.data + off, s->out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->write_failed = n < 0 ? errno : EIO;
            break;
        }
        off += (size_t)n;
    }
    fh_buf_reset(&s->out);
    return s->write_failed ? -1 : 0;
}

static void put_context(sim *s, const job *j, int with_build)
{
    const builder *b = &s->builders[j->builder];
    const project *pr = &s->p.projects[b->project];
    put_int(s, "buildrequestid", j->brid);
    if (with_build)
        put_int(s, "buildid", j->buildid);
    put_str(s, "builder", b->name);
    put_int(s, "builderid", b->id);
    put_str(s, "branch", pr->branches[j->branch]);
    put_str(s, "revision", j->revision);
    put_str(s, "repository", pr->repository);
    put_str(s, "project", pr->name);
    put_str(s, "codebase", pr->codebase);
    if (j->owner >= 0) {
        char who[64];
        snprintf(who, sizeof(who), "%s@example.org", authors[j->owner]);
        put_str(s, "owner", who);
    } else {
        put_str(s, "owner", "");
    }
}

/* Opens a request-scoped event (subject buildrequests/N) and writes its context. */
static void open_request_event(sim *s, const job *j, int64_t t, int m, const char *type,
                               int with_build)
{
    char subject[48];
    snprintf(subject, sizeof(subject), "buildrequests/%lld", j->brid);
    event_open(s, t, m, type, subject);
    put_context(s, j, with_build);
}

/* Opens a build-scoped event (subject builds/N) and writes its context. */
static void open_build_event(sim *s, const job *j, int64_t t, const char *type)
{
    char subject[48];
    snprintf(subject, sizeof(subject), "builds/%lld", j->buildid);
    event_open(s, t, j->master, type, subject);
    put_context(s, j, 1);
}

/* Realistic stdio lines with Buildbot's stream letter in front (o stdout, e stderr, h header). */
static void log_content(sim *s, const char *step, int lines_max, fh_buf *c, int *nlines)
{
    *nlines = 0;
    fh_buf_reset(c);
    while ((int)c->len < s->chunk_bytes && *nlines < lines_max) {
        double r = rng_unit(&s->r);
        const char *d = dirs[rng_int(&s->r, 0, NELEM(dirs) - 1)];
        if (strcmp(step, "compile") == 0) {
            if (r < 0.92)
                fh_buf_printf(c, "o[%d/41234] CXX obj/%s/unit_%d.o\n", rng_int(&s->r, 1, 41234), d,
                              rng_int(&s->r, 1, 999));
            else
                fh_buf_printf(c,
                              "e../../%s/file_%d.cc:%d:%d: warning: unused variable 'tmp' "
                              "[-Wunused-variable]\n",
                              d, rng_int(&s->r, 1, 500), rng_int(&s->r, 1, 3000),
                              rng_int(&s->r, 1, 80));
        } else if (strstr(step, "test")) {
            const char *suite = suites[rng_int(&s->r, 0, NELEM(suites) - 1)];
            int n = rng_int(&s->r, 1, 300);
            if (r < 0.5)
                fh_buf_printf(c, "o[ RUN      ] %s.Case%d\n", suite, n);
            else if (r < 0.97)
                fh_buf_printf(c, "o[       OK ] %s.Case%d (%d ms)\n", suite, n,
                              rng_int(&s->r, 0, 2500));
            else
                fh_buf_printf(c, "o[  FAILED  ] %s.Case%d (%d ms)\n", suite, n,
                              rng_int(&s->r, 0, 5000));
        } else {
            fh_buf_printf(
                c, r < 0.8 ? "oUpdating %s\n" : "eremote: Counting objects in %s: done.\n", d);
        }
        (*nlines)++;
    }
}

/* ---- the processes ------------------------------------------------------------------------- */

static const char *step_name(const job *j)
{
    if (j->step == 0)
        return "git";
    if (j->step == j->nsteps - 1)
        return "upload build";
    return step_names[1 + (j->step - 1) % (NSTEP_NAMES - 2)];
}

static int pick_branch(sim *s, const project *pr)
{
    int total = 0, k;
    for (k = 0; k < 3 && pr->branches[k]; k++)
        total += pr->weights[k];
    int x = rng_int(&s->r, 1, total);
    for (k = 0; k < 3 && pr->branches[k]; k++)
        if ((x -= pr->weights[k]) <= 0)
            return k;
    return 0;
}

/* ---- GitHub Actions (the mixed profile) --------------------------------------------------- */

/* GitHub's side is written as its webhooks would reach the broker: the sim builds each
 * delivery's payload and maps it with lib/fh_ci (the ingest's own mapper), so the events are
 * those POST /api/v1/ingest/github makes, ids included; seq counts up for master github.com.
 * GitHub stamps whole seconds, so every GitHub event falls on one. */

typedef struct gh_def {
    int workflow;               /* index into gh_workflows */
    const char *name, *command; /* the job's name, and the step that does its work */
    double mean_s;              /* that step's mean duration */
} gh_def;

static const char *const gh_workflows[] = {"CI", "Lint"};
static const gh_def gh_defs[] = {
    {0, "build (ubuntu-24.04)", "Run make -j4 all", 60.0},
    {0, "build (macos-14)", "Run make -j4 all", 90.0},
    {0, "test", "Run make test", 120.0},
    {1, "lint", "Run make lint", 20.0},
};
static const char *const gh_step_names[GH_STEPS] = {"Set up job", "Run actions/checkout@v4", NULL,
                                                    "Post Run actions/checkout@v4", "Complete job"};
enum { GH_SUCCESS = 0, GH_FAILURE, GH_TIMED_OUT, GH_CANCELLED };

static int64_t whole_s(int64_t ms)
{
    return (ms + 999) / 1000 * 1000;
}

/* GitHub's timestamp form: "2026-11-22T05:00:00Z". */
static const char *gh_time(int64_t ms, char out[32])
{
    fh_time_rfc3339(ms / 1000 * 1000, out, 32);
    out[19] = 'Z';
    out[20] = '\0';
    return out;
}

static json_t *gh_repository(const sim *s)
{
    const project *pr = &s->p.projects[0];
    return json_pack("{s:s,s:s,s:s+,s:s+,s:s}", "html_url", pr->repository, "full_name", pr->name,
                     "clone_url", pr->repository, ".git", "ssh_url", "git@github.com:", pr->name,
                     "default_branch", "main");
}

/* Maps one delivery (body stolen) and writes its events at simulated time t. */
static void gh_deliver(sim *s, int64_t t, const char *event, json_t *body)
{
    json_t *evs = json_array(), *ev;
    fh_ci_why why;
    size_t i;
    if (!body || !evs || fh_ci_map(FH_CI_GITHUB, event, body, NULL, evs, &why) != FH_CI_EVENTS) {
        s->gh_unmapped++; /* a payload this sim built wrong; counted in the summary */
    } else {
        json_array_foreach(evs, i, ev)
        {
            json_object_set_new(ev, "seq", json_integer(++s->gh_seq));
            char *text = json_dumps(ev, JSON_COMPACT);
            if (!text)
                continue;
            size_t n = strlen(text);
            fh_buf_append(&s->out, text, n);
            fh_buf_append(&s->out, "\n", 1);
            s->events++;
            s->bytes += (long long)n + 1;
            free(text);
        }
        s->last_t = t;
    }
    json_decref(evs);
    json_decref(body);
}

/* A change GitHub Actions builds: one workflow run per workflow, requested a few seconds
 * later. */
static void gh_schedule_runs(sim *s, int64_t t, int branch, int author, const char *rev,
                             const char *message)
{
    for (size_t w = 0; w < NELEM(gh_workflows); w++) {
        job *j = calloc(1, sizeof(*j));
        if (!j)
            return;
        j->state = J_GH_RUN;
        j->gh_def = (int)w;
        j->gh_run = 12000000000LL + ++s->gh_run;
        j->t = whole_s(t + rng_int(&s->r, 1000, 3000));
        j->change_t = t;
        j->branch = branch;
        j->owner = author;
        memcpy(j->revision, rev, 41);
        snprintf(j->gh_message, sizeof(j->gh_message), "%s", message);
        if (heap_push(s, j)) {
            free(j);
            return;
        }
        s->inflight++;
    }
}

/* The workflow_job payload of job j in state status, at time t. */
static json_t *gh_job_body(const sim *s, const job *j, const char *action, int64_t t)
{
    static const char *const conclusions[] = {"success", "failure", "timed_out", "cancelled"};
    const gh_def *d = &gh_defs[j->gh_def];
    char created[32], started[32], done[32], runner[48], url[160];
    int ran = j->gh_runner > 0, complete = !strcmp(action, "completed");
    json_t *steps = json_array();
    snprintf(runner, sizeof(runner), "GitHub Actions %lld", j->gh_runner);
    snprintf(url, sizeof(url), "%s/actions/runs/%lld/job/%lld", s->p.projects[0].repository,
             j->gh_run, j->gh_job);
    for (int k = 0; ran && k < GH_STEPS && (complete || k == 0); k++) {
        int64_t t0 = k ? j->gh_step_end[k - 1] : j->started;
        const char *c = "success";
        if (k == 2 && j->gh_outcome != GH_SUCCESS)
            c = j->gh_outcome == GH_FAILURE ? "failure" : "cancelled";
        else if (k > 2 && j->gh_outcome == GH_CANCELLED)
            c = "skipped";
        json_array_append_new(steps, json_pack("{s:s,s:s,s:s?,s:i,s:s,s:s?}", "name",
                                               k == 2 ? d->command : gh_step_names[k], "status",
                                               complete ? "completed" : "in_progress", "conclusion",
                                               complete ? c : NULL, "number", k + 1, "started_at",
                                               gh_time(t0, started), "completed_at",
                                               complete ? gh_time(j->gh_step_end[k], done) : NULL));
    }
    json_t *job_obj = json_pack(
        "{s:I,s:I,s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s?,s:s,s:s,s:s?,s:o,s:[s],s:o,s:o,s:o}", "id",
        (json_int_t)j->gh_job, "run_id", (json_int_t)j->gh_run, "run_attempt", 1, "workflow_name",
        gh_workflows[d->workflow], "name", d->name, "head_branch",
        s->p.projects[0].branches[j->branch], "head_sha", j->revision, "html_url", url, "status",
        complete ? "completed" : action, "conclusion", complete ? conclusions[j->gh_outcome] : NULL,
        "created_at", gh_time(j->submitted, created), "started_at",
        gh_time(ran ? j->started : j->submitted, started), "completed_at",
        complete ? gh_time(t, done) : NULL, "steps", steps, "labels",
        j->gh_def == 1 ? "macos-14" : "ubuntu-24.04", "runner_id",
        ran ? json_integer(j->gh_runner) : json_null(), "runner_name",
        ran ? json_string(runner) : json_null(), "runner_group_name",
        ran ? json_string("GitHub Actions") : json_null());
    return json_pack("{s:s,s:o,s:o,s:{s:s}}", "action", action, "workflow_job", job_obj,
                     "repository", gh_repository(s), "sender", "login", authors[j->owner]);
}

/* Writes a GitHub job's next delivery. Returns 0 to requeue it, 1 when it is over. */
static int gh_run_job(sim *s, job *j)
{
    int64_t t = j->t;
    char when[32], created[32];
    switch (j->state) {
    case J_GH_RUN: {
        char name[64], email[64];
        snprintf(name, sizeof(name), "%c%s", authors[j->owner][0] - 32, authors[j->owner] + 1);
        snprintf(email, sizeof(email), "%s@example.org", authors[j->owner]);
        json_t *run = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:n,s:i,s:s,s:{s:s,s:s,s:s,s:{s:s,s:s}}}",
                                "id", (json_int_t)j->gh_run, "name", gh_workflows[j->gh_def],
                                "head_branch", s->p.projects[0].branches[j->branch], "head_sha",
                                j->revision, "event", "push", "status", "queued", "conclusion",
                                "run_attempt", 1, "created_at", gh_time(t, created), "head_commit",
                                "id", j->revision, "message", j->gh_message, "timestamp",
                                gh_time(j->change_t, when), "author", "name", name, "email", email);
        gh_deliver(s, t, "workflow_run",
                   json_pack("{s:s,s:o,s:o,s:{s:s}}", "action", "requested", "workflow_run", run,
                             "repository", gh_repository(s), "sender", "login", authors[j->owner]));
        int k = 0;
        for (size_t d = 0; d < NELEM(gh_defs); d++) {
            if (gh_defs[d].workflow != j->gh_def)
                continue;
            job *q = calloc(1, sizeof(*q));
            if (!q)
                break;
            *q = *j;
            q->state = J_GH_QUEUED;
            q->gh_def = (int)d;
            q->gh_job = 31000000000LL + ++s->gh_job;
            q->t = t + 1000 * ++k;
            if (heap_push(s, q)) {
                free(q);
                break;
            }
            s->inflight++;
        }
        return 1;
    }
    case J_GH_QUEUED:
        j->submitted = t;
        gh_deliver(s, t, "workflow_job", gh_job_body(s, j, "queued", t));
        if (rng_unit(&s->r) < 0.02) { /* cancelled before a runner took it */
            j->gh_outcome = GH_CANCELLED;
            j->state = J_GH_DONE;
        } else {
            j->state = J_GH_START;
        }
        j->t = whole_s(t + rng_exp_ms(&s->r, s->p.wait_s));
        return 0;
    case J_GH_START: {
        double r = rng_unit(&s->r);
        j->started = t;
        j->gh_runner = 1000000000LL + ++s->gh_runner;
        j->gh_outcome = r < 0.93   ? GH_SUCCESS
                        : r < 0.98 ? GH_FAILURE
                        : r < 0.99 ? GH_TIMED_OUT
                                   : GH_CANCELLED;
        int64_t at = t;
        for (int k = 0; k < GH_STEPS; k++) {
            at += k == 2 ? whole_s(rng_exp_ms(&s->r, gh_defs[j->gh_def].mean_s))
                         : 1000 * rng_int(&s->r, 0, 3);
            j->gh_step_end[k] = at;
        }
        gh_deliver(s, t, "workflow_job", gh_job_body(s, j, "in_progress", t));
        j->state = J_GH_DONE;
        j->t = at > t ? at : t + 1000;
        return 0;
    }
    default: /* J_GH_DONE */
        gh_deliver(s, t, "workflow_job", gh_job_body(s, j, "completed", t));
        return 1;
    }
}

/* Lands one change and schedules its build requests. */
static void land_change(sim *s, int64_t t)
{
    int prj = rng_int(&s->r, 0, s->p.nprojects - 1);
    const project *pr = &s->p.projects[prj];
    int branch = pick_branch(s, pr), author = rng_int(&s->r, 0, NELEM(authors) - 1);
    int try_ = strcmp(pr->branches[branch], "try") == 0;
    int m = rng_int(&s->r, 0, s->nmasters - 1);
    char rev[41], subject[64], who[96], url[160], file[96];
    for (int i = 0; i < 40; i += 16)
        snprintf(rev + i, sizeof(rev) - (size_t)i, "%016llx", (unsigned long long)rng_next(&s->r));
    rev[40] = '\0';
    long long changeid = ++s->ids_change;
    snprintf(subject, sizeof(subject), "changes/%lld", changeid);
    event_open(s, t, m, "change.new", subject);
    put_int(s, "changeid", changeid);
    snprintf(who, sizeof(who), "%c%s <%s@example.org>", authors[author][0] - 32,
             authors[author] + 1, authors[author]);
    put_str(s, "author", who);
    snprintf(url, sizeof(url), "Fix %s handling in %s\n\nBug: %d\n",
             suites[rng_int(&s->r, 0, NELEM(suites) - 1)], dirs[rng_int(&s->r, 0, NELEM(dirs) - 1)],
             rng_int(&s->r, 100000, 999999));
    put_str(s, "comments", url);
    char message[160];
    snprintf(message, sizeof(message), "%s", url);
    sep(s);
    fh_buf_append(&s->out, "\"files\":[", 9);
    int nfiles = rng_int(&s->r, 1, 5);
    for (int i = 0; i < nfiles; i++) {
        snprintf(file, sizeof(file), "%s/file_%d.cc", dirs[rng_int(&s->r, 0, NELEM(dirs) - 1)],
                 rng_int(&s->r, 1, 500));
        if (i)
            fh_buf_append(&s->out, ",", 1);
        fh_buf_json_str(&s->out, file);
    }
    fh_buf_append(&s->out, "]", 1);
    put_epoch(s, "when", t);
    fh_buf_append(&s->out, ",\"category\":null", 16);
    snprintf(url, sizeof(url), "%s%s", pr->revlink, rev);
    put_str(s, "revlink", url);
    put_str(s, "branch", pr->branches[branch]);
    put_str(s, "revision", rev);
    put_str(s, "repository", pr->repository);
    put_str(s, "project", pr->name);
    put_str(s, "codebase", pr->codebase);
    event_end(s);

    /* The project's builders (contiguous, see world_build); a change schedules a handful. */
    int first = s->proj_first[prj], count = s->proj_count[prj];
    if (count == 0)
        return;
    int nreq = try_ ? rng_int(&s->r, 1, 3) : rng_int(&s->r, s->p.requests_min, s->p.requests_max);
    long long buildsetid = ++s->ids_buildset;
    int owner = try_ || rng_unit(&s->r) < 0.7 ? author : -1;
    for (int i = 0; i < nreq; i++) {
        if (s->inflight >= s->max_inflight) {
            s->skipped++;
            continue;
        }
        job *j = calloc(1, sizeof(*j));
        if (!j) {
            s->skipped++;
            continue;
        }
        j->builder = first + rng_int(&s->r, 0, count - 1);
        j->state = J_NEW;
        j->t = t + rng_int(&s->r, 1, 500);
        j->branch = branch;
        j->owner = owner;
        j->buildsetid = buildsetid;
        j->sched_master = m;
        j->cancel = rng_unit(&s->r) < 0.03;
        memcpy(j->revision, rev, sizeof(rev));
        if (heap_push(s, j)) {
            free(j);
            s->skipped++;
            continue;
        }
        s->inflight++;
    }
    if (s->p.github && !try_)
        gh_schedule_runs(s, t, branch, author, rev, message);
}

/* A connected worker of master m (workers are dealt round-robin: m, m + nmasters, ...), found by
 * probing from a random one; -1 when the probes find none connected. */
static int pick_worker(sim *s, int m)
{
    int per = (s->nworkers - m + s->nmasters - 1) / s->nmasters;
    if (per <= 0)
        return -1;
    int k = rng_int(&s->r, 0, per - 1);
    for (int probe = 0; probe < 16 && probe < per; probe++) {
        int w = m + ((k + probe) % per) * s->nmasters;
        if (s->workers[w].connected)
            return w;
    }
    return -1;
}

static void worker_event(sim *s, int64_t t, int w, const char *type)
{
    char subject[48];
    snprintf(subject, sizeof(subject), "workers/%d", s->workers[w].id);
    event_open(s, t, s->workers[w].master, type, subject);
    put_int(s, "workerid", s->workers[w].id);
    put_str(s, "name", s->workers[w].name);
    event_end(s);
}

/* Writes the job's next event(s) at j->t and moves it on. Returns 0 to requeue it, 1 when the
 * job is over (the caller frees it). */
/* A test step's test result set, as a Buildbot step records one (category pass_fail, values
 * "1"/"0") and the plugin emits it: test.results chunks of at most --test-chunk results and
 * FH_TESTRES_CHUNK_BYTES, then test.result_set. The tests of a step name are the same in every
 * build: every 23rd is flaky (fails a third of the time, then passes on retry: two results),
 * every 31st is skipped, and a failed step fails one test. Out of memory, the set is left out
 * (said on stderr). */
static void emit_test_results(sim *s, const job *j, int64_t t, int res)
{
    size_t cap = (size_t)s->tests * 2, n = 0, *sizes = malloc(cap * sizeof(*sizes));
    size_t *offs = malloc((cap + 1) * sizeof(*offs));
    long long passed = 0, failed = 0, skipped = 0;
    const char *step = step_name(j);
    char subject[128];
    unsigned h = 0;
    int ok = sizes && offs;
    fh_buf c; /* the results' JSON, one after the other; offs[i] is where result i starts */
    fh_buf_init(&c, 512 * cap + 4096);
    for (const char *p = step; *p; p++)
        h = h * 31 + (unsigned char)*p;
    int broken = res == FAILURE ? rng_int(&s->r, 0, s->tests - 1) : -1;
    for (int i = 0; i < s->tests && ok; i++) {
        int flaky = i % 23 == 5 && rng_unit(&s->r) < 0.33;
        const char *suite = suites[(h + (unsigned)i) % NELEM(suites)];
        for (int k = 0; k <= flaky && ok; k++) {
            /* value and outcome as fh_testres reads them; a skip is the producer's own word */
            const char *value = i % 31 == 7                      ? "skipped"
                                : (i == broken || (flaky && !k)) ? "0"
                                                                 : "1";
            const char *outcome =
                i % 31 == 7 ? "skip" : fh_testres_outcome("pass_fail", "boolean", value);
            int64_t ms = rng_exp_ms(&s->r, 0.2);
            offs[n] = c.len;
            ok = fh_buf_printf(&c,
                               "{\"name\":\"%s.Case%d\",\"code_path\":\"%s/%s_unittest.cc\","
                               "\"line\":%d,\"value\":\"%s\",\"outcome\":\"%s\","
                               "\"duration_s\":%lld.%03lld}",
                               suite, i, dirs[(h + (unsigned)i) % NELEM(dirs)], suite, 10 + i,
                               value, outcome, (long long)(ms / 1000), (long long)(ms % 1000)) == 0;
            sizes[n] = c.len - offs[n] + 1;
            n++;
            passed += outcome[0] == 'p';
            failed += outcome[0] == 'f';
            skipped += outcome[1] == 'k';
        }
    }
    if (!ok) {
        fprintf(stderr, "firehose-sim: out of memory for %d test results: set left out\n",
                s->tests);
        goto out;
    }
    offs[n] = c.len;
    long long setid = ++s->ids_testset, chunks = 0;
    snprintf(subject, sizeof(subject), "builds/%lld/steps/%d/test_result_sets/%lld", j->buildid,
             j->step, setid);
    for (size_t start = 0; start < n; chunks++) {
        size_t end =
            fh_testres_chunk_end(sizes, n, start, (size_t)s->test_chunk, FH_TESTRES_CHUNK_BYTES);
        event_open(s, t, j->master, "test.results", subject);
        put_context(s, j, 1);
        put_int(s, "test_result_setid", setid);
        put_int(s, "stepid", j->stepid);
        put_str(s, "category", "pass_fail");
        put_str(s, "value_unit", "boolean");
        put_int(s, "chunk", chunks);
        fh_buf_printf(&s->out, ",\"last\":%s,\"tests\":[", end == n ? "true" : "false");
        for (size_t i = start; i < end; i++) {
            if (i > start)
                fh_buf_append(&s->out, ",", 1);
            fh_buf_append(&s->out, c.data + offs[i], offs[i + 1] - offs[i]);
        }
        fh_buf_append(&s->out, "]", 1);
        event_end(s);
        start = end;
    }
    event_open(s, t, j->master, "test.result_set", subject);
    put_context(s, j, 1);
    put_int(s, "test_result_setid", setid);
    put_int(s, "stepid", j->stepid);
    put_str(s, "description", step);
    put_str(s, "category", "pass_fail");
    put_str(s, "value_unit", "boolean");
    put_int(s, "tests_passed", passed);
    put_int(s, "tests_failed", failed);
    put_int(s, "tests_skipped", skipped);
    put_int(s, "results", (long long)n);
    put_int(s, "chunks", chunks);
    event_end(s);
out:
    fh_buf_free(&c);
    free(sizes);
    free(offs);
}

static int job_run(sim *s, job *j)
{
    char subject[96], state[96];
    int64_t t = j->t;
    builder *b = &s->builders[j->builder];
    switch (j->state) {
    case J_ARRIVAL: {
        double per_change_h = 3600.0 * s->requests_per_change;
        land_change(s, t);
        if (t >= s->live_from) {
            j->t = t + rng_exp_ms(&s->r, per_change_h / s->p.jobs_per_hour);
        } else {
            /* The rate steps up at live_from: a gap drawn at the history's rate that reaches past
             * it is drawn again from there at the live rate (arrivals are memoryless). */
            j->t = t + rng_exp_ms(&s->r, per_change_h / s->history_jobs_per_hour);
            if (j->t >= s->live_from)
                j->t = s->live_from + rng_exp_ms(&s->r, per_change_h / s->p.jobs_per_hour);
        }
        return 0;
    }
    case J_FLAP:
        if (j->flap_worker >= 0) {
            s->workers[j->flap_worker].connected = 1;
            worker_event(s, t, j->flap_worker, "worker.connected");
            j->flap_worker = -1;
            j->t = t + rng_exp_ms(&s->r, 600.0);
        } else {
            int w = rng_int(&s->r, 0, s->nworkers - 1);
            s->workers[w].connected = 0;
            worker_event(s, t, w, "worker.disconnected");
            j->flap_worker = w;
            j->t = t + rng_exp_ms(&s->r, 30.0);
        }
        return 0;
    case J_NEW:
        j->brid = ++s->ids_br;
        j->submitted = t;
        open_request_event(s, j, t, j->sched_master, "buildrequest.new", 0);
        put_int(s, "buildsetid", j->buildsetid);
        put_int(s, "priority", rng_unit(&s->r) < 0.8 ? 0 : 10);
        put_epoch(s, "submitted_at", t);
        put_str(s, "reason",
                j->owner >= 0 && strcmp(s->p.projects[b->project].branches[j->branch], "try") == 0
                    ? "The Try_Jobdir scheduler named 'try' triggered this build"
                    : "The SingleBranchScheduler scheduler named 'main' triggered this build");
        event_end(s);
        j->state = j->cancel ? J_CANCEL : J_CLAIM;
        j->t = t + rng_exp_ms(&s->r, s->p.wait_s);
        return 0;
    case J_CANCEL:
    case J_COMPLETE:
        open_request_event(s, j, t, j->state == J_CANCEL ? j->sched_master : j->master,
                           "buildrequest.complete", j->buildid > 0);
        put_epoch(s, "complete_at", t);
        put_int(s, "results", j->state == J_CANCEL ? CANCELLED : j->build_results);
        event_end(s);
        return 1;
    case J_CLAIM:
        j->master = rng_int(&s->r, 0, s->nmasters - 1);
        open_request_event(s, j, t, j->master, "buildrequest.claimed", 0);
        put_epoch(s, "claimed_at", t);
        put_str(s, "claimed_by_master", s->masters[j->master].name);
        event_end(s);
        j->state = J_BSTART;
        j->t = t + rng_int(&s->r, 50, 2000);
        return 0;
    case J_BSTART:
        j->buildid = ++s->ids_build;
        j->started = t;
        j->worker = pick_worker(s, j->master);
        j->nsteps = rng_int(&s->r, s->p.steps_min, s->p.steps_max);
        j->step = 0;
        j->build_results = SUCCESS;
        j->failed = 0;
        open_build_event(s, j, t, "build.started");
        put_int(s, "number", b->next_number++);
        put_str(s, "worker", j->worker >= 0 ? s->workers[j->worker].name : "unknown");
        put_epoch(s, "started_at", t);
        event_end(s);
        j->state = J_PROPS;
        j->t = t + rng_int(&s->r, 5, 100);
        return 0;
    case J_PROPS:
        open_build_event(s, j, t, "property.set");
        fh_buf_printf(&s->out, ",\"properties\":{\"buildername\":[");
        fh_buf_json_str(&s->out, b->name);
        fh_buf_printf(&s->out, ",\"Builder\"],\"buildnumber\":[%d,\"Build\"],\"workername\":[",
                      b->next_number - 1);
        fh_buf_json_str(&s->out, j->worker >= 0 ? s->workers[j->worker].name : "unknown");
        fh_buf_printf(&s->out,
                      ",\"Worker\"],\"revision\":[\"%s\",\"Build\"],\"clobber\":[%s,"
                      "\"Force Build Form\"]}",
                      j->revision, rng_unit(&s->r) < 0.1 ? "true" : "false");
        event_end(s);
        j->state = J_STEP_START;
        j->t = t + rng_int(&s->r, 5, 200);
        return 0;
    case J_STEP_START:
        j->stepid = ++s->ids_step;
        j->step_started = t;
        j->step_end = t + rng_exp_ms(&s->r, s->p.step_s);
        snprintf(subject, sizeof(subject), "builds/%lld/steps/%d", j->buildid, j->step);
        event_open(s, t, j->master, "step.started", subject);
        put_context(s, j, 1);
        put_int(s, "stepid", j->stepid);
        put_int(s, "number", j->step);
        put_str(s, "name", step_name(j));
        put_epoch(s, "started_at", t);
        event_end(s);
        if (rng_unit(&s->r) < 0.15) { /* the build's status line follows the step now and then */
            open_build_event(s, j, t, "build.updated");
            snprintf(state, sizeof(state), "building: %s", step_name(j));
            put_str(s, "state_string", state);
            event_end(s);
        }
        j->logs_left = j->failed || !s->logs || t < s->live_from
                           ? 0
                           : 1 + (strstr(step_name(j), "test") != NULL);
        j->state = j->logs_left ? J_LOG_NEW : J_STEP_FIN;
        j->t = j->logs_left ? t + rng_int(&s->r, 1, 50) : j->step_end;
        return 0;
    case J_LOG_NEW:
    case J_LOG_FIN: {
        int stdio = j->logs_left == 1 || !strstr(step_name(j), "test") ? 1 : 0;
        const char *name = stdio ? "stdio" : "summary";
        if (j->state == J_LOG_NEW) {
            j->logid = ++s->ids_log;
            j->line = 0;
            /* Enough chunks to carry the build's share of the log traffic for this step. */
            double span = (double)(j->step_end - t) / 1000.0;
            j->chunks_left = stdio ? (int)(span / s->chunk_interval_s) : 1;
            if (stdio && j->chunks_left > 100000)
                j->chunks_left = 100000;
        }
        snprintf(subject, sizeof(subject), "builds/%lld/steps/%d/logs/%s", j->buildid, j->step,
                 name);
        event_open(s, t, j->master, j->state == J_LOG_NEW ? "log.new" : "log.finished", subject);
        put_context(s, j, 1);
        put_int(s, "logid", j->logid);
        put_int(s, "stepid", j->stepid);
        put_str(s, "name", name);
        put_str(s, "slug", name);
        put_str(s, "type", stdio ? "s" : "t");
        put_int(s, "num_lines", j->line);
        event_end(s);
        if (j->state == J_LOG_NEW) {
            j->state = j->chunks_left ? J_LOG_CHUNK : J_LOG_FIN;
            int64_t gap = (j->step_end - t) / (j->chunks_left + 1);
            j->t = t + (gap > 0 ? gap : 1);
        } else if (--j->logs_left > 0) {
            j->state = J_LOG_NEW;
            j->t = t + 1;
        } else {
            j->state = J_STEP_FIN;
            j->t = j->step_end > t ? j->step_end : t + 1;
        }
        return 0;
    }
    case J_LOG_CHUNK: {
        fh_buf *content = &s->content;
        int nlines, stdio = j->logs_left == 1 || !strstr(step_name(j), "test");
        if (stdio)
            log_content(s, step_name(j), 1000, content, &nlines);
        else {
            fh_buf_reset(content);
            fh_buf_printf(content, "%d tests, %d failed\n", rng_int(&s->r, 100, 9000),
                          rng_int(&s->r, 0, 3));
            nlines = 1;
        }
        snprintf(subject, sizeof(subject), "builds/%lld/steps/%d/logs/%s", j->buildid, j->step,
                 stdio ? "stdio" : "summary");
        event_open(s, t, j->master, "log.chunk", subject);
        put_context(s, j, 1);
        put_int(s, "logid", j->logid);
        put_int(s, "stepid", j->stepid);
        put_int(s, "firstline", j->line);
        s->log_bytes += (long long)content->len;
        fh_buf_append(content, "", 1); /* NUL for fh_buf_json_str */
        put_str(s, "content", content->data);
        event_end(s);
        j->line += nlines;
        if (--j->chunks_left > 0) {
            int64_t gap = (j->step_end - t) / (j->chunks_left + 1);
            j->t = t + (gap > 0 ? gap : 1);
        } else {
            j->state = J_LOG_FIN;
            j->t = j->step_end > t ? j->step_end : t + 1;
        }
        return 0;
    }
    case J_STEP_FIN: {
        double r = rng_unit(&s->r);
        int res = j->failed   ? SKIPPED
                  : r < 0.90  ? SUCCESS
                  : r < 0.95  ? WARNINGS
                  : r < 0.985 ? FAILURE
                  : r < 0.995 ? EXCEPTION
                              : RETRY;
        if (res == FAILURE || res == EXCEPTION || res == RETRY)
            j->failed = 1;
        if (res != SKIPPED && res > j->build_results)
            j->build_results = res;
        if (s->tests && res != SKIPPED && t >= s->live_from && strstr(step_name(j), "test"))
            emit_test_results(s, j, t, res);
        snprintf(subject, sizeof(subject), "builds/%lld/steps/%d", j->buildid, j->step);
        event_open(s, t, j->master, "step.finished", subject);
        put_context(s, j, 1);
        put_int(s, "stepid", j->stepid);
        put_int(s, "number", j->step);
        put_str(s, "name", step_name(j));
        put_epoch(s, "complete_at", t);
        put_int(s, "results", res);
        snprintf(state, sizeof(state), "%s%s", step_name(j),
                 res == SUCCESS    ? ""
                 : res == SKIPPED  ? " (skipped)"
                 : res == WARNINGS ? " (warnings)"
                                   : " (failure)");
        put_str(s, "state_string", state);
        fh_buf_printf(&s->out, ",\"duration_s\":%lld.%03lld,\"urls\":[]",
                      (long long)((t - j->step_started) / 1000),
                      (long long)((t - j->step_started) % 1000));
        fh_buf_printf(&s->out, ",\"hidden\":%s", j->step == 1 ? "true" : "false");
        event_end(s);
        j->step++;
        j->state = j->step < j->nsteps ? J_STEP_START : J_BFIN;
        j->t = t + rng_int(&s->r, 1, 200);
        return 0;
    }
    case J_BFIN:
        open_build_event(s, j, t, "build.finished");
        put_int(s, "number", b->next_number - 1);
        put_epoch(s, "complete_at", t);
        put_int(s, "results", j->build_results);
        put_str(s, "state_string", build_state[j->build_results]);
        fh_buf_printf(&s->out, ",\"duration_s\":%lld.%03lld", (long long)((t - j->started) / 1000),
                      (long long)((t - j->started) % 1000));
        event_end(s);
        j->state = j->build_results == RETRY ? J_UNCLAIM : J_COMPLETE;
        j->t = t + rng_int(&s->r, 1, 100);
        return 0;
    case J_GH_RUN:
    case J_GH_QUEUED:
    case J_GH_START:
    case J_GH_DONE:
        return gh_run_job(s, j);
    case J_UNCLAIM:
        open_request_event(s, j, t, j->master, "buildrequest.unclaimed", 1);
        fh_buf_printf(&s->out, ",\"claimed_at\":null,\"claimed_by_master\":null");
        event_end(s);
        j->state = J_CLAIM;
        j->t = t + rng_exp_ms(&s->r, s->p.wait_s);
        return 0;
    }
    return 1;
}

/* ---- set-up -------------------------------------------------------------------------------- */

static int world_build(sim *s, int64_t start, char *err, size_t errsize)
{
    s->builders = calloc((size_t)s->p.builders, sizeof(*s->builders));
    s->masters = calloc((size_t)s->p.masters, sizeof(*s->masters));
    s->nworkers = s->p.builders * 2 > MAX_WORKERS ? MAX_WORKERS : s->p.builders * 2;
    s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
    if (!s->builders || !s->masters || !s->workers) {
        snprintf(err, errsize, "out of memory for %d builders", s->p.builders);
        return -1;
    }
    s->nmasters = s->p.masters;
    for (int m = 0; m < s->nmasters; m++)
        snprintf(s->masters[m].name, sizeof(s->masters[m].name), "master-%d", m + 1);
    /* Builders grouped by project (land_change relies on it): project-platform-variant, numbered
     * once the combinations run out. */
    s->nbuilders = s->p.builders;
    const int combos = (int)(NELEM(platforms) * NELEM(variants));
    for (int i = 0, prev = -1, k = 0; i < s->nbuilders; i++, k++) {
        builder *b = &s->builders[i];
        int prj = (int)((long long)i * (long long)s->p.nprojects / s->nbuilders);
        if (prj != prev) {
            prev = prj;
            k = 0;
        }
        b->project = prj;
        if (!s->proj_count[prj]++)
            s->proj_first[prj] = i;
        b->id = i + 1;
        b->next_number = rng_int(&s->r, 0, 5000);
        const project *pr = &s->p.projects[prj];
        int n = snprintf(b->name, sizeof(b->name), "%s-%s-%s",
                         pr->builder_prefix ? pr->builder_prefix : pr->name,
                         platforms[k % NELEM(platforms)],
                         variants[(k / NELEM(platforms)) % NELEM(variants)]);
        if (k >= combos && n > 0 && (size_t)n < sizeof(b->name))
            snprintf(b->name + n, sizeof(b->name) - (size_t)n, "-%d", k / combos);
    }
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        w->id = i + 1;
        w->master = i % s->nmasters;
        w->connected = 1;
        snprintf(w->name, sizeof(w->name), "%s-%03d", platforms[i % NELEM(platforms)], i + 1);
    }
    /* Boot: masters start, their workers connect. */
    for (int m = 0; m < s->nmasters; m++) {
        char subject[48];
        snprintf(subject, sizeof(subject), "masters/%s", s->masters[m].name);
        event_open(s, start, m, "master.started", subject);
        put_str(s, "name", s->masters[m].name);
        event_end(s);
    }
    for (int i = 0; i < s->nworkers; i++)
        worker_event(s, start + 1 + i / 100, i, "worker.connected");
    return 0;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Sleeps until the monotonic clock reaches deadline_ns (or a signal arrives). */
static void sleep_until(uint64_t deadline_ns)
{
    uint64_t now = fh_mono_ns();
    if (deadline_ns <= now)
        return;
    uint64_t d = deadline_ns - now;
    struct timespec ts = {(time_t)(d / 1000000000ULL), (long)(d % 1000000000ULL)};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    static sim s;
    fh_config cfg;
    char err[512];
    int help, status = 0;
    int64_t start;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (fh_config_init(&cfg, "firehose-sim", "[OPTIONS]",
                       "Writes a realistic, self-consistent Buildbot event stream (firehose v1 "
                       "events, NDJSON) to stdout; pipe it into firehose-emit.",
                       sim_opts, NELEM(sim_opts)) ||
        fh_config_load(&cfg, argc, argv, &help, err, sizeof(err))) {
        fprintf(stderr, "firehose-sim: %s\n", err);
        return EXIT_USAGE;
    }
    if (help) {
        help == 2 ? fh_config_markdown(&cfg, stdout) : fh_config_help(&cfg, stdout);
        fh_config_free(&cfg);
        return 0;
    }
    if (cfg.nargs) {
        fprintf(stderr, "firehose-sim: unexpected argument '%s' (see --help)\n", cfg.args[0]);
        status = EXIT_USAGE;
        goto out;
    }
    const char *pname = fh_config_str(&cfg, "sim.profile");
    size_t pi;
    for (pi = 0; pi < NELEM(profiles); pi++)
        if (strcmp(profiles[pi].name, pname) == 0)
            break;
    if (pi == NELEM(profiles)) {
        fprintf(stderr,
                "firehose-sim: --profile: unknown profile '%s' (demo, mozilla-2010, mixed)\n",
                pname);
        status = EXIT_USAGE;
        goto out;
    }
    const char *st = fh_config_str(&cfg, "sim.start");
    if (strcmp(st, "now") == 0) {
        start = fh_now_ms();
    } else if (fh_time_parse(st, &start)) {
        fprintf(stderr, "firehose-sim: --start: expected RFC 3339 or \"now\", got '%s'\n", st);
        status = EXIT_USAGE;
        goto out;
    }

    long long scale = fh_config_int(&cfg, "sim.scale");
    s.p = profiles[pi];
    s.p.jobs_per_hour *= (double)scale;
    s.p.log_bytes_per_s *= (double)scale;
    s.p.builders = (int)(s.p.builders * scale > MAX_BUILDERS ? MAX_BUILDERS : s.p.builders * scale);
    s.p.masters = (int)(s.p.masters * scale > 100 ? (s.p.masters > 100 ? s.p.masters : 100)
                                                  : s.p.masters * scale);
    if (fh_config_int(&cfg, "sim.masters"))
        s.p.masters = (int)fh_config_int(&cfg, "sim.masters");
    if (fh_config_int(&cfg, "sim.builders"))
        s.p.builders = (int)fh_config_int(&cfg, "sim.builders");
    s.chunk_bytes = fh_config_int(&cfg, "sim.log_chunk_bytes")
                        ? (int)fh_config_int(&cfg, "sim.log_chunk_bytes")
                        : s.p.chunk_bytes;
    s.logs = fh_config_bool(&cfg, "sim.logs");
    s.tests = (int)fh_config_int(&cfg, "sim.tests");
    s.test_chunk = (int)fh_config_int(&cfg, "sim.test_chunk");
    s.live_from = start;
    s.history_jobs_per_hour = fh_config_int(&cfg, "sim.history_jobs_per_hour")
                                  ? (double)fh_config_int(&cfg, "sim.history_jobs_per_hour")
                                  : s.p.jobs_per_hour;
    long long history_s = fh_config_int(&cfg, "sim.history_s");
    int64_t world_start = start - history_s * 1000;
    s.max_inflight = fh_config_int(&cfg, "sim.max_inflight");
    {
        /* Each running build's share of the log traffic: builds alive at once = arrival rate x
         * (wait + build time); a chunk every chunk_bytes / share seconds. */
        double build_s = (s.p.steps_min + s.p.steps_max) / 2.0 * s.p.step_s;
        double alive = s.p.jobs_per_hour / 3600.0 * build_s;
        double share = s.p.log_bytes_per_s / (alive > 1 ? alive : 1);
        s.chunk_interval_s = s.chunk_bytes / share;
    }
    s.requests_per_change = 0;
    for (int k = 0; k < s.p.nprojects; k++) { /* land_change: try changes ask for 1-3 builds */
        int total = 0, try_w = 0;
        const project *pk = &s.p.projects[k];
        for (int b = 0; b < 3 && pk->branches[b]; b++) {
            total += pk->weights[b];
            if (strcmp(pk->branches[b], "try") == 0)
                try_w = pk->weights[b];
        }
        double p_try = (double)try_w / total;
        s.requests_per_change +=
            (p_try * 2.0 + (1 - p_try) * (s.p.requests_min + s.p.requests_max) / 2.0) /
            (double)s.p.nprojects;
    }
    rng_seed(&s.r, (uint64_t)fh_config_int(&cfg, "sim.seed"));
    fh_buf_init(&s.out, 64 * 1024 * 1024);
    fh_buf_init(&s.content, 128 * 1024);
    if (world_build(&s, world_start, err, sizeof(err))) {
        fprintf(stderr, "firehose-sim: %s\n", err);
        status = EXIT_WRITE;
        goto out;
    }
    job *arrival = calloc(1, sizeof(job)), *flap = calloc(1, sizeof(job));
    if (!arrival || !flap) {
        free(arrival);
        free(flap);
        fprintf(stderr, "firehose-sim: out of memory\n");
        status = EXIT_WRITE;
        goto out;
    }
    arrival->state = J_ARRIVAL;
    arrival->t = world_start + 1000;
    flap->state = J_FLAP;
    flap->flap_worker = -1;
    flap->t = world_start + rng_exp_ms(&s.r, 600.0);
    heap_push(&s, arrival);
    heap_push(&s, flap);

    long long count = fh_config_int(&cfg, "sim.count");
    long long rate = fh_config_int(&cfg, "sim.rate");
    int realtime = fh_config_bool(&cfg, "sim.realtime");
    long long speed = fh_config_int(&cfg, "sim.speed");
    uint64_t t0 = fh_mono_ns(), stop_at = 0, rate_t0 = t0;
    long long rate_events0 = 0; /* --rate paces the events after the history */
    int in_history = history_s > 0;
    if (fh_config_int(&cfg, "sim.duration_s"))
        stop_at = t0 + (uint64_t)fh_config_int(&cfg, "sim.duration_s") * 1000000000ULL;

    /* Boot events are already in the buffer; count-limited runs may stop inside them. */
    while (!stop_requested && !s.write_failed) {
        if (count && s.events >= count)
            break;
        if (stop_at && fh_mono_ns() >= stop_at)
            break;
        job *j = heap_pop(&s);
        if (!j)
            break;
        if (in_history && j->t >= start) {
            /* The history is written: say so once it is on stdout (run-demo.sh waits for it). */
            in_history = 0;
            if (flush_out(&s)) {
                heap_push(&s, j);
                break;
            }
            if (!fh_config_bool(&cfg, "sim.quiet"))
                fprintf(stderr,
                        "firehose-sim: history events=%lld bytes=%lld simulated_s=%lld "
                        "elapsed=%.3fs\n",
                        s.events, s.bytes, history_s, (double)(fh_mono_ns() - t0) / 1e9);
            rate_t0 = fh_mono_ns();
            rate_events0 = s.events;
        }
        if (!in_history && (realtime || rate)) {
            uint64_t due =
                realtime
                    ? t0 + (uint64_t)((j->t - start) * 1000000LL / speed)
                    : rate_t0 + (uint64_t)((double)(s.events - rate_events0) * 1e9 / (double)rate);
            if (due > fh_mono_ns() + 1000000ULL) { /* more than 1 ms early: write what we have */
                if (flush_out(&s))
                    break;
                sleep_until(stop_at && stop_at < due ? stop_at : due);
            }
        }
        if (job_run(&s, j)) {
            s.jobs_done += j->state != J_GH_RUN; /* a workflow run is not a job */
            free(j);
            s.inflight--;
        } else {
            heap_push(&s, j);
        }
        if (s.out.len >= OUT_FLUSH_BYTES && flush_out(&s))
            break;
    }
    if (count && s.events > count) {
        /* The last job may have written two events (step.started + build.updated): cut the
         * buffer back to exactly count lines. */
        long long extra = s.events - count;
        while (extra > 0 && s.out.len > 0) {
            s.out.len--;
            char *nl = memrchr(s.out.data, '\n', s.out.len);
            size_t keep = nl ? (size_t)(nl - s.out.data) + 1 : 0;
            s.bytes -= (long long)(s.out.len + 1 - keep);
            s.out.len = keep;
            s.events--;
            extra--;
        }
    }
    flush_out(&s);
    double secs = (double)(fh_mono_ns() - t0) / 1e9;
    if (s.write_failed && s.write_failed != EPIPE) {
        fprintf(stderr, "firehose-sim: writing stdout: %s\n", strerror(s.write_failed));
        status = EXIT_WRITE;
    }
    if (!fh_config_bool(&cfg, "sim.quiet")) {
        double span = (double)(s.last_t - world_start) / 1000.0; /* simulated seconds covered */
        fprintf(stderr,
                "firehose-sim: events=%lld bytes=%lld elapsed=%.3fs rate=%.0f events/s "
                "MB/s=%.1f requests_done=%lld inflight=%lld skipped_at_cap=%lld profile=%s "
                "scale=%lld simulated_s=%.0f log_content_bytes=%lld\n",
                s.events, s.bytes, secs, secs > 0 ? (double)s.events / secs : 0.0,
                secs > 0 ? (double)s.bytes / secs / 1e6 : 0.0, s.jobs_done, s.inflight, s.skipped,
                s.p.name, scale, span, s.log_bytes);
        if (s.p.github)
            fprintf(stderr, "firehose-sim: github events=%lld unmapped_deliveries=%lld\n", s.gh_seq,
                    s.gh_unmapped);
    }
    for (size_t i = 0; i < s.nheap; i++)
        free(s.heap[i]);
out:
    free(s.heap);
    free(s.builders);
    free(s.workers);
    free(s.masters);
    fh_buf_free(&s.out);
    fh_buf_free(&s.content);
    fh_config_free(&cfg);
    return status;
}
