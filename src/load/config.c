/* config.json → model shape; quantization_config (or hf_quant_config.json) →
 * the quantization scheme of each linear layer, resolved as vLLM does
 * (formats.md §2.6, §3.1, §4; vllm-loading.md §5). */
#include "arch.h"

#include <fnmatch.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct ct_group {
    char name[64];
    json_t *targets; /* borrowed from root */
    struct qtl_layer_quant q;
    int unsupported;
    char why[160];
};

struct qtl_config {
    struct qtl_alloc al;
    struct qtl_err err;
    char *dir;
    json_t *root;  /* config.json */
    json_t *hfq;   /* hf_quant_config.json, if any */
    json_t *qcfg;  /* the quantization config used (borrowed) */
    const char *qsource;
    struct qtl_model_shape shape;
    enum qtl_quant_method method;
    struct ct_group *groups;
    size_t ngroups;
    json_t *ignore; /* CT ignore / fp8 ignored_layers / ModelOpt exclude_modules (borrowed) */
    struct qtl_layer_quant global; /* fp8 / ModelOpt: one scheme for every quantized layer */
    json_t *mlp_only; /* Qwen3-MoE's dense layers (borrowed) */
};

/* The architectures vLLM 0.32 loads through its Llama-family load_weights
 * (stacked q/k/v -> qkv_proj, gate/up -> gate_up_proj): what each model file
 * adds (Qwen2 qkv bias, Qwen3 q/k norms) and whether its checkpoints store the
 * fused matrices themselves (Phi-3: qkv_proj, gate_up_proj on disk). */
