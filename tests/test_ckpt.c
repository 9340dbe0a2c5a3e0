/* Checkpoints: index resolution, lazy shards, and every index/shard mismatch. */
#include "ckpt_fixture.h"

#include <stdlib.h>
#include <unistd.h>

#define DIR_OK QTL_TEST_TMP "/ok"

static void expect_values(qtl_ckpt_t *ck, int k)
{
    char name[16];
    snprintf(name, sizeof name, "t%d", k);
    size_t i;
    assert_int_equal(qtl_ckpt_tensor_find(ck, name, &i), QTL_OK);
    int32_t v[16];
    TU_EXPECT(qtl_ckpt_read_tensor(ck, i, v, (size_t)(k + 1) * 4), QTL_OK, qtl_ckpt_errmsg(ck));
    for (int j = 0; j <= k; j++)
        assert_int_equal(v[j], k * 100 + j);
}

static int has_diag(qtl_ckpt_t *ck, const char *id, const char *tensor, enum qtl_severity sev)
{
    for (size_t i = 0; i < qtl_ckpt_diag_count(ck); i++) {
        struct qtl_diag d;
        qtl_ckpt_diag_at(ck, i, &d);
        if (!strcmp(d.id, id) && d.severity == sev && (!tensor || (d.tensor && !strcmp(d.tensor, tensor))))
            return 1;
    }
    return 0;
}

