/* Dequantization: one traits table keyed by scheme, reference kernels in
 * plain C11, run-time selected fast paths, threads over rows.
 * Arithmetic (pinned, -ffp-contract=off): per row, the effective scale of
 * every group/block is computed first (dq_row.s), then one multiply per
 * element. */
#include "dequant_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- scale and zero-point decoding ---- */

static float scale_at(const struct qtl_dequant_desc *d, uint64_t i)
{
    const unsigned char *p = d->scale;
    switch (d->scale_dtype) {
    case QTL_DTYPE_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case QTL_DTYPE_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return qtl_bf16_to_f32(h); }
    case QTL_DTYPE_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return qtl_f16_to_f32(h); }
    case QTL_DTYPE_F8_E4M3: return qtl__tab.e4m3[p[i]];
    case QTL_DTYPE_U8:
    case QTL_DTYPE_F8_E8M0: return qtl__tab.e8m0[p[i]];
    default: return 0.0f; /* excluded by qtl_dequant_check */
    }
}

/* Unsigned n-bit code at bit position pos of a little-endian stream of
 * 32-bit words where consecutive words are `stride` words apart. */
static inline uint32_t stream_code(const unsigned char *base, uint64_t stride, uint64_t pos, uint32_t bits)
{
    uint64_t k = pos / 32;
    uint32_t sh = (uint32_t)(pos % 32), w, v;
    memcpy(&w, base + 4 * k * stride, 4);
    v = w >> sh;
    if (sh + bits > 32) {
        memcpy(&w, base + 4 * (k + 1) * stride, 4);
        v |= w << (32 - sh);
    }
    return v & ((1u << bits) - 1u);
}

/* Effective scales and zero points of row r. */
static void row_scales(const struct dq_plan *p, uint64_t r, float *s, int32_t *z)
{
    const struct qtl_dequant_desc *d = p->d;
    for (uint64_t g = 0; g < p->ngroups; g++) {
        uint64_t idx;
        switch (p->gran) {
        case QTL_SCALE_TENSOR: idx = 0; break;
        case QTL_SCALE_CHANNEL: idx = r; break;
        case QTL_SCALE_BLOCK: idx = (r / d->block_rows) * p->ngroups + g; break;
        default: idx = r * p->ngroups + g; break;
        }
        float v = scale_at(d, idx);
        if (d->scheme == QTL_SCHEME_NVFP4_CT)
            v = v / d->global_scale;
        else if (d->scheme == QTL_SCHEME_NVFP4_MODELOPT)
            v = v * d->global_scale;
        s[g] = v;
        if (!z)
            continue;
        if (d->scheme == QTL_SCHEME_PACKED_INT) {
            int32_t half = 1 << (d->bits - 1);
            /* column g of the packed zero points: words g, g + ngroups, ... */
            z[g] = (int32_t)stream_code((const unsigned char *)d->zero_point + 4 * g, p->ngroups, r * d->bits,
                                        d->bits) -
                   half;
        } else if (d->zero_point_dtype == QTL_DTYPE_I8) {
            z[g] = ((const int8_t *)d->zero_point)[idx];
        } else {
            int32_t v32;
            memcpy(&v32, (const unsigned char *)d->zero_point + 4 * idx, 4);
            z[g] = v32;
        }
    }
}

static inline uint64_t group_of(const struct dq_plan *p, uint64_t c)
{
    return p->seg ? c / p->seg : (uint64_t)p->d->g_idx[c];
}

/* ---- reference kernels ---- */

static void ref_none(const struct dq_plan *p, const struct dq_row *row, void *dst)
{
    float *out = dst;
    const struct qtl_dequant_desc *d = p->d;
    qtl_to_f32(d->weight_dtype, (const unsigned char *)d->weight + row->r * p->row_bytes, d->rows ? d->cols : 0,
               out);
}

static void ref_fp8(const struct dq_plan *p, const struct dq_row *row, void *dst)
{
    float *out = dst;
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    for (uint64_t c = 0; c < p->d->cols; c++)
        out[c] = qtl__tab.e4m3[q[c]] * row->s[group_of(p, c)];
}

static void ref_int8(const struct dq_plan *p, const struct dq_row *row, void *dst)
{
    float *out = dst;
    const int8_t *q = (const int8_t *)p->d->weight + row->r * p->row_bytes;
    for (uint64_t c = 0; c < p->d->cols; c++) {
        uint64_t g = group_of(p, c);
        /* int32 arithmetic as torch's (and the AVX2 path's): wraps for an extreme zero point
         * from the file instead of overflowing (found by fuzz_dequant) */
        int32_t v = (int32_t)((uint32_t)q[c] - (uint32_t)(row->z ? row->z[g] : 0));
        out[c] = (float)v * row->s[g];
    }
}

