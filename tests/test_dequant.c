/* Dequantization: the worked NVFP4 example of formats.md §7 in both
 * conventions, the pack-quantized vectors of §2.11, every scheme against a
 * per-element model written here, and fast == reference bit for bit for
 * every scheme, granularity, output dtype and thread count. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static uint32_t rng = 777;
static uint32_t rnd(void) { return tu_xorshift(&rng); }

static float *run(const struct qtl_dequant_desc *d, int fast, int threads)
{
    float *out = malloc((d->rows * d->cols + 1) * sizeof *out);
    char msg[256] = "";
    int rc = qtl_dequant(d, 0, d->rows, QTL_DTYPE_F32, out, d->rows * d->cols * 4, threads, fast, msg, sizeof msg);
    TU_EXPECT(rc, QTL_OK, msg);
    return out;
}

static void test_nvfp4_worked_example(void **state)
{
    (void)state;
    static const float row0[16] = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f, 0.7f, -0.8f,
                                   0.9f, -1.0f, 1.1f, -1.2f, 1.3f, -1.4f, 1.5f, -3.0f};
    static const float row1[16] = {1.0f, 0.5f, -0.25f, 0.1f, 0.0f, -0.75f, 0.3f, 0.6f,
                                   -1.0f, 0.2f, 0.05f, -0.5f, 0.9f, -0.9f, 0.4f, -0.33f};
    static const uint8_t packed[16] = {0x90, 0xA1, 0xA2, 0xB3, 0xC4, 0xC4, 0xD5, 0xF5,
                                       0x57, 0x1B, 0xE0, 0x64, 0x2F, 0xD1, 0xF7, 0xC4};
    /* The producer side, computed here: global 896, local scales 0x7E / 0x71, the nibbles. */
    float global = 448.0f * 6.0f / 3.0f;
    uint8_t sc[2] = {qtl_f32_to_e4m3(global * 3.0f / 6.0f), qtl_f32_to_e4m3(global * 1.0f / 6.0f)};
    assert_int_equal(sc[0], 0x7E);
    assert_int_equal(sc[1], 0x71);
    for (int r = 0; r < 2; r++) {
        float s = qtl_e4m3_to_f32(sc[r]) / global;
        const float *w = r ? row1 : row0;
        for (int j = 0; j < 8; j++) {
            uint8_t lo = qtl_f32_to_e2m1(w[2 * j] / s), hi = qtl_f32_to_e2m1(w[2 * j + 1] / s);
            assert_int_equal((uint8_t)(lo | hi << 4), packed[8 * r + j]);
        }
    }
    struct qtl_dequant_desc d = {.scheme = QTL_SCHEME_NVFP4_CT, .rows = 2, .cols = 16, .weight = packed,
                                 .weight_dtype = QTL_DTYPE_U8, .scale = sc, .scale_dtype = QTL_DTYPE_F8_E4M3,
                                 .global_scale = 896.0f};
    static const float want0[16] = {0, -0.25f, 0.25f, -0.5f, 0.5f, -0.5f, 0.75f, -0.75f,
                                    1, -1, 1, -1, 1.5f, -1.5f, 1.5f, -3};
    static const double approx1[16] = {0.964286, 0.482143, -0.241071, 0.080357, 0, -0.642857, 0.321429, 0.642857,
                                       -0.964286, 0.160714, 0.080357, -0.482143, 0.964286, -0.964286, 0.321429,
                                       -0.321429};
    static const float codes1[16] = {6, 3, -1.5f, 0.5f, 0, -4, 2, 4, -6, 1, 0.5f, -3, 6, -6, 2, -2};
    for (int fast = 0; fast < 2; fast++) {
        float *o = run(&d, fast, 1);
        for (int c = 0; c < 16; c++) {
            TU_EQ_F32_BITS(o[c], want0[c]);
            float want = codes1[c] * (144.0f / 896.0f); /* pinned: scale first, then one multiply */
            TU_EQ_F32_BITS(o[16 + c], want);
            assert_true(fabs((double)o[16 + c] - approx1[c]) < 1e-6);
        }
        free(o);
    }
    /* ModelOpt: same codes, weight_scale_2 = amax / (448 * 6) multiplies. */
    d.scheme = QTL_SCHEME_NVFP4_MODELOPT;
    d.global_scale = 3.0f / 2688.0f;
    for (int fast = 0; fast < 2; fast++) {
        float *o = run(&d, fast, 1);
        for (int c = 0; c < 16; c++) {
            TU_EQ_F32_BITS(o[c], want0[c] / 0.5f * (448.0f * d.global_scale));
            TU_EQ_F32_BITS(o[16 + c], codes1[c] * (144.0f * d.global_scale));
            assert_true(fabs((double)o[16 + c] - approx1[c]) < 1e-6);
        }
        free(o);
    }
}

