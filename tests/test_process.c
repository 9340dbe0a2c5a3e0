/* Stage "processed" (docs/processed.md) and the shard -> load round trip:
 * FP8 requantization equals a step-by-step reimplementation of vLLM's fp16
 * path; ModelOpt skips it when all slots are equal; INT8 per-row scales; the
 * NVFP4 global scales and alpha in both conventions; written ranks reload to
 * identical parameters. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fixture(const char *dir, const char *scheme, enum qtl_fixture_arch arch, enum qtl_scale_layout layout)
{
    struct qtl_fixture_options o;
    qtl_fixture_defaults(&o);
    o.scheme = scheme, o.arch = arch, o.scale_layout = layout, o.layers = 1;
    char msg[256];
    TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
}

static qtl_load_t *load(const char *dir, uint32_t tp, uint32_t rank, int process)
{
    struct qtl_load_options lo = {.tp = tp, .rank = rank, .dtype_override = QTL_DTYPE_COUNT};
    qtl_load_t *l = NULL;
    TU_EXPECT(qtl_load_open(dir, &lo, &l), QTL_OK, qtl_load_errmsg(l));
    TU_EXPECT(qtl_load_run(l), QTL_OK, qtl_load_errmsg(l));
    if (process)
        TU_EXPECT(qtl_load_process(l), QTL_OK, qtl_load_errmsg(l));
    return l;
}

static int find(const qtl_load_t *l, const char *name, struct qtl_param_info *pi)
{
    for (size_t i = 0; i < qtl_load_param_count(l); i++) {
        qtl_load_param_at(l, i, pi);
        if (!strcmp(pi->name, name))
            return 1;
    }
    return 0;
}

static float f32(const struct qtl_param_info *pi, size_t i) { return ((const float *)pi->data)[i]; }

/* vLLM: weight_dq = fp16(q) * weight_scale[i] in float16; scaled_fp8_quant(dq, s_max). */
static uint8_t requant_ref(uint8_t q, float s_i, float s_max)
{
    float xh = qtl_f16_to_f32(qtl_f32_to_f16(qtl_e4m3_to_f32(q)));   /* tensor.to(float16): exact */
    float sh = qtl_f16_to_f32(qtl_f32_to_f16(s_i));                  /* the 0-d scale joins as fp16 */
    float dq = qtl_f16_to_f32(qtl_f32_to_f16(xh * sh));              /* product rounded to fp16 */
    float inv = 1.0f / s_max;                                        /* kernel: 1.f / *scale */
    float v = dq * inv;
    v = v > 448.0f ? 448.0f : v < -448.0f ? -448.0f : v;             /* clamp, then RNE cast */
    return qtl_f32_to_e4m3(v);
}

