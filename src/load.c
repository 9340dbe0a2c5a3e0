/* The loader: checkpoint tensors → the parameters one tensor-parallel rank
 * holds in vLLM (stage "loaded": the state after the last weight_loader
 * call), with every element and scale slot tracked. Reads only what the rank
 * needs: row ranges for column-parallel parameters, column ranges for
 * row-parallel ones (vllm-loading.md §2-§4, §9, §11, §12). */
#include "load_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct finding {
    enum qtl_severity sev;
    int code;
    char id[32];
    char *file, *tensor, *message;
};

struct qtl_load {
    struct qtl_alloc al;
    struct qtl_err err;
    qtl_ckpt_t *ck;
    qtl_config_t *cfg;
    struct lmodel m;
    struct finding *f;
    size_t nf, fcap;
    const char *const *allow;
    size_t nallow;
    void (*progress)(void *, size_t, size_t);
    void *progress_ud;
    int verify;
    uint64_t bytes_read;
    double seconds, process_seconds;
    int ran, processed;
    qtl_st_t *pre;  /* pre-sharded checkpoint: this rank's model-rank-R-part-0.safetensors */
    int pre_processed;
};

/* ---- findings ---- */

static int add_finding(qtl_load_t *l, enum qtl_severity sev, int code, const char *id, const char *file,
                       const char *tensor, const char *msg);

static int finding_sev(qtl_load_t *l, enum qtl_severity sev, int code, const char *id, const char *file,
                       const char *tensor, const char *fmt, ...) QTL_PRINTF(7, 8);
static int finding_sev(qtl_load_t *l, enum qtl_severity sev, int code, const char *id, const char *file,
                       const char *tensor, const char *fmt, ...)
{
    char msg[QTL_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return add_finding(l, sev, code, id, file, tensor, msg);
}

static int finding(qtl_load_t *l, int code, const char *id, const char *file, const char *tensor, const char *fmt, ...)
    QTL_PRINTF(6, 7);
static int finding(qtl_load_t *l, int code, const char *id, const char *file, const char *tensor, const char *fmt, ...)
{
    char msg[QTL_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    enum qtl_severity sev = QTL_SEV_ERROR;
    for (size_t i = 0; i < l->nallow; i++)
        if (!strcmp(l->allow[i], id))
            sev = QTL_SEV_WARNING;
    if (code == QTL_OK)
        sev = QTL_SEV_WARNING;
    return add_finding(l, sev, code, id, file, tensor, msg);
}

static int add_finding(qtl_load_t *l, enum qtl_severity sev, int code, const char *id, const char *file,
                       const char *tensor, const char *msg)
{
    if (l->nf == l->fcap) {
        size_t nc = l->fcap ? l->fcap * 2 : 16;
        struct finding *n = realloc(l->f, nc * sizeof *n);
        if (!n)
            return QTL_ERR_NOMEM;
        l->f = n;
        l->fcap = nc;
    }
    struct finding *f = &l->f[l->nf++];
    f->sev = sev;
    f->code = code;
    snprintf(f->id, sizeof f->id, "%s", id);
    f->file = file ? strdup(file) : NULL;
    f->tensor = tensor ? strdup(tensor) : NULL;
    f->message = strdup(msg);
    if (sev == QTL_SEV_ERROR && l->err.code == QTL_OK)
        qtl__fail(&l->err, code, "%s", msg);
    return QTL_OK;
}

/* ---- open ---- */

static int alloc_params(qtl_load_t *l)
{
    for (size_t i = 0; i < l->m.nparams; i++) {
        struct lparam *p = &l->m.params[i];
        uint64_t numel = p->ndim == 2 ? p->shape[0] * p->shape[1] : p->ndim ? p->shape[0] : 1;
        p->nbytes = numel * qtl_dtype_bits(p->dtype) / 8;
        int bulk = !p->is_scale || p->kind == PK_GROUP || p->kind == PK_BLOCK || p->kind == PK_MODEL_WEIGHT;
        int read = l->verify == 0 || (l->verify == 1 && !bulk) || (l->verify == 2 && p->is_scale);
        p->data = read ? calloc(1, p->nbytes ? (size_t)p->nbytes : 1) : NULL;
        /* units of coverage: rows (slots) along dim 0, or the whole parameter */
        int whole = p->kind == PK_BASE || p->kind == PK_ROW || p->kind == PK_REPLICATED || p->ndim == 0;
        p->nunits = whole ? 1 : p->shape[0];
        p->written = calloc(p->nunits ? (size_t)p->nunits : 1, sizeof *p->written);
        if ((read && !p->data) || !p->written)
            return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory for parameter '%s' (%llu bytes)", p->name,
                             (unsigned long long)p->nbytes);
        if (p->fill_f32_min && p->data) /* vLLM pre-fills these scales with torch.finfo(float32).min */
            for (uint64_t k = 0; k < numel; k++)
                memcpy(p->data + 4 * k, &(float){-FLT_MAX}, 4);
    }
    return QTL_OK;
}

/* A directory written by `qtl shard`: model-rank-R-part-0.safetensors with
 * qtl.tp / qtl.rank / qtl.stage metadata and config.json. */
static int open_presharded(qtl_load_t *l, const char *path, const struct qtl_load_options *o, int *is_pre)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/model-rank-0-part-0.safetensors", path);
    FILE *f = fopen(file, "rb");
    *is_pre = f != NULL;
    if (!f)
        return QTL_OK;
    fclose(f);
    snprintf(file, sizeof file, "%s/model-rank-%u-part-0.safetensors", path, o->rank);
    struct qtl_open_options oo = {o->allocator, 0};
    if (qtl_st_open_file(file, &oo, &l->pre) != QTL_OK)
        return qtl__fail(&l->err, QTL_ERR_OPEN, "%s", qtl_st_errmsg(l->pre));
    const char *tp = qtl_st_metadata_get(l->pre, "qtl.tp"), *rank = qtl_st_metadata_get(l->pre, "qtl.rank");
    const char *stage = qtl_st_metadata_get(l->pre, "qtl.stage");
    if (!tp || !rank || !stage)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: no qtl.tp / qtl.rank / qtl.stage metadata: not written by qtl shard", file);
    if (strtoul(tp, NULL, 10) != o->tp)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: pre-sharded for tp=%s, asked for tp=%u", path, tp, o->tp);
    if (strtoul(rank, NULL, 10) != o->rank)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: holds rank %s, not %u", file, rank, o->rank);
    l->pre_processed = !strcmp(stage, "processed");
    return QTL_OK;
}

