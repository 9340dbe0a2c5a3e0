/* Status codes (one X-macro table) and per-handle error messages. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define QTL_STR2(x) #x
#define QTL_STR(x) QTL_STR2(x)

const char *qtl_version_string(void)
{
    return QTL_STR(QTL_VERSION_MAJOR) "." QTL_STR(QTL_VERSION_MINOR) "." QTL_STR(QTL_VERSION_PATCH);
}

unsigned qtl_version_number(void) { return QTL_VERSION_NUMBER; }

const char *qtl_strerror(int status)
{
    switch (status) {
#define QTL_XX_TEXT(name, value, text)                                                                     \
    case value:                                                                                            \
        return text;
        QTL_STATUS_MAP(QTL_XX_TEXT)
#undef QTL_XX_TEXT
    default:
        return "unknown status";
    }
}

const char *qtl_errname(int status)
{
    switch (status) {
#define QTL_XX_NAME(name, value, text)                                                                     \
    case value:                                                                                            \
        return #name;
        QTL_STATUS_MAP(QTL_XX_NAME)
#undef QTL_XX_NAME
    default:
        return "UNKNOWN";
    }
}

int qtl__vfail(struct qtl_err *e, int code, const char *fmt, va_list ap)
{
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return code;
}

int qtl__fail(struct qtl_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qtl__vfail(e, code, fmt, ap);
    va_end(ap);
    return code;
}

void qtl__err_clear(struct qtl_err *e)
{
    e->code = QTL_OK;
    e->msg[0] = '\0';
}

int qtl__err_copy(struct qtl_err *dst, const struct qtl_err *src)
{
    if (dst != src)
        memcpy(dst, src, sizeof *dst);
    return dst->code;
}
