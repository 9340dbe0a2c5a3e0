/* Fixture generator: every scheme x arch passes the strict reader and the
 * checkpoint check, carries its exporter's config fields and exactly the
 * tensors formats.md lists (dtype and shape), dequantizes back to the float
 * master weights within the scheme's error bound, and with shared scales the
 * split (Llama) and fused (Phi-3) checkpoints hold the same quantized bytes. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_scheme),
        cmocka_unit_test(test_split_equals_fused_when_shared),
        cmocka_unit_test(test_per_part_differs_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
