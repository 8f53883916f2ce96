/* fh_error: the one error enum every fallible firehose function returns. */
#ifndef FH_ERROR_H
#define FH_ERROR_H

#include <stddef.h>

typedef enum fh_err {
    FH_OK = 0,
    FH_ERR_NOMEM,    /* allocation failed */
    FH_ERR_INVAL,    /* bad argument or usage */
    FH_ERR_PARSE,    /* input is not well-formed (JSON, number, address) */
    FH_ERR_SCHEMA,   /* well-formed input that the event contract rejects */
    FH_ERR_TOOBIG,   /* input over a configured cap */
    FH_ERR_IO,       /* file or socket error */
    FH_ERR_KAFKA,    /* librdkafka reported an error */
    FH_ERR_CONFIG,   /* bad configuration key or value */
    FH_ERR_NOTFOUND, /* named thing does not exist */
    FH_ERR_UNSUPPORTED,
} fh_err;

/* Returns a static, human-readable name for rc. Never NULL. */
const char *fh_strerror(fh_err rc);

/* Formats into a caller-supplied errbuf (always NUL-terminated when size > 0). Returns rc, so
 * callers can write `return fh_errf(errbuf, size, FH_ERR_INVAL, "bad %s", x);`. */
fh_err fh_errf(char *errbuf, size_t size, fh_err rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
