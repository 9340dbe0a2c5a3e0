/* Model configuration: shape, params_dtype, and per-layer scheme resolution
 * (ignore lists, target precedence, fused layers) for every fixture scheme
 * and for hand-written configs. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static const char *write_cfg(const char *name, const char *json, const char *hfq)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", QTL_TEST_TMP, name);
    tu_rm_rf(dir);
    tu_mkdir_p(dir);
    tu_write(tu_path(dir, "config.json"), json, strlen(json));
    if (hfq)
        tu_write(tu_path(dir, "hf_quant_config.json"), hfq, strlen(hfq));
    return dir;
}

#define BASE "\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 512, \"num_attention_heads\": 8, " \
             "\"num_key_value_heads\": 2, \"intermediate_size\": 1024, \"num_hidden_layers\": 2, \"vocab_size\": 100"

static enum qtl_layer_scheme scheme_of(qtl_config_t *c, const char *prefix, const char *const *parts, size_t n)
{
    struct qtl_layer_quant q;
    TU_EXPECT(qtl_config_layer_quant(c, prefix, parts, n, &q), QTL_OK, qtl_config_errmsg(c));
    return q.scheme;
}

static void test_fixture_schemes(void **state)
{
    (void)state;
    static const struct {
        const char *fixture;
        enum qtl_layer_scheme want;
        int static_input;
    } cases[] = {
        {"bf16", QTL_LS_UNQUANTIZED, 0},         {"fp8", QTL_LS_FP8_TENSOR, 1},
        {"fp8-dynamic", QTL_LS_FP8_TENSOR, 0},   {"fp8-block", QTL_LS_FP8_BLOCK, 0},
        {"ct-fp8", QTL_LS_CT_FP8_TENSOR, 1},     {"ct-fp8-channel", QTL_LS_CT_FP8_CHANNEL, 0},
        {"ct-fp8-block", QTL_LS_CT_FP8_BLOCK, 0}, {"ct-int8", QTL_LS_CT_INT8_TENSOR, 1},
        {"ct-int8-channel", QTL_LS_CT_INT8_CHANNEL, 0}, {"ct-int8-asym", QTL_LS_CT_INT8_CHANNEL, 1},
        {"ct-nvfp4", QTL_LS_CT_NVFP4, 1},        {"ct-nvfp4a16", QTL_LS_CT_NVFP4_A16, 0},
        {"ct-w4a16", QTL_LS_CT_WNA16, 0},        {"ct-w4a16-asym", QTL_LS_CT_WNA16, 0},
        {"ct-w8a16", QTL_LS_CT_WNA16, 0},        {"ct-w4a16-actorder", QTL_LS_CT_WNA16, 0},
        {"modelopt-fp8", QTL_LS_MODELOPT_FP8, 1}, {"modelopt-nvfp4", QTL_LS_MODELOPT_NVFP4, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int arch = 0; arch < 2; arch++) {
            char dir[512], msg[256];
            snprintf(dir, sizeof dir, "%s/fx-%s-%d", QTL_TEST_TMP, cases[i].fixture, arch);
            struct qtl_fixture_options o;
            qtl_fixture_defaults(&o);
            o.scheme = cases[i].fixture;
            o.arch = (enum qtl_fixture_arch)arch;
            o.layers = 1, o.hidden = 256, o.heads = 4, o.kv_heads = 2, o.head_dim = 64, o.intermediate = 512, o.vocab = 64;
            TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
            qtl_config_t *c;
            TU_EXPECT(qtl_config_open(dir, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
            if (tu_vllm_refuses(cases[i].fixture)) { /* parsed, but no layer resolves: vLLM 0.32's rule */
                struct qtl_layer_quant rq;
                assert_int_equal(qtl_config_layer_quant(c, "model.layers.0.mlp.down_proj", NULL, 0, &rq),
                                 QTL_ERR_UNSUPPORTED);
                assert_non_null(strstr(qtl_config_errmsg(c), "actorder=group (weight_g_idx; vLLM 0.32 refuses"));
                qtl_config_close(c);
                continue;
            }
            const struct qtl_model_shape *s = qtl_config_shape(c);
            assert_int_equal(s->arch, arch ? QTL_ARCH_PHI3 : QTL_ARCH_LLAMA);
            assert_int_equal(s->hidden, 256);
            assert_int_equal(s->heads, 4);
            assert_int_equal(s->kv_heads, 2);
            assert_int_equal(s->head_dim, 64);
            assert_int_equal(s->intermediate, 512);
            assert_int_equal(s->layers, 1);
            assert_int_equal(s->vocab, 64);
            assert_false(s->tie_word_embeddings);
            assert_int_equal(s->params_dtype, QTL_DTYPE_BF16);
            static const char *const qkv[3] = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                               "model.layers.0.self_attn.v_proj"};
            static const char *const gu[2] = {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"};
            struct qtl_layer_quant q;
            if (arch == 0)
                TU_EXPECT(qtl_config_layer_quant(c, "model.layers.0.self_attn.qkv_proj", qkv, 3, &q), QTL_OK,
                          qtl_config_errmsg(c));
            else
                TU_EXPECT(qtl_config_layer_quant(c, "model.layers.0.self_attn.qkv_proj", NULL, 0, &q), QTL_OK,
                          qtl_config_errmsg(c));
            if (q.scheme != cases[i].want)
                fail_msg("%s: qkv_proj is %s, want %s", cases[i].fixture, qtl_layer_scheme_name(q.scheme),
                         qtl_layer_scheme_name(cases[i].want));
            assert_int_equal(q.static_input, cases[i].static_input);
            assert_int_equal(scheme_of(c, "model.layers.0.mlp.gate_up_proj", arch ? NULL : gu, arch ? 0 : 2), cases[i].want);
            assert_int_equal(scheme_of(c, "model.layers.0.mlp.down_proj", NULL, 0), cases[i].want);
            assert_int_equal(scheme_of(c, "lm_head", NULL, 0), QTL_LS_UNQUANTIZED); /* ignored, as exporters do */
            if (!strcmp(cases[i].fixture, "ct-w4a16-asym"))
                assert_true(!q.symmetric);
            if (!strcmp(cases[i].fixture, "ct-int8-asym"))
                assert_true(!q.input_symmetric);
            if (strstr(cases[i].fixture, "block")) {
                assert_int_equal(q.block[0], 128);
                assert_int_equal(q.block[1], 128);
            }
            qtl_config_close(c);
        }
    }
}