static void test_fp8_requant(void **state)
{
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s/fp8-perpart", QTL_TEST_TMP);
    fixture(d, "fp8", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_PER_PART);
    for (uint32_t r = 0; r < 2; r++) {
        qtl_load_t *a = load(d, 2, r, 0), *b = load(d, 2, r, 1);
        struct qtl_param_info w0, s0, w1, s1, i0, i1;
        assert_true(find(a, "model.layers.0.self_attn.qkv_proj.weight", &w0));
        assert_true(find(a, "model.layers.0.self_attn.qkv_proj.weight_scale", &s0));
        assert_true(find(b, "model.layers.0.self_attn.qkv_proj.weight", &w1));
        assert_true(find(b, "model.layers.0.self_attn.qkv_proj.weight_scale", &s1));
        assert_int_equal(s1.ndim, 0);
        float smax = fmaxf(f32(&s0, 0), fmaxf(f32(&s0, 1), f32(&s0, 2)));
        TU_EQ_F32_BITS(f32(&s1, 0), smax);
        /* rows of q (4 heads x 128 at tp=2), k and v (1 head x 128 each) */
        uint64_t part[3] = {4 * 128, 128, 128}, row = 0, K = w0.shape[1];
        const uint8_t *qa = w0.data, *qb = w1.data;
        size_t changed = 0;
        for (int i = 0; i < 3; i++)
            for (uint64_t rr = 0; rr < part[i]; rr++, row++)
                for (uint64_t c = 0; c < K; c++) {
                    uint8_t want = requant_ref(qa[row * K + c], f32(&s0, (size_t)i), smax);
                    if (qb[row * K + c] != want)
                        fail_msg("rank %u row %llu col %llu: %02x, want %02x", r, (unsigned long long)row,
                                 (unsigned long long)c, qb[row * K + c], want);
                    changed += qb[row * K + c] != qa[row * K + c];
                }
        assert_true(changed > 0); /* the slots differ: sub-matrices really were requantized */
        assert_true(find(a, "model.layers.0.self_attn.qkv_proj.input_scale", &i0));
        assert_true(find(b, "model.layers.0.self_attn.qkv_proj.input_scale", &i1));
        assert_int_equal(i1.ndim, 0);
        TU_EQ_F32_BITS(f32(&i1, 0), fmaxf(f32(&i0, 0), fmaxf(f32(&i0, 1), f32(&i0, 2))));
        qtl_load_close(a);
        qtl_load_close(b);
    }
    /* ModelOpt with equal slots (fused on disk): no requantization at all */
    snprintf(d, sizeof d, "%s/mo-fp8-phi3", QTL_TEST_TMP);
    fixture(d, "modelopt-fp8", QTL_FIXTURE_PHI3, QTL_SCALE_LAYOUT_DEFAULT);
    qtl_load_t *a = load(d, 2, 0, 0), *b = load(d, 2, 0, 1);
    struct qtl_param_info w0, w1;
    assert_true(find(a, "model.layers.0.mlp.gate_up_proj.weight", &w0));
    assert_true(find(b, "model.layers.0.mlp.gate_up_proj.weight", &w1));
    assert_memory_equal(w0.data, w1.data, (size_t)w0.nbytes);
    qtl_load_close(a);
    qtl_load_close(b);
}

