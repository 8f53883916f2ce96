/* rest/state: GET /api/v1/builders/state: per builder and branch, green or broken, since when,
 * and the build that made it so. The rules and the query are view/cimetrics.h's
 * (VIEW_CI_STATE_SQL), shared with the firehose_ci_builder_green metric. */
#include "internal.h"

#include "view/cimetrics.h"

/* Appends {"buildid":..,"number":..,"results":..,"complete_at":..,"revision":..} from columns
 * first..first+4 of st. */
static int put_build(fh_buf *out, sqlite3_stmt *st, int first)
{
    const char *rev = (const char *)sqlite3_column_text(st, first + 4);
    int bad = fh_buf_printf(out, "{\"buildid\":%lld,\"number\":", sqlite3_column_int64(st, first));
    if (sqlite3_column_type(st, first + 1) == SQLITE_NULL)
        bad |= fh_buf_printf(out, "null");
    else
        bad |= fh_buf_printf(out, "%lld", sqlite3_column_int64(st, first + 1));
    bad |=
        fh_buf_printf(out, ",\"results\":%d,\"complete_at\":", sqlite3_column_int(st, first + 3));
    rest_put_double(out, sqlite3_column_double(st, first + 2));
    return bad | fh_buf_printf(out, ",\"revision\":") | fh_buf_json_str(out, rev ? rev : "");
}

int rest_render_state(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                      fh_http_response *resp)
{
    (void)a;
    (void)resp;
    sqlite3_stmt *st = view_reader_stmt(r, S_STATE, VIEW_CI_STATE_SQL);
    if (!st)
        return -1;
    rest_bind_opt(st, 1, q->builder);
    rest_bind_opt(st, 2, q->branch);
    long long n = 0, total = 0;
    int rc, bad = fh_buf_printf(out, "\"states\":[");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int green = sqlite3_column_int(st, 2);
        if (q->state && strcmp(q->state, green ? "green" : "broken") != 0)
            continue;
        if (total++ >= q->limit)
            continue;
        const char *builder = (const char *)sqlite3_column_text(st, 0);
        const char *branch = (const char *)sqlite3_column_text(st, 1);
        const char *owner = (const char *)sqlite3_column_text(st, 13);
        bad |= fh_buf_printf(out, "%s{\"builder\":", n++ ? "," : "") |
               fh_buf_json_str(out, builder ? builder : "") | fh_buf_printf(out, ",\"branch\":") |
               fh_buf_json_str(out, branch ? branch : "") |
               fh_buf_printf(out, ",\"state\":\"%s\",\"since\":", green ? "green" : "broken");
        rest_put_double(out, sqlite3_column_double(st, 10));
        bad |= fh_buf_printf(out, ",\"since_build\":") | put_build(out, st, 8) |
               fh_buf_printf(out, ",\"owner\":") | fh_buf_json_str(out, owner ? owner : "") |
               fh_buf_printf(out, "},\"last_build\":") | put_build(out, st, 3) |
               fh_buf_printf(out, "}}");
    }
    /* over the cap: the caller reports it like any render failure (a 500 naming why) */
    if (rc != SQLITE_DONE || bad)
        return -1;
    fh_buf_printf(out, "],\"total\":%lld,\"limit\":%lld", total, q->limit);
    return 0;
}
