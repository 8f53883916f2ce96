/* ingest_ci: GitHub and GitLab webhooks into the v1 contract, beside Buildbot's HttpStatusPush
 * ingest (statuspush.c). POST /api/v1/ingest/github takes GitHub's workflow_job, workflow_run and
 * check_run deliveries (signed: X-Hub-Signature-256 under ingest.github.secret), POST
 * /api/v1/ingest/gitlab GitLab's Job and Pipeline Hooks (X-Gitlab-Token equal to
 * ingest.gitlab.token). lib/fh_ci maps each delivery to v1 events (docs/ingest.md); they pass the
 * contract and are produced to Kafka before the answer (202), so a 5xx means nothing is promised
 * and the sender's redelivery covers it. A delivery id seen before (bounded memory, cap and TTL)
 * is answered 200 without producing again, and event ids are derived from the payload, so even a
 * redelivery the memory no longer holds is the same events downstream. Deliveries are handled
 * concurrently on libmicrohttpd's threads; each waits for its own delivery reports. */
#ifndef FH_BROKER_INGEST_CI_H
#define FH_BROKER_INGEST_CI_H

#include "broker.h"
#include "http.h"

#define FH_INGEST_CI_ROUTES 2

/* clang-format off */
#define FH_INGEST_CI_CFG                                                                           \
    {"ingest.github.secret", NULL, FH_CFG_STR, "", 0, 0,                                           \
     "secret of the GitHub webhook: POST /api/v1/ingest/github needs X-Hub-Signature-256 made "    \
     "with it; empty turns the endpoint off (503). Set it through the environment or the config "  \
     "file, not a flag others can read in the process list"},                                      \
    {"ingest.github.repository", NULL, FH_CFG_STR, "html_url", 0, 0,                               \
     "member of a GitHub payload's repository that becomes the events' repository: html_url, "     \
     "clone_url or ssh_url (the same text Buildbot's change sources use for that repository, "     \
     "so both systems' builds meet in one revision)"},                                             \
    {"ingest.gitlab.token", NULL, FH_CFG_STR, "", 0, 0,                                            \
     "secret token of the GitLab webhook: POST /api/v1/ingest/gitlab needs it as "                 \
     "X-Gitlab-Token; empty turns the endpoint off (503)"},                                        \
    {"ingest.gitlab.repository", NULL, FH_CFG_STR, "web_url", 0, 0,                                \
     "member of a GitLab payload's project that becomes the events' repository: web_url, "         \
     "git_http_url or git_ssh_url"},                                                               \
    {"ingest.ci.max_body_bytes", NULL, FH_CFG_INT, "1048576", 1024, 26214400,                      \
     "largest GitHub or GitLab webhook body; a larger one gets 413 and produces nothing"},         \
    {"ingest.ci.dedup_entries", NULL, FH_CFG_INT, "100000", 1024, 10000000,                        \
     "GitHub and GitLab delivery ids remembered at most (up to 48 bytes each); past it the "       \
     "oldest is forgotten first"},                                                                 \
    {"ingest.ci.dedup_ttl_s", NULL, FH_CFG_INT, "259200", 60, 2592000,                             \
     "how long a delivery id is remembered: a redelivery within it is answered 200 and "           \
     "produces nothing (GitHub lets deliveries of the last 3 days be redelivered)"}
/* clang-format on */

/* The module's handle: its producer, the delivery-id memory, the per-master seq table, the two
 * systems' settings and metrics. */
typedef struct fh_ingest_ci fh_ingest_ci;

/* Checks the keys and makes the handle; when either endpoint is on, also its producer. Call
 * after the Kafka address is known. On success *out is the handle (free it with
 * ingest_ci_free); on error *out is NULL and errbuf says why. */
fh_err ingest_ci_start(fh_broker *b, fh_ingest_ci **out, char *errbuf, size_t errsize);
/* Fills routes[0..FH_INGEST_CI_ROUTES); returns how many. Their ctx is inside ci. */
size_t ingest_ci_routes(fh_ingest_ci *ci, fh_http_route *routes);
/* The endpoints' body cap (ingest.ci.max_body_bytes) for fh_http_config.body_caps; *caps lives
 * as long as ci. Returns how many. */
size_t ingest_ci_body_caps(fh_ingest_ci *ci, const fh_http_body_cap **caps);
/* Flushes and destroys the producer and frees ci. Call after the HTTP server stopped. NULL is
 * fine. */
void ingest_ci_free(fh_ingest_ci *ci);

#endif
