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

/* ---- output: 8 f32 values at column c, as f32 or bf16 (RNE, NaN quieted) ----
 * Full vectors use non-temporal stores where aligned: the output is written
 * once and not read back, so it should not evict the input from the cache
 * nor be read for ownership. Each row function ends with an sfence. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m256i bf16_bits(__m256 v);
ALWAYS_INLINE __m128i bf16x8(__m256 v)
{
    __m256i r = bf16_bits(v);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

ALWAYS_INLINE void emit8(void *out, uint64_t c, __m256 v, const int bf16)
{
    if (bf16) {
        uint16_t *o = (uint16_t *)out + c;
        __m128i h = bf16x8(v);
        _mm_storeu_si128((__m128i *)o, h);
    } else {
        float *o = (float *)out + c;
        if (((uintptr_t)o & 31) == 0)
            _mm256_stream_ps(o, v);
        else
            _mm256_storeu_ps(o, v);
    }
}

/* 16 values: for bf16 one 32-byte store instead of two 16-byte ones. */
ALWAYS_INLINE __m256i bf16_bits(__m256 v)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    __m256i x = _mm256_castps_si256(v);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
    __m256i rnd = _mm256_add_epi32(
        x, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1))));
    return _mm256_srli_epi32(_mm256_blendv_epi8(rnd, _mm256_or_si256(x, _mm256_set1_epi32(0x400000)), nan), 16);
}

ALWAYS_INLINE void emit16(void *out, uint64_t c, __m256 a, __m256 b, const int bf16)
{
    if (bf16) {
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_bits(a), bf16_bits(b)), 0xD8);
        _mm256_storeu_si256((__m256i *)((uint16_t *)out + c), packed);
    } else {
        emit8(out, c, a, 0);
        emit8(out, c + 8, b, 0);
    }
}

ALWAYS_INLINE void emit1(void *out, uint64_t c, float v, const int bf16)
{
    if (bf16)
        ((uint16_t *)out)[c] = qtl_f32_to_bf16(v);
    else
        ((float *)out)[c] = v;
}

/* Segments of columns sharing one scale: [c0, c1), group g. */
#define FOR_SEGMENTS(p, row)                                                                                       \
    for (uint64_t c0 = 0, g = 0, cols_ = (p)->d->cols; c0 < cols_; c0 += (p)->seg, g++)                             \
        for (uint64_t c1 = c0 + (p)->seg < cols_ ? c0 + (p)->seg : cols_, once_ = 1; once_; once_ = 0)

ALWAYS_INLINE void k_fp8(const struct dq_plan *p, const struct dq_row *row, void *out, const int bf16)
{
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    FOR_SEGMENTS(p, row) {
        float s = row->s[g];
        __m256 vs = _mm256_set1_ps(s);
        uint64_t c = c0;
        for (; c + 16 <= c1; c += 16)
            emit16(out, c, _mm256_mul_ps(e4m3_to_ps(_mm_loadl_epi64((const __m128i *)(q + c))), vs),
                   _mm256_mul_ps(e4m3_to_ps(_mm_loadl_epi64((const __m128i *)(q + c + 8))), vs), bf16);
        for (; c + 8 <= c1; c += 8)
            emit8(out, c, _mm256_mul_ps(e4m3_to_ps(_mm_loadl_epi64((const __m128i *)(q + c))), vs), bf16);
        for (; c < c1; c++)
            emit1(out, c, qtl__tab.e4m3[q[c]] * s, bf16);
    }
    _mm_sfence();
}

/* Per-column groups (act-order g_idx): gather the scale (and zero point) of
 * each of 8 columns. */
ALWAYS_INLINE __m256 gather_s(const struct dq_row *row, const int32_t *gi)
{
    /* Scalar loads beat vpgatherdd on the Zen cores these machines run on. */
    const float *s = row->s;
    return _mm256_setr_ps(s[gi[0]], s[gi[1]], s[gi[2]], s[gi[3]], s[gi[4]], s[gi[5]], s[gi[6]], s[gi[7]]);
}
ALWAYS_INLINE __m256i gather_z(const struct dq_row *row, const int32_t *gi)
{
    return row->z ? _mm256_i32gather_epi32(row->z, _mm256_loadu_si256((const __m256i *)gi), 4) : _mm256_setzero_si256();
}

