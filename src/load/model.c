/* The vLLM model layout for one tensor-parallel rank: its linear layers
 * (QKV, merged column, row), embeddings and norms, every parameter vLLM
 * creates for each layer's scheme with its class, dtype and per-rank shape
 * (vllm-loading.md §2, §3, §5.0, §12), and the mapping of checkpoint names
 * to (parameter, shard id) of Llama's load_weights (§4). No I/O here. */
#include "load_internal.h"
#include "arch.h"

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

/* WNA16: is the layer split on the input (group scales and zero points narrowed per rank)? */
static int wna16_partitioned(const struct llayer *l)
{
    return !(l->q.actorder || (l->q.group_size == 0 && l->kind == LK_ROW));
}

static uint64_t wna16_groups(const struct llayer *l)
{
    uint64_t group = l->q.group_size ? l->q.group_size : l->in_full;
    return wna16_partitioned(l) ? l->in_pp / group : ceil_div(l->in_full, group);
}

static int param_wanted(const struct qtl_layer_quant *q, enum pwhen w)
{
    switch (w) { /* the conditions of the scheme's create_weights */
    case PW_STATIC_INPUT: return q->static_input;
    case PW_STATIC_ASYM_INPUT: return q->static_input && !q->input_symmetric;
    case PW_ASYM_WEIGHTS: return !q->symmetric;
    case PW_ACTORDER: return q->actorder;
    default: return 1;
    }
}

/* The shape rule of a parameter for this layer's rank. */
static void param_shape(const struct llayer *l, enum pshape sh, uint64_t N, uint32_t *ndim, uint64_t *d)
{
    uint64_t K = l->in_pp, pack = l->q.bits ? 32 / l->q.bits : 1;
    *ndim = 2;
    d[0] = d[1] = 0;
    switch (sh) {
    case SH_NK: d[0] = N, d[1] = K; break;
    case SH_BLOCKS: d[0] = ceil_div(N, l->q.block[0]), d[1] = ceil_div(K, l->q.block[1]); break;
    case SH_N1: d[0] = N, d[1] = 1; break;
    case SH_N_HALF_K: d[0] = N, d[1] = K / 2; break;
    case SH_N_K16: d[0] = N, d[1] = K / 16; break;
    case SH_N_PACKED_K: d[0] = N, d[1] = K / pack; break;
    case SH_N_GROUPS: d[0] = N, d[1] = wna16_groups(l); break;
    case SH_PACKED_N_GROUPS: d[0] = N / pack, d[1] = wna16_groups(l); break;
    case SH_SLOTS: *ndim = 1, d[0] = (uint64_t)l->L; break;
    case SH_ONE: *ndim = 1, d[0] = 1; break;
    case SH_TWO: *ndim = 1, d[0] = 2; break;
    case SH_K: *ndim = 1, d[0] = K; break;
    }
}

/* vLLM's parameters of one linear layer (§5.0), from the scheme catalogue. */
static int layer_params(struct lmodel *m, int li)
{
    const struct llayer *l = &m->layers[li];
    const struct scheme_traits *t = qtl__scheme(l->q.scheme);
    if (!t)
        return QTL_ERR_UNSUPPORTED;
    uint64_t N = 0;
    for (int i = 0; i < l->L; i++)
        N += l->part[i];
    for (const struct prule *r = t->params; r < t->params + 6 && r->suffix; r++) {
        if (!param_wanted(&l->q, r->when))
            continue;
        uint32_t ndim;
        uint64_t d[2];
        param_shape(l, r->shape, N, &ndim, d);
        enum pkind kind = l->q.scheme == QTL_LS_CT_WNA16 && !wna16_partitioned(l) ? r->kind_unpartitioned : r->kind;
        enum qtl_dtype dt = r->dtype == QTL_DTYPE_COUNT ? m->shape.params_dtype : r->dtype;
        struct lparam *p = new_param(m, l->prefix, r->suffix, kind, dt, ndim, d[0], d[1], li);
        if (!p)
            return QTL_ERR_NOMEM;
        p->fill_f32_min = (r->flags & PF_F32_MIN) != 0;
        p->allow_zero = (r->flags & PF_ALLOW_ZERO) != 0;
        p->block_n = r->shape == SH_BLOCKS ? l->q.block[0] : 0;
        p->pack = r->flags & PF_PACKED ? 32 / l->q.bits : 0;
    }
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
    l->nmodules = nparts ? nparts : 1;
    for (size_t i = 0; i < l->nmodules && i < 3; i++)
        snprintf(l->modules[i], sizeof l->modules[i], "%s", nparts ? parts[i] : prefix);
    int rc = qtl_config_layer_quant(m->cfg, prefix, parts, nparts, &l->q);
    if (rc) {
        m->fail_id = rc == QTL_ERR_UNSUPPORTED ? qtl_finding_id(QTL_FINDING_CONFIG_UNSUPPORTED) : NULL;
        return qtl__fail(m->err, rc, "%s", qtl_config_errmsg(m->cfg));
    }
    m->scheme_hash = qtl__hash_layer(m->scheme_hash, prefix, &l->q);
    if (m->skip_layer)
        return QTL_OK;
    m->nlayers++;
    partition_checks(m, l); /* failures are collected; qtl__model_build reports them all */
    return layer_params(m, (int)m->nlayers - 1);
}