static const struct qtl_arch_traits archs[] = {
    {"LlamaForCausalLM", QTL_ARCH_LLAMA, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    {"MistralForCausalLM", QTL_ARCH_MISTRAL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    {"Qwen2ForCausalLM", QTL_ARCH_QWEN2, 1, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    {"Qwen3ForCausalLM", QTL_ARCH_QWEN3, 0, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    {"Phi3ForCausalLM", QTL_ARCH_PHI3, 0, 0, 1, NULL, NULL, NULL, NULL, NULL, NULL, 0},
    /* models/mixtral.py: ckpt_names (w1, w2, w3), router built without quant_config */
    {"MixtralForCausalLM", QTL_ARCH_MIXTRAL, 0, 0, 0, "block_sparse_moe", "w1", "w2", "w3", "num_local_experts",
     "intermediate_size", 0},
    /* models/qwen3_moe.py: gate_proj/down_proj/up_proj, router with quant_config, q/k norms */
    {"Qwen3MoeForCausalLM", QTL_ARCH_QWEN3_MOE, 0, 1, 0, "mlp", "gate_proj", "down_proj", "up_proj", "num_experts",
     "moe_intermediate_size", 1},
};

const struct qtl_arch_traits *qtl__arch_traits(enum qtl_arch a)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (archs[i].arch == a)
            return &archs[i];
    return NULL;
}

int qtl_config_layer_is_moe(const qtl_config_t *c, uint32_t layer)
{
    const struct qtl_model_shape *s = &c->shape;
    if (!s->experts || layer >= s->layers)
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach(c->mlp_only, i, v) if (json_integer_value(v) == (json_int_t)layer) return 0;
    return s->sparse_step && (layer + 1) % s->sparse_step == 0;
}

const char *qtl_arch_name(enum qtl_arch a)
{
    const struct qtl_arch_traits *t = qtl__arch_traits(a);
    return t ? t->name : NULL;
}

static const char *const scheme_names[QTL_LS_COUNT] = {
    [QTL_LS_UNQUANTIZED] = "unquantized",        [QTL_LS_FP8_TENSOR] = "fp8",
    [QTL_LS_FP8_BLOCK] = "fp8-block",            [QTL_LS_CT_FP8_TENSOR] = "ct-w8a8-fp8-tensor",
    [QTL_LS_CT_FP8_CHANNEL] = "ct-w8a8-fp8-channel", [QTL_LS_CT_FP8_BLOCK] = "ct-w8a8-fp8-block",
    [QTL_LS_CT_INT8_TENSOR] = "ct-w8a8-int8-tensor", [QTL_LS_CT_INT8_CHANNEL] = "ct-w8a8-int8-channel",
    [QTL_LS_CT_NVFP4] = "ct-w4a4-nvfp4",         [QTL_LS_CT_NVFP4_A16] = "ct-w4a16-nvfp4",
    [QTL_LS_CT_WNA16] = "ct-wna16",              [QTL_LS_MODELOPT_FP8] = "modelopt-fp8",
    [QTL_LS_MODELOPT_NVFP4] = "modelopt-nvfp4",  [QTL_LS_MODELOPT_W4A16_NVFP4] = "modelopt-w4a16-nvfp4",
};

const char *qtl_layer_scheme_name(enum qtl_layer_scheme s)
{
    return (unsigned)s < QTL_LS_COUNT ? scheme_names[s] : NULL;
}

/* ---- shape ---- */

static int get_u32(qtl_config_t *c, const char *key, uint32_t *out, int required)
{
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        if (required)
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s/config.json: missing \"%s\"", c->dir, key);
        return 1;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (json_int_t)UINT32_MAX)
        return qtl__fail(&c->err, QTL_ERR_JSON, "%s/config.json: \"%s\" must be a positive integer", c->dir, key);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int parse_shape(qtl_config_t *c, enum qtl_dtype dtype_override)
{
    struct qtl_model_shape *s = &c->shape;
    json_t *a = json_object_get(c->root, "architectures");
    const char *an = json_string_value(json_array_get(a, 0));
    const struct qtl_arch_traits *at = NULL;
    char names[256] = "";
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        if (an && !strcmp(an, archs[i].name))
            at = &archs[i];
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", archs[i].name);
    }
    if (!at)
        return qtl__fail(&c->err, QTL_ERR_UNSUPPORTED, "%s/config.json: architecture %s%s%s is not supported (supported: %s)",
                         c->dir, an ? "'" : "", an ? an : "(none)", an ? "'" : "", names);
    s->arch = at->arch;
    int rc;
    if ((rc = get_u32(c, "hidden_size", &s->hidden, 1)) || (rc = get_u32(c, "num_attention_heads", &s->heads, 1)) ||
        (rc = get_u32(c, "intermediate_size", &s->intermediate, 1)) ||
        (rc = get_u32(c, "num_hidden_layers", &s->layers, 1)) || (rc = get_u32(c, "vocab_size", &s->vocab, 1)))
        return rc;
    s->kv_heads = s->heads;
    if ((rc = get_u32(c, "num_key_value_heads", &s->kv_heads, 0)) < 0)
        return rc;
    rc = get_u32(c, "head_dim", &s->head_dim, 0);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if (s->hidden % s->heads)
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s/config.json: no head_dim and hidden_size %u is not a multiple of "
                             "num_attention_heads %u", c->dir, s->hidden, s->heads);
        s->head_dim = s->hidden / s->heads;
    }
    if (s->heads % s->kv_heads)
        return qtl__fail(&c->err, QTL_ERR_JSON, "%s/config.json: num_attention_heads %u is not a multiple of "
                         "num_key_value_heads %u", c->dir, s->heads, s->kv_heads);
    s->tie_word_embeddings = json_is_true(json_object_get(c->root, "tie_word_embeddings"));
    s->qkv_bias = at->qkv_bias;
    s->qk_norm = at->qk_norm;
    if (at->moe_block) {
        if ((rc = get_u32(c, at->experts_key, &s->experts, 1)) ||
            (rc = get_u32(c, at->moe_inter_key, &s->moe_intermediate, 1)) ||
            (rc = get_u32(c, "num_experts_per_tok", &s->experts_per_tok, 1)))
            return rc;
        s->sparse_step = 1;
        if (at->arch == QTL_ARCH_QWEN3_MOE && (rc = get_u32(c, "decoder_sparse_step", &s->sparse_step, 0)) < 0)
            return rc;
        json_t *only = json_object_get(c->root, "mlp_only_layers");
        if (only && !json_is_array(only))
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s/config.json: \"mlp_only_layers\" must be a list of layer indices",
                             c->dir);
        size_t i;
        json_t *v;
        json_array_foreach(only, i, v) if (!json_is_integer(v) || json_integer_value(v) < 0)
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s/config.json: mlp_only_layers[%zu] is not a layer index", c->dir, i);
        c->mlp_only = only;
    }
    const char *td = json_string_value(json_object_get(c->root, "torch_dtype"));
    if (!td)
        td = json_string_value(json_object_get(c->root, "dtype"));
    s->params_dtype = td && !strcmp(td, "float16") ? QTL_DTYPE_F16 : QTL_DTYPE_BF16; /* float32 or none: bf16 */
    if (dtype_override == QTL_DTYPE_BF16 || dtype_override == QTL_DTYPE_F16)
        s->params_dtype = dtype_override;
    return QTL_OK;
}

