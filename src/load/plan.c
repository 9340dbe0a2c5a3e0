/* The load plan: every copy vLLM's weight_loader calls make for one rank,
 * as ops {file, offset, rows, row bytes, pitch} -> {parameter, offset}, built
 * from the shard headers, config and parallel layout without reading a byte
 * of tensor data. Shapes, dtypes, coverage (unwritten rows and slots, double
 * writes, unmapped tensors) and vLLM's last-write-wins order are resolved
 * here, before the executor moves anything (vllm-loading.md §2-§4, §9, §11,
 * §12; architecture.md step 2). */
#include "load_internal.h"
#include "arch.h"
#include "format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct src {
    size_t index; /* checkpoint tensor */
    uint32_t file;
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
/* A parameter is rows of its last dimension: [L] is L one-element rows, [N, K]
 * N rows of K, [E, N, K] E * N rows of K. Coverage counts rows. */
static uint64_t pcols(const struct lparam *p)
{
    if (p->kind == PK_MOE_SLOT || p->kind == PK_MOE_SINGLE) /* one unit per slot */
        return 1;
    return p->ndim >= 2 ? p->shape[p->ndim - 1] : 1;
}

uint64_t qtl__param_numel(const struct lparam *p)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < p->ndim; d++)
        n *= p->shape[d];
    return n;
}

/* Parameters vLLM overwrites whole on every write (BasevLLMParameter, g_idx in
 * a column layer, norms): the last write wins and a second one is no error. */
static int overwrite_whole(const struct lparam *p)
{
    return p->kind == PK_BASE || p->kind == PK_ROW || p->kind == PK_REPLICATED;
}

struct lparam *qtl__find_param(qtl_load_t *l, const char *name)
{
    for (size_t i = 0; i < l->m.nparams; i++)
        if (!strcmp(l->m.params[i].name, name))
            return &l->m.params[i];
    return NULL;
}

/* ---- parameters: coverage units ---- */

/* Its bytes and coverage units. The shape comes from config.json, so its size is checked: a
 * config whose sizes overflow 64 bits is refused before anything is allocated. */
static int init_param(qtl_load_t *l, struct lparam *p)
{
    uint64_t numel;
    if (qtl__shape_numel(p->shape, p->ndim, &numel) || qtl__dtype_nbytes(p->dtype, numel, &p->nbytes))
        return qtl__fail(&l->err, QTL_ERR_VALIDATION_OVERFLOW,
                         "parameter '%s': its shape from config.json overflows 64 bits of %s elements", p->name,
                         qtl_dtype_name(p->dtype));
    p->nunits = overwrite_whole(p) || p->ndim == 0 ? 1 : qtl__param_numel(p) / pcols(p);
    p->written = qtl__calloc(&l->al, p->nunits ? (size_t)p->nunits : 1, sizeof *p->written);
    p->last_op = -1;
    p->pad_from = p->nbytes;
    if (!p->written)
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory for parameter '%s'", p->name);
    return QTL_OK;
}

static int init_params(qtl_load_t *l)
{
    for (size_t i = 0; i < l->m.nparams; i++) {
        int rc = init_param(l, &l->m.params[i]);
        if (rc)
            return rc;
    }
    return QTL_OK;
}

/* ---- ops ---- */

static uint64_t op_dst_bytes(const qtl_load_t *l, const struct pop *o)
{
    const struct lparam *p = &l->m.params[o->param];
    return o->rows * (o->row_bytes / (qtl_dtype_bits(o->src_dtype) / 8)) * (qtl_dtype_bits(p->dtype) / 8);
}

/* A superseded op keeps its bytes in the shadow area, for the comparison only. */
static void to_shadow(qtl_load_t *l, struct pop *o)
{
    uint64_t n = op_dst_bytes(l, o);
    o->superseded = 1;
    o->cmp_off = o->dst_off;
    o->dst_off = l->shadow_bytes;
    o->dst_pitch = o->rows > 1 ? n / o->rows : o->dst_pitch;
    l->shadow_bytes += (n + 63) & ~(uint64_t)63;
}

static int push_op(qtl_load_t *l, struct lparam *p, const struct src *s, uint64_t src_off, uint64_t rows,
                   uint64_t row_bytes, uint64_t src_pitch, uint64_t dst_off, uint64_t dst_pitch, int32_t slot,
                   int shadow)
{
    if (qtl__grow(&l->al, (void **)&l->ops, &l->ops_cap, l->nops + 1, sizeof *l->ops))
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    struct pop *o = &l->ops[l->nops];
    *o = (struct pop){(uint32_t)s->index, s->file, (uint32_t)(p - l->m.params), QTL_NO_EXPERT, slot, s->ti.dtype,
                      src_off, rows, row_bytes, src_pitch, dst_off, dst_pitch, 0, 0};
    uint64_t total = op_dst_bytes(l, o);
    if (rows > 1 && row_bytes == src_pitch && dst_pitch == total / rows) { /* contiguous: one run */
        o->row_bytes *= rows;
        o->src_pitch = o->row_bytes;
        o->dst_pitch = total;
        o->rows = 1;
    }
    if (overwrite_whole(p)) { /* vLLM's last write wins: the earlier op only feeds the comparison */
        if (p->last_op >= 0)
            to_shadow(l, &l->ops[p->last_op]);
        p->last_op = (long)l->nops;
    } else if (shadow) { /* a double write (an error): the first write keeps the bytes */
        to_shadow(l, o);
    }
    l->nops++;
    return QTL_OK;
}

/* Rows [r0, r0+nr) x cols [c0, c0+nc) of the source into parameter rows from
 * dst_row (the parameter's full width). Marks units [mark0, mark0+nmark). */
