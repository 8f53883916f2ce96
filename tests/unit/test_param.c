/* REST parameter parsers (lib/fh_param): what broker/rest.c accepts for limit, window, cursor and
 * buildid, kept exactly as the handlers had it, plus the overflow the fuzzer found. */
#include "fh_param.h"
#include "fh_test.h"

#include <limits.h>

TEST(param_int_bounds_and_leading_zero)
{
    long long v = -7;
    CHECK(fh_param_int("100", 1, 10000, &v) == FH_OK && v == 100);
    CHECK(fh_param_int("0", 0, 6, &v) == FH_OK && v == 0);
    CHECK(fh_param_int("05", 0, 6, &v) == FH_ERR_PARSE && v == 0);
    CHECK(fh_param_int("", 0, 6, &v) == FH_ERR_PARSE);
    CHECK(fh_param_int("5x", 0, 6, &v) == FH_ERR_PARSE);
    CHECK(fh_param_int("7", 0, 6, &v) == FH_ERR_INVAL);
    CHECK(fh_param_int("-1", 0, 6, &v) == FH_ERR_INVAL);
    CHECK(fh_param_int("99999999999999999999", 1, 1000, &v) == FH_ERR_INVAL);
    CHECK(v == 0);
}

TEST(param_duration_units_and_bounds)
{
    long long v = 0, max = 366LL * 86400;
    CHECK(fh_param_duration("90", 1, max, &v) == FH_OK && v == 90);
    CHECK(fh_param_duration("90s", 1, max, &v) == FH_OK && v == 90);
    CHECK(fh_param_duration("30m", 1, max, &v) == FH_OK && v == 1800);
    CHECK(fh_param_duration("1h", 1, max, &v) == FH_OK && v == 3600);
    CHECK(fh_param_duration("2d", 1, max, &v) == FH_OK && v == 172800);
    CHECK(fh_param_duration("366d", 1, max, &v) == FH_OK && v == max);
    CHECK(fh_param_duration("367d", 1, max, &v) == FH_ERR_INVAL);
    CHECK(fh_param_duration("0m", 1, max, &v) == FH_ERR_INVAL);
    CHECK(fh_param_duration("-1h", 1, max, &v) == FH_ERR_PARSE);
    CHECK(fh_param_duration("+1h", 1, max, &v) == FH_ERR_PARSE);
    CHECK(fh_param_duration("h", 1, max, &v) == FH_ERR_PARSE);
    CHECK(fh_param_duration("1w", 1, max, &v) == FH_ERR_PARSE);
    CHECK(fh_param_duration("1hh", 1, max, &v) == FH_ERR_PARSE);
    CHECK(fh_param_duration("", 1, max, &v) == FH_ERR_PARSE);
    CHECK(v == max);
}

/* A space before the sign got past the sign check, and n * 86400 overflowed (UBSan). */
TEST(param_duration_huge_negative_after_space_is_refused)
{
    long long v = 5;
    CHECK(fh_param_duration(" -9223372036854775808d", 1, 366LL * 86400, &v) == FH_ERR_INVAL);
    CHECK(fh_param_duration(" -3m", 1, 366LL * 86400, &v) == FH_ERR_INVAL);
    CHECK(fh_param_duration("9223372036854775807d", 1, LLONG_MAX, &v) == FH_ERR_INVAL);
    CHECK(v == 5);
}

TEST(param_cursor_and_id)
{
    long long v = 0;
    CHECK(fh_param_cursor("b42", &v) == FH_OK && v == 42);
    CHECK(fh_param_cursor("b", &v) == FH_ERR_PARSE);
    CHECK(fh_param_cursor("", &v) == FH_ERR_PARSE);
    CHECK(fh_param_cursor("c42", &v) == FH_ERR_PARSE);
    CHECK(fh_param_cursor("b4x", &v) == FH_ERR_PARSE);
    CHECK(fh_param_cursor("b0", &v) == FH_ERR_INVAL);
    CHECK(fh_param_cursor("b-3", &v) == FH_ERR_INVAL);
    CHECK(v == 42);
    CHECK(fh_param_id("7", &v) == FH_OK && v == 7);
    CHECK(fh_param_id("07", &v) == FH_ERR_PARSE);
    CHECK(fh_param_id("+7", &v) == FH_ERR_PARSE);
    CHECK(fh_param_id("", &v) == FH_ERR_PARSE);
    CHECK(fh_param_id("7/", &v) == FH_ERR_PARSE);
    CHECK(fh_param_id("-7", &v) == FH_ERR_INVAL);
    CHECK(v == 7);
}