static void test_shape_rules(void **state)
{
    (void)state;
    qtl_config_t *c;
    const char *d = write_cfg("dtype32", "{" BASE ", \"torch_dtype\": \"float32\"}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(qtl_config_shape(c)->params_dtype, QTL_DTYPE_BF16);
    assert_int_equal(qtl_config_shape(c)->head_dim, 64); /* hidden / heads */
    assert_int_equal(qtl_config_method(c), QTL_QM_NONE);
    qtl_config_close(c);
    d = write_cfg("dtype16", "{" BASE ", \"torch_dtype\": \"float16\", \"tie_word_embeddings\": true}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(qtl_config_shape(c)->params_dtype, QTL_DTYPE_F16);
    assert_true(qtl_config_shape(c)->tie_word_embeddings);
    qtl_config_close(c);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_BF16, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(qtl_config_shape(c)->params_dtype, QTL_DTYPE_BF16); /* --dtype */
    qtl_config_close(c);
    d = write_cfg("qwen2", "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 512, \"num_attention_heads\": 8, "
                           "\"intermediate_size\": 1024, \"num_hidden_layers\": 2, \"vocab_size\": 100}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_true(qtl_config_shape(c)->qkv_bias);
    assert_int_equal(qtl_config_shape(c)->kv_heads, 8);
    qtl_config_close(c);
    /* errors name the file and the rule */
    d = write_cfg("gpt2", "{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 512}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_UNSUPPORTED, qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "GPT2LMHeadModel"));
    assert_non_null(strstr(qtl_config_errmsg(c), "Phi3ForCausalLM"));
    qtl_config_close(c);
    d = write_cfg("nohidden", "{\"architectures\": [\"LlamaForCausalLM\"], \"num_attention_heads\": 8}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_JSON, qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "hidden_size"));
    qtl_config_close(c);
    d = write_cfg("dup", "{" BASE ", \"vocab_size\": 5}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_JSON, qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "config.json"));
    qtl_config_close(c);
    d = write_cfg("gqa", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 512, \"num_attention_heads\": 8, "
                         "\"num_key_value_heads\": 3, \"intermediate_size\": 1024, \"num_hidden_layers\": 2, "
                         "\"vocab_size\": 100}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_JSON, qtl_config_errmsg(c));
    qtl_config_close(c);
    TU_EXPECT(qtl_config_open(QTL_TEST_TMP "/none", NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_OPEN, qtl_config_errmsg(c));
    qtl_config_close(c);
}

static void test_ct_precedence(void **state)
{
    (void)state;
    const char *cfg =
        "{" BASE ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"mixed-precision\","
        " \"ignore\": [\"lm_head\", \"re:.*layers\\\\.1\\\\..*\"],"
        " \"config_groups\": {"
        "  \"group_0\": {\"targets\": [\"Linear\"], \"format\": \"pack-quantized\", \"input_activations\": null,"
        "     \"weights\": {\"num_bits\": 4, \"type\": \"int\", \"strategy\": \"group\", \"group_size\": 128}},"
        "  \"group_1\": {\"targets\": [\"re:.*mlp\\\\.down_proj$\"], \"format\": \"float-quantized\","
        "     \"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"channel\"},"
        "     \"input_activations\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"token\", \"dynamic\": true}},"
        "  \"group_2\": {\"targets\": [\"model.layers.0.self_attn.o_proj\"], \"input_activations\": null,"
        "     \"weights\": {\"num_bits\": 8, \"type\": \"int\", \"strategy\": \"channel\"}}}}}";
    const char *d = write_cfg("ctprec", cfg, NULL);
    qtl_config_t *c;
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(qtl_config_method(c), QTL_QM_CT);
    assert_int_equal(scheme_of(c, "model.layers.0.mlp.down_proj", NULL, 0), QTL_LS_CT_FP8_CHANNEL); /* re: beats Linear */
    assert_int_equal(scheme_of(c, "model.layers.0.self_attn.o_proj", NULL, 0), QTL_LS_CT_WNA16);   /* exact name */
    struct qtl_layer_quant q;
    qtl_config_layer_quant(c, "model.layers.0.self_attn.o_proj", NULL, 0, &q);
    assert_int_equal(q.bits, 8);
    assert_int_equal(q.group_size, 0); /* channel */
    qtl_config_layer_quant(c, "model.layers.0.mlp.up_proj", NULL, 0, &q);
    assert_int_equal(q.scheme, QTL_LS_CT_WNA16);
    assert_int_equal(q.bits, 4);
    assert_int_equal(q.group_size, 128);
    assert_int_equal(scheme_of(c, "model.layers.1.mlp.down_proj", NULL, 0), QTL_LS_UNQUANTIZED); /* ignore wins */
    assert_int_equal(scheme_of(c, "lm_head", NULL, 0), QTL_LS_UNQUANTIZED);
    qtl_config_close(c);
    /* a fused layer whose parts disagree */
    const char *cfg2 =
        "{" BASE ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\","
        " \"ignore\": [\"model.layers.0.self_attn.k_proj\"], \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"],"
        " \"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\"},"
        " \"input_activations\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"dynamic\": false}}}}}";
    d = write_cfg("ctfused", cfg2, NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    static const char *const qkv[3] = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                       "model.layers.0.self_attn.v_proj"};
    TU_EXPECT(qtl_config_layer_quant(c, "model.layers.0.self_attn.qkv_proj", qkv, 3, &q), QTL_ERR_UNSUPPORTED,
              qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "k_proj"));
    assert_int_equal(scheme_of(c, "model.layers.1.self_attn.qkv_proj", (const char *const[]){"model.layers.1.self_attn.q_proj",
                     "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj"}, 3), QTL_LS_CT_FP8_TENSOR);
    qtl_config_close(c);
    /* an unsupported group is reported when a layer uses it */
    const char *cfg3 = "{" BASE ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"config_groups\":"
                       " {\"g\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 2, \"type\": \"float\"},"
                       " \"input_activations\": {\"num_bits\": 8, \"type\": \"float\"}}}}}";
    d = write_cfg("ctbad", cfg3, NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    TU_EXPECT(qtl_config_layer_quant(c, "model.layers.0.mlp.down_proj", NULL, 0, &q), QTL_ERR_UNSUPPORTED,
              qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "group 'g'"));
    qtl_config_close(c);
}

/* re: patterns: Python's semantics where POSIX ERE differs (lazy repeats, (?:...)), and a
 * pattern Python refuses ("multiple repeat": glibc's regcomp takes exponential time on m***...,
 * found by fuzz_config) is refused when the config is opened, naming the entry. */
static void test_ct_patterns(void **state)
{
    (void)state;
    static const char *const head =
        "{" BASE ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\","
        " \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"input_activations\": null,"
        " \"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"channel\"}}}, \"ignore\": [";
    char cfg[2048];
    snprintf(cfg, sizeof cfg, "%s\"re:.*?layers\\\\.1\\\\.(?:mlp|self_attn)\\\\.o.*\"]}}", head);
    const char *d = write_cfg("ctpat", cfg, NULL);
    qtl_config_t *c;
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(scheme_of(c, "model.layers.1.self_attn.o_proj", NULL, 0), QTL_LS_UNQUANTIZED);
    assert_int_equal(scheme_of(c, "model.layers.1.mlp.down_proj", NULL, 0), QTL_LS_CT_FP8_CHANNEL);
    assert_int_equal(scheme_of(c, "model.layers.0.self_attn.o_proj", NULL, 0), QTL_LS_CT_FP8_CHANNEL);
    qtl_config_close(c);
    static const struct {
        const char *pattern, *why;
    } bad[] = {{"re:m**********************************************odel", "multiple repeat"},
               {"re:a+*", "multiple repeat"},
               {"re:x{2}*", "multiple repeat"},
               {"re:*lm_head", "nothing to repeat"},
               {"re:a{2", "unterminated"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cfg, sizeof cfg, "%s\"lm_head\", \"%s\"]}}", head, bad[i].pattern);
        d = write_cfg("ctpat-bad", cfg, NULL);
        assert_int_equal(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_JSON);
        if (!strstr(qtl_config_errmsg(c), bad[i].why) || !strstr(qtl_config_errmsg(c), "ignore[1]"))
            fail_msg("%s: %s", bad[i].pattern, qtl_config_errmsg(c));
        qtl_config_close(c);
    }
}

static void test_fp8_and_modelopt(void **state)
{
    (void)state;
    qtl_config_t *c;
    struct qtl_layer_quant q;
    const char *d = write_cfg("fp8bad", "{" BASE ", \"quantization_config\": {\"quant_method\": \"fp8\", "
                                        "\"activation_scheme\": \"static\", \"weight_block_size\": [128, 128]}}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_JSON, qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "dynamic"));
    qtl_config_close(c);
    d = write_cfg("fp8skip", "{" BASE ", \"quantization_config\": {\"quant_method\": \"fp8\", "
                             "\"activation_scheme\": \"dynamic\", \"modules_to_not_convert\": [\"model.layers.1.mlp.down_proj\"]}}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(scheme_of(c, "model.layers.1.mlp.down_proj", NULL, 0), QTL_LS_UNQUANTIZED);
    assert_int_equal(scheme_of(c, "model.layers.0.mlp.down_proj", NULL, 0), QTL_LS_FP8_TENSOR);
    qtl_config_close(c);
    /* ModelOpt through hf_quant_config.json only, with a wildcard exclusion */
    d = write_cfg("mo", "{" BASE "}", "{\"producer\": {\"name\": \"modelopt\"}, \"quantization\": {\"quant_algo\": \"NVFP4\","
                                      " \"kv_cache_quant_algo\": null, \"group_size\": 16, \"exclude_modules\": "
                                      "[\"lm_head\", \"model.layers.0.*\"]}}");
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(qtl_config_method(c), QTL_QM_MODELOPT);
    assert_int_equal(scheme_of(c, "model.layers.0.mlp.down_proj", NULL, 0), QTL_LS_UNQUANTIZED);
    TU_EXPECT(qtl_config_layer_quant(c, "model.layers.1.mlp.down_proj", NULL, 0, &q), QTL_OK, qtl_config_errmsg(c));
    assert_int_equal(q.scheme, QTL_LS_MODELOPT_NVFP4);
    assert_int_equal(q.group_size, 16);
    assert_true(q.static_input);
    qtl_config_close(c);
    d = write_cfg("moalgo", "{" BASE ", \"quantization_config\": {\"quant_method\": \"modelopt\", \"quant_algo\": \"W4A8_AWQ\"}}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_UNSUPPORTED, qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "W4A8_AWQ"));
    qtl_config_close(c);
    d = write_cfg("awq", "{" BASE ", \"quantization_config\": {\"quant_method\": \"awq\"}}", NULL);
    TU_EXPECT(qtl_config_open(d, NULL, QTL_DTYPE_COUNT, &c), QTL_ERR_UNSUPPORTED, qtl_config_errmsg(c));
    assert_non_null(strstr(qtl_config_errmsg(c), "awq"));
    qtl_config_close(c);
    assert_string_equal(qtl_layer_scheme_name(QTL_LS_CT_WNA16), "ct-wna16");
    assert_null(qtl_layer_scheme_name(QTL_LS_COUNT));
    assert_string_equal(qtl_arch_name(QTL_ARCH_PHI3), "Phi3ForCausalLM");
}

int main(void)
{
    tu_mkdir_p(QTL_TEST_TMP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_schemes),
        cmocka_unit_test(test_shape_rules),
        cmocka_unit_test(test_ct_precedence),
        cmocka_unit_test(test_ct_patterns),
        cmocka_unit_test(test_fp8_and_modelopt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