static int emit(qtl_load_t *l, struct lparam *p, const struct src *s, uint64_t r0, uint64_t nr, uint64_t c0,
                uint64_t nc, uint64_t dst_row, uint64_t mark0, uint64_t nmark, int32_t slot)
{
    if (nc != pcols(p))
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' gives %llu columns, parameter '%s' has %llu", s->ti.file, s->ti.name,
                            (unsigned long long)nc, p->name, (unsigned long long)pcols(p));
    if (!qtl__dtype_convertible(s->ti.dtype, p->dtype))
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_DTYPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' is %s, parameter '%s' is %s", s->ti.file, s->ti.name,
                            qtl_dtype_name(s->ti.dtype), p->name, qtl_dtype_name(p->dtype));
    int twice = 0;
    for (uint64_t u = mark0; u < mark0 + nmark && u < p->nunits; u++)
        twice |= p->written[u] > 0;
    if (nr && nc) {
        struct qtl_err e = {0};
        uint64_t rb, co, cb, prow = pcols(p) * qtl_dtype_bits(p->dtype) / 8;
        if (qtl__st_block_ranges(&s->ti, r0, nr, c0, nc, &e, &rb, &co, &cb))
            return qtl__finding(l, e.code, QTL_FINDING_TENSOR_READ, s->ti.file, s->ti.name, "%s", e.msg);
        int rc = push_op(l, p, s, s->ti.file_offset + r0 * rb + co, nr, cb, rb, dst_row * prow, prow, slot, twice);
        if (rc)
            return rc;
    }
    for (uint64_t u = mark0; u < mark0 + nmark && u < p->nunits; u++)
        p->written[u]++;
    if (!p->first_src[0])
        snprintf(p->first_src, sizeof p->first_src, "%s", s->ti.name);
    return QTL_OK;
}

/* Whole copy (Base, Row-in-column-layer, Channel/PerTensor in row layers,
 * norms): shapes must agree; 0-D and [1] are the same. Last write wins. */
static int emit_whole(qtl_load_t *l, struct lparam *p, const struct src *s)
{
    uint64_t pn = qtl__param_numel(p);
    int same = s->ti.numel == pn && (s->ti.ndim == p->ndim || (pn == 1 && s->ti.ndim <= 1 && p->ndim <= 1));
    for (uint32_t d = 0; same && s->ti.ndim == p->ndim && d < p->ndim; d++) /* 0-D and [1] alike */
        same = s->ti.shape[d] == p->shape[d];
    if (!same)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' has %llu elements in %u dimension(s), parameter '%s' needs %llu",
                            s->ti.file, s->ti.name, (unsigned long long)s->ti.numel, s->ti.ndim, p->name,
                            (unsigned long long)pn);
    return emit(l, p, s, 0, rows_of(&s->ti) * cols_of(&s->ti) / pcols(p), 0, pcols(p), 0, 0, p->nunits, -1);
}

/* A per-tensor scale written into slots first..last (vLLM: W is 0-D, or [1] and W[0] is used). */
static int emit_per_tensor(qtl_load_t *l, struct lparam *p, const struct src *s, int first, int last)
{
    if (s->ti.ndim > 1 || (s->ti.ndim == 1 && s->ti.shape[0] != 1)) {
        if (s->ti.ndim == 1)
            return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_SCALE_VECTOR, s->ti.file, s->ti.name,
                                "%s: tensor '%s' is a [%llu] vector; a per-tensor scale must be 0-D or [1] (vLLM "
                                "asserts W.shape[0] == 1)",
                                s->ti.file, s->ti.name, (unsigned long long)s->ti.shape[0]);
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' has %u dimensions; a per-tensor scale must be 0-D or [1]", s->ti.file,
                            s->ti.name, s->ti.ndim);
    }
    for (int i = first; i <= last; i++) {
        if ((uint64_t)i >= p->shape[0])
            return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHARD, s->ti.file, s->ti.name,
                                "%s: tensor '%s': slot %d outside parameter '%s' [%llu]", s->ti.file, s->ti.name, i,
                                p->name, (unsigned long long)p->shape[0]);
        int rc = emit(l, p, s, 0, 1, 0, 1, (uint64_t)i, (uint64_t)i, 1, i);
        if (rc)
            return rc;
    }
    return QTL_OK;
}

/* Column-side load of sub-matrix i (split on disk, or a piece of a fused
 * tensor starting at source row `base` with `avail` rows). */
static int emit_shard(qtl_load_t *l, struct lparam *p, const struct llayer *ly, const struct src *s, int i,
                      uint64_t base, uint64_t avail)
{
    const struct lmodel *m = &l->m;
    if (p->kind == PK_PER_TENSOR)
        return emit_per_tensor(l, p, s, i, i);
    if (p->kind == PK_BASE || p->kind == PK_ROW)
        return emit_whole(l, p, s);
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
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s': %llu rows for sub-matrix %d of '%s', tp=%u needs %llu x %llu",
                            s->ti.file, s->ti.name, (unsigned long long)avail, i, p->name, m->tp,
                            (unsigned long long)blocks, (unsigned long long)size);
    return emit(l, p, s, base + b * size, size, 0, cols_of(&s->ti), off, off, size, -1);
}

static int emit_vocab(qtl_load_t *l, struct lparam *p, const struct src *s)
{
    const struct lmodel *m = &l->m;
    uint64_t V = m->shape.vocab, start = (uint64_t)m->rank * m->vocab_pp;
    uint64_t n = start >= V ? 0 : (V - start < m->vocab_pp ? V - start : m->vocab_pp);
    if (s->ti.ndim != 2 || s->ti.shape[0] != V || s->ti.shape[1] != p->shape[1])
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' must be [%llu, %llu] (vocab_size, hidden_size)", s->ti.file, s->ti.name,
                            (unsigned long long)V, (unsigned long long)p->shape[1]);
    /* padding rows are zero-filled, which counts as written (vLLM fill_(0)) */
    p->pad_from = n * p->shape[1] * qtl_dtype_bits(p->dtype) / 8;
    return emit(l, p, s, start, n, 0, p->shape[1], 0, 0, p->nunits, -1);
}

/* Row-parallel layers: the rank's column range of every row (the strided read). */
static int emit_row_parallel(qtl_load_t *l, struct lparam *p, const struct src *s, int shard)
{
    const struct lmodel *m = &l->m;
    if (shard != SHARD_NONE)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHARD, s->ti.file, s->ti.name,
                            "%s: tensor '%s' has a shard id but '%s' is row-parallel", s->ti.file, s->ti.name,
                            p->name);
    int narrow = (p->kind == PK_MODEL_WEIGHT && p->ndim == 2) || p->kind == PK_GROUP || p->kind == PK_BLOCK ||
                 p->kind == PK_PACKED_IN || p->kind == PK_PACKED_ZP || p->kind == PK_ROW;
    if (!narrow)
        return p->kind == PK_PER_TENSOR ? emit_per_tensor(l, p, s, 0, (int)p->shape[0] - 1) : emit_whole(l, p, s);
    if (p->kind == PK_ROW) { /* g_idx [K_pp] */
        uint64_t sz = p->shape[0];
        if (s->ti.ndim != 1 || s->ti.shape[0] != sz * m->tp)
            return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                                "%s: tensor '%s' must have %llu entries for tp=%u", s->ti.file, s->ti.name,
                                (unsigned long long)(sz * m->tp), m->tp);
        return emit(l, p, s, m->rank * sz, sz, 0, 1, 0, 0, 1, -1);
    }
    uint64_t w = p->shape[1];
    if (s->ti.ndim != 2 || s->ti.shape[0] != p->shape[0] || s->ti.shape[1] != w * m->tp)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' is [%llu, %llu], row-parallel '%s' needs [%llu, %llu] for tp=%u",
                            s->ti.file, s->ti.name, (unsigned long long)rows_of(&s->ti),
                            (unsigned long long)cols_of(&s->ti), p->name, (unsigned long long)p->shape[0],
                            (unsigned long long)(w * m->tp), m->tp);
    return emit(l, p, s, 0, p->shape[0], m->rank * w, w, 0, 0, p->nunits, -1);
}

