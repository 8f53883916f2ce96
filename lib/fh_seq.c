#include "fh_seq.h"

#include <stdio.h>
#include <string.h>

long long fh_seq_next(fh_seq_table *t, const char *master, long long now_ms)
{
    size_t i = 0;
    while (i < t->n && strcmp(t->masters[i].name, master) != 0)
        i++;
    if (i == t->n) {
        if (t->n == t->cap)
            return -1;
        snprintf(t->masters[i].name, sizeof(t->masters[i].name), "%s", master);
        t->masters[i].last = 0;
        t->n++;
    }
    long long last = t->masters[i].last;
    t->masters[i].last = now_ms > last ? now_ms : last + 1;
    return t->masters[i].last;
}
