/* Minifloat conversions: every bit pattern against an independent decoder
 * written here (double arithmetic from the format parameters), encoders
 * against a nearest-value oracle (exhaustive search over the decoded values,
 * ties to the even code) on boundaries, ties, specials and millions of
 * random inputs, plus the named vectors of formats.md §5. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

enum kind { FN, FNUZ, IEEE, UNSIGNED_EXP, PLAIN };

/* Independent decoder: value of `code` in a (1, ebits, mbits) format. */
static double ref_decode(unsigned code, int ebits, int mbits, int bias, enum kind k, int *is_nan, int *is_inf)
{
    *is_nan = *is_inf = 0;
    if (k == UNSIGNED_EXP) {
        if (code == 0xFF)
            *is_nan = 1;
        return pow(2.0, (double)code - 127.0);
    }
    unsigned nbits = 1 + (unsigned)ebits + (unsigned)mbits;
    unsigned s = (code >> (nbits - 1)) & 1, e = (code >> mbits) & ((1u << ebits) - 1), m = code & ((1u << mbits) - 1);
    unsigned emax = (1u << ebits) - 1, mmax = (1u << mbits) - 1;
    if (k == FN && e == emax && m == mmax)
        *is_nan = 1;
    if (k == FNUZ && s == 1 && e == 0 && m == 0)
        *is_nan = 1;
    if (k == IEEE && e == emax) {
        if (m)
            *is_nan = 1;
        else
            *is_inf = 1;
    }
    double v = e == 0 ? ldexp((double)m / (double)(1u << mbits), 1 - bias)
                      : ldexp(1.0 + (double)m / (double)(1u << mbits), (int)e - bias);
    return s ? -v : v;
}

static void check_decoder(float (*dec)(uint8_t), int ebits, int mbits, int bias, enum kind k, unsigned ncodes)
{
    for (unsigned c = 0; c < ncodes; c++) {
        int nan, inf;
        double want = ref_decode(c, ebits, mbits, bias, k, &nan, &inf);
        float got = dec((uint8_t)c);
        if (nan) {
            if (!isnan(got))
                fail_msg("code 0x%02x: got %g, want NaN", c, (double)got);
            continue;
        }
        if (inf) {
            if (!isinf(got) || (got < 0) != (want < 0))
                fail_msg("code 0x%02x: got %g, want inf", c, (double)got);
            continue;
        }
        if ((double)got != want || !signbit(got) != !signbit(want))
            fail_msg("code 0x%02x: got %.9g, want %.9g", c, (double)got, want);
    }
}

static float e2m1_u8(uint8_t x) { return qtl_e2m1_to_f32(x); }

static void test_decode_exhaustive(void **state)
{
    (void)state;
    check_decoder(qtl_e4m3_to_f32, 4, 3, 7, FN, 256);
    check_decoder(qtl_e4m3fnuz_to_f32, 4, 3, 8, FNUZ, 256);
    check_decoder(qtl_e5m2_to_f32, 5, 2, 15, IEEE, 256);
    check_decoder(qtl_e5m2fnuz_to_f32, 5, 2, 16, FNUZ, 256);
    check_decoder(qtl_e8m0_to_f32, 8, 0, 127, UNSIGNED_EXP, 256);
    check_decoder(e2m1_u8, 2, 1, 1, PLAIN, 16); /* no Inf, no NaN */
    for (unsigned c = 0; c < 65536; c++) {
        int nan, inf;
        double want = ref_decode(c, 5, 10, 15, IEEE, &nan, &inf);
        float got = qtl_f16_to_f32((uint16_t)c);
        if (nan) {
            assert_true(isnan(got));
        } else if (inf) {
            assert_true(isinf(got));
            assert_int_equal(got < 0, want < 0);
        } else if ((double)got != want || !signbit(got) != !signbit(want)) {
            fail_msg("f16 0x%04x: got %.9g, want %.9g", c, (double)got, want);
        }
        want = ref_decode(c, 8, 7, 127, IEEE, &nan, &inf);
        got = qtl_bf16_to_f32((uint16_t)c);
        if (nan)
            assert_true(isnan(got));
        else if (inf)
            assert_true(isinf(got));
        else if ((double)got != want)
            fail_msg("bf16 0x%04x: got %.9g, want %.9g", c, (double)got, want);
    }
}

