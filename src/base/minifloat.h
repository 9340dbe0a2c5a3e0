/* Internal: decode tables shared by the reference and fast kernels of the
 * quant layer (dequant.c, dequant_avx2.c). Built by minifloat.c, which lives in
 * base with the exact scalar conversions that dtype.c's qtl__convert uses. */
#ifndef QTL_MINIFLOAT_H
#define QTL_MINIFLOAT_H

#include "internal.h"

struct qtl_tables {
    float e4m3[256];
    float e8m0[256];
    float e2m1_lo[256]; /* value of the low nibble of byte i */
    float e2m1_hi[256]; /* value of the high nibble of byte i */
};
extern struct qtl_tables qtl__tab;
/* Built once (pthread_once) from the exact decoders. */
const struct qtl_tables *qtl__tables(void);

#endif
