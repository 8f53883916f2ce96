/* fh_lines: reads newline-delimited records from a file descriptor with a hard cap on the
 * length of one record, so a missing newline can never make the reader grow without bound. */
#ifndef FH_LINES_H
#define FH_LINES_H

#include <stddef.h>

typedef struct fh_lines {
    int fd;
    char *buf;         /* owned */
    size_t cap;        /* buffer size: max_line + room for one read */
    size_t start, end; /* unread bytes are buf[start..end) */
    size_t max_line;
    long lineno; /* number of the line last returned, from 1 */
    int eof;
} fh_lines;

/* Returns 0, or -1 when memory is short. */
int fh_lines_open(fh_lines *r, int fd, size_t max_line);

/* Returns 1 and sets *line and *len to the next line (without its line ending; valid until the next
 * call), 0 at end of input, -1 on a read error. A line longer than max_line is returned with
 * *len = max_line + 1 and *line pointing at its first max_line bytes; the rest of it is skipped. */
int fh_lines_next(fh_lines *r, const char **line, size_t *len);

void fh_lines_close(fh_lines *r);

#endif
