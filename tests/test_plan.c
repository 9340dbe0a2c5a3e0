/* The load plan (qtl_load_open, read level QTL_READ_NONE): the ops of every
 * layer kind against offsets computed here from the shard headers alone
 * (column, QKV with kv-head replicas, row-parallel, vocab, fused on disk with
 * every scale slot, last write wins), coverage findings before any read, the
 * plan hash, and execution into the caller's memory, bound parameters, any
 * thread count and O_DIRECT giving the same bytes. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fixture(const char *dir, const char *scheme, enum qtl_fixture_arch arch, enum qtl_scale_layout layout,
                    const char *brk)
{
    struct qtl_fixture_options o;
    qtl_fixture_defaults(&o);
    o.scheme = scheme;
    o.arch = arch;
    o.scale_layout = layout;
    o.layers = 1;
    o.break_id = brk;
    char msg[256];
    TU_EXPECT(qtl_fixture_write(&o, dir, msg, sizeof msg), QTL_OK, msg);
}

static qtl_load_t *plan(const char *dir, uint32_t tp, uint32_t rank, int level)
{
    struct qtl_load_options lo = {.tp = tp, .rank = rank, .dtype_override = QTL_DTYPE_COUNT, .verify = level};
    qtl_load_t *l = NULL;
    TU_EXPECT(qtl_load_open(dir, &lo, &l), QTL_OK, qtl_load_errmsg(l));
    return l;
}

static size_t param_index(const qtl_load_t *l, const char *name)
{
    for (size_t i = 0; i < qtl_load_param_count(l); i++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, i, &pi);
        if (!strcmp(pi.name, name))
            return i;
    }
    fail_msg("no parameter %s", name);
    return 0;
}

/* The ops of one parameter, in plan order. */
static size_t ops_of(const qtl_load_t *l, const char *param, struct qtl_copy_op *out, size_t cap)
{
    size_t pi = param_index(l, param), n = 0;
    for (size_t i = 0; i < qtl_load_op_count(l); i++) {
        struct qtl_copy_op op;
        assert_int_equal(qtl_load_op_at(l, i, &op), QTL_OK);
        if (op.param == pi && n < cap)
            out[n++] = op;
    }
    return n;
}

static struct qtl_tensor_info tensor(qtl_ckpt_t *ck, const char *name)
{
    size_t i;
    struct qtl_tensor_info ti;
    TU_EXPECT(qtl_ckpt_tensor_find(ck, name, &i), QTL_OK, name);
    TU_EXPECT(qtl_ckpt_tensor_at(ck, i, &ti), QTL_OK, name);
    return ti;
}

static qtl_ckpt_t *ckpt(const char *dir)
{
    qtl_ckpt_t *ck = NULL;
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    return ck;
}

static void expect_op(const struct qtl_copy_op *op, const char *tensor_name, uint64_t src, uint64_t rows,
                      uint64_t row_bytes, uint64_t pitch, uint64_t dst)
{
    if (strcmp(op->tensor, tensor_name) || op->src_offset != src || op->rows != rows || op->row_bytes != row_bytes ||
        (rows > 1 && op->src_pitch != pitch) || op->dst_offset != dst)
        fail_msg("op from '%s' @%llu %llu x %llu pitch %llu -> @%llu; want '%s' @%llu %llu x %llu pitch %llu -> @%llu",
                 op->tensor, (unsigned long long)op->src_offset, (unsigned long long)op->rows,
                 (unsigned long long)op->row_bytes, (unsigned long long)op->src_pitch,
                 (unsigned long long)op->dst_offset, tensor_name, (unsigned long long)src, (unsigned long long)rows,
                 (unsigned long long)row_bytes, (unsigned long long)pitch, (unsigned long long)dst);
}

/* Llama BF16 (hidden 1024, 8 heads, 2 kv heads, head dim 128, intermediate
 * 2048, vocab 1024) at tp=4, rank 3: 2 q heads per rank, kv heads replicated
 * twice (rank 3 holds kv head 1). */
