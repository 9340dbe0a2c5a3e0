/* Fixture generator: every scheme x arch passes the strict reader and the
 * checkpoint check, carries its exporter's config fields and exactly the
 * tensors formats.md lists (dtype and shape), dequantizes back to the float
 * master weights within the scheme's error bound, and with shared scales the
 * split (Llama) and fused (Phi-3) checkpoints hold the same quantized bytes.
 * The MoE archs (Mixtral, Qwen3-MoE) likewise, expert by expert, plus their
 * fused-on-disk layout, determinism, refusals, breaks and allocation failures. */
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { LAYERS = 1, HIDDEN = 256, HEADS = 4, KV = 2, HD = 64, INTER = 512, VOCAB = 64 };

static void opts(struct qtl_fixture_options *o, const char *scheme, enum qtl_fixture_arch arch)
{
    qtl_fixture_defaults(o);
    o->scheme = scheme;
    o->arch = arch;
    o->layers = LAYERS, o->hidden = HIDDEN, o->heads = HEADS, o->kv_heads = KV, o->head_dim = HD;
    o->intermediate = INTER, o->vocab = VOCAB, o->shards = 2, o->seed = 7;
}

struct part {
    const char *name;
    uint64_t rows, cols;
};
static const struct part parts[7] = {{"q_proj", HEADS * HD, HIDDEN},  {"k_proj", KV * HD, HIDDEN},
                                     {"v_proj", KV * HD, HIDDEN},     {"o_proj", HIDDEN, HEADS * HD},
                                     {"gate_proj", INTER, HIDDEN},    {"up_proj", INTER, HIDDEN},
                                     {"down_proj", HIDDEN, INTER}};

/* Stored modules of an arch: name and the parts it stacks. */
struct stored {
    char prefix[96];
    int p[3], n;
    uint64_t rows, cols;
};

static int stored_modules(enum qtl_fixture_arch arch, struct stored *s)
{
    int k = 0;
    if (arch == QTL_FIXTURE_PHI3) {
        static const struct {
            const char *name;
            int p[3], n;
        } f[4] = {{"self_attn.qkv_proj", {0, 1, 2}, 3}, {"self_attn.o_proj", {3}, 1}, {"mlp.gate_up_proj", {4, 5}, 2},
                  {"mlp.down_proj", {6}, 1}};
        for (int i = 0; i < 4; i++, k++) {
            snprintf(s[k].prefix, sizeof s[k].prefix, "model.layers.0.%s", f[i].name);
            memcpy(s[k].p, f[i].p, sizeof f[i].p);
            s[k].n = f[i].n;
        }
    } else {
        for (int i = 0; i < 7; i++, k++) {
            snprintf(s[k].prefix, sizeof s[k].prefix, "model.layers.0.%s.%s", i < 4 ? "self_attn" : "mlp", parts[i].name);
            s[k].p[0] = i;
            s[k].n = 1;
        }
    }
    for (int i = 0; i < k; i++) {
        s[i].rows = 0;
        for (int j = 0; j < s[i].n; j++)
            s[i].rows += parts[s[i].p[j]].rows;
        s[i].cols = parts[s[i].p[0]].cols;
    }
    return k;
}

/* What formats.md says a module holds, per scheme: name suffix, dtype, shape. */
struct want {
    const char *suffix;
    enum qtl_dtype dt;
    int ndim;
    uint64_t d0, d1;
};

static int expected(const char *sc, uint64_t R, uint64_t C, struct want *w)
{
    int n = 0;
#define W(s, t, nd, a, b) (w[n++] = (struct want){s, t, nd, a, b})
    int ct = !strncmp(sc, "ct-", 3);
    enum qtl_dtype sdt = ct ? QTL_DTYPE_BF16 : QTL_DTYPE_F32;
    int sd = ct ? 1 : 0;
    if (!strcmp(sc, "bf16"))
        W("weight", QTL_DTYPE_BF16, 2, R, C);
    else if (!strcmp(sc, "fp8") || !strcmp(sc, "fp8-dynamic") || !strcmp(sc, "ct-fp8") || !strcmp(sc, "modelopt-fp8")) {
        W("weight", QTL_DTYPE_F8_E4M3, 2, R, C);
        W("weight_scale", sdt, sd, 1, 0);
        if (strcmp(sc, "fp8-dynamic"))
            W("input_scale", sdt, sd, 1, 0);
    } else if (!strcmp(sc, "fp8-block")) {
        W("weight", QTL_DTYPE_F8_E4M3, 2, R, C);
        W("weight_scale_inv", QTL_DTYPE_F32, 2, (R + 127) / 128, (C + 127) / 128);
    } else if (!strcmp(sc, "ct-fp8-block")) {
        W("weight", QTL_DTYPE_F8_E4M3, 2, R, C);
        W("weight_scale", QTL_DTYPE_BF16, 2, (R + 127) / 128, (C + 127) / 128);
    } else if (!strcmp(sc, "ct-fp8-channel")) {
        W("weight", QTL_DTYPE_F8_E4M3, 2, R, C);
        W("weight_scale", QTL_DTYPE_BF16, 2, R, 1);
    } else if (!strcmp(sc, "ct-int8")) {
        W("weight", QTL_DTYPE_I8, 2, R, C);
        W("weight_scale", QTL_DTYPE_BF16, 1, 1, 0);
        W("input_scale", QTL_DTYPE_BF16, 1, 1, 0);
    } else if (!strcmp(sc, "ct-int8-channel") || !strcmp(sc, "ct-int8-asym")) {
        W("weight", QTL_DTYPE_I8, 2, R, C);
        W("weight_scale", QTL_DTYPE_BF16, 2, R, 1);
        if (!strcmp(sc, "ct-int8-asym")) {
            W("input_scale", QTL_DTYPE_BF16, 1, 1, 0);
            W("input_zero_point", QTL_DTYPE_I8, 1, 1, 0);
        }
    } else if (!strcmp(sc, "ct-nvfp4") || !strcmp(sc, "ct-nvfp4a16")) {
        W("weight_packed", QTL_DTYPE_U8, 2, R, C / 2);
        W("weight_scale", QTL_DTYPE_F8_E4M3, 2, R, C / 16);
        W("weight_global_scale", QTL_DTYPE_F32, 1, 1, 0);
        if (!strcmp(sc, "ct-nvfp4"))
            W("input_global_scale", QTL_DTYPE_F32, 1, 1, 0);
    } else if (!strcmp(sc, "modelopt-nvfp4")) {
        W("weight", QTL_DTYPE_U8, 2, R, C / 2);
        W("weight_scale", QTL_DTYPE_F8_E4M3, 2, R, C / 16);
        W("weight_scale_2", QTL_DTYPE_F32, 0, 1, 0);
        W("input_scale", QTL_DTYPE_F32, 0, 1, 0);
    } else if (!strncmp(sc, "ct-w", 4)) {
        uint64_t bits = !strcmp(sc, "ct-w8a16") ? 8 : 4;
        W("weight_packed", QTL_DTYPE_I32, 2, R, C * bits / 32);
        W("weight_scale", QTL_DTYPE_BF16, 2, R, C / 128);
        W("weight_shape", QTL_DTYPE_I64, 1, 2, 0);
        if (!strcmp(sc, "ct-w4a16-asym"))
            W("weight_zero_point", QTL_DTYPE_I32, 2, R * bits / 32, C / 128);
        if (!strcmp(sc, "ct-w4a16-actorder"))
            W("weight_g_idx", QTL_DTYPE_I32, 1, C, 0);
    }
#undef W
    return n;
}

/* How many tensors a module of the scheme holds. */
static int expected_count(const char *sc)
{
    struct want w[8];
    return expected(sc, 256, 256, w);
}

struct loaded {
    struct qtl_tensor_info ti;
    void *data;
};

static int load(qtl_ckpt_t *ck, const char *prefix, const char *suffix, struct loaded *l)
{
    char name[256];
    snprintf(name, sizeof name, "%.128s.%.64s", prefix, suffix);
    size_t i;
    l->data = NULL;
    if (qtl_ckpt_tensor_find(ck, name, &i) != QTL_OK)
        return 0;
    assert_int_equal(qtl_ckpt_tensor_at(ck, i, &l->ti), QTL_OK);
    l->data = malloc(l->ti.nbytes + 1);
    TU_EXPECT(qtl_ckpt_read_tensor(ck, i, l->data, (size_t)l->ti.nbytes), QTL_OK, qtl_ckpt_errmsg(ck));
    return 1;
}

static float scalar(const struct loaded *l)
{
    float v;
    assert_int_equal(qtl_to_f32(l->ti.dtype, l->data, 1, &v), QTL_OK);
    return v;
}