static void test_decode_named(void **state)
{
    (void)state;
    /* formats.md §5.1 table corners and §5.2-§5.4 */
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x7E), 448.0f);
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x78), 256.0f);
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x08), 0.015625f);
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x01), ldexpf(1, -9));
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x1D), 0.1015625f);
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x38), 1.0f);
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x80), -0.0f); /* signbit and == 0: exactly -0 */
    assert_true(isnan(qtl_e4m3_to_f32(0x7F)));
    assert_true(isnan(qtl_e4m3_to_f32(0xFF)));
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0x7F), u2f(0x7FC00000u));
    TU_EQ_F32_BITS(qtl_e4m3_to_f32(0xFF), u2f(0xFFC00000u));
    TU_EQ_F32_BITS(qtl_e4m3fnuz_to_f32(0x7F), 240.0f);
    assert_true(isnan(qtl_e4m3fnuz_to_f32(0x80)));
    TU_EQ_F32_BITS(qtl_e4m3fnuz_to_f32(0x08), ldexpf(1, -7));
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x3C), 1.0f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x40), 2.0f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0xBC), -1.0f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x38), 0.5f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x3E), 1.5f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x42), 3.0f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x7B), 57344.0f);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x7C), INFINITY);
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0xFC), -INFINITY);
    assert_true(isnan(qtl_e5m2_to_f32(0x7D)));
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x01), ldexpf(1, -16));
    TU_EQ_F32_BITS(qtl_e5m2_to_f32(0x04), ldexpf(1, -14));
    TU_EQ_F32_BITS(qtl_e5m2fnuz_to_f32(0x7F), 57344.0f);
    assert_true(isnan(qtl_e5m2fnuz_to_f32(0x80)));
    TU_EQ_F32_BITS(qtl_e8m0_to_f32(127), 1.0f);
    TU_EQ_F32_BITS(qtl_e8m0_to_f32(0), ldexpf(1, -127));
    TU_EQ_F32_BITS(qtl_e8m0_to_f32(254), ldexpf(1, 127));
    assert_true(isnan(qtl_e8m0_to_f32(255)));
    static const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
    for (int c = 0; c < 16; c++) /* bit-exact: value and sign (codes 8..15 negative, 8 is -0) */
        TU_EQ_F32_BITS(qtl_e2m1_to_f32((uint8_t)c), e2m1[c]);
    TU_EQ_F32_BITS(qtl_f16_to_f32(0x3C00), 1.0f);
    TU_EQ_F32_BITS(qtl_f16_to_f32(0x7BFF), 65504.0f);
    TU_EQ_F32_BITS(qtl_f16_to_f32(0x0001), ldexpf(1, -24));
    TU_EQ_F32_BITS(qtl_f16_to_f32(0x7D01), u2f(0x7FC00000u | (0x101u << 13))); /* sNaN quieted, payload kept */
    TU_EQ_F32_BITS(qtl_bf16_to_f32(0x3F80), 1.0f);
    /* F4 in bytes: low nibble = even element */
    const uint8_t packed[1] = {0x9A}; /* element 0 = 0xA (-1), element 1 = 0x9 (-0.5) */
    float two[2];
    assert_int_equal(qtl_to_f32(QTL_DTYPE_F4, packed, 2, two), QTL_OK);
    TU_EQ_F32_BITS(two[0], -1.0f);
    TU_EQ_F32_BITS(two[1], -0.5f);
}

/* ---- encoder oracle ---- */
struct grid {
    double v[70000];
    unsigned code[70000];
    size_t n;
};

static int cmp_grid(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return (*x > *y) - (*x < *y);
}

