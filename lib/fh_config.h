/* fh_config: configuration as a table. One table per program drives the parser, --help, the
 * environment overrides and the docs (--help-markdown).
 *
 * Precedence, lowest first: the table's defaults, the config file (--config FILE or
 * FIREHOSE_CONFIG; lines "key = value", '#' comments), the environment (FIREHOSE_ + the key
 * upper-cased with dots as underscores), then command-line flags (--key=value, --key value,
 * --alias; a bare boolean flag means true). Keys under "kafka." that are not in the table pass
 * straight to librdkafka (file and flags only: --kafka.linger.ms=5 or -X linger.ms=5). */
#ifndef FH_CONFIG_H
#define FH_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "fh_error.h"

typedef enum fh_cfg_type { FH_CFG_STR = 0, FH_CFG_INT, FH_CFG_BOOL } fh_cfg_type;

typedef struct fh_cfg_opt {
    const char *key;   /* dotted name, e.g. "kafka.brokers" */
    const char *alias; /* extra flag name: "brokers" gives --brokers, "q" gives -q; may be NULL */
    fh_cfg_type type;
    const char *def;    /* default as text; NULL means unset */
    long long min, max; /* bounds for FH_CFG_INT */
    const char *help;
} fh_cfg_opt;

/* Keys every program shares; programs list them in their tables with FH_CFG_COMMON. */
/* clang-format off */
#define FH_CFG_COMMON                                                                              \
    {"kafka.brokers", "brokers", FH_CFG_STR, "embedded", 0, 0,                                     \
     "Kafka bootstrap servers (host:port,...), or \"embedded\" for the in-memory mock cluster"},   \
    {"topics.events", "topic-events", FH_CFG_STR, "firehose.events", 0, 0,                         \
     "topic for every event type but log.* and test.results"},                                                      \
    {"topics.logs", "topic-logs", FH_CFG_STR, "firehose.logs", 0, 0,                               \
     "log.* and test.results"},                                                                    \
    {"topics.dlq", "topic-dlq", FH_CFG_STR, "firehose.dlq", 0, 0,                                  \
     "dead-letter topic for records that fail validation (reason in header firehose-error)"},      \
    {"topics.derived", "topic-derived", FH_CFG_STR, "firehose.derived", 0, 0,                      \
     "topic of the events the view derives (builder.broken, lkgr.advanced, ...)"},               \
    {"events.max_bytes", NULL, FH_CFG_INT, "1048576", 1024, 16777216,                              \
     "largest record accepted, in bytes"},                                                         \
    {"log.level", NULL, FH_CFG_STR, "info", 0, 0,                                                  \
     "debug, info, warn or error"}
/* clang-format on */

typedef struct fh_config {
    const char *prog;
    const char *usage;   /* e.g. "[OPTIONS] [FILE...]" */
    const char *summary; /* one line shown under the usage */
    const fh_cfg_opt *opts;
    size_t nopts;
    char **vals;                     /* owned; parallel to opts; NULL when unset */
    char **kafka_keys, **kafka_vals; /* owned; librdkafka pass-through */
    size_t nkafka;
    char **args; /* owned copies of positional arguments */
    size_t nargs;
} fh_config;

/* Sets up c with the table's defaults. Returns FH_ERR_NOMEM on allocation failure. */
fh_err fh_config_init(fh_config *c, const char *prog, const char *usage, const char *summary,
                      const fh_cfg_opt *opts, size_t nopts);

/* Loads file, environment and argv. *help is set to 1 for --help, 2 for --help-markdown.
 * Errors name the source: "conf.ini:12: unknown key 'x'", "FIREHOSE_HTTP_PORT: expected an
 * integer", "--foo: unknown option". */
fh_err fh_config_load(fh_config *c, int argc, char **argv, int *help, char *errbuf, size_t errsize);

/* Sets one key from text, checking type and bounds (used by the loaders and by tests). */
fh_err fh_config_set(fh_config *c, const char *key, const char *value, char *errbuf,
                     size_t errsize);

/* Getters; the key must be in the table (aborts otherwise: that is a programming error). */
const char *fh_config_str(const fh_config *c, const char *key);
long long fh_config_int(const fh_config *c, const char *key);
int fh_config_bool(const fh_config *c, const char *key);

void fh_config_help(const fh_config *c, FILE *out);
void fh_config_markdown(const fh_config *c, FILE *out);
void fh_config_free(fh_config *c);

#endif
