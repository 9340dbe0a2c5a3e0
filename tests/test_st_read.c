/* safetensors reader: the reference crate's vectors (formats.md §1.6), edge
 * cases, messages, and the byte-range read path. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qtl_st_t *open_img(const unsigned char *img, size_t n, int want)
{
    qtl_st_t *st = NULL;
    int rc = qtl_st_open_memory(img, n, "t.safetensors", NULL, &st);
    TU_EXPECT(rc, want, qtl_st_errmsg(st));
    return st;
}

static int status_of(const char *header, uint64_t n_override, size_t dlen)
{
    size_t n;
    unsigned char *img = tu_image(header, strlen(header), n_override, NULL, dlen, &n);
    qtl_st_t *st = NULL;
    int rc = qtl_st_open_memory(img, n, "t.safetensors", NULL, &st);
    qtl_st_close(st);
    free(img);
    return rc;
}

static void test_attn0_vector(void **state)
{
    (void)state;
    const char *h = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    const float vals[6] = {0, 1, 2, 3, 4, 5};
    static const unsigned char data[24] = {0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40,
                                           0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40};
    assert_memory_equal(vals, data, 24); /* little-endian host */
    size_t n;
    unsigned char *img = tu_image(h, strlen(h), 0, data, 24, &n); /* 96 bytes */
    qtl_st_t *st = open_img(img, n, QTL_OK);
    TU_EQ_U64(qtl_st_header_size(st), 64);
    assert_int_equal(qtl_st_tensor_count(st), 1);
    struct qtl_tensor_info ti;
    assert_int_equal(qtl_st_tensor_at(st, 0, &ti), QTL_OK);
    assert_string_equal(ti.name, "attn.0");
    assert_int_equal(ti.dtype, QTL_DTYPE_F32);
    assert_int_equal(ti.ndim, 3);
    TU_EQ_U64(ti.shape[0], 1);
    TU_EQ_U64(ti.shape[1], 2);
    TU_EQ_U64(ti.shape[2], 3);
    TU_EQ_U64(ti.numel, 6);
    TU_EQ_U64(ti.nbytes, 24);
    TU_EQ_U64(ti.file_offset, 72);
    float out[6];
    assert_int_equal(qtl_st_read_tensor(st, 0, out, sizeof out), QTL_OK);
    assert_memory_equal(out, vals, sizeof out);
    size_t idx;
    assert_int_equal(qtl_st_tensor_find(st, "attn.0", &idx), QTL_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(qtl_st_tensor_find(st, "attn.1", &idx), QTL_ERR_NOT_FOUND);
    assert_int_equal(qtl_st_metadata_count(st), 0);
    qtl_st_close(st);
    free(img);
}

