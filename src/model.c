/* The vLLM model layout for one tensor-parallel rank: its linear layers
 * (QKV, merged column, row), embeddings and norms, every parameter vLLM
 * creates for each layer's scheme with its class, dtype and per-rank shape
 * (vllm-loading.md §2, §3, §5.0, §12), and the mapping of checkpoint names
 * to (parameter, shard id) of Llama's load_weights (§4). No I/O here. */
#include "load_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

struct lparam *qtl__model_grow(struct lmodel *m)
{
    if (qtl__grow(m->al, (void **)&m->params, &m->cap, m->nparams + 1, sizeof *m->params))
        return NULL;
    struct lparam *p = &m->params[m->nparams++];
    memset(p, 0, sizeof *p);
    return p;
}

static struct lparam *new_param(struct lmodel *m, const char *layer_prefix, const char *suffix, enum pkind kind,
                                enum qtl_dtype dt, uint32_t ndim, uint64_t d0, uint64_t d1, int layer)
{
    struct lparam *p = qtl__model_grow(m);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%s%s%s", layer_prefix, *suffix ? "." : "", suffix);
    p->kind = kind;
    p->dtype = dt;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->layer = layer;
    p->is_scale = strstr(suffix, "scale") != NULL && strcmp(suffix, "weight_shape") != 0;
    return p;
}

