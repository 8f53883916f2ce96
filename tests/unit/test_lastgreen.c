/* Last green: the bracketing rules decide which revision CI calls safe to ship, so each rule
 * (green verdicts, good between two green builds, a red build breaking the bracket, the newest
 * build per revision, the two failure reasons) is pinned here. */
#include <string.h>

#include "fh_lastgreen.h"
#include "fh_test.h"

static long long next_id = 1;

static void add(fh_lastgreen *lg, size_t builder, long rev, int results)
{
    fh_lg_build b = {next_id, next_id * 10, results, 1000.0 + (double)next_id};
    next_id++;
    CHECK(fh_lastgreen_add(lg, builder, rev, &b) == 0);
}

static void add_id(fh_lastgreen *lg, size_t builder, long rev, int results, long long id)
{
    fh_lg_build b = {id, id * 10, results, 0};
    CHECK(fh_lastgreen_add(lg, builder, rev, &b) == 0);
}

static fh_lg_answer decide(fh_lastgreen *lg)
{
    fh_lg_answer a;
    memset(&a, 0x5a, sizeof(a));
    CHECK(fh_lastgreen_decide(lg, &a) == 0);
    return a;
}

TEST(lastgreen_newest_revision_green_for_the_only_builder)
{
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 5, 1) == 0);
    add(&lg, 0, 0, 0);
    add(&lg, 0, 2, 1); /* WARNINGS is green */
    add(&lg, 0, 4, 2); /* FAILURE */
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 2);
    fh_lg_reason r;
    fh_lastgreen_reason(&lg, 0, 2, &r);
    CHECK(!r.between && r.build && r.build->rev == 2 && r.build->build.results == 1);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_revision_between_two_green_builds_is_good)
{
    /* A is green at 1 and 3, B only at 2: revision 2 is good for A by bracketing. */
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 5, 2) == 0);
    add(&lg, 0, 1, 0);
    add(&lg, 0, 3, 0);
    add(&lg, 1, 2, 0);
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 2);
    fh_lg_reason r;
    fh_lastgreen_reason(&lg, 0, 2, &r);
    CHECK(r.between && r.before && r.after && r.before->rev == 1 && r.after->rev == 3);
    CHECK(!r.build);
    fh_lastgreen_reason(&lg, 1, 2, &r);
    CHECK(!r.between && r.build && r.build->rev == 2);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_after_the_newest_green_build_is_not_good)
{
    /* Nothing after green 1 brackets revisions 2..3, so 1 is the answer, not 3. */
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 4, 1) == 0);
    add(&lg, 0, 1, 0);
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 1);
    fh_lastgreen_free(&lg);
    /* Nor before the oldest verdict. */
    CHECK(fh_lastgreen_init(&lg, 4, 2) == 0);
    add(&lg, 0, 2, 0);
    add(&lg, 0, 3, 0);
    add(&lg, 1, 1, 0);
    add(&lg, 1, 3, 2);
    a = decide(&lg);
    CHECK(a.why == FH_LG_NONE_COMMON && a.rev == -1 && a.builder == 0);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_red_build_breaks_the_bracket)
{
    /* A: green 1, red 2, green 3. B: green 2 only. 2 is red for A; 1 has nothing for B. */
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 5, 2) == 0);
    add(&lg, 0, 1, 0);
    add(&lg, 0, 2, 2);
    add(&lg, 0, 3, 0);
    add(&lg, 1, 2, 0);
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_NONE_COMMON && a.rev == -1 && a.builder == 1);
    fh_lastgreen_free(&lg);
    /* Same, but B is also green at 1: the answer drops to 1. */
    CHECK(fh_lastgreen_init(&lg, 5, 2) == 0);
    add(&lg, 0, 1, 0);
    add(&lg, 0, 2, 4); /* EXCEPTION is red too */
    add(&lg, 0, 3, 0);
    add(&lg, 1, 2, 0);
    add(&lg, 1, 1, 1);
    a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 1);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_one_verdict_per_revision_green_wins_then_newest)
{
    fh_lg_reason r;
    fh_lastgreen lg;
    /* green then red at 2: stays green, reporting the green build */
    CHECK(fh_lastgreen_init(&lg, 3, 1) == 0);
    add_id(&lg, 0, 2, 2, 11);
    add_id(&lg, 0, 2, 0, 10); /* added out of order: buildid decides */
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 2);
    fh_lastgreen_reason(&lg, 0, 2, &r);
    CHECK(r.build && r.build->green && r.build->build.buildid == 10);
    fh_lastgreen_free(&lg);
    /* red then green: green, the newer build */
    CHECK(fh_lastgreen_init(&lg, 3, 1) == 0);
    add_id(&lg, 0, 2, 2, 10);
    add_id(&lg, 0, 2, 0, 11);
    a = decide(&lg);
    fh_lastgreen_reason(&lg, 0, 2, &r);
    CHECK(a.rev == 2 && r.build && r.build->build.buildid == 11);
    fh_lastgreen_free(&lg);
    /* two greens: the newest green */
    CHECK(fh_lastgreen_init(&lg, 3, 1) == 0);
    add_id(&lg, 0, 2, 1, 12);
    add_id(&lg, 0, 2, 0, 10);
    add_id(&lg, 0, 2, 2, 13);
    a = decide(&lg);
    fh_lastgreen_reason(&lg, 0, 2, &r);
    CHECK(a.rev == 2 && r.build && r.build->build.buildid == 12 && r.build->build.results == 1);
    fh_lastgreen_free(&lg);
    /* two reds at 2 bracketed by greens: 2 is red, the answer is 1 */
    CHECK(fh_lastgreen_init(&lg, 4, 1) == 0);
    add_id(&lg, 0, 1, 0, 1);
    add_id(&lg, 0, 2, 2, 3);
    add_id(&lg, 0, 2, 3, 2);
    add_id(&lg, 0, 3, 2, 4);
    a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 1);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_no_green_names_the_builder)
{
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 3, 3) == 0);
    add(&lg, 0, 2, 0);
    add(&lg, 1, 0, 2); /* only red */
    /* builder 2: no builds at all, but builder 1 is met first */
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_NO_GREEN && a.rev == -1 && a.builder == 1);
    fh_lastgreen_free(&lg);
    CHECK(fh_lastgreen_init(&lg, 3, 2) == 0);
    add(&lg, 0, 2, 0);
    a = decide(&lg);
    CHECK(a.why == FH_LG_NO_GREEN && a.builder == 1);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_failure_reason_depends_on_whether_the_candidate_moved)
{
    /* builder 0 lowers the candidate to 1 first; builder 1 (green only at 2) then has nothing
     * at or below 1: "none common", naming builder 1. */
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 3, 2) == 0);
    add(&lg, 0, 1, 0);
    add(&lg, 1, 2, 0);
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_NONE_COMMON && a.builder == 1);
    fh_lastgreen_free(&lg);
    /* The other way round: builder 1 lowers to 1, then builder 0 fails on the second pass. */
    CHECK(fh_lastgreen_init(&lg, 3, 2) == 0);
    add(&lg, 0, 2, 0);
    add(&lg, 1, 1, 0);
    a = decide(&lg);
    CHECK(a.why == FH_LG_NONE_COMMON && a.builder == 0);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_candidate_settles_over_several_passes)
{
    /* A: green 6, red 5, green 3 and 1; B: green 5, red 4, green 3; C: green 6, 4, 2, 0. The
     * candidate goes 6 -> 5 (B) -> 3 (A), where C is good by its green builds at 2 and 4. */
    fh_lastgreen lg;
    CHECK(fh_lastgreen_init(&lg, 7, 3) == 0);
    add(&lg, 0, 6, 0);
    add(&lg, 0, 5, 2);
    add(&lg, 0, 3, 0);
    add(&lg, 0, 1, 0);
    add(&lg, 1, 5, 0);
    add(&lg, 1, 4, 2);
    add(&lg, 1, 3, 0);
    add(&lg, 2, 6, 0);
    add(&lg, 2, 4, 0);
    add(&lg, 2, 2, 0);
    add(&lg, 2, 0, 0);
    fh_lg_answer a = decide(&lg);
    CHECK(a.why == FH_LG_FOUND && a.rev == 3);
    fh_lg_reason r;
    fh_lastgreen_reason(&lg, 2, 3, &r);
    CHECK(r.between && r.before->rev == 2 && r.after->rev == 4);
    fh_lastgreen_reason(&lg, 0, 3, &r);
    CHECK(!r.between && r.build->rev == 3);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_add_refuses_out_of_range)
{
    fh_lastgreen lg;
    fh_lg_build b = {1, 1, 0, 0};
    CHECK(fh_lastgreen_init(&lg, 2, 1) == 0);
    CHECK(fh_lastgreen_add(&lg, 1, 0, &b) == -1);
    CHECK(fh_lastgreen_add(&lg, 0, 2, &b) == -1);
    CHECK(fh_lastgreen_add(&lg, 0, -1, &b) == -1);
    fh_lastgreen_free(&lg);
}