static void test_ops_every_kind(void **state)
{
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s/kinds", QTL_TEST_TMP);
    fixture(d, "bf16", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_DEFAULT, NULL);
    qtl_ckpt_t *ck = ckpt(d);
    qtl_load_t *l = plan(d, 4, 3, QTL_READ_NONE);
    const uint64_t row = 1024 * 2; /* bytes of one hidden-wide BF16 row */
    struct qtl_copy_op ops[8];
    assert_int_equal(ops_of(l, "model.layers.0.self_attn.qkv_proj.weight", ops, 8), 3);
    struct qtl_tensor_info q = tensor(ck, "model.layers.0.self_attn.q_proj.weight"),
                           k = tensor(ck, "model.layers.0.self_attn.k_proj.weight"),
                           v = tensor(ck, "model.layers.0.self_attn.v_proj.weight");
    /* load order: names sorted within the shard file (k, q, v when they share one) */
    for (size_t i = 0; i < 3; i++) {
        if (strstr(ops[i].tensor, ".q_proj."))
            expect_op(&ops[i], q.name, q.file_offset + 3 * 256 * row, 1, 256 * row, 0, 0);
        else if (strstr(ops[i].tensor, ".k_proj."))
            expect_op(&ops[i], k.name, k.file_offset + 1 * 128 * row, 1, 128 * row, 0, 256 * row);
        else
            expect_op(&ops[i], v.name, v.file_offset + 1 * 128 * row, 1, 128 * row, 0, 384 * row);
    }
    /* row-parallel: every row's column range [3 * 256, +256) */
    struct qtl_tensor_info o = tensor(ck, "model.layers.0.self_attn.o_proj.weight");
    assert_int_equal(ops_of(l, "model.layers.0.self_attn.o_proj.weight", ops, 8), 1);
    expect_op(&ops[0], o.name, o.file_offset + 3 * 256 * 2, 1024, 256 * 2, row, 0);
    TU_EQ_U64(ops[0].dst_pitch, 256 * 2);
    struct qtl_tensor_info dn = tensor(ck, "model.layers.0.mlp.down_proj.weight");
    assert_int_equal(ops_of(l, "model.layers.0.mlp.down_proj.weight", ops, 8), 1);
    expect_op(&ops[0], dn.name, dn.file_offset + 3 * 512 * 2, 1024, 512 * 2, 2048 * 2, 0);
    /* merged column: gate rows then up rows of the rank */
    struct qtl_tensor_info g = tensor(ck, "model.layers.0.mlp.gate_proj.weight"),
                           u = tensor(ck, "model.layers.0.mlp.up_proj.weight");
    assert_int_equal(ops_of(l, "model.layers.0.mlp.gate_up_proj.weight", ops, 8), 2);
    size_t gi = strstr(ops[0].tensor, "gate") ? 0 : 1;
    expect_op(&ops[gi], g.name, g.file_offset + 3 * 512 * row, 1, 512 * row, 0, 0);
    expect_op(&ops[1 - gi], u.name, u.file_offset + 3 * 512 * row, 1, 512 * row, 0, 512 * row);
    /* vocab: rows [768, 1024) of the embedding; norms whole */
    struct qtl_tensor_info e = tensor(ck, "model.embed_tokens.weight");
    assert_int_equal(ops_of(l, "model.embed_tokens.weight", ops, 8), 1);
    expect_op(&ops[0], e.name, e.file_offset + 768 * row, 1, 256 * row, 0, 0);
    struct qtl_tensor_info n = tensor(ck, "model.layers.0.input_layernorm.weight");
    assert_int_equal(ops_of(l, "model.layers.0.input_layernorm.weight", ops, 8), 1);
    expect_op(&ops[0], n.name, n.file_offset, 1, row, 0, 0);
    /* nothing read: the plan alone */
    TU_EQ_U64(qtl_load_bytes_to_read(l), 0);
    assert_int_equal(qtl_load_run(l), QTL_OK);
    TU_EQ_U64(qtl_load_bytes_read(l), 0);
    qtl_load_close(l);
    qtl_ckpt_close(ck);
}

