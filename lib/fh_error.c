#include "fh_error.h"

#include <stdarg.h>
#include <stdio.h>

const char *fh_strerror(fh_err rc)
{
    switch (rc) {
    case FH_OK:
        return "success";
    case FH_ERR_NOMEM:
        return "out of memory";
    case FH_ERR_INVAL:
        return "invalid argument";
    case FH_ERR_PARSE:
        return "parse error";
    case FH_ERR_SCHEMA:
        return "rejected by the event contract";
    case FH_ERR_TOOBIG:
        return "too big";
    case FH_ERR_IO:
        return "i/o error";
    case FH_ERR_KAFKA:
        return "kafka error";
    case FH_ERR_CONFIG:
        return "configuration error";
    case FH_ERR_NOTFOUND:
        return "not found";
    case FH_ERR_UNSUPPORTED:
        return "unsupported";
    }
    return "unknown error";
}

fh_err fh_errf(char *errbuf, size_t size, fh_err rc, const char *fmt, ...)
{
    if (errbuf && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, size, fmt, ap);
        va_end(ap);
    }
    return rc;
}