/* Parameters straight from a processed pre-sharded file. */
static int params_from_file(qtl_load_t *l)
{
    size_t n = qtl_st_tensor_count(l->pre);
    l->m.params = calloc(n ? n : 1, sizeof *l->m.params);
    if (!l->m.params)
        return QTL_ERR_NOMEM;
    l->m.cap = n;
    for (size_t i = 0; i < n; i++) {
        struct qtl_tensor_info ti;
        qtl_st_tensor_at(l->pre, i, &ti);
        struct lparam *p = &l->m.params[l->m.nparams++];
        if (ti.ndim > 2)
            return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: tensor '%s' has %u dimensions", ti.file, ti.name, ti.ndim);
        snprintf(p->name, sizeof p->name, "%s", ti.name);
        p->kind = PK_BASE;
        p->dtype = ti.dtype;
        p->ndim = ti.ndim;
        p->shape[0] = ti.ndim ? ti.shape[0] : 0;
        p->shape[1] = ti.ndim > 1 ? ti.shape[1] : 0;
        p->layer = -1;
    }
    return QTL_OK;
}

int qtl_load_open(const char *path, const struct qtl_load_options *o, qtl_load_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, o ? o->allocator : NULL);
    qtl_load_t *l = *out = qtl__calloc(&al, 1, sizeof *l);
    if (!l)
        return QTL_ERR_NOMEM;
    l->al = al;
    if (!o || !o->tp || o->rank >= o->tp)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "tp must be >= 1 and rank < tp");
    l->allow = o->allow;
    l->nallow = o->nallow;
    l->progress = o->progress;
    l->progress_ud = o->progress_ud;
    l->verify = o->verify;
    struct qtl_open_options oo = {o->allocator, 0};
    int pre;
    int rc0 = open_presharded(l, path, o, &pre);
    if (rc0)
        return rc0;
    if (pre && l->pre_processed) {
        if ((rc0 = params_from_file(l)))
            return l->err.code ? l->err.code : qtl__fail(&l->err, rc0, "out of memory");
        return alloc_params(l);
    }
    /* a loaded-stage pre-sharded file takes its layout from the copied config.json */
    if (!pre && qtl_ckpt_open(path, &oo, &l->ck) != QTL_OK)
        return qtl__fail(&l->err, qtl_ckpt_errmsg(l->ck)[0] ? QTL_ERR_OPEN : QTL_ERR_NOMEM, "%s",
                         qtl_ckpt_errmsg(l->ck));
    if (qtl_config_open(pre ? path : qtl_ckpt_dir(l->ck), &oo, o->dtype_override, &l->cfg) != QTL_OK) {
        int rc = l->cfg ? QTL_ERR_JSON : QTL_ERR_NOMEM;
        return qtl__fail(&l->err, rc, "%s", qtl_config_errmsg(l->cfg));
    }
    l->m.cfg = l->cfg;
    l->m.shape = *qtl_config_shape(l->cfg);
    l->m.err = &l->err;
    l->m.tp = o->tp;
    l->m.rank = o->rank;
    int rc = qtl__model_build(&l->m);
    if (rc)
        return l->err.code ? l->err.code : rc;
    return alloc_params(l);
}

void qtl_load_close(qtl_load_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->m.nparams; i++) {
        free(l->m.params[i].data);
        free(l->m.params[i].written);
    }
    free(l->m.params);
    free(l->m.layers);
    for (size_t i = 0; i < l->nf; i++) {
        free(l->f[i].file);
        free(l->f[i].tensor);
        free(l->f[i].message);
    }
    free(l->f);
    qtl_config_close(l->cfg);
    qtl_ckpt_close(l->ck);
    qtl_st_close(l->pre);
    struct qtl_alloc al = l->al;
    qtl__free(&al, l);
}

/* ---- copies ---- */

