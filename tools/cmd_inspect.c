/* qtl inspect PATH [--json]: tensors, metadata, totals and findings. */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct row {
    struct qtl_tensor_info ti;
    size_t shard;
};

static int cmp_row(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return x->ti.begin < y->ti.begin ? -1 : x->ti.begin > y->ti.begin;
}

static void shape_str(const struct qtl_tensor_info *ti, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < ti->ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? ", " : "", (unsigned long long)ti->shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static const char *sev_name(enum qtl_severity s)
{
    return s == QTL_SEV_ERROR ? "error" : s == QTL_SEV_WARNING ? "warning" : "info";
}

static void print_text(qtl_ckpt_t *ck, const char *path, struct row *rows, size_t n)
{
    size_t ns = qtl_ckpt_shard_count(ck);
    printf("checkpoint %s: %zu file(s)%s%s\n", path, ns, qtl_ckpt_index_path(ck) ? ", index " : "",
           qtl_ckpt_index_path(ck) ? qtl_ckpt_index_path(ck) : "");
    for (size_t s = 0; s < ns; s++) {
        qtl_st_t *st;
        if (qtl_ckpt_shard(ck, s, &st))
            continue;
        printf("  %s: %llu bytes, header %llu bytes, %zu tensors", qtl_ckpt_shard_name(ck, s),
               (unsigned long long)qtl_st_file_size(st), (unsigned long long)qtl_st_header_size(st),
               qtl_st_tensor_count(st));
        for (size_t m = 0; m < qtl_st_metadata_count(st); m++) {
            const char *k, *v;
            qtl_st_metadata_at(st, m, &k, &v);
            printf("%s%s=%.200s%s", m ? ", " : "; metadata: ", k, v, strlen(v) > 200 ? "..." : "");
        }
        printf("\n");
    }
    int wn = 4, wd = 5, ws = 5, wf = 4;
    char shp[256];
    for (size_t i = 0; i < n; i++) {
        shape_str(&rows[i].ti, shp, sizeof shp);
        int l = (int)strlen(rows[i].ti.name);
        wn = l > wn ? l : wn;
        l = (int)strlen(qtl_dtype_name(rows[i].ti.dtype));
        wd = l > wd ? l : wd;
        l = (int)strlen(shp);
        ws = l > ws ? l : ws;
        l = (int)strlen(qtl_ckpt_shard_name(ck, rows[i].shard));
        wf = l > wf ? l : wf;
    }
    printf("\n%-*s  %-*s  %-*s  %14s  %-*s  %s\n", wn, "name", wd, "dtype", ws, "shape", "bytes", wf, "file",
           "data_offsets");
    unsigned long long total = 0;
    size_t per_dtype[QTL_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        const struct qtl_tensor_info *ti = &rows[i].ti;
        shape_str(ti, shp, sizeof shp);
        printf("%-*s  %-*s  %-*s  %14llu  %-*s  [%llu, %llu]\n", wn, ti->name, wd, qtl_dtype_name(ti->dtype), ws,
               shp, (unsigned long long)ti->nbytes, wf, qtl_ckpt_shard_name(ck, rows[i].shard),
               (unsigned long long)ti->begin, (unsigned long long)ti->end);
        total += ti->nbytes;
        per_dtype[ti->dtype]++;
    }
    printf("\ntotal: %zu tensors, %llu bytes (%.3f GB) in %zu file(s); dtypes:", n, total, (double)total / 1e9, ns);
    for (int d = QTL_DTYPE_COUNT - 1; d >= 0; d--)
        if (per_dtype[d])
            printf(" %s x %zu", qtl_dtype_name((enum qtl_dtype)d), per_dtype[d]);
    printf("\n");
    for (size_t i = 0; i < qtl_ckpt_diag_count(ck); i++) {
        struct qtl_diag d;
        qtl_ckpt_diag_at(ck, i, &d);
        printf("%s [%s]: %s\n", sev_name(d.severity), d.id, d.message);
    }
}

static int print_json(qtl_ckpt_t *ck, const char *path, struct row *rows, size_t n)
{
    json_t *root = json_object(), *shards = json_array(), *tensors = json_array(), *findings = json_array();
    json_object_set_new(root, "path", cli_json_str(path));
    json_object_set_new(root, "index", cli_json_str(qtl_ckpt_index_path(ck))); /* null without one */
    uint64_t total = 0;
    for (size_t s = 0; s < qtl_ckpt_shard_count(ck); s++) {
        qtl_st_t *st;
        json_t *o = json_object();
        json_object_set_new(o, "file", cli_json_str(qtl_ckpt_shard_name(ck, s)));
        if (qtl_ckpt_shard(ck, s, &st) == QTL_OK) {
            json_t *meta = json_object();
            for (size_t m = 0; m < qtl_st_metadata_count(st); m++) {
                const char *k, *v;
                qtl_st_metadata_at(st, m, &k, &v);
                cli_json_set(meta, k, cli_json_str(v));
            }
            json_object_set_new(o, "size", cli_json_u64(qtl_st_file_size(st)));
            json_object_set_new(o, "header_size", cli_json_u64(qtl_st_header_size(st)));
            json_object_set_new(o, "tensors", cli_json_u64(qtl_st_tensor_count(st)));
            json_object_set_new(o, "metadata", meta);
        } else {
            json_object_set_new(o, "error", cli_json_str(qtl_ckpt_errmsg(ck)));
        }
        json_array_append_new(shards, o);
    }
    for (size_t i = 0; i < n; i++) {
        const struct qtl_tensor_info *ti = &rows[i].ti;
        json_t *o = json_object(), *shape = json_array();
        for (uint32_t d = 0; d < ti->ndim; d++)
            json_array_append_new(shape, cli_json_u64(ti->shape[d]));
        json_object_set_new(o, "name", cli_json_str(ti->name));
        json_object_set_new(o, "dtype", json_string(qtl_dtype_name(ti->dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "bytes", cli_json_u64(ti->nbytes));
        json_object_set_new(o, "file", cli_json_str(qtl_ckpt_shard_name(ck, rows[i].shard)));
        json_object_set_new(o, "data_offsets", json_pack("[o, o]", cli_json_u64(ti->begin), cli_json_u64(ti->end)));
        json_object_set_new(o, "file_offset", cli_json_u64(ti->file_offset));
        json_array_append_new(tensors, o);
        total += ti->nbytes;
    }
    for (size_t i = 0; i < qtl_ckpt_diag_count(ck); i++) {
        struct qtl_diag d;
        qtl_ckpt_diag_at(ck, i, &d);
        json_array_append_new(findings, json_pack("{s:s, s:o, s:s, s:o, s:o, s:o}", "severity", sev_name(d.severity),
                                                  "id", cli_json_str(d.id), "status", qtl_errname(d.code), "file",
                                                  cli_json_str(d.file), "tensor", cli_json_str(d.tensor), "message",
                                                  cli_json_str(d.message)));
    }
    json_object_set_new(root, "files", shards);
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "totals", json_pack("{s:o, s:o, s:o}", "tensors", cli_json_u64(n), "bytes",
                                                  cli_json_u64(total), "files",
                                                  cli_json_u64(qtl_ckpt_shard_count(ck))));
    json_object_set_new(root, "findings", findings);
    int rc = cli_json_dump(root, JSON_INDENT(2));
    printf("\n");
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: qtl inspect PATH [--json]\n"
                   "  PATH: a .safetensors file, a checkpoint directory, or its index.json.\n"
                   "  Lists every tensor (name, dtype, shape, bytes, file, data_offsets), each file's\n"
                   "  header metadata, totals, and findings (errors and warnings).\n");
            return CLI_OK;
        } else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path)
            return cli_usage_error("inspect", "more than one PATH");
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage_error("inspect", "missing PATH (see qtl inspect --help)");
    qtl_ckpt_t *ck = NULL;
    int rc = qtl_ckpt_open(path, NULL, &ck);
    if (rc) {
        fprintf(stderr, "qtl inspect: error [%s]: %s\n", qtl_errname(rc), qtl_ckpt_errmsg(ck));
        qtl_ckpt_close(ck);
        return CLI_USAGE;
    }
    int errors = qtl_ckpt_check(ck) == QTL_ERR_NOMEM ? -1 : 0;
    size_t n = qtl_ckpt_tensor_count(ck), m = 0;
    struct row *rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows || errors < 0) {
        fprintf(stderr, "qtl inspect: out of memory\n");
        free(rows);
        qtl_ckpt_close(ck);
        return CLI_FINDINGS;
    }
    for (size_t i = 0; i < n; i++) {
        if (qtl_ckpt_tensor_at(ck, i, &rows[m].ti) != QTL_OK)
            continue; /* its shard's finding is reported */
        qtl_ckpt_tensor_shard(ck, i, &rows[m].shard);
        m++;
    }
    qsort(rows, m, sizeof *rows, cmp_row);
    for (size_t i = 0; i < qtl_ckpt_diag_count(ck); i++) {
        struct qtl_diag d;
        qtl_ckpt_diag_at(ck, i, &d);
        errors += d.severity == QTL_SEV_ERROR;
    }
    int out_rc = 0; /* -1: the JSON could not be built (out of memory) */
    if (json)
        out_rc = print_json(ck, path, rows, m);
    else
        print_text(ck, path, rows, m);
    if (errors)
        fprintf(stderr, "qtl inspect: %d error(s) in %s\n", errors, path);
    free(rows);
    qtl_ckpt_close(ck);
    return errors || out_rc ? CLI_FINDINGS : CLI_OK;
}