TEST(lastgreen_required_builders_parse_once)
{
    fh_lg_rules rules = {0};
    char err[256];
    CHECK(fh_lg_rules_parse(&rules, " trunk= mac ,linux,\tlinux\t,,;;release=linux;x= , ;trunk=z",
                            err, sizeof(err)) == 0);
    CHECK(rules.n == 4);
    const fh_lg_rule *t = fh_lg_rules_find(&rules, " trunk");
    CHECK(t && t->n == 2);
    CHECK_STR(t->builders[0], "linux");
    CHECK_STR(t->builders[1], "mac");
    CHECK(fh_lg_names_find(t->builders, t->n, "mac") == 1);
    CHECK(fh_lg_names_find(t->builders, t->n, "win") == -1);
    CHECK(fh_lg_rules_find(&rules, "trunk")); /* the second rule; the first wins for " trunk" */
    CHECK_STR(fh_lg_rules_find(&rules, "trunk")->builders[0], "z");
    CHECK(fh_lg_rules_find(&rules, "release")->n == 1);
    CHECK(fh_lg_rules_find(&rules, "x") && fh_lg_rules_find(&rules, "x")->n == 0);
    CHECK(!fh_lg_rules_find(&rules, "other"));
    fh_lg_rules_free(&rules);
    CHECK(rules.n == 0 && !rules.r);

    CHECK(fh_lg_rules_parse(&rules, "", err, sizeof(err)) == 0 && rules.n == 0);
    const char *bad[] = {"trunk", "trunk=", "=linux", "a=b;c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        CHECK(fh_lg_rules_parse(&rules, bad[i], err, sizeof(err)) != 0);
        CHECK(strstr(err, "view.required_builders: expected BRANCH=BUILDER"));
        CHECK(rules.n == 0 && !rules.r);
    }
}
