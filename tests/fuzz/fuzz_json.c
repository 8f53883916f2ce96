/* libFuzzer target: arbitrary bytes into fh_json_parse, checked against jansson.
 *
 * What must hold for every input:
 *  - no crash, leak, read past len or undefined behaviour (ASan + UBSan);
 *  - an error message names a column inside the input (1 .. len + 1), and *root is NULL;
 *  - when fh_json accepts, fh_jv_to_jansson gives a value jansson calls equal to its own parse,
 *    and converting that back (fh_jv_from_jansson) gives a DOM fh_jv_equal to ours;
 *  - fh_json and jansson (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES) agree on accept/reject,
 *    except where we decided differently on purpose: integers past int64 (jansson: "too big
 *    integer"; we: a real) and nesting past 64 (jansson allows 2048), and where jansson is
 *    lax: it takes a NUL byte right after a number for the end of input ("2\0", "[1\0]");
 *  - the permissive flags accept a superset, and a document accepted strictly parses to an
 *    equal DOM permissively;
 *  - under a small cap (it varies with the input's length) a parse either ends in
 *    FH_ERR_TOOBIG holding no more than the cap, or reaches the same verdict and DOM.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, const char *err)
{
    if (!ok) {
        fprintf(stderr, "fuzz_json: %s (%s)\n", what, err ? err : "");
        abort();
    }
}

/* The column in "... at column N" must lie inside the input or just past its end. The last
 * "at column " is the one: a duplicate key's message quotes the key, which may hold the words. */
static void check_column(const char *err, size_t size)
{
    const char *c = NULL;
    for (const char *p = strstr(err, "at column "); p; p = strstr(p + 1, "at column "))
        c = p;
    if (!c)
        return; /* "document over the N-byte cap", "out of memory" */
    unsigned long long col = strtoull(c + 10, NULL, 10);
    check(col >= 1 && col <= (unsigned long long)size + 1, "column outside the input", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fh_json_doc doc;
    static int ready;
    if (!ready) {
        fh_json_doc_init(&doc, (size_t)64 << 20);
        ready = 1;
    }
    const char *buf = (const char *)data;
    const fh_jv *root = (const fh_jv *)&doc, *loose = NULL, *back = NULL;
    char err[256], err2[256];
    json_error_t jerr;

    fh_err rc = fh_json_parse(&doc, buf, size, 0, &root, err, sizeof(err));
    json_t *j = json_loadb(buf, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    fh_err rc2 = fh_json_parse(&doc, buf, size, FH_JSON_ALLOW_NUL | FH_JSON_ALLOW_DUPLICATES,
                               &loose, err2, sizeof(err2));

    if (rc == FH_OK) {
        check(root != NULL && err[0] == '\0', "success without a root or with an error", err);
        check(rc2 == FH_OK && fh_jv_equal(root, loose), "permissive parse differs", err2);
        json_t *mine = fh_jv_to_jansson(root);
        check(mine != NULL, "fh_jv_to_jansson failed", NULL);
        if (j)
            check(json_equal(mine, j), "round trip differs from jansson", NULL);
        else
            check(strstr(jerr.text, "too big") != NULL, "accepted what jansson rejects", jerr.text);
        check(fh_jv_from_jansson(&doc, mine, &back) == FH_OK && fh_jv_equal(back, root),
              "from_jansson(to_jansson(v)) != v", NULL);
        json_decref(mine);
    } else {
        check(root == NULL, "failure left a root", err);
        check(rc == FH_ERR_PARSE || rc == FH_ERR_TOOBIG, "unexpected error code", err);
        check_column(err, size);
        if (j)
            check(strstr(err, "nesting deeper than") != NULL || rc == FH_ERR_TOOBIG ||
                      strstr(err, "'\\x00'") != NULL,
                  "rejected what jansson accepts", err);
    }
    fh_json_doc small;
    const fh_jv *capped = NULL;
    char err3[256];
    fh_json_doc_init(&small, 256 + 8 * size);
    fh_err rc3 = fh_json_parse(&small, buf, size, 0, &capped, err3, sizeof(err3));
    check(fh_json_doc_bytes(&small) <= 256 + 8 * size, "doc over its cap", NULL);
    if (rc3 == FH_ERR_TOOBIG)
        check(capped == NULL && strstr(err3, "-byte cap") != NULL, "cap error", err3);
    else if (rc3 == FH_OK)
        check(rc == FH_OK && fh_jv_equal(capped, root), "capped parse differs", err3);
    else
        check(rc3 == rc && strcmp(err3, err) == 0, "capped parse fails differently", err3);
    fh_json_doc_free(&small);

    if (rc2 != FH_OK) {
        check_column(err2, size);
    } else {
        json_t *m2 = fh_jv_to_jansson(loose); /* NULs and repeated keys convert too */
        check(m2 != NULL, "fh_jv_to_jansson failed on a permissive parse", NULL);
        json_decref(m2);
    }
    json_decref(j);
    fh_json_doc_reset(&doc);
    return 0;
}
