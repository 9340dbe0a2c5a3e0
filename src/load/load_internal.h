/* Internal: the per-rank model layout (model.c) and the loader (load.c). */
#ifndef QTL_LOAD_INTERNAL_H
#define QTL_LOAD_INTERNAL_H

#include "internal.h"
#include "exec.h"

#define QTL_NO_EXPERT UINT32_MAX
#define QTL_PARAM_DIMS 4

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
    PK_REPLICATED,   /* norms, MoE routers */
    PK_MOE_SLOT,     /* per-expert per-tensor slots: w13 [E_l, 2] (w1, w3), w2 [E_l] */
    PK_MOE_SINGLE    /* per-expert one value w1 and w3 both write (input_scale [E_l]): last wins */
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
    char modules[3][160]; /* the checkpoint modules it loads from: q/k/v, gate/up, or itself */
    const char *module_ptr[3];
    size_t nmodules;
};

struct lparam {
    char name[192];
    enum pkind kind;
    enum qtl_dtype dtype;
    uint32_t ndim;                /* 0..QTL_PARAM_DIMS; an expert axis comes first */
    uint64_t shape[QTL_PARAM_DIMS];
    int layer; /* owning linear layer, -1 for embeddings and norms */
    int is_scale, allow_zero, fill_f32_min;
    uint32_t block_n, pack;
    unsigned char *data; /* NULL until qtl_load_run (and for parameters the read level skips) */
    uint64_t nbytes;
    int owned;           /* data allocated for this parameter alone (post-processing results) */
    int read;            /* the read level reads it */
    uint64_t offset;     /* in the rank's arena */
    long last_op;
    uint64_t pad_from;   /* bytes from here on are zero padding (vocab rows past vocab_size) */
    int missing;         /* some unit never written (found on the plan) */        /* whole-overwrite parameters: the op that wins (-1: none yet) */
    uint32_t *written; /* write count per unit (rows, slots, or 1 unit for whole params), counted on the plan */
    uint64_t nunits;
    char first_src[192]; /* first checkpoint tensor written into it */
    int differs;         /* whole-overwrite params: a later write changed the value */
    int blocked;         /* a tensor meant for it lives in a shard that could not be read */
    int moe;             /* 1 + index of its MoE layer (0: not an expert parameter) */
    int moe_w13;         /* w13_* (else w2_*) */
    int fill_ones;       /* torch.ones: F32 1.0 before any write */
    int unused;          /* created by vLLM, read by none of the scheme's kernels, never written */
    long *unit_op;       /* PK_MOE_SINGLE: the op that last wrote each unit (-1: none) */
};

/* A layer's routed experts (moe.c). */
struct moe_layer {
    char prefix[160]; /* model.layers.L.<block> */
    struct qtl_layer_quant q;
    uint32_t layer;
};

struct lmodel {
    const struct qtl_alloc *al;
    qtl_config_t *cfg;
    struct qtl_model_shape shape;
    struct qtl_err *err;
    uint32_t tp, rank;
    uint32_t pp, pp_rank, layer_start, layer_end; /* this stage's decoder layers [start, end) */
    int first_stage, last_stage;
    int skip_layer;       /* model build: a layer of another stage (only hashed) */
    uint64_t scheme_hash; /* every layer's scheme, whichever stage holds it */
    uint32_t nh, nkv, replicas;
    uint64_t vocab_pp;
    int ep;                              /* enable_expert_parallel */
    uint32_t e_local, e_start;           /* this rank's experts [e_start, e_start + e_local) */
    uint32_t moe_tp, moe_rank;           /* the experts' tp split (1, 0 with EP) */
    struct moe_layer *moe;
    size_t nmoe, moecap;
    struct llayer *layers;
    size_t nlayers, lcap;
    struct lparam *params;
    size_t nparams, cap;
    const char *fail_id; /* finding ID of a layout failure (tp.heads, tp.block, ...) */
    /* partition rules that fail, one entry per (rule, layer kind, partition), all reported */
    struct layout_fail {
        enum qtl_finding id;
        char kind[160], what[64];
        uint64_t a, b;
        uint32_t first, last;
    } lfail[8];
    size_t nlfail;
};

