/* fh_log: structured (logfmt) logging to stderr, one line per record:
 *   ts=2026-11-22T05:00:00.123Z level=info prog=firehose-broker event=kafka.embedded bootstrap=...
 * Thread-safe: each record is written with a single write(2). */
#ifndef FH_LOG_H
#define FH_LOG_H

enum fh_log_level { FH_LOG_DEBUG = 0, FH_LOG_INFO, FH_LOG_WARN, FH_LOG_ERROR };

/* Sets the program name shown as prog= and the minimum level. */
void fh_log_init(const char *prog, enum fh_log_level min_level);

/* Parses "debug", "info", "warn", "error". Returns -1 when unknown. */
int fh_log_level_parse(const char *s);

/* event: a short dotted name (no spaces). fmt: further logfmt fields, may be NULL. Values with
 * spaces must be quoted by the caller (use %s with fh_log_quote for untrusted text). */
void fh_log(enum fh_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes s as a logfmt quoted value into buf (escaping quotes, backslashes and control bytes),
 * truncating to size. Returns buf. */
char *fh_log_quote(char *buf, unsigned size, const char *s);

#endif