/* Dequantize a stored module with the scheme's descriptor; *smax = largest effective scale. */
static float *dequant_module(qtl_ckpt_t *ck, const char *sc, const struct stored *m, float *smax)
{
    struct loaded w, s, g = {0}, z = {0}, gi = {0};
    const char *wname = (!strncmp(sc, "ct-nvfp4", 8) || !strncmp(sc, "ct-w", 4)) ? "weight_packed" : "weight";
    assert_true(load(ck, m->prefix, wname, &w));
    struct qtl_dequant_desc d = {.rows = m->rows, .cols = m->cols, .weight = w.data, .weight_dtype = w.ti.dtype};
    int has_s = load(ck, m->prefix, !strcmp(sc, "fp8-block") ? "weight_scale_inv" : "weight_scale", &s);
    *smax = 0;
    if (!strcmp(sc, "bf16")) {
        d.scheme = QTL_SCHEME_NONE;
    } else {
        assert_true(has_s);
        d.scale = s.data;
        d.scale_dtype = s.ti.dtype;
        float *sv = malloc(s.ti.numel * sizeof *sv);
        qtl_to_f32(s.ti.dtype, s.data, (size_t)s.ti.numel, sv);
        for (uint64_t i = 0; i < s.ti.numel; i++)
            *smax = sv[i] > *smax ? sv[i] : *smax;
        free(sv);
        if (strstr(sc, "fp8")) {
            d.scheme = QTL_SCHEME_FP8;
            d.granularity = strstr(sc, "block") ? QTL_SCALE_BLOCK : strstr(sc, "channel") ? QTL_SCALE_CHANNEL : QTL_SCALE_TENSOR;
            d.block_rows = d.block_cols = 128;
        } else if (strstr(sc, "int8")) {
            d.scheme = QTL_SCHEME_INT8;
            d.granularity = !strcmp(sc, "ct-int8") ? QTL_SCALE_TENSOR : QTL_SCALE_CHANNEL;
        } else if (strstr(sc, "nvfp4")) {
            d.scheme = strstr(sc, "modelopt") ? QTL_SCHEME_NVFP4_MODELOPT : QTL_SCHEME_NVFP4_CT;
            assert_true(load(ck, m->prefix, strstr(sc, "modelopt") ? "weight_scale_2" : "weight_global_scale", &g));
            d.global_scale = scalar(&g);
            *smax = strstr(sc, "modelopt") ? *smax * d.global_scale : *smax / d.global_scale;
        } else {
            d.scheme = QTL_SCHEME_PACKED_INT;
            d.granularity = QTL_SCALE_GROUP;
            d.group_size = 128;
            d.bits = !strcmp(sc, "ct-w8a16") ? 8 : 4;
            if (load(ck, m->prefix, "weight_zero_point", &z))
                d.zero_point = z.data, d.zero_point_dtype = QTL_DTYPE_I32;
            if (load(ck, m->prefix, "weight_g_idx", &gi))
                d.g_idx = gi.data;
        }
    }
    float *out = malloc(m->rows * m->cols * sizeof *out);
    char msg[256];
    TU_EXPECT(qtl_dequant(&d, 0, m->rows, QTL_DTYPE_F32, out, m->rows * m->cols * 4, 1, 1, msg, sizeof msg), QTL_OK, msg);
    free(w.data), free(s.data), free(g.data), free(z.data), free(gi.data);
    return out;
}

/* Per-scheme error bound for an element of master value x. */
static double bound(const char *sc, double x, double smax)
{
    if (!strcmp(sc, "bf16"))
        return 0.0;
    if (strstr(sc, "nvfp4"))
        return 0.07 * fabs(x) + smax; /* E2M1 steps reach 2 units of the effective scale */
    if (strstr(sc, "fp8"))
        return 0.0625 * fabs(x) + smax * 0x1p-9; /* 3 mantissa bits, subnormal step */
    /* integer rounding: half a step, plus the clamp at qmax that a bf16-rounded
     * scale (amax / 7.5 or / 127.5, rounded down by up to 2^-8) can cause */
    return 0.5 * smax + 0.01 * fabs(x);
}

static void check_config(const char *dir, const char *sc, enum qtl_fixture_arch arch)
{
    json_error_t e;
    json_t *cfg = json_load_file(tu_path(dir, "config.json"), JSON_REJECT_DUPLICATES, &e);
    assert_non_null(cfg);
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        arch == QTL_FIXTURE_PHI3 ? "Phi3ForCausalLM" : "LlamaForCausalLM");
    assert_int_equal(json_integer_value(json_object_get(cfg, "num_key_value_heads")), KV);
    assert_int_equal(json_integer_value(json_object_get(cfg, "head_dim")), HD);
    assert_string_equal(json_string_value(json_object_get(cfg, "torch_dtype")), "bfloat16");
    json_t *q = json_object_get(cfg, "quantization_config");
    if (!strcmp(sc, "bf16")) {
        assert_null(q);
    } else if (!strncmp(sc, "ct-", 3)) {
        assert_string_equal(json_string_value(json_object_get(q, "quant_method")), "compressed-tensors");
        assert_string_equal(json_string_value(json_object_get(q, "quantization_status")), "compressed");
        assert_string_equal(json_string_value(json_array_get(json_object_get(q, "ignore"), 0)), "lm_head");
        json_t *grp = json_object_get(json_object_get(q, "config_groups"), "group_0");
        json_t *w = json_object_get(grp, "weights");
        const char *fmt = json_string_value(json_object_get(grp, "format"));
        assert_string_equal(fmt, json_string_value(json_object_get(q, "format")));
        const char *want_fmt = strstr(sc, "nvfp4") ? "nvfp4-pack-quantized" : !strncmp(sc, "ct-w", 4) ? "pack-quantized"
                               : strstr(sc, "int8") ? "int-quantized" : "float-quantized";
        assert_string_equal(fmt, want_fmt);
        /* every QuantizationArgs key is serialized */
        static const char *keys[] = {"actorder", "block_structure", "dynamic", "group_size", "num_bits", "observer",
                                     "observer_kwargs", "scale_dtype", "strategy", "symmetric", "type", "zp_dtype"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            assert_non_null(json_object_get(w, keys[k]));
        if (!strncmp(sc, "ct-w", 4)) {
            assert_int_equal(json_integer_value(json_object_get(w, "group_size")), 128);
            assert_int_equal(json_integer_value(json_object_get(w, "num_bits")), !strcmp(sc, "ct-w8a16") ? 8 : 4);
            assert_int_equal(json_is_false(json_object_get(w, "symmetric")), !strcmp(sc, "ct-w4a16-asym"));
            if (!strcmp(sc, "ct-w4a16-actorder"))
                assert_string_equal(json_string_value(json_object_get(w, "actorder")), "group");
        }
        if (!strcmp(sc, "ct-fp8-block"))
            assert_int_equal(json_integer_value(json_array_get(json_object_get(w, "block_structure"), 1)), 128);
        if (strstr(sc, "nvfp4"))
            assert_string_equal(json_string_value(json_object_get(w, "strategy")), "tensor_group");
        assert_int_equal(json_is_null(json_object_get(grp, "input_activations")),
                         !strcmp(sc, "ct-nvfp4a16") || !strncmp(sc, "ct-w", 4));
    } else if (!strncmp(sc, "modelopt", 8)) {
        assert_string_equal(json_string_value(json_object_get(q, "quant_method")), "modelopt");
        const char *algo = strstr(sc, "nvfp4") ? "NVFP4" : "FP8";
        assert_string_equal(json_string_value(json_object_get(q, "quant_algo")), algo);
        json_t *h = json_load_file(tu_path(dir, "hf_quant_config.json"), JSON_REJECT_DUPLICATES, &e);
        assert_non_null(h);
        assert_string_equal(json_string_value(json_object_get(json_object_get(h, "quantization"), "quant_algo")), algo);
        json_decref(h);
    } else {
        assert_string_equal(json_string_value(json_object_get(q, "quant_method")), "fp8");
        if (!strcmp(sc, "fp8-block"))
            assert_int_equal(json_integer_value(json_array_get(json_object_get(q, "weight_block_size"), 0)), 128);
        else
            assert_string_equal(json_string_value(json_object_get(q, "activation_scheme")),
                                !strcmp(sc, "fp8") ? "static" : "dynamic");
    }
    json_decref(cfg);
}