static void test_index_ok(void **state)
{
    (void)state;
    fx_checkpoint(DIR_OK);
    qtl_ckpt_t *ck;
    TU_EXPECT(qtl_ckpt_open(DIR_OK, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_shard_count(ck), 3);
    assert_string_equal(qtl_ckpt_shard_name(ck, 0), "model-00001-of-00003.safetensors");
    assert_int_equal(qtl_ckpt_tensor_count(ck), 10);
    /* Lazy: a shard deleted after open only matters when one of its tensors is needed. */
    unlink(tu_path(DIR_OK, "model-00003-of-00003.safetensors"));
    expect_values(ck, 0);
    expect_values(ck, 5);
    size_t i;
    qtl_ckpt_tensor_find(ck, "t8", &i);
    struct qtl_tensor_info ti;
    TU_EXPECT(qtl_ckpt_tensor_at(ck, i, &ti), QTL_ERR_SHARD_MISSING, qtl_ckpt_errmsg(ck));
    assert_non_null(strstr(qtl_ckpt_errmsg(ck), "model-00003-of-00003.safetensors"));
    /* The check reports the missing shard once, as the root of its tensors. */
    TU_EXPECT(qtl_ckpt_check(ck), QTL_ERR_SHARD_MISSING, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_diag_count(ck), 1);
    assert_true(has_diag(ck, "shard-missing", NULL, QTL_SEV_ERROR));
    struct qtl_diag d;
    qtl_ckpt_diag_at(ck, 0, &d);
    assert_non_null(strstr(d.message, "3 tensor(s)"));
    qtl_ckpt_close(ck);
    /* Opened through the index path and through block reads. */
    fx_checkpoint(DIR_OK);
    TU_EXPECT(qtl_ckpt_open(DIR_OK "/model.safetensors.index.json", NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    TU_EXPECT(qtl_ckpt_check(ck), QTL_OK, qtl_ckpt_errmsg(ck));
    qtl_ckpt_tensor_find(ck, "t9", &i);
    int32_t v[3];
    assert_int_equal(qtl_ckpt_read_block(ck, i, 4, 3, 0, 1, v, sizeof v), QTL_OK);
    assert_int_equal(v[0], 904);
    assert_int_equal(v[2], 906);
    TU_EXPECT(qtl_ckpt_read_block(ck, i, 8, 3, 0, 1, v, sizeof v), QTL_ERR_RANGE, qtl_ckpt_errmsg(ck));
    assert_non_null(strstr(qtl_ckpt_errmsg(ck), "t9"));
    assert_int_equal(qtl_ckpt_tensor_find(ck, "nope", &i), QTL_ERR_NOT_FOUND);
    qtl_ckpt_close(ck);
}

static void test_index_mismatches(void **state)
{
    (void)state;
    const char *dir = QTL_TEST_TMP "/mismatch";
    fx_checkpoint(dir);
    /* shard 2 loses t6 and gains t10 and a copy of t0 */
    qtl_st_writer_t *w;
    qtl_st_writer_new(NULL, &w);
    int32_t v[16] = {0};
    uint64_t n4 = 5, n1 = 1, n11 = 11;
    qtl_st_writer_add(w, "t4", QTL_DTYPE_I32, 1, &n4, v, 20);
    qtl_st_writer_add(w, "t5", QTL_DTYPE_I32, 1, (uint64_t[]){6}, v, 24);
    qtl_st_writer_add(w, "t0", QTL_DTYPE_I32, 1, &n1, v, 4);
    qtl_st_writer_add(w, "t10", QTL_DTYPE_I32, 1, &n11, v, 44);
    assert_int_equal(qtl_st_writer_write_file(w, tu_path(dir, "model-00002-of-00003.safetensors")), QTL_OK);
    qtl_st_writer_free(w);
    qtl_ckpt_t *ck;
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    size_t i;
    qtl_ckpt_tensor_find(ck, "t6", &i);
    struct qtl_tensor_info ti;
    TU_EXPECT(qtl_ckpt_tensor_at(ck, i, &ti), QTL_ERR_TENSOR_MISSING, qtl_ckpt_errmsg(ck));
    int rc = qtl_ckpt_check(ck);
    if (rc != QTL_ERR_TENSOR_MISSING && rc != QTL_ERR_TENSOR_DUPLICATE)
        fail_msg("check: got %s (%d), want QTL_ERR_TENSOR_MISSING or QTL_ERR_TENSOR_DUPLICATE", qtl_errname(rc), rc);
    assert_true(has_diag(ck, "tensor-missing", "t6", QTL_SEV_ERROR));
    assert_true(has_diag(ck, "tensor-duplicate", "t0", QTL_SEV_ERROR));
    assert_true(has_diag(ck, "tensor-not-in-index", "t10", QTL_SEV_WARNING));
    assert_int_equal(qtl_ckpt_diag_count(ck), 3);
    /* The tensor absent from the index is still readable (vLLM loads it). */
    assert_int_equal(qtl_ckpt_tensor_count(ck), 11);
    assert_int_equal(qtl_ckpt_tensor_find(ck, "t10", &i), QTL_OK);
    assert_int_equal(qtl_ckpt_tensor_at(ck, i, &ti), QTL_OK);
    TU_EQ_U64(ti.numel, 11);
    /* A second check adds nothing. */
    qtl_ckpt_check(ck);
    assert_int_equal(qtl_ckpt_diag_count(ck), 3);
    qtl_ckpt_close(ck);
}

static void test_bad_shard_in_checkpoint(void **state)
{
    (void)state;
    const char *dir = QTL_TEST_TMP "/lfs";
    fx_checkpoint(dir);
    const char *ptr = "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 123456789\n";
    tu_write(tu_path(dir, "model-00002-of-00003.safetensors"), ptr, strlen(ptr));
    qtl_ckpt_t *ck;
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    TU_EXPECT(qtl_ckpt_check(ck), QTL_ERR_LFS_POINTER, qtl_ckpt_errmsg(ck));
    assert_true(has_diag(ck, "shard-invalid", NULL, QTL_SEV_ERROR));
    assert_non_null(strstr(qtl_ckpt_errmsg(ck), "model-00002-of-00003.safetensors"));
    assert_non_null(strstr(qtl_ckpt_errmsg(ck), "123456789"));
    expect_values(ck, 9); /* the other shards still work */
    qtl_ckpt_close(ck);
}

static void test_bad_indexes(void **state)
{
    (void)state;
    const char *dir = QTL_TEST_TMP "/badidx";
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {"{\"weight_map\": {\"t0\": \"a.safetensors\", \"t0\": \"b.safetensors\"}}", QTL_ERR_INDEX},
        {"{\"metadata\": {}}", QTL_ERR_INDEX},
        {"{\"weight_map\": []}", QTL_ERR_INDEX},
        {"{\"weight_map\": {\"t0\": 3}}", QTL_ERR_INDEX},
        {"{\"weight_map\": {\"t0\": \"../x.safetensors\"}}", QTL_ERR_INDEX},
        {"{\"weight_map\": {\"t0\": \"/etc/x.safetensors\"}}", QTL_ERR_INDEX},
        {"{\"metadata\": 3, \"weight_map\": {}}", QTL_ERR_INDEX},
        {"{\"weight_map\": {\"t0\": \"a.safetensors\"}", QTL_ERR_INDEX},
        {"", QTL_ERR_INDEX},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tu_rm_rf(dir);
        tu_mkdir_p(dir);
        tu_write(tu_path(dir, "model.safetensors.index.json"), cases[c].json, strlen(cases[c].json));
        qtl_ckpt_t *ck;
        TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), cases[c].want, cases[c].json);
        assert_non_null(strstr(qtl_ckpt_errmsg(ck), "model.safetensors.index.json"));
        qtl_ckpt_close(ck);
    }
}

