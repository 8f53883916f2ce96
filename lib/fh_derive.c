#include "fh_derive.h"
#include "fh_sign.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fh_derive_id(const char *type, const char *const *parts, size_t n, char out[FH_DERIVE_ID_SIZE])
{
    static const char key[] = "firehose.derive";
    unsigned char mac[FH_HMAC_SHA256_BYTES];
    size_t len = strlen(type) + 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i] ? parts[i] : "") + 1;
    char *buf = malloc(len), *p = buf;
    if (!buf) {
        snprintf(out, FH_DERIVE_ID_SIZE, "derived-%032d", 0);
        return;
    }
    p = memcpy(p, type, strlen(type) + 1) + strlen(type) + 1;
    for (size_t i = 0; i < n; i++) {
        const char *s = parts[i] ? parts[i] : "";
        memcpy(p, s, strlen(s) + 1);
        p += strlen(s) + 1;
    }
    fh_hmac_sha256(key, sizeof(key) - 1, buf, len, mac);
    free(buf);
    memcpy(out, "derived-", 8);
    for (int i = 0; i < 16; i++)
        snprintf(out + 8 + 2 * i, 3, "%02x", mac[i]);
}

enum fh_verdict fh_derive_verdict(long long results)
{
    if (results == 0 || results == 1)
        return FH_VERDICT_GREEN;
    if (results == 2 || results == 4)
        return FH_VERDICT_RED;
    return FH_VERDICT_NONE;
}

enum fh_btransition fh_derive_step(enum fh_bstate state, enum fh_verdict v, enum fh_bstate *next)
{
    *next = state;
    if (v == FH_VERDICT_GREEN) {
        *next = FH_BSTATE_GREEN;
        return state == FH_BSTATE_BROKEN ? FH_BT_FIXED : FH_BT_NONE;
    }
    if (v == FH_VERDICT_RED && state == FH_BSTATE_GREEN) {
        *next = FH_BSTATE_BROKEN;
        return FH_BT_BROKEN;
    }
    return FH_BT_NONE;
}

static long find_rev(const char *const *revs, size_t n, const char *r)
{
    for (size_t i = n; r && i-- > 0;)
        if (strcmp(revs[i], r) == 0)
            return (long)i;
    return -1;
}

int fh_derive_suspects(const char *const *revs, size_t n, const char *green, const char *bad,
                       size_t max, size_t *from, size_t *to, int *truncated)
{
    long b = find_rev(revs, n, bad), g = find_rev(revs, n, green);
    *truncated = 0;
    if (b < 0) {
        *from = *to = n;
        return 1;
    }
    size_t lo = g < 0 ? 0 : (size_t)g + 1, hi = (size_t)b + 1;
    if (lo > hi)
        lo = hi;
    if (hi - lo > max) {
        lo = hi - max;
        *truncated = 1;
    }
    *from = lo;
    *to = hi;
    return 0;
}

int fh_derive_flaky(int seen, int passed, int *first_flip)
{
    int next = seen | (passed ? 1 : 2);
    *first_flip = seen != 3 && next == 3;
    return next;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

fh_err fh_stale_rules_parse(fh_stale_rules *rules, const char *spec, char *errbuf, size_t errsize)
{
    fh_err rc = FH_OK;
    char *copy = strdup(spec ? spec : ""), *save = NULL;
    if (!copy)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
    for (char *tok = strtok_r(copy, ",;", &save); tok; tok = strtok_r(NULL, ",;", &save)) {
        char *rule = trim(tok), *eq = strrchr(rule, '='), *end = NULL;
        if (!*rule)
            continue;
        if (!eq) {
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                         "derive.stale_after: rule '%.100s' is not glob=seconds", rule);
            goto err;
        }
        *eq = 0;
        char *glob = trim(rule), *num = trim(eq + 1);
        long long s = strtoll(num, &end, 10);
        if (!*glob || !*num || *end || s < 1 || s > 1000000000LL) {
            rc = fh_errf(errbuf, errsize, FH_ERR_CONFIG,
                         "derive.stale_after: rule '%.100s=%.40s' needs a glob and 1 to "
                         "1000000000 seconds",
                         glob, num);
            goto err;
        }
        fh_stale_rule *r = realloc(rules->r, (rules->n + 1) * sizeof(*r));
        if (!r) {
            rc = fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
            goto err;
        }
        rules->r = r;
        if (!(r[rules->n].glob = strdup(glob))) {
            rc = fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
            goto err;
        }
        r[rules->n++].seconds = s;
    }
    free(copy);
    return FH_OK;
err:
    free(copy);
    fh_stale_rules_free(rules);
    return rc;
}

long long fh_stale_rules_find(const fh_stale_rules *rules, const char *builder)
{
    for (size_t i = 0; i < rules->n; i++)
        if (fnmatch(rules->r[i].glob, builder ? builder : "", 0) == 0)
            return rules->r[i].seconds;
    return -1;
}

long long fh_stale_rules_min(const fh_stale_rules *rules)
{
    long long m = -1;
    for (size_t i = 0; i < rules->n; i++)
        if (m < 0 || rules->r[i].seconds < m)
            m = rules->r[i].seconds;
    return m;
}

void fh_stale_rules_free(fh_stale_rules *rules)
{
    for (size_t i = 0; i < rules->n; i++)
        free(rules->r[i].glob);
    free(rules->r);
    rules->r = NULL;
    rules->n = 0;
}
