/* Internal: the validated form of a dequant descriptor, shared by the
 * reference kernels (dequant.c) and the fast paths (dequant_avx2.c). */
#ifndef QTL_DEQUANT_INTERNAL_H
#define QTL_DEQUANT_INTERNAL_H

#include "minifloat.h"

struct dq_plan {
    const struct qtl_dequant_desc *d;
    uint64_t row_bytes;   /* bytes of one stored weight row */
    uint64_t ngroups;     /* effective scales per row (scale columns) */
    uint64_t seg;         /* columns sharing one scale (cols for tensor/channel); 0 with g_idx */
    uint32_t bits;        /* stored bits per element */
    enum qtl_granularity gran; /* as given, or GROUP for the FP4 schemes */
};

/* Per-row effective scales s[g] and integer zero points z[g] (g < ngroups). */
struct dq_row {
    uint64_t r;
    const float *s;
    const int32_t *z; /* NULL when symmetric */
};

/* Writes the cols values of row r: f32 for the reference kernels; f32 or
 * bf16 for a fast kernel, as requested from qtl__dq_fast. */
typedef void (*dq_row_fn)(const struct dq_plan *p, const struct dq_row *row, void *out);

struct dq_traits {
    const char *name;
    dq_row_fn ref; /* portable C11, f32 out */
};

/* Fast row kernel for this CPU writing `out` (F32 or BF16), or NULL (dequant_avx2.c). */
dq_row_fn qtl__dq_fast(enum qtl_scheme scheme, const struct dq_plan *p, enum qtl_dtype out);
const char *qtl__dq_fast_name(void);
/* Effective scales of row r (no zero points) with the fast path; 0 if not handled. */
int qtl__dq_fast_scales(const struct dq_plan *p, uint64_t r, float *s);
/* f32 -> bf16 (RNE) of n values, fast where available. */
void qtl__f32_to_bf16_row(const float *src, uint16_t *dst, uint64_t n);

#endif
