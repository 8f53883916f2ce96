/* rest/builds: the builds list (newest first, cursor paging) and one build with its steps,
 * logs and properties. */
#include "internal.h"

/* ---- builds ----------------------------------------------------------------------------- */

#define BUILD_JSON(b)                                                                              \
    "json_object('buildid', " b ".buildid, 'buildrequestid', " b ".buildrequestid,"                \
    " 'builder', " b ".builder, 'builderid', " b ".builderid, 'number', " b ".number,"             \
    " 'branch', " b ".branch, 'revision', " b ".revision, 'repository', " b ".repository,"         \
    " 'project', " b ".project, 'codebase', " b ".codebase, 'owner', " b ".owner,"                 \
    " 'worker', " b ".worker, 'master', " b ".master, 'started_at', " b ".started_at,"             \
    " 'complete_at', " b ".complete_at, 'finished', json(CASE " b ".finished WHEN 1 THEN 'true'"   \
    " ELSE 'false' END), 'results', " b ".results, 'state_string', " b ".state_string,"            \
    " 'duration_s', " b ".duration_s"

int rest_render_builds(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                       fh_http_response *resp)
{
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILDS,
        "SELECT " BUILD_JSON(
            "b") "), b.buildid FROM builds b WHERE" REST_LIST_FILTER
                 " AND (?6 IS NULL OR worker = ?6) AND (?7 IS NULL OR revision = ?7)"
                 " AND (?8 < 0 OR (finished = 1 AND results = ?8))"
                 " AND (?9 IS NULL OR (?9 = 'running' AND finished = 0 AND started_at IS NOT NULL)"
                 "  OR (?9 = 'finished' AND finished = 1))"
                 " AND (?10 < 0 OR buildrequestid = ?10) AND (?11 < 0 OR buildid < ?11)"
                 " ORDER BY buildid DESC LIMIT ?12");
    if (!st)
        return -1;
    rest_bind_list(st, q);
    rest_bind_opt(st, 6, q->worker);
    rest_bind_opt(st, 7, q->revision);
    sqlite3_bind_int64(st, 8, q->results);
    rest_bind_opt(st, 9, q->state);
    sqlite3_bind_int64(st, 10, q->buildrequestid);
    sqlite3_bind_int64(st, 11, q->cursor);
    sqlite3_bind_int64(st, 12, q->limit + 1);
    fh_buf_printf(out, "\"builds\":[");
    long long n = 0, last = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == q->limit) {
            n++;
            break;
        }
        if (n++)
            fh_buf_printf(out, ",");
        rest_put_json_col(out, st, 0);
        last = sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    fh_buf_printf(out, "],\"limit\":%lld,\"next_cursor\":", q->limit);
    if (n > q->limit)
        fh_buf_printf(out, "\"b%lld\"", last);
    else
        fh_buf_printf(out, "null");
    return 0;
}

int rest_render_build(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                      fh_http_response *resp)
{
    (void)a;
    sqlite3_stmt *st = view_reader_stmt(
        r, S_BUILD,
        "SELECT " BUILD_JSON(
            "b") ","
                 " 'steps', json((SELECT json_group_array(json_object('stepid', s.stepid,"
                 "   'number', s.number, 'name', s.name, 'started_at', s.started_at,"
                 "   'complete_at', s.complete_at, 'finished', json(CASE s.finished WHEN 1 THEN "
                 "'true'"
                 "   ELSE 'false' END), 'results', s.results, 'state_string', s.state_string,"
                 "   'duration_s', s.duration_s, 'hidden', json(CASE s.hidden WHEN 1 THEN 'true'"
                 "   WHEN 0 THEN 'false' ELSE 'null' END), 'urls', json(coalesce(s.urls, '[]')),"
                 "   'logs', json((SELECT json_group_array(json_object('logid', g.logid, 'name', "
                 "g.name,"
                 "     'slug', g.slug, 'type', g.type, 'num_lines', g.num_lines,"
                 "     'finished', json(CASE g.finished WHEN 1 THEN 'true' ELSE 'false' END)))"
                 "     FROM logs g WHERE g.buildid = s.buildid AND g.stepid = s.stepid))))"
                 "   FROM steps s WHERE s.buildid = b.buildid)),"
                 " 'properties', json((SELECT json_group_object(p.name, json_array(json(p.value), "
                 "p.source))"
                 "   FROM properties p WHERE p.buildid = b.buildid)))"
                 " FROM builds b WHERE b.buildid = ?1");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, q->id);
    fh_buf_printf(out, "\"build\":");
    int rc = rest_one_json(st, out);
    if (rc > 0) {
        fh_http_error(resp, 404, "not_found", "buildid", "no build %lld in the view", q->id);
        return 404;
    }
    return rc;
}
