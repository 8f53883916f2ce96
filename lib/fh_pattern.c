/* fh_pattern: the schema patterns matched by C code (fh_pattern.h). */
#include "fh_pattern.h"

#include <string.h>

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int two_digits_within(const char *s, int lo, int hi)
{
    if (!is_digit(s[0]) || !is_digit(s[1]))
        return 0;
    int v = (s[0] - '0') * 10 + (s[1] - '0');
    return v >= lo && v <= hi;
}

/* ^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]
 * \.[0-9]{3}Z$ : the envelope's "time", to the millisecond in UTC. */
static int match_time_ms(const char *s, size_t n)
{
    return n == 24 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
           s[4] == '-' && two_digits_within(s + 5, 1, 12) && s[7] == '-' &&
           two_digits_within(s + 8, 1, 31) && s[10] == 'T' && two_digits_within(s + 11, 0, 23) &&
           s[13] == ':' && two_digits_within(s + 14, 0, 59) && s[16] == ':' &&
           two_digits_within(s + 17, 0, 59) && s[19] == '.' && is_digit(s[20]) && is_digit(s[21]) &&
           is_digit(s[22]) && s[23] == 'Z';
}

static int is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* ^[A-Za-z][A-Za-z0-9+.-]*:.+ : a URI with a scheme (the envelope's "source"). The class holds
 * no ':', so the first byte outside it must be the ':', and something must follow it. */
static int match_uri_scheme(const char *s, size_t n)
{
    size_t i = 1;
    if (n < 3 || !is_alpha(s[0]))
        return 0;
    while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '.' || s[i] == '-'))
        i++;
    return i + 1 < n && s[i] == ':';
}

static const struct {
    const char *src;
    fh_pattern_fn fn;
} fast_patterns[] = {
    {"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
     "\\.[0-9]{3}Z$",
     match_time_ms},
    {"^[A-Za-z][A-Za-z0-9+.-]*:.+", match_uri_scheme},
};

fh_pattern_fn fh_pattern_fast(const char *src)
{
    for (size_t i = 0; i < sizeof(fast_patterns) / sizeof(fast_patterns[0]); i++)
        if (strcmp(src, fast_patterns[i].src) == 0)
            return fast_patterns[i].fn;
    return NULL;
}

int fh_pattern_fast_match(const char *pattern, const char *s, size_t n)
{
    fh_pattern_fn fn = fh_pattern_fast(pattern);
    return fn ? fn(s, n) : -1;
}