static const char *tp_unit(enum qtl_finding id)
{
    static const char *const units[QTL_FINDING_COUNT] = {
        [QTL_FINDING_TP_BLOCK] = " (the FP8 block)", [QTL_FINDING_TP_NVFP4] = " (the NVFP4 group)",
        [QTL_FINDING_TP_GROUP] = " (group_size)", [QTL_FINDING_TP_PACK] = " (the zero-point pack factor)"};
    return units[id] ? units[id] : "";
}

static int divides(struct lmodel *m, enum qtl_finding id, const char *what, uint64_t a, uint64_t b)
{
    if (b && a % b == 0)
        return 1;
    m->fail_id = qtl_finding_id(id);
    qtl__fail(m->err, QTL_ERR_UNSUPPORTED, "tp=%u: %s (%llu) is not divisible by %llu%s", m->tp, what,
              (unsigned long long)a, (unsigned long long)b, tp_unit(id));
    return 0;
}

/* A partition rule of one linear layer: a failure is recorded per (rule, layer kind,
 * partition) with the layers it holds for, so the error names every layer kind
 * (o_proj and down_proj), not only the first one built. */
static int layer_rule(struct lmodel *m, const struct llayer *l, enum qtl_finding id, const char *what, uint64_t a,
                      uint64_t b)
{
    if (b && a % b == 0)
        return 1;
    unsigned li = 0;
    int off = 0;
    const char *kind = l->prefix;
    if (sscanf(l->prefix, "model.layers.%u.%n", &li, &off) == 1 && off > 0)
        kind = l->prefix + off;
    for (size_t i = 0; i < m->nlfail; i++) {
        struct layout_fail *f = &m->lfail[i];
        if (f->id == id && !strcmp(f->kind, kind) && !strcmp(f->what, what) && f->a == a && f->b == b) {
            f->last = li;
            return 0;
        }
    }
    if (m->nlfail < sizeof m->lfail / sizeof m->lfail[0]) {
        struct layout_fail *f = &m->lfail[m->nlfail++];
        *f = (struct layout_fail){.id = id, .a = a, .b = b, .first = li, .last = li};
        snprintf(f->kind, sizeof f->kind, "%s", kind);
        snprintf(f->what, sizeof f->what, "%s", what);
    }
    return 0;
}

/* The recorded partition failures as one error, every layer kind named. */
static int layout_failed(struct lmodel *m)
{
    char msg[QTL_MSG_CAP];
    size_t o = (size_t)snprintf(msg, sizeof msg, "tp=%u:", m->tp);
    for (size_t i = 0; i < m->nlfail && o < sizeof msg; i++) {
        const struct layout_fail *f = &m->lfail[i];
        char layers[48] = "";
        if (m->shape.layers > 1)
            snprintf(layers, sizeof layers, f->first == f->last ? " (layer %u)" : " (layers %u..%u)", f->first, f->last);
        o += (size_t)snprintf(msg + o, sizeof msg - o, "%s %s: %s (%llu) is not divisible by %llu%s%s", i ? ";" : "",
                              f->kind, f->what, (unsigned long long)f->a, (unsigned long long)f->b, tp_unit(f->id),
                              layers);
    }
    m->fail_id = qtl_finding_id(m->lfail[0].id);
    return qtl__fail(m->err, QTL_ERR_UNSUPPORTED, "%s", msg);
}

/* Every output partition's rows per rank divisible by `unit` (ID names the rule). */
static int rows_divide(struct lmodel *m, const struct llayer *l, enum qtl_finding id, uint64_t unit)
{
    int ok = 1;
    for (int i = 0; i < l->L; i++) {
        char what[64];
        snprintf(what, sizeof what, "rows per rank of output partition %d", i);
        ok &= layer_rule(m, l, id, what, l->part[i], unit);
    }
    return ok;
}

