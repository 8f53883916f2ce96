/* Derived events: the pure rules behind builder.broken/fixed, the suspect range, the flaky flip,
 * the request.stale thresholds and the deterministic ids are what consumers act on and
 * deduplicate by, so each is pinned here (the SQLite side is tests/integration/test_derived.py). */
#include <string.h>

#include "fh_derive.h"
#include "fh_event.h"
#include "fh_test.h"

TEST(derive_id_is_deterministic_and_separates_parts)
{
    char a[FH_DERIVE_ID_SIZE], b[FH_DERIVE_ID_SIZE], c[FH_DERIVE_ID_SIZE];
    const char *p1[] = {"linux", "main", "42"}, *p2[] = {"linux", "main", "43"};
    const char *q1[] = {"ab", "c"}, *q2[] = {"a", "bc"};
    fh_derive_id("builder.broken", p1, 3, a);
    fh_derive_id("builder.broken", p1, 3, b);
    CHECK_STR(a, b);
    CHECK(strlen(a) == 40 && strncmp(a, "derived-", 8) == 0);
    fh_derive_id("builder.broken", p2, 3, c);
    CHECK(strcmp(a, c) != 0);
    fh_derive_id("builder.fixed", p1, 3, c);
    CHECK(strcmp(a, c) != 0);
    fh_derive_id("t", q1, 2, a);
    fh_derive_id("t", q2, 2, b);
    CHECK(strcmp(a, b) != 0);
    /* pinned (HMAC-SHA-256 of "builder.broken\0linux\0main\042\0" under "firehose.derive"):
     * a change here would re-emit every derived event under a new id */
    fh_derive_id("builder.broken", p1, 3, a);
    CHECK_STR(a, "derived-1ddb2f62da9edad8e66f1a444d297f33");
}

TEST(derive_verdicts_follow_the_results_codes)
{
    CHECK(fh_derive_verdict(0) == FH_VERDICT_GREEN && fh_derive_verdict(1) == FH_VERDICT_GREEN);
    CHECK(fh_derive_verdict(2) == FH_VERDICT_RED && fh_derive_verdict(4) == FH_VERDICT_RED);
    CHECK(fh_derive_verdict(3) == FH_VERDICT_NONE && fh_derive_verdict(5) == FH_VERDICT_NONE &&
          fh_derive_verdict(6) == FH_VERDICT_NONE && fh_derive_verdict(-1) == FH_VERDICT_NONE);
}

TEST(derive_state_machine_breaks_once_and_fixes_once)
{
    enum fh_bstate s = FH_BSTATE_UNKNOWN, n;
    /* red before any green: nothing to blame */
    CHECK(fh_derive_step(s, FH_VERDICT_RED, &n) == FH_BT_NONE && n == FH_BSTATE_UNKNOWN);
    CHECK(fh_derive_step(n, FH_VERDICT_GREEN, &n) == FH_BT_NONE && n == FH_BSTATE_GREEN);
    CHECK(fh_derive_step(n, FH_VERDICT_NONE, &n) == FH_BT_NONE && n == FH_BSTATE_GREEN);
    CHECK(fh_derive_step(n, FH_VERDICT_RED, &n) == FH_BT_BROKEN && n == FH_BSTATE_BROKEN);
    /* still red: the builder was already broken */
    CHECK(fh_derive_step(n, FH_VERDICT_RED, &n) == FH_BT_NONE && n == FH_BSTATE_BROKEN);
    CHECK(fh_derive_step(n, FH_VERDICT_NONE, &n) == FH_BT_NONE && n == FH_BSTATE_BROKEN);
    CHECK(fh_derive_step(n, FH_VERDICT_GREEN, &n) == FH_BT_FIXED && n == FH_BSTATE_GREEN);
    CHECK(fh_derive_step(n, FH_VERDICT_GREEN, &n) == FH_BT_NONE && n == FH_BSTATE_GREEN);
}

