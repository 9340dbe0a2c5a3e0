/* Fail the Nth allocation for every N across open + check + lookup + read of a
 * sharded checkpoint (jansson's global hooks count into the same counter),
 * and across the single-file reader and the writer. Every run must return
 * QTL_ERR_NOMEM cleanly or succeed, and free everything it allocated. */
#include "ckpt_fixture.h"

#include <stdlib.h>

#define DIR_CK QTL_TEST_TMP "/ck"

static int ckpt_session(void)
{
    struct qtl_open_options o = {&tu_allocator, 0};
    qtl_ckpt_t *ck = NULL;
    int rc = qtl_ckpt_open(DIR_CK, &o, &ck);
    if (!rc)
        rc = qtl_ckpt_check(ck);
    for (int k = 0; k < 10 && !rc; k++) {
        char name[16];
        size_t i;
        struct qtl_tensor_info ti;
        int32_t v[16];
        snprintf(name, sizeof name, "t%d", k);
        rc = qtl_ckpt_tensor_find(ck, name, &i);
        if (!rc)
            rc = qtl_ckpt_tensor_at(ck, i, &ti);
        if (!rc)
            rc = qtl_ckpt_read_tensor(ck, i, v, (size_t)ti.nbytes);
        if (!rc && v[k] != k * 100 + k)
            rc = -999;
    }
    if (rc && ck && rc != QTL_ERR_NOMEM)
        fprintf(stderr, "unexpected: %s\n", qtl_ckpt_errmsg(ck));
    qtl_ckpt_close(ck);
    return rc;
}

static void run_until_success(int (*session)(void), int json_hooks, long *successes_at)
{
    for (long n = 0;; n++) {
        tu_counter_reset(n);
        if (json_hooks)
            tu_json_hooks(1);
        int rc = session();
        if (json_hooks)
            tu_json_hooks(0);
        if (tu_counter.live != 0)
            fail_msg("fail_at=%ld: %ld allocation(s) leaked (rc %s)", n, tu_counter.live, qtl_errname(rc));
        if (!tu_counter.failed) {
            TU_EXPECT(rc, QTL_OK, "no allocation failed, so the session must succeed");
            *successes_at = n;
            return;
        }
        if (rc != QTL_ERR_NOMEM)
            fail_msg("fail_at=%ld: got %s, want NOMEM", n, qtl_errname(rc));
    }
}

static void test_oom_checkpoint(void **state)
{
    (void)state;
    fx_checkpoint(DIR_CK);
    long n;
    run_until_success(ckpt_session, 1, &n);
    assert_true(n > 20); /* it really went through many allocation sites */
}

static unsigned char *g_img;
static size_t g_len;

static int st_session(void)
{
    struct qtl_open_options o = {&tu_allocator, 0};
    qtl_st_t *st = NULL;
    int rc = qtl_st_open_memory(g_img, g_len, "m", &o, &st);
    size_t i;
    if (!rc)
        rc = qtl_st_tensor_find(st, "b", &i);
    qtl_st_close(st);
    return rc;
}

static void test_oom_single_file(void **state)
{
    (void)state;
    const char *h = "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\"},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[2,1],\"data_offsets\":[2,4]}}";
    g_img = tu_image_padded(h, "wxyz", 4, &g_len);
    long n;
    run_until_success(st_session, 0, &n);
    assert_true(n >= 3);
    free(g_img);
}

static int discard(void *ud, const void *src, size_t len)
{
    (void)ud, (void)src, (void)len;
    return 0;
}

static int writer_session(void)
{
    qtl_st_writer_t *w = NULL;
    uint64_t shape[2] = {2, 3};
    static const unsigned char data[6] = {1, 2, 3, 4, 5, 6};
    int rc = qtl_st_writer_new(&tu_allocator, &w);
    if (!rc)
        rc = qtl_st_writer_set_metadata(w, "format", "pt");
    if (!rc)
        rc = qtl_st_writer_add(w, "x", QTL_DTYPE_U8, 2, shape, data, 6);
    if (!rc)
        rc = qtl_st_writer_add(w, "y", QTL_DTYPE_I8, 2, shape, data, 6);
    struct qtl_sink s = {discard, NULL};
    if (!rc)
        rc = qtl_st_writer_write(w, &s);
    qtl_st_writer_free(w);
    return rc;
}

static void test_oom_writer(void **state)
{
    (void)state;
    long n;
    run_until_success(writer_session, 0, &n);
    assert_true(n >= 5);
}

/* open (config, plan) + run (arena, executor) + process of one small fixture per scheme family */
static char g_dir[512];

static int load_session(void)
{
    struct qtl_load_options lo = {.tp = 2, .rank = 1, .dtype_override = QTL_DTYPE_COUNT, .allocator = &tu_allocator,
                                  .threads = 2};
    qtl_load_t *l = NULL;
    int rc = qtl_load_open(g_dir, &lo, &l);
    if (!rc)
        rc = qtl_load_run(l);
    if (!rc)
        rc = qtl_load_process(l);
    if (rc && rc != QTL_ERR_NOMEM)
        fprintf(stderr, "unexpected: %s\n", qtl_load_errmsg(l));
    qtl_load_close(l);
    return rc;
}

static void test_oom_load(void **state)
{
    (void)state;
    static const char *const schemes[] = {"bf16",          "fp8",           "fp8-block",     "ct-int8-asym",
                                          "ct-nvfp4",      "ct-w4a16-asym", "modelopt-nvfp4"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        struct qtl_fixture_options o;
        qtl_fixture_defaults(&o);
        o.scheme = schemes[i];
        o.arch = i % 2 ? QTL_FIXTURE_PHI3 : QTL_FIXTURE_LLAMA;
        o.layers = 1;
        o.hidden = 256;
        o.head_dim = 128; /* kv rows per rank: one FP8 block at tp=2 */
        o.intermediate = 512;
        o.vocab = 200;
        char msg[256];
        snprintf(g_dir, sizeof g_dir, "%s/load-%s", QTL_TEST_TMP, schemes[i]);
        TU_EXPECT(qtl_fixture_write(&o, g_dir, msg, sizeof msg), QTL_OK, msg);
        long n;
        /* jansson's own allocations are not failed here: jansson 2.14 (Debian 12) crashes inside
         * json_loadf when one fails while it parses this index (fail_at=19); the checkpoint test
         * above covers qtl's handling of jansson running out of memory */
        run_until_success(load_session, 0, &n);
        if (n < 40)
            fail_msg("%s: only %ld allocations", schemes[i], n);
    }
}

int main(void)
{
    tu_mkdir_p(QTL_TEST_TMP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_checkpoint),
        cmocka_unit_test(test_oom_single_file),
        cmocka_unit_test(test_oom_writer),
        cmocka_unit_test(test_oom_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