static void check_one(const char *sc, enum qtl_fixture_arch arch)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s-%s", QTL_TEST_TMP, sc, arch == QTL_FIXTURE_PHI3 ? "phi3" : "llama");
    struct qtl_fixture_options o;
    opts(&o, sc, arch);
    char msg[512];
    TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
    qtl_ckpt_t *ck;
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    TU_EXPECT(qtl_ckpt_check(ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_diag_count(ck), 0);
    assert_int_equal(qtl_ckpt_shard_count(ck), 2);
    check_config(dir, sc, arch);
    struct stored mods[7];
    int nm = stored_modules(arch, mods);
    size_t expected_total = 5; /* embed, 2 norms, final norm, lm_head */
    int split_scales = 0;
    for (int k = 0; k < nm; k++) {
        struct want w[8];
        int nw = expected(sc, mods[k].rows, mods[k].cols, w);
        expected_total += (size_t)nw;
        size_t weight_shard = 0;
        for (int i = 0; i < nw; i++) {
            char name[256];
            snprintf(name, sizeof name, "%.96s.%.64s", mods[k].prefix, w[i].suffix);
            size_t idx, shard;
            if (qtl_ckpt_tensor_find(ck, name, &idx) != QTL_OK)
                fail_msg("%s: missing %s", dir, name);
            struct qtl_tensor_info ti;
            qtl_ckpt_tensor_at(ck, idx, &ti);
            if (ti.dtype != w[i].dt || ti.ndim != (uint32_t)w[i].ndim || (ti.ndim > 0 && ti.shape[0] != w[i].d0) ||
                (ti.ndim > 1 && ti.shape[1] != w[i].d1))
                fail_msg("%s: %s is %s rank %u, want %s [%llu, %llu] rank %d", dir, name, qtl_dtype_name(ti.dtype), ti.ndim,
                         qtl_dtype_name(w[i].dt), (unsigned long long)w[i].d0, (unsigned long long)w[i].d1, w[i].ndim);
            qtl_ckpt_tensor_shard(ck, idx, &shard);
            if (i == 0)
                weight_shard = shard;
            else
                split_scales |= shard != weight_shard;
        }
        /* dequantized weights match the master weights */
        float smax;
        float *dq = dequant_module(ck, sc, &mods[k], &smax);
        uint64_t r0 = 0;
        for (int j = 0; j < mods[k].n; j++) {
            const struct part *pp = &parts[mods[k].p[j]];
            float *mw = malloc(pp->rows * pp->cols * sizeof *mw);
            assert_int_equal(qtl_fixture_master(&o, 0, pp->name, mw, pp->rows * pp->cols), QTL_OK);
            for (uint64_t i = 0; i < pp->rows * pp->cols; i++) {
                double x = mw[i], y = dq[r0 * pp->cols + i];
                if (!(fabs(y - x) <= bound(sc, x, smax)))
                    fail_msg("%s: %s (%s) element %llu: %.9g vs master %.9g (bound %.3g)", dir, mods[k].prefix, pp->name,
                             (unsigned long long)i, y, x, bound(sc, x, smax));
            }
            r0 += pp->rows;
            free(mw);
        }
        free(dq);
    }
    if (strcmp(sc, "bf16"))
        assert_true(split_scales); /* some weight and its scales live in different shards */
    assert_int_equal(qtl_ckpt_tensor_count(ck), expected_total);
    qtl_ckpt_close(ck);
}

static void test_every_scheme(void **state)
{
    (void)state;
    tu_mkdir_p(QTL_TEST_TMP);
    int n = 0;
    for (size_t i = 0; qtl_fixture_scheme_name(i); i++, n++) {
        check_one(qtl_fixture_scheme_name(i), QTL_FIXTURE_LLAMA);
        check_one(qtl_fixture_scheme_name(i), QTL_FIXTURE_PHI3);
    }
    assert_int_equal(n, 18);
}

/* Bytes of tensor `name` (NULL if absent). */
static unsigned char *bytes_of(qtl_ckpt_t *ck, const char *name, uint64_t *n)
{
    size_t i;
    struct qtl_tensor_info ti;
    *n = 0; /* also when absent: callers compare it, and -O3 sees that path */
    if (qtl_ckpt_tensor_find(ck, name, &i) != QTL_OK)
        return NULL;
    qtl_ckpt_tensor_at(ck, i, &ti);
    unsigned char *b = malloc(ti.nbytes + 1);
    assert_int_equal(qtl_ckpt_read_tensor(ck, i, b, (size_t)ti.nbytes), QTL_OK);
    *n = ti.nbytes;
    return b;
}

static void test_split_equals_fused_when_shared(void **state)
{
    (void)state;
    static const char *suffixes[] = {"weight", "weight_packed", "weight_scale", "weight_scale_inv", "weight_zero_point"};
    for (size_t si = 0; qtl_fixture_scheme_name(si); si++) {
        const char *sc = qtl_fixture_scheme_name(si);
        char dl[512], dp[512], msg[256];
        snprintf(dl, sizeof dl, "%s/shared-%s-llama", QTL_TEST_TMP, sc);
        snprintf(dp, sizeof dp, "%s/shared-%s-phi3", QTL_TEST_TMP, sc);
        struct qtl_fixture_options o;
        opts(&o, sc, QTL_FIXTURE_LLAMA);
        o.scale_layout = QTL_SCALE_LAYOUT_SHARED;
        TU_EXPECT(qtl_fixture_write(&o, dl, msg, sizeof msg), QTL_OK, msg);
        opts(&o, sc, QTL_FIXTURE_PHI3);
        TU_EXPECT(qtl_fixture_write(&o, dp, msg, sizeof msg), QTL_OK, msg);
        qtl_ckpt_t *cl, *cp;
        assert_int_equal(qtl_ckpt_open(dl, NULL, &cl), QTL_OK);
        assert_int_equal(qtl_ckpt_open(dp, NULL, &cp), QTL_OK);
        static const struct {
            const char *fused;
            const char *split[3];
            int n;
        } f[2] = {{"model.layers.0.self_attn.qkv_proj", {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                                         "model.layers.0.self_attn.v_proj"}, 3},
                  {"model.layers.0.mlp.gate_up_proj", {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"}, 2}};
        int compared = 0;
        for (int k = 0; k < 2; k++)
            for (size_t s = 0; s < sizeof suffixes / sizeof suffixes[0]; s++) {
                char name[192];
                uint64_t nf, ns, off = 0;
                snprintf(name, sizeof name, "%s.%s", f[k].fused, suffixes[s]);
                unsigned char *fb = bytes_of(cp, name, &nf);
                if (!fb)
                    continue;
                compared++;
                int per_tensor = 0;
                for (int j = 0; j < f[k].n; j++) {
                    snprintf(name, sizeof name, "%s.%s", f[k].split[j], suffixes[s]);
                    unsigned char *sb = bytes_of(cl, name, &ns);
                    assert_non_null(sb);
                    if (ns == nf && f[k].n > 1 && (nf <= 4))
                        per_tensor = 1; /* a per-tensor scale: every part holds the fused value */
                    if (per_tensor)
                        assert_memory_equal(sb, fb, ns);
                    else {
                        if (off + ns > nf || memcmp(sb, fb + off, ns) != 0)
                            fail_msg("%s: %s differs from its rows in %s", sc, name, f[k].fused);
                        off += ns;
                    }
                    free(sb);
                }
                if (!per_tensor && !strstr(suffixes[s], "zero_point"))
                    TU_EQ_U64(off, nf);
                free(fb);
            }
        if (compared < 2) /* at least the weights of qkv_proj and gate_up_proj */
            fail_msg("%s: %d fused tensor(s) compared, want at least 2", sc, compared);
        /* global / per-tensor scalars are the fused ones */
        static const char *scalars[] = {"weight_global_scale", "weight_scale_2", "input_scale", "input_global_scale"};
        for (size_t s = 0; s < 4; s++) {
            char name[192];
            uint64_t nf, ns;
            snprintf(name, sizeof name, "%s.%s", f[0].fused, scalars[s]);
            unsigned char *fb = bytes_of(cp, name, &nf);
            if (!fb)
                continue;
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "%s.%s", f[0].split[j], scalars[s]);
                unsigned char *sb = bytes_of(cl, name, &ns);
                assert_non_null(sb);
                assert_memory_equal(sb, fb, nf);
                free(sb);
            }
            free(fb);
        }
        qtl_ckpt_close(cl);
        qtl_ckpt_close(cp);
    }
}

static void test_per_part_differs_and_errors(void **state)
{
    (void)state;
    /* Per-part: q and k get their own per-tensor scale (the default for FP8). */
    char d[512], msg[256];
    snprintf(d, sizeof d, "%s/perpart", QTL_TEST_TMP);
    struct qtl_fixture_options o;
    opts(&o, "fp8", QTL_FIXTURE_LLAMA);
    TU_EXPECT(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_OK, msg);
    qtl_ckpt_t *ck;
    assert_int_equal(qtl_ckpt_open(d, NULL, &ck), QTL_OK);
    uint64_t n1, n2;
    unsigned char *a = bytes_of(ck, "model.layers.0.self_attn.q_proj.weight_scale", &n1);
    unsigned char *b = bytes_of(ck, "model.layers.0.self_attn.k_proj.weight_scale", &n2);
    assert_non_null(a);
    assert_non_null(b);
    TU_EQ_U64(n1, 4);
    TU_EQ_U64(n2, 4);
    assert_memory_not_equal(a, b, 4);
    free(a), free(b);
    qtl_ckpt_close(ck);
    /* same options, same bytes */
    char d2[512];
    snprintf(d2, sizeof d2, "%s/perpart2", QTL_TEST_TMP);
    TU_EXPECT(qtl_fixture_write(&o, d2, msg, sizeof msg), QTL_OK, msg);
    qtl_ckpt_t *c1, *c2;
    assert_int_equal(qtl_ckpt_open(d, NULL, &c1), QTL_OK);
    assert_int_equal(qtl_ckpt_open(d2, NULL, &c2), QTL_OK);
    for (size_t i = 0; i < qtl_ckpt_tensor_count(c1); i++) {
        struct qtl_tensor_info ti;
        qtl_ckpt_tensor_at(c1, i, &ti);
        uint64_t x, y;
        unsigned char *p = bytes_of(c1, ti.name, &x), *q = bytes_of(c2, ti.name, &y);
        assert_non_null(q);
        TU_EQ_U64(y, x);
        TU_EQ_MEM(q, p, x);
        free(p), free(q);
    }
    qtl_ckpt_close(c1);
    qtl_ckpt_close(c2);
    /* errors */
    o.scheme = "nope";
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "nope"));
    opts(&o, "ct-w4a16", QTL_FIXTURE_LLAMA);
    o.hidden = 200;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "group size"));
    float m[4];
    assert_int_equal(qtl_fixture_master(&o, 0, "q_proj", m, 4), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_fixture_master(&o, 0, "x_proj", m, 4), QTL_ERR_INVALID_ARGUMENT);
}