ALWAYS_INLINE void k_int8(const struct dq_plan *p, const struct dq_row *row, void *out, const int bf16)
{
    const int8_t *q = (const int8_t *)p->d->weight + row->r * p->row_bytes;
    if (!p->seg) {
        const int32_t *gi = p->d->g_idx;
        uint64_t c = 0, cols = p->d->cols;
        for (; c + 8 <= cols; c += 8) {
            __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + c)));
            __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(x, gather_z(row, gi + c)));
            emit8(out, c, _mm256_mul_ps(v, gather_s(row, gi + c)), bf16);
        }
        for (; c < cols; c++)
            emit1(out, c, (float)(int32_t)((uint32_t)q[c] - (uint32_t)(row->z ? row->z[gi[c]] : 0)) * row->s[gi[c]],
                  bf16);
        _mm_sfence();
        return;
    }
    FOR_SEGMENTS(p, row) {
        float s = row->s[g];
        int32_t z = row->z ? row->z[g] : 0;
        __m256 vs = _mm256_set1_ps(s);
        __m256i vz = _mm256_set1_epi32(z);
        uint64_t c = c0;
        for (; c + 16 <= c1; c += 16) {
            __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + c)));
            __m256i y = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + c + 8)));
            emit16(out, c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(x, vz)), vs),
                   _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(y, vz)), vs), bf16);
        }
        for (; c + 8 <= c1; c += 8) {
            __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + c)));
            emit8(out, c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(x, vz)), vs), bf16);
        }
        for (; c < c1; c++)
            emit1(out, c, (float)(int32_t)((uint32_t)q[c] - (uint32_t)z) * s, bf16); /* int32 wrap, as the vectors */
    }
    _mm_sfence();
}

/* 32 E2M1 codes of 16 packed bytes -> four vectors of exact f32 (low nibble
 * first). An E2M1 value has only its two top bytes non-zero in f32, so two
 * pshufb tables give them directly, sign included. */
ALWAYS_INLINE void e2m1x32(const uint8_t *src, __m256 v[4])
{
    const __m256i t3 = _mm256_setr_epi8(0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, (char)0x80, (char)0xBF,
                                        (char)0xBF, (char)0xBF, (char)0xC0, (char)0xC0, (char)0xC0, (char)0xC0, 0x00,
                                        0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, (char)0x80, (char)0xBF, (char)0xBF,
                                        (char)0xBF, (char)0xC0, (char)0xC0, (char)0xC0, (char)0xC0);
    const __m256i t2 = _mm256_setr_epi8(0x00, 0x00, (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0, 0x00,
                                        0x00, (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0, 0x00, 0x00,
                                        (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0, 0x00, 0x00,
                                        (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0);
    __m128i b = _mm_loadu_si128((const __m128i *)src);
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F));
    __m256i c = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
    __m256i h3 = _mm256_shuffle_epi8(t3, c), h2 = _mm256_shuffle_epi8(t2, c);
    __m256i wl = _mm256_unpacklo_epi8(h2, h3), wh = _mm256_unpackhi_epi8(h2, h3);
    __m256i z = _mm256_setzero_si256();
    __m256i f0 = _mm256_unpacklo_epi16(z, wl), f1 = _mm256_unpackhi_epi16(z, wl);
    __m256i f2 = _mm256_unpacklo_epi16(z, wh), f3 = _mm256_unpackhi_epi16(z, wh);
    v[0] = _mm256_castsi256_ps(_mm256_permute2x128_si256(f0, f1, 0x20));
    v[1] = _mm256_castsi256_ps(_mm256_permute2x128_si256(f2, f3, 0x20));
    v[2] = _mm256_castsi256_ps(_mm256_permute2x128_si256(f0, f1, 0x31));
    v[3] = _mm256_castsi256_ps(_mm256_permute2x128_si256(f2, f3, 0x31));
}

/* Groups of 16 (NVFP4) or 32 (MXFP4): 32 columns per step, two half-scales. */
ALWAYS_INLINE void k_fp4(const struct dq_plan *p, const struct dq_row *row, void *out, const int bf16)
{
    const uint8_t *q = (const uint8_t *)p->d->weight + row->r * p->row_bytes;
    uint64_t c = 0, cols = p->d->cols;
    const unsigned sh = (unsigned)__builtin_ctzll(p->seg); /* seg is 16 or 32: no division in the loop */
    for (; c + 32 <= cols; c += 32) {
        __m256 v[4];
        e2m1x32(q + c / 2, v);
        __m256 sa = _mm256_set1_ps(row->s[c >> sh]), sb = _mm256_set1_ps(row->s[(c + 16) >> sh]);
        emit16(out, c, _mm256_mul_ps(v[0], sa), _mm256_mul_ps(v[1], sa), bf16);
        emit16(out, c + 16, _mm256_mul_ps(v[2], sb), _mm256_mul_ps(v[3], sb), bf16);
    }
    for (; c < cols; c++) {
        uint8_t by = q[c / 2];
        emit1(out, c, ((c & 1) ? qtl__tab.e2m1_hi[by] : qtl__tab.e2m1_lo[by]) * row->s[c >> sh], bf16);
    }
    _mm_sfence();
}

/* Codes of 8 columns starting at c (c a multiple of 8) of a 4- or 8-bit row. */
ALWAYS_INLINE __m256i codes8(const unsigned char *w, uint64_t c, const int bits)
{
    if (bits == 4) {
        uint32_t word;
        memcpy(&word, w + c / 2, 4);
        const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)word), shifts), _mm256_set1_epi32(0xF));
    }
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w + c)));
}

