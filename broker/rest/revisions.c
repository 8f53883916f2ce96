/* rest/revisions: a branch's repository and revision order (shared with last-green), and the
 * revisions x builders matrix. */
#include "internal.h"

/* ---- branches: repository, revision order ----------------------------------------------- */

int rest_resolve_repo(view_reader *r, const rest_args *q, char *repo, size_t size,
                      fh_http_response *resp)
{
    if (q->repository) {
        snprintf(repo, size, "%s", q->repository);
        return 0;
    }
    sqlite3_stmt *st = view_reader_stmt(
        r, S_REPOS,
        "SELECT DISTINCT repository FROM revisions WHERE branch = ?1 ORDER BY repository LIMIT 6");
    if (!st)
        return -1;
    rest_bind_opt(st, 1, q->branch);
    fh_buf names;
    int n = 0, rc;
    fh_buf_init(&names, 4096);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (n++ == 0)
            snprintf(repo, size, "%s", s ? s : "");
        fh_buf_printf(&names, "%s%s", n > 1 ? ", " : "", n <= 5 ? (s ? s : "") : "...");
    }
    if (rc != SQLITE_DONE) {
        fh_buf_free(&names);
        return -1;
    }
    if (n > 1) {
        fh_http_error(
            resp, 400, "bad_parameter", "repository",
            "repository: branch '%.100s' exists in several repositories (%.300s); name one",
            q->branch, names.data);
        fh_buf_free(&names);
        return 400;
    }
    fh_buf_free(&names);
    return n == 0 ? 1 : 0;
}

int rest_branch_head(view_reader *r, const rest_args *q, char *repo, size_t size, fh_buf *out,
                     fh_http_response *resp)
{
    int rr = rest_resolve_repo(r, q, repo, size, resp);
    if (rr < 0 || rr == 400)
        return rr;
    fh_buf_printf(out, "\"branch\":");
    fh_buf_json_str(out, q->branch);
    fh_buf_printf(out, ",\"repository\":");
    fh_buf_json_str(out, rr == 1 ? q->repository : repo);
    return rr;
}

#define REV_ORDER_DESC "ORDER BY pos DESC, (changeid IS NULL) DESC, changeid DESC, revision DESC"

void rest_rev_order_free(rest_rev_order *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->rev[i]);
    free(o->rev);
    free(o->pos);
    free(o->changeid);
    free(o->slots);
    memset(o, 0, sizeof(*o));
}

static size_t str_hash(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

long rest_rev_index(const rest_rev_order *o, const char *rev)
{
    if (!o->nslots || !rev)
        return -1;
    for (size_t i = str_hash(rev) & (o->nslots - 1);; i = (i + 1) & (o->nslots - 1)) {
        if (!o->slots[i])
            return -1;
        if (strcmp(o->rev[o->slots[i] - 1], rev) == 0)
            return (long)(o->slots[i] - 1);
    }
}

int rest_rev_order_load(view_reader *r, const char *repo, const char *branch, long long max,
                        rest_rev_order *o)
{
    memset(o, 0, sizeof(*o));
    sqlite3_stmt *st =
        view_reader_stmt(r, S_REVS,
                         "SELECT revision, pos, changeid FROM revisions"
                         " WHERE repository = ?1 AND branch = ?2 " REV_ORDER_DESC " LIMIT ?3");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, max);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (o->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nr = realloc(o->rev, cap * sizeof(*nr));
            if (nr)
                o->rev = nr;
            double *np = realloc(o->pos, cap * sizeof(*np));
            if (np)
                o->pos = np;
            long long *nc = realloc(o->changeid, cap * sizeof(*nc));
            if (nc)
                o->changeid = nc;
            if (!nr || !np || !nc)
                return -1;
        }
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (!(o->rev[o->n] = strdup(s ? s : "")))
            return -1;
        o->pos[o->n] = sqlite3_column_double(st, 1);
        o->changeid[o->n] = sqlite3_column_int64(st, 2);
        o->n++;
    }
    if (rc != SQLITE_DONE)
        return -1;
    /* Newest first from SQL; keep oldest first. */
    for (size_t i = 0; i < o->n / 2; i++) {
        size_t j = o->n - 1 - i;
        char *t = o->rev[i];
        o->rev[i] = o->rev[j];
        o->rev[j] = t;
        double tp = o->pos[i];
        o->pos[i] = o->pos[j];
        o->pos[j] = tp;
        long long tc = o->changeid[i];
        o->changeid[i] = o->changeid[j];
        o->changeid[j] = tc;
    }
    o->nslots = 16;
    while (o->nslots < o->n * 2)
        o->nslots *= 2;
    if (!(o->slots = calloc(o->nslots, sizeof(*o->slots))))
        return -1;
    for (size_t i = 0; i < o->n; i++) {
        size_t h = str_hash(o->rev[i]) & (o->nslots - 1);
        while (o->slots[h])
            h = (h + 1) & (o->nslots - 1);
        o->slots[h] = i + 1;
    }
    return 0;
}

