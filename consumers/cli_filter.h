/* fh_cli_filter: the filter language as command-line flags, shared by firehose-tail and
 * firehose-replay.
 *
 * Every filter field is a flag (--branch try, --type=build.finished, --results 2); a repeated flag
 * or a comma-separated value means any of (--branch main --branch release, --type build.*,step.*),
 * different flags are ANDed, and --filter JSON gives a whole filter object (docs/stream.md). A key
 * may come from flags or from --filter, not both. Fields can also be set from the environment or
 * a config file (FIREHOSE_FILTER_BRANCH=main,release) when no flag sets them.
 *
 * fh_config replaces a value when a key repeats, so the flags are taken out of argv before
 * fh_config_load sees it; the table rows (FH_CLI_FILTER_OPTS) are there for --help, the
 * environment and config files. */
#ifndef FH_CLI_FILTER_H
#define FH_CLI_FILTER_H

#include <jansson.h>

#include "fh_config.h"
#include "fh_error.h"
#include "fh_filter.h"

#define FH_CLI_FILTER_HELP_ANY                                                                     \
    " (repeat the flag or separate values with commas for any of; * globs)"
#define FH_CLI_FILTER_OPTS                                                                         \
    {"filter.json",                                                                                \
     "filter",                                                                                     \
     FH_CFG_STR,                                                                                   \
     NULL,                                                                                         \
     0,                                                                                            \
     0,                                                                                            \
     "a whole filter as a JSON object, e.g. {\"branch\":\"try\",\"results\":[2,4]}"},              \
        {"filter.type", "type", FH_CFG_STR, NULL, 0, 0, "event type" FH_CLI_FILTER_HELP_ANY},      \
        {"filter.branch", "branch", FH_CFG_STR, NULL, 0, 0, "branch" FH_CLI_FILTER_HELP_ANY},      \
        {"filter.owner", "owner", FH_CFG_STR, NULL, 0, 0, "owner (who pushed or asked)"},          \
        {"filter.builder", "builder", FH_CFG_STR, NULL, 0, 0, "builder name"},                     \
        {"filter.revision", "revision", FH_CFG_STR, NULL, 0, 0, "revision"},                       \
        {"filter.repository", "repository", FH_CFG_STR, NULL, 0, 0, "repository"},                 \
        {"filter.project", "project", FH_CFG_STR, NULL, 0, 0, "project"},                          \
        {"filter.codebase", "codebase", FH_CFG_STR, NULL, 0, 0, "codebase"},                       \
        {"filter.master", "master", FH_CFG_STR, NULL, 0, 0, "master (the envelope's)"},            \
        {"filter.worker", "worker", FH_CFG_STR, NULL, 0, 0, "worker (build.started)"},             \
        {"filter.results", "results", FH_CFG_STR, NULL, 0, 0, "results code 0-6"},                 \
        {"filter.buildrequestid", "buildrequestid", FH_CFG_STR, NULL, 0, 0, "build request id"},   \
        {"filter.buildid", "buildid", FH_CFG_STR, NULL, 0, 0, "build id"},                         \
    {                                                                                              \
        "filter.builderid", "builderid", FH_CFG_STR, NULL, 0, 0, "builder id"                      \
    }

/* What the flags collected: a JSON filter object, owned. */
typedef struct fh_cli_filter {
    json_t *flags; /* {field: [values...]} from the command line */
} fh_cli_filter;

/* Takes the filter flags out of argv (in place: *argc shrinks, the order of the rest is kept) into
 * cf. --help and everything else stay. Errors (a flag without a value) go to errbuf. cf must be
 * released with fh_cli_filter_free even after an error. */
fh_err fh_cli_filter_take(fh_cli_filter *cf, int *argc, char **argv, char *errbuf, size_t errsize);

/* Builds the filter: --filter (from cfg) merged with the flags and with filter.* keys set by the
 * environment or a config file. *out_json gets the merged object (owned; send it to the broker),
 * *f the parsed filter (release with fh_filter_free). Errors name the flag or key. */
fh_err fh_cli_filter_build(fh_cli_filter *cf, const fh_config *cfg, json_t **out_json, fh_filter *f,
                           char *errbuf, size_t errsize);

void fh_cli_filter_free(fh_cli_filter *cf);

/* 1 when some event type can pass f's type clause (or f has none) among the types for which
 * want(type) is 1. Used to skip topics and to refuse a --wait that can never end. */
int fh_cli_filter_types_possible(const fh_filter *f, int (*want)(int type));

#endif