/* Phi-3 fused on disk with one FP8 scale per fused matrix: the weight's three
 * sub-matrices come from one tensor, and the one scale fills every slot
 * (vLLM PR #39765). */
static void test_fused_fills_every_slot(void **state)
{
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s/fused", QTL_TEST_TMP);
    fixture(d, "ct-fp8", QTL_FIXTURE_PHI3, QTL_SCALE_LAYOUT_DEFAULT, NULL);
    qtl_ckpt_t *ck = ckpt(d);
    qtl_load_t *l = plan(d, 2, 1, QTL_READ_NONE);
    struct qtl_copy_op ops[8];
    struct qtl_tensor_info s = tensor(ck, "model.layers.0.self_attn.qkv_proj.weight_scale"),
                           w = tensor(ck, "model.layers.0.self_attn.qkv_proj.weight");
    assert_int_equal(ops_of(l, "model.layers.0.self_attn.qkv_proj.weight_scale", ops, 8), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ops[i].slot, i);
        expect_op(&ops[i], s.name, s.file_offset, 1, s.nbytes, 0, (uint64_t)i * 4); /* into F32 slot i */
    }
    /* q rows 512..1023 of 1024, k rows 1024 + 128..255, v rows 1280 + 128..255 (FP8: 1 byte) */
    assert_int_equal(ops_of(l, "model.layers.0.self_attn.qkv_proj.weight", ops, 8), 3);
    expect_op(&ops[0], w.name, w.file_offset + 512 * 1024, 1, 512 * 1024, 0, 0);
    expect_op(&ops[1], w.name, w.file_offset + (1024 + 128) * 1024, 1, 128 * 1024, 0, 512 * 1024);
    expect_op(&ops[2], w.name, w.file_offset + (1280 + 128) * 1024, 1, 128 * 1024, 0, 640 * 1024);
    qtl_load_close(l);
    qtl_ckpt_close(ck);
}

/* INT8 static input scales are BasevLLMParameters: q, k and v each write the
 * whole of qkv_proj.input_scale and the last in load order wins; the earlier
 * writes are superseded on the plan, and differing values are a warning. */
static void test_last_write_wins(void **state)
{
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s/lww", QTL_TEST_TMP);
    fixture(d, "ct-int8", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_PER_PART, NULL);
    qtl_load_t *l = plan(d, 1, 0, QTL_READ_ALL);
    struct qtl_copy_op ops[8];
    assert_int_equal(ops_of(l, "model.layers.0.self_attn.qkv_proj.input_scale", ops, 8), 3);
    size_t live = 3;
    for (size_t i = 0; i < 3; i++)
        if (!ops[i].superseded) {
            assert_int_equal(live, 3); /* exactly one */
            live = i;
        }
    assert_int_equal(live, 2); /* the last op */
    assert_non_null(strstr(ops[2].tensor, "v_proj")); /* k, q, v: v is last in name order */
    assert_int_equal(qtl_load_run(l), QTL_OK);
    qtl_ckpt_t *ck = ckpt(d);
    struct qtl_tensor_info vs = tensor(ck, "model.layers.0.self_attn.v_proj.input_scale");
    float want, got;
    size_t vi;
    unsigned char raw[8];
    assert_true(vs.nbytes <= sizeof raw);
    TU_EQ_U64(vs.numel, 1);
    TU_EXPECT(qtl_ckpt_tensor_find(ck, vs.name, &vi), QTL_OK, vs.name);
    TU_EXPECT(qtl_ckpt_read_tensor(ck, vi, raw, (size_t)vs.nbytes), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_to_f32(vs.dtype, raw, 1, &want), QTL_OK);
    struct qtl_param_info pi;
    qtl_load_param_at(l, param_index(l, "model.layers.0.self_attn.qkv_proj.input_scale"), &pi);
    memcpy(&got, pi.data, 4);
    TU_EQ_F32_BITS(got, want);
    int warned = 0;
    for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
        struct qtl_diag dg;
        qtl_load_finding_at(l, i, &dg);
        warned |= !strcmp(dg.id, "param.overwrite-differs") && dg.severity == QTL_SEV_WARNING;
    }
    assert_true(warned);
    qtl_ckpt_close(ck);
    qtl_load_close(l);
}