/* ---- MoE: Mixtral and Qwen3-MoE -----------------------------------------------------
 * What the exporters write (formats.md 2.8, 3.3, 4.1-4.2; moe-vllm-facts.md 1-2, 8), per
 * expert and projection, the scheme's tensors of the dense modules above:
 *  Mixtral    model.layers.L.block_sparse_moe.experts.E.{w1, w3 [I, H]; w2 [H, I]}.*, router
 *             block_sparse_moe.gate.weight BF16 [E, H]; every layer MoE; config
 *             num_local_experts, num_experts_per_tok, intermediate_size = I.
 *  Qwen3-MoE  mlp.experts.E.{gate_proj, up_proj [I, H]; down_proj [H, I]}.*, router
 *             mlp.gate.weight, self_attn.q_norm / k_norm [head_dim]; mlp_only layers hold a
 *             dense mlp.{gate,up,down}_proj of intermediate_size; config num_experts,
 *             moe_intermediate_size, intermediate_size, decoder_sparse_step, mlp_only_layers.
 *  Fused      Qwen3-MoE as transformers v5 saves it (save_original_format=False):
 *             mlp.experts.gate_up_proj [E, 2I, H] (gate rows, then up), mlp.experts.down_proj
 *             [E, H, I]; FineGrainedFP8 adds gate_up_proj_scale_inv [E, 2I/128, H/128] and
 *             down_proj_scale_inv [E, H/128, I/128] (F32).
 * The routers stay BF16 and are listed, with lm_head, in the quantization config's
 * ignore list (compressed-tensors and ModelOpt `ignore` / `exclude_modules`, AutoFP8
 * `ignored_layers`, Qwen's FP8 releases `modules_to_not_convert`). */
enum { MOE_I = 256, EXPERTS = 3, TOPK = 2, MOE_LAYERS = 2 };
static const uint32_t qwen3_dense[1] = {0}; /* Qwen3-MoE layer 0: an mlp_only layer */

static int is_qwen3(enum qtl_fixture_arch a) { return a == QTL_FIXTURE_QWEN3_MOE; }
static const char *arch_str(enum qtl_fixture_arch a) { return qtl_fixture_arch_name((size_t)a); }
static const char *moe_blk(enum qtl_fixture_arch a) { return is_qwen3(a) ? "mlp" : "block_sparse_moe"; }
static int moe_layer(enum qtl_fixture_arch a, uint32_t l) { return !is_qwen3(a) || l != 0; }

static void moe_opts(struct qtl_fixture_options *o, const char *scheme, enum qtl_fixture_arch arch)
{
    opts(o, scheme, arch);
    o->layers = MOE_LAYERS;
    o->experts = EXPERTS, o->top_k = TOPK, o->moe_intermediate = MOE_I;
    if (is_qwen3(arch))
        o->mlp_only_layers = qwen3_dense, o->n_mlp_only_layers = 1;
}

/* The checkpoint name of expert projection k: 0 gate (w1), 1 up (w3), 2 down (w2). */
static const char *eproj(enum qtl_fixture_arch a, int k)
{
    static const char *const mix[3] = {"w1", "w3", "w2"}, *const qw[3] = {"gate_proj", "up_proj", "down_proj"};
    return (is_qwen3(a) ? qw : mix)[k];
}

static void expert_prefix(char *buf, size_t cap, enum qtl_fixture_arch a, uint32_t l, uint32_t e, int k)
{
    snprintf(buf, cap, "model.layers.%u.%s.experts.%u.%s", l, moe_blk(a), e, eproj(a, k));
}

/* A stored module and where its master comes from. */
struct moe_mod {
    struct stored s;
    uint32_t layer;
    int expert, k; /* expert >= 0: its projection k; else parts[k] of the layer */
};

static int moe_modules(enum qtl_fixture_arch a, struct moe_mod *mm)
{
    int n = 0;
    for (uint32_t l = 0; l < MOE_LAYERS; l++) {
        for (int k = 0; k < 4; k++, n++) {
            snprintf(mm[n].s.prefix, sizeof mm[n].s.prefix, "model.layers.%u.self_attn.%s", l, parts[k].name);
            mm[n].s.rows = parts[k].rows, mm[n].s.cols = parts[k].cols;
            mm[n].layer = l, mm[n].expert = -1, mm[n].k = k;
        }
        if (!moe_layer(a, l)) {
            for (int k = 4; k < 7; k++, n++) {
                snprintf(mm[n].s.prefix, sizeof mm[n].s.prefix, "model.layers.%u.mlp.%s", l, parts[k].name);
                mm[n].s.rows = parts[k].rows, mm[n].s.cols = parts[k].cols;
                mm[n].layer = l, mm[n].expert = -1, mm[n].k = k;
            }
            continue;
        }
        for (uint32_t e = 0; e < EXPERTS; e++)
            for (int k = 0; k < 3; k++, n++) {
                expert_prefix(mm[n].s.prefix, sizeof mm[n].s.prefix, a, l, e, k);
                mm[n].s.rows = k < 2 ? MOE_I : HIDDEN, mm[n].s.cols = k < 2 ? HIDDEN : MOE_I;
                mm[n].layer = l, mm[n].expert = (int)e, mm[n].k = k;
            }
    }
    return n;
}

static float *moe_master(const struct qtl_fixture_options *o, const struct moe_mod *m)
{
    uint64_t n = m->s.rows * m->s.cols;
    float *w = malloc(n * sizeof *w);
    int rc = m->expert >= 0 ? qtl_fixture_expert_master(o, m->layer, (uint32_t)m->expert, eproj(o->arch, m->k), w, n)
                            : qtl_fixture_master(o, m->layer, parts[m->k].name, w, n);
    TU_EXPECT(rc, QTL_OK, m->s.prefix);
    return w;
}

/* The tensor `name` exists with this dtype and shape (ndim entries of d). */
static void want_tensor(qtl_ckpt_t *ck, const char *dir, const char *name, enum qtl_dtype dt, uint32_t ndim,
                        const uint64_t *d)
{
    size_t idx;
    if (qtl_ckpt_tensor_find(ck, name, &idx) != QTL_OK)
        fail_msg("%s: missing %s", dir, name);
    struct qtl_tensor_info ti;
    assert_int_equal(qtl_ckpt_tensor_at(ck, idx, &ti), QTL_OK);
    int ok = ti.dtype == dt && ti.ndim == ndim;
    for (uint32_t k = 0; ok && k < ndim; k++)
        ok = ti.shape[k] == d[k];
    if (!ok)
        fail_msg("%s: %s is %s rank %u [%llu, ...], want %s rank %u [%llu, ...]", dir, name, qtl_dtype_name(ti.dtype),
                 ti.ndim, ti.ndim ? (unsigned long long)ti.shape[0] : 0ull, qtl_dtype_name(dt), ndim,
                 ndim ? (unsigned long long)d[0] : 0ull);
}

static int in_list(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), s))
            return 1;
    }
    return 0;
}