TEST(derive_suspects_are_after_green_up_to_bad)
{
    const char *revs[] = {"r0", "r1", "r2", "r3", "r4", "r5"};
    size_t from, to;
    int trunc;
    CHECK(fh_derive_suspects(revs, 6, "r1", "r4", 100, &from, &to, &trunc) == 0);
    CHECK(from == 2 && to == 5 && !trunc); /* r2, r3, r4 */
    /* capped: the newest are kept */
    CHECK(fh_derive_suspects(revs, 6, "r0", "r5", 2, &from, &to, &trunc) == 0);
    CHECK(from == 4 && to == 6 && trunc);
    /* green unknown (pruned): from the oldest known */
    CHECK(fh_derive_suspects(revs, 6, "gone", "r2", 100, &from, &to, &trunc) == 0);
    CHECK(from == 0 && to == 3 && !trunc);
    CHECK(fh_derive_suspects(revs, 6, NULL, "r2", 100, &from, &to, &trunc) == 0);
    CHECK(from == 0 && to == 3);
    /* the same revision failing: nothing new to suspect */
    CHECK(fh_derive_suspects(revs, 6, "r3", "r3", 100, &from, &to, &trunc) == 0);
    CHECK(from == to);
    /* green after bad in the order: empty, never reversed */
    CHECK(fh_derive_suspects(revs, 6, "r4", "r2", 100, &from, &to, &trunc) == 0);
    CHECK(from == to && to == 3);
    /* bad not placed: the caller names bad alone */
    CHECK(fh_derive_suspects(revs, 6, "r1", "new", 100, &from, &to, &trunc) == 1);
    CHECK(from == 6 && to == 6);
    CHECK(fh_derive_suspects(NULL, 0, "r1", "r2", 100, &from, &to, &trunc) == 1);
}

TEST(derive_flaky_flips_once)
{
    int flip, m = 0;
    m = fh_derive_flaky(m, 1, &flip);
    CHECK(m == 1 && !flip);
    m = fh_derive_flaky(m, 1, &flip);
    CHECK(m == 1 && !flip);
    m = fh_derive_flaky(m, 0, &flip);
    CHECK(m == 3 && flip);
    m = fh_derive_flaky(m, 0, &flip);
    CHECK(m == 3 && !flip);
    m = fh_derive_flaky(m, 1, &flip);
    CHECK(m == 3 && !flip);
    m = fh_derive_flaky(0, 0, &flip);
    CHECK(m == 2 && !flip);
    m = fh_derive_flaky(m, 1, &flip);
    CHECK(m == 3 && flip);
}

TEST(derive_stale_rules_first_glob_wins)
{
    fh_stale_rules r;
    char err[256];
    memset(&r, 0, sizeof(r));
    CHECK(fh_stale_rules_parse(&r, " release-* = 600 ; linux-?64=120,*=3600,", err, sizeof(err)) ==
          FH_OK);
    CHECK(r.n == 3);
    CHECK(fh_stale_rules_find(&r, "release-mac") == 600);
    CHECK(fh_stale_rules_find(&r, "linux-x64") == 120);
    CHECK(fh_stale_rules_find(&r, "linux-x86_64") == 3600);
    CHECK(fh_stale_rules_find(&r, "") == 3600);
    CHECK(fh_stale_rules_min(&r) == 120);
    fh_stale_rules_free(&r);
    CHECK(fh_stale_rules_parse(&r, "mac=60", err, sizeof(err)) == FH_OK);
    CHECK(fh_stale_rules_find(&r, "linux") == -1);
    fh_stale_rules_free(&r);
    CHECK(fh_stale_rules_parse(&r, "", err, sizeof(err)) == FH_OK && r.n == 0);
    CHECK(fh_stale_rules_min(&r) == -1 && fh_stale_rules_find(&r, "x") == -1);
    static const char *const bad[] = {"linux",    "=60",      "linux=",      "linux=0",
                                      "linux=5s", "linux=-1", "x=2000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        CHECK(fh_stale_rules_parse(&r, bad[i], err, sizeof(err)) == FH_ERR_CONFIG);
        CHECK(strstr(err, "derive.stale_after") != NULL);
        CHECK(r.n == 0 && r.r == NULL);
    }
}

TEST(derive_types_have_names_and_the_derived_topic)
{
    static const char *const names[] = {"builder.broken", "builder.fixed", "lkgr.advanced",
                                        "request.stale", "test.flaky"};
    for (int i = 0; i < 5; i++) {
        int t = fh_event_type_parse(names[i]);
        CHECK(t == FH_EV_BUILDER_BROKEN + i);
        fh_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = (fh_event_type)t;
        CHECK(fh_event_topic(&ev) == FH_TOPIC_DERIVED);
    }
}