static void test_int8_and_nvfp4(void **state)
{
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s/int8", QTL_TEST_TMP);
    fixture(d, "ct-int8", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_PER_PART);
    qtl_load_t *a = load(d, 2, 1, 0), *b = load(d, 2, 1, 1);
    struct qtl_param_info s0, s1, in;
    assert_true(find(a, "model.layers.0.mlp.gate_up_proj.weight_scale", &s0));
    assert_true(find(b, "model.layers.0.mlp.gate_up_proj.weight_scale", &s1));
    assert_int_equal(s1.ndim, 2); /* [N, 1]: rows of gate, then up */
    TU_EQ_U64(s1.shape[0], 2048);
    TU_EQ_U64(s1.shape[1], 1);
    for (size_t r = 0; r < 2048; r++)
        TU_EQ_F32_BITS(f32(&s1, r), f32(&s0, r < 1024 ? 0 : 1));
    assert_true(find(b, "model.layers.0.mlp.gate_up_proj.input_scale", &in));
    assert_int_equal(in.ndim, 0);
    qtl_load_close(a);
    qtl_load_close(b);
    /* NVFP4, compressed-tensors: values are reciprocated, alpha = 1/igs_raw * 1/wgs_raw */
    snprintf(d, sizeof d, "%s/nvfp4", QTL_TEST_TMP);
    fixture(d, "ct-nvfp4", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_PER_PART);
    a = load(d, 2, 0, 0);
    b = load(d, 2, 0, 1);
    struct qtl_param_info wg, ig, pw, pi, inv, al, w;
    assert_true(find(a, "model.layers.0.self_attn.qkv_proj.weight_global_scale", &wg));
    assert_true(find(a, "model.layers.0.self_attn.qkv_proj.input_global_scale", &ig));
    assert_true(find(b, "model.layers.0.self_attn.qkv_proj.weight_global_scale", &pw));
    assert_true(find(b, "model.layers.0.self_attn.qkv_proj.input_global_scale", &pi));
    assert_true(find(b, "model.layers.0.self_attn.qkv_proj.input_global_scale_inv", &inv));
    assert_true(find(b, "model.layers.0.self_attn.qkv_proj.alpha", &al));
    assert_true(find(b, "model.layers.0.self_attn.qkv_proj.weight", &w));
    assert_int_equal(w.dtype, QTL_DTYPE_U8);
    assert_false(find(b, "model.layers.0.self_attn.qkv_proj.weight_packed", &w));
    float wmax = fmaxf(f32(&wg, 0), fmaxf(f32(&wg, 1), f32(&wg, 2)));
    float imax = fmaxf(f32(&ig, 0), fmaxf(f32(&ig, 1), f32(&ig, 2)));
    TU_EQ_F32_BITS(f32(&pw, 0), 1.0f / wmax);
    TU_EQ_F32_BITS(f32(&inv, 0), imax);
    TU_EQ_F32_BITS(f32(&pi, 0), 1.0f / imax);
    TU_EQ_F32_BITS(f32(&al, 0), (1.0f / imax) * (1.0f / wmax));
    qtl_load_close(a);
    qtl_load_close(b);
    /* ModelOpt: no reciprocal, alpha = max(input_scale) * max(weight_scale_2) */
    snprintf(d, sizeof d, "%s/mo-nvfp4", QTL_TEST_TMP);
    fixture(d, "modelopt-nvfp4", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_PER_PART);
    a = load(d, 1, 0, 0);
    b = load(d, 1, 0, 1);
    assert_true(find(a, "model.layers.0.mlp.gate_up_proj.weight_scale_2", &wg));
    assert_true(find(a, "model.layers.0.mlp.gate_up_proj.input_scale", &ig));
    assert_true(find(b, "model.layers.0.mlp.gate_up_proj.alpha", &al));
    assert_true(find(b, "model.layers.0.mlp.gate_up_proj.weight_global_scale", &pw));
    assert_false(find(b, "model.layers.0.mlp.gate_up_proj.weight_scale_2", &w));
    TU_EQ_F32_BITS(f32(&pw, 0), fmaxf(f32(&wg, 0), f32(&wg, 1)));
    TU_EQ_F32_BITS(f32(&al, 0), fmaxf(f32(&ig, 0), f32(&ig, 1)) * fmaxf(f32(&wg, 0), f32(&wg, 1)));
    qtl_load_close(a);
    qtl_load_close(b);
    /* FP8 block: vLLM 0.32 keeps the name weight_scale_inv and the values (interop vllm part) */
    snprintf(d, sizeof d, "%s/fp8-block", QTL_TEST_TMP);
    fixture(d, "fp8-block", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_PER_PART);
    a = load(d, 1, 0, 0);
    b = load(d, 1, 0, 1);
    assert_true(find(a, "model.layers.0.mlp.down_proj.weight_scale_inv", &wg));
    assert_true(find(b, "model.layers.0.mlp.down_proj.weight_scale_inv", &pw));
    assert_false(find(b, "model.layers.0.mlp.down_proj.weight_scale", &w));
    TU_EQ_U64(pw.nbytes, wg.nbytes);
    TU_EQ_MEM(pw.data, wg.data, (size_t)wg.nbytes);
    qtl_load_close(a);
    qtl_load_close(b);
}