static int cols_divide(struct lmodel *m, const struct llayer *l, enum qtl_finding id, uint64_t unit)
{
    return layer_rule(m, l, id, "input columns per rank", l->in_pp, unit);
}

/* validate_fp8_block_shape: column layers split rows, row layers split columns, in whole blocks */
static int check_block(struct lmodel *m, const struct llayer *l)
{
    return l->kind == LK_ROW ? cols_divide(m, l, QTL_FINDING_TP_BLOCK, l->q.block[1])
                             : rows_divide(m, l, QTL_FINDING_TP_BLOCK, l->q.block[0]);
}

/* NVFP4: whole 16-element groups of the input per rank */
static int check_nvfp4(struct lmodel *m, const struct llayer *l) { return cols_divide(m, l, QTL_FINDING_TP_NVFP4, 16); }

/* WNA16: whole groups per rank where the input is split; whole zero-point packs per rank */
static int check_wna16(struct lmodel *m, const struct llayer *l)
{
    if (wna16_partitioned(l) && l->q.group_size && l->kind == LK_ROW &&
        !cols_divide(m, l, QTL_FINDING_TP_GROUP, l->q.group_size))
        return 0;
    return l->q.symmetric || rows_divide(m, l, QTL_FINDING_TP_PACK, 32 / l->q.bits);
}

/* The per-rank partitions against the scheme's granularity, as vLLM's
 * create_weights / validate_fp8_block_shape assert (§7). */
static int partition_checks(struct lmodel *m, const struct llayer *l)
{
    static int (*const checks[])(struct lmodel *, const struct llayer *) = {
        [TPC_NONE] = NULL, [TPC_BLOCK] = check_block, [TPC_NVFP4] = check_nvfp4, [TPC_WNA16] = check_wna16};
    const struct scheme_traits *t = qtl__scheme(l->q.scheme);
    return m->tp == 1 || !t || !checks[t->tp_check] || checks[t->tp_check](m, l);
}

/* One count of VLLM_PP_LAYER_PARTITION: Python's int() of the text between commas
 * (surrounding blanks, an optional sign, digits); a negative count is refused. */
static int pp_count(const char *s, const char *e, uint64_t *out, int *negative)
{
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *negative = s < e && *s == '-';
    if (s < e && (*s == '+' || *s == '-'))
        s++;
    if (s == e)
        return 0;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9' || v > (UINT32_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 1;
}

int qtl_pp_layers(uint32_t layers, uint32_t pp, uint32_t pp_rank, const char *partition, uint32_t *start,
                  uint32_t *end, char *msg, size_t cap)
{
    if (msg && cap)
        msg[0] = 0;
    if (!pp || pp_rank >= pp || !start || !end) {
        if (msg)
            snprintf(msg, cap, "pp must be >= 1 and pp_rank < pp");
        return QTL_ERR_INVALID_ARGUMENT;
    }
    uint64_t before = 0, mine = 0, sum = 0;
    if (partition) {
        uint32_t n = 0;
        for (const char *s = partition;; n++) {
            const char *c = strchr(s, ',');
            const char *e = c ? c : s + strlen(s);
            uint64_t v;
            int neg;
            if (!pp_count(s, e, &v, &neg) || (neg && v)) {
                if (msg)
                    snprintf(msg, cap, neg ? "Invalid partition string: %s (a negative layer count)"
                                           : "Invalid partition string: %s", partition);
                return QTL_ERR_INVALID_ARGUMENT;
            }
            if (n < pp_rank)
                before += v;
            if (n == pp_rank)
                mine = v;
            sum += v;
            if (!c)
                break;
            s = c + 1;
        }
        if (n + 1 != pp) {
            if (msg)
                snprintf(msg, cap, "len(partitions)=%u does not match pp_size=%u.", n + 1, pp);
            return QTL_ERR_INVALID_ARGUMENT;
        }
        if (sum != layers) {
            if (msg)
                snprintf(msg, cap, "sum(partitions)=%llu does not match num_hidden_layers=%u.",
                         (unsigned long long)sum, layers);
            return QTL_ERR_INVALID_ARGUMENT;
        }
    } else {
        /* layers / pp each; the remainder r: one more for stages pp-1-r .. pp-2 */
        uint32_t per = layers / pp, r = layers % pp;
        for (uint32_t i = 0; i <= pp_rank; i++) {
            uint64_t n = per + (r && i + 1 < pp && i + 1 + r >= pp);
            if (i < pp_rank)
                before += n;
            else
                mine = n;
        }
    }
    *start = (uint32_t)before;
    *end = (uint32_t)(before + mine);
    return QTL_OK;
}

