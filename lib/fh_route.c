#include "fh_route.h"

#include <string.h>

int fh_route_match(const char *pattern, const char *path, const char **params, size_t max_params,
                   char *scratch, size_t scratch_size)
{
    size_t np = 0, used = 0;
    while (*pattern && *path) {
        if (pattern[0] == '{' && pattern[1] == '}') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || np == max_params || used + n + 1 > scratch_size)
                return 0;
            memcpy(scratch + used, path, n);
            scratch[used + n] = '\0';
            params[np++] = scratch + used;
            used += n + 1;
            path += n;
            pattern += 2;
            continue;
        }
        if (*pattern != *path)
            return 0;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}
