/* safetensors writer: the reference writer's byte-exact vectors, ordering,
 * escaping, and write → read round trips of every dtype. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct membuf {
    unsigned char *p;
    size_t n, cap;
};

static int mem_write(void *ud, const void *src, size_t len)
{
    struct membuf *m = ud;
    if (m->n + len > m->cap) {
        m->cap = (m->n + len) * 2;
        m->p = realloc(m->p, m->cap);
        assert_non_null(m->p);
    }
    memcpy(m->p + m->n, src, len);
    m->n += len;
    return 0;
}

static struct membuf write_mem(qtl_st_writer_t *w)
{
    struct membuf m = {0};
    struct qtl_sink sink = {mem_write, &m};
    TU_EXPECT(qtl_st_writer_write(w, &sink), QTL_OK, qtl_st_writer_errmsg(w));
    return m;
}

static void expect_file(const struct membuf *m, const char *header, uint64_t n, const void *data, size_t dlen)
{
    size_t len;
    unsigned char *want = tu_image(header, n, 0, data, dlen, &len);
    assert_int_equal(m->n, len);
    assert_memory_equal(m->p, want, len);
    free(want);
}

static void test_vectors(void **state)
{
    (void)state;
    float v[6] = {0, 1, 2, 3, 4, 5};
    qtl_st_writer_t *w;
    assert_int_equal(qtl_st_writer_new(NULL, &w), QTL_OK);
    assert_int_equal(qtl_st_writer_add(w, "attn.0", QTL_DTYPE_F32, 3, (uint64_t[]){1, 2, 3}, v, 24), QTL_OK);
    struct membuf m = write_mem(w);
    expect_file(&m, "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", 64, v, 24);
    free(m.p);
    qtl_st_writer_free(w);

    qtl_st_writer_new(NULL, &w);
    qtl_st_writer_add(w, "attn0", QTL_DTYPE_F32, 4, (uint64_t[]){1, 1, 2, 3}, v, 24);
    m = write_mem(w);
    expect_file(&m, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ", 72, v, 24);
    free(m.p);
    qtl_st_writer_free(w);

    /* F4 [1,2]: one byte (a 6-letter name gives the 60-byte JSON of §1.6);
     * [1,3] and a 2-byte view are writer errors. */
    unsigned char z[2] = {0, 0};
    qtl_st_writer_new(NULL, &w);
    assert_int_equal(qtl_st_writer_add(w, "weight", QTL_DTYPE_F4, 2, (uint64_t[]){1, 3}, z, 2), QTL_ERR_MISALIGNED_SLICE);
    assert_int_equal(qtl_st_writer_add(w, "weight", QTL_DTYPE_F4, 2, (uint64_t[]){1, 2}, z, 2),
                     QTL_ERR_TENSOR_INVALID_INFO);
    assert_non_null(strstr(qtl_st_writer_errmsg(w), "InvalidTensorView"));
    assert_int_equal(qtl_st_writer_add(w, "weight", QTL_DTYPE_F4, 2, (uint64_t[]){1, 2}, z, 1), QTL_OK);
    assert_int_equal(qtl_st_writer_add(w, "weight", QTL_DTYPE_F4, 2, (uint64_t[]){1, 2}, z, 1), QTL_ERR_DUPLICATE_KEY);
    m = write_mem(w);
    expect_file(&m, "{\"weight\":{\"dtype\":\"F4\",\"shape\":[1,2],\"data_offsets\":[0,1]}}    ", 64, z, 1);
    free(m.p);
    qtl_st_writer_free(w);

    /* Metadata only. */
    qtl_st_writer_new(NULL, &w);
    qtl_st_writer_set_metadata(w, "framework", "pt");
    uint64_t hn;
    assert_int_equal(qtl_st_writer_header_size(w, &hn), QTL_OK);
    TU_EQ_U64(hn, 40);
    m = write_mem(w);
    expect_file(&m, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", 40, NULL, 0);
    free(m.p);
    qtl_st_writer_free(w);
}

