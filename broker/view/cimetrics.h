/* view/cimetrics: CI metrics for Prometheus from the view, served on GET /metrics/ci
 * (docs/operations.md, "CI metrics"), and the builder-state query that endpoint shares with
 * GET /api/v1/builders/state.
 *
 * Two kinds of numbers, kept two ways:
 *   - histograms (queue wait, build duration per builder) are counters: they are observed as the
 *     view applies build.started / build.finished, staged per batch and added only when the
 *     batch commits (a rolled-back batch is applied again, so it must not count twice). They
 *     count what this process applied, from 0 at start (a counter reset, as Prometheus expects);
 *     pruning never makes them go down.
 *   - gauges (pending, oldest pending age, running, builder state) are the view's current
 *     state: read with SQL on a pooled reader and the rendered text kept for metrics.ci_ttl_ms,
 *     so scrapes cost one set of queries per TTL whatever their number. Pending and running
 *     read the partial indexes of open requests and builds only; state reads the finished
 *     builds kept by view.retention_s once per TTL.
 * Labels are bounded: at most metrics.ci_max_builders builders get their own series (the first
 * seen by this process); the rest are summed into builder="_other" and counted in
 * firehose_ci_builders_other. Builder state has at most metrics.ci_max_state_series series
 * (newest first); the rest are omitted and counted in firehose_ci_state_series_omitted. */
#ifndef FH_VIEW_CIMETRICS_H
#define FH_VIEW_CIMETRICS_H

#include <sqlite3.h>

#include "fh_config.h"
#include "fh_event.h"
#include "http.h"

/* clang-format off */
#define FH_CIMETRICS_CFG \
    {"metrics.ci_max_builders", NULL, FH_CFG_INT, "500", 1, 100000, \
     "builders with their own series on /metrics/ci; the rest are summed into builder=\"_other\""}, \
    {"metrics.ci_max_state_series", NULL, FH_CFG_INT, "2000", 1, 1000000, \
     "builder/branch state series on /metrics/ci at most (newest first; the rest are omitted " \
     "and counted)"}, \
    {"metrics.ci_ttl_ms", NULL, FH_CFG_INT, "5000", 0, 600000, \
     "how long a rendered /metrics/ci answer is reused (0: every scrape queries the view)"}
/* clang-format on */

typedef struct fh_view fh_view;
typedef struct view_ci view_ci;

/* Makes the view's CI metrics (v->ci) from v's configuration (metrics.ci_* and view.batch_max,
 * the most observations one batch stages). Called by fh_view_start before the view thread runs.
 * Returns 0, or -1 out of memory with errbuf. view_ci_free frees them (NULL v->ci is fine). */
int view_ci_init(fh_view *v, char *errbuf, size_t errsize);
void view_ci_free(fh_view *v);

/* View thread: observes an applied event (inside the open batch, after view_apply_event); a
 * started build's request is looked up on the writer connection for its queue wait. */
void view_ci_observe(fh_view *v, const fh_event *ev);
/* View thread: the open batch committed (staged observations count) or rolled back (they
 * are dropped). */
void view_ci_commit(fh_view *v);
void view_ci_abort(fh_view *v);

/* GET /metrics/ci; the route's ctx is the view (fh_view *; NULL or disabled: 503). */
void view_ci_handle(void *ctx, fh_http_request *req, fh_http_response *resp);

/* Builder state per builder and branch, from the last finished build whose results decide one
 * (0 success and 1 warnings: green; 2 failure and 4 exception: broken; skipped, retry and
 * cancelled builds change nothing), and the first build of that state (since when). ?1 builder
 * and ?2 branch filter (NULL: all). Columns: 0 builder, 1 branch, 2 green (0/1), then the last
 * build: 3 buildid, 4 number, 5 complete_at, 6 results, 7 revision; then the first build of the
 * state: 8 buildid, 9 number, 10 complete_at, 11 results, 12 revision, 13 owner. Newest last
 * build first. The builds_state index (builder, branch, complete_at, buildid) gives each group's
 * builds in order without a sort: the last row of a group is the state, the last row where green
 * changed is the first build of it. */
#define VIEW_CI_STATE_SQL                                                                          \
    "WITH f AS (SELECT builder, branch, buildid, number, complete_at, results, revision, owner,"   \
    " (results <= 1) AS green, lag(results <= 1) OVER w AS prev, lead(buildid) OVER w AS next"     \
    " FROM builds WHERE finished = 1 AND complete_at IS NOT NULL AND results IN (0, 1, 2, 4)"      \
    " AND (?1 IS NULL OR builder = ?1) AND (?2 IS NULL OR branch = ?2)"                            \
    " WINDOW w AS (PARTITION BY builder, branch ORDER BY complete_at, buildid)),"                  \
    " s AS (SELECT *, lead(buildid) OVER (PARTITION BY builder, branch"                            \
    " ORDER BY complete_at, buildid) AS next_flip FROM f WHERE prev IS NULL OR prev <> green)"     \
    " SELECT l.builder, l.branch, l.green, l.buildid, l.number, l.complete_at, l.results,"         \
    " l.revision, s.buildid, s.number, s.complete_at, s.results, s.revision, s.owner"              \
    " FROM f AS l JOIN s ON s.builder = l.builder AND s.branch = l.branch AND s.next_flip IS NULL" \
    " WHERE l.next IS NULL ORDER BY l.complete_at DESC, l.builder, l.branch"

#endif
