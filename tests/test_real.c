/* Files written by other projects (../shared/fixtures/real): every valid one
 * parses with exactly the tensors its README lists, and sample values decode
 * to the README's numbers; the invalid one is rejected with its status. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "real_expected.h"

static const char *real(const char *file) { return tu_path(QTL_REAL_FIXTURES, file); }

static void test_every_file(void **state)
{
    (void)state;
    size_t nfiles = sizeof real_files / sizeof real_files[0];
    assert_true(nfiles >= 30);
    for (size_t f = 0; f < nfiles; f++) {
        const struct real_file *rf = &real_files[f];
        qtl_st_t *st = NULL;
        int rc = qtl_st_open_file(real(rf->file), NULL, &st);
        if (!rf->valid) {
            assert_int_not_equal(rc, QTL_OK);
            qtl_st_close(st);
            continue;
        }
        if (rc != QTL_OK)
            fail_msg("%s: %s", rf->file, qtl_st_errmsg(st));
        if (qtl_st_tensor_count(st) != rf->n)
            fail_msg("%s: %zu tensors, README lists %u", rf->file, qtl_st_tensor_count(st), rf->n);
        for (unsigned i = 0; i < rf->n; i++) {
            const struct real_tensor *rt = &rf->t[i];
            size_t idx;
            struct qtl_tensor_info ti;
            if (qtl_st_tensor_find(st, rt->name, &idx) != QTL_OK)
                fail_msg("%s: tensor '%s' not found", rf->file, rt->name);
            qtl_st_tensor_at(st, idx, &ti);
            assert_string_equal(qtl_dtype_name(ti.dtype), rt->dtype);
            assert_int_equal(ti.ndim, rt->ndim);
            for (unsigned d = 0; d < rt->ndim; d++)
                TU_EQ_U64(ti.shape[d], rt->shape[d]);
            TU_EQ_U64(ti.begin, rt->begin);
            TU_EQ_U64(ti.end, rt->end);
            unsigned char *buf = malloc(ti.nbytes + 1);
            assert_int_equal(qtl_st_read_tensor(st, idx, buf, (size_t)ti.nbytes), QTL_OK);
            free(buf);
        }
        qtl_st_close(st);
    }
}

static void test_abuse_file(void **state)
{
    (void)state;
    qtl_st_t *st = NULL;
    int rc = qtl_st_open_file(real("syoyo-safetensors-cpp__test__safetensors_abuse_attempt_1.safetensors"), NULL, &st);
    TU_EXPECT(rc, QTL_ERR_INVALID_HEADER_LENGTH, qtl_st_errmsg(st));
    assert_non_null(strstr(qtl_st_errmsg(st), "header length 1000"));
    qtl_st_close(st);
}

static float bf16(const unsigned char *p)
{
    uint32_t u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_values(void **state)
{
    (void)state;
    qtl_st_t *st;
    size_t i;
    unsigned char b[64];
    /* hf samples: U8 B = 253 254 255 0 1 2; I64 via java sample = -1 0 1 2 */
    assert_int_equal(qtl_st_open_file(real("hf-safetensors__samples__overall.safetensors"), NULL, &st), QTL_OK);
    assert_int_equal(qtl_st_tensor_find(st, "B", &i), QTL_OK);
    assert_int_equal(qtl_st_read_tensor(st, i, b, 6), QTL_OK);
    assert_memory_equal(b, ((unsigned char[]){253, 254, 255, 0, 1, 2}), 6);
    qtl_st_close(st);
    assert_int_equal(qtl_st_open_file(real("safetensors-java__src__test__resources__sample.safetensors"), NULL, &st),
                     QTL_OK);
    int64_t ints[4];
    float fl[4];
    qtl_st_tensor_find(st, "some_ints", &i);
    assert_int_equal(qtl_st_read_tensor(st, i, ints, 32), QTL_OK);
    assert_int_equal(ints[0], -1);
    assert_int_equal(ints[1], 0);
    assert_int_equal(ints[2], 1);
    assert_int_equal(ints[3], 2);
    qtl_st_tensor_find(st, "some_floats", &i);
    assert_int_equal(qtl_st_read_tensor(st, i, fl, 16), QTL_OK);
    TU_EQ_F32_BITS(fl[0], -1.0f);
    TU_EQ_F32_BITS(fl[1], 0.0f);
    TU_EQ_F32_BITS(fl[2], 1.0f);
    TU_EQ_F32_BITS(fl[3], 2.0f);
    qtl_st_close(st);
    /* torchao: E4M3 -352 288 40 144 -208 448 are bytes FB 79 62 71 F5 7E; BF16 bias 0.0427246 -0.166992 */
    assert_int_equal(qtl_st_open_file(real("torchao__fp8_weights.safetensors"), NULL, &st), QTL_OK);
    qtl_st_tensor_find(st, "0.weight:qdata", &i);
    assert_int_equal(qtl_st_read_block(st, i, 0, 1, 0, 6, b, 6), QTL_OK);
    assert_memory_equal(b, ((unsigned char[]){0xFB, 0x79, 0x62, 0x71, 0xF5, 0x7E}), 6);
    qtl_st_tensor_find(st, "0.bias:data", &i);
    assert_int_equal(qtl_st_read_block(st, i, 0, 2, 0, 1, b, 4), QTL_OK);
    assert_true(fabsf(bf16(b) - 0.0427246f) < 1e-6f);
    assert_true(fabsf(bf16(b + 2) + 0.166992f) < 1e-6f);
    qtl_st_close(st);
    /* metadata */
    assert_int_equal(qtl_st_open_file(real("fastsafetensors__examples__a.safetensors"), NULL, &st), QTL_OK);
    assert_string_equal(qtl_st_metadata_get(st, "fst"), "sample");
    qtl_st_close(st);
    /* unpadded 60-byte header */
    assert_int_equal(qtl_st_open_file(real("swift-safetensors__Tests__SafetensorsTests__data.safetensors"), NULL, &st),
                     QTL_OK);
    TU_EQ_U64(qtl_st_header_size(st), 60);
    qtl_st_close(st);
}

