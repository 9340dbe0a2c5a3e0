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

/* ---- a list of findings ---- */

int qtl__findings_add(struct qtl_findings *fs, const struct qtl_alloc *al, enum qtl_severity sev, int code,
                      const char *id, const char *file, const char *tensor, const char *message)
{
    if (qtl__grow(al, (void **)&fs->v, &fs->cap, fs->n + 1, sizeof *fs->v))
        return QTL_ERR_NOMEM;
    struct qtl_finding_rec *r = &fs->v[fs->n];
    *r = (struct qtl_finding_rec){sev, code, id, file ? qtl__strdup(al, file) : NULL,
                                  tensor ? qtl__strdup(al, tensor) : NULL, qtl__strdup(al, message)};
    if ((file && !r->file) || (tensor && !r->tensor) || !r->message) {
        qtl__free(al, r->file);
        qtl__free(al, r->tensor);
        qtl__free(al, r->message);
        return QTL_ERR_NOMEM;
    }
    fs->n++;
    return QTL_OK;
}

void qtl__findings_free(struct qtl_findings *fs, const struct qtl_alloc *al)
{
    for (size_t i = 0; i < fs->n; i++) {
        qtl__free(al, fs->v[i].file);
        qtl__free(al, fs->v[i].tensor);
        qtl__free(al, fs->v[i].message);
    }
    qtl__free(al, fs->v);
    *fs = (struct qtl_findings){NULL, 0, 0};
}

void qtl__findings_at(const struct qtl_findings *fs, size_t i, struct qtl_diag *d)
{
    const struct qtl_finding_rec *r = &fs->v[i];
    *d = (struct qtl_diag){r->sev, r->code, r->id, r->file, r->tensor, r->message};
}
