/* The finding catalogue: QTL_FINDING_MAP as a table indexed by enum qtl_finding. */
#include "internal.h"

#include <string.h>

static const struct {
    const char *id, *doc;
    enum qtl_severity severity;
} findings[QTL_FINDING_COUNT] = {
#define QTL_XX_ROW(name, id, severity, doc) [QTL_FINDING_##name] = {id, doc, severity},
    QTL_FINDING_MAP(QTL_XX_ROW)
#undef QTL_XX_ROW
};

/* The enum's type may be unsigned: one comparison covers both ends. */
static int in_table(enum qtl_finding f) { return (unsigned)f < QTL_FINDING_COUNT; }

const char *qtl_finding_id(enum qtl_finding f) { return in_table(f) ? findings[f].id : NULL; }

const char *qtl_finding_doc(enum qtl_finding f) { return in_table(f) ? findings[f].doc : NULL; }

enum qtl_severity qtl_finding_severity(enum qtl_finding f)
{
    return in_table(f) ? findings[f].severity : QTL_SEV_ERROR;
}

int qtl_finding_lookup(const char *id, enum qtl_finding *out)
{
    for (size_t i = 0; id && i < QTL_FINDING_COUNT; i++)
        if (!strcmp(findings[i].id, id)) {
            *out = (enum qtl_finding)i;
            return QTL_OK;
        }
    return QTL_ERR_INVALID_ARGUMENT;
}