/* Fused on disk (shard id None): each sub-matrix's rows of the one tensor;
 * per-tensor scales fill every slot (vLLM PR #39765). */
static int emit_fused(qtl_load_t *l, struct lparam *p, const struct llayer *ly, const struct src *s)
{
    const struct lmodel *m = &l->m;
    if (p->kind == PK_PER_TENSOR)
        return emit_per_tensor(l, p, s, 0, (int)p->shape[0] - 1);
    if (p->kind == PK_BASE || p->kind == PK_ROW)
        return emit_whole(l, p, s);
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
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: fused tensor '%s' has %llu rows, '%s' expects %llu", s->ti.file, s->ti.name,
                            (unsigned long long)rows_of(&s->ti), p->name, (unsigned long long)total);
    for (int i = 0; i < ly->L; i++) {
        int rc = emit_shard(l, p, ly, s, i, base, sizes[i]);
        if (rc)
            return rc;
        base += sizes[i];
    }
    return QTL_OK;
}

/* Bytes of a tensor straight into units [dst_row, +nmark) of p: `rows` rows of `row_bytes`,
 * `pitch` apart from absolute file offset src_off (fused-on-disk experts). */
static int emit_raw(qtl_load_t *l, struct lparam *p, const struct src *s, uint64_t src_off, uint64_t rows,
                    uint64_t row_bytes, uint64_t pitch, uint64_t dst_row, uint64_t nmark)
{
    uint64_t prow = pcols(p) * qtl_dtype_bits(p->dtype) / 8;
    int twice = 0;
    for (uint64_t u = dst_row; u < dst_row + nmark && u < p->nunits; u++)
        twice |= p->written[u] > 0;
    int rc = push_op(l, p, s, src_off, rows, row_bytes, pitch, dst_row * prow, row_bytes, -1, twice);
    for (uint64_t u = dst_row; !rc && u < dst_row + nmark && u < p->nunits; u++)
        p->written[u]++;
    if (!rc && !p->first_src[0])
        snprintf(p->first_src, sizeof p->first_src, "%s", s->ti.name);
    return rc;
}

/* Experts fused on disk, one 3-D tensor per parameter (routed_experts.py:998-1048): w13 [E, 2 x
 * rows, cols] split with chunk(2, dim=1) into w1 (gate) and w3 (up), w2 [E, rows, cols]; unbound into
 * experts, each half narrowed by the MoE tp (w2: its columns). Weights and group/block scales alike. */
static int emit_moe_fused(qtl_load_t *l, struct lparam *p, const struct src *s, int shard)
{
    const struct lmodel *m = &l->m;
    uint64_t E = m->shape.experts, es = qtl_dtype_bits(p->dtype) / 8;
    int up = shard == 3;
    if (p->ndim != 3 || (p->kind != PK_MODEL_WEIGHT && p->kind != PK_BLOCK && p->kind != PK_GROUP) ||
        p->dtype != s->ti.dtype || qtl_dtype_bits(p->dtype) % 8)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: fused experts '%s' (%s, %u dims) cannot fill '%s' (%s): only 3-D weights and "
                            "group/block scales of the parameter's dtype are fused",
                            s->ti.file, s->ti.name, qtl_dtype_name(s->ti.dtype), s->ti.ndim, p->name,
                            qtl_dtype_name(p->dtype));
    uint64_t R = p->shape[1], C = p->shape[2], hp = R / 2;
    uint64_t want1 = up ? 2 * hp * m->moe_tp : R, want2 = up ? C : C * m->moe_tp;
    if (s->ti.ndim != 3 || s->ti.shape[0] != E || s->ti.shape[1] != want1 || s->ti.shape[2] != want2)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: fused experts '%s' must be [%llu, %llu, %llu] for '%s'", s->ti.file, s->ti.name,
                            (unsigned long long)E, (unsigned long long)want1, (unsigned long long)want2, p->name);
    for (uint64_t e = 0; e < m->e_local; e++) {
        uint64_t g = m->e_start + e, base = s->ti.file_offset + g * want1 * want2 * es;
        int rc;
        if (up) {
            uint64_t half = hp * m->moe_tp; /* rows of w1 (and of w3) on disk */
            rc = emit_raw(l, p, s, base + m->moe_rank * hp * C * es, 1, hp * C * es, hp * C * es, e * R, hp);
            if (!rc)
                rc = emit_raw(l, p, s, base + (half + m->moe_rank * hp) * C * es, 1, hp * C * es, hp * C * es,
                              e * R + hp, hp);
        } else {
            rc = emit_raw(l, p, s, base + m->moe_rank * C * es, R, C * es, want2 * es, e * R, R);
        }
        if (rc)
            return rc;
    }
    return QTL_OK;
}

/* One per-expert tensor into its routed-experts parameter (RoutedExperts.weight_loader):
 * w1/w3 rows narrowed by the MoE tp into rows [0, S) / [S, 2S) of the expert's w13 slab, w2
 * columns narrowed; per-tensor slots [e][0|1] and [e]; input scales one slot per expert, the
 * last write in load order kept. Another rank's expert (EP) is not loaded. */