static int is_float(enum qtl_dtype d) { return d == QTL_DTYPE_F32 || d == QTL_DTYPE_BF16 || d == QTL_DTYPE_F16; }
static int is_int(enum qtl_dtype d)
{
    return d == QTL_DTYPE_I8 || d == QTL_DTYPE_I16 || d == QTL_DTYPE_I32 || d == QTL_DTYPE_I64 || d == QTL_DTYPE_U8 ||
           d == QTL_DTYPE_U16 || d == QTL_DTYPE_U32 || d == QTL_DTYPE_U64;
}

static int64_t int_at(enum qtl_dtype d, const unsigned char *p, uint64_t i)
{
    switch (d) {
    case QTL_DTYPE_I8: return (int8_t)p[i];
    case QTL_DTYPE_U8: return p[i];
    case QTL_DTYPE_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case QTL_DTYPE_U16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case QTL_DTYPE_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case QTL_DTYPE_U32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    default: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    }
}

static void int_put(enum qtl_dtype d, unsigned char *p, uint64_t i, int64_t v)
{
    unsigned b = qtl_dtype_bits(d) / 8;
    for (unsigned k = 0; k < b; k++)
        p[b * i + k] = (unsigned char)((uint64_t)v >> (8 * k));
}

/* Convert n elements as torch's copy_ does between the dtypes qtl meets. */
static int convert(enum qtl_dtype sd, const unsigned char *src, enum qtl_dtype dd, unsigned char *dst, uint64_t n)
{
    if (sd == dd) {
        memcpy(dst, src, (size_t)(n * qtl_dtype_bits(sd) / 8));
        return 0;
    }
    if (is_float(sd) && is_float(dd)) {
        for (uint64_t i = 0; i < n; i++) {
            float f;
            qtl_to_f32(sd, src + i * (qtl_dtype_bits(sd) / 8), 1, &f);
            if (dd == QTL_DTYPE_F32)
                memcpy(dst + 4 * i, &f, 4);
            else {
                uint16_t h = dd == QTL_DTYPE_BF16 ? qtl_f32_to_bf16(f) : qtl_f32_to_f16(f);
                memcpy(dst + 2 * i, &h, 2);
            }
        }
        return 0;
    }
    if (is_int(sd) && is_int(dd)) {
        for (uint64_t i = 0; i < n; i++)
            int_put(dd, dst, i, int_at(sd, src, i));
        return 0;
    }
    return -1;
}

struct src {
    size_t index; /* checkpoint tensor */
    struct qtl_tensor_info ti;
};

static uint64_t rows_of(const struct qtl_tensor_info *ti) { return ti->ndim ? ti->shape[0] : 1; }
static uint64_t cols_of(const struct qtl_tensor_info *ti)
{
    uint64_t c = 1;
    for (uint32_t d = 1; d < ti->ndim; d++)
        c *= ti->shape[d];
    return c;
}
static uint64_t pcols(const struct lparam *p) { return p->ndim == 2 ? p->shape[1] : 1; }

/* Copy rows [r0, r0+nr) x cols [c0, c0+nc) of the source into param rows from
 * dst_row (the param's full width). Marks rows [mark0, mark0+nmark). */
static int copy_block(qtl_load_t *l, struct lparam *p, const struct src *s, uint64_t r0, uint64_t nr, uint64_t c0,
                      uint64_t nc, uint64_t dst_row, uint64_t mark0, uint64_t nmark)
{
    if (nc != pcols(p))
        return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                       "%s: tensor '%s' gives %llu columns, parameter '%s' has %llu", s->ti.file, s->ti.name,
                       (unsigned long long)nc, p->name, (unsigned long long)pcols(p));
    uint64_t n = nr * nc, sbytes = n * qtl_dtype_bits(s->ti.dtype) / 8;
    if (!p->data) { /* verification: planned and checked, not read */
        int ok = s->ti.dtype == p->dtype || (is_float(s->ti.dtype) && is_float(p->dtype)) ||
                 (is_int(s->ti.dtype) && is_int(p->dtype));
        if (!ok)
            return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.dtype", s->ti.file, s->ti.name,
                           "%s: tensor '%s' is %s, parameter '%s' is %s", s->ti.file, s->ti.name,
                           qtl_dtype_name(s->ti.dtype), p->name, qtl_dtype_name(p->dtype));
        for (uint64_t u = mark0; u < mark0 + nmark && u < p->nunits; u++)
            p->written[u]++;
        if (!p->first_src[0])
            snprintf(p->first_src, sizeof p->first_src, "%s", s->ti.name);
        return QTL_OK;
    }
    unsigned char *dst = p->data + dst_row * pcols(p) * qtl_dtype_bits(p->dtype) / 8;
    /* same dtype (the common case): read straight into the parameter; else convert from tmp */
    unsigned char *tmp = s->ti.dtype == p->dtype ? NULL : malloc(sbytes ? (size_t)sbytes : 1), *buf = tmp ? tmp : dst;
    if (s->ti.dtype != p->dtype && !tmp)
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    int rc = nr && nc ? qtl_ckpt_read_block(l->ck, s->index, r0, nr, c0, nc, buf, (size_t)sbytes) : 0;
    if (!rc)
        l->bytes_read += sbytes;
    int bad_dtype = !rc && tmp && convert(s->ti.dtype, tmp, p->dtype, dst, n);
    free(tmp);
    if (rc)
        return finding(l, rc, "tensor.read", s->ti.file, s->ti.name, "%s", qtl_ckpt_errmsg(l->ck));
    if (bad_dtype)
        return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.dtype", s->ti.file, s->ti.name,
                       "%s: tensor '%s' is %s, parameter '%s' is %s", s->ti.file, s->ti.name,
                       qtl_dtype_name(s->ti.dtype), p->name, qtl_dtype_name(p->dtype));
    for (uint64_t u = mark0; u < mark0 + nmark && u < p->nunits; u++)
        p->written[u]++;
    if (!p->first_src[0])
        snprintf(p->first_src, sizeof p->first_src, "%s", s->ti.name);
    return QTL_OK;
}