/* An unwritten scale is a finding as soon as the plan exists. */
static void test_coverage_before_read(void **state)
{
    (void)state;
    char d[512];
    snprintf(d, sizeof d, "%s/unwritten", QTL_TEST_TMP);
    fixture(d, "ct-fp8", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_DEFAULT, "scale.unwritten");
    qtl_load_t *l = plan(d, 1, 0, QTL_READ_ALL);
    int found = 0;
    for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
        struct qtl_diag dg;
        qtl_load_finding_at(l, i, &dg);
        found |= !strcmp(dg.id, "scale.unwritten") && dg.severity == QTL_SEV_ERROR;
    }
    assert_true(found);
    TU_EQ_U64(qtl_load_bytes_read(l), 0);
    qtl_load_close(l);
}

/* The hash covers files, tensors, config and tp, not the rank or the read level. */
static void test_plan_hash(void **state)
{
    (void)state;
    char d[512], d2[512];
    snprintf(d, sizeof d, "%s/kinds", QTL_TEST_TMP);
    snprintf(d2, sizeof d2, "%s/hash-int8", QTL_TEST_TMP);
    fixture(d2, "ct-int8", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_DEFAULT, NULL);
    qtl_load_t *a = plan(d, 2, 0, QTL_READ_NONE), *b = plan(d, 2, 1, QTL_READ_ALL), *c = plan(d, 1, 0, QTL_READ_NONE),
               *e = plan(d2, 2, 0, QTL_READ_NONE);
    TU_EQ_U64(qtl_load_plan_hash(a), qtl_load_plan_hash(b));
    assert_int_not_equal(qtl_load_plan_hash(a), qtl_load_plan_hash(c));
    assert_int_not_equal(qtl_load_plan_hash(a), qtl_load_plan_hash(e));
    qtl_load_close(a);
    qtl_load_close(b);
    qtl_load_close(c);
    qtl_load_close(e);
}

static uint64_t fnv(const void *p, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* FNV-1a over every parameter's name and bytes. */
static uint64_t params_hash(const qtl_load_t *l)
{
    uint64_t h = 0;
    for (size_t i = 0; i < qtl_load_param_count(l); i++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, i, &pi);
        assert_non_null(pi.data);
        h = h * 31 + fnv(pi.name, strlen(pi.name)) + fnv(pi.data, pi.nbytes);
    }
    return h;
}

struct exec_case {
    unsigned threads;
    int direct, buffer, bind;
};

static uint64_t run_case(const char *dir, uint32_t tp, uint32_t rank, const struct exec_case *c)
{
    struct qtl_load_options lo = {.tp = tp, .rank = rank, .dtype_override = QTL_DTYPE_COUNT, .threads = c->threads,
                                  .direct = c->direct};
    qtl_load_t *l = NULL;
    TU_EXPECT(qtl_load_open(dir, &lo, &l), QTL_OK, qtl_load_errmsg(l));
    uint64_t need = qtl_load_bytes_needed(l);
    unsigned char *buf = c->buffer ? malloc((size_t)need) : NULL, *own = NULL;
    if (buf) {
        memset(buf, 0xA5, (size_t)need); /* qtl must write every byte a parameter holds */
        assert_int_equal(qtl_load_set_buffer(l, buf, (size_t)need - 1), QTL_OK);
    }
    assert_false(c->buffer && c->bind); /* one at a time */
    size_t bi = c->bind ? param_index(l, "model.embed_tokens.weight") : 0;
    if (c->bind) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, bi, &pi);
        own = malloc((size_t)pi.nbytes);
        memset(own, 0x5A, (size_t)pi.nbytes);
        assert_int_equal(qtl_load_bind(l, bi, own, pi.nbytes + 1), QTL_ERR_INVALID_ARGUMENT);
        assert_int_equal(qtl_load_bind(l, bi, own, pi.nbytes), QTL_OK);
    }
    if (buf) { /* one byte short: refused, then the right size */
        assert_int_equal(qtl_load_run(l), QTL_ERR_INVALID_ARGUMENT);
        qtl_load_close(l);
        TU_EXPECT(qtl_load_open(dir, &lo, &l), QTL_OK, qtl_load_errmsg(l));
        assert_int_equal(qtl_load_set_buffer(l, buf, (size_t)need), QTL_OK);
    }
    TU_EXPECT(qtl_load_run(l), QTL_OK, qtl_load_errmsg(l));
    if (c->bind) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, bi, &pi);
        assert_ptr_equal(pi.data, own);
    }
    uint64_t h = params_hash(l);
    qtl_load_close(l);
    free(buf);
    free(own);
    return h;
}