static void test_packed_vectors(void **state)
{
    (void)state;
    const float one = 1.0f;
    /* int4 row [-8..-1, 1, 2, 3, 4] -> [1985229328, 52137] */
    const int32_t w4[2] = {1985229328, 52137};
    struct qtl_dequant_desc d = {.scheme = QTL_SCHEME_PACKED_INT, .rows = 1, .cols = 12, .weight = w4,
                                 .weight_dtype = QTL_DTYPE_I32, .granularity = QTL_SCALE_TENSOR, .scale = &one,
                                 .scale_dtype = QTL_DTYPE_F32, .bits = 4};
    static const float want4[12] = {-8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4};
    for (int fast = 0; fast < 2; fast++) {
        float *o = run(&d, fast, 1);
        assert_memory_equal(o, want4, sizeof want4);
        free(o);
    }
    /* 2 x 16 rows */
    const int32_t w2[4] = {1985229328, 52137, 52137, 1985229328};
    d.rows = 2, d.cols = 16, d.weight = w2;
    float *o = run(&d, 1, 1);
    static const float r0[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, -8, -8, -8, -8};
    static const float r1[16] = {1, 2, 3, 4, -8, -8, -8, -8, -8, -7, -6, -5, -4, -3, -2, -1};
    assert_memory_equal(o, r0, sizeof r0);
    assert_memory_equal(o + 16, r1, sizeof r1);
    free(o);
    /* int8: [1,2,3,4] -> 0x84838281; [-128..-125] -> 0x03020100 */
    const uint32_t w8[2] = {0x84838281u, 0x03020100u};
    d.rows = 2, d.cols = 4, d.weight = w8, d.bits = 8;
    o = run(&d, 1, 1);
    static const float want8[8] = {1, 2, 3, 4, -128, -127, -126, -125};
    assert_memory_equal(o, want8, sizeof want8);
    free(o);
    /* int3, 11 values of 3 (code 7): the dense bitstream straddles words */
    const uint32_t w3[2] = {0xFFFFFFFFu, 0x00000001u};
    d.rows = 1, d.cols = 11, d.weight = w3, d.bits = 3;
    o = run(&d, 0, 1);
    for (int c = 0; c < 11; c++)
        TU_EQ_F32_BITS(o[c], 3.0f);
    free(o);
}

/* ---- a per-element model of every scheme, independent of src/quant/dequant.c ---- */
static float scale_of(const struct qtl_dequant_desc *d, uint64_t i)
{
    switch (d->scale_dtype) {
    case QTL_DTYPE_F32: return ((const float *)d->scale)[i];
    case QTL_DTYPE_BF16: return qtl_bf16_to_f32(((const uint16_t *)d->scale)[i]);
    case QTL_DTYPE_F16: return qtl_f16_to_f32(((const uint16_t *)d->scale)[i]);
    case QTL_DTYPE_F8_E4M3: return qtl_e4m3_to_f32(((const uint8_t *)d->scale)[i]);
    default: return qtl_e8m0_to_f32(((const uint8_t *)d->scale)[i]);
    }
}

static uint32_t bits_at(const uint32_t *words, uint64_t stride, uint64_t pos, uint32_t n)
{
    uint32_t v = 0;
    for (uint32_t b = 0; b < n; b++) {
        uint64_t bit = pos + b;
        v |= ((words[(bit / 32) * stride] >> (bit % 32)) & 1u) << b;
    }
    return v;
}

