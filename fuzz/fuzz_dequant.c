/* Fuzz target: a dequantization descriptor from bytes (qtl.h, src/quant/).
 *
 *   0 scheme   1 weight dtype   2 granularity   3 scale dtype   4 zero-point dtype
 *   5 flags: bit 0 zero points, bit 1 g_idx, bit 2 raw g_idx (else each entry
 *            mod groups + 1), bit 3 BF16 out (else F32), bit 4 two threads,
 *            bit 5 wide (rows, cols as given, else rows mod 65, cols mod 513),
 *            bit 6 NULL weight, bit 7 NULL scale
 *   6 bits   7 bit 0: rows [row0, +nrows) as given (else clamped into the weight)
 *   8 group_size u32   12 block_rows u16   14 block_cols u16   16 rows u64   24 cols u64
 *   32 global_scale f32   36 row0 u64   44 nrows u32   48... bytes cycled into
 *   g_idx, the scales, zero points and weight, in that order
 *
 * qtl_dequant_check must accept or refuse it; when it accepts and the sizes
 * it reports are small, the tensors get buffers of exactly those sizes and
 * qtl_dequant runs with the reference kernels, then the fast path on 1 or 2
 * threads (which must give the same bits), then with a wrong destination size
 * (which must be refused). Never a read outside those buffers. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR 48
#define MAX_BYTES ((uint64_t)1 << 20)
#define MAX_GIDX ((uint64_t)1 << 16)
#define MAX_COLS ((uint64_t)1 << 24)

static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

static int is_nan(uint32_t v, int bf16)
{
    return bf16 ? (v & 0x7F80u) == 0x7F80u && (v & 0x7Fu) : (v & 0x7F800000u) == 0x7F800000u && (v & 0x7FFFFFu);
}

/* Same bits, or (guard) both NaN: open bug tests/fuzz/fuzz_dequant/crash-nan-payload-*: where
 * the weight code and the scale are both NaN, the AVX2 kernels return the scale's NaN and
 * the reference the weight's (which operand's payload a multiply keeps), against qtl.h's
 * "bit-identical". */
