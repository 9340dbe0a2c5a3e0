/* AVX2 fast paths for dequantization (compiled with -mavx2, used only when
 * CPUID reports AVX2). Each kernel reproduces the reference arithmetic
 * exactly: the same decoded value times the same effective scale, one
 * multiply, no FMA; minifloats are decoded with integer bit operations only,
 * so the flush-to-zero / denormals-are-zero modes cannot change them. */
#include "dequant_internal.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

static int have_avx2(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
}

/* E4M3FN bytes (8 in the low half of b8) -> exact f32. */
static inline __m256 e4m3_to_ps(__m128i b8)
{
    __m256i x = _mm256_cvtepu8_epi32(b8);
    __m256i mag = _mm256_and_si256(x, _mm256_set1_epi32(0x7F));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x80)), 24);
    __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23));
    __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(0x1p-9f)); /* e == 0: m * 2^-9 */
    __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(8), mag);
    __m256i is_nan = _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F));
    __m256 v = _mm256_blendv_ps(_mm256_castsi256_ps(normal), sub, _mm256_castsi256_ps(is_sub));
    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), _mm256_castsi256_ps(is_nan));
    return _mm256_or_ps(v, _mm256_castsi256_ps(sign));
}

static void fast_fp8(const struct dq_plan *p, const struct dq_row *row, float *out)
{
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    uint64_t cols = p->d->cols;
    for (uint64_t c0 = 0, g = 0; c0 < cols; c0 += p->seg, g++) {
        uint64_t c1 = c0 + p->seg < cols ? c0 + p->seg : cols, c = c0;
        float s = row->s[g];
        __m256 vs = _mm256_set1_ps(s);
        for (; c + 8 <= c1; c += 8) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(q + c));
            _mm256_storeu_ps(out + c, _mm256_mul_ps(e4m3_to_ps(b), vs));
        }
        for (; c < c1; c++)
            out[c] = qtl__tab.e4m3[q[c]] * s;
    }
}

static void fast_int8(const struct dq_plan *p, const struct dq_row *row, float *out)
{
    const int8_t *q = (const int8_t *)p->d->weight + row->r * p->row_bytes;
    uint64_t cols = p->d->cols;
    for (uint64_t c0 = 0, g = 0; c0 < cols; c0 += p->seg, g++) {
        uint64_t c1 = c0 + p->seg < cols ? c0 + p->seg : cols, c = c0;
        float s = row->s[g];
        int32_t z = row->z ? row->z[g] : 0;
        __m256 vs = _mm256_set1_ps(s);
        __m256i vz = _mm256_set1_epi32(z);
        for (; c + 8 <= c1; c += 8) {
            __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + c)));
            __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(x, vz));
            _mm256_storeu_ps(out + c, _mm256_mul_ps(v, vs));
        }
        for (; c < c1; c++)
            out[c] = (float)(q[c] - z) * s;
    }
}

/* 16 E2M1 codes of 8 packed bytes -> two vectors of exact f32 (low nibble first). */
static inline void e2m1x16(const uint8_t *src, __m256 *a, __m256 *b)
{
    const __m256 mag = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    __m128i bytes = _mm_loadl_epi64((const __m128i *)src);
    __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
    __m128i codes = _mm_unpacklo_epi8(lo, hi);
    __m256i c0 = _mm256_cvtepu8_epi32(codes), c1 = _mm256_cvtepu8_epi32(_mm_srli_si128(codes, 8));
    __m256 v0 = _mm256_permutevar8x32_ps(mag, c0), v1 = _mm256_permutevar8x32_ps(mag, c1);
    __m256i s0 = _mm256_slli_epi32(_mm256_and_si256(c0, _mm256_set1_epi32(8)), 28);
    __m256i s1 = _mm256_slli_epi32(_mm256_and_si256(c1, _mm256_set1_epi32(8)), 28);
    *a = _mm256_or_ps(v0, _mm256_castsi256_ps(s0));
    *b = _mm256_or_ps(v1, _mm256_castsi256_ps(s1));
}

static void fast_fp4(const struct dq_plan *p, const struct dq_row *row, float *out)
{
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    uint64_t cols = p->d->cols;
    for (uint64_t c0 = 0, g = 0; c0 < cols; c0 += p->seg, g++) {
        uint64_t c1 = c0 + p->seg < cols ? c0 + p->seg : cols, c = c0;
        float s = row->s[g];
        __m256 vs = _mm256_set1_ps(s);
        for (; c + 16 <= c1; c += 16) {
            __m256 a, b;
            e2m1x16(q + c / 2, &a, &b);
            _mm256_storeu_ps(out + c, _mm256_mul_ps(a, vs));
            _mm256_storeu_ps(out + c + 8, _mm256_mul_ps(b, vs));
        }
        for (; c < c1; c++) {
            uint8_t by = q[c / 2];
            out[c] = ((c & 1) ? qtl__tab.e2m1_hi[by] : qtl__tab.e2m1_lo[by]) * s;
        }
    }
}

