#include "fh_log.h"
#include "fh_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *log_prog = "firehose";
static enum fh_log_level log_min = FH_LOG_INFO;

void fh_log_init(const char *prog, enum fh_log_level min_level)
{
    log_prog = prog;
    log_min = min_level;
}

int fh_log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

char *fh_log_quote(char *buf, unsigned size, const char *s)
{
    unsigned o = 0;
    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 3 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20) {
            buf[o++] = ' ';
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void fh_log(enum fh_log_level level, const char *event, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[4096], ts[32];
    int n;

    if (level < log_min)
        return;
    fh_time_rfc3339(fh_now_ms(), ts, sizeof(ts));
    n = snprintf(line, sizeof(line), "ts=%s level=%s prog=%s event=%s", ts, names[level], log_prog,
                 event);
    if (fmt && n > 0 && (size_t)n < sizeof(line) - 2) {
        va_list ap;
        line[n++] = ' ';
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