static float model(const struct qtl_dequant_desc *d, uint64_t r, uint64_t c)
{
    uint64_t G = d->scheme == QTL_SCHEME_MXFP4 ? 32 : (d->scheme == QTL_SCHEME_NVFP4_CT || d->scheme == QTL_SCHEME_NVFP4_MODELOPT) ? 16 : d->group_size;
    enum qtl_granularity gran = G != d->group_size ? QTL_SCALE_GROUP : d->granularity;
    uint64_t ngroups = gran == QTL_SCALE_GROUP ? (d->cols + G - 1) / G : gran == QTL_SCALE_BLOCK ? (d->cols + d->block_cols - 1) / d->block_cols : 1;
    uint64_t g = gran == QTL_SCALE_GROUP ? (d->g_idx ? (uint64_t)d->g_idx[c] : c / G) : gran == QTL_SCALE_BLOCK ? c / d->block_cols : 0;
    uint64_t idx = gran == QTL_SCALE_TENSOR ? 0 : gran == QTL_SCALE_CHANNEL ? r : gran == QTL_SCALE_BLOCK ? (r / d->block_rows) * ngroups + g : r * ngroups + g;
    float s = scale_of(d, idx);
    if (d->scheme == QTL_SCHEME_NVFP4_CT)
        s = s / d->global_scale;
    if (d->scheme == QTL_SCHEME_NVFP4_MODELOPT)
        s = s * d->global_scale;
    const uint8_t *w8 = d->weight;
    switch (d->scheme) {
    case QTL_SCHEME_FP8: return qtl_e4m3_to_f32(w8[r * d->cols + c]) * s;
    case QTL_SCHEME_INT8: {
        int32_t z = !d->zero_point ? 0 : d->zero_point_dtype == QTL_DTYPE_I8 ? ((const int8_t *)d->zero_point)[idx] : ((const int32_t *)d->zero_point)[idx];
        return (float)(((const int8_t *)d->weight)[r * d->cols + c] - z) * s;
    }
    case QTL_SCHEME_PACKED_INT: {
        uint64_t wpr = (d->cols * d->bits + 31) / 32;
        int32_t half = 1 << (d->bits - 1);
        int32_t q = (int32_t)bits_at((const uint32_t *)d->weight + r * wpr, 1, c * d->bits, d->bits) - half;
        int32_t z = d->zero_point ? (int32_t)bits_at((const uint32_t *)d->zero_point + g, ngroups, r * d->bits, d->bits) - half : 0;
        return (float)(q - z) * s;
    }
    default: {
        uint8_t b = w8[r * (d->cols / 2) + c / 2];
        return qtl_e2m1_to_f32((c & 1) ? (uint8_t)(b >> 4) : (uint8_t)(b & 15)) * s;
    }
    }
}

struct buf {
    void *w, *s, *z;
    int32_t *g;
};

static void fill(void *p, uint64_t n) { for (uint64_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)rnd(); }

/* Random tensors for a descriptor; scales are finite, positive and negative. */
static void make(struct qtl_dequant_desc *d, struct buf *b, int with_zp, int with_gidx)
{
    uint64_t wb, sb, zb;
    char msg[256];
    d->zero_point = with_zp ? (void *)1 : NULL; /* sized by check, filled below */
    if (with_gidx) {
        uint64_t ng = (d->cols + d->group_size - 1) / d->group_size;
        b->g = malloc(d->cols * sizeof *b->g);
        for (uint64_t c = 0; c < d->cols; c++)
            b->g[c] = (int32_t)(rnd() % ng);
        d->g_idx = b->g;
    }
    d->weight = d->scale = (void *)1;
    TU_EXPECT(qtl_dequant_check(d, &wb, &sb, &zb, msg, sizeof msg), QTL_OK, msg);
    b->w = malloc(wb + 8);
    b->s = malloc(sb + 8);
    fill(b->w, wb);
    fill(b->s, sb);
    if (d->scale_dtype == QTL_DTYPE_F32 || d->scale_dtype == QTL_DTYPE_BF16 || d->scale_dtype == QTL_DTYPE_F16) {
        unsigned es = qtl_dtype_bits(d->scale_dtype) / 8;
        for (uint64_t i = 0; i < sb / es; i++) {
            float v = ldexpf((float)(rnd() % 1000 + 1), -(int)(rnd() % 12)) * ((rnd() & 1) ? -1.0f : 1.0f);
            if (es == 4) memcpy((uint8_t *)b->s + 4 * i, &v, 4);
            else { uint16_t h = es == 2 && d->scale_dtype == QTL_DTYPE_BF16 ? qtl_f32_to_bf16(v) : qtl_f32_to_f16(v); memcpy((uint8_t *)b->s + 2 * i, &h, 2); }
        }
    }
    d->weight = b->w;
    d->scale = b->s;
    if (with_zp) {
        b->z = malloc(zb + 8);
        fill(b->z, zb);
        d->zero_point = b->z;
    }
}

