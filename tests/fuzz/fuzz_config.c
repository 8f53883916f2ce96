/* libFuzzer target for the configuration loader (lib/fh_config.c): the config-file parser and
 * the flag parser on arbitrary bytes. The input up to its first NUL byte is the config file; the
 * rest, split at NUL bytes, is argv[2..] (at most 32 arguments). The file lives in a memfd and
 * argv[1] is "--config=/proc/self/fd/N", so the real fopen/fgets path runs. Arguments that would
 * name another config file (-c, --config, --config=...) are dropped, so no input opens a path.
 *
 * What must hold for every input:
 *  - no crash, leak or undefined behaviour (ASan + UBSan);
 *  - a refusal is FH_ERR_CONFIG or FH_ERR_NOMEM and carries a message; a file error names the
 *    file and a line that exists in it;
 *  - after success every integer key reads back within its bounds, every boolean key as 0/1,
 *    and no more positional arguments were kept than were given;
 *  - fh_config_help and fh_config_markdown run on the loaded table.
 * Build and run: see tests/fuzz/README.md. */
#include "fh_config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 32

static const fh_cfg_opt opts[] = {
    FH_CFG_COMMON,
    {"http.listen", "listen", FH_CFG_STR, "127.0.0.1:8080", 0, 0, "address"},
    {"queue.max_bytes", NULL, FH_CFG_INT, "1000", 1, 1000000, "queue cap"},
    {"view.window_s", NULL, FH_CFG_INT, NULL, -5, 5, "a range that crosses zero"},
    {"auth.anonymous_read", NULL, FH_CFG_BOOL, "true", 0, 0, "anonymous read"},
    {"quiet", "q", FH_CFG_BOOL, "false", 0, 0, "a one-letter alias"},
    {"auth.admin_token", NULL, FH_CFG_STR, NULL, 0, 0, "no default"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int memfd = -1;
static FILE *devnull;
static char config_arg[64], fd_path[64];

static void check(int ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: %s (%s)\n", what, detail ? detail : "");
        abort();
    }
}

static void teardown(void)
{
    if (devnull)
        fclose(devnull);
    if (memfd >= 0)
        close(memfd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char env[128];
    (void)argc;
    (void)argv;
    memfd = memfd_create("fuzz_config", 0);
    check(memfd >= 0, "memfd_create", NULL);
    snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", memfd);
    snprintf(config_arg, sizeof(config_arg), "--config=%s", fd_path);
    devnull = fopen("/dev/null", "w");
    check(devnull != NULL, "/dev/null", NULL);
    /* the environment is the operator's, not the attacker's: keep it out of the picture */
    unsetenv("FIREHOSE_CONFIG");
    for (size_t i = 0; i < NOPTS; i++) {
        size_t o = (size_t)snprintf(env, sizeof(env), "FIREHOSE_");
        for (const char *k = opts[i].key; *k && o + 1 < sizeof(env); k++)
            env[o++] = *k == '.' ? '_' : (char)((*k >= 'a' && *k <= 'z') ? *k - 32 : *k);
        env[o] = '\0';
        unsetenv(env);
    }
    atexit(teardown);
    return 0;
}

static int names_config(const char *a)
{
    return strcmp(a, "-c") == 0 || strncmp(a, "--config", 8) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *end = (const char *)data + size;
    const char *nul = memchr(data, '\0', size);
    size_t flen = nul ? (size_t)(nul - (const char *)data) : size;
    char *argv[MAX_ARGS + 3], *copy = NULL, err[512];
    int argc = 0, help = 0, given = 0;
    fh_config c;

    check(ftruncate(memfd, 0) == 0, "ftruncate", NULL);
    check(pwrite(memfd, data, flen, 0) == (ssize_t)flen, "pwrite", NULL);

    argv[argc++] = "fuzz_config";
    argv[argc++] = config_arg;
    if (nul) {
        size_t alen = (size_t)(end - nul - 1);
        copy = malloc(alen + 1);
        check(copy != NULL, "malloc", NULL);
        memcpy(copy, nul + 1, alen);
        copy[alen] = '\0';
        for (char *p = copy; p <= copy + alen && argc < MAX_ARGS + 2; p += strlen(p) + 1) {
            if (names_config(p))
                continue;
            argv[argc++] = p;
            given++;
        }
    }
    argv[argc] = NULL;

    check(fh_config_init(&c, "fuzz_config", "[FILE...]", NULL, opts, NOPTS) == FH_OK, "init", NULL);
    err[0] = '\0';
    fh_err rc = fh_config_load(&c, argc, argv, &help, err, sizeof(err));
    if (rc) {
        check(rc == FH_ERR_CONFIG || rc == FH_ERR_NOMEM, "refusal code", err);
        check(rc == FH_ERR_NOMEM || err[0] != '\0', "refusal without a message", NULL);
        if (strncmp(err, fd_path, strlen(fd_path)) == 0 && err[strlen(fd_path)] == ':') {
            /* "path:LINE: ..." must name a line the file has */
            long line = strtol(err + strlen(fd_path) + 1, NULL, 10);
            long lines = flen && data[flen - 1] != '\n';
            for (size_t i = 0; i < flen; i++)
                lines += data[i] == '\n';
            check(line >= 1 && line <= lines, "error names a line the file does not have", err);
        }
    } else if (!help) {
        check(c.nargs <= (size_t)given, "more positional arguments than given", NULL);
        for (size_t i = 0; i < NOPTS; i++) {
            if (opts[i].type == FH_CFG_INT && c.vals[i]) {
                long long n = fh_config_int(&c, opts[i].key);
                check(n >= opts[i].min && n <= opts[i].max, "integer out of bounds", c.vals[i]);
            } else if (opts[i].type == FH_CFG_BOOL) {
                int b = fh_config_bool(&c, opts[i].key);
                check(b == 0 || b == 1, "boolean not 0/1", c.vals[i]);
            } else {
                (void)fh_config_str(&c, opts[i].key);
            }
        }
        for (size_t i = 0; i < c.nkafka; i++)
            check(c.kafka_keys[i] && c.kafka_vals[i], "kafka pass-through", NULL);
    }
    fh_config_help(&c, devnull);
    fh_config_markdown(&c, devnull);
    fh_config_free(&c);
    free(copy);
    return 0;
}