/* Same bytes for every thread count, O_DIRECT, the caller's buffer and a bound parameter. */
static void test_exec_modes_agree(void **state)
{
    (void)state;
    static const char *const schemes[] = {"bf16", "ct-nvfp4", "ct-w4a16-asym", "fp8-block"};
    static const struct exec_case cases[] = {{1, 0, 0, 0}, {2, 0, 0, 0}, {3, 0, 0, 0},
                                             {2, 1, 0, 0}, {2, 0, 1, 0}, {1, 0, 0, 1}};
    for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) {
        char d[512];
        snprintf(d, sizeof d, "%s/modes-%s", QTL_TEST_TMP, schemes[s]);
        fixture(d, schemes[s], QTL_FIXTURE_PHI3, QTL_SCALE_LAYOUT_DEFAULT, NULL);
        for (uint32_t tp = 1; tp <= 2; tp++) {
            uint64_t want = run_case(d, tp, tp - 1, &cases[0]);
            for (size_t c = 1; c < sizeof cases / sizeof cases[0]; c++)
                if (run_case(d, tp, tp - 1, &cases[c]) != want)
                    fail_msg("%s tp=%u: case %zu (threads %u direct %d buffer %d bind %d) differs", schemes[s], tp,
                             c, cases[c].threads, cases[c].direct, cases[c].buffer, cases[c].bind);
        }
    }
}

/* config.json sizes are file contents: one whose parameter sizes overflow 64 bits is refused at
 * open, naming the parameter, before anything is allocated for it. */
static void test_config_sizes_overflow(void **state)
{
    (void)state;
    char d[512], path[600];
    snprintf(d, sizeof d, "%s/huge", QTL_TEST_TMP);
    fixture(d, "bf16", QTL_FIXTURE_LLAMA, QTL_SCALE_LAYOUT_DEFAULT, NULL);
    snprintf(path, sizeof path, "%s/config.json", d);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[1 << 16], out[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    const char *key = "\"vocab_size\": 1024", *hit = strstr(text, key);
    assert_non_null(hit);
    snprintf(out, sizeof out, "%.*s\"vocab_size\": 4294967295%s", (int)(hit - text), text, hit + strlen(key));
    tu_write(path, out, strlen(out));
    struct qtl_load_options lo = {.tp = 1, .rank = 0, .dtype_override = QTL_DTYPE_COUNT};
    qtl_load_t *l = NULL;
    assert_int_equal(qtl_load_open(d, &lo, &l), QTL_ERR_VALIDATION_OVERFLOW);
    assert_non_null(strstr(qtl_load_errmsg(l), "model.embed_tokens.weight"));
    qtl_load_close(l);
}

int main(void)
{
    tu_rm_rf(QTL_TEST_TMP);
    tu_mkdir_p(QTL_TEST_TMP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_every_kind),      cmocka_unit_test(test_fused_fills_every_slot),
        cmocka_unit_test(test_last_write_wins),     cmocka_unit_test(test_coverage_before_read),
        cmocka_unit_test(test_plan_hash),           cmocka_unit_test(test_exec_modes_agree),
        cmocka_unit_test(test_config_sizes_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