/* Whole copy (Base, Row-in-column-layer, Channel/PerTensor in row layers,
 * norms): shapes must agree; 0-D and [1] are the same. Last write wins. */
static int copy_whole(qtl_load_t *l, struct lparam *p, const struct src *s)
{
    uint64_t pn = p->ndim == 2 ? p->shape[0] * p->shape[1] : p->ndim ? p->shape[0] : 1;
    int same = s->ti.numel == pn &&
               (s->ti.ndim == p->ndim ? (p->ndim < 1 || s->ti.shape[0] == p->shape[0]) &&
                                            (p->ndim < 2 || s->ti.shape[1] == p->shape[1])
                                      : (pn == 1 && s->ti.ndim <= 1 && p->ndim <= 1)); /* 0-D and [1] alike */
    if (!same)
        return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                       "%s: tensor '%s' has %llu elements in %u dimension(s), parameter '%s' needs %llu",
                       s->ti.file, s->ti.name, (unsigned long long)s->ti.numel, s->ti.ndim, p->name,
                       (unsigned long long)pn);
    unsigned char *before = NULL;
    if (p->written[0] && p->data) {
        before = malloc(p->nbytes ? (size_t)p->nbytes : 1);
        if (before)
            memcpy(before, p->data, (size_t)p->nbytes);
    }
    uint32_t prev = p->written[0];
    int rc = copy_block(l, p, s, 0, rows_of(&s->ti) * cols_of(&s->ti) / pcols(p), 0, pcols(p), 0, 0, p->nunits);
    if (!rc && before && p->data && memcmp(before, p->data, (size_t)p->nbytes) != 0)
        p->differs = 1;
    free(before);
    if (p->kind == PK_BASE || p->kind == PK_ROW || p->kind == PK_REPLICATED)
        (void)prev; /* whole-overwrite parameters: counted, not an error */
    return rc;
}

/* A per-tensor scale written into `slots` (vLLM: W is 0-D, or [1] and W[0] is used). */
static int load_per_tensor(qtl_load_t *l, struct lparam *p, const struct src *s, int first, int last)
{
    if (s->ti.ndim > 1 || (s->ti.ndim == 1 && s->ti.shape[0] != 1)) {
        if (s->ti.ndim == 1)
            return finding(l, QTL_ERR_INVALID_ARGUMENT, "scale.vector", s->ti.file, s->ti.name,
                           "%s: tensor '%s' is a [%llu] vector; a per-tensor scale must be 0-D or [1] (vLLM asserts "
                           "W.shape[0] == 1)",
                           s->ti.file, s->ti.name, (unsigned long long)s->ti.shape[0]);
        return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                       "%s: tensor '%s' has %u dimensions; a per-tensor scale must be 0-D or [1]", s->ti.file,
                       s->ti.name, s->ti.ndim);
    }
    for (int i = first; i <= last; i++) {
        if ((uint64_t)i >= p->shape[0])
            return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shard", s->ti.file, s->ti.name,
                           "%s: tensor '%s': slot %d outside parameter '%s' [%llu]", s->ti.file, s->ti.name, i,
                           p->name, (unsigned long long)p->shape[0]);
        int rc = copy_block(l, p, s, 0, 1, 0, 1, (uint64_t)i, (uint64_t)i, 1);
        if (rc)
            return rc;
    }
    return QTL_OK;
}

/* Column-side load of sub-matrix i (split on disk, or a piece of a fused
 * tensor starting at source row `base` with `avail` rows). */
static int load_shard(qtl_load_t *l, struct lparam *p, const struct llayer *ly, const struct src *s, int i,
                      uint64_t base, uint64_t avail)
{
    const struct lmodel *m = &l->m;
    if (p->kind == PK_PER_TENSOR)
        return load_per_tensor(l, p, s, i, i);
    if (p->kind == PK_BASE || p->kind == PK_ROW)
        return copy_whole(l, p, s);
    uint64_t off = 0, size = ly->part[i];
    for (int j = 0; j < i; j++)
        off += ly->part[j];
    if (p->kind == PK_BLOCK)
        off = (off + p->block_n - 1) / p->block_n, size = (size + p->block_n - 1) / p->block_n;
    if (p->kind == PK_PACKED_ZP || p->kind == PK_PACKED_ZP_COL)
        off /= p->pack, size /= p->pack;
    uint64_t b = (ly->kind == LK_QKV && i > 0) ? m->rank / m->replicas : m->rank;
    uint64_t blocks = (ly->kind == LK_QKV && i > 0) ? m->tp / m->replicas : m->tp;
    int strict = p->kind != PK_BLOCK;
    if ((strict && size * blocks != avail) || (b + 1) * size > avail)
        return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                       "%s: tensor '%s': %llu rows for sub-matrix %d of '%s', tp=%u needs %llu x %llu", s->ti.file,
                       s->ti.name, (unsigned long long)avail, i, p->name, m->tp, (unsigned long long)blocks,
                       (unsigned long long)size);
    return copy_block(l, p, s, base + b * size, size, 0, cols_of(&s->ti), off, off, size);
}

