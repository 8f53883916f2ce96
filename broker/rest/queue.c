/* rest/queue: what waits and what runs: pending requests, running builds, builders. Pending
 * and running answers carry wall-clock times (waiting_s, elapsed_s), so they live at most 1 s. */
#include "internal.h"

/* ---- pending ---------------------------------------------------------------------------- */

#define BR_PENDING " claimed = 0 AND complete = 0 AND submitted_at IS NOT NULL"

int rest_render_pending(view_reader *r, const view_asof *a, const rest_args *l, fh_buf *out,
                        fh_http_response *resp)
{
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_PENDING,
        "SELECT json_group_array(json_object('buildrequestid', buildrequestid, 'builder', builder,"
        " 'builderid', builderid, 'branch', branch, 'revision', revision, 'repository', repository,"
        " 'project', project, 'codebase', codebase, 'owner', owner, 'buildsetid', buildsetid,"
        " 'priority', priority, 'submitted_at', submitted_at,"
        " 'waiting_s', round(max(0, ?7 - submitted_at), 3), 'reason', reason))"
        " FROM (SELECT * FROM buildrequests WHERE" BR_PENDING " AND" REST_LIST_FILTER
        " ORDER BY submitted_at, buildrequestid LIMIT ?6)");
    if (!st)
        return -1;
    rest_bind_list(st, l);
    sqlite3_bind_int64(st, 6, l->limit);
    sqlite3_bind_double(st, 7, (double)fh_now_ms() / 1000.0);
    fh_buf_printf(out, "\"pending\":");
    if (rest_one_json(st, out))
        return -1;
    /* Without filters the count leaves the filter's terms out: it then reads only the
     * br_pending index, not each request's row (the terms are true for every row, but SQLite
     * still reads the row to evaluate them). The list reads its rows anyway. */
    int all = !l->builder && !l->branch && !l->project && !l->owner && !l->repository;
    st = all ? view_reader_stmt(r, S_PENDING_TOTAL_ALL,
                                "SELECT count(*) FROM buildrequests WHERE" BR_PENDING)
             : view_reader_stmt(r, S_PENDING_TOTAL,
                                "SELECT count(*) FROM buildrequests WHERE" BR_PENDING
                                " AND" REST_LIST_FILTER);
    if (!st)
        return -1;
    if (!all)
        rest_bind_list(st, l);
    long long total = rest_one_int(st);
    if (total < 0)
        return -1;
    fh_buf_printf(out, ",\"total\":%lld,\"limit\":%lld", total, l->limit);
    return 0;
}

/* ---- running ---------------------------------------------------------------------------- */

#define RUN_FILTER                                                                                 \
    " finished = 0 AND started_at IS NOT NULL AND" REST_LIST_FILTER                                \
    " AND (?6 IS NULL OR worker = ?6)"

int rest_render_running(view_reader *r, const view_asof *a, const rest_args *l, fh_buf *out,
                        fh_http_response *resp)
{
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_RUNNING,
        "SELECT json_group_array(json_object('buildid', b.buildid,"
        " 'buildrequestid', b.buildrequestid, 'builder', b.builder, 'builderid', b.builderid,"
        " 'number', b.number, 'worker', b.worker, 'master', b.master, 'branch', b.branch,"
        " 'revision', b.revision, 'repository', b.repository, 'project', b.project,"
        " 'codebase', b.codebase, 'owner', b.owner, 'started_at', b.started_at,"
        " 'elapsed_s', round(max(0, ?8 - b.started_at), 3), 'state_string', b.state_string,"
        " 'current_step', json((SELECT json_object('stepid', s.stepid, 'number', s.number,"
        "   'name', s.name, 'started_at', s.started_at) FROM steps s"
        "   WHERE s.buildid = b.buildid AND s.finished = 0 AND s.started_at IS NOT NULL"
        "   ORDER BY s.number DESC LIMIT 1))))"
        " FROM (SELECT * FROM builds WHERE" RUN_FILTER " ORDER BY started_at, buildid LIMIT ?7) b");
    if (!st)
        return -1;
    rest_bind_list(st, l);
    rest_bind_opt(st, 6, l->worker);
    sqlite3_bind_int64(st, 7, l->limit);
    sqlite3_bind_double(st, 8, (double)fh_now_ms() / 1000.0);
    fh_buf_printf(out, "\"running\":");
    if (rest_one_json(st, out))
        return -1;
    st = view_reader_stmt(r, S_RUNNING_TOTAL, "SELECT count(*) FROM builds WHERE" RUN_FILTER);
    if (!st)
        return -1;
    rest_bind_list(st, l);
    rest_bind_opt(st, 6, l->worker);
    long long total = rest_one_int(st);
    if (total < 0)
        return -1;
    fh_buf_printf(out, ",\"total\":%lld,\"limit\":%lld", total, l->limit);
    return 0;
}

/* ---- builders --------------------------------------------------------------------------- */

int rest_render_builders(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                         fh_http_response *resp)
{
    (void)a;
    (void)q;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILDERS,
        "WITH p AS (SELECT builderid, count(*) n FROM buildrequests WHERE claimed = 0"
        "  AND complete = 0 AND submitted_at IS NOT NULL GROUP BY builderid),"
        " q AS (SELECT builderid, count(*) n FROM builds WHERE finished = 0"
        "  AND started_at IS NOT NULL GROUP BY builderid)"
        " SELECT json_group_array(json(o)) FROM (SELECT json_object('builderid', bl.builderid,"
        " 'name', bl.name, 'project', bl.project, 'pending', coalesce(p.n, 0),"
        " 'running', coalesce(q.n, 0), 'last_build', json((SELECT json_object('buildid', b.buildid,"
        "   'number', b.number, 'results', b.results, 'complete_at', b.complete_at,"
        "   'branch', b.branch, 'revision', b.revision) FROM builds b"
        "   WHERE b.builder = bl.name AND b.finished = 1 ORDER BY b.buildid DESC LIMIT 1))) o"
        " FROM builders bl LEFT JOIN p ON p.builderid = bl.builderid"
        " LEFT JOIN q ON q.builderid = bl.builderid ORDER BY bl.name, bl.builderid)");
    fh_buf_printf(out, "\"builders\":");
    return rest_one_json(st, out) ? -1 : 0;
}
