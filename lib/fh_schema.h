/* fh_schema: a JSON Schema (draft 2020-12) validator for the keyword subset the event contract
 * uses (see docs/events.md). Schemas are compiled once into a tree; validating walks the tree
 * without allocating. The C side and the published schemas cannot drift: the C side *is* the
 * schemas.
 *
 * Supported: type enum const properties required additionalProperties patternProperties
 * propertyNames items prefixItems minItems maxItems uniqueItems minLength maxLength pattern
 * minimum maximum exclusiveMinimum exclusiveMaximum multipleOf minProperties maxProperties allOf
 * anyOf oneOf not if/then/else $ref $defs $id; annotations are ignored (format is annotation-only).
 * `pattern` uses POSIX extended regular expressions. Anything else is refused at compile time with
 * FH_ERR_UNSUPPORTED, so a schema can never be half-understood. */
#ifndef FH_SCHEMA_H
#define FH_SCHEMA_H

#include <jansson.h>

#include "fh_error.h"
#include "fh_json.h"

typedef struct fh_schema_registry fh_schema_registry;
typedef struct fh_schema fh_schema; /* a compiled (sub)schema, owned by the registry */

/* Where validation failed: path is dotted ("data.files[2]", "" for the root). */
typedef struct fh_schema_error {
    char path[256];
    char message[256];
} fh_schema_error;

fh_schema_registry *fh_schema_registry_new(void);
/* Frees the registry and every schema compiled from it. */
void fh_schema_registry_free(fh_schema_registry *reg);

/* Adds a schema document. The registry takes a reference to doc (caller keeps its own).
 * The document is registered under its "$id" when it has one, else under fallback_id. */
fh_err fh_schema_registry_add(fh_schema_registry *reg, json_t *doc, const char *fallback_id,
                              char *errbuf, size_t errsize);

/* Compiles the schema at uri ("urn:x", "urn:x#/$defs/y") and every $ref it reaches.
 * The result is owned by the registry. */
fh_err fh_schema_compile(fh_schema_registry *reg, const char *uri, fh_schema **out, char *errbuf,
                         size_t errsize);

/* Returns 1 when instance is valid; 0 and fills err (may be NULL) with the first violation.
 * Neither allocates nor formats on the way to "valid"; err is only written on failure (and reset
 * on entry). `pattern` and `patternProperties` see a string up to its first NUL: a string holding
 * \u0000 (parsed with FH_JSON_ALLOW_NUL) is matched on that prefix. Thread-safe: the schema is
 * only read. The instance is only read and stays the caller's. */
int fh_schema_validate_jv(const fh_schema *schema, const fh_jv *instance, fh_schema_error *err);

/* The same contract for a jansson value: copies it into a temporary fh_json_doc (one allocation
 * per call) and validates that; a copy that cannot be made (out of memory) counts as invalid with
 * the message "cannot validate: out of memory". Prefer fh_schema_validate_jv on hot paths. */
int fh_schema_validate(const fh_schema *schema, const json_t *instance, fh_schema_error *err);

#endif