static int load_tensor(qtl_load_t *l, struct lparam *p, const struct src *s, int shard)
{
    const struct lmodel *m = &l->m;
    if (p->kind == PK_VOCAB) {
        uint64_t V = m->shape.vocab, start = (uint64_t)m->rank * m->vocab_pp;
        uint64_t n = start >= V ? 0 : (V - start < m->vocab_pp ? V - start : m->vocab_pp);
        if (s->ti.ndim != 2 || s->ti.shape[0] != V || s->ti.shape[1] != p->shape[1])
            return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                           "%s: tensor '%s' must be [%llu, %llu] (vocab_size, hidden_size)", s->ti.file, s->ti.name,
                           (unsigned long long)V, (unsigned long long)p->shape[1]);
        /* padding rows are zero-filled, which counts as written (vLLM fill_(0)) */
        return copy_block(l, p, s, start, n, 0, p->shape[1], 0, 0, p->nunits);
    }
    if (p->kind == PK_REPLICATED || p->layer < 0)
        return copy_whole(l, p, s);
    const struct llayer *ly = &m->layers[p->layer];
    if (ly->kind == LK_ROW) {
        if (shard != SHARD_NONE)
            return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shard", s->ti.file, s->ti.name,
                           "%s: tensor '%s' has a shard id but '%s' is row-parallel", s->ti.file, s->ti.name, p->name);
        int narrow = (p->kind == PK_MODEL_WEIGHT && p->ndim == 2) || p->kind == PK_GROUP || p->kind == PK_BLOCK ||
                     p->kind == PK_PACKED_IN || p->kind == PK_PACKED_ZP || p->kind == PK_ROW;
        if (!narrow)
            return p->kind == PK_PER_TENSOR ? load_per_tensor(l, p, s, 0, (int)p->shape[0] - 1) : copy_whole(l, p, s);
        if (p->kind == PK_ROW) { /* g_idx [K_pp] */
            uint64_t sz = p->shape[0];
            if (s->ti.ndim != 1 || s->ti.shape[0] != sz * m->tp)
                return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                               "%s: tensor '%s' must have %llu entries for tp=%u", s->ti.file, s->ti.name,
                               (unsigned long long)(sz * m->tp), m->tp);
            return copy_block(l, p, s, m->rank * sz, sz, 0, 1, 0, 0, 1);
        }
        uint64_t w = p->shape[1];
        if (s->ti.ndim != 2 || s->ti.shape[0] != p->shape[0] || s->ti.shape[1] != w * m->tp)
            return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                           "%s: tensor '%s' is [%llu, %llu], row-parallel '%s' needs [%llu, %llu] for tp=%u",
                           s->ti.file, s->ti.name, (unsigned long long)rows_of(&s->ti),
                           (unsigned long long)cols_of(&s->ti), p->name, (unsigned long long)p->shape[0],
                           (unsigned long long)(w * m->tp), m->tp);
        /* rows of the rank's column range: the strided read of the checkpoint */
        int rc = copy_block(l, p, s, 0, p->shape[0], m->rank * w, w, 0, 0, p->nunits);
        return rc;
    }
    if (shard != SHARD_NONE)
        return load_shard(l, p, ly, s, shard, 0, rows_of(&s->ti));
    /* fused on disk (shard id None) */
    if (p->kind == PK_PER_TENSOR)
        return load_per_tensor(l, p, s, 0, (int)p->shape[0] - 1); /* every slot: PR #39765 */
    if (p->kind == PK_BASE || p->kind == PK_ROW)
        return copy_whole(l, p, s);
    uint64_t D = m->shape.head_dim, sizes[3];
    if (ly->kind == LK_QKV)
        sizes[0] = m->shape.heads * D, sizes[1] = m->shape.kv_heads * D, sizes[2] = m->shape.kv_heads * D;
    else
        for (int i = 0; i < ly->L; i++)
            sizes[i] = ly->full[i];
    uint64_t base = 0, total = 0;
    for (int i = 0; i < ly->L; i++) {
        if (p->kind == PK_BLOCK)
            sizes[i] = (sizes[i] + p->block_n - 1) / p->block_n;
        if (p->kind == PK_PACKED_ZP || p->kind == PK_PACKED_ZP_COL)
            sizes[i] /= p->pack;
        total += sizes[i];
    }
    if (total != rows_of(&s->ti))
        return finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", s->ti.file, s->ti.name,
                       "%s: fused tensor '%s' has %llu rows, '%s' expects %llu", s->ti.file, s->ti.name,
                       (unsigned long long)rows_of(&s->ti), p->name, (unsigned long long)total);
    for (int i = 0; i < ly->L; i++) {
        int rc = load_shard(l, p, ly, s, i, base, sizes[i]);
        if (rc)
            return rc;
        base += sizes[i];
    }
    return QTL_OK;
}

