/* Mixture of experts as vLLM 0.32 builds it (moe-vllm-facts.md): per MoE layer a
 * replicated router <block>.gate.weight [E, H] and a RoutedExperts holding every
 * expert parameter under <block>.experts.routed_experts.{w13_,w2_}<name> with a
 * leading local-expert axis: w13 = [w1 (gate); w3 (up)] rows, w2 = down. Tensor
 * parallel: every rank holds every expert, I' = I / tp of each. Expert parallel
 * (enable_expert_parallel): the MoE tp is 1 and the tp ranks split the experts
 * linearly, the first E % ep ranks one more (expert_map_manager.py:22-113). */
#include "load_internal.h"
#include "arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One parameter of a MoE scheme: its name after w13_/w2_, class, dtype, shape rule and init. */
enum mshape {
    MS_FULL,   /* [R, C]: w13 [2I', H], w2 [H, I'] */
    MS_HALF,   /* [R, C / 2]: two FP4 values per byte */
    MS_G16,    /* [R, C / 16]: NVFP4 group scales */
    MS_BLOCKS, /* w13 [2 ceil(I'/bn), ceil(H/bk)], w2 [ceil(H/bn), ceil(I'/bk)] */
    MS_SLOTS,  /* w13 [2] (w1, w3), w2 [] */
    MS_ONE     /* [] for both: w1 and w3 write the same slot */
};
struct mrule {
    const char *name;
    enum pkind kind;
    enum qtl_dtype dtype; /* QTL_DTYPE_COUNT: the model's */
    enum mshape shape;
    int ones;   /* torch.ones (else torch.empty) */
    int static_input;
    int unused; /* created but never written nor read by the scheme's kernels: no coverage finding */
};
struct mscheme {
    enum qtl_layer_scheme scheme;
    struct mrule params[5];
};