static void same_params(const qtl_load_t *a, const qtl_load_t *b, const char *what)
{
    assert_int_equal(qtl_load_param_count(a), qtl_load_param_count(b));
    for (size_t i = 0; i < qtl_load_param_count(a); i++) {
        struct qtl_param_info pa, pb;
        qtl_load_param_at(a, i, &pa);
        if (!find(b, pa.name, &pb))
            fail_msg("%s: %s missing after the round trip", what, pa.name);
        if (pa.dtype != pb.dtype || pa.ndim != pb.ndim || pa.nbytes != pb.nbytes ||
            memcmp(pa.data, pb.data, (size_t)pa.nbytes) != 0)
            fail_msg("%s: %s differs after the round trip", what, pa.name);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    for (size_t si = 0; qtl_fixture_scheme_name(si); si++) {
        const char *sc = qtl_fixture_scheme_name(si);
        if (tu_vllm_refuses(sc))
            continue;
        char d[512], out[512], outl[512], path[600];
        snprintf(d, sizeof d, "%s/rt-%s", QTL_TEST_TMP, sc);
        snprintf(out, sizeof out, "%s/rt-%s-sharded", QTL_TEST_TMP, sc);
        snprintf(outl, sizeof outl, "%s/rt-%s-loaded", QTL_TEST_TMP, sc);
        fixture(d, sc, QTL_FIXTURE_PHI3, QTL_SCALE_LAYOUT_DEFAULT);
        tu_mkdir_p(out);
        tu_mkdir_p(outl);
        const char *cfg[2] = {out, outl};
        for (int k = 0; k < 2; k++) { /* config.json travels with the shards */
            FILE *in = fopen(tu_path(d, "config.json"), "rb");
            char buf[8192];
            size_t n = fread(buf, 1, sizeof buf, in);
            fclose(in);
            tu_write(tu_path(cfg[k], "config.json"), buf, n);
        }
        for (uint32_t r = 0; r < 2; r++) {
            qtl_load_t *p = load(d, 2, r, 1), *lo = load(d, 2, r, 0);
            snprintf(path, sizeof path, "%s/model-rank-%u-part-0.safetensors", out, r);
            TU_EXPECT(qtl_load_write(p, path, d), QTL_OK, qtl_load_errmsg(p));
            snprintf(path, sizeof path, "%s/model-rank-%u-part-0.safetensors", outl, r);
            TU_EXPECT(qtl_load_write(lo, path, d), QTL_OK, qtl_load_errmsg(lo));
            qtl_load_close(lo);
            lo = load(d, 2, r, 0);
            qtl_load_t *rp = load(out, 2, r, 1);  /* processed: reloaded, not processed again */
            same_params(p, rp, sc);
            qtl_load_t *rl = load(outl, 2, r, 0); /* loaded: reloaded, then processed like the original */
            same_params(lo, rl, sc);
            TU_EXPECT(qtl_load_process(rl), QTL_OK, qtl_load_errmsg(rl));
            same_params(p, rl, sc);
            qtl_load_close(p);
            qtl_load_close(lo);
            qtl_load_close(rp);
            qtl_load_close(rl);
        }
        /* another tp is refused */
        struct qtl_load_options o4 = {.tp = 4, .rank = 0, .dtype_override = QTL_DTYPE_COUNT};
        qtl_load_t *l;
        assert_int_equal(qtl_load_open(out, &o4, &l), QTL_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(qtl_load_errmsg(l), "tp=2"));
        qtl_load_close(l);
    }
}

static void test_requant_api(void **state)
{
    (void)state;
    /* s_i == s_max: a near-identity that goes through fp16 (bit-exact here for normal codes) */
    uint8_t w[4] = {0x38, 0xB8, 0x7E, 0x01};
    qtl_fp8_requantize(w, 1, 4, 0.5f, 0.5f);
    assert_int_equal(w[0], 0x38);
    assert_int_equal(w[1], 0xB8);
    assert_int_equal(w[2], 0x7E);
    /* half the scale: every value halves (448 -> 224 = 0x76) */
    uint8_t v[2] = {0x7E, 0x38};
    qtl_fp8_requantize(v, 1, 2, 0.25f, 0.5f);
    assert_int_equal(v[0], 0x76);
    assert_int_equal(v[1], 0x30);
}

int main(void)
{
    tu_mkdir_p(QTL_TEST_TMP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp8_requant),
        cmocka_unit_test(test_int8_and_nvfp4),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_requant_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
