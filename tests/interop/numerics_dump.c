/* Dumps qtl's minifloat conversions for the interop suite (tests/interop/interop.py), as raw
 * little-endian arrays on stdout:
 *   decode: f32 bits of every E4M3, E5M2, E8M0 byte, every E2M1 nibble, every BF16 and F16 pattern
 *   encode: for the f32 inputs read from stdin (u32 bits), E4M3, E2M1, E8M0, BF16, F16 of each. */
#include "qtl.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int put(const void *p, size_t n) { return fwrite(p, 1, n, stdout) == n ? 0 : 1; }

/* f32 of every bit pattern 0..count-1 of dt (little-endian), through qtl_to_f32. */
static int decode(enum qtl_dtype dt, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        unsigned char b[2] = {(unsigned char)(i & 0xFF), (unsigned char)(i >> 8)};
        float f;
        if (qtl_to_f32(dt, b, 1, &f) != QTL_OK || put(&f, 4))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "decode")) {
        int rc = decode(QTL_DTYPE_F8_E4M3, 256) || decode(QTL_DTYPE_F8_E5M2, 256) || decode(QTL_DTYPE_F8_E8M0, 256);
        for (uint32_t i = 0; i < 16 && !rc; i++) {
            float f = qtl_e2m1_to_f32((uint8_t)i);
            rc = put(&f, 4);
        }
        rc = rc || decode(QTL_DTYPE_BF16, 65536) || decode(QTL_DTYPE_F16, 65536);
        return rc;
    }
    if (argc == 2 && !strcmp(argv[1], "encode")) {
        uint32_t u;
        while (fread(&u, 4, 1, stdin) == 1) {
            float f;
            memcpy(&f, &u, 4);
            uint8_t e4 = qtl_f32_to_e4m3(f), e2 = qtl_f32_to_e2m1(f), e8 = qtl_f32_to_e8m0(f);
            uint16_t bf = qtl_f32_to_bf16(f), h = qtl_f32_to_f16(f);
            if (put(&e4, 1) || put(&e2, 1) || put(&e8, 1) || put(&bf, 2) || put(&h, 2))
                return 1;
        }
        return 0;
    }
    fprintf(stderr, "usage: numerics_dump decode|encode\n");
    return 2;
}