static int same_bits(const unsigned char *a, const unsigned char *b, int bf16)
{
    uint32_t x = 0, y = 0;
    memcpy(&x, a, bf16 ? 2 : 4);
    memcpy(&y, b, bf16 ? 2 : 4);
    return x == y || (!fz_unguarded() && is_nan(x, bf16) && is_nan(y, bf16));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once++)
        fz_init();
    if (size < HDR)
        return 0;
    const uint8_t flags = data[5];
    struct qtl_dequant_desc d;
    memset(&d, 0, sizeof d);
    d.scheme = (enum qtl_scheme)(data[0] % (QTL_SCHEME_COUNT + 1));
    d.weight_dtype = (enum qtl_dtype)(data[1] % (QTL_DTYPE_COUNT + 1));
    d.granularity = (enum qtl_granularity)(data[2] % 5);
    d.scale_dtype = (enum qtl_dtype)(data[3] % (QTL_DTYPE_COUNT + 1));
    d.zero_point_dtype = (enum qtl_dtype)(data[4] % (QTL_DTYPE_COUNT + 1));
    d.bits = data[6] % 16;
    d.group_size = (uint32_t)fz_le(data, size, 8, 4);
    d.block_rows = (uint32_t)fz_le(data, size, 12, 2);
    d.block_cols = (uint32_t)fz_le(data, size, 14, 2);
    d.rows = fz_le(data, size, 16, 8);
    d.cols = fz_le(data, size, 24, 8);
    if (!(flags & 0x20)) {
        d.rows %= 65;
        d.cols %= 513;
    }
    uint32_t gbits = (uint32_t)fz_le(data, size, 32, 4);
    memcpy(&d.global_scale, &gbits, 4);
    uint64_t row0 = fz_le(data, size, 36, 8), nrows = fz_le(data, size, 44, 4);
    if (!(data[7] & 1)) { /* a span inside the weight */
        row0 = d.rows ? row0 % d.rows : 0;
        nrows = d.rows - row0 ? nrows % (d.rows - row0) + 1 : 0;
    }
    const uint8_t *pool = data + HDR;
    size_t npool = size - HDR, pos = 0;
    (void)qtl_dequant_scheme_name(d.scheme);

    /* First the check with placeholder pointers (it reads only g_idx). */
    static const unsigned char placeholder[8];
    int32_t *g_idx = NULL;
    if ((flags & 2) && d.cols <= MAX_GIDX) {
        if (!(g_idx = malloc(d.cols ? (size_t)d.cols * sizeof *g_idx : 1)))
            abort();
        uint64_t groups = d.group_size ? ceil_div(d.cols, d.group_size) : 1;
        for (uint64_t c = 0; c < d.cols; c++) {
            unsigned char b[4];
            fz_cycle(b, 4, pool, npool, &pos);
            int32_t v;
            memcpy(&v, b, 4);
            g_idx[c] = flags & 4 ? v : (int32_t)((uint32_t)v % (groups + 1));
        }
        d.g_idx = g_idx;
    }
    d.weight = flags & 0x40 ? NULL : placeholder;
    d.scale = flags & 0x80 ? NULL : placeholder;
    d.zero_point = flags & 1 ? placeholder : NULL;
    uint64_t wb = 0, sb = 0, zb = 0;
    char msg[256];
    int rc = qtl_dequant_check(&d, &wb, &sb, &zb, msg, sizeof msg);
    if (rc != QTL_OK && rc != QTL_ERR_INVALID_ARGUMENT)
        abort();
    const int out_bf16 = (flags & 8) != 0;
    const enum qtl_dtype out = out_bf16 ? QTL_DTYPE_BF16 : QTL_DTYPE_F32;
    uint64_t span_end, need = 0;
    int in_range = !__builtin_add_overflow(row0, nrows, &span_end) && span_end <= d.rows;
    /* (a harness limit: qtl_dequant allocates per-row scratch of the width, even for 0 rows) */
    int small = rc == QTL_OK && wb <= MAX_BYTES && sb <= MAX_BYTES && zb <= MAX_BYTES && d.cols <= MAX_COLS &&
                !__builtin_mul_overflow(nrows, d.cols, &need) && need <= MAX_BYTES / 4;
    /* Guard (open bug, tests/fuzz/fuzz_dequant/crash-zero-cols-* and crash-scale-bytes-wrap-*): with
     * 0 columns qtl_dequant still decodes one scale per row (run_rows -> row_scales) that the
     * check did not count: group and block granularity report 0 scale bytes (plan_init computes
     * nscale before it makes ngroups 1), and the scale / zero-point byte counts are multiplied
     * by their element size without an overflow check (*sbytes = nscale * sb), so 2^62 rows of
     * channel scales report 0 bytes. Every such descriptor has 0 columns: not run. */
    if (small && d.cols == 0 && !fz_unguarded())
        small = 0;
    if (small) {
        need *= out_bf16 ? 2 : 4;
        /* Guard (open bug, tests/fuzz/fuzz_dequant/crash-none-*): for QTL_SCHEME_NONE qtl_dequant
         * decodes scale[0] and, when a zero point is given, zero_point[0] (run_rows -> row_scales)
         * though the check reports 0 bytes for both and needs neither: a NULL scale crashes, a
         * short one is read past its end. */
        uint64_t salloc = sb, zalloc = zb;
        if (d.scheme == QTL_SCHEME_NONE && !fz_unguarded()) {
            d.scale = placeholder;
            salloc = sb < 8 ? 8 : sb;
            zalloc = zb < 8 ? 8 : zb;
        }
        /* exact-size buffers, so ASan sees any read past what the check reported */
        unsigned char *s = d.scale ? malloc(salloc ? (size_t)salloc : 1) : NULL;
        unsigned char *z = d.zero_point ? malloc(zalloc ? (size_t)zalloc : 1) : NULL;
        unsigned char *w = d.weight ? malloc(wb ? (size_t)wb : 1) : NULL;
        unsigned char *dst = malloc((size_t)need + 1), *dst2 = malloc((size_t)need + 1);
        if ((d.scale && !s) || (d.zero_point && !z) || (d.weight && !w) || !dst || !dst2)
            abort();
        if (s) {
            fz_cycle(s, salloc, pool, npool, &pos);
            d.scale = s;
        }
        if (z) {
            fz_cycle(z, zalloc, pool, npool, &pos);
            d.zero_point = z;
            /* Guard (open bug, tests/fuzz/fuzz_dequant/crash-int8-zero-point-overflow): the INT8
             * reference kernel computes q - zp in int (ref_int8), signed overflow (UB) for an I32
             * zero point within 128 of INT32_MIN / INT32_MAX. Such zero points become 0. */
            for (uint64_t i = 0; d.scheme == QTL_SCHEME_INT8 && d.zero_point_dtype == QTL_DTYPE_I32 &&
                                 !fz_unguarded() && i + 4 <= zalloc;
                 i += 4) {
                int32_t v;
                memcpy(&v, z + i, 4);
                if (v < -2147483520 || v > 2147483520)
                    memset(z + i, 0, 4);
            }
        }
        if (w) {
            fz_cycle(w, wb, pool, npool, &pos);
            d.weight = w;
        }
        uint64_t wb2, sb2, zb2;
        if (qtl_dequant_check(&d, &wb2, &sb2, &zb2, NULL, 0) != QTL_OK || wb2 != wb || sb2 != sb || zb2 != zb)
            abort(); /* the pointers do not change the verdict */
        memset(dst, 0xA5, (size_t)need + 1);
        memset(dst2, 0x5A, (size_t)need + 1);
        int r0 = qtl_dequant(&d, row0, nrows, out, dst, (size_t)need, 1, 0, msg, sizeof msg);
        if (in_range && r0 != QTL_OK && r0 != QTL_ERR_NOMEM)
            abort(); /* the check accepted it, the rows and the destination fit */
        if (!in_range && r0 == QTL_OK)
            abort(); /* rows outside the weight */
        if (r0 == QTL_OK) {
            int r1 = qtl_dequant(&d, row0, nrows, out, dst2, (size_t)need, flags & 0x10 ? 2 : 1, 1, msg, sizeof msg);
            size_t eb = out_bf16 ? 2 : 4, i = 0, nel = (size_t)need / eb;
            while (r1 == QTL_OK && i < nel && same_bits(dst + i * eb, dst2 + i * eb, out_bf16))
                i++;
            if (r1 == QTL_OK && i < nel) {
                uint32_t a = 0, b = 0;
                memcpy(&a, dst + i * eb, eb);
                memcpy(&b, dst2 + i * eb, eb);
                fprintf(stderr, "fuzz_dequant: %s %llux%llu rows [%llu, +%llu): element %zu (row %llu, col %llu) is "
                        "0x%x by the reference, 0x%x by the fast path (%s, %d threads)\n",
                        qtl_dequant_scheme_name(d.scheme), (unsigned long long)d.rows, (unsigned long long)d.cols,
                        (unsigned long long)row0, (unsigned long long)nrows, i,
                        (unsigned long long)(row0 + i / d.cols), (unsigned long long)(i % d.cols), a, b,
                        qtl_dequant_fast_name(), flags & 0x10 ? 2 : 1);
                abort(); /* the fast path and threads give the reference's bits */
            }
            if (r1 != QTL_OK && r1 != QTL_ERR_NOMEM)
                abort();
            if (qtl_dequant(&d, row0, nrows, out, dst2, (size_t)need + 1, 1, 0, NULL, 0) == QTL_OK)
                abort(); /* a destination of the wrong size is refused */
        }
        free(s);
        free(z);
        free(w);
        free(dst);
        free(dst2);
    } else if (rc != QTL_OK) {
        /* refused by the check: qtl_dequant refuses it too (before looking at any pointer).
         * Guard (open bug, tests/fuzz/fuzz_dequant/crash-unchecked-weight-size-*): plan_init checks
         * rows * row_bytes for overflow only when the caller asks for the weight's size, so
         * qtl_dequant accepts a weight the check refuses as "size overflow". */
        unsigned char dst[1];
        int overflow = strstr(msg, "size overflow") != NULL && !fz_unguarded();
        if (!overflow && qtl_dequant(&d, 0, 0, out, dst, 0, 1, 1, NULL, 0) == QTL_OK)
            abort();
    }
    free(g_idx);
    return 0;
}