#define SHARD_NONE (-1)
enum { MAP_PARAM = 0, MAP_SKIP = 1, MAP_KV_SCALE = 2 };

/* A planned copy: bytes of one checkpoint tensor into one parameter (or, for a
 * superseded whole-overwrite write, into the shadow area where its value is
 * kept only to compare with the winner's). */
struct pop {
    uint32_t tensor; /* checkpoint tensor index (pre-sharded: index in that file) */
    uint32_t file;   /* plan file index */
    uint32_t param;
    uint32_t expert; /* QTL_NO_EXPERT for dense layers */
    int32_t slot;    /* per-tensor scale slot, -1 otherwise */
    enum qtl_dtype src_dtype;
    uint64_t src_off, rows, row_bytes, src_pitch;
    uint64_t dst_off, dst_pitch; /* in the parameter, or in the shadow area when superseded */
    int superseded;
    uint64_t cmp_off; /* superseded: where in the parameter the winner's bytes are */
};

/* vLLM's sharded_state keys no qtl parameter holds (sharded.c). */
int qtl__vllm_only_key(const char *name);

/* Folds one linear layer's prefix and scheme into a plan hash (plan.c). */
uint64_t qtl__hash_layer(uint64_t h, const char *prefix, const struct qtl_layer_quant *q);

struct pfile {
    char *path;
    uint64_t size;
};

/* The load handle: the plan (files, parameters, ops, plan findings), then what
 * executing it produced. plan.c builds the first half, load.c the second. */
struct qtl_load {
    struct qtl_alloc al;
    struct qtl_err err;
    qtl_ckpt_t *ck;
    qtl_config_t *cfg;
    struct lmodel m;
    struct qtl_findings f;
    const char *const *allow;
    size_t nallow;
    void (*progress)(void *, size_t, size_t);
    void (*progress_bytes)(void *, uint64_t, uint64_t);
    void *progress_ud;
    int verify;
    const char *pp_partition;
    unsigned threads;
    int direct;
    /* the plan */
    struct pfile *files;
    size_t nfiles, files_cap;
    struct pop *ops;
    size_t nops, ops_cap;
    uint64_t shadow_bytes, hash;
    /* execution */
    void *user_base; /* qtl_load_set_buffer */
    size_t user_size;
    void **bound;    /* qtl_load_bind: per parameter, NULL when in the arena */
    size_t nbound;
    struct qtl_arena *arena;
    unsigned char *shadow;
    uint64_t bytes_read;
    size_t fallbacks;
    double seconds, process_seconds;
    int planned, ran, processed;
    qtl_st_t *pre;  /* pre-sharded checkpoint: this rank's model-rank-R-part-0.safetensors */
    qtl_st_t *pre_part[256]; /* its parts (pre_part[0] == pre) */
    size_t npre;
    int pre_vllm;            /* written for vLLM's sharded_state (qtl.for = vllm) */
    int pre_processed;
};

/* ---- findings (load.c) ---- */
/* A finding at the catalogue's severity (QTL_FINDING_MAP), an error downgraded
 * to a warning when the caller allows its ID. */
int qtl__finding(qtl_load_t *l, int code, enum qtl_finding f, const char *file, const char *tensor, const char *fmt,
                 ...) QTL_PRINTF(6, 7);

/* ---- the plan (plan.c) ---- */
/* Everything vLLM's weight_loader calls would do, as ops, with coverage, shape,
 * dtype and last-write-wins resolved and findings recorded; no tensor data read. */
int qtl__plan_build(qtl_load_t *l);
/* The same for a pre-sharded file: every parameter from the tensor of its name. */
int qtl__plan_presharded(qtl_load_t *l);
/* Scale values and overwrite comparisons once the data is there. */
void qtl__plan_value_checks(qtl_load_t *l);
/* Element count and bytes of a parameter. */
uint64_t qtl__param_numel(const struct lparam *p);
struct lparam *qtl__find_param(qtl_load_t *l, const char *name);
/* The checkpoint's name of the tensor an op reads. */
const char *qtl__op_tensor(const qtl_load_t *l, const struct pop *o);