static void test_sharded_index(void **state)
{
    (void)state;
    qtl_ckpt_t *ck = NULL;
    int rc = qtl_ckpt_open(real("SafeTensors.jl-sharded"), NULL, &ck);
    TU_EXPECT(rc, QTL_OK, qtl_ckpt_errmsg(ck));
    assert_non_null(qtl_ckpt_index_path(ck));
    assert_int_equal(qtl_ckpt_shard_count(ck), 6);
    assert_int_equal(qtl_ckpt_tensor_count(ck), 36);
    TU_EXPECT(qtl_ckpt_check(ck), QTL_OK, qtl_ckpt_errmsg(ck));
    assert_int_equal(qtl_ckpt_diag_count(ck), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < qtl_ckpt_tensor_count(ck); i++) {
        struct qtl_tensor_info ti;
        assert_int_equal(qtl_ckpt_tensor_at(ck, i, &ti), QTL_OK);
        total += ti.nbytes;
    }
    TU_EQ_U64(total, 4305); /* metadata.total_size */
    size_t i;
    assert_int_equal(qtl_ckpt_tensor_find(ck, "float8_e4m3fn_3", &i), QTL_OK);
    size_t shard;
    qtl_ckpt_tensor_shard(ck, i, &shard);
    assert_string_equal(qtl_ckpt_shard_name(ck, shard), "model-00005-of-00006.safetensors");
    unsigned char b[3];
    assert_int_equal(qtl_ckpt_read_tensor(ck, i, b, 3), QTL_OK);
    /* -0.4375 -0.28125 -1.0 in E4M3FN */
    assert_memory_equal(b, ((unsigned char[]){0xAE, 0xA9, 0xB8}), 3);
    qtl_ckpt_close(ck);
}

int main(void)
{
    struct stat sb;
    if (stat(QTL_REAL_FIXTURES, &sb) != 0) {
        fprintf(stderr, "test_real: %s is missing (shared/ must sit beside the repository)\n", QTL_REAL_FIXTURES);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_file),
        cmocka_unit_test(test_abuse_file),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_sharded_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
