/* The finding catalogue (QTL_FINDING_MAP): well-formed unique IDs, lookup,
 * docs/verify-json.md listing exactly the catalogue, and no ID spelled as a
 * literal in the code that names findings through the enum. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Code converted to qtl_finding_id(QTL_FINDING_...): files, or directories whose
 * .c/.h files are all checked. Add a path here once its literals are converted. */
static const char *const converted[] = {"src/format/ckpt.c", "src/load/plan.c", "src/load/load.c",
                                        "src/load/model.c", "tools"};

static const char *const sev_names[] = {[QTL_SEV_INFO] = "info", [QTL_SEV_WARNING] = "warning",
                                        [QTL_SEV_ERROR] = "error"};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Lowercase words joined by single dots or dashes: "tensor.shape", "shard-missing". */
static int well_formed(const char *id)
{
    size_t n = strlen(id);
    if (!n || !strchr("abcdefghijklmnopqrstuvwxyz", id[0]) || id[n - 1] == '.' || id[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        int sep = id[i] == '.' || id[i] == '-';
        if (!(sep || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
            return 0;
        if (sep && (id[i + 1] == '.' || id[i + 1] == '-'))
            return 0;
    }
    return 1;
}

static void test_table(void **state)
{
    (void)state;
    assert_true(QTL_FINDING_COUNT > 30);
    for (int f = 0; f < QTL_FINDING_COUNT; f++) {
        const char *id = qtl_finding_id((enum qtl_finding)f), *doc = qtl_finding_doc((enum qtl_finding)f);
        assert_non_null(id);
        if (!well_formed(id))
            fail_msg("finding %d: ID '%s' is not lowercase words joined by '.' or '-'", f, id);
        assert_non_null(doc);
        assert_true(doc[0] != '\0');
        assert_true(qtl_finding_severity((enum qtl_finding)f) <= QTL_SEV_ERROR);
        for (int k = 0; k < f; k++)
            if (!strcmp(id, qtl_finding_id((enum qtl_finding)k)))
                fail_msg("ID '%s' is in the table twice (%d and %d)", id, k, f);
    }
    assert_null(qtl_finding_id(QTL_FINDING_COUNT));
    assert_null(qtl_finding_doc(QTL_FINDING_COUNT));
    assert_int_equal(qtl_finding_severity(QTL_FINDING_COUNT), QTL_SEV_ERROR);
}

static void test_lookup(void **state)
{
    (void)state;
    for (int f = 0; f < QTL_FINDING_COUNT; f++) {
        enum qtl_finding got = QTL_FINDING_COUNT;
        assert_int_equal(qtl_finding_lookup(qtl_finding_id((enum qtl_finding)f), &got), QTL_OK);
        assert_int_equal(got, f);
    }
    /* IDs other code and scripts spell: pinned, with the severities the code reports */
    static const struct {
        enum qtl_finding f;
        const char *id;
        enum qtl_severity sev;
    } pinned[] = {{QTL_FINDING_TENSOR_SHAPE, "tensor.shape", QTL_SEV_ERROR},
                  {QTL_FINDING_SHARD_MISSING, "shard-missing", QTL_SEV_ERROR},
                  {QTL_FINDING_TENSOR_NOT_IN_INDEX, "tensor-not-in-index", QTL_SEV_WARNING},
                  {QTL_FINDING_PARAM_OVERWRITE_DIFFERS, "param.overwrite-differs", QTL_SEV_WARNING},
                  {QTL_FINDING_SCALE_SLOTS_DIFFER, "scale.slots-differ", QTL_SEV_WARNING},
                  {QTL_FINDING_CONSEQUENCE, "consequence", QTL_SEV_INFO},
                  {QTL_FINDING_TP_KV_REPLICATED, "tp.kv-replicated", QTL_SEV_INFO},
                  {QTL_FINDING_FILE_CHANGED, "file.changed", QTL_SEV_ERROR}};
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        assert_string_equal(qtl_finding_id(pinned[i].f), pinned[i].id);
        assert_int_equal(qtl_finding_severity(pinned[i].f), pinned[i].sev);
    }
    enum qtl_finding f;
    static const char *const unknown[] = {"", "tensor", "Tensor.shape", "tensor.shape ", "tensor.shapes"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        assert_int_equal(qtl_finding_lookup(unknown[i], &f), QTL_ERR_INVALID_ARGUMENT);
    assert_int_equal(qtl_finding_lookup(NULL, &f), QTL_ERR_INVALID_ARGUMENT);
}

/* One row of the doc's table: "| `id` | severity | meaning |". @return 1 and the cells, 0 for other lines. */
static int doc_row(const char *line, char *id, size_t idcap, char *sev, size_t sevcap)
{
    const char *a = line, *b;
    if (strncmp(a, "| `", 3))
        return 0;
    a += 3;
    if (!(b = strchr(a, '`')) || (size_t)(b - a) >= idcap)
        fail_msg("docs/verify-json.md: bad ID cell in: %.80s", line);
    snprintf(id, idcap, "%.*s", (int)(b - a), a);
    if (!(a = strchr(b, '|')))
        fail_msg("docs/verify-json.md: no severity cell in: %.80s", line);
    a += strspn(a + 1, " ") + 1;
    b = a + strcspn(a, " |");
    snprintf(sev, sevcap, "%.*s", (int)(b - a), a);
    return 1;
}

/* The "## Finding IDs" table holds every catalogue ID once, with its default severity. */
static void test_doc(void **state)
{
    (void)state;
    char *doc = slurp(QTL_SOURCE_DIR "/docs/verify-json.md");
    char *at = strstr(doc, "\n## Finding IDs\n");
    if (!at)
        fail_msg("docs/verify-json.md has no '## Finding IDs' section");
    int seen[QTL_FINDING_COUNT] = {0}, rows = 0;
    for (char *line = strchr(at + 1, '\n') + 1; line && *line && strncmp(line, "#", 1);) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char id[64], sev[16];
        enum qtl_finding f;
        if (doc_row(line, id, sizeof id, sev, sizeof sev)) {
            rows++;
            if (qtl_finding_lookup(id, &f) != QTL_OK)
                fail_msg("docs/verify-json.md lists '%s', which QTL_FINDING_MAP does not have", id);
            if (seen[f]++)
                fail_msg("docs/verify-json.md lists '%s' twice", id);
            if (strcmp(sev, sev_names[qtl_finding_severity(f)]))
                fail_msg("docs/verify-json.md: '%s' is %s there, %s in QTL_FINDING_MAP", id, sev,
                         sev_names[qtl_finding_severity(f)]);
        }
        line = nl ? nl + 1 : NULL;
    }
    for (int f = 0; f < QTL_FINDING_COUNT; f++)
        if (!seen[f])
            fail_msg("'%s' is in QTL_FINDING_MAP but not in docs/verify-json.md's Finding IDs table",
                     qtl_finding_id((enum qtl_finding)f));
    assert_int_equal(rows, QTL_FINDING_COUNT);
    free(doc);
}

/* @return how many catalogue IDs `path` spells as a string literal (each reported). */
static int literals_in_file(const char *path)
{
    char *text = slurp(path);
    int hits = 0;
    for (int f = 0; f < QTL_FINDING_COUNT; f++) {
        char quoted[80];
        snprintf(quoted, sizeof quoted, "\"%s\"", qtl_finding_id((enum qtl_finding)f));
        for (const char *p = strstr(text, quoted); p; p = strstr(p + 1, quoted)) {
            int line = 1;
            for (const char *q = text; q < p; q++)
                line += *q == '\n';
            fprintf(stderr, "%s:%d: literal %s: use qtl_finding_id(QTL_FINDING_...)\n", path, line, quoted);
            hits++;
        }
    }
    free(text);
    return hits;
}

static int is_source(const char *name)
{
    size_t n = strlen(name);
    return n > 2 && name[n - 2] == '.' && (name[n - 1] == 'c' || name[n - 1] == 'h');
}

static void test_no_literals(void **state)
{
    (void)state;
    int hits = 0;
    for (size_t i = 0; i < sizeof converted / sizeof converted[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", QTL_SOURCE_DIR, converted[i]);
        DIR *d = opendir(path);
        if (!d) {
            hits += literals_in_file(path);
            continue;
        }
        for (struct dirent *e; (e = readdir(d));)
            if (is_source(e->d_name)) {
                char file[2048];
                snprintf(file, sizeof file, "%s/%s", path, e->d_name);
                hits += literals_in_file(file);
            }
        closedir(d);
    }
    if (hits)
        fail_msg("%d finding-ID literal(s) in converted code (listed above)", hits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_doc),
        cmocka_unit_test(test_no_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
