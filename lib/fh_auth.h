/* fh_auth: bearer tokens with scopes and an optional filter constraint, shared by REST, the
 * stream, SSE and webhook management.
 *
 * Tokens come from auth.admin_token (every scope, no constraint) and from the JSON file named
 * by auth.tokens_file: [{"name":"alice-ci","token":"...","scopes":["read"],
 * "filter":{"branch":"try","owner":"alice@example.org"}}]. A constrained token sees only events
 * that match its filter, whatever filter the client asks for (both must match). */
#ifndef FH_AUTH_H
#define FH_AUTH_H

#include "fh_error.h"
#include "fh_filter.h"

/* read: REST, stream, SSE; admin: management (and everything else); ingest: posting events
 * (Buildbot HttpStatusPush at /api/v1/ingest/buildbot). */
enum { FH_SCOPE_READ = 1, FH_SCOPE_ADMIN = 2, FH_SCOPE_INGEST = 4 };

typedef struct fh_principal {
    char *name;      /* owned; "anonymous" for the anonymous reader */
    char *token;     /* owned; never logged */
    unsigned scopes; /* FH_SCOPE_* */
    int constrained; /* 1 when constraint applies */
    fh_filter constraint;
} fh_principal;

typedef struct fh_auth {
    fh_principal *tokens; /* owned */
    size_t ntokens;
    int anonymous_read;
    fh_principal anonymous; /* scopes READ when anonymous_read, else 0 */
} fh_auth;

/* Loads the token table. admin_token and tokens_file may be NULL or "". Errors name the file and
 * the entry: "tokens.json: [2].scopes: expected \"read\" or \"admin\"". */
fh_err fh_auth_init(fh_auth *a, const char *admin_token, const char *tokens_file,
                    int anonymous_read, char *errbuf, size_t errsize);

/* Returns the principal for a presented token (constant-time comparison), the anonymous principal
 * for NULL/empty when anonymous read is on, or NULL (unauthorized). Borrowed from a. */
const fh_principal *fh_auth_check(const fh_auth *a, const char *token);

/* Extracts the token from an "Authorization: Bearer X" header value; NULL when malformed. */
const char *fh_auth_bearer(const char *header);

void fh_auth_free(fh_auth *a);

#endif