static void release(struct buf *b)
{
    free(b->w);
    free(b->s);
    free(b->z);
    free(b->g);
    memset(b, 0, sizeof *b);
}

static void compare_all(struct qtl_dequant_desc *d, const char *what)
{
    float *ref = run(d, 0, 1);
    for (uint64_t r = 0; r < d->rows; r++)
        for (uint64_t c = 0; c < d->cols; c++) {
            float m = model(d, r, c);
            uint32_t a = f2u(ref[r * d->cols + c]), b = f2u(m);
            if (a != b && !(isnan(m) && isnan(ref[r * d->cols + c])))
                fail_msg("%s: ref(%llu,%llu) = %08x, model %08x", what, (unsigned long long)r, (unsigned long long)c, a, b);
        }
    for (int fast = 0; fast < 2; fast++)
        for (int t = 1; t <= 3; t++) {
            if (!fast && t == 1)
                continue;
            float *o = run(d, fast, t);
            if (memcmp(o, ref, d->rows * d->cols * 4) != 0)
                fail_msg("%s: fast=%d threads=%d differs from the reference", what, fast, t);
            free(o);
        }
    /* bf16 output is the RNE of the f32 result; a row range matches too */
    size_t n = d->rows * d->cols;
    uint16_t *bf = malloc(n * 2 + 2);
    char msg[256];
    for (int fast = 0; fast < 2; fast++) {
        TU_EXPECT(qtl_dequant(d, 0, d->rows, QTL_DTYPE_BF16, bf, n * 2, 2, fast, msg, sizeof msg), QTL_OK, msg);
        for (size_t i = 0; i < n; i++)
            if (bf[i] != qtl_f32_to_bf16(ref[i]))
                fail_msg("%s: bf16[%zu] = %04x, want %04x", what, i, bf[i], qtl_f32_to_bf16(ref[i]));
    }
    if (d->rows > 2) {
        float *part = malloc(d->cols * 2 * 4);
        TU_EXPECT(qtl_dequant(d, 1, 2, QTL_DTYPE_F32, part, d->cols * 8, 1, 1, msg, sizeof msg), QTL_OK, msg);
        assert_memory_equal(part, ref + d->cols, d->cols * 8);
        free(part);
    }
    free(bf);
    free(ref);
}

