/* Status table, version, dtype table. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static void test_errnames(void **state)
{
    (void)state;
    assert_int_equal(QTL_OK, 0);
    assert_string_equal(qtl_errname(QTL_OK), "OK");
    assert_string_equal(qtl_errname(QTL_ERR_INVALID_OFFSET), "INVALID_OFFSET");
    assert_int_equal(QTL_ERR_INVALID_OFFSET, -26); /* pinned */
    assert_int_equal(QTL_ERR_TRUNCATED, -31);
    assert_int_equal(QTL_ERR_LFS_POINTER, -32);
    assert_string_equal(qtl_errname(12345), "UNKNOWN");
    assert_string_equal(qtl_strerror(12345), "unknown status");
    assert_non_null(strstr(qtl_strerror(QTL_ERR_INVALID_OFFSET), "InvalidOffset"));
    assert_non_null(strstr(qtl_strerror(QTL_ERR_HEADER_TOO_LARGE), "HeaderTooLarge"));
    /* Every pinned value, written out: a renumbered, renamed, reused or dropped code fails here
     * (the values are an ABI: scripts and bindings compare them). */
    static const struct {
        int value;
        const char *name;
    } pinned[] = {{0, "OK"},
                  {-1, "INVALID_ARGUMENT"},
                  {-2, "NOMEM"},
                  {-3, "IO"},
                  {-4, "OPEN"},
                  {-5, "NOT_FOUND"},
                  {-6, "UNSUPPORTED"},
                  {-7, "RANGE"},
                  {-20, "HEADER_TOO_SMALL"},
                  {-21, "HEADER_TOO_LARGE"},
                  {-22, "INVALID_HEADER_LENGTH"},
                  {-23, "INVALID_HEADER"},
                  {-24, "INVALID_HEADER_DESER"},
                  {-25, "DUPLICATE_KEY"},
                  {-26, "INVALID_OFFSET"},
                  {-27, "VALIDATION_OVERFLOW"},
                  {-28, "MISALIGNED_SLICE"},
                  {-29, "TENSOR_INVALID_INFO"},
                  {-30, "INCOMPLETE_BUFFER"},
                  {-31, "TRUNCATED"},
                  {-32, "LFS_POINTER"},
                  {-33, "NOT_SAFETENSORS"},
                  {-40, "INDEX"},
                  {-41, "SHARD_MISSING"},
                  {-42, "TENSOR_MISSING"},
                  {-43, "TENSOR_DUPLICATE"},
                  {-44, "JSON"},
                  {-45, "NO_CHECKPOINT"},
                  {-46, "CHECKPOINT"}};
    static const int all[] = {
#define XX(name, value, text) value,
        QTL_STATUS_MAP(XX)
#undef XX
    };
    assert_int_equal(sizeof all / sizeof all[0], sizeof pinned / sizeof pinned[0]);
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        assert_int_equal(all[i], pinned[i].value);
        assert_string_equal(qtl_errname(pinned[i].value), pinned[i].name);
        assert_string_not_equal(qtl_strerror(pinned[i].value), "unknown status");
    }
    for (int v = -100; v <= 100; v++) { /* nothing outside the table has a name */
        int listed = 0;
        for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++)
            listed |= pinned[i].value == v;
        if (!listed)
            assert_string_equal(qtl_errname(v), "UNKNOWN");
    }
    assert_int_equal(QTL_ERR_CHECKPOINT, -46);
}

static void test_version(void **state)
{
    (void)state;
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", QTL_VERSION_MAJOR, QTL_VERSION_MINOR, QTL_VERSION_PATCH);
    assert_string_equal(qtl_version_string(), buf);
    assert_int_equal(qtl_version_number(), QTL_VERSION_NUMBER);
}

static void test_dtypes(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        unsigned bits;
    } want[QTL_DTYPE_COUNT] = {{"BOOL", 8},       {"F4", 4},           {"F6_E2M3", 6}, {"F6_E3M2", 6},
                               {"U8", 8},         {"I8", 8},           {"F8_E5M2", 8}, {"F8_E4M3", 8},
                               {"F8_E8M0", 8},    {"F8_E4M3FNUZ", 8},  {"F8_E5M2FNUZ", 8},
                               {"I16", 16},       {"U16", 16},         {"F16", 16},    {"BF16", 16},
                               {"I32", 32},       {"U32", 32},         {"F32", 32},    {"C64", 64},
                               {"F64", 64},       {"I64", 64},         {"U64", 64}};
    for (int i = 0; i < QTL_DTYPE_COUNT; i++) {
        enum qtl_dtype d;
        assert_string_equal(qtl_dtype_name((enum qtl_dtype)i), want[i].name);
        assert_int_equal(qtl_dtype_bits((enum qtl_dtype)i), want[i].bits);
        assert_int_equal(qtl_dtype_from_name(want[i].name, strlen(want[i].name), &d), QTL_OK);
        assert_int_equal(d, i);
    }
    enum qtl_dtype d;
    assert_int_equal(qtl_dtype_from_name("f32", 3, &d), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_dtype_from_name("F3", 2, &d), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_dtype_from_name("F32 ", 4, &d), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_dtype_from_name("F8_E4M3FNUZX", 12, &d), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_dtype_from_name("", 0, &d), QTL_ERR_INVALID_ARGUMENT);
    assert_null(qtl_dtype_name(QTL_DTYPE_COUNT));
    assert_int_equal(qtl_dtype_bits(QTL_DTYPE_COUNT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errnames),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
