#include "fh_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int find(const fh_config *c, const char *key)
{
    for (size_t i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].key, key) == 0)
            return (int)i;
    return -1;
}

static int find_flag(const fh_config *c, const char *name)
{
    int i = find(c, name);
    if (i >= 0)
        return i;
    for (size_t k = 0; k < c->nopts; k++)
        if (c->opts[k].alias && strcmp(c->opts[k].alias, name) == 0)
            return (int)k;
    return -1;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static fh_err check_value(const fh_cfg_opt *o, const char *value, char *errbuf, size_t errsize)
{
    long long n;
    int b;
    if (o->type == FH_CFG_INT) {
        if (parse_int(value, &n))
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: expected an integer, got \"%s\"",
                           o->key, value);
        if (n < o->min || n > o->max)
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: %lld is out of range %lld..%lld",
                           o->key, n, o->min, o->max);
    } else if (o->type == FH_CFG_BOOL && parse_bool(value, &b)) {
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: expected true or false, got \"%s\"",
                       o->key, value);
    }
    return FH_OK;
}

static fh_err kafka_set(fh_config *c, const char *prop, const char *value)
{
    for (size_t i = 0; i < c->nkafka; i++) {
        if (strcmp(c->kafka_keys[i], prop) == 0) {
            char *v = strdup(value);
            if (!v)
                return FH_ERR_NOMEM;
            free(c->kafka_vals[i]);
            c->kafka_vals[i] = v;
            return FH_OK;
        }
    }
    char **nk = realloc(c->kafka_keys, (c->nkafka + 1) * sizeof(char *));
    if (!nk)
        return FH_ERR_NOMEM;
    c->kafka_keys = nk;
    char **nv = realloc(c->kafka_vals, (c->nkafka + 1) * sizeof(char *));
    if (!nv)
        return FH_ERR_NOMEM;
    c->kafka_vals = nv;
    nk[c->nkafka] = strdup(prop);
    nv[c->nkafka] = strdup(value);
    if (!nk[c->nkafka] || !nv[c->nkafka]) {
        free(nk[c->nkafka]);
        free(nv[c->nkafka]);
        return FH_ERR_NOMEM;
    }
    c->nkafka++;
    return FH_OK;
}

fh_err fh_config_set(fh_config *c, const char *key, const char *value, char *errbuf, size_t errsize)
{
    int i = find(c, key);
    if (i < 0) {
        if (strncmp(key, "kafka.", 6) == 0 && key[6])
            return kafka_set(c, key + 6, value);
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "unknown key '%s'", key);
    }
    fh_err rc = check_value(&c->opts[i], value, errbuf, errsize);
    if (rc)
        return rc;
    char *v = strdup(value);
    if (!v)
        return FH_ERR_NOMEM;
    free(c->vals[i]);
    c->vals[i] = v;
    return FH_OK;
}

fh_err fh_config_init(fh_config *c, const char *prog, const char *usage, const char *summary,
                      const fh_cfg_opt *opts, size_t nopts)
{
    memset(c, 0, sizeof(*c));
    c->prog = prog;
    c->usage = usage;
    c->summary = summary;
    c->opts = opts;
    c->nopts = nopts;
    c->vals = calloc(nopts, sizeof(char *));
    if (!c->vals)
        return FH_ERR_NOMEM;
    for (size_t i = 0; i < nopts; i++)
        if (opts[i].def && !(c->vals[i] = strdup(opts[i].def)))
            return FH_ERR_NOMEM;
    return FH_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static fh_err load_file(fh_config *c, const char *path, char *errbuf, size_t errsize)
{
    FILE *f = fopen(path, "r");
    char line[4096], err[256];
    int lineno = 0;
    fh_err rc = FH_OK;
    if (!f)
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        /* fgets splits a longer line; its tail would otherwise be read as the next line and the
         * head's value silently cut short. A full buffer is fine only at the end of the file. */
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            int ch = getc(f);
            if (ch != EOF) {
                rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s:%d: line longer than %zu bytes",
                             path, lineno, sizeof(line) - 2);
                break;
            }
        }
        char *s = trim(line), *eq;
        if (!*s || *s == '#')
            continue;
        if (!(eq = strchr(s, '='))) {
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s:%d: expected key = value", path,
                         lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        if ((rc = fh_config_set(c, key, val, err, sizeof(err)))) {
            fh_errf(errbuf, errsize, rc, "%s:%d: %s", path, lineno, err);
            break;
        }
    }
    fclose(f);
    return rc;
}