static struct lparam *add_kv_scale(qtl_load_t *l, const char *name)
{
    struct lparam *p = qtl__model_grow(&l->m);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%.191s", name);
    p->kind = PK_BASE;
    p->dtype = QTL_DTYPE_F32;
    p->layer = -1;
    p->is_scale = 1;
    p->nbytes = 4;
    p->nunits = 1;
    p->data = calloc(1, 4);
    p->written = calloc(1, sizeof *p->written);
    return p->data && p->written ? p : NULL; /* freed with the model */
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const struct src *)a)->ti.name, ((const struct src *)b)->ti.name);
}

static struct lparam *find_param(qtl_load_t *l, const char *name)
{
    for (size_t i = 0; i < l->m.nparams; i++)
        if (!strcmp(l->m.params[i].name, name))
            return &l->m.params[i];
    return NULL;
}

/* Unwritten units, double writes, and scale values. */
static void describe_units(const struct lparam *p, int want_zero, char *buf, size_t cap)
{
    size_t o = 0;
    int runs = 0;
    for (uint64_t u = 0; u < p->nunits && o < cap;) {
        if ((p->written[u] == 0) != want_zero) {
            u++;
            continue;
        }
        uint64_t e = u;
        while (e < p->nunits && (p->written[e] == 0) == want_zero)
            e++;
        if (runs++ < 3)
            o += (size_t)snprintf(buf + o, cap - o, "%s%s %llu..%llu", runs > 1 ? "," : "",
                                  p->kind == PK_PER_TENSOR ? "slots" : "rows", (unsigned long long)u,
                                  (unsigned long long)(e - 1));
        u = e;
    }
    if (runs > 3 && o < cap)
        snprintf(buf + o, cap - o, " and %d more range(s)", runs - 3);
}

static void check_values(qtl_load_t *l, struct lparam *p)
{
    if (!p->data)
        return;
    uint64_t n = p->ndim == 2 ? p->shape[0] * p->shape[1] : p->shape[0], per = pcols(p);
    uint64_t nan = 0, inf = 0, nonpos = 0;
    for (uint64_t k = 0; k < n; k++) {
        if (!p->written[p->nunits == 1 ? 0 : k / per])
            continue;
        float v;
        if (p->dtype == QTL_DTYPE_F8_E4M3) {
            uint8_t b = p->data[k];
            v = qtl_e4m3_to_f32(b);
            if ((b & 0x80) && (b & 0x7F) && !isnan(v))
                nonpos++;
            else if (isnan(v))
                nan++;
            continue;
        }
        if (!is_float(p->dtype) || qtl_to_f32(p->dtype, p->data + k * qtl_dtype_bits(p->dtype) / 8, 1, &v))
            return;
        if (isnan(v))
            nan++;
        else if (isinf(v))
            inf++;
        else if (v < 0.0f || (v == 0.0f && !p->allow_zero))
            nonpos++;
    }
    if (nan)
        finding(l, QTL_ERR_INVALID_ARGUMENT, "scale.nan", NULL, p->first_src,
                "parameter '%s' (from '%s'): %llu NaN scale value(s)", p->name, p->first_src, (unsigned long long)nan);
    if (inf)
        finding(l, QTL_ERR_INVALID_ARGUMENT, "scale.inf", NULL, p->first_src,
                "parameter '%s' (from '%s'): %llu infinite scale value(s)", p->name, p->first_src,
                (unsigned long long)inf);
    if (nonpos)
        finding(l, QTL_ERR_INVALID_ARGUMENT, "scale.nonpositive", NULL, p->first_src,
                "parameter '%s' (from '%s'): %llu zero or negative scale value(s)", p->name, p->first_src,
                (unsigned long long)nonpos);
}

