#include "fh_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static fh_err add_principal(fh_auth *a, const char *name, const char *token, unsigned scopes,
                            const json_t *filter, char *errbuf, size_t errsize)
{
    fh_principal *np = realloc(a->tokens, (a->ntokens + 1) * sizeof(*np));
    if (!np)
        return FH_ERR_NOMEM;
    a->tokens = np;
    fh_principal *p = &np[a->ntokens];
    memset(p, 0, sizeof(*p));
    p->name = strdup(name);
    p->token = strdup(token);
    p->scopes = scopes;
    a->ntokens++;
    if (!p->name || !p->token)
        return FH_ERR_NOMEM;
    if (filter && !json_is_null(filter)) {
        fh_err rc = fh_filter_parse(filter, &p->constraint, errbuf, errsize);
        if (rc)
            return rc;
        p->constrained = 1;
    }
    return FH_OK;
}

static fh_err load_file(fh_auth *a, const char *path, char *errbuf, size_t errsize)
{
    json_error_t jerr;
    json_t *arr = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    size_t i;
    json_t *t;
    fh_err rc = FH_OK;
    char err[256];
    if (!json_is_array(arr)) {
        json_decref(arr);
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s:%d: %s", path, jerr.line,
                       arr ? "expected an array of tokens" : jerr.text);
    }
    json_array_foreach(arr, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *token = json_string_value(json_object_get(t, "token"));
        json_t *scopes = json_object_get(t, "scopes"), *s;
        unsigned mask = 0;
        size_t k;
        if (!name || !token || strlen(token) < 16) {
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                         "%s: [%zu]: needs \"name\" and a \"token\" of at least 16 characters",
                         path, i);
            break;
        }
        json_array_foreach(scopes, k, s)
        {
            const char *v = json_string_value(s);
            if (v && strcmp(v, "read") == 0)
                mask |= FH_SCOPE_READ;
            else if (v && strcmp(v, "admin") == 0)
                mask |= FH_SCOPE_ADMIN | FH_SCOPE_READ | FH_SCOPE_INGEST;
            else if (v && strcmp(v, "ingest") == 0)
                mask |= FH_SCOPE_INGEST;
            else
                mask |= 0x100;
        }
        if (!mask || (mask & 0x100)) {
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                         "%s: [%zu].scopes: expected a list of \"read\", \"admin\" or \"ingest\"",
                         path, i);
            break;
        }
        if ((rc = add_principal(a, name, token, mask, json_object_get(t, "filter"), err,
                                sizeof(err)))) {
            fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: [%zu].%s", path, i, err);
            break;
        }
    }
    json_decref(arr);
    return rc;
}

fh_err fh_auth_init(fh_auth *a, const char *admin_token, const char *tokens_file,
                    int anonymous_read, char *errbuf, size_t errsize)
{
    fh_err rc;
    memset(a, 0, sizeof(*a));
    a->anonymous_read = anonymous_read;
    a->anonymous.name = "anonymous";
    a->anonymous.scopes = anonymous_read ? FH_SCOPE_READ : 0;
    if (admin_token && *admin_token &&
        (rc = add_principal(a, "admin", admin_token,
                            FH_SCOPE_ADMIN | FH_SCOPE_READ | FH_SCOPE_INGEST, NULL, errbuf,
                            errsize)))
        return rc;
    if (tokens_file && *tokens_file && (rc = load_file(a, tokens_file, errbuf, errsize)))
        return rc;
    return FH_OK;
}

const fh_principal *fh_auth_check(const fh_auth *a, const char *token)
{
    if (!token || !*token)
        return a->anonymous_read ? &a->anonymous : NULL;
    const fh_principal *found = NULL;
    for (size_t i = 0; i < a->ntokens; i++) /* no early exit: timing does not reveal the index */
        if (ct_equal(token, a->tokens[i].token) && !found)
            found = &a->tokens[i];
    return found;
}

const char *fh_auth_bearer(const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    header += 7;
    while (*header == ' ')
        header++;
    return *header ? header : NULL;
}

void fh_auth_free(fh_auth *a)
{
    for (size_t i = 0; i < a->ntokens; i++) {
        free(a->tokens[i].name);
        free(a->tokens[i].token);
        fh_filter_free(&a->tokens[i].constraint);
    }
    free(a->tokens);
    memset(a, 0, sizeof(*a));
}
