/* Pipeline parallelism: vLLM 0.32's layer partition (get_pp_indices) against an
 * independent model written here, and each stage's parameters against the
 * single-stage load of the same tp rank, bit for bit. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's get_pp_indices, transcribed line by line from vllm/distributed/utils.py
 * (0.32): partitions = [L // P] * P; for i in range(2, r + 2): partitions[-i] += 1. */
static void model_partition(uint32_t L, uint32_t P, uint32_t *parts)
{
    for (uint32_t i = 0; i < P; i++)
        parts[i] = L / P;
    uint32_t r = L % P;
    for (uint32_t i = 2; i < r + 2; i++)
        parts[P - i] += 1;
}

static void test_partition_default(void **state)
{
    (void)state;
    for (uint32_t L = 0; L <= 130; L++)
        for (uint32_t P = 1; P <= 9; P++) {
            uint32_t parts[16], begin = 0;
            model_partition(L, P, parts);
            for (uint32_t r = 0; r < P; r++) {
                uint32_t s = 99, e = 99;
                char msg[128];
                TU_EXPECT(qtl_pp_layers(L, P, r, NULL, &s, &e, msg, sizeof msg), QTL_OK, msg);
                TU_EQ_U64(s, begin);
                TU_EQ_U64(e, begin + parts[r]);
                begin += parts[r];
            }
            TU_EQ_U64(begin, L);
        }
    /* hand-checked: the remainder goes to the stages before the last, backwards */
    static const struct {
        uint32_t L, P, want[4];
    } cases[] = {{32, 3, {11, 11, 10}}, {5, 3, {2, 2, 1}}, {7, 4, {2, 2, 2, 1}}, {2, 3, {1, 1, 0}}, {3, 2, {2, 1}},
                 {61, 4, {15, 15, 16, 15}}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (uint32_t r = 0, begin = 0; r < cases[c].P; r++) {
            uint32_t s, e;
            assert_int_equal(qtl_pp_layers(cases[c].L, cases[c].P, r, NULL, &s, &e, NULL, 0), QTL_OK);
            TU_EQ_U64(s, begin);
            TU_EQ_U64(e - s, cases[c].want[r]);
            begin = e;
        }
}

static void test_partition_env(void **state)
{
    (void)state;
    uint32_t s, e;
    char msg[160];
    assert_int_equal(qtl_pp_layers(10, 3, 1, " 2, 5 ,3", &s, &e, msg, sizeof msg), QTL_OK);
    TU_EQ_U64(s, 2);
    TU_EQ_U64(e, 7);
    assert_int_equal(qtl_pp_layers(10, 3, 2, "2,5,+3", &s, &e, msg, sizeof msg), QTL_OK);
    TU_EQ_U64(s, 7);
    TU_EQ_U64(e, 10);
    static const struct {
        const char *part, *msg;
    } bad[] = {{"2,5", "len(partitions)=2 does not match pp_size=3."},
               {"2,5,4", "sum(partitions)=11 does not match num_hidden_layers=10."},
               {"2,,8", "Invalid partition string: 2,,8"},
               {"2,x,8", "Invalid partition string: 2,x,8"},
               {"12,-2,0", "Invalid partition string: 12,-2,0 (a negative layer count)"},
               {"", "Invalid partition string: "}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qtl_pp_layers(10, 3, 0, bad[i].part, &s, &e, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
        assert_string_equal(msg, bad[i].msg);
    }
    assert_int_equal(qtl_pp_layers(10, 3, 3, NULL, &s, &e, msg, sizeof msg), QTL_ERR_INVALID_ARGUMENT);
}

static void test_file_names(void **state)
{
    (void)state;
    char b[128];
    qtl_shard_file_name(b, sizeof b, "out", 1, 0, 1, 0);
    assert_string_equal(b, "out/model-rank-1-part-0.safetensors");
    qtl_shard_file_name(b, sizeof b, NULL, 1, 2, 3, 4);
    assert_string_equal(b, "model-pp-2-tp-1-part-4.safetensors");
}

static qtl_load_t *open_run(const char *dir, uint32_t tp, uint32_t rank, uint32_t pp, uint32_t pp_rank,
                            const char *partition)
{
    struct qtl_load_options lo = {.tp = tp, .rank = rank, .dtype_override = QTL_DTYPE_COUNT, .pp = pp,
                                  .pp_rank = pp_rank, .pp_partition = partition, .threads = 2};
    qtl_load_t *l = NULL;
    TU_EXPECT(qtl_load_open(dir, &lo, &l), QTL_OK, qtl_load_errmsg(l));
    TU_EXPECT(qtl_load_run(l), QTL_OK, qtl_load_errmsg(l));
    return l;
}

/* Which stage should hold `name` (written from vLLM's LlamaModel / LlamaForCausalLM). */
static int stage_holds(const char *name, uint32_t start, uint32_t end, int first, int last, int tied)
{
    unsigned li;
    if (sscanf(name, "model.layers.%u.", &li) == 1)
        return li >= start && li < end;
    if (!strcmp(name, "model.embed_tokens.weight"))
        return first || (tied && last);
    return last; /* model.norm.weight, lm_head.weight */
}

static void set_tied(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, "\"tie_word_embeddings\": false");
    assert_non_null(p);
    memcpy(p, "\"tie_word_embeddings\": true ", 28);
    tu_write(path, buf, n);
}

/* Every stage of tp x pp against the tp-only load: each parameter a stage holds
 * is byte-identical to the same-named one at pp=1, each stage holds exactly the
 * parameters vLLM's stage does, and together the stages hold every one. */
static void check_layout(const char *dir, uint32_t tp, uint32_t pp, const char *partition, uint32_t layers, int tied)
{
    for (uint32_t r = 0; r < tp; r++) {
        qtl_load_t *whole = open_run(dir, tp, r, 1, 0, NULL);
        size_t nwhole = qtl_load_param_count(whole), seen = 0;
        uint64_t bound = 0, stage0_hash = 0;
        for (uint32_t s = 0; s < pp; s++) {
            uint32_t a, b;
            assert_int_equal(qtl_pp_layers(layers, pp, s, partition, &a, &b, NULL, 0), QTL_OK);
            qtl_load_t *st = open_run(dir, tp, r, pp, s, partition);
            if (qtl_load_plan_hash(st) == qtl_load_plan_hash(whole))
                fail_msg("the plan hash does not see pp=%u", pp);
            if (s == 0)
                stage0_hash = qtl_load_plan_hash(st);
            TU_EQ_U64(qtl_load_plan_hash(st), stage0_hash); /* every stage of one layout agrees (MPI's check) */
            size_t held = 0;
            for (size_t i = 0; i < nwhole; i++) {
                struct qtl_param_info w, p;
                qtl_load_param_at(whole, i, &w);
                int want = stage_holds(w.name, a, b, s == 0, s + 1 == pp, tied);
                int found = 0;
                for (size_t k = 0; k < qtl_load_param_count(st); k++) {
                    qtl_load_param_at(st, k, &p);
                    if (strcmp(p.name, w.name))
                        continue;
                    found = 1;
                    TU_EQ_U64(p.nbytes, w.nbytes);
                    TU_EQ_U64(p.dtype, w.dtype);
                    TU_EQ_MEM(p.data, w.data, (size_t)w.nbytes);
                }
                if (found != want)
                    fail_msg("tp=%u rank %u pp=%u stage %u (layers %u..%u): %s is %s", tp, r, pp, s, a, b, w.name,
                             found ? "held but should not be" : "missing");
                held += found;
                if (found && strstr(w.name, "embed_tokens") && s > 0)
                    bound++; /* the tied copy on the last stage */
            }
            TU_EQ_U64(qtl_load_param_count(st), held);
            seen += held;
            qtl_load_close(st);
        }
        TU_EQ_U64(seen, nwhole + bound);
        qtl_load_close(whole);
    }
}

static void test_stages(void **state)
{
    (void)state;
    static const char *const schemes[] = {"bf16", "ct-nvfp4", "fp8-block", "ct-w4a16-asym"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        struct qtl_fixture_options o;
        qtl_fixture_defaults(&o);
        o.scheme = schemes[i];
        o.arch = i % 2 ? QTL_FIXTURE_PHI3 : QTL_FIXTURE_LLAMA;
        o.layers = 3;
        o.hidden = 256;
        o.intermediate = 512;
        o.vocab = 200;
        o.head_dim = 128;
        o.heads = 2;
        o.kv_heads = 2;
        char dir[512], msg[256];
        snprintf(dir, sizeof dir, "%s/pp-%s", QTL_TEST_TMP, schemes[i]);
        TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
        check_layout(dir, 1, 2, NULL, 3, 0);         /* 1x2: layers 0..1 | 2 */
        check_layout(dir, 2, 2, NULL, 3, 0);         /* 2x2 */
        check_layout(dir, 1, 3, NULL, 3, 0);         /* 1x3: one layer each */
        check_layout(dir, 2, 3, "0,1,2", 3, 0);      /* VLLM_PP_LAYER_PARTITION, an empty first stage */
        if (i == 0) {                                /* tied embeddings: the last stage holds them too */
            set_tied(dir);
            check_layout(dir, 2, 2, NULL, 3, 1);
            check_layout(dir, 1, 3, "1,1,1", 3, 1);
        }
    }
}

/* A stage written with qtl_load_write loads back bit-exactly through the vLLM file name. */
static void test_stage_files(void **state)
{
    (void)state;
    struct qtl_fixture_options o;
    qtl_fixture_defaults(&o);
    o.scheme = "ct-fp8";
    o.layers = 3;
    o.hidden = 256;
    o.intermediate = 512;
    o.vocab = 200;
    o.heads = 2;
    char dir[512], out[600], msg[256], file[700];
    snprintf(dir, sizeof dir, "%s/pp-files", QTL_TEST_TMP);
    snprintf(out, sizeof out, "%s/pp-files-out", QTL_TEST_TMP);
    TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
    tu_rm_rf(out);
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t r = 0; r < 2; r++) {
            qtl_load_t *l = open_run(dir, 2, r, 2, s, NULL);
            qtl_shard_file_name(file, sizeof file, out, r, s, 2, 0);
            TU_EXPECT(qtl_load_write(l, file, dir), QTL_OK, qtl_load_errmsg(l));
            qtl_load_close(l);
        }
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/config.json", dir);
    snprintf(dst, sizeof dst, "%s/config.json", out);
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tu_write(dst, buf, n);
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t r = 0; r < 2; r++) {
            qtl_load_t *a = open_run(dir, 2, r, 2, s, NULL), *b = open_run(out, 2, r, 2, s, NULL);
            tu_expect_same_params(a, b, NULL, "stage file vs checkpoint");
            qtl_load_close(a);
            qtl_load_close(b);
        }
    /* the wrong stage of a pre-sharded directory is refused */
    struct qtl_load_options lo = {.tp = 2, .rank = 0, .dtype_override = QTL_DTYPE_COUNT, .pp = 1};
    qtl_load_t *l = NULL;
    assert_int_not_equal(qtl_load_open(out, &lo, &l), QTL_OK);
    qtl_load_close(l);
}

int main(void)
{
    tu_mkdir_p(QTL_TEST_TMP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_default), cmocka_unit_test(test_partition_env),
        cmocka_unit_test(test_file_names),        cmocka_unit_test(test_stages),
        cmocka_unit_test(test_stage_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