static void test_every_scheme(void **state)
{
    (void)state;
    static const enum qtl_dtype sdt[] = {QTL_DTYPE_F32, QTL_DTYPE_BF16, QTL_DTYPE_F16, QTL_DTYPE_F8_E4M3};
    static const uint64_t shapes[][2] = {{5, 7}, {9, 130}, {3, 256}, {17, 64}};
    for (size_t sh = 0; sh < 4; sh++) {
        uint64_t R = shapes[sh][0], C = shapes[sh][1];
        for (size_t si = 0; si < 4; si++) {
            char what[128];
            struct buf b = {0};
            struct qtl_dequant_desc d;
            /* FP8: tensor, channel, block (ragged), group */
            for (int gr = 0; gr < 4; gr++) {
                d = (struct qtl_dequant_desc){.scheme = QTL_SCHEME_FP8, .rows = R, .cols = C, .weight_dtype = QTL_DTYPE_F8_E4M3,
                                              .granularity = (enum qtl_granularity)gr, .group_size = 32, .block_rows = 2,
                                              .block_cols = 3, .scale_dtype = sdt[si]};
                if (gr == QTL_SCALE_BLOCK && C >= 128)
                    d.block_rows = d.block_cols = 128;
                make(&d, &b, 0, 0);
                snprintf(what, sizeof what, "fp8 %llux%llu gran %d scale %s", (unsigned long long)R, (unsigned long long)C, gr, qtl_dtype_name(sdt[si]));
                compare_all(&d, what);
                release(&b);
            }
            if (sdt[si] == QTL_DTYPE_F8_E4M3)
                continue;
            /* INT8: channel sym/asym (I8 and I32 zp), group with and without g_idx */
            for (int v = 0; v < 5; v++) {
                d = (struct qtl_dequant_desc){.scheme = QTL_SCHEME_INT8, .rows = R, .cols = C, .weight_dtype = QTL_DTYPE_I8,
                                              .granularity = v < 3 ? QTL_SCALE_CHANNEL : QTL_SCALE_GROUP, .group_size = 16,
                                              .scale_dtype = sdt[si], .zero_point_dtype = v == 2 ? QTL_DTYPE_I32 : QTL_DTYPE_I8};
                make(&d, &b, v == 1 || v == 2 || v == 4, v == 4);
                if (v == 2) /* keep I32 zero points in range */
                    for (uint64_t i = 0; i < R; i++)
                        ((int32_t *)b.z)[i] %= 1000;
                snprintf(what, sizeof what, "int8 %llux%llu v%d", (unsigned long long)R, (unsigned long long)C, v);
                compare_all(&d, what);
                release(&b);
            }
            /* packed int4/int8/int3: channel, group, asym, g_idx */
            static const uint32_t bitsv[] = {4, 8, 3};
            for (int bi = 0; bi < 3; bi++)
                for (int v = 0; v < 4; v++) {
                    d = (struct qtl_dequant_desc){.scheme = QTL_SCHEME_PACKED_INT, .rows = R, .cols = C, .weight_dtype = QTL_DTYPE_I32,
                                                  .granularity = v == 0 ? QTL_SCALE_CHANNEL : QTL_SCALE_GROUP, .group_size = 32,
                                                  .scale_dtype = sdt[si], .zero_point_dtype = QTL_DTYPE_I32, .bits = bitsv[bi]};
                    make(&d, &b, v >= 2, v == 3);
                    snprintf(what, sizeof what, "packed%u %llux%llu v%d", bitsv[bi], (unsigned long long)R, (unsigned long long)C, v);
                    compare_all(&d, what);
                    release(&b);
                }
        }
        if (C % 2)
            continue;
        /* FP4 schemes */
        struct buf b = {0};
        static const enum qtl_scheme fp4[] = {QTL_SCHEME_NVFP4_CT, QTL_SCHEME_NVFP4_MODELOPT, QTL_SCHEME_MXFP4};
        for (int k = 0; k < 3; k++) {
            struct qtl_dequant_desc d = {.scheme = fp4[k], .rows = R, .cols = C, .weight_dtype = QTL_DTYPE_U8,
                                         .scale_dtype = k == 2 ? QTL_DTYPE_U8 : QTL_DTYPE_F8_E4M3,
                                         .global_scale = k == 1 ? 3.0f / 2688.0f : 896.0f};
            make(&d, &b, 0, 0);
            char what[64];
            snprintf(what, sizeof what, "%s %llux%llu", qtl_dequant_scheme_name(fp4[k]), (unsigned long long)R, (unsigned long long)C);
            compare_all(&d, what);
            release(&b);
        }
    }
    /* passthrough */
    uint16_t h[6] = {0x3C00, 0xC000, 0x7C00, 0x0001, 0x8000, 0x7E00};
    struct qtl_dequant_desc d = {.scheme = QTL_SCHEME_NONE, .rows = 2, .cols = 3, .weight = h, .weight_dtype = QTL_DTYPE_F16};
    float *o = run(&d, 1, 1);
    TU_EQ_F32_BITS(o[0], 1.0f);
    TU_EQ_F32_BITS(o[1], -2.0f);
    assert_true(isinf(o[2]));
    TU_EQ_F32_BITS(o[3], ldexpf(1, -24));
    assert_true(signbit(o[4]));
    assert_true(isnan(o[5]));
    free(o);
}

static void test_fp8_all_codes(void **state)
{
    (void)state;
    /* every E4M3 code, NaN and subnormals included, times several scales */
    uint8_t w[256 * 4];
    float s[4] = {1.0f, -0.5f, 0x1p-20f, 3.0e38f};
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 256; c++)
            w[r * 256 + c] = (uint8_t)c;
    struct qtl_dequant_desc d = {.scheme = QTL_SCHEME_FP8, .rows = 4, .cols = 256, .weight = w, .weight_dtype = QTL_DTYPE_F8_E4M3,
                                 .granularity = QTL_SCALE_CHANNEL, .scale = s, .scale_dtype = QTL_DTYPE_F32};
    float *ref = run(&d, 0, 1), *fast = run(&d, 1, 1);
    assert_memory_equal(ref, fast, sizeof(float) * 1024);
    for (int c = 0; c < 256; c++)
        if ((c & 0x7F) != 0x7F)
            TU_EQ_F32_BITS(ref[c], qtl_e4m3_to_f32((uint8_t)c));
    assert_true(isinf(ref[3 * 256 + 0x7E])); /* 448 * 3e38 overflows like the reference multiply */
    free(ref);
    free(fast);
}