ALWAYS_INLINE int32_t code1(const unsigned char *w, uint64_t c, const int bits)
{
    if (bits == 4) {
        uint32_t word;
        memcpy(&word, w + (c / 8) * 4, 4);
        return (int32_t)((word >> (4 * (c % 8))) & 0xF);
    }
    return w[c];
}

ALWAYS_INLINE void k_packed(const struct dq_plan *p, const struct dq_row *row, void *out, const int bits, const int bf16)
{
    const unsigned char *w = (const unsigned char *)p->d->weight + row->r * p->row_bytes;
    const int32_t half = 1 << (bits - 1);
    if (!p->seg) {
        const int32_t *gi = p->d->g_idx;
        uint64_t c = 0, cols = p->d->cols;
        for (; c + 8 <= cols; c += 8) {
            __m256i x = _mm256_sub_epi32(codes8(w, c, bits), _mm256_set1_epi32(half));
            __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(x, gather_z(row, gi + c)));
            emit8(out, c, _mm256_mul_ps(v, gather_s(row, gi + c)), bf16);
        }
        for (; c < cols; c++)
            emit1(out, c,
                  (float)(int32_t)((uint32_t)code1(w, c, bits) - (uint32_t)half - (uint32_t)(row->z ? row->z[gi[c]] : 0)) *
                      row->s[gi[c]],
                  bf16);
        _mm_sfence();
        return;
    }
    FOR_SEGMENTS(p, row) {
        float s = row->s[g];
        int32_t off = (int32_t)((uint32_t)half + (uint32_t)(row->z ? row->z[g] : 0));
        __m256 vs = _mm256_set1_ps(s);
        __m256i voff = _mm256_set1_epi32(off);
        uint64_t c = c0;
        for (; c + 16 <= c1; c += 16)
            emit16(out, c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(codes8(w, c, bits), voff)), vs),
                   _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(codes8(w, c + 8, bits), voff)), vs), bf16);
        for (; c + 8 <= c1; c += 8)
            emit8(out, c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(codes8(w, c, bits), voff)), vs), bf16);
        for (; c < c1; c++)
            emit1(out, c, (float)(int32_t)((uint32_t)code1(w, c, bits) - (uint32_t)off) * s, bf16);
    }
    _mm_sfence();
}

ALWAYS_INLINE void k_bf16_in(const struct dq_plan *p, const struct dq_row *row, void *out, const int bf16)
{
    const uint16_t *q = (const uint16_t *)((const unsigned char *)p->d->weight + row->r * p->row_bytes);
    uint64_t c = 0, cols = p->d->cols;
    for (; c + 8 <= cols; c += 8) {
        __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(q + c)));
        emit8(out, c, _mm256_castsi256_ps(_mm256_slli_epi32(x, 16)), bf16);
    }
    for (; c < cols; c++)
        emit1(out, c, qtl_bf16_to_f32(q[c]), bf16);
    _mm_sfence();
}

/* Effective scales of row r for group/block granularity, 8 at a time: the
 * same decode and the same IEEE divide/multiply by the global scale as the
 * reference (vdivps is exact), without its per-group branches. */
