#include "fh_testres.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *fh_testres_outcome(const char *category, const char *value_unit, const char *value)
{
    if (strcmp(category, "pass_only") == 0)
        return "pass";
    if (strcmp(category, "fail_only") == 0 || strcmp(category, "code_issue") == 0)
        return "fail";
    if (strcmp(category, "pass_fail") != 0 || strcmp(value_unit, "boolean") != 0)
        return NULL;
    /* Buildbot reads the value with int(): optional blanks and sign, decimal digits. */
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (end == value || errno)
        return NULL;
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (*end)
        return NULL;
    return v ? "pass" : "fail";
}

size_t fh_testres_chunk_end(const size_t *item_bytes, size_t n, size_t start, size_t max_items,
                            size_t max_bytes)
{
    if (start >= n)
        return n;
    size_t end = start + 1, bytes = item_bytes[start];
    while (end < n && end - start < max_items && bytes + item_bytes[end] <= max_bytes)
        bytes += item_bytes[end++];
    return end;
}
