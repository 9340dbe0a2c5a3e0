/* qtl load CKPT --tp T --plan [--json]: the rank's plan as qtl_load_open built
 * it, before any tensor byte is read — per file the byte ranges the ops read
 * (neighbours merged) and their bytes, per parameter its ops. Only prints. */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct range {
    uint64_t start, end;
};

static int cmp_range(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The merged byte ranges of file f that the plan reads (each op's first to last byte). */
static size_t file_ranges(const qtl_load_t *l, size_t f, struct range **out, uint64_t *bytes)
{
    size_t n = 0, nops = qtl_load_op_count(l);
    struct range *r = malloc((nops ? nops : 1) * sizeof *r);
    *bytes = 0;
    for (size_t i = 0; r && i < nops; i++) {
        struct qtl_copy_op op;
        qtl_load_op_at(l, i, &op);
        if (op.file != f)
            continue;
        r[n++] = (struct range){op.src_offset, op.src_offset + (op.rows - 1) * op.src_pitch + op.row_bytes};
        *bytes += op.rows * op.row_bytes;
    }
    if (r && n)
        qsort(r, n, sizeof *r, cmp_range);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && r[i].start <= r[k - 1].end)
            r[k - 1].end = r[i].end > r[k - 1].end ? r[i].end : r[k - 1].end;
        else
            r[k++] = r[i];
    }
    *out = r;
    return k;
}

static json_t *op_json(const struct qtl_copy_op *op)
{
    json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "tensor",
                          cli_json_str(op->tensor ? op->tensor : ""), "file", cli_json_u64(op->file), "src_offset",
                          cli_json_u64(op->src_offset), "rows", cli_json_u64(op->rows), "row_bytes",
                          cli_json_u64(op->row_bytes), "src_pitch", cli_json_u64(op->src_pitch), "dst_offset",
                          cli_json_u64(op->dst_offset), "dst_pitch", cli_json_u64(op->dst_pitch));
    if (op->slot >= 0)
        json_object_set_new(o, "slot", json_integer(op->slot));
    if (op->src_dtype != op->dst_dtype)
        json_object_set_new(o, "convert_from", json_string(qtl_dtype_name(op->src_dtype)));
    if (op->superseded)
        json_object_set_new(o, "superseded", json_true());
    return o;
}

static json_t *plan_json(const qtl_load_t *l, uint32_t rank, uint32_t tp)
{
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)qtl_load_plan_hash(l));
    json_t *files = json_array(), *params = json_array();
    for (size_t f = 0; f < qtl_load_file_count(l); f++) {
        uint64_t size, bytes;
        const char *path = qtl_load_file_at(l, f, &size);
        struct range *r;
        size_t n = file_ranges(l, f, &r, &bytes);
        json_t *ranges = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(ranges, json_pack("[o, o]", cli_json_u64(r[i].start), cli_json_u64(r[i].end)));
        free(r);
        json_array_append_new(files, json_pack("{s:o, s:o, s:o, s:o}", "path", cli_json_str(path), "size",
                                               cli_json_u64(size), "bytes", cli_json_u64(bytes), "ranges", ranges));
    }
    for (size_t p = 0; p < qtl_load_param_count(l); p++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, p, &pi);
        json_t *shape = json_array(), *ops = json_array();
        for (uint32_t d = 0; d < pi.ndim; d++)
            json_array_append_new(shape, cli_json_u64(pi.shape[d]));
        for (size_t i = 0; i < qtl_load_op_count(l); i++) {
            struct qtl_copy_op op;
            qtl_load_op_at(l, i, &op);
            if (op.param == p)
                json_array_append_new(ops, op_json(&op));
        }
        json_array_append_new(params, json_pack("{s:o, s:o, s:s, s:o, s:o, s:o}", "name", cli_json_str(pi.name),
                                                "class", cli_json_str(pi.kind), "dtype", qtl_dtype_name(pi.dtype),
                                                "shape", shape, "bytes", cli_json_u64(pi.nbytes), "ops", ops));
    }
    return json_pack("{s:I, s:I, s:s, s:o, s:o, s:o, s:o}", "rank", (json_int_t)rank, "tp", (json_int_t)tp,
                     "plan_hash", hash, "ops", cli_json_u64(qtl_load_op_count(l)), "bytes_to_read",
                     cli_json_u64(qtl_load_bytes_to_read(l)), "files", files, "parameters", params);
}

static void plan_text(const qtl_load_t *l, uint32_t rank, uint32_t tp)
{
    printf("plan rank %u/%u: %zu parameters, %zu ops, %zu files, %.1f MB to read, plan hash %016llx\n", rank, tp,
           qtl_load_param_count(l), qtl_load_op_count(l), qtl_load_file_count(l),
           (double)qtl_load_bytes_to_read(l) / 1e6, (unsigned long long)qtl_load_plan_hash(l));
    for (size_t f = 0; f < qtl_load_file_count(l); f++) {
        uint64_t size, bytes;
        const char *path = qtl_load_file_at(l, f, &size);
        struct range *r;
        size_t n = file_ranges(l, f, &r, &bytes);
        printf("file %zu %s (%llu bytes): %llu bytes in %zu range(s)\n", f, path, (unsigned long long)size,
               (unsigned long long)bytes, n);
        for (size_t i = 0; i < n; i++)
            printf("  [%llu, %llu)\n", (unsigned long long)r[i].start, (unsigned long long)r[i].end);
        free(r);
    }
    for (size_t p = 0; p < qtl_load_param_count(l); p++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, p, &pi);
        printf("param %s %s [", pi.name, qtl_dtype_name(pi.dtype));
        for (uint32_t d = 0; d < pi.ndim; d++)
            printf("%s%llu", d ? ", " : "", (unsigned long long)pi.shape[d]);
        printf("] %s, %llu bytes\n", pi.kind, (unsigned long long)pi.nbytes);
        for (size_t i = 0; i < qtl_load_op_count(l); i++) {
            struct qtl_copy_op op;
            qtl_load_op_at(l, i, &op);
            if (op.param != p)
                continue;
            printf("  <- '%s' file %zu @%llu: %llu x %llu B, pitch %llu -> @%llu", op.tensor ? op.tensor : "?",
                   op.file, (unsigned long long)op.src_offset, (unsigned long long)op.rows,
                   (unsigned long long)op.row_bytes, (unsigned long long)op.src_pitch,
                   (unsigned long long)op.dst_offset);
            if (op.slot >= 0)
                printf(" slot %d", op.slot);
            if (op.src_dtype != op.dst_dtype)
                printf(" from %s", qtl_dtype_name(op.src_dtype));
            printf("%s\n", op.superseded ? " (superseded: vLLM keeps a later write)" : "");
        }
    }
}

int cli_print_plan(const qtl_load_t *l, uint32_t rank, uint32_t tp, int json, int first)
{
    if (!json) {
        plan_text(l, rank, tp);
        return 0;
    }
    printf("%s", first ? "" : ",\n");
    return cli_json_dump(plan_json(l, rank, tp), JSON_COMPACT); /* a 70B plan has tens of thousands of ops */
}