static int emit_moe(qtl_load_t *l, struct lparam *p, const struct src *s, int shard, uint32_t g)
{
    const struct lmodel *m = &l->m;
    if (g == QTL_NO_EXPERT)
        return emit_moe_fused(l, p, s, shard);
    if (g >= m->shape.experts)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_UNMAPPED, s->ti.file, s->ti.name,
                            "%s: tensor '%s' is expert %u, the config has %u experts (0..%u)", s->ti.file, s->ti.name,
                            g, m->shape.experts, m->shape.experts - 1);
    if (g < m->e_start || g >= m->e_start + m->e_local)
        return QTL_OK;
    uint64_t e = g - m->e_start;
    if (p->kind == PK_MOE_SLOT || p->kind == PK_MOE_SINGLE) {
        if (s->ti.numel != 1)
            return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_SCALE_VECTOR, s->ti.file, s->ti.name,
                                "%s: tensor '%s' has %llu elements; a per-expert per-tensor scale must be 0-D or [1] "
                                "(vLLM reshapes it to ())",
                                s->ti.file, s->ti.name, (unsigned long long)s->ti.numel);
        uint64_t u = p->kind == PK_MOE_SLOT && p->moe_w13 ? e * 2 + (shard == 1) : e;
        if (p->kind == PK_MOE_SINGLE) { /* param[e] = loaded: the earlier write only feeds the comparison */
            if (!p->unit_op) {
                p->unit_op = qtl__malloc(&l->al, (size_t)p->nunits * sizeof *p->unit_op);
                if (!p->unit_op)
                    return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
                for (uint64_t k = 0; k < p->nunits; k++)
                    p->unit_op[k] = -1;
            }
            if (p->unit_op[u] >= 0) {
                to_shadow(l, &l->ops[p->unit_op[u]]);
                p->written[u]--;
            }
        }
        int rc = emit(l, p, s, 0, 1, 0, 1, u, u, 1, p->kind == PK_MOE_SLOT ? shard == 1 : -1);
        if (!rc && p->kind == PK_MOE_SINGLE)
            p->unit_op[u] = (long)l->nops - 1;
        return rc;
    }
    uint64_t R = p->shape[1], C = p->shape[2], sr = rows_of(&s->ti), sc = s->ti.ndim == 2 ? s->ti.shape[1] : 0;
    if (p->moe_w13) {
        uint64_t half = R / 2, n = sr / m->moe_tp;
        if (s->ti.ndim != 2 || sc != C || sr % m->moe_tp || n != half)
            return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                                "%s: tensor '%s' is [%llu, %llu]; '%s' takes [%llu x %u, %llu] per expert and projection",
                                s->ti.file, s->ti.name, (unsigned long long)sr, (unsigned long long)sc, p->name,
                                (unsigned long long)half, m->moe_tp, (unsigned long long)C);
        uint64_t row = e * R + (shard == 1 ? half : 0);
        return emit(l, p, s, m->moe_rank * n, n, 0, C, row, row, half, -1);
    }
    uint64_t n = sc / m->moe_tp;
    if (s->ti.ndim != 2 || sr != R || sc % m->moe_tp || n != C)
        return qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                            "%s: tensor '%s' is [%llu, %llu]; '%s' takes [%llu, %llu x %u] per expert", s->ti.file,
                            s->ti.name, (unsigned long long)sr, (unsigned long long)sc, p->name,
                            (unsigned long long)R, (unsigned long long)C, m->moe_tp);
    return emit(l, p, s, 0, R, m->moe_rank * n, n, e * R, e * R, R, -1);
}

static int emit_tensor(qtl_load_t *l, struct lparam *p, const struct src *s, int shard, uint32_t expert)
{
    if (p->moe)
        return emit_moe(l, p, s, shard, expert);
    if (p->kind == PK_VOCAB)
        return emit_vocab(l, p, s);
    if (p->kind == PK_REPLICATED || p->layer < 0)
        return emit_whole(l, p, s);
    const struct llayer *ly = &l->m.layers[p->layer];
    if (ly->kind == LK_ROW)
        return emit_row_parallel(l, p, s, shard);
    if (shard != SHARD_NONE)
        return emit_shard(l, p, ly, s, shard, 0, rows_of(&s->ti));
    return emit_fused(l, p, ly, s);
}

/* The attention layer's KV-cache scale, created when the checkpoint has one. */
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
    return init_param(l, p) ? NULL : p;
}

/* ---- coverage, on the plan ---- */

/* The checkpoint module whose slot or row range holds unit u of p: slot i of a
 * per-tensor scale is part i; a row falls in the partition whose per-rank rows
 * (scaled to p's units) contain it; a parameter written whole, or one of a layer
 * fused on disk, has one module. */
static size_t unit_module(const struct llayer *ly, const struct lparam *p, uint64_t u)
{
    if (!ly || ly->nmodules <= 1 || p->nunits <= 1)
        return 0;
    if (p->kind == PK_PER_TENSOR)
        return u < ly->nmodules ? (size_t)u : ly->nmodules - 1;
    uint64_t per = p->ndim >= 3 ? p->nunits / p->shape[0] : p->nunits, pos = u % per, total = 0, acc = 0;
    for (int i = 0; i < ly->L; i++)
        total += ly->part[i];
    for (int i = 0; i < ly->L && (size_t)i < ly->nmodules; i++) {
        acc += ly->part[i];
        if (pos * total < acc * per)
            return (size_t)i;
    }
    return ly->nmodules - 1;
}

/* "slots 1..1" / "rows 0..127,256..383": the units of p (of module `mod`, or all when mod is
 * SIZE_MAX) that are unwritten (want_zero) or written. */