static void test_order_and_escapes(void **state)
{
    (void)state;
    uint64_t one = 1;
    unsigned char b8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    qtl_st_writer_t *w;
    qtl_st_writer_new(NULL, &w);
    qtl_st_writer_add(w, "z_u8", QTL_DTYPE_U8, 1, &one, b8, 1);
    qtl_st_writer_add(w, "b_bf16", QTL_DTYPE_BF16, 1, &one, b8, 2);
    qtl_st_writer_add(w, "a_bf16", QTL_DTYPE_BF16, 1, &one, b8 + 2, 2);
    qtl_st_writer_add(w, "q\"\n\x01", QTL_DTYPE_U64, 1, &one, b8, 8);
    qtl_st_writer_set_metadata(w, "z", "1");
    qtl_st_writer_set_metadata(w, "a", "x\ty");
    qtl_st_writer_set_metadata(w, "z", "2"); /* replaces */
    struct membuf m = write_mem(w);
    const char *h = "{\"__metadata__\":{\"a\":\"x\\ty\",\"z\":\"2\"},"
                    "\"q\\\"\\n\\u0001\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                    "\"a_bf16\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[8,10]},"
                    "\"b_bf16\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[10,12]},"
                    "\"z_u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[12,13]}}";
    size_t hl = strlen(h), padded = (hl + 7) / 8 * 8;
    char *hp = calloc(1, padded + 1);
    memcpy(hp, h, hl);
    memset(hp + hl, ' ', padded - hl);
    const unsigned char data[13] = {1, 2, 3, 4, 5, 6, 7, 8, 3, 4, 1, 2, 1};
    expect_file(&m, hp, padded, data, 13);
    /* and it reads back with the same names and metadata */
    qtl_st_t *st;
    assert_int_equal(qtl_st_open_memory(m.p, m.n, "w", NULL, &st), QTL_OK);
    size_t i;
    assert_int_equal(qtl_st_tensor_find(st, "q\"\n\x01", &i), QTL_OK);
    assert_int_equal(i, 0);
    assert_string_equal(qtl_st_metadata_get(st, "a"), "x\ty");
    qtl_st_close(st);
    free(hp);
    free(m.p);
    qtl_st_writer_free(w);
}

static void test_roundtrip_every_dtype(void **state)
{
    (void)state;
    tu_mkdir_p(QTL_TEST_TMP);
    const char *path = tu_path(QTL_TEST_TMP, "all.safetensors");
    unsigned char *data[QTL_DTYPE_COUNT];
    uint64_t shapes[QTL_DTYPE_COUNT][3];
    qtl_st_writer_t *w;
    qtl_st_writer_new(NULL, &w);
    uint32_t seed = 1;
    for (int d = 0; d < QTL_DTYPE_COUNT; d++) {
        shapes[d][0] = 3;
        shapes[d][1] = (uint64_t)(d % 3);
        shapes[d][2] = 8; /* keeps sub-byte sizes whole */
        uint64_t numel = shapes[d][0] * shapes[d][1] * shapes[d][2];
        size_t nb = (size_t)(numel * qtl_dtype_bits((enum qtl_dtype)d) / 8);
        data[d] = malloc(nb + 1);
        for (size_t k = 0; k < nb; k++)
            data[d][k] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
        char name[32];
        snprintf(name, sizeof name, "t.%s", qtl_dtype_name((enum qtl_dtype)d));
        TU_EXPECT(qtl_st_writer_add(w, name, (enum qtl_dtype)d, 3, shapes[d], data[d], nb), QTL_OK,
                  qtl_st_writer_errmsg(w));
    }
    qtl_st_writer_add(w, "scalar", QTL_DTYPE_F64, 0, NULL, "\0\0\0\0\0\0\xf0\x3f", 8);
    qtl_st_writer_set_metadata(w, "format", "pt");
    TU_EXPECT(qtl_st_writer_write_file(w, path), QTL_OK, qtl_st_writer_errmsg(w));
    qtl_st_writer_free(w);

    qtl_st_t *st;
    TU_EXPECT(qtl_st_open_file(path, NULL, &st), QTL_OK, qtl_st_errmsg(st));
    assert_int_equal(qtl_st_tensor_count(st), QTL_DTYPE_COUNT + 1);
    TU_EQ_U64(qtl_st_header_size(st) % 8, 0);
    assert_string_equal(qtl_st_metadata_get(st, "format"), "pt");
    uint64_t prev_end = 0;
    for (size_t i = 0; i < qtl_st_tensor_count(st); i++) {
        struct qtl_tensor_info ti;
        qtl_st_tensor_at(st, i, &ti);
        TU_EQ_U64(ti.begin, prev_end);
        prev_end = ti.end;
        /* Alignment order: every tensor starts at a multiple of its element size. */
        unsigned bytes = qtl_dtype_bits(ti.dtype) / 8;
        if (bytes)
            TU_EQ_U64(ti.begin % bytes, 0);
        if (!strcmp(ti.name, "scalar")) {
            uint64_t x; /* the F64 bits */
            assert_int_equal(qtl_st_read_tensor(st, i, &x, 8), QTL_OK);
            TU_EQ_U64(x, 0x3FF0000000000000ull); /* 1.0 */
            continue;
        }
        int d = (int)ti.dtype;
        char name[32];
        snprintf(name, sizeof name, "t.%s", qtl_dtype_name(ti.dtype));
        assert_string_equal(ti.name, name);
        assert_int_equal(ti.ndim, 3);
        assert_memory_equal(ti.shape, shapes[d], sizeof shapes[d]);
        unsigned char *back = malloc(ti.nbytes + 1);
        assert_int_equal(qtl_st_read_tensor(st, i, back, (size_t)ti.nbytes), QTL_OK);
        if (ti.nbytes)
            assert_memory_equal(back, data[d], (size_t)ti.nbytes);
        free(back);
    }
    qtl_st_close(st);
    for (int d = 0; d < QTL_DTYPE_COUNT; d++)
        free(data[d]);
}