/* 4-bit pack-quantized, groups a multiple of 8 columns (whole words). */
static void fast_packed4(const struct dq_plan *p, const struct dq_row *row, float *out)
{
    const unsigned char *w = (const unsigned char *)p->d->weight + row->r * p->row_bytes;
    uint64_t cols = p->d->cols;
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    for (uint64_t c0 = 0, g = 0; c0 < cols; c0 += p->seg, g++) {
        uint64_t c1 = c0 + p->seg < cols ? c0 + p->seg : cols, c = c0;
        float s = row->s[g];
        int32_t off = 8 + (row->z ? row->z[g] : 0);
        __m256 vs = _mm256_set1_ps(s);
        __m256i voff = _mm256_set1_epi32(off);
        for (; c + 8 <= c1; c += 8) {
            uint32_t word;
            memcpy(&word, w + c / 2, 4);
            __m256i x = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)word), shifts),
                                         _mm256_set1_epi32(0xF));
            _mm256_storeu_ps(out + c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(x, voff)), vs));
        }
        for (; c < c1; c++) {
            uint32_t word;
            memcpy(&word, w + (c / 8) * 4, 4);
            out[c] = (float)((int32_t)((word >> (4 * (c % 8))) & 0xF) - off) * s;
        }
    }
}

/* 8-bit pack-quantized: bytes of the words are the codes, in order. */
static void fast_packed8(const struct dq_plan *p, const struct dq_row *row, float *out)
{
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    uint64_t cols = p->d->cols;
    for (uint64_t c0 = 0, g = 0; c0 < cols; c0 += p->seg, g++) {
        uint64_t c1 = c0 + p->seg < cols ? c0 + p->seg : cols, c = c0;
        float s = row->s[g];
        int32_t off = 128 + (row->z ? row->z[g] : 0);
        __m256 vs = _mm256_set1_ps(s);
        __m256i voff = _mm256_set1_epi32(off);
        for (; c + 8 <= c1; c += 8) {
            __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + c)));
            _mm256_storeu_ps(out + c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(x, voff)), vs));
        }
        for (; c < c1; c++)
            out[c] = (float)((int32_t)q[c] - off) * s;
    }
}

dq_row_fn qtl__dq_fast(enum qtl_scheme scheme, const struct dq_plan *p)
{
    if (!have_avx2() || !p->seg)
        return NULL; /* g_idx: the reference gathers per column */
    switch (scheme) {
    case QTL_SCHEME_FP8: return fast_fp8;
    case QTL_SCHEME_INT8: return fast_int8;
    case QTL_SCHEME_NVFP4_CT:
    case QTL_SCHEME_NVFP4_MODELOPT:
    case QTL_SCHEME_MXFP4: return p->seg % 16 == 0 ? fast_fp4 : NULL;
    case QTL_SCHEME_PACKED_INT:
        if (p->d->bits == 4 && p->seg % 8 == 0)
            return fast_packed4;
        if (p->d->bits == 8 && p->seg % 4 == 0)
            return fast_packed8;
        return NULL;
    default: return NULL;
    }
}

const char *qtl__dq_fast_name(void) { return have_avx2() ? "avx2" : "none"; }

static inline uint16_t bf16_one(float f) { return qtl_f32_to_bf16(f); }

void qtl__f32_to_bf16_row(const float *src, uint16_t *dst, uint64_t n)
{
    uint64_t i = 0;
    if (have_avx2()) {
        const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
        const __m256i bias = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x400000);
        for (; i + 16 <= n; i += 16) {
            __m256i r[2];
            for (int k = 0; k < 2; k++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(src + i + 8 * k));
                __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
                __m256i rnd = _mm256_add_epi32(x, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(x, 16), one)));
                __m256i v = _mm256_blendv_epi8(rnd, _mm256_or_si256(x, quiet), nan);
                r[k] = _mm256_srli_epi32(v, 16);
            }
            __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
            _mm256_storeu_si256((__m256i *)(dst + i), packed);
        }
    }
    for (; i < n; i++)
        dst[i] = bf16_one(src[i]);
}

#else /* not x86 */

dq_row_fn qtl__dq_fast(enum qtl_scheme scheme, const struct dq_plan *p)
{
    (void)scheme, (void)p;
    return NULL;
}

const char *qtl__dq_fast_name(void) { return "none"; }

void qtl__f32_to_bf16_row(const float *src, uint16_t *dst, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        dst[i] = qtl_f32_to_bf16(src[i]);
}
#endif
