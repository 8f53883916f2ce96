/* libFuzzer target: arbitrary bytes through the full event decode path (fh_contract_load +
 * fh_event_decode), and through the fast path (fh_json_parse + fh_schema_validate_jv against the
 * same compiled contract), which must reach the same verdict with the same "path: message".
 *
 * What must hold for every input:
 *  - no crash, leak, read past len or undefined behaviour (ASan + UBSan);
 *  - a decoded event has its id, master and type, and yields a key and a topic;
 *  - FH_ERR_SCHEMA from fh_event_decode <=> the fast path parses and the validator says no, with
 *    the identical text; FH_OK <=> the fast path parses and validates;
 *  - FH_ERR_PARSE from fh_event_decode <=> fh_json_parse rejects too. fh_event_decode parses
 *    with fh_json as the ingest path does (only then building a jansson tree), so there is no
 *    exception: integers past int64 and bare scalars are judged by the contract on both.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_event.h"
#include "fh_json.h"
#include "fh_schema.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fh_contract *contract;
static fh_schema_registry *reg;
static fh_schema *event_schema;
static fh_json_doc doc;

static void check(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "fuzz_event: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static void teardown(void)
{
    fh_contract_free(contract);
    fh_schema_registry_free(reg);
    fh_json_doc_free(&doc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    check(fh_contract_load(&contract, err, sizeof(err)) == FH_OK, "fh_contract_load", err);
    /* the same schemas compiled the way fh_contract_load does, to reach the fh_schema */
    reg = fh_schema_registry_new();
    check(reg != NULL, "registry", NULL);
    for (size_t i = 0; i < fh_contract_schema_count(); i++) {
        json_t *d = json_loads(fh_contract_schema_text(i), 0, NULL);
        check(d != NULL, "embedded schema", fh_contract_schema_name(i));
        check(fh_schema_registry_add(reg, d, fh_contract_schema_name(i), err, sizeof(err)) == FH_OK,
              "registry add", err);
        json_decref(d);
    }
    check(fh_schema_compile(reg, "urn:firehose:v1:event", &event_schema, err, sizeof(err)) == FH_OK,
          "compile", err);
    fh_json_doc_init(&doc, (size_t)64 << 20);
    atexit(teardown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    fh_event ev;
    char err[512], perr[256], fast[600], key[128];
    fh_schema_error serr;
    const fh_jv *root = NULL;

    fh_err rc =
        fh_event_decode(contract, buf, size, FH_EVENT_MAX_BYTES_DEFAULT, &ev, err, sizeof(err));
    if (rc == FH_OK) {
        check(ev.root && ev.id && ev.master && fh_event_type_name((int)ev.type), "event fields",
              NULL);
        fh_event_key(&ev, key, sizeof(key));
        (void)fh_event_topic(&ev);
        fh_event_clear(&ev);
    } else {
        check(ev.root == NULL, "failed decode left a root", err);
    }

    if (rc == FH_ERR_TOOBIG)
        return 0;
    fh_err prc = fh_json_parse(&doc, buf, size, 0, &root, perr, sizeof(perr));
    if (prc == FH_OK) {
        int ok = fh_schema_validate_jv(event_schema, root, &serr);
        check(ok == fh_schema_validate_jv(event_schema, root, NULL), "verdict depends on err",
              NULL);
        if (ok) {
            check(rc == FH_OK, "fast path valid, decode not", err);
        } else {
            if (serr.path[0])
                snprintf(fast, sizeof(fast), "%s: %s", serr.path, serr.message);
            else
                snprintf(fast, sizeof(fast), "%s", serr.message);
            check(rc == FH_ERR_SCHEMA && strcmp(fast, err) == 0, "different schema errors", fast);
        }
    } else {
        check(rc != FH_OK && rc != FH_ERR_SCHEMA, "decode accepts what fh_json rejects", perr);
    }
    fh_json_doc_reset(&doc);
    return 0;
}