/* Reads large enough to be split over the OpenMP threads (spans of >= 4 MiB,
 * 4 KiB-aligned, the last one short) return the written bytes exactly. */
static void test_large_split_read(void **state)
{
    (void)state;
    tu_mkdir_p(QTL_TEST_TMP);
    const char *path = tu_path(QTL_TEST_TMP, "large.safetensors");
    const uint64_t shape[2] = {4099, 6151}; /* 25.2 MB of U8, odd sizes */
    size_t nb = (size_t)(shape[0] * shape[1]);
    unsigned char *data = malloc(nb), *back = malloc(nb);
    assert_non_null(data);
    assert_non_null(back);
    uint32_t seed = 7;
    for (size_t k = 0; k < nb; k++)
        data[k] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
    qtl_st_writer_t *w;
    qtl_st_writer_new(NULL, &w);
    qtl_st_writer_add(w, "small", QTL_DTYPE_U8, 1, (const uint64_t[]){3}, "abc", 3); /* unaligned start */
    TU_EXPECT(qtl_st_writer_add(w, "big", QTL_DTYPE_U8, 2, shape, data, nb), QTL_OK, qtl_st_writer_errmsg(w));
    TU_EXPECT(qtl_st_writer_write_file(w, path), QTL_OK, qtl_st_writer_errmsg(w));
    qtl_st_writer_free(w);
    qtl_st_t *st;
    TU_EXPECT(qtl_st_open_file(path, NULL, &st), QTL_OK, qtl_st_errmsg(st));
    size_t big = 0;
    struct qtl_tensor_info ti;
    for (size_t i = 0; i < qtl_st_tensor_count(st); i++)
        if (qtl_st_tensor_at(st, i, &ti) == QTL_OK && !strcmp(ti.name, "big"))
            big = i;
    memset(back, 0, nb);
    TU_EXPECT(qtl_st_read_tensor(st, big, back, nb), QTL_OK, qtl_st_errmsg(st));
    assert_memory_equal(back, data, nb);
    memset(back, 0, nb); /* rows 1..4097, all columns: one contiguous range at an odd offset */
    TU_EXPECT(qtl_st_read_block(st, big, 1, 4097, 0, shape[1], back, (size_t)(4097 * shape[1])), QTL_OK,
              qtl_st_errmsg(st));
    assert_memory_equal(back, data + shape[1], (size_t)(4097 * shape[1]));
    qtl_st_close(st);
    free(data);
    free(back);
}

static void test_write_errors(void **state)
{
    (void)state;
    qtl_st_writer_t *w;
    qtl_st_writer_new(NULL, &w);
    assert_int_equal(qtl_st_writer_add(w, NULL, QTL_DTYPE_U8, 0, NULL, "x", 1), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_st_writer_add(w, "a", QTL_DTYPE_COUNT, 0, NULL, "x", 1), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_st_writer_add(w, "a", QTL_DTYPE_U8, 0, NULL, "xx", 2), QTL_ERR_TENSOR_INVALID_INFO);
    assert_int_equal(qtl_st_writer_add(w, "a", QTL_DTYPE_U8, 0, NULL, "x", 1), QTL_OK);
    TU_EXPECT(qtl_st_writer_write_file(w, "/nonexistent-dir/x.safetensors"), QTL_ERR_OPEN, qtl_st_writer_errmsg(w));
    qtl_st_writer_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_order_and_escapes),
        cmocka_unit_test(test_roundtrip_every_dtype),
        cmocka_unit_test(test_large_split_read),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