static void final_checks(qtl_load_t *l)
{
    for (size_t i = 0; i < l->m.nparams; i++) {
        struct lparam *p = &l->m.params[i];
        int whole = p->kind == PK_BASE || p->kind == PK_ROW || p->kind == PK_REPLICATED;
        char units[256] = "";
        uint64_t missing = 0, twice = 0;
        for (uint64_t u = 0; u < p->nunits; u++) {
            missing += p->written[u] == 0;
            twice += !whole && p->written[u] > 1;
        }
        if (missing && p->blocked) {
            describe_units(p, 1, units, sizeof units);
            finding_sev(l, QTL_SEV_INFO, QTL_OK, "consequence", NULL, NULL,
                        "parameter '%s': %s unwritten because a tensor meant for it could not be read or placed (see that finding)",
                        p->name, units);
        } else if (missing) {
            describe_units(p, 1, units, sizeof units);
            finding(l, QTL_ERR_INVALID_ARGUMENT, p->is_scale ? "scale.unwritten" : "param.unwritten", NULL, NULL,
                    "parameter '%s': %s never written by any checkpoint tensor%s", p->name, units,
                    p->fill_f32_min ? " (vLLM leaves F32_MIN there)" : p->kind == PK_PER_TENSOR
                                                                          ? " (vLLM leaves uninitialized memory there)"
                                                                          : "");
        }
        if (twice)
            finding(l, QTL_ERR_INVALID_ARGUMENT, "param.double-write", NULL, p->first_src,
                    "parameter '%s': %llu unit(s) written more than once (first from '%s')", p->name,
                    (unsigned long long)twice, p->first_src);
        /* weight_shape: every part of a fused layer records its own [rows, K] and vLLM's
         * kernels never read it, so differing parts are the normal case, not a finding */
        if (whole && p->differs && !qtl__ends_with(p->name, ".weight_shape"))
            finding(l, QTL_OK, "param.overwrite-differs", NULL, p->first_src,
                    "parameter '%s' is written whole by several tensors with different values; vLLM keeps the "
                    "last one in its load order",
                    p->name);
        if (p->is_scale && !missing)
            check_values(l, p);
    }
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* The end of every run: whole-load checks, the time taken, the first error's code. */
static int finish_run(qtl_load_t *l, const struct timespec *t0)
{
    final_checks(l);
    l->seconds = seconds_since(t0);
    for (size_t i = 0; i < l->nf; i++)
        if (l->f[i].sev == QTL_SEV_ERROR)
            return l->f[i].code ? l->f[i].code : QTL_ERR_INVALID_ARGUMENT;
    return QTL_OK;
}

int qtl_load_run(qtl_load_t *l)
{
    if (l->ran)
        return l->err.code;
    l->ran = 1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (l->pre) {
        /* every parameter from the tensor of the same name, whole; nothing else */
        for (size_t i = 0; i < qtl_st_tensor_count(l->pre); i++) {
            struct qtl_tensor_info ti;
            qtl_st_tensor_at(l->pre, i, &ti);
            struct lparam *p = find_param(l, ti.name);
            if (!p) {
                finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.unmapped", ti.file, ti.name,
                        "%s: tensor '%s' maps to no parameter of the model", ti.file, ti.name);
                continue;
            }
            uint64_t pn = p->ndim == 2 ? p->shape[0] * p->shape[1] : p->ndim ? p->shape[0] : 1;
            if (ti.dtype != p->dtype || ti.numel != pn || ti.ndim != p->ndim) {
                finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.shape", ti.file, ti.name,
                        "%s: tensor '%s' does not match parameter '%s' (%s, %u dims)", ti.file, ti.name, p->name,
                        qtl_dtype_name(p->dtype), p->ndim);
                continue;
            }
            if (qtl_st_read_tensor(l->pre, i, p->data, (size_t)p->nbytes) != QTL_OK) {
                finding(l, QTL_ERR_IO, "tensor.read", ti.file, ti.name, "%s", qtl_st_errmsg(l->pre));
                continue;
            }
            l->bytes_read += p->nbytes;
            for (uint64_t u = 0; u < p->nunits; u++)
                p->written[u]++;
            snprintf(p->first_src, sizeof p->first_src, "%s", ti.name);
        }
        l->processed = l->pre_processed; /* never post-processed twice */
        return finish_run(l, &t0);
    }
    int rc = qtl_ckpt_check(l->ck);
    for (size_t i = 0; i < qtl_ckpt_diag_count(l->ck); i++) {
        struct qtl_diag d;
        qtl_ckpt_diag_at(l->ck, i, &d);
        finding(l, d.code, d.id, d.file, d.tensor, "%s", d.message);
    }
    if (rc == QTL_ERR_NOMEM)
        return qtl__fail(&l->err, rc, "out of memory");
    /* vLLM's order: shard files sorted, names sorted within a file (§11 item 1) */
    size_t n = qtl_ckpt_tensor_count(l->ck);
    struct src *srcs = calloc(n ? n : 1, sizeof *srcs);
    size_t *shard_of = calloc(n ? n : 1, sizeof *shard_of);
    if (!srcs || !shard_of) {
        free(srcs);
        free(shard_of);
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    }
    size_t m = 0;
    for (size_t sh = 0; sh < qtl_ckpt_shard_count(l->ck); sh++) {
        size_t first = m;
        for (size_t i = 0; i < n; i++) {
            size_t s;
            if (qtl_ckpt_tensor_shard(l->ck, i, &s) || s != sh)
                continue;
            if (qtl_ckpt_tensor_at(l->ck, i, &srcs[m].ti)) {
                /* its shard failed: what it would have written is a consequence, not a root */
                char pname[256], tname[256];
                int shard;
                if (qtl_ckpt_tensor_name(l->ck, i, tname, sizeof tname) == QTL_OK &&
                    qtl__model_map(&l->m, tname, pname, sizeof pname, &shard) != MAP_SKIP) {
                    struct lparam *bp = find_param(l, pname);
                    if (bp)
                        bp->blocked = 1;
                }
                continue;
            }
            srcs[m].index = i;
            m++;
        }
        qsort(srcs + first, m - first, sizeof *srcs, cmp_names);
    }
    for (size_t i = 0; i < m && l->err.code != QTL_ERR_NOMEM; i++) {
        char pname[256];
        int shard, kind = qtl__model_map(&l->m, srcs[i].ti.name, pname, sizeof pname, &shard);
        if (kind == MAP_SKIP)
            continue;
        struct lparam *p = find_param(l, pname);
        if (!p && kind == MAP_KV_SCALE) /* the attention layer's scale, created when the checkpoint has one */
            p = add_kv_scale(l, pname);
        if (!p) {
            finding(l, QTL_ERR_INVALID_ARGUMENT, "tensor.unmapped", srcs[i].ti.file, srcs[i].ti.name,
                    "%s: tensor '%s' maps to no parameter of the model (looked for '%s')", srcs[i].ti.file,
                    srcs[i].ti.name, pname);
            continue;
        }
        size_t before = l->nf;
        load_tensor(l, p, &srcs[i], shard);
        if (l->nf > before) /* its copy failed: what stays unwritten is a consequence of that finding */
            p->blocked = 1;
        if (l->progress)
            l->progress(l->progress_ud, i + 1, m);
    }
    free(srcs);
    free(shard_of);
    return finish_run(l, &t0);
}

