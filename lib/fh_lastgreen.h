/* fh_lastgreen: which revision of a branch is the last green one, and why (GET
 * /api/v1/last-green). Pure: arrays in, verdict out; the REST layer reads the builds from the
 * view and writes the JSON.
 *
 * The rules. Revisions are numbered 0..nrevs-1, oldest first. Only finished builds with a
 * verdict count (the caller leaves out RETRY and CANCELLED, which say nothing about the code).
 * A build is green when its results are SUCCESS (0) or WARNINGS (1). A builder's verdict at a
 * revision is green when any of its builds there is green; the build it reports is the newest
 * green one there, or the newest build when none is green ("newest" by buildid). A revision is
 * good for a builder when its verdict there is green, or when the builder has no verdict there
 * and its nearest verdicts before and after are both green (the revision lies between two
 * consecutive green builds). The last green revision is the newest revision good for every
 * required builder. */
#ifndef FH_LASTGREEN_H
#define FH_LASTGREEN_H

#include <stddef.h>

typedef struct fh_lg_build {
    long long buildid, number;
    int results;
    double complete_at;
} fh_lg_build;

/* A builder's verdict at one revision. */
typedef struct fh_lg_verdict {
    long rev;
    int green;
    fh_lg_build build; /* the newest green build there, or the newest build when none is green */
} fh_lg_verdict;

typedef struct fh_lg_builder {
    fh_lg_verdict *v; /* after fh_lastgreen_decide: one per revision, by revision */
    size_t n, cap;
    long *prev_green; /* per verdict: index of the last green verdict at or before it, or -1 */
} fh_lg_builder;

typedef struct fh_lastgreen {
    size_t nrevs, nbuilders;
    fh_lg_builder *b;
} fh_lastgreen;

enum fh_lg_why {
    FH_LG_FOUND = 0,   /* rev is the last green revision */
    FH_LG_NO_GREEN,    /* builder has no good revision at all (no green build on the branch) */
    FH_LG_NONE_COMMON, /* no revision is good for every builder: builder has none at or below
                          the newest revision good for the others */
};

typedef struct fh_lg_answer {
    enum fh_lg_why why;
    long rev;       /* FH_LG_FOUND: the revision; else -1 */
    size_t builder; /* otherwise: the builder that rules every revision out */
} fh_lg_answer;

/* How a builder is good at the found revision: by a green build there (between == 0, build
 * set), or between two green builds (between == 1, before and after set). Borrowed from lg. */
typedef struct fh_lg_reason {
    int between;
    const fh_lg_verdict *build, *before, *after;
} fh_lg_reason;

/* Sets lg up for nrevs revisions and nbuilders builders. Returns 0, or -1 out of memory. */
int fh_lastgreen_init(fh_lastgreen *lg, size_t nrevs, size_t nbuilders);
/* One finished build of builder (0..nbuilders-1) at revision rev (0..nrevs-1), in any order.
 * Returns 0, or -1 out of memory or out of range. */
int fh_lastgreen_add(fh_lastgreen *lg, size_t builder, long rev, const fh_lg_build *build);
/* Decides; call once, after every add. Returns 0 and fills *ans, or -1 out of memory. With no
 * builders the answer is FH_LG_FOUND at the newest revision (the caller reports that case
 * itself); with no revisions it is FH_LG_NO_GREEN for builder 0. */
int fh_lastgreen_decide(fh_lastgreen *lg, fh_lg_answer *ans);
/* Why builder is good at rev, which a FH_LG_FOUND answer named. */
void fh_lastgreen_reason(const fh_lastgreen *lg, size_t builder, long rev, fh_lg_reason *out);
void fh_lastgreen_free(fh_lastgreen *lg);

/* ---- required builders ----------------------------------------------------------------- */

/* One branch's builders from view.required_builders: sorted, each once. */
typedef struct fh_lg_rule {
    char *branch;
    char **builders;
    size_t n;
} fh_lg_rule;

typedef struct fh_lg_rules {
    fh_lg_rule *r;
    size_t n;
} fh_lg_rules;

/* Parses "trunk=linux,mac;release=linux" into rules (zeroed by the caller): rules are separated
 * by ';' (empty ones skipped), builder names by ',' with spaces and tabs around them trimmed and
 * empty names dropped. Returns 0, or an fh_err with errbuf saying why (nothing to free then). */
int fh_lg_rules_parse(fh_lg_rules *rules, const char *spec, char *errbuf, size_t errsize);
/* The first rule for branch, or NULL when the branch uses the default. Borrowed. */
const fh_lg_rule *fh_lg_rules_find(const fh_lg_rules *rules, const char *branch);
void fh_lg_rules_free(fh_lg_rules *rules);

/* Sorts n names (strcmp) and frees repeats; returns how many are left. */
size_t fh_lg_names_sort(char **names, size_t n);
/* The index of name in n sorted names, or -1. */
long fh_lg_names_find(char *const *names, size_t n, const char *name);

#endif
