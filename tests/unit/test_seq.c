/* fh_seq stamps the seq of events the broker makes from HttpStatusPush and CI webhooks: per
 * master it must only grow (the clock, or last + 1 when the clock stands still or goes back),
 * and a full table must refuse a new master rather than reuse another's entry. */
#include "fh_seq.h"
#include "fh_test.h"

#include <string.h>

TEST(seq_follows_the_clock_and_only_grows_per_master)
{
    fh_seq_entry e[4];
    fh_seq_table t = {e, 0, 4};
    CHECK(fh_seq_next(&t, "bb1", 1000) == 1000);
    CHECK(fh_seq_next(&t, "bb1", 1000) == 1001); /* clock did not move */
    CHECK(fh_seq_next(&t, "bb1", 900) == 1002);  /* clock went back */
    CHECK(fh_seq_next(&t, "bb1", 5000) == 5000);
    CHECK(fh_seq_next(&t, "bb2", 1000) == 1000); /* each master its own */
    CHECK(fh_seq_next(&t, "bb1", 5000) == 5001);
    CHECK(t.n == 2);
}

TEST(seq_table_full_refuses_new_masters_only)
{
    fh_seq_entry e[2];
    fh_seq_table t = {e, 0, 2};
    CHECK(fh_seq_next(&t, "a", 10) == 10);
    CHECK(fh_seq_next(&t, "b", 10) == 10);
    CHECK(fh_seq_next(&t, "c", 10) == -1);
    CHECK(fh_seq_next(&t, "a", 10) == 11);
    CHECK(t.n == 2);
}

TEST(seq_master_names_cut_at_64_bytes)
{
    char longname[100];
    memset(longname, 'm', sizeof(longname) - 1);
    longname[99] = '\0';
    fh_seq_entry e[2];
    fh_seq_table t = {e, 0, 2};
    CHECK(fh_seq_next(&t, longname, 7) == 7);
    CHECK(strlen(e[0].name) == FH_SEQ_NAME_MAX);
    CHECK(fh_seq_next(&t, e[0].name, 7) == 8); /* the kept prefix is the same master */
}