/* The non-negative finite values of a format, ascending, with their codes. */
static void build_grid(struct grid *g, float (*dec)(unsigned), unsigned ncodes)
{
    struct {
        double v;
        unsigned c;
    } *tmp = malloc(ncodes * sizeof *tmp);
    size_t n = 0;
    for (unsigned c = 0; c < ncodes; c++) {
        float f = dec(c);
        if (isnan(f) || isinf(f) || signbit(f))
            continue;
        tmp[n].v = f;
        tmp[n].c = c;
        n++;
    }
    qsort(tmp, n, sizeof *tmp, cmp_grid);
    g->n = n;
    for (size_t i = 0; i < n; i++) {
        g->v[i] = tmp[i].v;
        g->code[i] = tmp[i].c;
    }
    free(tmp);
}

/* Nearest grid value to |x| (ties to the even code), as a code; beyond the
 * top: `overflow` (a code) when >= the top plus half a step (IEEE), else the top. */
static unsigned oracle(const struct grid *g, double a, int ieee_overflow, unsigned overflow)
{
    size_t lo = 0, hi = g->n - 1;
    if (a >= g->v[hi]) {
        if (ieee_overflow) {
            double step = g->v[hi] - g->v[hi - 1];
            if (a >= g->v[hi] + step / 2)
                return overflow;
        }
        return g->code[hi];
    }
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (g->v[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dl = a - g->v[lo], dh = g->v[hi] - a;
    if (dl < dh)
        return g->code[lo];
    if (dh < dl)
        return g->code[hi];
    return (g->code[lo] & 1) ? g->code[hi] : g->code[lo];
}

static float dec_e4m3(unsigned c) { return qtl_e4m3_to_f32((uint8_t)c); }
static float dec_e2m1(unsigned c) { return qtl_e2m1_to_f32((uint8_t)c); }
static float dec_f16(unsigned c) { return qtl_f16_to_f32((uint16_t)c); }
static float dec_bf16(unsigned c) { return qtl_bf16_to_f32((uint16_t)c); }

static uint32_t rng = 12345;
static uint32_t next(void) { return tu_xorshift(&rng); }

/* Inputs: every grid value, every midpoint and its two f32 neighbours, then
 * `nrandom` random f32 values spread over the format's range. */
static void run_encoder(const struct grid *g, unsigned (*enc)(float), unsigned sign_bit, int ieee, unsigned ovf,
                        float lo_exp, float hi_exp, long nrandom, const char *what)
{
    long checked = 0;
    for (size_t i = 0; i + 1 < g->n; i++) {
        float pts[5] = {(float)g->v[i], (float)((g->v[i] + g->v[i + 1]) / 2), 0, 0, (float)g->v[i + 1]};
        pts[2] = nextafterf(pts[1], 0);
        pts[3] = nextafterf(pts[1], INFINITY);
        for (int k = 0; k < 5; k++) {
            for (int s = 0; s < 2; s++) {
                float x = s ? -pts[k] : pts[k];
                unsigned want = oracle(g, fabs((double)x), ieee, ovf) | (s ? sign_bit : 0);
                unsigned got = enc(x);
                if (got != want)
                    fail_msg("%s(%.9g): got 0x%x, want 0x%x", what, (double)x, got, want);
                checked++;
            }
        }
    }
    for (long r = 0; r < nrandom; r++) {
        float e = lo_exp + (hi_exp - lo_exp) * (float)(next() % 100000) / 100000.0f;
        float x = ldexpf(1.0f + (float)(next() & 0xFFFFFF) / 16777216.0f, (int)e);
        if (next() & 1)
            x = -x;
        unsigned want = oracle(g, fabs((double)x), ieee, ovf) | (signbit(x) ? sign_bit : 0);
        unsigned got = enc(x);
        if (got != want)
            fail_msg("%s(%.9g): got 0x%x, want 0x%x", what, (double)x, got, want);
        checked++;
    }
    assert_true(checked > nrandom);
}

static unsigned enc_e4m3(float f) { return qtl_f32_to_e4m3(f); }
static unsigned enc_e2m1(float f) { return qtl_f32_to_e2m1(f); }
static unsigned enc_f16(float f) { return qtl_f32_to_f16(f); }
static unsigned enc_bf16(float f) { return qtl_f32_to_bf16(f); }

static struct grid G;

static void test_encode_e4m3(void **state)
{
    (void)state;
    build_grid(&G, dec_e4m3, 256);
    assert_int_equal(G.n, 127); /* 0 .. 448 */
    run_encoder(&G, enc_e4m3, 0x80, 0, 0, -14, 10, 2000000, "e4m3");
    static const struct {
        float in;
        uint8_t out;
    } v[] = {{0.0f, 0x00}, {-0.0f, 0x80}, {1, 0x38}, {2, 0x40}, {3, 0x44}, {4, 0x48}, {-1, 0xB8}, {0.1f, 0x1D},
             {0.3f, 0x2A}, {17, 0x58}, {19, 0x5A}, {1.0625f, 0x38}, {1.1875f, 0x3A}, {1.4375f, 0x3C}, {448, 0x7E},
             {450, 0x7E}, {464, 0x7E}, {464.01f, 0x7E}, {480, 0x7E}, {1e9f, 0x7E}, {INFINITY, 0x7E},
             {-INFINITY, 0xFE}, {0x1p-9f, 0x01}, {0x1p-10f, 0x00}, {0x1.8p-9f, 0x02}, {0x1p-6f, 0x08},
             {0x1p-149f, 0x00}, {-0x1p-149f, 0x80}, {0x1.ep-7f, 0x08}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (qtl_f32_to_e4m3(v[i].in) != v[i].out)
            fail_msg("e4m3(%g): got 0x%02x, want 0x%02x", (double)v[i].in, qtl_f32_to_e4m3(v[i].in), v[i].out);
    assert_int_equal(qtl_f32_to_e4m3(NAN), 0x7F);
    assert_int_equal(qtl_f32_to_e4m3(-NAN), 0xFF);
    for (int c = 0; c < 256; c++) /* decode then encode is the identity on every non-NaN code */
        if ((c & 0x7F) != 0x7F)
            assert_int_equal(qtl_f32_to_e4m3(qtl_e4m3_to_f32((uint8_t)c)), c);
}

static void test_encode_e2m1(void **state)
{
    (void)state;
    build_grid(&G, dec_e2m1, 16);
    assert_int_equal(G.n, 8);
    run_encoder(&G, enc_e2m1, 0x8, 0, 0, -4, 4, 200000, "e2m1");
    /* compressed-tensors test vector */
    static const float in[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.3f, 0.6f, 0.9f, 1.3f, 1.8f, 2.7f, 4.5f, 7.0f};
    static const float out[] = {0, 1, 1, 2, 2, 4, 4, 0.5f, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        TU_EQ_F32_BITS(qtl_e2m1_to_f32(qtl_f32_to_e2m1(in[i])), out[i]);
        TU_EQ_F32_BITS(qtl_e2m1_to_f32(qtl_f32_to_e2m1(-in[i])), -out[i]);
    }
    assert_int_equal(qtl_f32_to_e2m1(-0.0f), 0x8); /* sign kept, as compressed-tensors */
    assert_int_equal(qtl_f32_to_e2m1(INFINITY), 0x7);
    assert_int_equal(qtl_f32_to_e2m1(-1e30f), 0xF);
    assert_int_equal(qtl_f32_to_e2m1(NAN), 0x7);
}

static void test_encode_f16_bf16(void **state)
{
    (void)state;
    build_grid(&G, dec_f16, 65536);
    assert_int_equal(G.n, 31744); /* 0 .. 65504 */
    run_encoder(&G, enc_f16, 0x8000, 1, 0x7C00, -26, 17, 2000000, "f16");
    assert_int_equal(qtl_f32_to_f16(65519.996f), 0x7BFF);
    assert_int_equal(qtl_f32_to_f16(65520.0f), 0x7C00);
    assert_int_equal(qtl_f32_to_f16(INFINITY), 0x7C00);
    assert_int_equal(qtl_f32_to_f16(-INFINITY), 0xFC00);
    assert_int_equal(qtl_f32_to_f16(0x1p-25f), 0x0000); /* tie to even (0) */
    assert_int_equal(qtl_f32_to_f16(0x1.8p-24f), 0x0002);
    assert_int_equal(qtl_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(qtl_f32_to_f16(NAN) & 0x7C00, 0x7C00);
    assert_int_not_equal(qtl_f32_to_f16(NAN) & 0x3FF, 0);
    build_grid(&G, dec_bf16, 65536);
    run_encoder(&G, enc_bf16, 0x8000, 1, 0x7F80, -130, 127, 2000000, "bf16");
    assert_int_equal(qtl_f32_to_bf16(1.00390625f), 0x3F80);  /* tie to even */
    assert_int_equal(qtl_f32_to_bf16(1.01171875f), 0x3F82);  /* tie up to even */
    assert_int_equal(qtl_f32_to_bf16(u2f(0x7F7FFFFF)), 0x7F80); /* FLT_MAX rounds to inf */
    assert_int_equal(qtl_f32_to_bf16(u2f(0x7F800001)), 0x7FC0); /* sNaN quieted */
    assert_int_equal(qtl_f32_to_bf16(u2f(0xFFC12345)), 0xFFC1);
    assert_int_equal(qtl_f32_to_bf16(u2f(0x00000001)), 0x0000);
}

static void test_encode_e8m0(void **state)
{
    (void)state;
    for (int e = -127; e <= 127; e++) {
        assert_int_equal(qtl_f32_to_e8m0(ldexpf(1.0f, e)), e + 127);
        /* just below / above the midpoint 1.5 * 2^e */
        if (e < 127) {
            assert_int_equal(qtl_f32_to_e8m0(ldexpf(1.49f, e)), e + 127);
            assert_int_equal(qtl_f32_to_e8m0(ldexpf(1.51f, e)), e + 128);
        }
        /* the midpoint ties to the even code */
        int tie = ((e + 127) & 1) ? e + 128 : e + 127;
        if (tie <= 254)
            assert_int_equal(qtl_f32_to_e8m0(ldexpf(1.5f, e)), tie);
    }
    assert_int_equal(qtl_f32_to_e8m0(0.0f), 0x00);
    assert_int_equal(qtl_f32_to_e8m0(0x1p-140f), 0x00);
    assert_int_equal(qtl_f32_to_e8m0(-1.0f), 0xFF);
    assert_int_equal(qtl_f32_to_e8m0(NAN), 0xFF);
    assert_int_equal(qtl_f32_to_e8m0(INFINITY), 0xFF);
    assert_int_equal(qtl_f32_to_e8m0(0x1.8p127f), 0xFE); /* tie, 254 is even */
    assert_int_equal(qtl_f32_to_e8m0(0x1.9p127f), 0xFF);
    for (int c = 0; c < 255; c++)
        assert_int_equal(qtl_f32_to_e8m0(qtl_e8m0_to_f32((uint8_t)c)), c);
}

static void test_bulk(void **state)
{
    (void)state;
    const uint8_t e4[3] = {0x38, 0xB8, 0x7E};
    float out[4];
    assert_int_equal(qtl_to_f32(QTL_DTYPE_F8_E4M3, e4, 3, out), QTL_OK);
    TU_EQ_F32_BITS(out[0], 1.0f);
    TU_EQ_F32_BITS(out[1], -1.0f);
    TU_EQ_F32_BITS(out[2], 448.0f);
    const int8_t i8[2] = {-128, 127};
    qtl_to_f32(QTL_DTYPE_I8, i8, 2, out);
    TU_EQ_F32_BITS(out[0], -128.0f);
    TU_EQ_F32_BITS(out[1], 127.0f);
    const uint16_t bf[2] = {0x3F80, 0xC000};
    qtl_to_f32(QTL_DTYPE_BF16, bf, 2, out);
    TU_EQ_F32_BITS(out[0], 1.0f);
    TU_EQ_F32_BITS(out[1], -2.0f);
    assert_int_equal(qtl_to_f32(QTL_DTYPE_C64, bf, 1, out), QTL_ERR_UNSUPPORTED);
    assert_int_equal(qtl_to_f32(QTL_DTYPE_F6_E2M3, bf, 1, out), QTL_ERR_UNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_exhaustive), cmocka_unit_test(test_decode_named),
        cmocka_unit_test(test_encode_e4m3),       cmocka_unit_test(test_encode_e2m1),
        cmocka_unit_test(test_encode_f16_bf16),   cmocka_unit_test(test_encode_e8m0),
        cmocka_unit_test(test_bulk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
