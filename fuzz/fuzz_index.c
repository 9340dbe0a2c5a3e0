/* Fuzz target: bytes = model.safetensors.index.json of a checkpoint directory
 * whose shards are real (a small Llama FP8 fixture written once per process
 * into a tmpfs directory, plus a git-lfs pointer and a truncated shard the
 * index may name). Opens it (the directory, or the index file itself when the
 * input's length is odd), describes and reads every tensor it lists, checks
 * it, walks every finding. Must never crash, leak or read out of bounds. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *setup(void)
{
    static const char *dir;
    if (dir)
        return dir;
    dir = fz_dir("index");
    struct qtl_fixture_options o;
    char msg[512];
    qtl_fixture_defaults(&o);
    o.scheme = "fp8";
    o.layers = 1, o.hidden = 32, o.heads = 2, o.kv_heads = 1, o.head_dim = 16, o.intermediate = 32, o.vocab = 32;
    if (qtl_fixture_write(&o, dir, msg, sizeof msg) != QTL_OK) {
        fprintf(stderr, "fuzz_index: fixture: %s\n", msg);
        abort();
    }
    static const char lfs[] = "version https://git-lfs.github.com/spec/v1\n"
                              "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                              "size 12345\n";
    fz_write(dir, "lfs.safetensors", lfs, sizeof lfs - 1);
    /* the first 100 bytes of a shard: a header that runs past the end */
    char path[1024];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    FILE *f = fopen(path, "rb");
    unsigned char head[100];
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    fz_write(dir, "short.safetensors", head, n);
    /* a one-tensor file also holding a tensor of shard 1 (tensor-duplicate when both are listed) */
    qtl_st_writer_t *w = NULL;
    static const uint16_t vals[32];
    uint64_t shape[1] = {32};
    if (qtl_st_writer_new(NULL, &w) || qtl_st_writer_add(w, "model.norm.weight", QTL_DTYPE_BF16, 1, shape, vals, 64))
        abort();
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (qtl_st_writer_write_file(w, path))
        abort();
    qtl_st_writer_free(w);
    return dir;
}

static void walk_diags(qtl_ckpt_t *ck)
{
    for (size_t i = 0; i < qtl_ckpt_diag_count(ck); i++) {
        struct qtl_diag d;
        enum qtl_finding f;
        if (qtl_ckpt_diag_at(ck, i, &d) || !d.id || qtl_finding_lookup(d.id, &f) || !d.message ||
            (unsigned)d.severity > QTL_SEV_ERROR)
            abort(); /* every recorded finding is describable and in the catalogue */
        fz_touch(d.message, strlen(d.message));
    }
    if (qtl_ckpt_diag_at(ck, qtl_ckpt_diag_count(ck), &(struct qtl_diag){0}) == QTL_OK)
        abort();
}

static void walk_tensors(qtl_ckpt_t *ck)
{
    size_t n = qtl_ckpt_tensor_count(ck);
    for (size_t i = 0; i < n; i++) {
        char name[1024];
        size_t shard, j;
        if (qtl_ckpt_tensor_name(ck, i, name, sizeof name) != QTL_OK)
            abort();
        if (strlen(name) == sizeof name - 1)
            continue; /* maybe cut to the buffer */
        if (qtl_ckpt_tensor_find(ck, name, &j) || j != i)
            abort(); /* every listed tensor is found under its own name */
        if (qtl_ckpt_tensor_shard(ck, i, &shard) || shard >= qtl_ckpt_shard_count(ck))
            abort();
        struct qtl_tensor_info ti;
        if (qtl_ckpt_tensor_at(ck, i, &ti) != QTL_OK)
            continue; /* missing shard or tensor: a finding */
        if (strcmp(ti.name, name) != 0 || !ti.file)
            abort();
        if (ti.nbytes > (1u << 20))
            continue;
        unsigned char *buf = malloc(ti.nbytes ? (size_t)ti.nbytes : 1);
        if (!buf)
            abort();
        if (qtl_ckpt_read_tensor(ck, i, buf, (size_t)ti.nbytes) != QTL_OK)
            abort(); /* a tensor that resolved lies inside its (unchanged) shard */
        uint64_t rows = ti.ndim ? ti.shape[0] : 1;
        if (rows > 1 && ti.nbytes % rows == 0)
            (void)qtl_ckpt_read_block(ck, i, rows - 1, 1, 0, ti.numel / rows, buf, (size_t)(ti.nbytes / rows));
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = setup();
    char path[1024];
    fz_write(dir, "model.safetensors.index.json", data, size);
    if (size % 2)
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    else
        snprintf(path, sizeof path, "%s%s", dir, size % 4 == 2 ? "/" : "");
    struct fz_budget b;
    fz_budget_init(&b, (size_t)64 << 20);
    struct qtl_open_options o = {&b.a, 0};
    qtl_ckpt_t *ck = NULL;
    int rc = qtl_ckpt_open(path, &o, &ck);
    if (!ck) {
        if (rc != QTL_ERR_NOMEM)
            abort(); /* only an allocation failure leaves no handle */
        return 0;
    }
    fz_touch(qtl_ckpt_errmsg(ck), strlen(qtl_ckpt_errmsg(ck)));
    if (rc == QTL_OK) {
        if (!qtl_ckpt_dir(ck) || !qtl_ckpt_index_path(ck))
            abort();
        for (size_t i = 0; i < qtl_ckpt_shard_count(ck); i++) {
            qtl_st_t *st = NULL;
            if (!qtl_ckpt_shard_name(ck, i))
                abort();
            if (qtl_ckpt_shard(ck, i, &st) == QTL_OK && !st)
                abort();
        }
        walk_tensors(ck);
        (void)qtl_ckpt_check(ck);
        walk_diags(ck);
        walk_tensors(ck); /* the check adds tensors the index does not list */
    }
    qtl_ckpt_close(ck);
    if (b.held)
        abort(); /* a closed handle holds nothing */
    return 0;
}