/* vLLM's parameters of one linear layer (§5.0). */
static int layer_params(struct lmodel *m, int li)
{
    struct llayer *l = &m->layers[li];
    const struct qtl_layer_quant *q = &l->q;
    uint64_t N = 0, K = l->in_pp;
    for (int i = 0; i < l->L; i++)
        N += l->part[i];
    uint32_t L = (uint32_t)l->L;
    int row = l->kind == LK_ROW;
    enum qtl_dtype pd = m->shape.params_dtype;
    struct lparam *p;
#define P(suffix, kind, dt, nd, a, b)                                                                              \
    do {                                                                                                           \
        if (!(p = new_param(m, l->prefix, suffix, kind, dt, nd, a, b, li)))                                        \
            return QTL_ERR_NOMEM;                                                                                  \
    } while (0)
    switch (q->scheme) {
    case QTL_LS_UNQUANTIZED: P("weight", PK_MODEL_WEIGHT, pd, 2, N, K); break;
    case QTL_LS_FP8_TENSOR:
    case QTL_LS_CT_FP8_TENSOR:
    case QTL_LS_MODELOPT_FP8:
        P("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, 2, N, K);
        P("weight_scale", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
        p->fill_f32_min = 1;
        if (q->static_input) {
            P("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
            p->fill_f32_min = 1;
        }
        break;
    case QTL_LS_FP8_BLOCK:
    case QTL_LS_CT_FP8_BLOCK:
        P("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, 2, N, K);
        P(q->scheme == QTL_LS_FP8_BLOCK ? "weight_scale_inv" : "weight_scale", PK_BLOCK, QTL_DTYPE_F32, 2,
          ceil_div(N, q->block[0]), ceil_div(K, q->block[1]));
        p->block_n = q->block[0];
        p->fill_f32_min = 1;
        break;
    case QTL_LS_CT_FP8_CHANNEL:
        P("weight", PK_MODEL_WEIGHT, QTL_DTYPE_F8_E4M3, 2, N, K);
        P("weight_scale", PK_CHANNEL, QTL_DTYPE_F32, 2, N, 1);
        p->fill_f32_min = 1;
        break;
    case QTL_LS_CT_INT8_TENSOR:
    case QTL_LS_CT_INT8_CHANNEL:
        P("weight", PK_MODEL_WEIGHT, QTL_DTYPE_I8, 2, N, K);
        if (q->scheme == QTL_LS_CT_INT8_TENSOR)
            P("weight_scale", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
        else
            P("weight_scale", PK_CHANNEL, QTL_DTYPE_F32, 2, N, 1);
        if (q->static_input) {
            P("input_scale", PK_BASE, QTL_DTYPE_F32, 1, 1, 0);
            if (!q->input_symmetric)
                P("input_zero_point", PK_BASE, QTL_DTYPE_I8, 1, 1, 0);
        }
        break;
    case QTL_LS_CT_NVFP4:
    case QTL_LS_CT_NVFP4_A16:
        P("weight_packed", PK_MODEL_WEIGHT, QTL_DTYPE_U8, 2, N, K / 2);
        P("weight_scale", PK_GROUP, QTL_DTYPE_F8_E4M3, 2, N, K / 16);
        p->allow_zero = 1;
        P("weight_global_scale", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
        if (q->scheme == QTL_LS_CT_NVFP4)
            P("input_global_scale", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
        break;
    case QTL_LS_MODELOPT_NVFP4:
    case QTL_LS_MODELOPT_W4A16_NVFP4:
        P("weight", PK_MODEL_WEIGHT, QTL_DTYPE_U8, 2, N, K / 2);
        P("weight_scale", q->scheme == QTL_LS_MODELOPT_NVFP4 ? PK_MODEL_WEIGHT : PK_GROUP, QTL_DTYPE_F8_E4M3, 2, N,
          K / 16);
        p->allow_zero = 1;
        P("weight_scale_2", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
        P("input_scale", PK_PER_TENSOR, QTL_DTYPE_F32, 1, L, 0);
        break;
    case QTL_LS_CT_WNA16: {
        uint32_t pack = 32 / q->bits;
        int channel = q->group_size == 0;
        uint64_t group = channel ? l->in_full : q->group_size;
        int partition = !(q->actorder || (channel && row));
        uint64_t groups = partition ? K / group : ceil_div(l->in_full, group);
        P("weight_packed", PK_PACKED_IN, QTL_DTYPE_I32, 2, N, K / pack);
        P("weight_scale", partition ? PK_GROUP : PK_CHANNEL, pd, 2, N, groups);
        if (!q->symmetric) {
            P("weight_zero_point", partition ? PK_PACKED_ZP : PK_PACKED_ZP_COL, QTL_DTYPE_I32, 2, N / pack, groups);
            p->pack = pack;
        }
        P("weight_shape", PK_BASE, QTL_DTYPE_I64, 1, 2, 0);
        if (q->actorder)
            P("weight_g_idx", PK_ROW, QTL_DTYPE_I32, 1, K, 0);
        break;
    }
    default: return QTL_ERR_UNSUPPORTED;
    }
#undef P
    return QTL_OK;
}

static int partition_checks(struct lmodel *m, const struct llayer *l);

static int add_layer(struct lmodel *m, const char *prefix, enum lkind kind, const uint64_t *full, int L,
                     uint64_t in_full, const char *const *parts, size_t nparts)
{
    if (qtl__grow(m->al, (void **)&m->layers, &m->lcap, m->nlayers + 1, sizeof *m->layers))
        return QTL_ERR_NOMEM;
    struct llayer *l = &m->layers[m->nlayers];
    memset(l, 0, sizeof *l);
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->kind = kind;
    l->L = L;
    l->in_full = in_full;
    uint32_t tp = m->tp;
    for (int i = 0; i < L; i++) {
        l->full[i] = full[i];
        l->part[i] = kind == LK_ROW ? full[i] : full[i] / tp;
    }
    l->in_pp = kind == LK_ROW ? in_full / tp : in_full;
    int rc = qtl_config_layer_quant(m->cfg, prefix, parts, nparts, &l->q);
    if (rc) {
        m->fail_id = rc == QTL_ERR_UNSUPPORTED ? "config.unsupported" : NULL;
        return qtl__fail(m->err, rc, "%s", qtl_config_errmsg(m->cfg));
    }
    m->nlayers++;
    if (!partition_checks(m, l))
        return m->err->code;
    return layer_params(m, (int)m->nlayers - 1);
}

static int divides(struct lmodel *m, const char *id, const char *what, uint64_t a, uint64_t b)
{
    static const struct {
        const char *id, *unit;
    } units[] = {{"tp.block", " (the FP8 block)"}, {"tp.nvfp4", " (the NVFP4 group)"}, {"tp.group", " (group_size)"},
                 {"tp.pack", " (the zero-point pack factor)"}};
    const char *unit = "";
    if (b && a % b == 0)
        return 1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(units[i].id, id))
            unit = units[i].unit;
    m->fail_id = id;
    qtl__fail(m->err, QTL_ERR_UNSUPPORTED, "tp=%u: %s (%llu) is not divisible by %llu%s", m->tp, what,
              (unsigned long long)a, (unsigned long long)b, unit);
    return 0;
}

/* The per-rank partitions against the scheme's granularity, as vLLM's
 * create_weights / validate_fp8_block_shape assert (§7). */
static int partition_checks(struct lmodel *m, const struct llayer *l)
{
    const struct qtl_layer_quant *q = &l->q;
    char what[256];
    if (m->tp == 1)
        return 1;
    switch (q->scheme) {
    case QTL_LS_FP8_BLOCK:
    case QTL_LS_CT_FP8_BLOCK:
        for (int i = 0; i < l->L && l->kind != LK_ROW; i++) {
            snprintf(what, sizeof what, "%s: rows per rank of output partition %d", l->prefix, i);
            if (!divides(m, "tp.block", what, l->part[i], q->block[0]))
                return 0;
        }
        snprintf(what, sizeof what, "%s: input columns per rank", l->prefix);
        return l->kind != LK_ROW || divides(m, "tp.block", what, l->in_pp, q->block[1]);
    case QTL_LS_CT_NVFP4:
    case QTL_LS_CT_NVFP4_A16:
    case QTL_LS_MODELOPT_NVFP4:
    case QTL_LS_MODELOPT_W4A16_NVFP4:
        snprintf(what, sizeof what, "%s: input columns per rank", l->prefix);
        return divides(m, "tp.nvfp4", what, l->in_pp, 16);
    case QTL_LS_CT_WNA16: {
        uint32_t pack = 32 / q->bits;
        int partition = !(q->actorder || (q->group_size == 0 && l->kind == LK_ROW));
        if (partition && q->group_size && l->kind == LK_ROW) {
            snprintf(what, sizeof what, "%s: input columns per rank", l->prefix);
            if (!divides(m, "tp.group", what, l->in_pp, q->group_size))
                return 0;
        }
        for (int i = 0; i < l->L && !q->symmetric; i++) {
            snprintf(what, sizeof what, "%s: rows per rank of output partition %d", l->prefix, i);
            if (!divides(m, "tp.pack", what, l->part[i], pack))
                return 0;
        }
        return 1;
    }
    default: return 1;
    }
}

int qtl__model_build(struct lmodel *m)
{
    const struct qtl_model_shape *s = &m->shape;
    uint32_t tp = m->tp;
    uint64_t H = s->heads, Hkv = s->kv_heads, D = s->head_dim;
    if (!divides(m, "tp.heads", "num_attention_heads", H, tp) ||
        !divides(m, "tp.intermediate", "intermediate_size", s->intermediate, tp))
        return m->err->code;
    if (tp >= Hkv) {
        if (!divides(m, "tp.kv-heads", "tp over num_key_value_heads", tp, Hkv))
            return m->err->code;
        m->nkv = 1;
        m->replicas = (uint32_t)(tp / Hkv);
    } else {
        if (!divides(m, "tp.kv-heads", "num_key_value_heads", Hkv, tp))
            return m->err->code;
        m->nkv = (uint32_t)(Hkv / tp);
        m->replicas = 1;
    }
    m->nh = (uint32_t)(H / tp);
    uint64_t vp = ceil_div(s->vocab, 64) * 64;
    if (!divides(m, "tp.vocab", "padded vocab", vp, tp))
        return m->err->code;
    m->vocab_pp = vp / tp;
    struct lparam *p = new_param(m, "model.embed_tokens.weight", "", PK_VOCAB, s->params_dtype, 2, m->vocab_pp,
                                 s->hidden, -1);
    if (!p)
        return QTL_ERR_NOMEM;
    int phi3 = s->arch == QTL_ARCH_PHI3;
    char pre[160], a[160], b[160], c[160];
    for (uint32_t li = 0; li < s->layers; li++) {
        snprintf(pre, sizeof pre, "model.layers.%u.input_layernorm.weight", li);
        if (!new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, s->hidden, 0, -1))
            return QTL_ERR_NOMEM;
        snprintf(pre, sizeof pre, "model.layers.%u.post_attention_layernorm.weight", li);
        if (!new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, s->hidden, 0, -1))
            return QTL_ERR_NOMEM;
        if (s->qk_norm) {
            snprintf(pre, sizeof pre, "model.layers.%u.self_attn.q_norm.weight", li);
            if (!new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, D, 0, -1))
                return QTL_ERR_NOMEM;
            snprintf(pre, sizeof pre, "model.layers.%u.self_attn.k_norm.weight", li);
            if (!new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, D, 0, -1))
                return QTL_ERR_NOMEM;
        }
        /* qkv_proj: vLLM's "virtual" output sizes count replicated kv heads per rank */
        uint64_t qkv[3] = {m->nh * D * tp, (uint64_t)m->nkv * D * tp, (uint64_t)m->nkv * D * tp};
        snprintf(pre, sizeof pre, "model.layers.%u.self_attn.qkv_proj", li);
        snprintf(a, sizeof a, "model.layers.%u.self_attn.q_proj", li);
        snprintf(b, sizeof b, "model.layers.%u.self_attn.k_proj", li);
        snprintf(c, sizeof c, "model.layers.%u.self_attn.v_proj", li);
        const char *const qkv_parts[3] = {a, b, c};
        int rc = add_layer(m, pre, LK_QKV, qkv, 3, s->hidden, phi3 ? NULL : qkv_parts, phi3 ? 0 : 3);
        if (rc)
            return rc;
        if (s->qkv_bias) {
            uint64_t n = (m->nh + 2ull * m->nkv) * D;
            if (!(p = new_param(m, pre, "bias", PK_MODEL_WEIGHT, s->params_dtype, 1, n, 0, (int)m->nlayers - 1)))
                return QTL_ERR_NOMEM;
        }
        uint64_t o[1] = {s->hidden};
        snprintf(pre, sizeof pre, "model.layers.%u.self_attn.o_proj", li);
        if ((rc = add_layer(m, pre, LK_ROW, o, 1, H * D, NULL, 0)))
            return rc;
        uint64_t gu[2] = {s->intermediate, s->intermediate};
        snprintf(pre, sizeof pre, "model.layers.%u.mlp.gate_up_proj", li);
        snprintf(a, sizeof a, "model.layers.%u.mlp.gate_proj", li);
        snprintf(b, sizeof b, "model.layers.%u.mlp.up_proj", li);
        const char *const gu_parts[2] = {a, b};
        if ((rc = add_layer(m, pre, LK_MERGED, gu, 2, s->hidden, phi3 ? NULL : gu_parts, phi3 ? 0 : 2)))
            return rc;
        uint64_t dn[1] = {s->hidden};
        snprintf(pre, sizeof pre, "model.layers.%u.mlp.down_proj", li);
        if ((rc = add_layer(m, pre, LK_ROW, dn, 1, s->intermediate, NULL, 0)))
            return rc;
    }
    if (!new_param(m, "model.norm.weight", "", PK_REPLICATED, s->params_dtype, 1, s->hidden, 0, -1))
        return QTL_ERR_NOMEM;
    if (!s->tie_word_embeddings &&
        !new_param(m, "lm_head.weight", "", PK_VOCAB, s->params_dtype, 2, m->vocab_pp, s->hidden, -1))
        return QTL_ERR_NOMEM;
    return QTL_OK;
}

/* Checkpoint name -> vLLM parameter name and shard id (Llama's load_weights:
 * stacked_params_mapping; fused-on-disk names fall through with id None). */
int qtl__model_map(const struct lmodel *m, const char *name, char *param, size_t cap, int *shard)
{
    static const struct {
        const char *fused, *ckpt;
        int id;
    } stacked[] = {{".qkv_proj", ".q_proj", 0},     {".qkv_proj", ".k_proj", 1}, {".qkv_proj", ".v_proj", 2},
                   {".gate_up_proj", ".gate_proj", 0}, {".gate_up_proj", ".up_proj", 1}};
    (void)m;
    *shard = SHARD_NONE;
    if (strstr(name, "rotary_emb.inv_freq") || strstr(name, "rotary_emb.cos_cached") ||
        strstr(name, "rotary_emb.sin_cached"))
        return MAP_SKIP;
    if (m->shape.tie_word_embeddings && !strcmp(name, "lm_head.weight"))
        return MAP_SKIP;
    /* KV-cache scales (maybe_remap_kv_scale_name / get_cache_scale run first,
     * errata §11 item 2): self_attn.{k,v,q}_scale, self_attn.{k,v,q}_proj.{k,v,q}_scale
     * (ModelOpt) and self_attn.{k,v,q}_proj.output_scale (compressed-tensors,
     * AutoFP8) all become self_attn.attn.{k,v,q}_scale. */
    static const char *const kv[] = {"k", "v", "q"};
    const char *sa = strstr(name, ".self_attn.");
    if (sa) {
        const char *rest = sa + strlen(".self_attn.");
        for (int i = 0; i < 3; i++) {
            char a[32], b[32], c[32];
            snprintf(a, sizeof a, "%s_scale", kv[i]);
            snprintf(b, sizeof b, "%s_proj.%s_scale", kv[i], kv[i]);
            snprintf(c, sizeof c, "%s_proj.output_scale", kv[i]);
            if (!strcmp(rest, a) || !strcmp(rest, b) || !strcmp(rest, c)) {
                snprintf(param, cap, "%.*s.self_attn.attn.%s_scale", (int)(sa - name), name, kv[i]);
                return MAP_KV_SCALE;
            }
        }
        if (!strcmp(rest, "prob_output_scale")) {
            snprintf(param, cap, "%.*s.self_attn.attn.prob_scale", (int)(sa - name), name);
            return MAP_KV_SCALE;
        }
    }
    for (size_t i = 0; i < sizeof stacked / sizeof stacked[0]; i++) {
        const char *hit = strstr(name, stacked[i].ckpt);
        if (!hit)
            continue;
        snprintf(param, cap, "%.*s%s%s", (int)(hit - name), name, stacked[i].fused, hit + strlen(stacked[i].ckpt));
        *shard = stacked[i].id;
        return MAP_PARAM;
    }
    snprintf(param, cap, "%s", name);
    return MAP_PARAM;
}
