/* Exact conversions between f32 and the checkpoint number formats
 * (formats.md §5). Plain bit arithmetic; no tables are needed for exactness,
 * the 256-entry tables below only make the reference kernels fast. */
#include "minifloat.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float nan_with_sign(unsigned negative) { return u2f(0x7FC00000u | (negative ? 0x80000000u : 0)); }

/* value = (-1)^s * 2^(e - bias) * (1 + m / 2^mbits), or the subnormal
 * 2^(1 - bias) * m / 2^mbits for e == 0; exact in f32 for every format here. */
static float minifloat(unsigned s, unsigned e, unsigned m, int mbits, int bias)
{
    float v;
    if (e == 0)
        v = ldexpf((float)m, 1 - bias - mbits);
    else
        v = ldexpf((float)((1u << mbits) | m), (int)e - bias - mbits);
    return s ? -v : v;
}

float qtl_e4m3_to_f32(uint8_t x)
{
    unsigned s = x >> 7, e = (x >> 3) & 15, m = x & 7;
    if (e == 15 && m == 7)
        return nan_with_sign(s);
    return minifloat(s, e, m, 3, 7);
}

float qtl_e4m3fnuz_to_f32(uint8_t x)
{
    if (x == 0x80)
        return nan_with_sign(0);
    return minifloat(x >> 7, (x >> 3) & 15, x & 7, 3, 8);
}

float qtl_e5m2_to_f32(uint8_t x)
{
    unsigned s = x >> 7, e = (x >> 2) & 31, m = x & 3;
    if (e == 31)
        return m ? nan_with_sign(s) : (s ? -INFINITY : INFINITY);
    return minifloat(s, e, m, 2, 15);
}

float qtl_e5m2fnuz_to_f32(uint8_t x)
{
    if (x == 0x80)
        return nan_with_sign(0);
    return minifloat(x >> 7, (x >> 2) & 31, x & 3, 2, 16);
}

float qtl_e8m0_to_f32(uint8_t x)
{
    if (x == 0xFF)
        return nan_with_sign(0);
    return ldexpf(1.0f, (int)x - 127);
}

float qtl_e2m1_to_f32(uint8_t nibble)
{
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = mag[nibble & 7];
    return (nibble & 8) ? -v : v;
}

float qtl_bf16_to_f32(uint16_t x) { return u2f((uint32_t)x << 16); }

float qtl_f16_to_f32(uint16_t x)
{
    unsigned s = x >> 15, e = (x >> 10) & 31, m = x & 0x3FF;
    if (e == 31) {
        if (!m)
            return s ? -INFINITY : INFINITY;
        return u2f((s ? 0x80000000u : 0) | 0x7FC00000u | (m << 13)); /* quieted, payload kept */
    }
    return minifloat(s, e, m, 10, 15);
}

/* ---- encoders --------------------------------------------------------------- */

uint8_t qtl_f32_to_e4m3(float f)
{
    uint32_t x = f2u(f), a = x & 0x7FFFFFFFu;
    uint8_t sign = (uint8_t)((x >> 24) & 0x80);
    if (a > 0x7F800000u)
        return sign | 0x7F;
    if (a >= 0x43E00000u) /* >= 448, Inf included: saturate */
        return sign | 0x7E;
    if (a < 0x3C800000u) /* below 2^-6: subnormal grid k * 2^-9, k = 0..8 */
        return sign | (uint8_t)nearbyintf(u2f(a) * 512.0f);
    uint32_t r = a - (120u << 23); /* rebias 127 -> 7 */
    r += 0x7FFFFu + ((r >> 20) & 1u);
    return sign | (uint8_t)(r >> 20);
}

uint8_t qtl_f32_to_e2m1(float f)
{
    uint8_t sign = signbit(f) ? 8 : 0;
    if (isnan(f))
        return sign | 7;
    float a = fabsf(f);
    uint8_t c = a <= 0.25f  ? 0
                : a < 0.75f ? 1
                : a <= 1.25f ? 2
                : a < 1.75f  ? 3
                : a <= 2.5f  ? 4
                : a < 3.5f   ? 5
                : a <= 5.0f  ? 6
                             : 7;
    return sign | c;
}

uint8_t qtl_f32_to_e8m0(float f)
{
    if (isnan(f) || isinf(f) || f < 0.0f)
        return 0xFF;
    if (f == 0.0f)
        return 0x00;
    int ex;
    float mant = frexpf(f, &ex) * 2.0f; /* f = mant * 2^(ex-1), mant in [1, 2) */
    int e = ex - 1;
    if (mant > 1.5f || (mant == 1.5f && ((e + 127) & 1)))
        e++;
    int code = e + 127;
    if (code < 0)
        return 0x00;
    if (code > 254)
        return 0xFF;
    return (uint8_t)code;
}

