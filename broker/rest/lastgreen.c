/* rest/lastgreen: GET /api/v1/last-green: reads the branch's revisions, required builders and
 * finished builds, lets lib/fh_lastgreen decide, and writes the answer with its reasons. */
#include "internal.h"

/* ---- last green ------------------------------------------------------------------------- */

static void put_lg_build(fh_buf *out, const fh_lg_verdict *v, const rest_rev_order *o)
{
    fh_buf_printf(out, "{\"buildid\":%lld,\"number\":%lld,\"revision\":", v->build.buildid,
                  v->build.number);
    fh_buf_json_str(out, o->rev[v->rev]);
    fh_buf_printf(out, ",\"results\":%d,\"complete_at\":", v->build.results);
    rest_put_double(out, v->build.complete_at);
    fh_buf_printf(out, "}");
}

/* The builders last-green requires on a branch: the configured ones (parsed once at start), or
 * those that finished a build on it within view.required_window_s of its newest one. *names
 * is sorted, each once; the caller frees it with free_names. Returns 0 or -1. */
static int required_builders(view_reader *r, const char *repo, const char *branch, char ***names,
                             size_t *n, int *from_config)
{
    *names = NULL;
    *n = 0;
    const fh_lg_rule *rule = view_required_builders(view_reader_view(r), branch);
    *from_config = rule != NULL;
    if (rule) {
        if (!rule->n)
            return 0;
        if (!(*names = calloc(rule->n, sizeof(**names))))
            return -1;
        for (; *n < rule->n; (*n)++)
            if (!((*names)[*n] = strdup(rule->builders[*n])))
                return -1;
        return 0;
    }
    sqlite3_stmt *st = view_reader_stmt(
        r, S_REQUIRED,
        "SELECT DISTINCT builder FROM builds WHERE repository = ?1 AND branch = ?2"
        " AND finished = 1 AND complete_at >= (SELECT max(complete_at) FROM builds"
        " WHERE repository = ?1 AND branch = ?2 AND finished = 1) - ?3 ORDER BY builder");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, view_required_window_s(view_reader_view(r)));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **nn = realloc(*names, (*n + 1) * sizeof(*nn));
        if (!nn)
            return -1;
        *names = nn;
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (!(nn[*n] = strdup(s ? s : "")))
            return -1;
        (*n)++;
    }
    if (rc != SQLITE_DONE)
        return -1;
    *n = fh_lg_names_sort(*names, *n);
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Feeds every finished build with a verdict on the branch to lg (RETRY and CANCELLED say
 * nothing about the code). */
static int load_builds(view_reader *r, const char *repo, const char *branch,
                       const rest_rev_order *o, char *const *names, size_t nb, fh_lastgreen *lg)
{
    sqlite3_stmt *st = view_reader_stmt(
        r, S_LG_BUILDS,
        "SELECT builder, revision, buildid, number, results, complete_at FROM builds"
        " WHERE repository = ?1 AND branch = ?2 AND finished = 1 AND revision <> ''"
        " AND results IS NOT NULL AND results NOT IN (5, 6) ORDER BY buildid");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, branch, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name)
            continue;
        long b = fh_lg_names_find(names, nb, name);
        long idx = rest_rev_index(o, (const char *)sqlite3_column_text(st, 1));
        if (b < 0 || idx < 0)
            continue;
        fh_lg_build x = {sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                         sqlite3_column_int(st, 4), sqlite3_column_double(st, 5)};
        if (fh_lastgreen_add(lg, (size_t)b, idx, &x))
            return -1;
    }
    return rc == SQLITE_DONE ? 0 : -1;
}