static void describe_units(const struct llayer *ly, const struct lparam *p, size_t mod, int want_zero, char *buf,
                           size_t cap)
{
    size_t o = 0;
    int runs = 0;
    buf[0] = 0;
    for (uint64_t u = 0; u < p->nunits && o < cap;) {
        if ((p->written[u] == 0) != want_zero || (mod != SIZE_MAX && unit_module(ly, p, u) != mod)) {
            u++;
            continue;
        }
        uint64_t e = u;
        while (e < p->nunits && (p->written[e] == 0) == want_zero && (mod == SIZE_MAX || unit_module(ly, p, e) == mod))
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

/* An unwritten parameter, in the checkpoint's terms: one finding per module whose tensor is
 * absent, naming that tensor (the module's name + the parameter's suffix: the stacked names of
 * model.c map q/k/v and gate/up onto the fused layer, the suffix is kept) and the slots or rows
 * of the fused parameter it should have filled. */
/* An unwritten expert parameter in the checkpoint's terms: per expert and projection, the
 * absent on-disk tensor (at most 8 named, then a count). */
static void report_moe_unwritten(qtl_load_t *l, const struct lparam *p)
{
    const struct lmodel *m = &l->m;
    const struct moe_layer *ml = &m->moe[p->moe - 1];
    const struct qtl_arch_traits *at = qtl__arch_traits(m->shape.arch);
    const char *suffix = strstr(p->name, ".routed_experts.") + 16;
    suffix += p->moe_w13 ? 4 : 3; /* after w13_ / w2_ */
    uint64_t per = p->nunits / (m->e_local ? m->e_local : 1), named = 0, more = 0;
    for (uint64_t e = 0; e < m->e_local; e++)
        for (int half = 0; half < (p->moe_w13 && p->kind != PK_MOE_SINGLE ? 2 : 1); half++) {
            uint64_t u0 = e * per + (uint64_t)half * (per / 2), n = p->moe_w13 && p->kind != PK_MOE_SINGLE ? per / 2 : per;
            uint64_t miss = 0;
            for (uint64_t u = u0; u < u0 + n; u++)
                miss += p->written[u] == 0;
            if (!miss)
                continue;
            if (named++ >= 8) {
                more++;
                continue;
            }
            const char *proj = !p->moe_w13 ? at->ckpt_w2 : half ? at->ckpt_w3 : at->ckpt_w1;
            char tensor[320];
            snprintf(tensor, sizeof tensor, "%s.experts.%llu.%s.%s", ml->prefix, (unsigned long long)(m->e_start + e),
                     proj, suffix);
            qtl__finding(l, QTL_ERR_CHECKPOINT, p->is_scale ? QTL_FINDING_SCALE_UNWRITTEN : QTL_FINDING_PARAM_UNWRITTEN,
                         NULL, tensor,
                         "'%s' is absent: expert %llu's %s%s of parameter '%s' %s never written by any checkpoint "
                         "tensor%s",
                         tensor, (unsigned long long)(m->e_start + e),
                         p->kind == PK_MOE_SLOT || p->kind == PK_MOE_SINGLE ? "slot" : "rows",
                         p->moe_w13 ? (half ? " (w3)" : " (w1)") : " (w2)", p->name,
                         p->kind == PK_MOE_SLOT || p->kind == PK_MOE_SINGLE ? "is" : "are",
                         p->fill_ones ? " (vLLM keeps its initial 1.0 there)" : " (vLLM leaves uninitialized memory there)");
        }
    if (more)
        qtl__finding(l, QTL_ERR_CHECKPOINT, p->is_scale ? QTL_FINDING_SCALE_UNWRITTEN : QTL_FINDING_PARAM_UNWRITTEN, NULL,
                     NULL, "parameter '%s': %llu more expert projection(s) never written", p->name,
                     (unsigned long long)more);
}

static void report_unwritten(qtl_load_t *l, const struct lparam *p)
{
    if (p->moe) {
        report_moe_unwritten(l, p);
        return;
    }
    const struct llayer *ly = p->layer >= 0 ? &l->m.layers[p->layer] : NULL;
    size_t plen = ly ? strlen(ly->prefix) : 0;
    const char *suffix = ly && !strncmp(p->name, ly->prefix, plen) ? p->name + plen : NULL;
    size_t nmod = ly && suffix ? ly->nmodules : 1;
    const char *why = p->fill_f32_min ? " (vLLM leaves F32_MIN there)"
                      : p->kind == PK_PER_TENSOR ? " (vLLM leaves uninitialized memory there)"
                                                 : "";
    if (p->nunits <= 1 && nmod > 1) { /* written whole by any part: none of them is there */
        char list[600];
        size_t o = 0;
        for (size_t k = 0; k < nmod && o < sizeof list; k++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s%s'", k ? (k + 1 < nmod ? ", " : " and ") : "",
                                  ly->modules[k], suffix);
        char first[384];
        snprintf(first, sizeof first, "%s%s", ly->modules[0], suffix);
        qtl__finding(l, QTL_ERR_CHECKPOINT, p->is_scale ? QTL_FINDING_SCALE_UNWRITTEN : QTL_FINDING_PARAM_UNWRITTEN,
                     NULL, first, "%s are absent: parameter '%s' is never written by any checkpoint tensor%s", list,
                     p->name, why);
        return;
    }
    for (size_t k = 0; k < nmod; k++) {
        char units[256], tensor[384], part[176] = "";
        describe_units(ly, p, nmod > 1 ? k : SIZE_MAX, 1, units, sizeof units);
        if (!units[0])
            continue;
        if (suffix)
            snprintf(tensor, sizeof tensor, "%s%s", ly->modules[k], suffix);
        else
            snprintf(tensor, sizeof tensor, "%s", p->name);
        if (nmod > 1) {
            const char *dot = strrchr(ly->modules[k], '.');
            snprintf(part, sizeof part, " (%s)", dot ? dot + 1 : ly->modules[k]);
        }
        if (p->nunits <= 1)
            snprintf(units, sizeof units, "the value");
        qtl__finding(l, QTL_ERR_CHECKPOINT, p->is_scale ? QTL_FINDING_SCALE_UNWRITTEN : QTL_FINDING_PARAM_UNWRITTEN,
                     NULL, tensor, "'%s' is absent: %s%s of parameter '%s' %s never written by any checkpoint tensor%s",
                     tensor, units, part, p->name, p->nunits > 1 ? "are" : "is", why);
    }
}

static void coverage_checks(qtl_load_t *l)
{
    for (size_t i = 0; i < l->m.nparams; i++) {
        struct lparam *p = &l->m.params[i];
        int whole = overwrite_whole(p);
        char units[256] = "";
        uint64_t missing = 0, twice = 0;
        for (uint64_t u = 0; u < p->nunits; u++) {
            missing += p->written[u] == 0;
            twice += !whole && p->written[u] > 1;
        }
        p->missing = missing != 0;
        if (p->unused)
            continue;
        if (missing && p->blocked) {
            describe_units(NULL, p, SIZE_MAX, 1, units, sizeof units);
            qtl__finding(l, QTL_OK, QTL_FINDING_CONSEQUENCE, NULL, NULL,
                             "parameter '%s': %s unwritten because a tensor meant for it could not be read or "
                             "placed (see that finding)",
                             p->name, units);
        } else if (missing) {
            report_unwritten(l, p);
        }
        if (twice)
            qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_PARAM_DOUBLE_WRITE, NULL, p->first_src,
                         "parameter '%s': %llu unit(s) written more than once (first from '%s')", p->name,
                         (unsigned long long)twice, p->first_src);
    }
}

/* ---- values, once the executor has run ---- */

static void check_values(qtl_load_t *l, const struct lparam *p)
{
    if (!p->data)
        return;
    uint64_t n = qtl__param_numel(p), per = pcols(p);
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
        if (!qtl__dtype_is_float(p->dtype) ||
            qtl_to_f32(p->dtype, p->data + k * qtl_dtype_bits(p->dtype) / 8, 1, &v))
            return;
        if (isnan(v))
            nan++;
        else if (isinf(v))
            inf++;
        else if (v < 0.0f || (v == 0.0f && !p->allow_zero))
            nonpos++;
    }
    if (nan)
        qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_SCALE_NAN, NULL, p->first_src,
                     "parameter '%s' (from '%s'): %llu NaN scale value(s)", p->name, p->first_src,
                     (unsigned long long)nan);
    if (inf)
        qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_SCALE_INF, NULL, p->first_src,
                     "parameter '%s' (from '%s'): %llu infinite scale value(s)", p->name, p->first_src,
                     (unsigned long long)inf);
    if (nonpos)
        qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_SCALE_NONPOSITIVE, NULL, p->first_src,
                     "parameter '%s' (from '%s'): %llu zero or negative scale value(s)", p->name, p->first_src,
                     (unsigned long long)nonpos);
}

