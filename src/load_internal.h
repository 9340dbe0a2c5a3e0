/* Internal: the per-rank model layout (model.c) and the loader (load.c). */
#ifndef QTL_LOAD_INTERNAL_H
#define QTL_LOAD_INTERNAL_H

#include "internal.h"

/* vLLM parameter classes (parameter.py) plus embeddings and norms. */
enum pkind {
    PK_MODEL_WEIGHT, /* output_dim 0, input_dim 1 (1-D: a column-parallel bias) */
    PK_PER_TENSOR,   /* [L] slots */
    PK_CHANNEL,      /* output_dim 0 only */
    PK_GROUP,        /* output_dim 0, input_dim 1 */
    PK_BLOCK,        /* like GROUP, in block units */
    PK_PACKED_IN,    /* PackedvLLMParameter packed along the input dim (WNA16 weight_packed) */
    PK_PACKED_ZP,    /* PackedvLLMParameter packed along output dim 0 (WNA16 zero points) */
    PK_PACKED_ZP_COL, /* PackedColumnParameter, packed along dim 0, not split on input */
    PK_ROW,          /* RowvLLMParameter (g_idx): input_dim 0 */
    PK_BASE,         /* BasevLLMParameter: whole copy, last write wins */
    PK_VOCAB,        /* VocabParallelEmbedding / ParallelLMHead rows */
    PK_REPLICATED    /* norms */
};

enum lkind { LK_QKV, LK_MERGED, LK_ROW };

struct llayer {
    char prefix[160];
    enum lkind kind;
    struct qtl_layer_quant q;
    int L;
    uint64_t full[3]; /* vLLM output_sizes (QKV: virtual sizes) */
    uint64_t part[3]; /* per-rank partition sizes n_i */
    uint64_t in_full, in_pp;
};

struct lparam {
    char name[192];
    enum pkind kind;
    enum qtl_dtype dtype;
    uint32_t ndim;
    uint64_t shape[2];
    int layer; /* owning linear layer, -1 for embeddings and norms */
    int is_scale, allow_zero, fill_f32_min;
    uint32_t block_n, pack;
    unsigned char *data;
    uint64_t nbytes;
    uint32_t *written; /* write count per unit (rows, slots, or 1 unit for whole params) */
    uint64_t nunits;
    char first_src[192]; /* first checkpoint tensor written into it */
    int differs;         /* whole-overwrite params: a later write changed the value */
    int blocked;         /* a tensor meant for it lives in a shard that could not be read */
};

struct lmodel {
    qtl_config_t *cfg;
    struct qtl_model_shape shape;
    struct qtl_err *err;
    uint32_t tp, rank;
    uint32_t nh, nkv, replicas;
    uint64_t vocab_pp;
    struct llayer *layers;
    size_t nlayers, lcap;
    struct lparam *params;
    size_t nparams, cap;
    const char *fail_id; /* finding ID of a layout failure (tp.heads, tp.block, ...) */
};

#define SHARD_NONE (-1)
enum { MAP_PARAM = 0, MAP_SKIP = 1, MAP_KV_SCALE = 2 };

int qtl__model_build(struct lmodel *m);
/* Append a zeroed parameter (pointers into m->params move). NULL: out of memory. */
struct lparam *qtl__model_grow(struct lmodel *m);
int qtl__model_map(const struct lmodel *m, const char *name, char *param, size_t cap, int *shard);
/* Stage "processed" in place (postload.c); *slots_differ: a per-slot scale
 * vector reduced with max had different values (vLLM warns). */
int qtl__model_process(struct lmodel *m, int *slots_differ);
/* requantize_with_max_scale on one sub-matrix (exposed for tests through qtl.h). */
void qtl__requant_fp8(uint8_t *w, uint64_t rows, uint64_t cols, float s_i, float s_max);

#endif
