/* fh_ci: GitHub Actions and GitLab CI webhooks in the v1 contract (docs/ingest.md is the
 * mapping this code implements): the deliveries' signature and token checks, and the mapping of
 * one delivery's payload to v1 events.
 *
 * Pure: no I/O, no clock, no global state. The same payload always maps to the same events, ids
 * and times included (ids name the fact, "github:github.com:job:29679449:finished", and times
 * come from the payload), so a redelivered webhook is the same events downstream, also after a
 * broker restart. Every event fh_ci_map makes passes the contract (tests/fuzz/fuzz_ci.c checks
 * it); only its seq is left 0 for the producer to stamp. */
#ifndef FH_CI_H
#define FH_CI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum fh_ci_system { FH_CI_GITHUB = 0, FH_CI_GITLAB } fh_ci_system;

/* Ids the CI systems give (jobs, runs, pipelines) are mapped to
 * FH_CI_ID_BASE * prefix + id, prefix 1 for GitHub and 2 for GitLab, so they never meet
 * Buildbot's ids (or each other) in the view; ids must be below FH_CI_ID_BASE. Every id stays
 * below 2^53, exact in JavaScript. */
#define FH_CI_ID_BASE 1000000000000000LL

typedef struct fh_ci_opts {
    /* The member of the payload's repository (GitHub) or project (GitLab) that becomes the
     * context's `repository`; NULL for the default ("html_url", "web_url"). See
     * fh_ci_repo_field_ok. */
    const char *repo_field;
} fh_ci_opts;

typedef enum fh_ci_result {
    FH_CI_EVENTS = 0, /* events appended to out (at least one) */
    FH_CI_IGNORED,    /* an event type or action that maps to nothing; why->msg says which */
    FH_CI_BAD,        /* the payload lacks or mistypes what the mapping needs; why says what */
} fh_ci_result;

typedef struct fh_ci_why {
    char param[96]; /* the member at fault, "body.workflow_job.id" ("body" for the whole) */
    char msg[256];  /* what was expected, or why the delivery maps to nothing */
} fh_ci_why;

/* Maps one delivery. event: the X-GitHub-Event or X-Gitlab-Event header. body: the parsed
 * payload (borrowed). Appends the events, in the order they happened, to the JSON array out;
 * on FH_CI_IGNORED and FH_CI_BAD out is left as it was. Returns FH_CI_BAD with why "out of
 * memory" (param "") when jansson cannot allocate. */
fh_ci_result fh_ci_map(fh_ci_system sys, const char *event, const json_t *body, const fh_ci_opts *o,
                       json_t *out, fh_ci_why *why);

/* 1 when field may be opts.repo_field for sys: GitHub html_url, clone_url, ssh_url; GitLab
 * web_url, git_http_url, git_ssh_url. */
int fh_ci_repo_field_ok(fh_ci_system sys, const char *field);

/* Checks X-Hub-Signature-256 ("sha256=" and 64 hex digits, either case) against
 * HMAC-SHA256(secret, body). Returns 0 when it matches, -1 when the header is missing or not of
 * that form, -2 when it does not match. The digests are compared in constant time. */
int fh_ci_github_verify(const char *secret, const char *header, const char *body, size_t len);

/* Checks X-Gitlab-Token against the configured token. Returns 0 when equal, -1 when the header
 * is missing, -2 when it differs. Both are hashed (SHA-256) and the digests compared in constant
 * time, so the time taken says nothing about the token, its length included. */
int fh_ci_gitlab_verify(const char *token, const char *header);

/* Parses the timestamps the payloads carry into epoch milliseconds: RFC 3339 (GitHub,
 * "2026-11-22T05:00:00Z"), GitLab's "2026-11-22 05:00:00 UTC", and offsets written +hhmm
 * ("2026-11-22T06:00:00+0100", "2026-11-22 06:00:00 +0100"). Returns 0, or -1 for anything
 * else and for times before 1970. */
int fh_ci_time_parse(const char *s, int64_t *ms);

#endif
