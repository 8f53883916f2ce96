/* Records lost to retention: only the part of a gap below the low watermark counts, so
 * transaction markers and compaction never read as loss; the next-offset table stays bounded. */
#include "fh_lost.h"
#include "fh_test.h"

TEST(lost_range_counts_only_below_the_low_watermark)
{
    int64_t to = -7;
    CHECK(fh_lost_range(100, 204, 204, &to) == 104 && to == 204); /* pruned up to the record */
    CHECK(fh_lost_range(100, 204, 150, &to) == 50 && to == 150);  /* the rest: markers */
    CHECK(fh_lost_range(100, 204, 900, &to) == 104 && to == 204); /* watermark moved on since */
    CHECK(fh_lost_range(100, 204, 100, &to) == 0 && to == 100);   /* nothing was deleted */
    CHECK(fh_lost_range(100, 204, 40, &to) == 0 && to == 100);
    CHECK(fh_lost_range(100, 100, 150, &to) == 0 && to == 100); /* no gap */
    CHECK(fh_lost_range(100, 90, 150, &to) == 0 && to == 100);  /* went back (a seek) */
    CHECK(fh_lost_range(-1, 204, 150, &to) == 0);               /* nothing expected yet */
    CHECK(fh_lost_range(100, 204, -1001, &to) == 0);            /* watermark unknown */
}

TEST(lost_table_tracks_partitions_within_caps)
{
    fh_lost_table t = {0};
    CHECK(fh_lost_table_get(&t, "ev", 3) == -1);
    fh_lost_table_set(&t, "ev", 3, 42);
    fh_lost_table_set(&t, "logs", 700, 9);
    CHECK(fh_lost_table_get(&t, "ev", 3) == 42);
    CHECK(fh_lost_table_get(&t, "ev", 2) == -1);
    CHECK(fh_lost_table_get(&t, "logs", 700) == 9);
    CHECK(fh_lost_table_get(&t, "logs", 701) == -1);
    fh_lost_table_set(&t, "ev", 3, -1);
    CHECK(fh_lost_table_get(&t, "ev", 3) == -1);
    fh_lost_table_set(&t, "ev", FH_LOST_MAX_PARTITIONS, 5); /* past the cap: not tracked */
    CHECK(fh_lost_table_get(&t, "ev", FH_LOST_MAX_PARTITIONS) == -1);
    fh_lost_table_set(&t, "a", 0, 1);
    fh_lost_table_set(&t, "b", 0, 1);
    fh_lost_table_set(&t, "c", 0, 1); /* a fifth topic: not tracked */
    CHECK(t.ntopics == FH_LOST_TOPICS);
    CHECK(fh_lost_table_get(&t, "b", 0) == 1 && fh_lost_table_get(&t, "c", 0) == -1);
    fh_lost_table_free(&t);
    CHECK(t.ntopics == 0);
}
