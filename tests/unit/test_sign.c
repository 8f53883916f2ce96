/* Standard Webhooks signing must reproduce the outside vectors byte for byte (they come from the
 * reference libraries). */
#include "fh_sign.h"
#include "fh_test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Copied into the project (tests/data/README.md); tests run from the repository root. */
#define VECTORS "tests/data/webhook-signatures.json"

TEST(sign_reproduces_standard_webhooks_vectors)
{
    json_error_t jerr;
    json_t *root = json_load_file(VECTORS, 0, &jerr);
    CHECK(root != NULL);
    if (!root) {
        printf("  %s: %s\n", VECTORS, jerr.text);
        return;
    }
    json_t *list = json_object_get(root, "standard_webhooks_v1");
    CHECK(json_is_array(list) && json_array_size(list) > 0);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        unsigned char key[FH_SIGN_MAX_KEY];
        char sig[FH_SIGN_SIG_SIZE], err[128];
        const char *payload = json_string_value(json_object_get(v, "payload"));
        long klen = fh_sign_secret_key(json_string_value(json_object_get(v, "secret")), key, err,
                                       sizeof(err));
        CHECK(klen > 0);
        CHECK(fh_sign(key, (size_t)klen, json_string_value(json_object_get(v, "msg_id")),
                      json_integer_value(json_object_get(v, "timestamp")), payload, strlen(payload),
                      sig) == FH_OK);
        CHECK_STR(sig, json_string_value(json_object_get(v, "signature")));
    }
    json_decref(root);
}

TEST(sign_secrets_generated_and_checked)
{
    char s1[FH_SIGN_SECRET_SIZE], s2[FH_SIGN_SECRET_SIZE], err[128];
    unsigned char key[FH_SIGN_MAX_KEY];
    CHECK(fh_sign_secret_new(s1) == FH_OK && fh_sign_secret_new(s2) == FH_OK);
    CHECK(strncmp(s1, "whsec_", 6) == 0 && strcmp(s1, s2) != 0);
    CHECK(fh_sign_secret_key(s1, key, err, sizeof(err)) == FH_SIGN_KEY_BYTES);
    CHECK(fh_sign_secret_check(s1, err, sizeof(err)) == FH_OK);
    CHECK(fh_sign_secret_check("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", err, sizeof(err)) ==
          FH_OK);
    CHECK(fh_sign_secret_check("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", err, sizeof(err)) != FH_OK);
    CHECK(fh_sign_secret_check("whsec_c2hvcnQ=", err, sizeof(err)) != FH_OK); /* 5 bytes */
    CHECK(fh_sign_secret_check("whsec_not base64!", err, sizeof(err)) != FH_OK);
    CHECK(strstr(err, "not base64") == NULL); /* errors never quote the secret */
}