#define MDT QTL_DTYPE_COUNT
static const struct mscheme mschemes[] = {
    /* unquantized_fused_moe_method.py:68-127 */
    {QTL_LS_UNQUANTIZED, {{"weight", PK_MODEL_WEIGHT, MDT, MS_FULL, 0, 0, 0}}},
    /* fp8.py:525-660, per-tensor: scales and input scales are ones */
    {QTL_LS_FP8_TENSOR,
     {{"weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, MS_FULL, 0, 0, 0},
      {"weight_scale", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 1, 0, 0},
      {"input_scale", PK_MOE_SINGLE, QTL_DTYPE_F32, MS_ONE, 1, 1, 0}}},
    /* fp8.py block: weight_scale_inv on the block grid, ones */
    {QTL_LS_FP8_BLOCK,
     {{"weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, MS_FULL, 0, 0, 0},
      {"weight_scale_inv", PK_BLOCK, QTL_DTYPE_F32, MS_BLOCKS, 1, 0, 0}}},
    /* compressed_tensors_moe_w4a4_nvfp4.py:73-182 (NVFP4A16 creates the same) */
    {QTL_LS_CT_NVFP4,
     {{"weight_packed", PK_MODEL_WEIGHT, QTL_DTYPE_U8, MS_HALF, 0, 0, 0},
      {"weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, MS_G16, 0, 0, 0},
      {"weight_global_scale", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 0, 0, 0},
      {"input_global_scale", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 0, 0, 0}}},
    /* NVFP4A16 creates the input global scales too; no checkpoint has them and the weight-only
     * kernels never read them (facts §32): zeros in qtl, torch.empty in vLLM, no finding */
    {QTL_LS_CT_NVFP4_A16,
     {{"weight_packed", PK_MODEL_WEIGHT, QTL_DTYPE_U8, MS_HALF, 0, 0, 0},
      {"weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, MS_G16, 0, 0, 0},
      {"weight_global_scale", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 0, 0, 0},
      {"input_global_scale", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 0, 0, 1}}},
    /* modelopt.py:892-1006; input scales per local expert (non-FlashInfer NVFP4 backends) */
    {QTL_LS_MODELOPT_NVFP4,
     {{"weight", PK_MODEL_WEIGHT, QTL_DTYPE_U8, MS_HALF, 0, 0, 0},
      {"weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, MS_G16, 0, 0, 0},
      {"weight_scale_2", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 0, 0, 0},
      {"input_scale", PK_MOE_SLOT, QTL_DTYPE_F32, MS_SLOTS, 0, 0, 0}}},
};

static const struct mscheme *mscheme(enum qtl_layer_scheme s)
{
    for (size_t i = 0; i < sizeof mschemes / sizeof mschemes[0]; i++)
        if (mschemes[i].scheme == s)
            return &mschemes[i];
    return NULL;
}

static uint64_t cdiv(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* This rank's experts (linear placement) and the MoE tensor-parallel split. */
void qtl__moe_layout(struct lmodel *m)
{
    uint32_t E = m->shape.experts, ep = m->ep ? m->tp : 1, r = m->ep ? m->rank : 0;
    uint32_t base = E / ep, rem = E % ep;
    m->e_local = base + (r < rem);
    m->e_start = r * base + (r < rem ? r : rem);
    m->moe_tp = m->ep ? 1 : m->tp;
    m->moe_rank = m->ep ? 0 : m->rank;
}

static int add_moe_param(struct lmodel *m, size_t mi, const struct mrule *r, int w13)
{
    const struct moe_layer *ml = &m->moe[mi];
    uint64_t H = m->shape.hidden, Ip = m->shape.moe_intermediate / m->moe_tp;
    uint64_t R = w13 ? 2 * Ip : H, C = w13 ? H : Ip, El = m->e_local;
    uint64_t d[3] = {El, R, C};
    uint32_t ndim = 3;
    switch (r->shape) {
    case MS_FULL: break;
    case MS_HALF: d[2] = C / 2; break;
    case MS_G16: d[2] = C / 16; break;
    case MS_BLOCKS:
        d[1] = w13 ? 2 * cdiv(Ip, ml->q.block[0]) : cdiv(H, ml->q.block[0]);
        d[2] = cdiv(C, ml->q.block[1]);
        break;
    case MS_SLOTS: ndim = w13 ? 2 : 1, d[1] = 2; break;
    case MS_ONE: ndim = 1; break;
    }
    struct lparam *p = qtl__model_grow(m);
    if (!p)
        return QTL_ERR_NOMEM;
    snprintf(p->name, sizeof p->name, "%s.experts.routed_experts.%s%s", ml->prefix, w13 ? "w13_" : "w2_", r->name);
    p->kind = r->kind;
    p->dtype = r->dtype == MDT ? m->shape.params_dtype : r->dtype;
    p->ndim = ndim;
    memcpy(p->shape, d, sizeof d);
    p->layer = -1;
    p->moe = (int)mi + 1;
    p->moe_w13 = w13;
    p->is_scale = strstr(r->name, "scale") != NULL;
    p->fill_ones = r->ones;
    p->unused = r->unused;
    p->allow_zero = r->kind == PK_GROUP; /* FP4 group scales of zero are valid (all-zero groups) */
    p->block_n = r->shape == MS_BLOCKS ? ml->q.block[0] : 0;
    return QTL_OK;
}

/* A MoE layer's router and experts; `block` is model.layers.L.<moe_block>. */
int qtl__moe_layer(struct lmodel *m, uint32_t li)
{
    const struct qtl_arch_traits *at = qtl__arch_traits(m->shape.arch);
    char block[160], parts[3][200], router[200];
    snprintf(block, sizeof block, "model.layers.%u.%s", li, at->moe_block);
    if (qtl__grow(m->al, (void **)&m->moe, &m->moecap, m->nmoe + 1, sizeof *m->moe))
        return QTL_ERR_NOMEM;
    struct moe_layer *ml = &m->moe[m->nmoe];
    memset(ml, 0, sizeof *ml);
    snprintf(ml->prefix, sizeof ml->prefix, "%s", block);
    ml->layer = li;
    snprintf(parts[0], sizeof parts[0], "%s.experts.0.%s", block, at->ckpt_w1);
    snprintf(parts[1], sizeof parts[1], "%s.experts.0.%s", block, at->ckpt_w2);
    snprintf(parts[2], sizeof parts[2], "%s.experts.0.%s", block, at->ckpt_w3);
    const char *const pp[3] = {parts[0], parts[1], parts[2]};
    char experts[200];
    snprintf(experts, sizeof experts, "%s.experts", block);
    int rc = qtl_config_layer_quant(m->cfg, experts, pp, 3, &ml->q);
    if (rc) {
        m->fail_id = rc == QTL_ERR_UNSUPPORTED ? qtl_finding_id(QTL_FINDING_CONFIG_UNSUPPORTED) : NULL;
        return qtl__fail(m->err, rc, "%s", qtl_config_errmsg(m->cfg));
    }
    m->scheme_hash = qtl__hash_layer(m->scheme_hash, experts, &ml->q);
    struct qtl_layer_quant rq = {QTL_LS_UNQUANTIZED, 0, 0, {0, 0}, 1, 0, 0, 1};
    snprintf(router, sizeof router, "%s.gate", block);
    if (at->router_quantized && (rc = qtl_config_layer_quant(m->cfg, router, NULL, 0, &rq)))
        return qtl__fail(m->err, rc, "%s", qtl_config_errmsg(m->cfg));
    if (rq.scheme != QTL_LS_UNQUANTIZED) {
        m->fail_id = qtl_finding_id(QTL_FINDING_CONFIG_UNSUPPORTED);
        return qtl__fail(m->err, QTL_ERR_UNSUPPORTED,
                         "%s.weight: the quantization config quantizes the MoE router (%s); qtl loads unquantized "
                         "routers only (real exports list it in the ignore list)",
                         router, qtl_layer_scheme_name(rq.scheme));
    }
    const struct mscheme *ms = mscheme(ml->q.scheme);
    if (!ms) {
        m->fail_id = qtl_finding_id(QTL_FINDING_CONFIG_UNSUPPORTED);
        return qtl__fail(m->err, QTL_ERR_UNSUPPORTED, "%s: MoE experts with scheme %s are not supported yet", experts,
                         qtl_layer_scheme_name(ml->q.scheme));
    }
    if (m->shape.arch == QTL_ARCH_QWEN3_MOE && m->tp > m->shape.experts) { /* qwen3_moe.py:154 */
        m->fail_id = qtl_finding_id(QTL_FINDING_TP_INTERMEDIATE);
        return qtl__fail(m->err, QTL_ERR_UNSUPPORTED, "Tensor parallel size %u is greater than the number of experts %u.",
                         m->tp, m->shape.experts);
    }
    uint64_t I = m->shape.moe_intermediate;
    if (I % m->moe_tp) {
        m->fail_id = qtl_finding_id(QTL_FINDING_TP_INTERMEDIATE);
        return qtl__fail(m->err, QTL_ERR_UNSUPPORTED,
                         "tp=%u: %s: the experts' intermediate size (%llu) is not divisible by %u (FusedMoEConfig "
                         "asserts it; --ep gives every rank whole experts)",
                         m->tp, experts, (unsigned long long)I, m->moe_tp);
    }
    if (ml->q.scheme == QTL_LS_FP8_BLOCK && (I / m->moe_tp) % ml->q.block[0]) {
        m->fail_id = qtl_finding_id(QTL_FINDING_TP_BLOCK);
        return qtl__fail(m->err, QTL_ERR_UNSUPPORTED,
                         "tp=%u: %s: %llu rows per rank are not whole %u-row FP8 blocks; vLLM 0.32 refines the scale "
                         "grid there (gcd rule), which qtl does not model yet",
                         m->tp, experts, (unsigned long long)(I / m->moe_tp), ml->q.block[0]);
    }
    if (m->skip_layer) {
        return QTL_OK;
    }
    m->nmoe++;
    /* the router: a ReplicatedLinear, whole on every rank */
    struct lparam *p = qtl__model_grow(m);
    if (!p)
        return QTL_ERR_NOMEM;
    snprintf(p->name, sizeof p->name, "%s.gate.weight", block);
    p->kind = PK_REPLICATED;
    p->dtype = m->shape.params_dtype;
    p->ndim = 2;
    p->shape[0] = m->shape.experts;
    p->shape[1] = m->shape.hidden;
    p->layer = -1;
    for (int w13 = 1; w13 >= 0; w13--)
        for (const struct mrule *r = ms->params; r < ms->params + 5 && r->name; r++)
            if ((!r->static_input || ml->q.static_input) && (rc = add_moe_param(m, m->nmoe - 1, r, w13)))
                return rc;
    return QTL_OK;
}

/* <block>.experts.<e>.<proj>.<rest> -> the routed-experts parameter, shard (0 w1, 1 w3,
 * 2 w2) and global expert; <block>.experts.<gate_up|down> fused on disk: expert
 * QTL_NO_EXPERT. @return 1 when the name is an expert tensor of a MoE layer. */
int qtl__moe_map(const struct lmodel *m, const char *name, char *param, size_t cap, int *shard, uint32_t *expert)
{
    const struct qtl_arch_traits *at = qtl__arch_traits(m->shape.arch);
    if (!at->moe_block)
        return 0;
    unsigned li;
    int off = 0;
    char blk[32];
    if (sscanf(name, "model.layers.%u.%31[^.].experts.%n", &li, blk, &off) != 2 || !off || strcmp(blk, at->moe_block) ||
        !qtl_config_layer_is_moe(m->cfg, li))
        return 0;
    const char *rest = name + off;
    /* Mixtral's hf_to_vllm_mapper also maps gate_proj/up_proj/down_proj to w1/w3/w2 */
    static const char *const mixtral_alt[3] = {"gate_proj", "down_proj", "up_proj"};
    const char *w[3] = {at->ckpt_w1, at->ckpt_w2, at->ckpt_w3};
    char *end;
    unsigned long e = strtoul(rest, &end, 10);
    *expert = QTL_NO_EXPERT;
    const char *proj_rest = NULL;
    if (end != rest && *end == '.') {
        *expert = (uint32_t)e;
        for (int k = 0; k < 3 && !proj_rest; k++)
            for (int alt = 0; alt < 2 && !proj_rest; alt++) {
                const char *nm = alt ? (m->shape.arch == QTL_ARCH_MIXTRAL ? mixtral_alt[k] : NULL) : w[k];
                size_t n = nm ? strlen(nm) : 0;
                if (nm && !strncmp(end + 1, nm, n) && end[1 + n] == '.') {
                    *shard = k == 0 ? 0 : k == 2 ? 1 : 2;
                    proj_rest = end + 1 + n + 1;
                }
            }
    } else {
        /* fused on disk: vLLM's fused entries (experts.w13_weight, experts.<gate_up>) and (experts.w2_weight,
         * experts.<down>) with <gate_up> = gate_up_proj for gate_proj names, w13 for w1 names, <down> the
         * w2 name (routed_experts.py:1139-1267); the name with that fragment replaced by the parameter's
         * (so experts.gate_up_proj_scale_inv -> w13_weight_scale_inv) */
        const char *frag[2] = {!strcmp(at->ckpt_w1, "w1") ? "w13" : "gate_up_proj", at->ckpt_w2};
        for (int k = 0; k < 2 && !proj_rest; k++) {
            size_t n = strlen(frag[k]);
            if (!strncmp(rest, frag[k], n) && rest[n] != '.') {
                *shard = k ? 2 : 3; /* 3: fused w1|w3 */
                proj_rest = rest + n;
            }
        }
        if (proj_rest) {
            snprintf(param, cap, "model.layers.%u.%s.experts.routed_experts.%s%s", li, at->moe_block,
                     *shard == 2 ? "w2_weight" : "w13_weight", proj_rest);
            return 1;
        }
    }
    if (!proj_rest)
        return 0; /* under experts. but no mapping entry: vLLM drops it silently, qtl reports it unmapped */
    snprintf(param, cap, "model.layers.%u.%s.experts.routed_experts.%s%s", li, at->moe_block, *shard == 2 ? "w2_" : "w13_",
             proj_rest);
    return 1;
}