int qtl_load_process(qtl_load_t *l)
{
    if (!l->ran)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_process before qtl_load_run");
    if (l->processed)
        return QTL_OK;
    for (size_t i = 0; i < l->nf; i++)
        if (l->f[i].sev == QTL_SEV_ERROR)
            return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT,
                             "not post-processing a load with error-level findings (first: %s)", l->f[i].message);
    int differ;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = qtl__model_process(&l->m, &differ);
    if (rc)
        return qtl__fail(&l->err, rc, "post-processing failed: %s", qtl_strerror(rc));
    l->process_seconds = seconds_since(&t0);
    l->processed = 1;
    if (differ)
        finding(l, QTL_OK, "scale.slots-differ", NULL, NULL,
                "a fused layer's per-slot global scales differ; vLLM takes the max and warns that accuracy may drop");
    return QTL_OK;
}

int qtl_load_write(qtl_load_t *l, const char *path, const char *source)
{
    qtl_st_writer_t *w = NULL;
    char num[32];
    int rc = qtl_st_writer_new(NULL, &w);
    if (rc)
        return qtl__fail(&l->err, rc, "out of memory");
    snprintf(num, sizeof num, "%u", l->m.tp);
    rc = qtl_st_writer_set_metadata(w, "qtl.tp", num);
    snprintf(num, sizeof num, "%u", l->m.rank);
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.rank", num);
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.stage", l->processed ? "processed" : "loaded");
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.source", source ? source : "");
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "format", "pt");
    for (size_t i = 0; !rc && i < l->m.nparams; i++) {
        const struct lparam *p = &l->m.params[i];
        rc = qtl_st_writer_add(w, p->name, p->dtype, p->ndim, p->shape, p->data, p->nbytes);
    }
    int mk = rc ? 0 : qtl__mkdirs(path, 1);
    if (mk)
        rc = qtl__fail(&l->err, QTL_ERR_OPEN, "%s: cannot create its directory: %s", path, strerror(mk));
    else if ((rc = rc ? rc : qtl_st_writer_write_file(w, path)))
        qtl__fail(&l->err, rc, "%s", qtl_st_writer_errmsg(w));
    qtl_st_writer_free(w);
    return rc;
}

/* ---- accessors ---- */

const char *qtl_load_errmsg(const qtl_load_t *l) { return l ? l->err.msg : "out of memory"; }
const char *qtl_load_fail_id(const qtl_load_t *l) { return l && l->m.fail_id ? l->m.fail_id : NULL; }
size_t qtl_load_param_count(const qtl_load_t *l) { return l->m.nparams; }
size_t qtl_load_finding_count(const qtl_load_t *l) { return l->nf; }
uint64_t qtl_load_bytes_read(const qtl_load_t *l) { return l->bytes_read; }
double qtl_load_seconds(const qtl_load_t *l) { return l->seconds; }
double qtl_load_process_seconds(const qtl_load_t *l) { return l->process_seconds; }

static const char *const kind_names[] = {"ModelWeightParameter", "PerTensorScaleParameter", "ChannelQuantScaleParameter",
                                         "GroupQuantScaleParameter", "BlockQuantScaleParameter", "PackedvLLMParameter",
                                         "PackedvLLMParameter", "PackedColumnParameter", "RowvLLMParameter",
                                         "BasevLLMParameter", "VocabParallelEmbedding", "replicated"};

int qtl_load_param_at(const qtl_load_t *l, size_t i, struct qtl_param_info *pi)
{
    if (i >= l->m.nparams)
        return QTL_ERR_INVALID_ARGUMENT;
    const struct lparam *p = &l->m.params[i];
    pi->name = p->name;
    pi->kind = kind_names[p->kind];
    pi->dtype = p->dtype;
    pi->ndim = p->ndim;
    pi->shape = p->shape;
    pi->data = p->data;
    pi->nbytes = p->nbytes;
    return QTL_OK;
}

int qtl_load_finding_at(const qtl_load_t *l, size_t i, struct qtl_diag *d)
{
    if (i >= l->nf)
        return QTL_ERR_INVALID_ARGUMENT;
    const struct finding *f = &l->f[i];
    *d = (struct qtl_diag){f->sev, f->code, f->id, f->file, f->tensor, f->message};
    return QTL_OK;
}
