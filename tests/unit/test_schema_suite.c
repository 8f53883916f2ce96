/* The schema-driven validator agrees with the official JSON Schema test suite (draft 2020-12)
 * for every keyword it supports; groups whose schema uses something unsupported are refused at
 * compile time (never half-validated) and counted as skipped. */
#include "fh_schema.h"
#include "fh_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* The suite's files as copied into tests/data (tests run from the repository root);
 * FH_JSON_SCHEMA_SUITE points at another copy. */
static const char *suite_dir(void)
{
    const char *d = getenv("FH_JSON_SCHEMA_SUITE");
    return d ? d : FH_TEST_SCHEMA_SUITE;
}

static int run_file(const char *path, int *passed, int *failed, int *skipped)
{
    json_error_t jerr;
    json_t *groups = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    size_t gi;
    json_t *group;
    if (!json_is_array(groups)) {
        printf("  %s: %s\n", path, jerr.text);
        json_decref(groups);
        return -1;
    }
    json_array_foreach(groups, gi, group)
    {
        char err[256];
        fh_schema *s = NULL;
        fh_schema_registry *reg = fh_schema_registry_new();
        json_t *schema = json_object_get(group, "schema");
        fh_err rc = fh_schema_registry_add(reg, schema, "urn:suite:root", err, sizeof(err));
        if (!rc)
            rc = fh_schema_compile(reg, "urn:suite:root", &s, err, sizeof(err));
        if (rc == FH_ERR_UNSUPPORTED || rc == FH_ERR_NOTFOUND) {
            (*skipped)++;
        } else if (rc) {
            printf("  %s: group \"%s\": compile failed: %s\n", path,
                   json_string_value(json_object_get(group, "description")), err);
            (*failed)++;
        } else {
            size_t ti;
            json_t *t;
            json_array_foreach(json_object_get(group, "tests"), ti, t)
            {
                int want = json_is_true(json_object_get(t, "valid"));
                int got = fh_schema_validate(s, json_object_get(t, "data"), NULL);
                if (got == want) {
                    (*passed)++;
                } else {
                    (*failed)++;
                    printf("  %s: \"%s\" / \"%s\": expected %s\n", path,
                           json_string_value(json_object_get(group, "description")),
                           json_string_value(json_object_get(t, "description")),
                           want ? "valid" : "invalid");
                }
            }
        }
        fh_schema_registry_free(reg);
    }
    json_decref(groups);
    return 0;
}

TEST(schema_validator_agrees_with_json_schema_test_suite)
{
    DIR *d = opendir(suite_dir());
    struct dirent *de;
    int passed = 0, failed = 0, skipped = 0, files = 0;
    CHECK(d != NULL);
    if (!d)
        return;
    while ((de = readdir(d))) {
        char path[1024];
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", suite_dir(), de->d_name);
        CHECK(run_file(path, &passed, &failed, &skipped) == 0);
        files++;
    }
    closedir(d);
    printf("  json-schema-test-suite: %d files, %d cases agree, %d disagree, %d groups skipped\n",
           files, passed, failed, skipped);
    CHECK(files >= 20);
    CHECK(passed > 500);
    CHECK(failed == 0);
}