/* The decoder layer a checkpoint name belongs to ("model.layers.N."), or -1. */
static long layer_of(const char *name)
{
    unsigned li;
    int off = 0;
    if (sscanf(name, "model.layers.%u.%n", &li, &off) == 1 && off > 0)
        return (long)li;
    return -1;
}

/* A tensor this pipeline stage does not hold (vLLM skips it: PPMissingLayer). Layers past
 * num_hidden_layers are not skipped: no stage has them, vLLM's KeyError, qtl's unmapped. */
static int other_stage(const struct lmodel *m, const char *name)
{
    if (m->pp <= 1)
        return 0;
    long li = layer_of(name);
    if (li >= 0)
        return (uint64_t)li < m->shape.layers && ((uint32_t)li < m->layer_start || (uint32_t)li >= m->layer_end);
    if (!strncmp(name, "model.embed_tokens.", 19))
        return !(m->first_stage || (m->shape.tie_word_embeddings && m->last_stage));
    if (!strncmp(name, "model.norm.", 11) || !strncmp(name, "lm_head.", 8))
        return !m->last_stage;
    return 0;
}

int qtl__model_build(struct lmodel *m)
{
    const struct qtl_model_shape *s = &m->shape;
    uint32_t tp = m->tp;
    uint64_t H = s->heads, Hkv = s->kv_heads, D = s->head_dim;
    int dense_mlp = 0;
    for (uint32_t li = 0; li < s->layers && !dense_mlp; li++)
        dense_mlp = !qtl_config_layer_is_moe(m->cfg, li);
    if (!divides(m, QTL_FINDING_TP_HEADS, "num_attention_heads", H, tp) ||
        (dense_mlp && !divides(m, QTL_FINDING_TP_INTERMEDIATE, "intermediate_size", s->intermediate, tp)))
        return m->err->code;
    if (s->experts)
        qtl__moe_layout(m);
    if (tp >= Hkv) {
        if (!divides(m, QTL_FINDING_TP_KV_HEADS, "tp over num_key_value_heads", tp, Hkv))
            return m->err->code;
        m->nkv = 1;
        m->replicas = (uint32_t)(tp / Hkv);
    } else {
        if (!divides(m, QTL_FINDING_TP_KV_HEADS, "num_key_value_heads", Hkv, tp))
            return m->err->code;
        m->nkv = (uint32_t)(Hkv / tp);
        m->replicas = 1;
    }
    m->nh = (uint32_t)(H / tp);
    uint64_t vp = ceil_div(s->vocab, 64) * 64;
    if (!divides(m, QTL_FINDING_TP_VOCAB, "padded vocab", vp, tp))
        return m->err->code;
    m->vocab_pp = vp / tp;
    struct lparam *p = NULL;
    if ((m->first_stage || (s->tie_word_embeddings && m->last_stage)) &&
        !new_param(m, "model.embed_tokens.weight", "", PK_VOCAB, s->params_dtype, 2, m->vocab_pp, s->hidden, -1))
        return QTL_ERR_NOMEM;
    int fused = qtl__arch_traits(s->arch)->fused_on_disk; /* scheme resolved for the fused module itself */
    char pre[160], a[160], b[160], c[160];
    for (uint32_t li = 0; li < s->layers; li++) {
        /* a layer of another stage: its schemes still enter the plan hash (every stage
         * hashes every layer's), nothing else of it is built (vLLM's PPMissingLayer) */
        m->skip_layer = li < m->layer_start || li >= m->layer_end;
        snprintf(pre, sizeof pre, "model.layers.%u.input_layernorm.weight", li);
        if (!m->skip_layer && !new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, s->hidden, 0, -1))
            return QTL_ERR_NOMEM;
        snprintf(pre, sizeof pre, "model.layers.%u.post_attention_layernorm.weight", li);
        if (!m->skip_layer && !new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, s->hidden, 0, -1))
            return QTL_ERR_NOMEM;
        if (s->qk_norm) {
            snprintf(pre, sizeof pre, "model.layers.%u.self_attn.q_norm.weight", li);
            if (!m->skip_layer && !new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, D, 0, -1))
                return QTL_ERR_NOMEM;
            snprintf(pre, sizeof pre, "model.layers.%u.self_attn.k_norm.weight", li);
            if (!m->skip_layer && !new_param(m, pre, "", PK_REPLICATED, s->params_dtype, 1, D, 0, -1))
                return QTL_ERR_NOMEM;
        }
        /* qkv_proj: vLLM's "virtual" output sizes count replicated kv heads per rank */
        uint64_t qkv[3] = {m->nh * D * tp, (uint64_t)m->nkv * D * tp, (uint64_t)m->nkv * D * tp};
        snprintf(pre, sizeof pre, "model.layers.%u.self_attn.qkv_proj", li);
        snprintf(a, sizeof a, "model.layers.%u.self_attn.q_proj", li);
        snprintf(b, sizeof b, "model.layers.%u.self_attn.k_proj", li);
        snprintf(c, sizeof c, "model.layers.%u.self_attn.v_proj", li);
        const char *const qkv_parts[3] = {a, b, c};
        int rc = add_layer(m, pre, LK_QKV, qkv, 3, s->hidden, fused ? NULL : qkv_parts, fused ? 0 : 3);
        if (rc)
            return rc;
        if (s->qkv_bias && !m->skip_layer) {
            uint64_t n = (m->nh + 2ull * m->nkv) * D;
            if (!(p = new_param(m, pre, "bias", PK_MODEL_WEIGHT, s->params_dtype, 1, n, 0, (int)m->nlayers - 1)))
                return QTL_ERR_NOMEM;
        }
        uint64_t o[1] = {s->hidden};
        snprintf(pre, sizeof pre, "model.layers.%u.self_attn.o_proj", li);
        if ((rc = add_layer(m, pre, LK_ROW, o, 1, H * D, NULL, 0)))
            return rc;
        if (qtl_config_layer_is_moe(m->cfg, li)) {
            if ((rc = qtl__moe_layer(m, li)))
                return rc;
            continue;
        }
        uint64_t gu[2] = {s->intermediate, s->intermediate};
        snprintf(pre, sizeof pre, "model.layers.%u.mlp.gate_up_proj", li);
        snprintf(a, sizeof a, "model.layers.%u.mlp.gate_proj", li);
        snprintf(b, sizeof b, "model.layers.%u.mlp.up_proj", li);
        const char *const gu_parts[2] = {a, b};
        if ((rc = add_layer(m, pre, LK_MERGED, gu, 2, s->hidden, fused ? NULL : gu_parts, fused ? 0 : 2)))
            return rc;
        uint64_t dn[1] = {s->hidden};
        snprintf(pre, sizeof pre, "model.layers.%u.mlp.down_proj", li);
        if ((rc = add_layer(m, pre, LK_ROW, dn, 1, s->intermediate, NULL, 0)))
            return rc;
    }
    m->skip_layer = 0;
    if (m->nlfail)
        return layout_failed(m);
    if (!m->last_stage)
        return QTL_OK;
    if (!new_param(m, "model.norm.weight", "", PK_REPLICATED, s->params_dtype, 1, s->hidden, 0, -1))
        return QTL_ERR_NOMEM;
    if (!s->tie_word_embeddings &&
        !new_param(m, "lm_head.weight", "", PK_VOCAB, s->params_dtype, 2, m->vocab_pp, s->hidden, -1))
        return QTL_ERR_NOMEM;
    return QTL_OK;
}

