/* safetensors dtypes: one table indexed by enum qtl_dtype. */
#include "internal.h"

#include <string.h>

#define DT(name, bits) {#name, bits, sizeof(#name) - 1}
static const struct {
    const char *name;
    unsigned bits;
    size_t len;
} dtype_traits[QTL_DTYPE_COUNT] = {
    [QTL_DTYPE_BOOL] = DT(BOOL, 8),
    [QTL_DTYPE_F4] = DT(F4, 4),
    [QTL_DTYPE_F6_E2M3] = DT(F6_E2M3, 6),
    [QTL_DTYPE_F6_E3M2] = DT(F6_E3M2, 6),
    [QTL_DTYPE_U8] = DT(U8, 8),
    [QTL_DTYPE_I8] = DT(I8, 8),
    [QTL_DTYPE_F8_E5M2] = DT(F8_E5M2, 8),
    [QTL_DTYPE_F8_E4M3] = DT(F8_E4M3, 8),
    [QTL_DTYPE_F8_E8M0] = DT(F8_E8M0, 8),
    [QTL_DTYPE_F8_E4M3FNUZ] = DT(F8_E4M3FNUZ, 8),
    [QTL_DTYPE_F8_E5M2FNUZ] = DT(F8_E5M2FNUZ, 8),
    [QTL_DTYPE_I16] = DT(I16, 16),
    [QTL_DTYPE_U16] = DT(U16, 16),
    [QTL_DTYPE_F16] = DT(F16, 16),
    [QTL_DTYPE_BF16] = DT(BF16, 16),
    [QTL_DTYPE_I32] = DT(I32, 32),
    [QTL_DTYPE_U32] = DT(U32, 32),
    [QTL_DTYPE_F32] = DT(F32, 32),
    [QTL_DTYPE_C64] = DT(C64, 64),
    [QTL_DTYPE_F64] = DT(F64, 64),
    [QTL_DTYPE_I64] = DT(I64, 64),
    [QTL_DTYPE_U64] = DT(U64, 64),
};

const char *qtl_dtype_name(enum qtl_dtype dt)
{
    return (unsigned)dt < QTL_DTYPE_COUNT ? dtype_traits[dt].name : NULL;
}

unsigned qtl_dtype_bits(enum qtl_dtype dt) { return (unsigned)dt < QTL_DTYPE_COUNT ? dtype_traits[dt].bits : 0; }

int qtl_dtype_from_name(const char *name, size_t len, enum qtl_dtype *out)
{
    for (int i = 0; i < QTL_DTYPE_COUNT; i++) {
        const char *n = dtype_traits[i].name;
        if (dtype_traits[i].len == len && n[0] == name[0] && memcmp(n, name, len) == 0) {
            *out = (enum qtl_dtype)i;
            return QTL_OK;
        }
    }
    return QTL_ERR_INVALID_ARGUMENT;
}

int qtl__shape_numel(const uint64_t *shape, uint32_t ndim, uint64_t *numel)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < ndim; i++)
        if (qtl__mul_u64(n, shape[i], &n))
            return QTL_ERR_VALIDATION_OVERFLOW;
    *numel = n;
    return QTL_OK;
}

int qtl__dtype_nbytes(enum qtl_dtype dt, uint64_t numel, uint64_t *nbytes)
{
    uint64_t bits;
    if (qtl__mul_u64(numel, qtl_dtype_bits(dt), &bits))
        return QTL_ERR_VALIDATION_OVERFLOW;
    if (bits % 8)
        return QTL_ERR_MISALIGNED_SLICE;
    *nbytes = bits / 8;
    return QTL_OK;
}

/* ---- conversions (torch copy_ between parameter dtypes) ---- */

int qtl__dtype_is_float(enum qtl_dtype d) { return d == QTL_DTYPE_F32 || d == QTL_DTYPE_BF16 || d == QTL_DTYPE_F16; }
int qtl__dtype_is_int(enum qtl_dtype d)
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
int qtl__convert(enum qtl_dtype sd, const unsigned char *src, enum qtl_dtype dd, unsigned char *dst, uint64_t n)
{
    if (sd == dd) {
        memcpy(dst, src, (size_t)(n * qtl_dtype_bits(sd) / 8));
        return 0;
    }
    if (qtl__dtype_is_float(sd) && qtl__dtype_is_float(dd)) {
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
    if (qtl__dtype_is_int(sd) && qtl__dtype_is_int(dd)) {
        for (uint64_t i = 0; i < n; i++)
            int_put(dd, dst, i, int_at(sd, src, i));
        return 0;
    }
    return -1;
}

int qtl__dtype_convertible(enum qtl_dtype s, enum qtl_dtype d)
{
    return s == d || (qtl__dtype_is_float(s) && qtl__dtype_is_float(d)) ||
           (qtl__dtype_is_int(s) && qtl__dtype_is_int(d));
}