static void ref_fp4(const struct dq_plan *p, const struct dq_row *row, void *dst)
{
    float *out = dst;
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    for (uint64_t c = 0; c < p->d->cols; c++) {
        uint8_t b = q[c / 2];
        float v = (c & 1) ? qtl__tab.e2m1_hi[b] : qtl__tab.e2m1_lo[b];
        out[c] = v * row->s[group_of(p, c)];
    }
}

static void ref_packed(const struct dq_plan *p, const struct dq_row *row, void *dst)
{
    float *out = dst;
    const struct qtl_dequant_desc *d = p->d;
    const unsigned char *base = (const unsigned char *)d->weight + row->r * p->row_bytes;
    int32_t half = 1 << (d->bits - 1);
    for (uint64_t c = 0; c < d->cols; c++) {
        uint64_t g = group_of(p, c);
        int32_t v = (int32_t)((uint32_t)stream_code(base, 1, c * d->bits, d->bits) - (uint32_t)half -
                              (uint32_t)(row->z ? row->z[g] : 0));
        out[c] = (float)v * row->s[g];
    }
}

static struct dq_traits traits[QTL_SCHEME_COUNT] = {
    [QTL_SCHEME_NONE] = {"none", ref_none},
    [QTL_SCHEME_FP8] = {"fp8", ref_fp8},
    [QTL_SCHEME_INT8] = {"int8", ref_int8},
    [QTL_SCHEME_NVFP4_CT] = {"nvfp4-ct", ref_fp4},
    [QTL_SCHEME_NVFP4_MODELOPT] = {"nvfp4-modelopt", ref_fp4},
    [QTL_SCHEME_MXFP4] = {"mxfp4", ref_fp4},
    [QTL_SCHEME_PACKED_INT] = {"packed-int", ref_packed},
};

const char *qtl_dequant_scheme_name(enum qtl_scheme s)
{
    return (unsigned)s < QTL_SCHEME_COUNT ? traits[s].name : NULL;
}

const char *qtl_dequant_fast_name(void) { return qtl__dq_fast_name(); }

/* ---- validation ---- */