/* A whole-overwrite parameter differs when any superseded write's bytes are not the winner's. */
static int overwrite_differs(const qtl_load_t *l, size_t pi)
{
    const struct lparam *p = &l->m.params[pi];
    for (size_t i = 0; p->data && l->shadow && i < l->nops; i++) {
        const struct pop *o = &l->ops[i];
        if (o->param == pi && o->superseded &&
            memcmp(l->shadow + o->dst_off, p->data + o->cmp_off, (size_t)op_dst_bytes(l, o)))
            return 1;
    }
    return 0;
}

void qtl__plan_value_checks(qtl_load_t *l)
{
    for (size_t i = 0; i < l->m.nparams; i++) {
        const struct lparam *p = &l->m.params[i];
        /* weight_shape: every part of a fused layer records its own [rows, K] and vLLM's
         * kernels never read it, so differing parts are the normal case, not a finding */
        if (((overwrite_whole(p) && p->last_op >= 0) || p->kind == PK_MOE_SINGLE) &&
            !qtl__ends_with(p->name, ".weight_shape") && overwrite_differs(l, i))
            qtl__finding(l, QTL_OK, QTL_FINDING_PARAM_OVERWRITE_DIFFERS, NULL, p->first_src,
                         "parameter '%s' is written whole by several tensors with different values; vLLM keeps the "
                         "last one in its load order",
                         p->name);
        if (p->is_scale && !p->missing)
            check_values(l, p);
    }
}

/* The read level (qtl_load_options.verify) decides which parameters get bytes. */
static void mark_reads(qtl_load_t *l)
{
    for (size_t i = 0; i < l->m.nparams; i++) {
        struct lparam *p = &l->m.params[i];
        int bulk = !p->is_scale || p->kind == PK_GROUP || p->kind == PK_BLOCK || p->kind == PK_MODEL_WEIGHT;
        p->read = l->verify == QTL_READ_ALL || (l->verify == QTL_READ_SCALES && !bulk) ||
                  (l->verify == QTL_READ_SCALES_DEEP && p->is_scale);
    }
}

/* ---- the plan hash: what every rank of one layout must see alike ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
static uint64_t fnv_u64(uint64_t h, uint64_t v) { return fnv(h, &v, sizeof v); }
static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1); }

static uint64_t tensor_hash(uint64_t h, const struct qtl_tensor_info *ti)
{
    h = fnv_str(h, ti->name);
    h = fnv_u64(h, (uint64_t)ti->dtype);
    for (uint32_t d = 0; d < ti->ndim; d++)
        h = fnv_u64(h, ti->shape[d]);
    h = fnv_u64(h, ti->ndim);
    return fnv_u64(fnv_u64(h, ti->begin), ti->end);
}

uint64_t qtl__hash_layer(uint64_t h, const char *prefix, const struct qtl_layer_quant *q)
{
    uint64_t v[] = {(uint64_t)q->scheme, q->block[0], q->block[1], q->bits, q->group_size, (uint64_t)q->symmetric,
                    (uint64_t)q->actorder, (uint64_t)q->static_input, (uint64_t)q->input_symmetric};
    return fnv(fnv_str(h, prefix), v, sizeof v);
}

/* Files (names and sizes), the tensor table, the model and layer schemes the
 * config gives, and the layout (tp; pipeline and expert parallelism when they
 * come) — not the rank, so all ranks of one load agree. */
static void plan_hash(qtl_load_t *l, const struct src *srcs, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv_str(h, "qtl-plan-1");
    h = fnv_u64(h, l->m.tp);
    if (l->m.pp > 1) { /* the stages and every stage's layers (not which stage this is) */
        h = fnv_u64(h, l->m.pp);
        for (uint32_t r = 0, a, b; r < l->m.pp; r++)
            if (qtl_pp_layers(l->m.shape.layers, l->m.pp, r, l->pp_partition, &a, &b, NULL, 0) == QTL_OK)
                h = fnv_u64(fnv_u64(h, a), b);
    }
    for (size_t i = 0; i < l->nfiles; i++)
        h = fnv_u64(fnv_str(h, qtl__basename(l->files[i].path)), l->files[i].size);
    for (size_t i = 0; i < n; i++)
        h = tensor_hash(fnv_u64(h, srcs[i].file), &srcs[i].ti);
    const struct qtl_model_shape *s = &l->m.shape;
    uint64_t shape[] = {(uint64_t)s->arch,       s->layers,  s->hidden,           s->heads,          s->kv_heads,
                        s->head_dim,             s->intermediate, s->vocab,       (uint64_t)s->params_dtype,
                        (uint64_t)s->tie_word_embeddings, (uint64_t)s->qkv_bias, (uint64_t)s->qk_norm,
                        s->experts, s->moe_intermediate, s->experts_per_tok, s->sparse_step, (uint64_t)l->m.ep};
    h = fnv(h, shape, sizeof shape);
    l->hash = fnv_u64(h, l->m.scheme_hash); /* every layer's, on every stage (model.c) */
}

/* ---- building ---- */

