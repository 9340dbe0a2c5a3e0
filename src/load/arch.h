/* Internal: the architecture table of the load layer, defined in config.c
 * and read by model.c. Not installed. */
#ifndef QTL_ARCH_H
#define QTL_ARCH_H

#include "internal.h"

/* ---- architectures (config.c) ---- */
struct qtl_arch_traits {
    const char *name; /* config.json "architectures"[0] */
    enum qtl_arch arch;
    int qkv_bias, qk_norm;
    int fused_on_disk; /* checkpoints store qkv_proj and gate_up_proj, not q/k/v and gate/up */
    /* MoE: the block holding the router and experts ("block_sparse_moe", "mlp"; NULL: dense),
     * the checkpoint names of w1 (gate), w2 (down), w3 (up), the config key of num experts and of
     * the experts' intermediate size, and whether the router takes the quant config */
    const char *moe_block, *ckpt_w1, *ckpt_w2, *ckpt_w3, *experts_key, *moe_inter_key;
    int router_quantized;
};
const struct qtl_arch_traits *qtl__arch_traits(enum qtl_arch a);

#endif