static void test_check_errors(void **state)
{
    (void)state;
    char msg[256];
    uint8_t w[64] = {0};
    float s[8] = {1};
    int32_t gi[4] = {0, 1, 2, 9};
    struct qtl_dequant_desc d = {.scheme = QTL_SCHEME_FP8, .rows = 2, .cols = 4, .weight = w, .weight_dtype = QTL_DTYPE_I8,
                                 .scale = s, .scale_dtype = QTL_DTYPE_F32};
    assert_int_equal(qtl_dequant_check(&d, NULL, NULL, NULL, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "F8_E4M3"));
    d.weight_dtype = QTL_DTYPE_F8_E4M3;
    uint64_t wb, sb, zb;
    assert_int_equal(qtl_dequant_check(&d, &wb, &sb, &zb, msg, sizeof msg), QTL_OK);
    TU_EQ_U64(wb, 8);
    TU_EQ_U64(sb, 4);
    TU_EQ_U64(zb, 0);
    d.granularity = QTL_SCALE_BLOCK;
    assert_int_equal(qtl_dequant_check(&d, NULL, NULL, NULL, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    d.block_rows = 128, d.block_cols = 128;
    assert_int_equal(qtl_dequant_check(&d, &wb, &sb, &zb, msg, sizeof msg), QTL_OK);
    TU_EQ_U64(sb, 4);
    d = (struct qtl_dequant_desc){.scheme = QTL_SCHEME_PACKED_INT, .rows = 2, .cols = 4, .weight = w, .weight_dtype = QTL_DTYPE_I32,
                                  .granularity = QTL_SCALE_GROUP, .group_size = 1, .scale = s, .scale_dtype = QTL_DTYPE_F32, .bits = 4, .g_idx = gi};
    assert_int_equal(qtl_dequant_check(&d, NULL, NULL, NULL, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "g_idx[3] = 9"));
    gi[3] = 3;
    assert_int_equal(qtl_dequant_check(&d, &wb, &sb, NULL, msg, sizeof msg), QTL_OK);
    TU_EQ_U64(wb, 8);
    TU_EQ_U64(sb, 32);
    d.bits = 9;
    assert_int_equal(qtl_dequant_check(&d, NULL, NULL, NULL, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    d = (struct qtl_dequant_desc){.scheme = QTL_SCHEME_NVFP4_CT, .rows = 1, .cols = 3, .weight = w, .weight_dtype = QTL_DTYPE_U8,
                                  .scale = w, .scale_dtype = QTL_DTYPE_F8_E4M3, .global_scale = 1};
    assert_int_equal(qtl_dequant_check(&d, NULL, NULL, NULL, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    d.cols = 32;
    d.scale_dtype = QTL_DTYPE_F32;
    assert_int_equal(qtl_dequant_check(&d, NULL, NULL, NULL, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    d.scale_dtype = QTL_DTYPE_F8_E4M3;
    assert_int_equal(qtl_dequant_check(&d, &wb, &sb, NULL, msg, sizeof msg), QTL_OK);
    TU_EQ_U64(wb, 16);
    TU_EQ_U64(sb, 2);
    float out[32];
    assert_int_equal(qtl_dequant(&d, 0, 2, QTL_DTYPE_F32, out, sizeof out, 1, 1, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_dequant(&d, 0, 1, QTL_DTYPE_F32, out, 64, 1, 1, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_dequant(&d, 0, 1, QTL_DTYPE_F16, out, 64, 1, 1, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_string_equal(qtl_dequant_scheme_name(QTL_SCHEME_MXFP4), "mxfp4");
    assert_null(qtl_dequant_scheme_name(QTL_SCHEME_COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nvfp4_worked_example),
        cmocka_unit_test(test_packed_vectors),
        cmocka_unit_test(test_every_scheme),
        cmocka_unit_test(test_fp8_all_codes),
        cmocka_unit_test(test_check_errors),
    };
    printf("fast path: %s\n", qtl_dequant_fast_name());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