static fh_err load_env(fh_config *c, char *errbuf, size_t errsize)
{
    char name[128], err[256];
    for (size_t i = 0; i < c->nopts; i++) {
        size_t o = (size_t)snprintf(name, sizeof(name), "FIREHOSE_");
        for (const char *k = c->opts[i].key; *k && o + 1 < sizeof(name); k++)
            name[o++] = *k == '.' ? '_' : (char)toupper((unsigned char)*k);
        name[o] = '\0';
        const char *v = getenv(name);
        if (!v)
            continue;
        fh_err rc = fh_config_set(c, c->opts[i].key, v, err, sizeof(err));
        if (rc)
            return fh_errf(errbuf, errsize, rc, "%s: %s", name, err);
    }
    return FH_OK;
}

static fh_err add_arg(fh_config *c, const char *a)
{
    char **na = realloc(c->args, (c->nargs + 1) * sizeof(char *));
    if (!na)
        return FH_ERR_NOMEM;
    c->args = na;
    if (!(na[c->nargs] = strdup(a)))
        return FH_ERR_NOMEM;
    c->nargs++;
    return FH_OK;
}

/* Handles one flag at argv[*i]; may consume the next argument as its value. */
static fh_err load_flag(fh_config *c, int argc, char **argv, int *i, char *errbuf, size_t errsize)
{
    char name[256], err[256];
    const char *arg = argv[*i], *value = NULL;
    const char *body = arg[1] == '-' ? arg + 2 : arg + 1;
    const char *eq = strchr(body, '=');
    size_t n = eq ? (size_t)(eq - body) : strlen(body);
    fh_err rc;

    if (strcmp(arg, "-X") == 0) { /* kcat style: -X prop=value */
        if (*i + 1 >= argc || !strchr(argv[*i + 1], '='))
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "-X: expected prop=value");
        const char *kv = argv[++*i];
        size_t pn = (size_t)(strchr(kv, '=') - kv);
        if (pn >= sizeof(name)) /* refused rather than cut short into another property */
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "-X: property name too long");
        snprintf(name, sizeof(name), "%.*s", (int)pn, kv);
        return kafka_set(c, name, strchr(kv, '=') + 1);
    }
    if (n >= sizeof(name))
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: option name too long", arg);
    memcpy(name, body, n);
    name[n] = '\0';
    if (eq)
        value = eq + 1;
    int k = find_flag(c, name);
    if (k < 0) {
        if (strncmp(name, "kafka.", 6) == 0 && name[6]) {
            if (!value && *i + 1 < argc)
                value = argv[++*i];
            if (!value)
                return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: expected a value", arg);
            return kafka_set(c, name + 6, value);
        }
        return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: unknown option (see --help)", arg);
    }
    if (!value) {
        if (c->opts[k].type == FH_CFG_BOOL)
            value = "true";
        else if (*i + 1 < argc)
            value = argv[++*i];
        else
            return fh_errf(errbuf, errsize, FH_ERR_CONFIG, "%s: expected a value", arg);
    }
    if ((rc = fh_config_set(c, c->opts[k].key, value, err, sizeof(err))))
        return fh_errf(errbuf, errsize, rc, "%s: %s", arg, err);
    return FH_OK;
}

fh_err fh_config_load(fh_config *c, int argc, char **argv, int *help, char *errbuf, size_t errsize)
{
    const char *file = getenv("FIREHOSE_CONFIG");
    fh_err rc;
    *help = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            *help = 1;
        else if (strcmp(argv[i], "--help-markdown") == 0)
            *help = 2;
        else if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            file = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (*help)
        return FH_OK;
    if (file && *file && (rc = load_file(c, file, errbuf, errsize)))
        return rc;
    if ((rc = load_env(c, errbuf, errsize)))
        return rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (++i < argc)
                if ((rc = add_arg(c, argv[i])))
                    return rc;
            break;
        }
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (a[0] == '-' && a[1] != '\0')
            rc = load_flag(c, argc, argv, &i, errbuf, errsize);
        else
            rc = add_arg(c, a);
        if (rc)
            return rc;
    }
    return FH_OK;
}