/* Checkpoint name -> vLLM parameter name and shard id (Llama's load_weights:
 * stacked_params_mapping; fused-on-disk names fall through with id None). */
int qtl__model_map(const struct lmodel *m, const char *name, char *param, size_t cap, int *shard, uint32_t *expert)
{
    uint32_t e_ = QTL_NO_EXPERT;
    if (!expert)
        expert = &e_;
    *expert = QTL_NO_EXPERT;
    static const struct {
        const char *fused, *ckpt;
        int id;
    } stacked[] = {{".qkv_proj", ".q_proj", 0},     {".qkv_proj", ".k_proj", 1}, {".qkv_proj", ".v_proj", 2},
                   {".gate_up_proj", ".gate_proj", 0}, {".gate_up_proj", ".up_proj", 1}};
    *shard = SHARD_NONE;
    if (other_stage(m, name))
        return MAP_SKIP;
    if (strstr(name, "rotary_emb.inv_freq") || strstr(name, "rotary_emb.cos_cached") ||
        strstr(name, "rotary_emb.sin_cached"))
        return MAP_SKIP;
    if (m->shape.tie_word_embeddings && !strcmp(name, "lm_head.weight"))
        return MAP_SKIP;
    if (qtl__moe_map(m, name, param, cap, shard, expert)) /* before the stacked gate/up names */
        return MAP_PARAM;
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