/* The list of unquantized modules: every MoE layer's router and lm_head, nothing else. */
static void check_ignore(json_t *list, enum qtl_fixture_arch a, const char *what)
{
    if (!json_is_array(list))
        fail_msg("%s: no ignore list", what);
    size_t want = 1;
    if (!in_list(list, "lm_head"))
        fail_msg("%s: lm_head not ignored", what);
    for (uint32_t l = 0; l < MOE_LAYERS; l++) {
        char n[96];
        snprintf(n, sizeof n, "model.layers.%u.%s.gate", l, moe_blk(a));
        if (in_list(list, n) != moe_layer(a, l))
            fail_msg("%s: router %s %s the ignore list", what, n, moe_layer(a, l) ? "missing from" : "in");
        want += (size_t)moe_layer(a, l);
    }
    TU_EQ_U64(json_array_size(list), want);
}

static void check_moe_config(const char *dir, const char *sc, enum qtl_fixture_arch a)
{
    json_error_t e;
    json_t *cfg = json_load_file(tu_path(dir, "config.json"), JSON_REJECT_DUPLICATES, &e);
    assert_non_null(cfg);
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        is_qwen3(a) ? "Qwen3MoeForCausalLM" : "MixtralForCausalLM");
    assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), is_qwen3(a) ? "qwen3_moe" : "mixtral");
    TU_EQ_U64(json_integer_value(json_object_get(cfg, "num_experts_per_tok")), TOPK);
    TU_EQ_U64(json_integer_value(json_object_get(cfg, "num_hidden_layers")), MOE_LAYERS);
    TU_EQ_U64(json_integer_value(json_object_get(cfg, "head_dim")), HD);
    if (is_qwen3(a)) {
        TU_EQ_U64(json_integer_value(json_object_get(cfg, "num_experts")), EXPERTS);
        TU_EQ_U64(json_integer_value(json_object_get(cfg, "moe_intermediate_size")), MOE_I);
        TU_EQ_U64(json_integer_value(json_object_get(cfg, "intermediate_size")), INTER);
        TU_EQ_U64(json_integer_value(json_object_get(cfg, "decoder_sparse_step")), 1);
        json_t *mlp_only = json_object_get(cfg, "mlp_only_layers");
        TU_EQ_U64(json_array_size(mlp_only), 1);
        TU_EQ_U64(json_integer_value(json_array_get(mlp_only, 0)), 0);
        assert_true(json_is_false(json_object_get(cfg, "attention_bias")));
        assert_null(json_object_get(cfg, "num_local_experts"));
    } else {
        TU_EQ_U64(json_integer_value(json_object_get(cfg, "num_local_experts")), EXPERTS);
        TU_EQ_U64(json_integer_value(json_object_get(cfg, "intermediate_size")), MOE_I); /* the expert size */
        assert_null(json_object_get(cfg, "num_experts"));
        assert_null(json_object_get(cfg, "moe_intermediate_size"));
    }
    json_t *q = json_object_get(cfg, "quantization_config");
    char what[600];
    snprintf(what, sizeof what, "%s config.json", dir);
    if (!strcmp(sc, "bf16"))
        assert_null(q);
    else if (!strncmp(sc, "ct-", 3) || !strncmp(sc, "modelopt", 8))
        check_ignore(json_object_get(q, "ignore"), a, what);
    else if (!strcmp(sc, "fp8-block"))
        check_ignore(json_object_get(q, "modules_to_not_convert"), a, what);
    else
        check_ignore(json_object_get(q, "ignored_layers"), a, what);
    if (!strncmp(sc, "modelopt", 8)) {
        json_t *h = json_load_file(tu_path(dir, "hf_quant_config.json"), JSON_REJECT_DUPLICATES, &e);
        assert_non_null(h);
        snprintf(what, sizeof what, "%s hf_quant_config.json", dir);
        check_ignore(json_object_get(json_object_get(h, "quantization"), "exclude_modules"), a, what);
        json_decref(h);
    }
    json_decref(cfg);
}

/* Bytes of "<prefix>.<leaf>" (NULL if absent). */
static unsigned char *leaf_bytes(qtl_ckpt_t *ck, const char *prefix, const char *leaf, uint64_t *n)
{
    char name[256];
    snprintf(name, sizeof name, "%.150s.%.64s", prefix, leaf);
    return bytes_of(ck, name, n);
}

/* Per-expert per-tensor quantities: an expert's w1 and w3 read the same input (one
 * calibrated input scale); experts' weight scales differ from each other; per-part
 * weight scales differ between w1 and w3, NVFP4 global scales are shared by w1 and w3. */
static void check_expert_scalars(qtl_ckpt_t *ck, const char *sc, enum qtl_fixture_arch a)
{
    static const char *const inputs[] = {"input_scale", "input_global_scale"};
    static const char *const weights[] = {"weight_scale", "weight_global_scale", "weight_scale_2"};
    char p[3][EXPERTS][96];
    for (uint32_t e = 0; e < EXPERTS; e++)
        for (int k = 0; k < 3; k++)
            expert_prefix(p[k][e], sizeof p[k][e], a, 1, e, k);
    int compared = 0;
    for (size_t s = 0; s < 2; s++)
        for (uint32_t e = 0; e < EXPERTS; e++) {
            uint64_t n1, n3;
            unsigned char *i1 = leaf_bytes(ck, p[0][e], inputs[s], &n1), *i3 = leaf_bytes(ck, p[1][e], inputs[s], &n3);
            if (!i1) {
                assert_null(i3);
                continue;
            }
            assert_non_null(i3);
            TU_EQ_U64(n3, n1);
            TU_EQ_MEM(i3, i1, n1);
            compared++;
            free(i1), free(i3);
        }
    for (size_t s = 0; s < 3; s++) {
        unsigned char *w[EXPERTS] = {0}, *w3;
        uint64_t n[EXPERTS], n3;
        for (uint32_t e = 0; e < EXPERTS; e++)
            w[e] = leaf_bytes(ck, p[0][e], weights[s], &n[e]);
        if (!w[0] || n[0] > 4) /* absent, or a channel / group / block scale */
            goto next;
        compared++;
        for (uint32_t e = 1; e < EXPERTS; e++)
            if (!memcmp(w[e], w[0], n[0]))
                fail_msg("%s %s: experts 0 and %u have the same w1 %s", sc, arch_str(a), e, weights[s]);
        w3 = leaf_bytes(ck, p[1][0], weights[s], &n3);
        assert_non_null(w3);
        if (!!strstr(sc, "nvfp4") != !memcmp(w3, w[0], n3))
            fail_msg("%s %s: w1 and w3 %s %s", sc, arch_str(a), weights[s],
                     strstr(sc, "nvfp4") ? "differ (NVFP4 exporters share gate/up global scales)" : "are equal");
        free(w3);
    next:
        for (uint32_t e = 0; e < EXPERTS; e++)
            free(w[e]);
    }
    int want = !strcmp(sc, "bf16") || strstr(sc, "block") || strstr(sc, "channel") || strstr(sc, "ct-w") ||
               !strcmp(sc, "ct-int8-asym");
    if (!want && !compared)
        fail_msg("%s %s: no per-tensor expert scale compared", sc, arch_str(a));
}

