#include "fh_param.h"

#include <stdlib.h>

fh_err fh_param_int(const char *v, long long min, long long max, long long *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || (v[0] == '0' && v[1]))
        return FH_ERR_PARSE;
    if (n < min || n > max)
        return FH_ERR_INVAL;
    *out = n;
    return FH_OK;
}

fh_err fh_param_duration(const char *v, long long min, long long max, long long *out)
{
    char *end;
    long long n = strtoll(v, &end, 10), mul = 1;
    if (end != v && *end && !end[1]) {
        switch (*end) {
        case 's':
            mul = 1;
            end++;
            break;
        case 'm':
            mul = 60;
            end++;
            break;
        case 'h':
            mul = 3600;
            end++;
            break;
        case 'd':
            mul = 86400;
            end++;
            break;
        default:
            break;
        }
    }
    if (end == v || *end || v[0] == '-' || v[0] == '+')
        return FH_ERR_PARSE;
    /* Checked before multiplying: " -9223372036854775808d" gets past the sign check (strtoll
     * skips the space), and n * mul would overflow. */
    if (n < 0 || n > max / mul || n * mul < min)
        return FH_ERR_INVAL;
    *out = n * mul;
    return FH_OK;
}

fh_err fh_param_cursor(const char *v, long long *out)
{
    char *end;
    if (v[0] != 'b' || !v[1])
        return FH_ERR_PARSE;
    long long n = strtoll(v + 1, &end, 10);
    if (*end)
        return FH_ERR_PARSE;
    if (n < 1)
        return FH_ERR_INVAL;
    *out = n;
    return FH_OK;
}

fh_err fh_param_id(const char *v, long long *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || v[0] == '0' || v[0] == '+')
        return FH_ERR_PARSE;
    if (n < 1)
        return FH_ERR_INVAL;
    *out = n;
    return FH_OK;
}