uint16_t qtl_f32_to_bf16(float f)
{
    uint32_t x = f2u(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7FFFu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

uint16_t qtl_f32_to_f16(float f)
{
    uint32_t x = f2u(f), a = x & 0x7FFFFFFFu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    if (a > 0x7F800000u)
        return sign | 0x7E00 | (uint16_t)((a >> 13) & 0x1FF);
    if (a >= 0x477FF000u) /* >= 65520: rounds past 65504 */
        return sign | 0x7C00;
    if (a < 0x38800000u) /* below 2^-14: subnormal grid k * 2^-24 */
        return sign | (uint16_t)nearbyintf(u2f(a) * 16777216.0f);
    uint32_t r = a - (112u << 23); /* rebias 127 -> 15 */
    r += 0xFFFu + ((r >> 13) & 1u);
    return sign | (uint16_t)(r >> 13);
}

/* ---- tables ----------------------------------------------------------------- */

struct qtl_tables qtl__tab;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (int i = 0; i < 256; i++) {
        qtl__tab.e4m3[i] = qtl_e4m3_to_f32((uint8_t)i);
        qtl__tab.e8m0[i] = qtl_e8m0_to_f32((uint8_t)i);
        qtl__tab.e2m1_lo[i] = qtl_e2m1_to_f32((uint8_t)(i & 15));
        qtl__tab.e2m1_hi[i] = qtl_e2m1_to_f32((uint8_t)(i >> 4));
    }
}

const struct qtl_tables *qtl__tables(void)
{
    pthread_once(&tables_once, build_tables);
    return &qtl__tab;
}

/* ---- bulk decode ------------------------------------------------------------ */

/* One loop per dtype (the switch stays outside the loop). */
#define QTL_LOOP(type, expr)                                                                                       \
    for (size_t i = 0; i < n; i++) {                                                                               \
        type v;                                                                                                    \
        memcpy(&v, p + sizeof(type) * i, sizeof(type));                                                            \
        dst[i] = (expr);                                                                                           \
    }                                                                                                              \
    break

int qtl_to_f32(enum qtl_dtype dt, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    const struct qtl_tables *t = qtl__tables();
    switch (dt) {
    case QTL_DTYPE_BOOL: QTL_LOOP(uint8_t, v ? 1.0f : 0.0f);
    case QTL_DTYPE_U8: QTL_LOOP(uint8_t, (float)v);
    case QTL_DTYPE_I8: QTL_LOOP(int8_t, (float)v);
    case QTL_DTYPE_F8_E4M3: QTL_LOOP(uint8_t, t->e4m3[v]);
    case QTL_DTYPE_F8_E5M2: QTL_LOOP(uint8_t, qtl_e5m2_to_f32(v));
    case QTL_DTYPE_F8_E8M0: QTL_LOOP(uint8_t, t->e8m0[v]);
    case QTL_DTYPE_F8_E4M3FNUZ: QTL_LOOP(uint8_t, qtl_e4m3fnuz_to_f32(v));
    case QTL_DTYPE_F8_E5M2FNUZ: QTL_LOOP(uint8_t, qtl_e5m2fnuz_to_f32(v));
    case QTL_DTYPE_F4:
        for (size_t i = 0; i < n; i++)
            dst[i] = (i & 1) ? t->e2m1_hi[p[i / 2]] : t->e2m1_lo[p[i / 2]];
        break;
    case QTL_DTYPE_I16: QTL_LOOP(int16_t, (float)v);
    case QTL_DTYPE_U16: QTL_LOOP(uint16_t, (float)v);
    case QTL_DTYPE_F16: QTL_LOOP(uint16_t, qtl_f16_to_f32(v));
    case QTL_DTYPE_BF16: QTL_LOOP(uint16_t, u2f((uint32_t)v << 16));
    case QTL_DTYPE_I32: QTL_LOOP(int32_t, (float)v);
    case QTL_DTYPE_U32: QTL_LOOP(uint32_t, (float)v);
    case QTL_DTYPE_F32: memcpy(dst, p, 4 * n); break;
    case QTL_DTYPE_I64: QTL_LOOP(int64_t, (float)v);
    case QTL_DTYPE_U64: QTL_LOOP(uint64_t, (float)v);
    case QTL_DTYPE_F64: QTL_LOOP(double, (float)v);
    default: return QTL_ERR_UNSUPPORTED;
    }
    return QTL_OK;
}