static void check_moe_one(const char *sc, enum qtl_fixture_arch a)
{
    char dir[512], msg[512];
    snprintf(dir, sizeof dir, "%s/moe-%s-%s", QTL_TEST_TMP, sc, arch_str(a));
    struct qtl_fixture_options o;
    moe_opts(&o, sc, a);
    TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
    qtl_ckpt_t *ck;
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    TU_EXPECT(qtl_ckpt_check(ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_diag_count(ck), 0);
    assert_int_equal(qtl_ckpt_shard_count(ck), 2);
    check_moe_config(dir, sc, a);
    /* plain BF16 tensors: embeddings, norms, routers, lm_head */
    const uint64_t emb[2] = {VOCAB, HIDDEN}, hid[1] = {HIDDEN}, hd[1] = {HD}, router[2] = {EXPERTS, HIDDEN};
    char name[256];
    size_t total = 0;
    want_tensor(ck, dir, "model.embed_tokens.weight", QTL_DTYPE_BF16, 2, emb);
    want_tensor(ck, dir, "lm_head.weight", QTL_DTYPE_BF16, 2, emb);
    want_tensor(ck, dir, "model.norm.weight", QTL_DTYPE_BF16, 1, hid);
    total += 3;
    for (uint32_t l = 0; l < MOE_LAYERS; l++) {
        snprintf(name, sizeof name, "model.layers.%u.input_layernorm.weight", l);
        want_tensor(ck, dir, name, QTL_DTYPE_BF16, 1, hid);
        snprintf(name, sizeof name, "model.layers.%u.post_attention_layernorm.weight", l);
        want_tensor(ck, dir, name, QTL_DTYPE_BF16, 1, hid);
        total += 2;
        if (is_qwen3(a)) {
            snprintf(name, sizeof name, "model.layers.%u.self_attn.q_norm.weight", l);
            want_tensor(ck, dir, name, QTL_DTYPE_BF16, 1, hd);
            snprintf(name, sizeof name, "model.layers.%u.self_attn.k_norm.weight", l);
            want_tensor(ck, dir, name, QTL_DTYPE_BF16, 1, hd);
            total += 2;
        }
        snprintf(name, sizeof name, "model.layers.%u.%s.gate.weight", l, moe_blk(a));
        size_t idx;
        if (moe_layer(a, l)) {
            want_tensor(ck, dir, name, QTL_DTYPE_BF16, 2, router);
            total++;
        } else {
            assert_int_equal(qtl_ckpt_tensor_find(ck, name, &idx), QTL_ERR_NOT_FOUND);
        }
    }
    /* the quantized modules */
    struct moe_mod mm[2 * (4 + 3 * EXPERTS)];
    int nm = moe_modules(a, mm), split = 0, together = 0;
    for (int k = 0; k < nm; k++) {
        struct want w[8];
        int nw = expected(sc, mm[k].s.rows, mm[k].s.cols, w);
        total += (size_t)nw;
        size_t weight_shard = 0;
        for (int i = 0; i < nw; i++) {
            uint64_t d[2] = {w[i].d0, w[i].d1};
            size_t idx, shard;
            snprintf(name, sizeof name, "%.96s.%.64s", mm[k].s.prefix, w[i].suffix);
            want_tensor(ck, dir, name, w[i].dt, (uint32_t)w[i].ndim, d);
            assert_int_equal(qtl_ckpt_tensor_find(ck, name, &idx), QTL_OK);
            qtl_ckpt_tensor_shard(ck, idx, &shard);
            if (i == 0)
                weight_shard = shard;
            else if (mm[k].expert >= 0)
                shard == weight_shard ? together++ : split++;
        }
        float smax, *dq = dequant_module(ck, sc, &mm[k].s, &smax), *mw = moe_master(&o, &mm[k]);
        for (uint64_t i = 0; i < mm[k].s.rows * mm[k].s.cols; i++)
            if (!(fabs((double)dq[i] - mw[i]) <= bound(sc, mw[i], smax)))
                fail_msg("%s: %s element %llu: %.9g vs master %.9g (bound %.3g)", dir, mm[k].s.prefix,
                         (unsigned long long)i, dq[i], mw[i], bound(sc, mw[i], smax));
        free(dq), free(mw);
    }
    if (strcmp(sc, "bf16") && (!split || !together)) /* sharded by size: some experts' scales apart, some not */
        fail_msg("%s: %d expert scale(s) in another shard than their weight, %d in the same", dir, split, together);
    TU_EQ_U64(qtl_ckpt_tensor_count(ck), total);
    check_expert_scalars(ck, sc, a);
    qtl_ckpt_close(ck);
}

static void test_moe_every_scheme(void **state)
{
    (void)state;
    tu_mkdir_p(QTL_TEST_TMP);
    int n = 0;
    for (size_t i = 0; qtl_fixture_scheme_name(i); i++, n++) {
        check_moe_one(qtl_fixture_scheme_name(i), QTL_FIXTURE_MIXTRAL);
        check_moe_one(qtl_fixture_scheme_name(i), QTL_FIXTURE_QWEN3_MOE);
    }
    assert_int_equal(n, 18);
}

/* Qwen3-MoE fused on disk holds, expert by expert, the bytes of the split checkpoint. */
static void test_moe_fused_equals_split(void **state)
{
    (void)state;
    static const char *const schemes_fused[] = {"bf16", "fp8-block"};
    for (size_t si = 0; si < 2; si++) {
        const char *sc = schemes_fused[si];
        char ds[512], df[512], msg[512];
        snprintf(ds, sizeof ds, "%s/moe-split-%s", QTL_TEST_TMP, sc);
        snprintf(df, sizeof df, "%s/moe-fused-%s", QTL_TEST_TMP, sc);
        struct qtl_fixture_options o;
        moe_opts(&o, sc, QTL_FIXTURE_QWEN3_MOE);
        TU_EXPECT(qtl_fixture_write(&o, ds, msg, sizeof msg), QTL_OK, msg);
        o.fused_experts = 1;
        TU_EXPECT(qtl_fixture_write(&o, df, msg, sizeof msg), QTL_OK, msg);
        qtl_ckpt_t *cs, *cf;
        assert_int_equal(qtl_ckpt_open(ds, NULL, &cs), QTL_OK);
        TU_EXPECT(qtl_ckpt_open(df, NULL, &cf), QTL_OK, qtl_ckpt_errmsg(cf));
        TU_EXPECT(qtl_ckpt_check(cf), QTL_OK, qtl_ckpt_errmsg(cf));
        int block = !strcmp(sc, "fp8-block");
        enum qtl_dtype wdt = block ? QTL_DTYPE_F8_E4M3 : QTL_DTYPE_BF16;
        uint64_t esz = block ? 1 : 2;
        const uint64_t gu_shape[3] = {EXPERTS, 2 * MOE_I, HIDDEN}, dn_shape[3] = {EXPERTS, HIDDEN, MOE_I};
        const uint64_t gus_shape[3] = {EXPERTS, 2 * MOE_I / 128, HIDDEN / 128},
                       dns_shape[3] = {EXPERTS, HIDDEN / 128, MOE_I / 128};
        want_tensor(cf, df, "model.layers.1.mlp.experts.gate_up_proj", wdt, 3, gu_shape);
        want_tensor(cf, df, "model.layers.1.mlp.experts.down_proj", wdt, 3, dn_shape);
        if (block) {
            want_tensor(cf, df, "model.layers.1.mlp.experts.gate_up_proj_scale_inv", QTL_DTYPE_F32, 3, gus_shape);
            want_tensor(cf, df, "model.layers.1.mlp.experts.down_proj_scale_inv", QTL_DTYPE_F32, 3, dns_shape);
        }
        /* (fused tensor, its per-expert element size, the split projections stacked in it) */
        struct {
            const char *fused;
            uint64_t per_row_bytes, rows[2];
            const char *leaf;
            int k[2], n;
        } f[4] = {{"model.layers.1.mlp.experts.gate_up_proj", HIDDEN * esz, {MOE_I, MOE_I}, "weight", {0, 1}, 2},
                  {"model.layers.1.mlp.experts.down_proj", MOE_I * esz, {HIDDEN, 0}, "weight", {2, 0}, 1},
                  {"model.layers.1.mlp.experts.gate_up_proj_scale_inv", HIDDEN / 128 * 4, {MOE_I / 128, MOE_I / 128},
                   "weight_scale_inv", {0, 1}, 2},
                  {"model.layers.1.mlp.experts.down_proj_scale_inv", MOE_I / 128 * 4, {HIDDEN / 128, 0},
                   "weight_scale_inv", {2, 0}, 1}};
        for (int t = 0; t < (block ? 4 : 2); t++) {
            uint64_t nf, off = 0;
            unsigned char *fb = bytes_of(cf, f[t].fused, &nf);
            assert_non_null(fb);
            for (uint32_t e = 0; e < EXPERTS; e++)
                for (int j = 0; j < f[t].n; j++) {
                    char pre[96];
                    uint64_t ns;
                    expert_prefix(pre, sizeof pre, QTL_FIXTURE_QWEN3_MOE, 1, e, f[t].k[j]);
                    unsigned char *sb = leaf_bytes(cs, pre, f[t].leaf, &ns);
                    assert_non_null(sb);
                    TU_EQ_U64(ns, f[t].rows[j] * f[t].per_row_bytes);
                    if (off + ns > nf || memcmp(fb + off, sb, ns))
                        fail_msg("%s: %s expert %u (%s) differs from %s.%s", sc, f[t].fused, e, eproj(o.arch, f[t].k[j]),
                                 pre, f[t].leaf);
                    off += ns;
                    free(sb);
                }
            TU_EQ_U64(off, nf);
            free(fb);
        }
        /* the fused slices dequantize to the experts' masters */
        uint64_t nw, ns = 0;
        unsigned char *gw = bytes_of(cf, "model.layers.1.mlp.experts.gate_up_proj", &nw);
        unsigned char *gs = block ? bytes_of(cf, "model.layers.1.mlp.experts.gate_up_proj_scale_inv", &ns) : NULL;
        for (uint32_t e = 0; e < EXPERTS; e++) {
            struct qtl_dequant_desc d = {.rows = 2 * MOE_I, .cols = HIDDEN, .weight = gw + e * 2 * MOE_I * HIDDEN * esz,
                                         .weight_dtype = wdt, .scheme = QTL_SCHEME_NONE};
            if (block) {
                d.scheme = QTL_SCHEME_FP8, d.granularity = QTL_SCALE_BLOCK, d.block_rows = d.block_cols = 128;
                d.scale = gs + e * (ns / EXPERTS), d.scale_dtype = QTL_DTYPE_F32;
            }
            float *dq = malloc(2 * MOE_I * HIDDEN * sizeof *dq), *mw = malloc(MOE_I * HIDDEN * sizeof *mw);
            TU_EXPECT(qtl_dequant(&d, 0, 2 * MOE_I, QTL_DTYPE_F32, dq, 2 * MOE_I * HIDDEN * 4, 1, 1, msg, sizeof msg),
                      QTL_OK, msg);
            for (int h = 0; h < 2; h++) {
                TU_EXPECT(qtl_fixture_expert_master(&o, 1, e, h ? "up_proj" : "gate_proj", mw, MOE_I * HIDDEN), QTL_OK,
                          "expert master");
                for (uint64_t i = 0; i < MOE_I * HIDDEN; i++) {
                    double x = mw[i], y = dq[h * MOE_I * HIDDEN + i];
                    if (!(fabs(y - x) <= (block ? 0.0625 * fabs(x) + 0x1p-14 : 0.0)))
                        fail_msg("%s fused expert %u %s element %llu: %.9g vs master %.9g", sc, e, h ? "up" : "gate",
                                 (unsigned long long)i, y, x);
                }
            }
            free(dq), free(mw);
        }
        free(gw), free(gs);
        /* no per-expert tensor in the fused checkpoint; every other tensor the same bytes */
        size_t idx;
        assert_int_equal(qtl_ckpt_tensor_find(cf, "model.layers.1.mlp.experts.0.gate_proj.weight", &idx),
                         QTL_ERR_NOT_FOUND);
        size_t same = 0;
        for (size_t i = 0; i < qtl_ckpt_tensor_count(cf); i++) {
            struct qtl_tensor_info ti;
            qtl_ckpt_tensor_at(cf, i, &ti);
            if (strstr(ti.name, ".mlp.experts."))
                continue;
            uint64_t x, y;
            unsigned char *a = bytes_of(cf, ti.name, &x), *b = bytes_of(cs, ti.name, &y);
            if (!b)
                fail_msg("%s: %s only in the fused checkpoint", sc, ti.name);
            TU_EQ_U64(y, x);
            TU_EQ_MEM(a, b, x);
            free(a), free(b);
            same++;
        }
        TU_EQ_U64(qtl_ckpt_tensor_count(cf), same + (block ? 4 : 2));
        qtl_ckpt_close(cs);
        qtl_ckpt_close(cf);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Same arguments, same bytes in every file; another seed, other expert weights. */
static void test_moe_deterministic(void **state)
{
    (void)state;
    static const struct {
        const char *scheme;
        enum qtl_fixture_arch arch;
        int fused;
        uint32_t shards;
    } cases[] = {{"ct-nvfp4", QTL_FIXTURE_MIXTRAL, 0, 3},
                 {"fp8-block", QTL_FIXTURE_QWEN3_MOE, 1, 3},
                 {"ct-w4a16-asym", QTL_FIXTURE_QWEN3_MOE, 0, 2},
                 {"modelopt-fp8", QTL_FIXTURE_MIXTRAL, 0, 1}};
    static const char *const files[] = {"config.json", "model.safetensors.index.json", "hf_quant_config.json",
                                        "model.safetensors", "model-00001-of-00003.safetensors",
                                        "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
                                        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char d[3][512], msg[512];
        struct qtl_fixture_options o;
        moe_opts(&o, cases[c].scheme, cases[c].arch);
        o.fused_experts = cases[c].fused, o.shards = cases[c].shards;
        for (int r = 0; r < 3; r++) {
            snprintf(d[r], sizeof d[r], "%s/moe-det-%zu-%d", QTL_TEST_TMP, c, r);
            tu_rm_rf(d[r]);
            o.seed = r == 2 ? 8 : 7;
            TU_EXPECT(qtl_fixture_write(&o, d[r], msg, sizeof msg), QTL_OK, msg);
        }
        int compared = 0;
        for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
            size_t n0 = 0, n1 = 0;
            unsigned char *a = slurp(tu_path(d[0], files[k]), &n0), *b = slurp(tu_path(d[1], files[k]), &n1);
            assert_int_equal(!a, !b);
            if (a) {
                TU_EQ_U64(n1, n0);
                TU_EQ_MEM(b, a, n0);
                compared++;
            }
            free(a), free(b);
        }
        assert_true(compared >= 2 + (cases[c].shards > 1));
        qtl_ckpt_t *c0, *c2;
        assert_int_equal(qtl_ckpt_open(d[0], NULL, &c0), QTL_OK);
        assert_int_equal(qtl_ckpt_open(d[2], NULL, &c2), QTL_OK);
        const char *w = cases[c].fused ? "model.layers.1.mlp.experts.gate_up_proj" : NULL;
        char pre[96], name[160];
        expert_prefix(pre, sizeof pre, cases[c].arch, 1, 2, 2);
        snprintf(name, sizeof name, "%s.%s", pre, strstr(cases[c].scheme, "ct-") ? "weight_packed" : "weight");
        uint64_t x, y;
        unsigned char *a = bytes_of(c0, w ? w : name, &x), *b = bytes_of(c2, w ? w : name, &y);
        assert_non_null(a);
        assert_non_null(b);
        TU_EQ_U64(y, x);
        assert_memory_not_equal(a, b, x);
        free(a), free(b);
        qtl_ckpt_close(c0);
        qtl_ckpt_close(c2);
    }
}

/* The MoE options the generator refuses, each with its reason. */
static void test_moe_refusals(void **state)
{
    (void)state;
    static const uint32_t past[1] = {5};
    char d[512], msg[1024];
    snprintf(d, sizeof d, "%s/moe-refused", QTL_TEST_TMP);
    struct qtl_fixture_options o;
    static const char *const unfusable[] = {"fp8", "fp8-dynamic", "ct-fp8", "ct-fp8-block", "ct-nvfp4", "ct-w4a16",
                                            "modelopt-fp8", "modelopt-nvfp4"};
    for (size_t k = 0; k < sizeof unfusable / sizeof unfusable[0]; k++) {
        moe_opts(&o, unfusable[k], QTL_FIXTURE_QWEN3_MOE);
        o.fused_experts = 1;
        assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(msg, "one tensor set per expert"));
    }
    moe_opts(&o, "bf16", QTL_FIXTURE_MIXTRAL);
    o.fused_experts = 1;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "qwen3-moe only"));
    moe_opts(&o, "bf16", QTL_FIXTURE_LLAMA);
    o.fused_experts = 1;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    moe_opts(&o, "fp8-block", QTL_FIXTURE_QWEN3_MOE);
    o.fused_experts = 1, o.moe_intermediate = 192;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "straddle"));
    moe_opts(&o, "bf16", QTL_FIXTURE_MIXTRAL);
    o.mlp_only_layers = qwen3_dense, o.n_mlp_only_layers = 1;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    moe_opts(&o, "bf16", QTL_FIXTURE_QWEN3_MOE);
    o.mlp_only_layers = past;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "layer 5"));
    moe_opts(&o, "bf16", QTL_FIXTURE_QWEN3_MOE);
    o.top_k = EXPERTS + 1;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    o.top_k = 0;
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    moe_opts(&o, "ct-w4a16", QTL_FIXTURE_MIXTRAL);
    o.moe_intermediate = 200; /* down_proj's input columns: not a multiple of the group */
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "group size"));
    /* the expert masters: MoE archs, experts in range, names, sizes */
    moe_opts(&o, "bf16", QTL_FIXTURE_MIXTRAL);
    float *a = malloc(MOE_I * HIDDEN * sizeof *a), *b = malloc(MOE_I * HIDDEN * sizeof *b);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "w1", a, MOE_I * HIDDEN), QTL_OK);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "gate_proj", b, MOE_I * HIDDEN), QTL_OK);
    TU_EQ_MEM(a, b, MOE_I * HIDDEN * 4);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 1, "w1", b, MOE_I * HIDDEN), QTL_OK);
    assert_memory_not_equal(a, b, MOE_I * HIDDEN * 4);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "w3", b, MOE_I * HIDDEN), QTL_OK);
    assert_memory_not_equal(a, b, MOE_I * HIDDEN * 4);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "w2", b, MOE_I * HIDDEN), QTL_OK); /* [H, I]: same count */
    assert_int_equal(qtl_fixture_expert_master(&o, 0, EXPERTS, "w1", a, MOE_I * HIDDEN), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "w4", a, MOE_I * HIDDEN), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "w1", a, 4), QTL_ERR_INVALID_ARGUMENT);
    o.arch = QTL_FIXTURE_LLAMA;
    assert_int_equal(qtl_fixture_expert_master(&o, 0, 0, "w1", a, MOE_I * HIDDEN), QTL_ERR_INVALID_ARGUMENT);
    free(a), free(b);
}