static int bad(char *msg, size_t cap, const char *fmt, ...) QTL_PRINTF(3, 4);
static int bad(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return QTL_ERR_INVALID_ARGUMENT;
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

static int dtype_bytes(enum qtl_dtype dt) { return (int)qtl_dtype_bits(dt) / 8; }

static int plan_init(const struct qtl_dequant_desc *d, struct dq_plan *p, uint64_t *wbytes, uint64_t *sbytes,
                     uint64_t *zbytes, char *msg, size_t cap)
{
    memset(p, 0, sizeof *p);
    p->d = d;
    if ((unsigned)d->scheme >= QTL_SCHEME_COUNT)
        return bad(msg, cap, "unknown scheme %d", (int)d->scheme);
    const char *name = traits[d->scheme].name;
    enum qtl_granularity gran = d->granularity;
    uint64_t group = d->group_size;
    enum qtl_dtype want_w;
    switch (d->scheme) {
    case QTL_SCHEME_NONE:
        if (d->weight_dtype != QTL_DTYPE_F32 && d->weight_dtype != QTL_DTYPE_BF16 && d->weight_dtype != QTL_DTYPE_F16)
            return bad(msg, cap, "none: weight dtype must be F32, BF16 or F16, not %s", qtl_dtype_name(d->weight_dtype));
        want_w = d->weight_dtype;
        p->bits = qtl_dtype_bits(want_w);
        break;
    case QTL_SCHEME_FP8: want_w = QTL_DTYPE_F8_E4M3, p->bits = 8; break;
    case QTL_SCHEME_INT8: want_w = QTL_DTYPE_I8, p->bits = 8; break;
    case QTL_SCHEME_NVFP4_CT:
    case QTL_SCHEME_NVFP4_MODELOPT:
    case QTL_SCHEME_MXFP4:
        want_w = QTL_DTYPE_U8, p->bits = 4;
        gran = QTL_SCALE_GROUP;
        group = d->scheme == QTL_SCHEME_MXFP4 ? 32 : 16;
        if (d->cols % 2)
            return bad(msg, cap, "%s: %llu columns, must be even (two E2M1 codes per byte)", name,
                       (unsigned long long)d->cols);
        if (d->g_idx)
            return bad(msg, cap, "%s: g_idx is not used with this scheme", name);
        break;
    case QTL_SCHEME_PACKED_INT:
        want_w = QTL_DTYPE_I32, p->bits = d->bits;
        if (d->bits < 1 || d->bits > 8)
            return bad(msg, cap, "packed-int: %u bits, must be 1..8", d->bits);
        break;
    default: return bad(msg, cap, "unknown scheme");
    }
    if (d->weight_dtype != want_w && !(want_w == QTL_DTYPE_U8 && d->weight_dtype == QTL_DTYPE_F4))
        return bad(msg, cap, "%s: weight dtype %s, expected %s", name, qtl_dtype_name(d->weight_dtype),
                   qtl_dtype_name(want_w));
    if (d->rows && d->cols && !d->weight)
        return bad(msg, cap, "%s: no weight data", name);
    uint64_t t;
    if (d->scheme == QTL_SCHEME_PACKED_INT) {
        if (__builtin_mul_overflow(d->cols, (uint64_t)d->bits, &t))
            return bad(msg, cap, "size overflow");
        p->row_bytes = 4 * ceil_div(t, 32);
    } else {
        if (__builtin_mul_overflow(d->cols, (uint64_t)p->bits, &t))
            return bad(msg, cap, "size overflow");
        p->row_bytes = t / 8;
    }
    if (wbytes && __builtin_mul_overflow(d->rows, p->row_bytes, wbytes))
        return bad(msg, cap, "size overflow");
    if (d->scheme == QTL_SCHEME_NONE) {
        p->ngroups = 1;
        p->seg = d->cols ? d->cols : 1;
        if (sbytes)
            *sbytes = 0;
        if (zbytes)
            *zbytes = 0;
        return QTL_OK;
    }
    /* scales */
    uint64_t nscale;
    p->gran = gran;
    switch (gran) {
    case QTL_SCALE_TENSOR:
    case QTL_SCALE_CHANNEL:
        if (d->g_idx)
            return bad(msg, cap, "%s: g_idx needs group granularity", name);
        p->ngroups = 1;
        p->seg = d->cols ? d->cols : 1;
        nscale = gran == QTL_SCALE_TENSOR ? 1 : d->rows;
        break;
    case QTL_SCALE_GROUP:
        if (!group)
            return bad(msg, cap, "%s: group size 0", name);
        p->ngroups = ceil_div(d->cols, group);
        p->seg = d->g_idx ? 0 : group;
        if (__builtin_mul_overflow(d->rows, p->ngroups, &nscale))
            return bad(msg, cap, "size overflow");
        break;
    case QTL_SCALE_BLOCK:
        if (!d->block_rows || !d->block_cols)
            return bad(msg, cap, "%s: block size %ux%u", name, d->block_rows, d->block_cols);
        if (d->g_idx)
            return bad(msg, cap, "%s: g_idx needs group granularity", name);
        p->ngroups = ceil_div(d->cols, d->block_cols);
        p->seg = d->block_cols;
        if (__builtin_mul_overflow(ceil_div(d->rows, d->block_rows), p->ngroups, &nscale))
            return bad(msg, cap, "size overflow");
        break;
    default: return bad(msg, cap, "%s: unknown granularity %d", name, (int)gran);
    }
    if (!p->ngroups)
        p->ngroups = 1; /* zero columns: one (unused) scale slot */
    int sb = 0;
    switch (d->scale_dtype) {
    case QTL_DTYPE_F32: case QTL_DTYPE_BF16: case QTL_DTYPE_F16: case QTL_DTYPE_F8_E4M3:
        if (d->scheme != QTL_SCHEME_MXFP4)
            sb = dtype_bytes(d->scale_dtype);
        break;
    case QTL_DTYPE_U8: case QTL_DTYPE_F8_E8M0:
        if (d->scheme == QTL_SCHEME_MXFP4)
            sb = 1;
        break;
    default: break;
    }
    if (!sb)
        return bad(msg, cap, "%s: scale dtype %s not supported", name, qtl_dtype_name(d->scale_dtype) ? qtl_dtype_name(d->scale_dtype) : "?");
    if ((d->scheme == QTL_SCHEME_NVFP4_CT || d->scheme == QTL_SCHEME_NVFP4_MODELOPT) &&
        d->scale_dtype != QTL_DTYPE_F8_E4M3)
        return bad(msg, cap, "%s: scale dtype must be F8_E4M3", name);
    if (nscale && !d->scale)
        return bad(msg, cap, "%s: no scale data", name);
    if (sbytes)
        *sbytes = nscale * (uint64_t)sb;
    /* zero points */
    uint64_t zb = 0;
    if (d->zero_point) {
        if (d->scheme == QTL_SCHEME_INT8) {
            if (d->zero_point_dtype != QTL_DTYPE_I8 && d->zero_point_dtype != QTL_DTYPE_I32)
                return bad(msg, cap, "int8: zero point dtype must be I8 or I32");
            zb = nscale * (uint64_t)dtype_bytes(d->zero_point_dtype);
        } else if (d->scheme == QTL_SCHEME_PACKED_INT) {
            if (d->zero_point_dtype != QTL_DTYPE_I32)
                return bad(msg, cap, "packed-int: zero point dtype must be I32 (packed)");
            if (gran == QTL_SCALE_TENSOR)
                return bad(msg, cap, "packed-int: zero points need channel or group granularity");
            zb = 4 * ceil_div(d->rows * d->bits, 32) * p->ngroups;
        } else {
            return bad(msg, cap, "%s: zero points are not used with this scheme", name);
        }
    }
    if (zbytes)
        *zbytes = zb;
    if (d->g_idx)
        for (uint64_t c = 0; c < d->cols; c++)
            if (d->g_idx[c] < 0 || (uint64_t)d->g_idx[c] >= p->ngroups)
                return bad(msg, cap, "%s: g_idx[%llu] = %d outside [0, %llu)", name, (unsigned long long)c,
                           d->g_idx[c], (unsigned long long)p->ngroups);
    return QTL_OK;
}

int qtl_dequant_check(const struct qtl_dequant_desc *d, uint64_t *wb, uint64_t *sb, uint64_t *zb, char *msg,
                      size_t cap)
{
    struct dq_plan p;
    qtl__tables();
    return plan_init(d, &p, wb, sb, zb, msg, cap);
}

/* ---- driver ---- */

/* fn writes `out` directly when direct, else f32 rows that become bf16.
 * fast: the row scales may come from the fast path too. */
static void run_rows(const struct dq_plan *p, dq_row_fn fn, int direct, int fast, uint64_t r0, uint64_t r1,
                     uint64_t first_row, enum qtl_dtype out, void *dst, int *failed)
{
    const struct qtl_dequant_desc *d = p->d;
    float *s = malloc(p->ngroups * sizeof *s);
    int32_t *z = d->zero_point ? malloc(p->ngroups * sizeof *z) : NULL;
    float *tmp = !direct ? malloc((d->cols ? d->cols : 1) * sizeof *tmp) : NULL;
    if (!s || (d->zero_point && !z) || (!direct && !tmp)) {
        *failed = 1;
    } else {
        for (uint64_t r = r0; r < r1; r++) {
            if (!(fast && !z && qtl__dq_fast_scales(p, r, s)))
                row_scales(p, r, s, z);
            struct dq_row row = {r, s, z};
            uint64_t o = (r - first_row) * d->cols;
            if (direct) {
                fn(p, &row, out == QTL_DTYPE_F32 ? (void *)((float *)dst + o) : (void *)((uint16_t *)dst + o));
            } else {
                fn(p, &row, tmp);
                qtl__f32_to_bf16_row(tmp, (uint16_t *)dst + o, d->cols);
            }
        }
    }
    free(s);
    free(z);
    free(tmp);
}

int qtl_dequant(const struct qtl_dequant_desc *d, uint64_t row0, uint64_t nrows, enum qtl_dtype out, void *dst,
                size_t dst_size, int n_threads, int fast, char *msg, size_t cap)
{
    struct dq_plan p;
    qtl__tables();
    int rc = plan_init(d, &p, NULL, NULL, NULL, msg, cap);
    if (rc)
        return rc;
    if (out != QTL_DTYPE_F32 && out != QTL_DTYPE_BF16)
        return bad(msg, cap, "output dtype must be F32 or BF16");
    uint64_t end, need;
    if (__builtin_add_overflow(row0, nrows, &end) || end > d->rows)
        return bad(msg, cap, "rows [%llu, +%llu) outside %llu", (unsigned long long)row0,
                   (unsigned long long)nrows, (unsigned long long)d->rows);
    if (__builtin_mul_overflow(nrows, d->cols, &need) ||
        __builtin_mul_overflow(need, (uint64_t)(out == QTL_DTYPE_F32 ? 4 : 2), &need) || need != dst_size)
        return bad(msg, cap, "destination holds %zu bytes, the rows need %llu", dst_size, (unsigned long long)need);
    dq_row_fn fn = traits[d->scheme].ref, f = fast ? qtl__dq_fast(d->scheme, &p, out) : NULL;
    int direct = out == QTL_DTYPE_F32;
    if (f)
        fn = f, direct = 1;
    int failed = 0;
    if (n_threads <= 1 || nrows < 2) {
        run_rows(&p, fn, direct, fast, row0, end, row0, out, dst, &failed);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
        {
            int nt = omp_get_num_threads(), me = omp_get_thread_num(), oom = 0;
            uint64_t a = row0 + nrows * (uint64_t)me / (uint64_t)nt, b = row0 + nrows * (uint64_t)(me + 1) / (uint64_t)nt;
            run_rows(&p, fn, direct, fast, a, b, row0, out, dst, &oom);
            if (oom) {
#pragma omp atomic write
                failed = 1;
            }
        }
#else
        run_rows(&p, fn, direct, fast, row0, end, row0, out, dst, &failed);
#endif
    }
    if (failed) {
        if (msg && cap)
            snprintf(msg, cap, "out of memory");
        return QTL_ERR_NOMEM;
    }
    return QTL_OK;
}
