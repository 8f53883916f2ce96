/* Parse + validate throughput on one core: jansson (json_loadb + fh_schema_validate) against
 * fh_json (fh_json_parse + fh_schema_validate_jv), over NDJSON events, one per line.
 * Usage: bench_json [file.ndjson] [passes] [mode 0-3]. Not part of the build; see
 * tests/fuzz/README.md for the command. */
#include "fh_event.h"
#include "fh_json.h"
#include "fh_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct line {
    const char *p;
    size_t n;
} line;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    if (!f)
        return NULL;
    do {
        if (n + 65536 > cap) {
            char *nb = realloc(buf, cap = 2 * (n + 65536));
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
    } while (r > 0);
    fclose(f);
    *len = n;
    return buf;
}

/* What fh_contract_load does, keeping the compiled event schema. */
static fh_schema *event_schema(fh_schema_registry *reg)
{
    char err[256];
    fh_schema *s = NULL;
    for (size_t i = 0; i < fh_contract_schema_count(); i++) {
        json_t *d = json_loads(fh_contract_schema_text(i), 0, NULL);
        if (!d || fh_schema_registry_add(reg, d, fh_contract_schema_name(i), err, sizeof(err))) {
            fprintf(stderr, "schema %s: cannot load\n", fh_contract_schema_name(i));
            json_decref(d);
            return NULL;
        }
        json_decref(d);
    }
    if (fh_schema_compile(reg, "urn:firehose:v1:event", &s, err, sizeof(err))) {
        fprintf(stderr, "compile: %s\n", err);
        return NULL;
    }
    return s;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/tmp/status.ndjson";
    int passes = argc > 2 ? atoi(argv[2]) : 5;
    int only = argc > 3 ? atoi(argv[3]) : -1; /* run one mode (for profiling) */
    size_t len, nlines = 0, bytes = 0;
    char *text = slurp(path, &len);
    if (!text) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    line *lines = malloc((len / 2 + 1) * sizeof(line));
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        if (j > i) {
            lines[nlines].p = text + i;
            lines[nlines++].n = j - i;
            bytes += j - i;
        }
        i = j + 1;
    }
    fh_schema_registry *reg = fh_schema_registry_new();
    fh_schema *schema = event_schema(reg);
    if (!schema)
        return 1;
    printf("%zu events, %.0f bytes average, best of %d passes\n", nlines,
           (double)bytes / (double)nlines, passes);

    enum { J_PARSE, J_BOTH, F_PARSE, F_BOTH, MODES };
    static const char *names[MODES] = {
        "jansson json_loadb only",
        "jansson json_loadb + fh_schema_validate",
        "fh_json_parse only",
        "fh_json_parse + fh_schema_validate_jv",
    };
    fh_json_doc doc;
    fh_json_doc_init(&doc, (size_t)32 << 20);
    for (int m = 0; m < MODES; m++) {
        if (only >= 0 && m != only)
            continue;
        double best = 1e30;
        size_t valid = 0;
        for (int pass = 0; pass < passes; pass++) {
            valid = 0;
            double t0 = now();
            for (size_t i = 0; i < nlines; i++) {
                if (m == J_PARSE || m == J_BOTH) {
                    json_error_t jerr;
                    json_t *j = json_loadb(lines[i].p, lines[i].n, JSON_REJECT_DUPLICATES, &jerr);
                    if (j && (m == J_PARSE || fh_schema_validate(schema, j, NULL)))
                        valid++;
                    json_decref(j);
                } else {
                    const fh_jv *root;
                    if (!fh_json_parse(&doc, lines[i].p, lines[i].n, 0, &root, NULL, 0) &&
                        (m == F_PARSE || fh_schema_validate_jv(schema, root, NULL)))
                        valid++;
                    fh_json_doc_reset(&doc);
                }
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        printf("%-42s %9.0f events/s  %6.3f us/event  %zu/%zu valid\n", names[m],
               (double)nlines / best, best / (double)nlines * 1e6, valid, nlines);
    }
    fh_json_doc_free(&doc);
    fh_schema_registry_free(reg);
    free(lines);
    free(text);
    return 0;
}