/* Names of a checkpoint's tensors. */
static size_t names_of(qtl_ckpt_t *ck, char (*names)[192], size_t cap)
{
    size_t n = qtl_ckpt_tensor_count(ck);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        struct qtl_tensor_info ti;
        qtl_ckpt_tensor_at(ck, i, &ti);
        snprintf(names[i], sizeof names[i], "%s", ti.name);
    }
    return n;
}

/* scale.unwritten drops exactly one scale of the first MoE layer's expert 1's w3 / up_proj;
 * expert.missing drops every tensor of that expert; both keep the index consistent. */
static void test_moe_breaks(void **state)
{
    (void)state;
    static const struct {
        const char *scheme, *brk, *leaf; /* leaf: the dropped tensor; NULL: the whole expert */
        enum qtl_fixture_arch arch;
    } cases[] = {{"fp8", "scale.unwritten", "weight_scale", QTL_FIXTURE_MIXTRAL},
                 {"ct-fp8", "scale.unwritten", "weight_scale", QTL_FIXTURE_QWEN3_MOE},
                 {"fp8-block", "scale.unwritten", "weight_scale_inv", QTL_FIXTURE_QWEN3_MOE},
                 {"ct-nvfp4", "scale.unwritten", "weight_global_scale", QTL_FIXTURE_QWEN3_MOE},
                 {"modelopt-nvfp4", "scale.unwritten", "weight_scale_2", QTL_FIXTURE_MIXTRAL},
                 {"ct-w4a16-asym", "scale.unwritten", "weight_scale", QTL_FIXTURE_MIXTRAL},
                 {"ct-nvfp4", "expert.missing", NULL, QTL_FIXTURE_MIXTRAL},
                 {"bf16", "expert.missing", NULL, QTL_FIXTURE_QWEN3_MOE},
                 {"ct-w4a16", "expert.missing", NULL, QTL_FIXTURE_QWEN3_MOE}};
    static char clean[512][192], broken[512][192];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char d0[512], d1[512], msg[512], drop[192];
        snprintf(d0, sizeof d0, "%s/moe-brk-%zu-clean", QTL_TEST_TMP, c);
        snprintf(d1, sizeof d1, "%s/moe-brk-%zu", QTL_TEST_TMP, c);
        struct qtl_fixture_options o;
        moe_opts(&o, cases[c].scheme, cases[c].arch);
        TU_EXPECT(qtl_fixture_write(&o, d0, msg, sizeof msg), QTL_OK, msg);
        o.break_id = cases[c].brk;
        TU_EXPECT(qtl_fixture_write(&o, d1, msg, sizeof msg), QTL_OK, msg);
        uint32_t layer = is_qwen3(cases[c].arch) ? 1 : 0; /* the first MoE layer */
        if (cases[c].leaf) {
            char pre[96];
            expert_prefix(pre, sizeof pre, cases[c].arch, layer, 1, 1);
            snprintf(drop, sizeof drop, "%s.%s", pre, cases[c].leaf);
        } else {
            snprintf(drop, sizeof drop, "model.layers.%u.%s.experts.1.", layer, moe_blk(cases[c].arch));
        }
        qtl_ckpt_t *c0, *c1;
        assert_int_equal(qtl_ckpt_open(d0, NULL, &c0), QTL_OK);
        TU_EXPECT(qtl_ckpt_open(d1, NULL, &c1), QTL_OK, qtl_ckpt_errmsg(c1));
        TU_EXPECT(qtl_ckpt_check(c1), QTL_OK, qtl_ckpt_errmsg(c1)); /* index and shards agree */
        assert_int_equal(qtl_ckpt_diag_count(c1), 0);
        size_t n0 = names_of(c0, clean, 512), n1 = names_of(c1, broken, 512), dropped = 0, k = 0;
        for (size_t i = 0; i < n0; i++) {
            int gone = cases[c].leaf ? !strcmp(clean[i], drop) : !strncmp(clean[i], drop, strlen(drop));
            if (gone) {
                dropped++;
                continue;
            }
            size_t idx;
            if (qtl_ckpt_tensor_find(c1, clean[i], &idx) != QTL_OK)
                fail_msg("%s %s: %s dropped too", cases[c].scheme, cases[c].brk, clean[i]);
            k++;
        }
        uint64_t per_expert = (uint64_t)expected_count(cases[c].scheme) * 3;
        TU_EQ_U64(dropped, cases[c].leaf ? 1 : per_expert);
        TU_EQ_U64(n1, k);
        qtl_ckpt_close(c0);
        qtl_ckpt_close(c1);
    }
    /* where they do not apply */
    char d[512], msg[512];
    snprintf(d, sizeof d, "%s/moe-brk-na", QTL_TEST_TMP);
    struct qtl_fixture_options o;
    moe_opts(&o, "bf16", QTL_FIXTURE_MIXTRAL);
    o.break_id = "scale.unwritten"; /* no scale */
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    moe_opts(&o, "bf16", QTL_FIXTURE_QWEN3_MOE);
    o.fused_experts = 1, o.break_id = "expert.missing"; /* no per-expert tensor */
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "fused"));
    opts(&o, "bf16", QTL_FIXTURE_LLAMA);
    o.break_id = "expert.missing"; /* no expert */
    assert_int_equal(qtl_fixture_write(&o, d, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
}

static void empty_dir(const char *dir)
{
    DIR *dd = opendir(dir);
    for (struct dirent *e; dd && (e = readdir(dd));)
        if (e->d_name[0] != '.')
            unlink(tu_path(dir, e->d_name));
    if (dd)
        closedir(dd);
}

/* Every allocation failure of a MoE write (split, fused, with the breaks that rewrite
 * shards) is QTL_ERR_NOMEM with a message, and leaks nothing. */
static void test_moe_oom(void **state)
{
    (void)state;
    static const struct {
        const char *scheme, *brk;
        enum qtl_fixture_arch arch;
        int fused;
        uint32_t dim;
    } cases[] = {{"ct-nvfp4", "expert.missing", QTL_FIXTURE_MIXTRAL, 0, 32},
                 {"fp8-block", NULL, QTL_FIXTURE_QWEN3_MOE, 1, 128},
                 {"modelopt-fp8", "scale.unwritten", QTL_FIXTURE_QWEN3_MOE, 0, 32},
                 {"ct-w4a16-asym", NULL, QTL_FIXTURE_QWEN3_MOE, 0, 128}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct qtl_fixture_options o;
        moe_opts(&o, cases[c].scheme, cases[c].arch);
        o.hidden = o.head_dim = o.intermediate = o.moe_intermediate = cases[c].dim;
        o.heads = o.kv_heads = 1, o.vocab = 16, o.experts = 2, o.top_k = 1;
        o.layers = is_qwen3(cases[c].arch) ? 2 : 1; /* Qwen3: a dense and a MoE layer */
        o.fused_experts = cases[c].fused, o.break_id = cases[c].brk;
        o.allocator = &tu_allocator;
        char d[512], msg[512];
        snprintf(d, sizeof d, "%s/moe-oom-%zu", QTL_TEST_TMP, c);
        long n = 0;
        for (;; n++) {
            empty_dir(d); /* a rename over an existing file makes ext4 flush the new one */
            tu_counter_reset(n);
            msg[0] = '\0';
            int rc = qtl_fixture_write(&o, d, msg, sizeof msg);
            if (tu_counter.live != 0)
                fail_msg("%s fail_at=%ld: %ld allocation(s) leaked (%s)", cases[c].scheme, n, tu_counter.live, msg);
            if (!tu_counter.failed) {
                TU_EXPECT(rc, QTL_OK, msg);
                break;
            }
            if (rc != QTL_ERR_NOMEM || !strstr(msg, "out of memory"))
                fail_msg("%s fail_at=%ld: %s '%s', want NOMEM with 'out of memory'", cases[c].scheme, n,
                         qtl_errname(rc), msg);
        }
        tu_counter_reset(-1);
        if (n < 20)
            fail_msg("%s: only %ld allocations", cases[c].scheme, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_scheme),
        cmocka_unit_test(test_split_equals_fused_when_shared),
        cmocka_unit_test(test_per_part_differs_and_errors),
        cmocka_unit_test(test_moe_every_scheme),
        cmocka_unit_test(test_moe_fused_equals_split),
        cmocka_unit_test(test_moe_deterministic),
        cmocka_unit_test(test_moe_refusals),
        cmocka_unit_test(test_moe_breaks),
        cmocka_unit_test(test_moe_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
