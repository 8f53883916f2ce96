#include "dashboard.h"

#include <string.h>

/* Generated at build time from web/ by tools/embed (see Makefile). */
struct fh_embedded_file {
    const char *name;
    const char *text;
};
extern const struct fh_embedded_file fh_embedded_web[];
extern const size_t fh_embedded_web_count;

typedef struct page {
    const char *path, *file, *type;
} page;

static const page pages[FH_DASHBOARD_ROUTES] = {
    {"/", "web/index.html", "text/html; charset=utf-8"},
    {"/index.html", "web/index.html", "text/html; charset=utf-8"},
    {"/dashboard.js", "web/dashboard.js", "text/javascript; charset=utf-8"},
    {"/dashboard.css", "web/dashboard.css", "text/css; charset=utf-8"},
};

static void serve(void *ctx, fh_http_request *req, fh_http_response *resp)
{
    const page *p = ctx;
    (void)req;
    for (size_t i = 0; i < fh_embedded_web_count; i++) {
        if (strcmp(fh_embedded_web[i].name, p->file) != 0)
            continue;
        resp->content_type = p->type;
        resp->max_age = 60; /* ETag revalidation covers a new build of the broker */
        if (fh_buf_append(&resp->body, fh_embedded_web[i].text, strlen(fh_embedded_web[i].text)))
            fh_http_error(resp, 500, "internal", NULL, "%s is larger than http.max_response_bytes",
                          p->file);
        return;
    }
    fh_http_error(resp, 404, "not_found", NULL, "%s is not in this build", p->file);
}

size_t dashboard_routes(fh_http_route *routes)
{
    for (size_t i = 0; i < FH_DASHBOARD_ROUTES; i++)
        routes[i] =
            (fh_http_route){"GET", pages[i].path, 0, "token,branch", serve, (void *)&pages[i]};
    return FH_DASHBOARD_ROUTES;
}