/* ---- quantization ---- */

static int args_is(json_t *args, const char *key, const char *val)
{
    const char *v = json_string_value(json_object_get(args, key));
    return v && !strcasecmp(v, val);
}

static int args_int(json_t *args, const char *key, int def)
{
    json_t *v = json_object_get(args, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

/* A compressed-tensors group → vLLM's scheme (CompressedTensorsConfig._get_scheme_from_parts). */
static void ct_group_scheme(struct ct_group *g, json_t *grp)
{
    json_t *w = json_object_get(grp, "weights"), *ia = json_object_get(grp, "input_activations");
    struct qtl_layer_quant *q = &g->q;
    memset(q, 0, sizeof *q);
    if (!json_is_object(w)) {
        g->unsupported = 1;
        snprintf(g->why, sizeof g->why, "no \"weights\" arguments");
        return;
    }
    int bits = args_int(w, "num_bits", 8), group = args_int(w, "group_size", 0);
    int wfloat = args_is(w, "type", "float");
    const char *strategy = json_string_value(json_object_get(w, "strategy"));
    if (!strategy)
        strategy = group > 0 ? "group" : group == -1 ? "channel" : "tensor";
    int have_ia = json_is_object(ia);
    int ia_static = have_ia && json_is_false(json_object_get(ia, "dynamic"));
    q->symmetric = !json_is_false(json_object_get(w, "symmetric"));
    q->bits = (uint32_t)bits;
    if (wfloat && bits == 8) {
        if (!strcmp(strategy, "tensor"))
            q->scheme = QTL_LS_CT_FP8_TENSOR;
        else if (!strcmp(strategy, "channel"))
            q->scheme = QTL_LS_CT_FP8_CHANNEL;
        else if (!strcmp(strategy, "block")) {
            json_t *bs = json_object_get(w, "block_structure");
            q->scheme = QTL_LS_CT_FP8_BLOCK;
            q->block[0] = (uint32_t)json_integer_value(json_array_get(bs, 0));
            q->block[1] = (uint32_t)json_integer_value(json_array_get(bs, 1));
            if (!q->block[0] || !q->block[1]) {
                g->unsupported = 1;
                snprintf(g->why, sizeof g->why, "block strategy without a [rows, cols] block_structure");
            }
        } else {
            g->unsupported = 1;
            snprintf(g->why, sizeof g->why, "FP8 weights with strategy '%s'", strategy);
        }
        q->static_input = ia_static;
    } else if (wfloat && bits == 4 && (group == 16 || !strcmp(strategy, "tensor_group"))) {
        q->scheme = have_ia ? QTL_LS_CT_NVFP4 : QTL_LS_CT_NVFP4_A16;
        q->group_size = 16;
        q->static_input = have_ia; /* input_global_scale is stored for dynamic "local" and false */
    } else if (!wfloat && bits == 8 && have_ia && args_is(ia, "type", "int")) {
        q->scheme = !strcmp(strategy, "tensor") ? QTL_LS_CT_INT8_TENSOR : QTL_LS_CT_INT8_CHANNEL;
        q->static_input = ia_static;
        q->input_symmetric = !json_is_false(json_object_get(ia, "symmetric"));
        if (strcmp(strategy, "tensor") && strcmp(strategy, "channel")) {
            g->unsupported = 1;
            snprintf(g->why, sizeof g->why, "INT8 W8A8 with strategy '%s'", strategy);
        }
    } else if (!wfloat && (bits == 4 || bits == 8) && !have_ia) {
        q->scheme = QTL_LS_CT_WNA16;
        q->group_size = !strcmp(strategy, "channel") ? 0 : (uint32_t)(group > 0 ? group : 0);
        if (!strcmp(strategy, "group") && group <= 0) {
            g->unsupported = 1;
            snprintf(g->why, sizeof g->why, "group strategy without a group_size");
        }
        json_t *ao = json_object_get(w, "actorder");
        q->actorder = args_is(w, "actorder", "group") || args_is(w, "actorder", "dynamic") || json_is_true(ao);
        if (q->actorder) { /* vLLM 0.32 (compressed_tensors.py) refuses these when it reads the config */
            g->unsupported = 1;
            snprintf(g->why, sizeof g->why, "actorder=%.16s (weight_g_idx; vLLM 0.32 refuses group/dynamic ordering)",
                     json_is_string(ao) ? json_string_value(ao) : "true");
        }
    } else {
        g->unsupported = 1;
        snprintf(g->why, sizeof g->why, "%s %d-bit weights with %s activations", wfloat ? "float" : "int", bits,
                 have_ia ? "quantized" : "unquantized");
    }
}

static int py_re_translate(const char *pattern, char *buf, size_t cap);

/* A Python regular expression qtl can run as POSIX ERE (py_re_match), or why not: Python's re
 * refuses a repeat of a repeat ("multiple repeat": m**, a+*, x{2}*) where glibc's regcomp
 * takes time exponential in the run (a config.json must not hang the loader); `*?`-style lazy
 * repeats match the same names; patterns are limited to 900 bytes. NULL: fine. */
static const char *pattern_problem(const char *p)
{
    if (strlen(p) > 900)
        return "longer than 900 bytes";
    if (p[0] == '*' || p[0] == '+' || p[0] == '?' || p[0] == '{')
        return "nothing to repeat (Python's re)";
    int prev_repeat = 0;
    for (const char *s = p; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            prev_repeat = 0;
            continue;
        }
        int repeat = *s == '*' || *s == '+' || *s == '{';
        if (repeat && prev_repeat)
            return "a repeat follows a repeat (Python's re: multiple repeat)";
        if (*s == '?' && prev_repeat) { /* lazy: the same matches */
            prev_repeat = 0;
            continue;
        }
        if (*s == '{') {
            while (*s && *s != '}')
                s++;
            if (!*s)
                return "an unterminated {m,n} repeat";
        }
        prev_repeat = repeat || *s == '?' || *s == '}';
    }
    regex_t re;
    char buf[1024];
    if (py_re_translate(p, buf, sizeof buf) || regcomp(&re, buf, REG_EXTENDED | REG_NOSUB) != 0)
        return "not a regular expression";
    regfree(&re);
    return NULL;
}

/* Every "re:" entry of a target or ignore list is checked before any layer is resolved. */
static int check_patterns(qtl_config_t *c, json_t *list, const char *what)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        const char *s = json_string_value(e), *why;
        if (s && !strncmp(s, "re:", 3) && (why = pattern_problem(s + 3)))
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s: %s[%zu] '%.80s%s': %s", c->qsource, what, i, s,
                             strlen(s) > 80 ? "..." : "", why);
    }
    return QTL_OK;
}

