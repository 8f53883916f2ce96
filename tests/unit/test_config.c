/* The config table: defaults < file < environment < flags; errors name their source. */
#include "fh_config.h"
#include "fh_test.h"

#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const fh_cfg_opt opts[] = {
    FH_CFG_COMMON,
    {"http.listen", NULL, FH_CFG_STR, "127.0.0.1:8080", 0, 0, "address"},
    {"queue.max_bytes", "queue", FH_CFG_INT, "1024", 1, 4096, "cap"},
    {"auth.anonymous_read", NULL, FH_CFG_BOOL, "false", 0, 0, "anon"},
};

static fh_err load(fh_config *c, int argc, char **argv, char *err)
{
    int help;
    fh_config_init(c, "t", "", NULL, opts, sizeof(opts) / sizeof(opts[0]));
    return fh_config_load(c, argc, argv, &help, err, 256);
}

TEST(config_defaults_and_precedence)
{
    fh_config c;
    char err[256], path[] = "/tmp/fh-test-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "# comment\nhttp.listen = 127.0.0.1:9000\nqueue.max_bytes = 100\n"
                       "kafka.linger.ms = 7\n";
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    setenv("FIREHOSE_QUEUE_MAX_BYTES", "200", 1);
    char *argv[] = {
        "t",      "--config", path, "--auth.anonymous_read", "--brokers=127.0.0.1:1", "-X",
        "acks=1", "file1",    NULL};
    CHECK(load(&c, 8, argv, err) == FH_OK);
    CHECK_STR(fh_config_str(&c, "http.listen"), "127.0.0.1:9000");    /* file */
    CHECK(fh_config_int(&c, "queue.max_bytes") == 200);               /* env beats file */
    CHECK(fh_config_bool(&c, "auth.anonymous_read") == 1);            /* bare bool flag */
    CHECK_STR(fh_config_str(&c, "kafka.brokers"), "127.0.0.1:1");     /* alias flag */
    CHECK_STR(fh_config_str(&c, "topics.events"), "firehose.events"); /* default */
    CHECK(c.nkafka == 2);
    CHECK(c.nargs == 1 && strcmp(c.args[0], "file1") == 0);
    fh_config_free(&c);

    char *argv2[] = {"t", "--queue", "300", NULL};
    CHECK(load(&c, 3, argv2, err) == FH_OK);
    CHECK(fh_config_int(&c, "queue.max_bytes") == 300); /* flag beats env */
    fh_config_free(&c);
    unsetenv("FIREHOSE_QUEUE_MAX_BYTES");
    unlink(path);
}

TEST(config_errors_name_the_source)
{
    fh_config c;
    char err[256], path[] = "/tmp/fh-test-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "http.listen = x\n\nbogus.key = 1\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    char *argv[] = {"t", "--config", path, NULL};
    CHECK(load(&c, 3, argv, err) == FH_ERR_CONFIG);
    CHECK(strstr(err, ":3: unknown key 'bogus.key'") != NULL);
    fh_config_free(&c);
    unlink(path);

    setenv("FIREHOSE_QUEUE_MAX_BYTES", "lots", 1);
    char *argv2[] = {"t", NULL};
    CHECK(load(&c, 1, argv2, err) == FH_ERR_CONFIG);
    CHECK(strstr(err, "FIREHOSE_QUEUE_MAX_BYTES") == err);
    fh_config_free(&c);
    unsetenv("FIREHOSE_QUEUE_MAX_BYTES");

    char *argv3[] = {"t", "--queue=99999", NULL};
    CHECK(load(&c, 2, argv3, err) == FH_ERR_CONFIG);
    CHECK(strstr(err, "out of range") != NULL);
    fh_config_free(&c);

    char *argv4[] = {"t", "--nope", NULL};
    CHECK(load(&c, 2, argv4, err) == FH_ERR_CONFIG);
    CHECK(strstr(err, "--nope: unknown option") == err);
    fh_config_free(&c);
}

/* Found by reading fh_config.c for fuzz_config: fgets cut a line longer than its buffer in two,
 * the head's value was silently truncated and the tail read as a line of its own. */
TEST(config_file_line_too_long_is_refused)
{
    fh_config c;
    char err[256], path[] = "/tmp/fh-test-conf-XXXXXX";
    int fd = mkstemp(path);
    size_t n = 5000;
    char *text = malloc(n + 32);
    CHECK(fd >= 0 && text);
    strcpy(text, "http.listen = ");
    memset(text + strlen(text), 'a', n);
    strcpy(text + 14 + n, "\n");
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    char *argv[] = {"t", "--config", path, NULL};
    CHECK(load(&c, 3, argv, err) == FH_ERR_CONFIG);
    CHECK(strstr(err, ":1: line longer than") != NULL);
    fh_config_free(&c);

    /* a line that exactly fills the buffer at the end of the file is still read */
    fd = open(path, O_WRONLY | O_TRUNC);
    memset(text, 'a', 4095);
    memcpy(text, "http.listen=", 12);
    CHECK(write(fd, text, 4095) == 4095);
    close(fd);
    CHECK(load(&c, 3, argv, err) == FH_OK);
    CHECK(strlen(fh_config_str(&c, "http.listen")) == 4095 - 12);
    fh_config_free(&c);
    free(text);
    unlink(path);

    /* -X with a property name longer than the flag buffer was cut short into another name */
    char prop[300];
    memset(prop, 'p', sizeof(prop));
    strcpy(prop + 280, "=1");
    char *argv2[] = {"t", "-X", prop, NULL};
    CHECK(load(&c, 3, argv2, err) == FH_ERR_CONFIG);
    CHECK(strstr(err, "too long") != NULL);
    fh_config_free(&c);
}