/* ---- the layer-scheme catalogue (scheme.c) ---- */
/* A parameter's shape from its layer: N rows and K columns of the rank. */
enum pshape {
    SH_NK,              /* [N, K] */
    SH_SLOTS,           /* [L]: one slot per logical sub-matrix */
    SH_BLOCKS,          /* [ceil(N / block0), ceil(K / block1)] */
    SH_N1,              /* [N, 1] */
    SH_ONE,             /* [1] */
    SH_TWO,             /* [2] */
    SH_K,               /* [K] */
    SH_N_HALF_K,        /* [N, K / 2]: two FP4 codes a byte */
    SH_N_K16,           /* [N, K / 16]: one scale per NVFP4 group */
    SH_N_PACKED_K,      /* [N, K / pack], pack = 32 / bits */
    SH_N_GROUPS,        /* [N, groups] (WNA16) */
    SH_PACKED_N_GROUPS  /* [N / pack, groups] (WNA16 zero points) */
};
/* When a scheme's parameter exists. */
enum pwhen { PW_ALWAYS, PW_STATIC_INPUT, PW_STATIC_ASYM_INPUT, PW_ASYM_WEIGHTS, PW_ACTORDER };
enum { PF_F32_MIN = 1, PF_ALLOW_ZERO = 2, PF_PACKED = 4 };
/* The divisibility rule a scheme's create_weights asserts for tp > 1. */
enum tp_check { TPC_NONE, TPC_BLOCK, TPC_NVFP4, TPC_WNA16 };
struct prule {
    const char *suffix;
    enum pkind kind;
    enum qtl_dtype dtype; /* QTL_DTYPE_COUNT: the model's params_dtype */
    enum pshape shape;
    enum pwhen when;
    unsigned flags;
    enum pkind kind_unpartitioned; /* WNA16 layers not split on the input */
};
struct scheme_traits {
    struct prule params[6]; /* ends at a NULL suffix */
    enum tp_check tp_check;
    /* process_weights_after_loading (postload.c); NULL: kept as loaded */
    int (*process)(struct lmodel *m, const struct llayer *ly, int *slots_differ);
};
/* NULL for a scheme qtl does not load. */
const struct scheme_traits *qtl__scheme(enum qtl_layer_scheme s);
int qtl__process_fp8_tensor(struct lmodel *m, const struct llayer *ly, int *slots_differ);
int qtl__process_int8(struct lmodel *m, const struct llayer *ly, int *slots_differ);
int qtl__process_ct_nvfp4(struct lmodel *m, const struct llayer *ly, int *slots_differ);
int qtl__process_modelopt_nvfp4(struct lmodel *m, const struct llayer *ly, int *slots_differ);

int qtl__model_build(struct lmodel *m);
/* MoE (moe.c): the expert placement, one layer's router and experts, expert tensor names. */
void qtl__moe_layout(struct lmodel *m);
int qtl__moe_layer(struct lmodel *m, uint32_t li);
int qtl__moe_map(const struct lmodel *m, const char *name, char *param, size_t cap, int *shard, uint32_t *expert);
/* Append a zeroed parameter (pointers into m->params move). NULL: out of memory. */
struct lparam *qtl__model_grow(struct lmodel *m);
/* *expert: the global expert of a MoE tensor (QTL_NO_EXPERT otherwise); may be NULL. */
int qtl__model_map(const struct lmodel *m, const char *name, char *param, size_t cap, int *shard, uint32_t *expert);
/* Give p an owned buffer of n bytes (the old one freed when p owned it). NULL: out of memory. */
unsigned char *qtl__param_new_data(struct lmodel *m, struct lparam *p, uint64_t n);
void qtl__param_release(struct lmodel *m, struct lparam *p);
/* Stage "processed" in place (postload.c); *slots_differ: a per-slot scale
 * vector reduced with max had different values (vLLM warns). */
int qtl__model_process(struct lmodel *m, int *slots_differ);
/* requantize_with_max_scale on one sub-matrix (exposed for tests through qtl.h). */
void qtl__requant_fp8(uint8_t *w, uint64_t rows, uint64_t cols, float s_i, float s_max);

#endif