static int load_ct(qtl_config_t *c)
{
    int rc;
    json_t *groups = json_object_get(c->qcfg, "config_groups");
    if (!json_is_object(groups) || !json_object_size(groups))
        return qtl__fail(&c->err, QTL_ERR_JSON, "%s: compressed-tensors quantization_config has no config_groups",
                         c->qsource);
    c->groups = qtl__calloc(&c->al, json_object_size(groups), sizeof *c->groups);
    if (!c->groups)
        return qtl__fail(&c->err, QTL_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *grp;
    json_object_foreach(groups, key, grp) {
        struct ct_group *g = &c->groups[c->ngroups++];
        snprintf(g->name, sizeof g->name, "%s", key);
        g->targets = json_object_get(grp, "targets");
        if (!json_is_array(g->targets))
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s: config group '%s' has no \"targets\" list", c->qsource, key);
        ct_group_scheme(g, grp);
        if ((rc = check_patterns(c, g->targets, "targets")))
            return rc;
    }
    c->ignore = json_object_get(c->qcfg, "ignore");
    return check_patterns(c, c->ignore, "ignore");
}

static int load_fp8(qtl_config_t *c)
{
    const char *act = json_string_value(json_object_get(c->qcfg, "activation_scheme"));
    if (!act || (strcmp(act, "static") && strcmp(act, "dynamic")))
        return qtl__fail(&c->err, QTL_ERR_JSON, "%s: fp8 activation_scheme must be \"static\" or \"dynamic\"", c->qsource);
    json_t *wbs = json_object_get(c->qcfg, "weight_block_size");
    struct qtl_layer_quant *q = &c->global;
    q->bits = 8;
    q->symmetric = 1;
    q->static_input = !strcmp(act, "static");
    if (json_is_array(wbs)) {
        if (json_array_size(wbs) != 2 || json_integer_value(json_array_get(wbs, 0)) <= 0 ||
            json_integer_value(json_array_get(wbs, 1)) <= 0)
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s: weight_block_size must be two positive integers", c->qsource);
        if (q->static_input)
            return qtl__fail(&c->err, QTL_ERR_JSON, "%s: block FP8 requires activation_scheme \"dynamic\" (as vLLM)",
                             c->qsource);
        q->scheme = QTL_LS_FP8_BLOCK;
        q->block[0] = (uint32_t)json_integer_value(json_array_get(wbs, 0));
        q->block[1] = (uint32_t)json_integer_value(json_array_get(wbs, 1));
    } else {
        q->scheme = QTL_LS_FP8_TENSOR;
    }
    c->ignore = json_object_get(c->qcfg, "ignored_layers");
    if (!c->ignore)
        c->ignore = json_object_get(c->qcfg, "modules_to_not_convert");
    return QTL_OK;
}