static int must_find(const fh_config *c, const char *key)
{
    int i = find(c, key);
    if (i < 0) {
        fprintf(stderr, "%s: internal error: config key %s is not in the table\n", c->prog, key);
        abort();
    }
    return i;
}

const char *fh_config_str(const fh_config *c, const char *key)
{
    return c->vals[must_find(c, key)];
}

long long fh_config_int(const fh_config *c, const char *key)
{
    const char *v = c->vals[must_find(c, key)];
    long long n = 0;
    if (v)
        parse_int(v, &n);
    return n;
}

int fh_config_bool(const fh_config *c, const char *key)
{
    const char *v = c->vals[must_find(c, key)];
    int b = 0;
    if (v)
        parse_bool(v, &b);
    return b;
}

static const char *type_name(fh_cfg_type t)
{
    return t == FH_CFG_INT ? "integer" : t == FH_CFG_BOOL ? "boolean" : "string";
}

static void env_name(const char *key, char *buf, size_t size)
{
    size_t o = (size_t)snprintf(buf, size, "FIREHOSE_");
    for (; *key && o + 1 < size; key++)
        buf[o++] = *key == '.' ? '_' : (char)toupper((unsigned char)*key);
    buf[o] = '\0';
}

void fh_config_help(const fh_config *c, FILE *out)
{
    char env[128];
    fprintf(out, "usage: %s %s\n", c->prog, c->usage);
    if (c->summary)
        fprintf(out, "%s\n", c->summary);
    fprintf(out, "\noptions (flag --KEY=VALUE, environment FIREHOSE_KEY, or KEY = VALUE in "
                 "--config FILE):\n");
    for (size_t i = 0; i < c->nopts; i++) {
        const fh_cfg_opt *o = &c->opts[i];
        env_name(o->key, env, sizeof(env));
        fprintf(out, "  --%s", o->key);
        if (o->alias)
            fprintf(out, ", %s%s", strlen(o->alias) == 1 ? "-" : "--", o->alias);
        fprintf(out, "  (%s", type_name(o->type));
        if (o->type == FH_CFG_INT)
            fprintf(out, " %lld..%lld", o->min, o->max);
        if (o->def)
            fprintf(out, ", default %s", *o->def ? o->def : "\"\"");
        fprintf(out, "; %s)\n      %s\n", env, o->help);
    }
    fprintf(out, "  --kafka.PROPERTY=VALUE, -X PROPERTY=VALUE\n      passed to librdkafka\n"
                 "  --config FILE, -c FILE\n      read KEY = VALUE lines (also FIREHOSE_CONFIG)\n"
                 "  -h, --help, --help-markdown\n");
}

void fh_config_markdown(const fh_config *c, FILE *out)
{
    char env[128];
    fprintf(out, "| key | flag | environment | type | default | description |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < c->nopts; i++) {
        const fh_cfg_opt *o = &c->opts[i];
        env_name(o->key, env, sizeof(env));
        fprintf(out, "| `%s` | ", o->key);
        if (o->alias)
            fprintf(out, "`%s%s`", strlen(o->alias) == 1 ? "-" : "--", o->alias);
        fprintf(out, " | `%s` | %s", env, type_name(o->type));
        if (o->type == FH_CFG_INT)
            fprintf(out, " (%lld..%lld)", o->min, o->max);
        fprintf(out, " | %s%s%s | %s |\n", o->def ? "`" : "", o->def ? o->def : "",
                o->def ? "`" : "", o->help);
    }
}

void fh_config_free(fh_config *c)
{
    for (size_t i = 0; c->vals && i < c->nopts; i++)
        free(c->vals[i]);
    for (size_t i = 0; i < c->nkafka; i++) {
        free(c->kafka_keys[i]);
        free(c->kafka_vals[i]);
    }
    for (size_t i = 0; i < c->nargs; i++)
        free(c->args[i]);
    free(c->vals);
    free(c->kafka_keys);
    free(c->kafka_vals);
    free(c->args);
    memset(c, 0, sizeof(*c));
}
