#include "fh_lines.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)

int fh_lines_open(fh_lines *r, int fd, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->max_line = max_line;
    r->cap = max_line + READ_CHUNK + 2;
    r->buf = malloc(r->cap);
    return r->buf ? 0 : -1;
}

/* Reads more input after compacting; returns bytes read, 0 at EOF, -1 on error. */
static ssize_t fill(fh_lines *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end >= r->cap)
        return -2; /* caller guarantees this does not happen */
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            r->end += (size_t)n;
        return n;
    }
}

int fh_lines_next(fh_lines *r, const char **line, size_t *len)
{
    size_t scanned = 0;
    int oversized = 0;
    for (;;) {
        char *nl = memchr(r->buf + r->start + scanned, '\n', r->end - r->start - scanned);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->start));
            *line = r->buf + r->start;
            r->start += n + 1;
            r->lineno++;
            if (oversized || n > r->max_line) {
                *len = r->max_line + 1;
                return 1;
            }
            if (n > 0 && (*line)[n - 1] == '\r')
                n--;
            *len = n;
            return 1;
        }
        scanned = r->end - r->start;
        if (scanned > r->max_line + 1) {
            /* Keep the head of an oversized line, drop the middle, and look for its end. */
            oversized = 1;
            r->end = r->start + r->max_line + 1;
            scanned = r->max_line + 1;
        }
        if (r->eof) {
            if (r->end == r->start)
                return 0;
            *line = r->buf + r->start;
            *len =
                oversized || r->end - r->start > r->max_line ? r->max_line + 1 : r->end - r->start;
            r->start = r->end;
            r->lineno++;
            return 1;
        }
        ssize_t n = fill(r);
        if (n < 0)
            return -1;
        if (n == 0)
            r->eof = 1;
        scanned = r->end - r->start < scanned ? r->end - r->start : scanned;
    }
}

void fh_lines_close(fh_lines *r)
{
    free(r->buf);
    r->buf = NULL;
}