static int load_modelopt(qtl_config_t *c, const char *algo, json_t *exclude)
{
    struct qtl_layer_quant *q = &c->global;
    q->symmetric = 1;
    if (!algo)
        return qtl__fail(&c->err, QTL_ERR_JSON, "%s: ModelOpt config without quant_algo", c->qsource);
    if (!strcasecmp(algo, "FP8"))
        q->scheme = QTL_LS_MODELOPT_FP8, q->bits = 8, q->static_input = 1;
    else if (!strcasecmp(algo, "NVFP4"))
        q->scheme = QTL_LS_MODELOPT_NVFP4, q->bits = 4, q->group_size = 16, q->static_input = 1;
    else if (!strcasecmp(algo, "W4A16_NVFP4"))
        q->scheme = QTL_LS_MODELOPT_W4A16_NVFP4, q->bits = 4, q->group_size = 16;
    else
        return qtl__fail(&c->err, QTL_ERR_UNSUPPORTED, "%s: ModelOpt quant_algo '%s' is not supported (FP8, NVFP4, "
                         "W4A16_NVFP4)", c->qsource, algo);
    c->ignore = exclude;
    return QTL_OK;
}

static int load_quant(qtl_config_t *c)
{
    json_t *q = json_object_get(c->root, "quantization_config");
    if (json_is_object(q)) {
        c->qcfg = q;
        c->qsource = "config.json quantization_config";
    } else if (c->hfq) {
        json_t *qq = json_object_get(c->hfq, "quantization");
        c->qcfg = c->hfq;
        c->qsource = "hf_quant_config.json";
        c->method = QTL_QM_MODELOPT;
        return load_modelopt(c, json_string_value(json_object_get(qq, "quant_algo")),
                             json_object_get(qq, "exclude_modules"));
    } else {
        c->method = QTL_QM_NONE;
        return QTL_OK;
    }
    const char *m = json_string_value(json_object_get(q, "quant_method"));
    if (m && !strcmp(m, "compressed-tensors")) {
        c->method = QTL_QM_CT;
        return load_ct(c);
    }
    if (m && strstr(m, "fp8")) {
        c->method = QTL_QM_FP8;
        return load_fp8(c);
    }
    if (m && (!strcmp(m, "modelopt") || !strcmp(m, "modelopt_fp4"))) {
        c->method = QTL_QM_MODELOPT;
        json_t *ex = json_object_get(q, "ignore");
        if (!ex)
            ex = json_object_get(q, "exclude_modules");
        return load_modelopt(c, json_string_value(json_object_get(q, "quant_algo")), ex);
    }
    return qtl__fail(&c->err, QTL_ERR_UNSUPPORTED,
                     "%s/config.json: quant_method '%s' is not supported (compressed-tensors, fp8, modelopt)", c->dir,
                     m ? m : "(missing)");
}