int qtl__dq_fast_scales(const struct dq_plan *p, uint64_t r, float *s)
{
    const struct qtl_dequant_desc *d = p->d;
    if (!have_avx2() || (p->gran != QTL_SCALE_GROUP && p->gran != QTL_SCALE_BLOCK) ||
        (d->scale_dtype != QTL_DTYPE_F8_E4M3 && d->scale_dtype != QTL_DTYPE_F32 && d->scale_dtype != QTL_DTYPE_BF16 &&
         d->scheme != QTL_SCHEME_MXFP4))
        return 0;
    uint64_t base = (p->gran == QTL_SCALE_GROUP ? r : r / d->block_rows) * p->ngroups, g = 0;
    const unsigned char *sc = d->scale;
    const __m256 glob = _mm256_set1_ps(d->global_scale);
    for (; g + 8 <= p->ngroups; g += 8) {
        __m256 v;
        if (d->scheme == QTL_SCHEME_MXFP4) { /* E8M0: 2^(e-127); 0 -> 2^-127, 255 -> NaN */
            __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sc + base + g)));
            __m256i bits = _mm256_slli_epi32(e, 23);
            bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(e, _mm256_setzero_si256()));
            bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), _mm256_cmpeq_epi32(e, _mm256_set1_epi32(255)));
            v = _mm256_castsi256_ps(bits);
        } else if (d->scale_dtype == QTL_DTYPE_F8_E4M3)
            v = e4m3_to_ps(_mm_loadl_epi64((const __m128i *)(sc + base + g)));
        else if (d->scale_dtype == QTL_DTYPE_F32)
            v = _mm256_loadu_ps((const float *)sc + base + g);
        else
            v = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)sc + base + g))), 16));
        if (d->scheme == QTL_SCHEME_NVFP4_CT)
            v = _mm256_div_ps(v, glob);
        else if (d->scheme == QTL_SCHEME_NVFP4_MODELOPT)
            v = _mm256_mul_ps(v, glob);
        _mm256_storeu_ps(s + g, v);
    }
    for (; g < p->ngroups; g++) {
        float v;
        if (d->scheme == QTL_SCHEME_MXFP4)
            v = qtl__tab.e8m0[sc[base + g]];
        else if (d->scale_dtype == QTL_DTYPE_F8_E4M3)
            v = qtl__tab.e4m3[sc[base + g]];
        else if (d->scale_dtype == QTL_DTYPE_F32)
            memcpy(&v, sc + 4 * (base + g), 4);
        else {
            uint16_t h;
            memcpy(&h, sc + 2 * (base + g), 2);
            v = qtl_bf16_to_f32(h);
        }
        if (d->scheme == QTL_SCHEME_NVFP4_CT)
            v = v / d->global_scale;
        else if (d->scheme == QTL_SCHEME_NVFP4_MODELOPT)
            v = v * d->global_scale;
        s[g] = v;
    }
    return 1;
}

#define WRAP(name, body)                                                                                           \
    static void name##_f32(const struct dq_plan *p, const struct dq_row *row, void *out) { body(p, row, out, 0); } \
    static void name##_bf16(const struct dq_plan *p, const struct dq_row *row, void *out) { body(p, row, out, 1); }
#define K_PACKED4(p, row, out, bf) k_packed(p, row, out, 4, bf)
#define K_PACKED8(p, row, out, bf) k_packed(p, row, out, 8, bf)
WRAP(fast_fp8, k_fp8)
WRAP(fast_int8, k_int8)
WRAP(fast_fp4, k_fp4)
WRAP(fast_packed4, K_PACKED4)
WRAP(fast_packed8, K_PACKED8)
WRAP(fast_bf16in, k_bf16_in)

dq_row_fn qtl__dq_fast(enum qtl_scheme scheme, const struct dq_plan *p, enum qtl_dtype out)
{
    if (!have_avx2())
        return NULL;
    int b = out == QTL_DTYPE_BF16;
#define PICK(name) return b ? name##_bf16 : name##_f32
    switch (scheme) {
    case QTL_SCHEME_NONE:
        if (p->d->weight_dtype == QTL_DTYPE_BF16)
            PICK(fast_bf16in);
        return NULL;
    case QTL_SCHEME_FP8:
        if (p->seg)
            PICK(fast_fp8);
        return NULL;
    case QTL_SCHEME_INT8: PICK(fast_int8);
    case QTL_SCHEME_NVFP4_CT:
    case QTL_SCHEME_NVFP4_MODELOPT:
    case QTL_SCHEME_MXFP4:
        if (p->seg == 16 || p->seg == 32)
            PICK(fast_fp4);
        return NULL;
    case QTL_SCHEME_PACKED_INT:
        if (p->d->bits == 4 && p->seg % 8 == 0)
            PICK(fast_packed4);
        if (p->d->bits == 8 && p->seg % 8 == 0)
            PICK(fast_packed8);
        return NULL;
    default: return NULL;
    }
#undef PICK
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

dq_row_fn qtl__dq_fast(enum qtl_scheme scheme, const struct dq_plan *p, enum qtl_dtype out)
{
    (void)scheme, (void)p, (void)out;
    return NULL;
}

int qtl__dq_fast_scales(const struct dq_plan *p, uint64_t r, float *s)
{
    (void)p, (void)r, (void)s;
    return 0;
}

const char *qtl__dq_fast_name(void) { return "none"; }

void qtl__f32_to_bf16_row(const float *src, uint16_t *dst, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        dst[i] = qtl_f32_to_bf16(src[i]);
}
#endif
