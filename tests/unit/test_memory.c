/* When the broker gives free heap back (broker/memory.h): only once the port's connections have
 * fallen from their peak by both MEMORY_FALL_CONNS and a quarter, so a burst's leftovers go
 * back while the steady churn of a few clients, or of many, never trims. */
#include "fh_test.h"

#include "../../broker/memory.h"

TEST(memory_load_fell_after_a_burst_of_connections_left)
{
    CHECK(memory_load_fell(1020, 20));                     /* a thousand clients gone */
    CHECK(memory_load_fell(100, 0));                       /* a REST load test ended */
    CHECK(memory_load_fell(MEMORY_FALL_CONNS, 0));         /* exactly the least fall */
    CHECK(memory_load_fell(256, 256 - MEMORY_FALL_CONNS)); /* exactly a quarter */
}

TEST(memory_load_fell_not_on_steady_or_small_changes)
{
    CHECK(!memory_load_fell(0, 0));
    CHECK(!memory_load_fell(20, 20));                               /* steady */
    CHECK(!memory_load_fell(40, 0));                                /* too few to matter */
    CHECK(!memory_load_fell(MEMORY_FALL_CONNS - 1, 0));             /* one short */
    CHECK(!memory_load_fell(10000, 10000 - 2 * MEMORY_FALL_CONNS)); /* many, but not a quarter */
    CHECK(!memory_load_fell(20, 1020));                             /* rose */
}
