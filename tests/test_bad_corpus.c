/* Every file of tests/data/bad/ is rejected with the status its name starts
 * with (STATUS__what.safetensors), from a file and from memory alike. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_one(const char *dir, const char *file)
{
    char want[64];
    const char *sep = strstr(file, "__");
    assert_non_null(sep);
    snprintf(want, sizeof want, "%.*s", (int)(sep - file), file);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    qtl_st_t *st = NULL;
    int rc = qtl_st_open_file(path, NULL, &st);
    if (strcmp(qtl_errname(rc), want) != 0)
        fail_msg("%s: got %s, want %s: %s", file, qtl_errname(rc), want, qtl_st_errmsg(st));
    /* The message names the file. */
    assert_non_null(strstr(qtl_st_errmsg(st), file));
    qtl_st_close(st);

    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *buf = malloc(1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    unsigned char *exact = malloc(n ? n : 1);
    assert_non_null(exact);
    memcpy(exact, buf, n);
    rc = qtl_st_open_memory(exact, n, file, NULL, &st);
    if (strcmp(qtl_errname(rc), want) != 0)
        fail_msg("%s (memory): got %s, want %s: %s", file, qtl_errname(rc), want, qtl_st_errmsg(st));
    qtl_st_close(st);
    free(exact);
    free(buf);
}

static void test_bad_corpus(void **state)
{
    (void)state;
    const char *dir = QTL_TEST_DATA "/bad";
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int count = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        check_one(dir, e->d_name);
        count++;
    }
    closedir(d);
    assert_true(count >= 60); /* the corpus is all there */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bad_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
