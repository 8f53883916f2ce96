/* fh_test: a minimal unit-test harness. Tests register themselves; the runner prints one line
 * per failure and closes with "N passed, N failed". */
#ifndef FH_TEST_H
#define FH_TEST_H

#include <stdio.h>

typedef void (*fh_test_fn)(void);
void fh_test_register(const char *name, fh_test_fn fn);
void fh_test_fail(const char *file, int line, const char *expr);

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        fh_test_register(#name, name);                                                             \
    }                                                                                              \
    static void name(void)

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr))                                                                               \
            fh_test_fail(__FILE__, __LINE__, #expr);                                               \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            char m_[512];                                                                          \
            snprintf(m_, sizeof(m_), "%s == %s (\"%s\" vs \"%s\")", #a, #b, a_ ? a_ : "(null)",    \
                     b_ ? b_ : "(null)");                                                          \
            fh_test_fail(__FILE__, __LINE__, m_);                                                  \
        }                                                                                          \
    } while (0)

/* The official JSON Schema Test Suite's draft 2020-12 files, copied into the project
 * (tests/data/json-schema-test-suite/README.md); relative to the repository root, where the
 * tests run. */
#define FH_TEST_SCHEMA_SUITE "tests/data/json-schema-test-suite/draft2020-12"

/* Reads a whole file; caller frees. NULL when it cannot be read. */
char *fh_test_read_file(const char *path, size_t *len);

#endif