static int add_file(qtl_load_t *l, const char *path, uint64_t size)
{
    if (qtl__grow(&l->al, (void **)&l->files, &l->files_cap, l->nfiles + 1, sizeof *l->files))
        return QTL_ERR_NOMEM;
    char *p = qtl__strdup(&l->al, path);
    if (!p)
        return QTL_ERR_NOMEM;
    l->files[l->nfiles++] = (struct pfile){p, size};
    return QTL_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const struct src *)a)->ti.name, ((const struct src *)b)->ti.name);
}

/* The checkpoint's tensors in vLLM's order: shard files sorted, names sorted
 * within a file (§11 item 1). A tensor whose shard failed is left out and
 * what it would have written is marked a consequence. */
static int ordered_sources(qtl_load_t *l, struct src **out, size_t *nout)
{
    size_t n = qtl_ckpt_tensor_count(l->ck), m = 0;
    struct src *srcs = qtl__calloc(&l->al, n ? n : 1, sizeof *srcs);
    if (!srcs)
        return QTL_ERR_NOMEM;
    for (size_t sh = 0; sh < qtl_ckpt_shard_count(l->ck); sh++) {
        size_t first = m;
        for (size_t i = 0; i < n; i++) {
            size_t s;
            if (qtl_ckpt_tensor_shard(l->ck, i, &s) || s != sh)
                continue;
            if (qtl_ckpt_tensor_at(l->ck, i, &srcs[m].ti)) {
                char pname[256], tname[256];
                int shard;
                if (qtl_ckpt_tensor_name(l->ck, i, tname, sizeof tname) == QTL_OK &&
                    qtl__model_map(&l->m, tname, pname, sizeof pname, &shard, NULL) != MAP_SKIP) {
                    struct lparam *bp = qtl__find_param(l, pname);
                    if (bp)
                        bp->blocked = 1;
                }
                continue;
            }
            srcs[m].index = i;
            srcs[m].file = (uint32_t)sh;
            m++;
        }
        qsort(srcs + first, m - first, sizeof *srcs, cmp_names);
    }
    *out = srcs;
    *nout = m;
    return QTL_OK;
}

static int shard_files(qtl_load_t *l)
{
    for (size_t sh = 0; sh < qtl_ckpt_shard_count(l->ck); sh++) {
        qtl_st_t *st = NULL;
        int ok = qtl_ckpt_shard(l->ck, sh, &st) == QTL_OK;
        if (add_file(l, ok ? qtl_st_name(st) : qtl_ckpt_shard_name(l->ck, sh), ok ? qtl_st_file_size(st) : 0))
            return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    }
    return QTL_OK;
}

/* What every plan ends with: its hash, coverage findings, the read level's parameters. */
static int finish_plan(qtl_load_t *l, struct src *srcs, size_t n)
{
    plan_hash(l, srcs, n);
    qtl__free(&l->al, srcs);
    if (l->err.code == QTL_ERR_NOMEM)
        return QTL_ERR_NOMEM;
    coverage_checks(l);
    mark_reads(l);
    return l->err.code == QTL_ERR_NOMEM ? QTL_ERR_NOMEM : QTL_OK;
}

/* config.json's sizes against the checkpoint: a parameter more than 4x the bytes of tensor data
 * there is (F16 to F32 doubles a scale; nothing quadruples) is a config that does not describe
 * these files — refused before its per-row coverage is allocated. */
static int sizes_fit(qtl_load_t *l)
{
    uint64_t data = 0, limit;
    for (size_t i = 0; i < l->nfiles; i++)
        data += l->files[i].size;
    limit = data > (UINT64_MAX - ((uint64_t)64 << 20)) / 4 ? UINT64_MAX : 4 * data + ((uint64_t)64 << 20);
    for (size_t i = 0; i < l->m.nparams; i++) {
        const struct lparam *p = &l->m.params[i];
        uint64_t numel, nbytes;
        int overflow = qtl__shape_numel(p->shape, p->ndim, &numel) || qtl__dtype_nbytes(p->dtype, numel, &nbytes);
        if (!overflow && nbytes <= limit)
            continue;
        char size[48];
        snprintf(size, sizeof size, overflow ? "over 2^64" : "%llu", overflow ? 0ull : (unsigned long long)nbytes);
        l->m.fail_id = qtl_finding_id(QTL_FINDING_CONFIG_INVALID);
        return qtl__fail(&l->err, QTL_ERR_VALIDATION_OVERFLOW,
                         "config.json: parameter '%s' would hold %s bytes, more than 4x the %llu bytes of the "
                         "checkpoint's readable shards: the config's sizes do not describe these files",
                         p->name, size, (unsigned long long)data);
    }
    return QTL_OK;
}

int qtl__plan_build(qtl_load_t *l)
{
    int rc = qtl_ckpt_check(l->ck);
    for (size_t i = 0; i < qtl_ckpt_diag_count(l->ck); i++) {
        struct qtl_diag d;
        qtl_ckpt_diag_at(l->ck, i, &d);
        enum qtl_finding f;
        if (qtl_finding_lookup(d.id, &f) == QTL_OK)
            qtl__finding(l, d.code, f, d.file, d.tensor, "%s", d.message);
    }
    if (rc == QTL_ERR_NOMEM || l->err.code == QTL_ERR_NOMEM || shard_files(l))
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    if ((rc = sizes_fit(l)) || (rc = init_params(l)))
        return rc;
    struct src *srcs;
    size_t m;
    if (ordered_sources(l, &srcs, &m))
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m && l->err.code != QTL_ERR_NOMEM; i++) {
        char pname[256];
        int shard;
        uint32_t expert;
        int kind = qtl__model_map(&l->m, srcs[i].ti.name, pname, sizeof pname, &shard, &expert);
        if (kind == MAP_SKIP)
            continue;
        struct lparam *p = qtl__find_param(l, pname);
        if (!p && kind == MAP_KV_SCALE)
            p = add_kv_scale(l, pname);
        if (!p) {
            qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_UNMAPPED, srcs[i].ti.file, srcs[i].ti.name,
                         "%s: tensor '%s' maps to no parameter of the model (looked for '%s')", srcs[i].ti.file,
                         srcs[i].ti.name, pname);
            continue;
        }
        size_t before = l->f.n;
        emit_tensor(l, p, &srcs[i], shard, expert);
        if (l->f.n > before) /* it could not be placed: what stays unwritten is a consequence of that finding */
            p->blocked = 1;
        if (l->progress)
            l->progress(l->progress_ud, i + 1, m);
    }
    return finish_plan(l, srcs, m);
}

