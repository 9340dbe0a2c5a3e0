/* A small sharded checkpoint written through qtl's own writer, shared by the
 * checkpoint and OOM tests. Tensors tK hold K+1 I32 values equal to K*100+i. */
#ifndef QTL_CKPT_FIXTURE_H
#define QTL_CKPT_FIXTURE_H

#include "testutil.h"

#include <stdio.h>
#include <string.h>

/* Write shard `file` in dir with tensors first..last (inclusive). */
static inline void fx_shard(const char *dir, const char *file, int first, int last)
{
    qtl_st_writer_t *w;
    assert_int_equal(qtl_st_writer_new(NULL, &w), QTL_OK);
    static int32_t vals[16][16];
    for (int k = first; k <= last; k++) {
        char name[16];
        uint64_t n = (uint64_t)k + 1;
        for (int i = 0; i <= k; i++)
            vals[k][i] = k * 100 + i;
        snprintf(name, sizeof name, "t%d", k);
        assert_int_equal(qtl_st_writer_add(w, name, QTL_DTYPE_I32, 1, &n, vals[k], n * 4), QTL_OK);
    }
    TU_EXPECT(qtl_st_writer_write_file(w, tu_path(dir, file)), QTL_OK, qtl_st_writer_errmsg(w));
    qtl_st_writer_free(w);
}

/* Three shards: t0..t3 in a, t4..t6 in b, t7..t9 in c, with an index. */
static inline void fx_checkpoint(const char *dir)
{
    tu_rm_rf(dir);
    tu_mkdir_p(dir);
    fx_shard(dir, "model-00001-of-00003.safetensors", 0, 3);
    fx_shard(dir, "model-00002-of-00003.safetensors", 4, 6);
    fx_shard(dir, "model-00003-of-00003.safetensors", 7, 9);
    char idx[2048] = "{\"metadata\": {\"total_size\": 220}, \"weight_map\": {";
    for (int k = 0; k < 10; k++) {
        char e[96];
        snprintf(e, sizeof e, "%s\"t%d\": \"model-0000%d-of-00003.safetensors\"", k ? ", " : "", k,
                 k < 4 ? 1 : k < 7 ? 2 : 3);
        strcat(idx, e);
    }
    strcat(idx, "}}\n");
    tu_write(tu_path(dir, "model.safetensors.index.json"), idx, strlen(idx));
}

#endif