static void test_without_index(void **state)
{
    (void)state;
    const char *dir = QTL_TEST_TMP "/noindex";
    tu_rm_rf(dir);
    tu_mkdir_p(dir);
    qtl_ckpt_t *ck;
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_ERR_NO_CHECKPOINT, qtl_ckpt_errmsg(ck));
    qtl_ckpt_close(ck);
    fx_shard(dir, "b.safetensors", 3, 5);
    fx_shard(dir, "a.safetensors", 0, 2);
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_null(qtl_ckpt_index_path(ck));
    assert_int_equal(qtl_ckpt_shard_count(ck), 2);
    assert_string_equal(qtl_ckpt_shard_name(ck, 0), "a.safetensors");
    assert_int_equal(qtl_ckpt_tensor_count(ck), 6);
    assert_int_equal(qtl_ckpt_check(ck), QTL_OK);
    expect_values(ck, 4);
    qtl_ckpt_close(ck);
    /* Without an index every *.safetensors counts, model.safetensors too (as
     * vLLM); a file path opens one file. */
    fx_shard(dir, "model.safetensors", 7, 7);
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_shard_count(ck), 3);
    expect_values(ck, 7);
    expect_values(ck, 1);
    qtl_ckpt_close(ck);
    TU_EXPECT(qtl_ckpt_open(tu_path(dir, "b.safetensors"), NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_tensor_count(ck), 3);
    assert_string_equal(qtl_ckpt_dir(ck), dir);
    qtl_ckpt_close(ck);
    /* a malformed single file is an open failure */
    tu_write(tu_path(dir, "bad.safetensors"), "12345678", 8);
    TU_EXPECT(qtl_ckpt_open(tu_path(dir, "bad.safetensors"), NULL, &ck), QTL_ERR_NOT_SAFETENSORS,
              qtl_ckpt_errmsg(ck));
    qtl_ckpt_close(ck);
    TU_EXPECT(qtl_ckpt_open(tu_path(dir, "none"), NULL, &ck), QTL_ERR_OPEN, qtl_ckpt_errmsg(ck));
    qtl_ckpt_close(ck);
    /* duplicates across index-less shards */
    fx_shard(dir, "c.safetensors", 2, 2);
    unlink(tu_path(dir, "model.safetensors"));
    unlink(tu_path(dir, "bad.safetensors"));
    TU_EXPECT(qtl_ckpt_open(dir, NULL, &ck), QTL_OK, qtl_ckpt_errmsg(ck));
    TU_EXPECT(qtl_ckpt_check(ck), QTL_ERR_TENSOR_DUPLICATE, qtl_ckpt_errmsg(ck));
    assert_true(has_diag(ck, "tensor-duplicate", "t2", QTL_SEV_ERROR));
    qtl_ckpt_close(ck);
}

int main(void)
{
    tu_mkdir_p(QTL_TEST_TMP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_ok),
        cmocka_unit_test(test_index_mismatches),
        cmocka_unit_test(test_bad_shard_in_checkpoint),
        cmocka_unit_test(test_bad_indexes),
        cmocka_unit_test(test_without_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