/* vLLM's sharded_state name of a qtl parameter: tied embeddings live under lm_head.weight. */
static struct lparam *presharded_param(qtl_load_t *l, const char *name, int *skip)
{
    *skip = 0;
    struct lparam *p = qtl__find_param(l, name);
    if (p || !l->pre_vllm)
        return p;
    if (!strcmp(name, "lm_head.weight") && l->m.shape.tie_word_embeddings)
        return qtl__find_param(l, "model.embed_tokens.weight");
    /* a KV scale the checkpoint gave (listed in qtl.kv_scales), else vLLM's init values */
    const char *kv = qtl_st_metadata_get(l->pre, "qtl.kv_scales");
    size_t n = strlen(name);
    for (const char *q = kv; q && *q;) {
        const char *c = strchr(q, ',');
        size_t len = c ? (size_t)(c - q) : strlen(q);
        if (len == n && !memcmp(q, name, n))
            return add_kv_scale(l, name);
        q = c ? c + 1 : q + len;
    }
    *skip = qtl__vllm_only_key(name);
    return NULL;
}

int qtl__plan_presharded(qtl_load_t *l)
{
    for (size_t k = 0; k < l->npre; k++)
        if (add_file(l, qtl_st_name(l->pre_part[k]), qtl_st_file_size(l->pre_part[k])))
            return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    int rc = sizes_fit(l);
    if (rc || (rc = init_params(l)))
        return rc;
    size_t n = 0;
    for (size_t k = 0; k < l->npre; k++)
        n += qtl_st_tensor_count(l->pre_part[k]);
    struct src *srcs = qtl__calloc(&l->al, n ? n : 1, sizeof *srcs);
    if (!srcs)
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    for (size_t i = 0, k = 0, at = 0; i < n && l->err.code != QTL_ERR_NOMEM; i++, at++) {
        while (at >= qtl_st_tensor_count(l->pre_part[k]))
            k++, at = 0;
        struct src *s = &srcs[i];
        qtl_st_tensor_at(l->pre_part[k], at, &s->ti);
        s->index = at;
        s->file = (uint32_t)k;
        int skip;
        struct lparam *p = presharded_param(l, s->ti.name, &skip);
        if (!p && skip)
            continue;
        if (!p) {
            qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_UNMAPPED, s->ti.file, s->ti.name,
                         "%s: tensor '%s' maps to no parameter of the model", s->ti.file, s->ti.name);
            continue;
        }
        /* a KV scale vLLM holds in the model dtype or as [1] converts into qtl's F32 0-D */
        int kv_cast = l->pre_vllm && p->ndim == 0 && p->dtype == QTL_DTYPE_F32 && s->ti.numel == 1 &&
                      qtl__dtype_is_float(s->ti.dtype) && strstr(p->name, ".self_attn.attn.");
        if (!kv_cast && (s->ti.dtype != p->dtype || s->ti.numel != qtl__param_numel(p) || s->ti.ndim != p->ndim)) {
            qtl__finding(l, QTL_ERR_CHECKPOINT, QTL_FINDING_TENSOR_SHAPE, s->ti.file, s->ti.name,
                         "%s: tensor '%s' does not match parameter '%s' (%s, %u dims)", s->ti.file, s->ti.name,
                         p->name, qtl_dtype_name(p->dtype), p->ndim);
            continue;
        }
        uint64_t nb = kv_cast ? s->ti.nbytes : p->nbytes;
        if (p->nbytes && push_op(l, p, s, s->ti.file_offset, 1, nb, nb, 0, p->nbytes, -1, 0))
            break;
        for (uint64_t u = 0; u < p->nunits; u++)
            p->written[u]++;
        snprintf(p->first_src, sizeof p->first_src, "%s", s->ti.name);
    }
    return finish_plan(l, srcs, n);
}

/* ---- the plan, as the public API shows it ---- */

size_t qtl_load_op_count(const qtl_load_t *l) { return l->nops; }
size_t qtl_load_file_count(const qtl_load_t *l) { return l->nfiles; }
uint64_t qtl_load_plan_hash(const qtl_load_t *l) { return l->hash; }

const char *qtl_load_file_at(const qtl_load_t *l, size_t i, uint64_t *size)
{
    if (i >= l->nfiles)
        return NULL;
    if (size)
        *size = l->files[i].size;
    return l->files[i].path;
}

const char *qtl__op_tensor(const qtl_load_t *l, const struct pop *o)
{
    struct qtl_tensor_info ti;
    if (l->pre)
        return qtl_st_tensor_at(l->pre_part[o->file], o->tensor, &ti) == QTL_OK ? ti.name : NULL;
    return qtl__ckpt_tensor_name(l->ck, o->tensor);
}

int qtl_load_op_at(const qtl_load_t *l, size_t i, struct qtl_copy_op *op)
{
    if (i >= l->nops)
        return QTL_ERR_INVALID_ARGUMENT;
    const struct pop *o = &l->ops[i];
    *op = (struct qtl_copy_op){qtl__op_tensor(l, o), o->file,       o->param,    o->src_off,
                               o->rows,              o->row_bytes,  o->src_pitch, o->dst_off,
                               o->dst_pitch,         o->slot,       o->expert,    o->src_dtype,
                               l->m.params[o->param].dtype,         o->superseded};
    return QTL_OK;
}

size_t qtl_load_layer_count(const qtl_load_t *l) { return l->m.nlayers; }

int qtl_load_layer_at(const qtl_load_t *l, size_t i, struct qtl_layer_info *out)
{
    if (i >= l->m.nlayers)
        return QTL_ERR_INVALID_ARGUMENT;
    const struct llayer *ly = &l->m.layers[i];
    *out = (struct qtl_layer_info){ly->prefix, ly->q, ly->nmodules, {NULL, NULL, NULL}};
    for (size_t k = 0; k < ly->nmodules; k++)
        out->modules[k] = ly->modules[k];
    return QTL_OK;
}

uint64_t qtl_load_bytes_to_read(const qtl_load_t *l)
{
    uint64_t n = 0;
    for (size_t i = 0; i < l->nops; i++) {
        const struct lparam *p = &l->m.params[l->ops[i].param];
        if (p->read)
            n += l->ops[i].rows * l->ops[i].row_bytes;
    }
    return n;
}