static void test_crate_error_vectors(void **state)
{
    (void)state;
    const char *t = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    assert_int_equal(status_of(t, 0, 16), QTL_OK);
    assert_int_equal(status_of(t, 0, 17), QTL_ERR_INCOMPLETE_BUFFER); /* MetadataIncompleteBuffer */
    assert_int_equal(status_of(t, 0, 14), QTL_ERR_TRUNCATED);         /* MetadataIncompleteBuffer */
    assert_int_equal(status_of(t, 0xFFFFFF000000003Cull, 16), QTL_ERR_HEADER_TOO_LARGE);
    size_t n;
    unsigned char *img = tu_image("", 0, 0, NULL, 0, &n);
    qtl_st_t *st = NULL;
    TU_EXPECT(qtl_st_open_memory(img, 0, "empty", NULL, &st), QTL_ERR_HEADER_TOO_SMALL, qtl_st_errmsg(st));
    qtl_st_close(st);
    free(img);
    img = tu_image("", 0, 60, NULL, 0, &n); /* the 8 bytes of N alone */
    st = open_img(img, n, QTL_ERR_INVALID_HEADER_LENGTH);
    qtl_st_close(st);
    free(img);
    assert_int_equal(status_of("\xff", 0, 0), QTL_ERR_INVALID_HEADER);
    assert_int_equal(status_of("{", 0, 0), QTL_ERR_INVALID_HEADER_DESER);
    /* Ten names all at [0,16]. */
    char ten[1024] = "{";
    for (int i = 0; i < 10; i++) {
        char one[96];
        snprintf(one, sizeof one, "%s\"t%d\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", i ? "," : "",
                 i);
        strcat(ten, one);
    }
    strcat(ten, "}");
    assert_int_equal(status_of(ten, 0, 16), QTL_ERR_INVALID_OFFSET);
    assert_int_equal(
        status_of("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],\"data_offsets\":[0,16]}}", 0, 16),
        QTL_ERR_VALIDATION_OVERFLOW);
    assert_int_equal(
        status_of("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],\"data_offsets\":[0,16]}}", 0, 16),
        QTL_ERR_VALIDATION_OVERFLOW);
    assert_int_equal(status_of("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 0, 4),
                     QTL_ERR_TENSOR_INVALID_INFO);
    assert_int_equal(status_of("{\"x\":{\"dtype\":\"F4\",\"shape\":[1,3],\"data_offsets\":[0,2]}}", 0, 2),
                     QTL_ERR_MISALIGNED_SLICE);
    assert_int_equal(status_of("{\"x\":{\"dtype\":\"F4\",\"shape\":[1,2],\"data_offsets\":[0,2]}}", 0, 2),
                     QTL_ERR_TENSOR_INVALID_INFO);
    assert_int_equal(status_of("{\"x\":{\"dtype\":\"F4\",\"shape\":[1,2],\"data_offsets\":[0,1]}}", 0, 1), QTL_OK);
    /* Step 6 runs before step 7: short file with an inconsistent tensor. */
    assert_int_equal(status_of("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 0, 4),
                     QTL_ERR_TENSOR_INVALID_INFO);
}

static void test_accepted_edges(void **state)
{
    (void)state;
    /* Empty header {} padded to 8; leading whitespace; metadata only. */
    size_t n;
    unsigned char *img = tu_image("{}      ", 8, 0, NULL, 0, &n);
    qtl_st_t *st = open_img(img, n, QTL_OK);
    assert_int_equal(qtl_st_tensor_count(st), 0);
    qtl_st_close(st);
    free(img);
    img = tu_image("\t\n{}\r ", 6, 0, NULL, 0, &n);
    st = open_img(img, n, QTL_OK);
    assert_int_equal(qtl_st_tensor_count(st), 0);
    qtl_st_close(st);
    free(img);
    const char *meta = "{\"__metadata__\":{\"framework\":\"pt\"}}";
    img = tu_image_padded(meta, NULL, 0, &n); /* 35 bytes of JSON padded to 40 */
    st = open_img(img, n, QTL_OK);
    TU_EQ_U64(qtl_st_header_size(st), 40);
    assert_int_equal(qtl_st_metadata_count(st), 1);
    assert_string_equal(qtl_st_metadata_get(st, "framework"), "pt");
    assert_null(qtl_st_metadata_get(st, "format"));
    qtl_st_close(st);
    free(img);
    /* Rank 0 and empty tensors, null metadata, unknown fields ignored. */
    const char *h = "{\"__metadata__\":null,\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4],"
                    "\"extra\":{\"a\":[1,2.5e-3,true,false,null,\"x\\\"y\"]}},"
                    "\"e\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
                    "\"e2\":{\"data_offsets\":[4,4],\"shape\":[0],\"dtype\":\"BF16\"}}";
    const unsigned char four[4] = {7, 0, 0, 0};
    img = tu_image_padded(h, four, 4, &n);
    st = open_img(img, n, QTL_OK);
    assert_int_equal(qtl_st_tensor_count(st), 3);
    struct qtl_tensor_info ti;
    /* Sorted by offsets, ties by header order: e [0,0], s [0,4], e2 [4,4]. */
    assert_int_equal(qtl_st_tensor_at(st, 0, &ti), QTL_OK);
    assert_string_equal(ti.name, "e");
    TU_EQ_U64(ti.numel, 0);
    assert_int_equal(qtl_st_tensor_at(st, 1, &ti), QTL_OK);
    assert_string_equal(ti.name, "s");
    assert_int_equal(ti.ndim, 0);
    assert_null(ti.shape);
    TU_EQ_U64(ti.numel, 1);
    int32_t v = 0;
    assert_int_equal(qtl_st_read_tensor(st, 1, &v, 4), QTL_OK);
    assert_int_equal(v, 7);
    assert_int_equal(qtl_st_read_block(st, 1, 0, 1, 0, 1, &v, 4), QTL_OK);
    assert_int_equal(qtl_st_tensor_at(st, 2, &ti), QTL_OK);
    assert_string_equal(ti.name, "e2");
    assert_int_equal(qtl_st_read_tensor(st, 2, NULL, 0), QTL_OK);
    qtl_st_close(st);
    free(img);
}

static void test_escapes_and_order(void **state)
{
    (void)state;
    /* Names with escapes decode to UTF-8; header order is irrelevant. */
    const char *h = "{\"b\\u00e9\\ud83d\\ude00\\n\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                    "\"a\\\"\\\\\\/\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    const unsigned char d[4] = {1, 2, 3, 4};
    size_t n;
    unsigned char *img = tu_image_padded(h, d, 4, &n);
    qtl_st_t *st = open_img(img, n, QTL_OK);
    struct qtl_tensor_info ti;
    qtl_st_tensor_at(st, 0, &ti);
    assert_string_equal(ti.name, "a\"\\/");
    qtl_st_tensor_at(st, 1, &ti);
    assert_string_equal(ti.name, "b\xc3\xa9\xf0\x9f\x98\x80\n");
    size_t idx;
    assert_int_equal(qtl_st_tensor_find(st, "b\xc3\xa9\xf0\x9f\x98\x80\n", &idx), QTL_OK);
    assert_int_equal(idx, 1);
    unsigned char out[2];
    assert_int_equal(qtl_st_read_tensor(st, 1, out, 2), QTL_OK);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 4);
    qtl_st_close(st);
    free(img);
}

static void test_u64_offsets_exact(void **state)
{
    (void)state;
    /* 2^64-1 parses exactly (no double rounding): the tensor is then an
     * invalid offset, not a parse error. 2^53+1 likewise stays exact. */
    assert_int_equal(status_of("{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}",
                               0, 1),
                     QTL_ERR_TENSOR_INVALID_INFO);
    assert_int_equal(status_of("{\"x\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,"
                               "9007199254740993]}}",
                               0, 0),
                     QTL_ERR_TRUNCATED);
    size_t n;
    const char *h = "{\"x\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,9007199254740993]}}";
    unsigned char *img = tu_image(h, strlen(h), 0, NULL, 0, &n);
    qtl_st_t *st = open_img(img, n, QTL_ERR_TRUNCATED);
    assert_non_null(strstr(qtl_st_errmsg(st), "9007199254740993 bytes of tensor data"));
    qtl_st_close(st);
    free(img);
}

static void test_messages(void **state)
{
    (void)state;
    /* The message names file, tensor and rule. */
    const char *h = "{\"model.layers.3.mlp.gate_proj.weight\":{\"dtype\":\"U8\",\"shape\":[1536],"
                    "\"data_offsets\":[0,1536]},"
                    "\"model.layers.3.mlp.up_proj.weight\":{\"dtype\":\"U8\",\"shape\":[1024],"
                    "\"data_offsets\":[1024,2048]}}";
    size_t n;
    unsigned char *img = tu_image_padded(h, NULL, 2048, &n);
    qtl_st_t *st = NULL;
    int rc = qtl_st_open_memory(img, n, "model-00002-of-00004.safetensors", NULL, &st);
    assert_int_equal(rc, QTL_ERR_INVALID_OFFSET);
    assert_int_equal(qtl_st_errcode(st), QTL_ERR_INVALID_OFFSET);
    assert_string_equal(qtl_st_errmsg(st),
                        "model-00002-of-00004.safetensors: tensor 'model.layers.3.mlp.up_proj.weight': data_offsets "
                        "[1024,2048] overlap previous tensor 'model.layers.3.mlp.gate_proj.weight' ending at 1536 "
                        "(InvalidOffset)");
    qtl_st_close(st);
    free(img);
}

static void test_header_limit(void **state)
{
    (void)state;
    const char *h = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    size_t n;
    unsigned char *img = tu_image(h, 60, 0, NULL, 16, &n);
    qtl_st_t *st = NULL;
    struct qtl_open_options o = {NULL, 59};
    assert_int_equal(qtl_st_open_memory(img, n, "t", &o, &st), QTL_ERR_HEADER_TOO_LARGE);
    qtl_st_close(st);
    o.max_header_bytes = 60;
    assert_int_equal(qtl_st_open_memory(img, n, "t", &o, &st), QTL_OK);
    qtl_st_close(st);
    free(img);
}

static void test_read_block(void **state)
{
    (void)state;
    /* F32 [4, 2, 3] viewed as [4, 6]; U8 rank 1 as [5, 1]; F4 [2, 4]. */
    float m[24];
    for (int i = 0; i < 24; i++)
        m[i] = (float)i;
    const char *h = "{\"m\":{\"dtype\":\"F32\",\"shape\":[4,2,3],\"data_offsets\":[0,96]},"
                    "\"v\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[96,101]},"
                    "\"f\":{\"dtype\":\"F4\",\"shape\":[2,4],\"data_offsets\":[101,105]}}";
    unsigned char data[105];
    memcpy(data, m, 96);
    for (int i = 0; i < 5; i++)
        data[96 + i] = (unsigned char)(10 + i);
    for (int i = 0; i < 4; i++)
        data[101 + i] = (unsigned char)(0x10 * i + i + 1);
    size_t n;
    unsigned char *img = tu_image_padded(h, data, sizeof data, &n);
    qtl_st_t *st = open_img(img, n, QTL_OK);
    size_t mi, vi, fi;
    qtl_st_tensor_find(st, "m", &mi);
    qtl_st_tensor_find(st, "v", &vi);
    qtl_st_tensor_find(st, "f", &fi);
    float out[24];
    /* rows 1..2, cols 2..4 */
    assert_int_equal(qtl_st_read_block(st, mi, 1, 2, 2, 3, out, 6 * sizeof(float)), QTL_OK);
    const float want[6] = {8, 9, 10, 14, 15, 16};
    assert_memory_equal(out, want, sizeof want);
    /* full rows 2..3 */
    assert_int_equal(qtl_st_read_block(st, mi, 2, 2, 0, 6, out, 12 * sizeof(float)), QTL_OK);
    assert_memory_equal(out, m + 12, 12 * sizeof(float));
    /* column 5 of every row */
    assert_int_equal(qtl_st_read_block(st, mi, 0, 4, 5, 1, out, 4 * sizeof(float)), QTL_OK);
    const float col5[4] = {5, 11, 17, 23};
    assert_memory_equal(out, col5, sizeof col5);
    /* errors: outside, wrong size */
    TU_EXPECT(qtl_st_read_block(st, mi, 3, 2, 0, 6, out, 12 * sizeof(float)), QTL_ERR_RANGE, qtl_st_errmsg(st));
    assert_non_null(strstr(qtl_st_errmsg(st), "tensor 'm'"));
    TU_EXPECT(qtl_st_read_block(st, mi, 0, 1, 5, 2, out, 2 * sizeof(float)), QTL_ERR_RANGE, qtl_st_errmsg(st));
    TU_EXPECT(qtl_st_read_block(st, mi, 0, 1, 0, 6, out, 5 * sizeof(float)), QTL_ERR_INVALID_ARGUMENT,
              qtl_st_errmsg(st));
    TU_EXPECT(qtl_st_read_block(st, mi, UINT64_MAX, 2, 0, 1, out, 8), QTL_ERR_RANGE, qtl_st_errmsg(st));
    /* rank 1 */
    unsigned char b[5];
    assert_int_equal(qtl_st_read_block(st, vi, 1, 3, 0, 1, b, 3), QTL_OK);
    assert_int_equal(b[0], 11);
    assert_int_equal(b[2], 13);
    /* F4: byte-aligned columns only */
    assert_int_equal(qtl_st_read_block(st, fi, 0, 2, 2, 2, b, 2), QTL_OK);
    assert_int_equal(b[0], 0x12);
    assert_int_equal(b[1], 0x34);
    TU_EXPECT(qtl_st_read_block(st, fi, 0, 2, 1, 2, b, 2), QTL_ERR_RANGE, qtl_st_errmsg(st));
    TU_EXPECT(qtl_st_read_block(st, fi, 0, 2, 0, 3, b, 2), QTL_ERR_RANGE, qtl_st_errmsg(st));
    /* byte ranges: coalesced and separate */
    struct qtl_byte_range r[3] = {{4, 4}, {8, 4}, {92, 4}};
    assert_int_equal(qtl_st_read(st, mi, r, 3, out, 12), QTL_OK);
    TU_EQ_F32_BITS(out[0], 1.0f);
    TU_EQ_F32_BITS(out[1], 2.0f);
    TU_EQ_F32_BITS(out[2], 23.0f);
    struct qtl_byte_range bad = {93, 4};
    TU_EXPECT(qtl_st_read(st, mi, &bad, 1, out, 4), QTL_ERR_RANGE, qtl_st_errmsg(st));
    struct qtl_byte_range wrap = {UINT64_MAX, 2};
    TU_EXPECT(qtl_st_read(st, mi, &wrap, 1, out, 2), QTL_ERR_RANGE, qtl_st_errmsg(st));
    TU_EXPECT(qtl_st_read_tensor(st, 99, out, 4), QTL_ERR_INVALID_ARGUMENT, qtl_st_errmsg(st));
    qtl_st_close(st);
    free(img);
}

static void test_file_source(void **state)
{
    (void)state;
    tu_mkdir_p(QTL_TEST_TMP);
    const char *h = "{\"x\":{\"dtype\":\"I16\",\"shape\":[3],\"data_offsets\":[0,6]}}";
    const int16_t d[3] = {-1, 2, -3};
    size_t n;
    unsigned char *img = tu_image_padded(h, d, 6, &n);
    const char *path = tu_path(QTL_TEST_TMP, "x.safetensors");
    tu_write(path, img, n);
    qtl_st_t *st = NULL;
    assert_int_equal(qtl_st_open_file(path, NULL, &st), QTL_OK);
    assert_string_equal(qtl_st_name(st), path);
    TU_EQ_U64(qtl_st_file_size(st), n);
    int16_t out[3];
    assert_int_equal(qtl_st_read_tensor(st, 0, out, 6), QTL_OK);
    assert_memory_equal(out, d, 6);
    qtl_st_close(st);
    TU_EXPECT(qtl_st_open_file(tu_path(QTL_TEST_TMP, "missing.safetensors"), NULL, &st), QTL_ERR_OPEN,
              qtl_st_errmsg(st));
    assert_non_null(strstr(qtl_st_errmsg(st), "missing.safetensors"));
    qtl_st_close(st);
    TU_EXPECT(qtl_st_open_file(QTL_TEST_TMP, NULL, &st), QTL_ERR_OPEN, qtl_st_errmsg(st));
    qtl_st_close(st);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attn0_vector),     cmocka_unit_test(test_crate_error_vectors),
        cmocka_unit_test(test_accepted_edges),   cmocka_unit_test(test_escapes_and_order),
        cmocka_unit_test(test_u64_offsets_exact), cmocka_unit_test(test_messages),
        cmocka_unit_test(test_header_limit),     cmocka_unit_test(test_read_block),
        cmocka_unit_test(test_file_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