/* ---- revisions -------------------------------------------------------------------------- */

int rest_render_revisions(view_reader *r, const view_asof *a, const rest_args *q, fh_buf *out,
                          fh_http_response *resp)
{
    char repo[1024];
    (void)a;
    int rr = rest_branch_head(r, q, repo, sizeof(repo), out, resp);
    if (rr < 0 || rr == 400)
        return rr;
    if (rr == 1) {
        fh_buf_printf(out, ",\"builders\":[],\"revisions\":[],\"limit\":%lld", q->limit);
        return 0;
    }
    sqlite3_stmt *st = view_reader_stmt(
        r, S_MATRIX_BUILDERS,
        "SELECT json_group_array(builder) FROM (SELECT DISTINCT b.builder FROM builds b"
        " WHERE b.repository = ?1 AND b.branch = ?2 AND b.revision IN (SELECT revision"
        " FROM revisions WHERE repository = ?1 AND branch = ?2 " REV_ORDER_DESC " LIMIT ?3)"
        " ORDER BY b.builder)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, q->branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, q->limit);
    fh_buf_printf(out, ",\"builders\":");
    if (rest_one_json(st, out))
        return -1;
    /* Each cell is the builder's newest build at the revision. */
    st = view_reader_stmt(
        r, S_MATRIX,
        "SELECT json_group_array(json(o)) FROM (SELECT json_object('revision', r.revision,"
        " 'position', r.pos, 'changeid', r.changeid, 'author', c.author, 'when', c.when_ts,"
        " 'comments', c.comments, 'builds', json((SELECT json_group_object(b.builder,"
        "   json_object('buildid', b.buildid, 'number', b.number, 'finished',"
        "   json(CASE b.finished WHEN 1 THEN 'true' ELSE 'false' END), 'results', b.results,"
        "   'state_string', b.state_string)) FROM builds b"
        "   WHERE b.repository = r.repository AND b.branch = r.branch"
        "   AND b.revision = r.revision AND b.buildid = (SELECT max(b2.buildid) FROM builds b2"
        "   WHERE b2.repository = b.repository AND b2.branch = b.branch"
        "   AND b2.revision = b.revision AND b2.builder = b.builder)))) o"
        " FROM revisions r LEFT JOIN changes c ON c.changeid = r.changeid"
        " WHERE r.repository = ?1 AND r.branch = ?2"
        " ORDER BY r.pos DESC, (r.changeid IS NULL) DESC, r.changeid DESC, r.revision DESC"
        " LIMIT ?3)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, q->branch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, q->limit);
    fh_buf_printf(out, ",\"revisions\":");
    if (rest_one_json(st, out))
        return -1;
    fh_buf_printf(out, ",\"limit\":%lld", q->limit);
    return 0;
}
