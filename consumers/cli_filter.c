#include "cli_filter.h"

#include <stdio.h>
#include <string.h>

/* Returns the filter field a flag names (--branch or --filter.branch), or -1. */
static int flag_field(const char *name, size_t n)
{
    char tmp[64];
    if (n > 7 && strncmp(name, "filter.", 7) == 0) {
        name += 7;
        n -= 7;
    }
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, name, n);
    tmp[n] = '\0';
    if (strcmp(tmp, "json") == 0)
        return -1;
    return fh_filter_field_parse(tmp);
}

/* Appends the comma-separated values of text to flags[field]; integers stay strings (the filter
 * parser accepts decimal strings for integer fields). */
static fh_err add_values(json_t *obj, const char *field, const char *text)
{
    json_t *list = json_object_get(obj, field);
    if (!list) {
        if (!(list = json_array()) || json_object_set_new(obj, field, list))
            return FH_ERR_NOMEM;
    }
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (json_array_append_new(list, json_stringn(p, n)))
            return FH_ERR_NOMEM;
        if (!comma)
            return FH_OK;
        p = comma + 1;
    }
}

fh_err fh_cli_filter_take(fh_cli_filter *cf, int *argc, char **argv, char *errbuf, size_t errsize)
{
    int out = 1;
    cf->flags = json_object();
    if (!cf->flags)
        return FH_ERR_NOMEM;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { /* positional arguments from here on */
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strncmp(a, "--", 2) != 0) {
            argv[out++] = argv[i];
            continue;
        }
        const char *body = a + 2, *eq = strchr(body, '=');
        size_t n = eq ? (size_t)(eq - body) : strlen(body);
        int field = flag_field(body, n);
        if (field < 0) {
            argv[out++] = argv[i];
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= *argc)
                return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: expected a value", a);
            value = argv[++i];
        }
        if (add_values(cf->flags, fh_filter_field_name((fh_filter_field)field), value))
            return FH_ERR_NOMEM;
    }
    argv[out] = NULL;
    *argc = out;
    return FH_OK;
}

fh_err fh_cli_filter_build(fh_cli_filter *cf, const fh_config *cfg, json_t **out_json, fh_filter *f,
                           char *errbuf, size_t errsize)
{
    const char *text = fh_config_str(cfg, "filter.json");
    json_t *obj = NULL;
    fh_err rc = FH_OK;
    char err[512];
    memset(f, 0, sizeof(*f));
    *out_json = NULL;
    if (text && *text) {
        json_error_t jerr;
        obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj)
            return fh_errf(errbuf, errsize, FH_ERR_PARSE, "--filter: not JSON: %s", jerr.text);
        if (!json_is_object(obj)) {
            rc = fh_errf(errbuf, errsize, FH_ERR_INVAL, "--filter: expected a JSON object");
            goto err;
        }
    } else if (!(obj = json_object())) {
        return FH_ERR_NOMEM;
    }
    /* keys set by flags, then keys set only by the environment or a config file */
    for (int k = 0; k < FH_F__COUNT; k++) {
        const char *name = fh_filter_field_name((fh_filter_field)k);
        json_t *vals = cf->flags ? json_object_get(cf->flags, name) : NULL;
        char key[64];
        snprintf(key, sizeof(key), "filter.%s", name);
        const char *env = fh_config_str(cfg, key);
        if (!vals && env && *env) {
            json_t *tmp = json_object();
            if (!tmp || add_values(tmp, name, env)) {
                json_decref(tmp);
                rc = FH_ERR_NOMEM;
                goto err;
            }
            vals = json_incref(json_object_get(tmp, name));
            json_decref(tmp);
        } else if (vals) {
            json_incref(vals);
        }
        if (!vals)
            continue;
        if (json_object_get(obj, name)) {
            json_decref(vals);
            rc = fh_errf(errbuf, errsize, FH_ERR_INVAL,
                         "--%s: the field is also in --filter; give it in one place", name);
            goto err;
        }
        /* one value is sent as a plain value, several as a list */
        json_t *v =
            json_array_size(vals) == 1 ? json_incref(json_array_get(vals, 0)) : json_incref(vals);
        json_decref(vals);
        if (json_object_set_new(obj, name, v)) {
            rc = FH_ERR_NOMEM;
            goto err;
        }
    }
    if ((rc = fh_filter_parse(obj, f, err, sizeof(err)))) {
        fh_errf(errbuf, errsize, rc, "%s", err);
        goto err;
    }
    *out_json = obj;
    return FH_OK;
err:
    fh_filter_free(f);
    json_decref(obj);
    return rc;
}

void fh_cli_filter_free(fh_cli_filter *cf)
{
    json_decref(cf->flags);
    cf->flags = NULL;
}

int fh_cli_filter_types_possible(const fh_filter *f, int (*want)(int type))
{
    const fh_filter_clause *c = NULL;
    for (size_t i = 0; i < f->nclauses; i++)
        if (f->clauses[i].field == FH_F_TYPE)
            c = &f->clauses[i];
    for (int t = 0; t < FH_EV__COUNT; t++) {
        if (!want(t))
            continue;
        if (!c)
            return 1;
        for (size_t k = 0; k < c->nvals; k++)
            if (fh_glob_match(c->vals[k].str, fh_event_type_name(t)))
                return 1;
    }
    return 0;
}