int rest_render_last_green(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                           fh_http_response *resp)
{
    char repo[1024];
    rest_rev_order o;
    fh_lastgreen lg;
    char **names = NULL;
    size_t nb = 0;
    int rc = -1, from_config = 0;
    const char *reason = NULL;
    char reason_buf[512];
    fh_lg_answer ans = {FH_LG_NO_GREEN, -1, 0};
    (void)a;
    memset(&o, 0, sizeof(o));
    memset(&lg, 0, sizeof(lg));

    int rr = rest_branch_head(r, q, repo, sizeof(repo), out, resp);
    if (rr < 0 || rr == 400)
        return rr;
    if (rr == 1) {
        snprintf(reason_buf, sizeof(reason_buf), "no revisions known for branch '%s'%s", q->branch,
                 q->repository ? " in this repository" : "");
        reason = reason_buf;
        goto answer;
    }
    if (rest_rev_order_load(r, repo, q->branch, view_max_revisions(view_reader_view(r)), &o))
        goto out;
    if (!o.n) {
        snprintf(reason_buf, sizeof(reason_buf), "no revisions known for branch '%.200s' in %.200s",
                 q->branch, repo);
        reason = reason_buf;
        goto answer;
    }
    if (required_builders(r, repo, q->branch, &names, &nb, &from_config))
        goto out;
    if (!nb) {
        snprintf(reason_buf, sizeof(reason_buf), "no finished builds on branch '%s'", q->branch);
        reason = reason_buf;
        goto answer;
    }
    if (fh_lastgreen_init(&lg, o.n, nb) || load_builds(r, repo, q->branch, &o, names, nb, &lg) ||
        fh_lastgreen_decide(&lg, &ans))
        goto out;
    if (ans.why != FH_LG_FOUND) {
        snprintf(reason_buf, sizeof(reason_buf),
                 ans.why == FH_LG_NO_GREEN
                     ? "builder '%s' has no green build on branch '%s'"
                     : "no revision is good for every required builder (builder '%s' has "
                       "no good revision old enough on branch '%s')",
                 names[ans.builder], q->branch);
        reason = reason_buf;
    }

answer:
    fh_buf_printf(out, ",\"revision\":");
    if (ans.rev >= 0) {
        fh_buf_json_str(out, o.rev[ans.rev]);
        fh_buf_printf(out, ",\"position\":");
        rest_put_double(out, o.pos[ans.rev]);
        fh_buf_printf(out, ",\"changeid\":");
        if (o.changeid[ans.rev])
            fh_buf_printf(out, "%lld", o.changeid[ans.rev]);
        else
            fh_buf_printf(out, "null");
        fh_buf_printf(out, ",\"reason\":null");
    } else {
        fh_buf_printf(out, "null,\"position\":null,\"changeid\":null,\"reason\":");
        fh_buf_json_str(out, reason);
    }
    fh_buf_printf(out, ",\"required_from\":\"%s\",\"required_builders\":[",
                  from_config ? "config" : "recent_builds");
    for (size_t i = 0; i < nb; i++) {
        fh_buf_printf(out, "%s", i ? "," : "");
        fh_buf_json_str(out, names[i]);
    }
    fh_buf_printf(out, "],\"builders\":[");
    for (size_t i = 0; ans.rev >= 0 && i < nb; i++) {
        fh_lg_reason why;
        fh_lastgreen_reason(&lg, i, ans.rev, &why);
        fh_buf_printf(out, "%s{\"builder\":", i ? "," : "");
        fh_buf_json_str(out, names[i]);
        if (!why.between) {
            fh_buf_printf(out, ",\"good_by\":\"green_build\",\"build\":");
            put_lg_build(out, why.build, &o);
        } else {
            fh_buf_printf(out, ",\"good_by\":\"between_green_builds\",\"build_before\":");
            put_lg_build(out, why.before, &o);
            fh_buf_printf(out, ",\"build_after\":");
            put_lg_build(out, why.after, &o);
        }
        fh_buf_printf(out, "}");
    }
    fh_buf_printf(out, "]");
    rc = 0;
out:
    free_names(names, nb);
    fh_lastgreen_free(&lg);
    rest_rev_order_free(&o);
    return rc;
}
