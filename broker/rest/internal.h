/* rest/internal.h: what the files of the REST layer share, and nothing outside it includes.
 * Files:
 *   rest.c       the route table and the one handler it drives (checks, parameters, cache key,
 *                cache or render, "as_of", ETag)
 *   answer.c     small writers and readers the renderers share
 *   queue.c      pending, running, builders
 *   builds.c     builds, one build
 *   revisions.c  a branch's repository and revision order; revisions
 *   lastgreen.c  last-green (the rules are lib/fh_lastgreen)
 *   stats.c      step and build statistics
 *   state.c      builder state (green or broken, since when)
 *   tests.c      test statistics and flaky tests (per-test history: view/tests.c) */
#ifndef FH_REST_INTERNAL_H
#define FH_REST_INTERNAL_H

#include "rest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_util.h"
#include "view/view.h"

/* Every endpoint's parameters, parsed by the table's rules (rest.c) before rendering. Text
 * parameters are NULL when absent (borrowed from the request); numbers take their defaults. */
typedef struct rest_args {
    const char *builder, *branch, *project, *owner, *repository, *worker, *revision, *state,
        *cursor_text;
    long long limit, results, buildrequestid, cursor, window, bucket;
    long long id; /* the {} path segment (builds/{}) */
} rest_args;

/* A render function writes the answer's members into out. Returns 0, an HTTP status it has
 * already set on resp with fh_http_error (4xx; not cached), or -1 on an internal error. */
typedef int rest_renderer(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                          fh_http_response *resp);
typedef rest_renderer *rest_render_fn;

/* Reader statement slots (0 and 1 are the view's). */
enum {
    S_PENDING = 2,
    S_PENDING_TOTAL,
    S_RUNNING,
    S_RUNNING_TOTAL,
    S_BUILDS,
    S_BUILD,
    S_BUILDERS,
    S_REPOS,
    S_REVS,
    S_REQUIRED,
    S_LG_BUILDS,
    S_CHANGE,
    S_MATRIX,
    S_MATRIX_BUILDERS,
    S_STEP_STATS,
    S_BUILD_STATS,
    S_STATE,
    S_TEST_SLOWEST,
    S_TEST_FAILING,
    S_TEST_COUNT,
    S_FLAKY,
    S_PENDING_TOTAL_ALL,
};

/* ---- answer.c --------------------------------------------------------------------------- */

/* A number, or null when it is not finite. */
void rest_put_double(fh_buf *out, double v);
/* Appends the JSON text a query produced (a json_* function result), or null. */
void rest_put_json_col(fh_buf *out, sqlite3_stmt *st, int i);
void rest_put_rfc3339(fh_buf *out, double epoch_s);
/* Binds s, or NULL when s is NULL. */
void rest_bind_opt(sqlite3_stmt *st, int i, const char *s);
/* Steps a statement that yields one row with one JSON column and appends it: 0, 1 when there
 * is no row, -1 on error (also when st is NULL). */
int rest_one_json(sqlite3_stmt *st, fh_buf *out);
/* The one integer a statement yields, or -1. */
long long rest_one_int(sqlite3_stmt *st);
/* Appends "builder", "window_s", "from" and "to" of a windowed answer (the stats endpoints). */
void rest_put_window(fh_buf *out, const view_asof *a, const rest_args *s);
/* The SQL condition rest_bind_list's ?1..?5 stand for: a NULL parameter matches every row. */
#define REST_LIST_FILTER                                                                           \
    " (?1 IS NULL OR builder = ?1) AND (?2 IS NULL OR branch = ?2)"                                \
    " AND (?3 IS NULL OR project = ?3) AND (?4 IS NULL OR owner = ?4)"                             \
    " AND (?5 IS NULL OR repository = ?5)"
/* Binds builder, branch, project, owner, repository as ?1..?5 (NULL when absent). */
void rest_bind_list(sqlite3_stmt *st, const rest_args *l);

/* ---- the renderers ---------------------------------------------------------------------- */

/* Each has rest_renderer's contract (above). */
rest_renderer rest_render_pending, rest_render_running, rest_render_builders, rest_render_builds,
    rest_render_build, rest_render_revisions, rest_render_last_green, rest_render_step_stats,
    rest_render_build_stats, rest_render_state, rest_render_test_stats, rest_render_flaky;

/* ---- revisions.c: a branch's revisions, for revisions and last-green -------------------- */

/* The newest revisions of a branch, oldest first, with a hash of revision -> index. */
typedef struct rest_rev_order {
    char **rev;
    double *pos;
    long long *changeid; /* 0 when none */
    size_t n;
    size_t *slots; /* hash of revision -> index + 1 */
    size_t nslots;
} rest_rev_order;

/* Finds the repository of q->branch into repo (q->repository when given). Returns 0, 1 when
 * the branch has no known revisions, 400 (already set on resp) when it is in several
 * repositories, -1 on error. */
int rest_resolve_repo(view_reader *r, const rest_args *q, char *repo, size_t size,
                      fh_http_response *resp);
/* rest_resolve_repo, then on 0 or 1 writes the answer's "branch" and "repository" members into
 * out (the repository asked for, or the one found). Returns what rest_resolve_repo returned. */
int rest_branch_head(view_reader *r, const rest_args *q, char *repo, size_t size, fh_buf *out,
                     fh_http_response *resp);
/* Loads the newest max revisions of repo/branch into o (zeroed here; free with
 * rest_rev_order_free, also after an error). Returns 0 or -1. */
int rest_rev_order_load(view_reader *r, const char *repo, const char *branch, long long max,
                        rest_rev_order *o);
void rest_rev_order_free(rest_rev_order *o);
/* The index of rev in o, or -1. */
long rest_rev_index(const rest_rev_order *o, const char *rev);

#endif