static json_t *load_json(qtl_config_t *c, const char *name, int required, int *rc)
{
    char *path = qtl__asprintf(&c->al, "%s/%s", c->dir, name);
    *rc = 0;
    if (!path) {
        *rc = qtl__fail(&c->err, QTL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    struct stat sb;
    json_t *j = NULL;
    if (stat(path, &sb) != 0) {
        if (required)
            *rc = qtl__fail(&c->err, QTL_ERR_OPEN, "%s: missing (a checkpoint directory needs config.json)", path);
    } else {
        json_error_t e;
        int oom;
        j = qtl__json_load_file(path, &e, &oom);
        if (oom)
            *rc = qtl__fail(&c->err, QTL_ERR_NOMEM, "%s: out of memory", path);
        else if (!j)
            *rc = qtl__fail(&c->err, QTL_ERR_JSON, "%s: line %d column %d: %s", path, e.line, e.column, e.text);
        else if (!json_is_object(j)) {
            *rc = qtl__fail(&c->err, QTL_ERR_JSON, "%s: not a JSON object", path);
            json_decref(j);
            j = NULL;
        }
    }
    qtl__free(&c->al, path);
    return j;
}

int qtl_config_open(const char *dir, const struct qtl_open_options *opts, enum qtl_dtype dtype_override,
                    qtl_config_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, opts ? opts->allocator : NULL);
    qtl_config_t *c = *out = qtl__calloc(&al, 1, sizeof *c);
    if (!c)
        return QTL_ERR_NOMEM;
    c->al = al;
    if (!dir || !(c->dir = qtl__strdup(&al, dir)))
        return qtl__fail(&c->err, dir ? QTL_ERR_NOMEM : QTL_ERR_INVALID_ARGUMENT, "no directory");
    int rc;
    c->root = load_json(c, "config.json", 1, &rc);
    if (rc)
        return rc;
    c->hfq = load_json(c, "hf_quant_config.json", 0, &rc);
    if (rc)
        return rc;
    if ((rc = parse_shape(c, dtype_override)))
        return rc;
    return load_quant(c);
}

void qtl_config_close(qtl_config_t *c)
{
    if (!c)
        return;
    json_decref(c->root);
    json_decref(c->hfq);
    qtl__free(&c->al, c->groups);
    qtl__free(&c->al, c->dir);
    struct qtl_alloc al = c->al;
    qtl__free(&al, c);
}

const char *qtl_config_errmsg(const qtl_config_t *c) { return c ? c->err.msg : "out of memory"; }
int qtl_config_errcode(const qtl_config_t *c) { return c ? c->err.code : QTL_ERR_NOMEM; }
const struct qtl_model_shape *qtl_config_shape(const qtl_config_t *c) { return &c->shape; }
enum qtl_quant_method qtl_config_method(const qtl_config_t *c) { return c->method; }

/* ---- per-layer resolution ---- */

/* Python re.match (anchored at the start) through POSIX ERE, with \d \w \s; a lazy `?` after a
 * repeat dropped (the same names match). 0, or -1 when it does not fit in cap. */
static int py_re_translate(const char *pattern, char *buf, size_t cap)
{
    size_t o = 0;
    if (pattern[0] != '^')
        buf[o++] = '^';
    for (const char *p = pattern; *p; p++) {
        if (o + 16 >= cap)
            return -1;
        if (p[0] == '\\' && (p[1] == 'd' || p[1] == 'w' || p[1] == 's')) {
            const char *cls = p[1] == 'd' ? "[0-9]" : p[1] == 'w' ? "[A-Za-z0-9_]" : "[[:space:]]";
            size_t n = strlen(cls);
            memcpy(buf + o, cls, n);
            o += n;
            p++;
        } else if (p[0] == '\\' && p[1]) {
            buf[o++] = *p++;
            buf[o++] = *p;
        } else if (p[0] == '(' && p[1] == '?' && p[2] == ':') { /* non-capturing group */
            buf[o++] = '(';
            p += 2;
        } else if (*p == '?' && p > pattern && (p[-1] == '*' || p[-1] == '+' || p[-1] == '?' || p[-1] == '}') &&
                   !(p - 1 > pattern && p[-2] == '\\')) {
            continue; /* lazy */
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    return 0;
}

static int py_re_match(const char *pattern, const char *name)
{
    char buf[1024];
    if (py_re_translate(pattern, buf, sizeof buf))
        return 0;
    regex_t re;
    if (regcomp(&re, buf, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    int m = regexec(&re, name, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

/* One ignore entry against a module name, in the method's matching rules. */
static int ignored_by(const qtl_config_t *c, const char *entry, const char *name)
{
    if (c->method == QTL_QM_CT) {
        if (!strncmp(entry, "re:", 3))
            return py_re_match(entry + 3, name);
        return !strcmp(entry, name);
    }
    if (c->method == QTL_QM_MODELOPT) {
        size_t n = strlen(entry);
        if (n && entry[n - 1] == '*' && (n < 2 || entry[n - 2] != '.')) {
            /* "module*" also means "module" and "module.*" */
            char base[512];
            snprintf(base, sizeof base, "%.*s", (int)(n - 1), entry);
            if (!strcmp(base, name))
                return 1;
        }
        return fnmatch(entry, name, 0) == 0 || !strcmp(entry, name) || strstr(name, entry) != NULL;
    }
    /* fp8: exact module name, or a name that ends with ".entry" (e.g. "lm_head") */
    size_t ln = strlen(name), le = strlen(entry);
    return !strcmp(entry, name) || (ln > le && name[ln - le - 1] == '.' && !strcmp(name + ln - le, entry));
}

static int is_ignored(const qtl_config_t *c, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(c->ignore, i, e) {
        const char *s = json_string_value(e);
        if (s && ignored_by(c, s, name))
            return 1;
    }
    return 0;
}

/* The CT group whose targets match a module: exact names, then re: patterns
 * (each sorted), then class names ("Linear"). */
static const struct ct_group *ct_match(const qtl_config_t *c, const char *name)
{
    const struct ct_group *best = NULL;
    int best_rank = 99;
    const char *best_target = NULL;
    for (size_t gi = 0; gi < c->ngroups; gi++) {
        size_t i;
        json_t *t;
        json_array_foreach(c->groups[gi].targets, i, t) {
            const char *s = json_string_value(t);
            int rank;
            if (!s)
                continue;
            if (!strncmp(s, "re:", 3))
                rank = py_re_match(s + 3, name) ? 1 : 99;
            else if (!strcmp(s, "Linear") || !strcmp(s, "LinearBase"))
                rank = 2;
            else
                rank = !strcmp(s, name) ? 0 : 99;
            if (rank == 99)
                continue;
            /* lower rank wins; same rank: alphabetical target; identical target: later group */
            int cmp = best_target ? strcmp(s, best_target) : -1;
            if (rank < best_rank || (rank == best_rank && (cmp < 0 || cmp == 0))) {
                best = &c->groups[gi];
                best_rank = rank;
                best_target = s;
            }
        }
    }
    return best;
}

static int resolve_one(qtl_config_t *c, const char *name, struct qtl_layer_quant *q)
{
    memset(q, 0, sizeof *q);
    q->scheme = QTL_LS_UNQUANTIZED;
    /* lm_head is a ParallelLMHead, not a LinearBase: none of these methods
     * quantize it in vLLM, whatever the targets say. */
    size_t n = strlen(name);
    int lm_head = n >= 7 && !strcmp(name + n - 7, "lm_head") && (n == 7 || name[n - 8] == '.');
    if (c->method == QTL_QM_NONE || lm_head || is_ignored(c, name))
        return QTL_OK;
    if (c->method != QTL_QM_CT) {
        *q = c->global;
        return QTL_OK;
    }
    const struct ct_group *g = ct_match(c, name);
    if (!g)
        return QTL_OK; /* not targeted: unquantized */
    if (g->unsupported)
        return qtl__fail(&c->err, QTL_ERR_UNSUPPORTED, "%s: config group '%s' (targets %s): %s is not supported",
                         c->qsource, g->name, name, g->why);
    *q = g->q;
    return QTL_OK;
}

int qtl_config_layer_quant(qtl_config_t *c, const char *prefix, const char *const *parts, size_t nparts,
                           struct qtl_layer_quant *out)
{
    if (!nparts)
        return resolve_one(c, prefix, out);
    /* A fused layer: every part must resolve to the same scheme (vLLM raises otherwise). */
    struct qtl_layer_quant first, q;
    char name[512];
    for (size_t i = 0; i < nparts; i++) {
        snprintf(name, sizeof name, "%s", parts[i]);
        int rc = resolve_one(c, name, i ? &q : &first);
        if (rc)
            return rc;
        if (i && (q.scheme != first.scheme || q.bits != first.bits || q.group_size != first.group_size ||
                  q.static_input != first.static_input))
            return qtl__fail(&c->err, QTL_ERR_UNSUPPORTED,
                             "%s: fused layer %s: its parts are quantized differently ('%s' is %s, '%s' is %s); "
                             "vLLM requires all of them to share one scheme",
                             c->qsource, prefix, parts[0], qtl_layer_scheme_name(first.scheme), parts[i],
                             qtl_layer_scheme_name(q.scheme));
    }
    *out = first;
    return QTL_OK;
}
