/* Fuzz target: bytes = config.json [FZ_SEP hf_quant_config.json [FZ_SEP module
 * names, one a line [FZ_SEP pp byte, VLLM_PP_LAYER_PARTITION]]] (an empty part: no
 * such file), written into a tmpfs directory; opens the config,
 * reads the model shape, then resolves the quantization scheme of every
 * linear layer vLLM builds (qkv_proj from q/k/v_proj, o_proj, gate_up_proj
 * from gate/up_proj, down_proj; fused and split) for the first layers and the
 * last, lm_head, and the module names given, and splits the decoder layers
 * over pipeline stages (qtl_pp_layers: pp from the byte, the partition string
 * after it, if any). Must never crash or leak; the documented rules (lm_head
 * and quant_method none resolve unquantized, a forced dtype wins, the stages
 * cover the layers in order) must hold. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_quant(const struct qtl_layer_quant *q)
{
    if ((unsigned)q->scheme >= QTL_LS_COUNT || !qtl_layer_scheme_name(q->scheme))
        abort();
}

/* rc of one resolution; a failure is only ever UNSUPPORTED (parts that disagree, a group vLLM refuses). */
static int resolve(qtl_config_t *c, const char *prefix, const char *const *parts, size_t nparts, int none)
{
    struct qtl_layer_quant q;
    int rc = qtl_config_layer_quant(c, prefix, parts, nparts, &q);
    if (rc == QTL_OK) {
        check_quant(&q);
        if (none && q.scheme != QTL_LS_UNQUANTIZED)
            abort(); /* no quantization config: every layer is unquantized */
    } else if (rc != QTL_ERR_UNSUPPORTED || none) {
        abort();
    }
    fz_touch(qtl_config_errmsg(c), strlen(qtl_config_errmsg(c)));
    return rc;
}

static void resolve_layer(qtl_config_t *c, uint32_t li, int none)
{
    char pre[160], a[160], b[160], d[160];
    snprintf(a, sizeof a, "model.layers.%u.self_attn.q_proj", li);
    snprintf(b, sizeof b, "model.layers.%u.self_attn.k_proj", li);
    snprintf(d, sizeof d, "model.layers.%u.self_attn.v_proj", li);
    const char *const qkv[3] = {a, b, d};
    snprintf(pre, sizeof pre, "model.layers.%u.self_attn.qkv_proj", li);
    resolve(c, pre, qkv, 3, none);
    resolve(c, pre, NULL, 0, none); /* Phi-3: fused on disk */
    resolve(c, a, NULL, 0, none);
    snprintf(pre, sizeof pre, "model.layers.%u.self_attn.o_proj", li);
    resolve(c, pre, NULL, 0, none);
    snprintf(a, sizeof a, "model.layers.%u.mlp.gate_proj", li);
    snprintf(b, sizeof b, "model.layers.%u.mlp.up_proj", li);
    const char *const gu[2] = {a, b};
    snprintf(pre, sizeof pre, "model.layers.%u.mlp.gate_up_proj", li);
    resolve(c, pre, gu, 2, none);
    resolve(c, pre, NULL, 0, none);
    snprintf(pre, sizeof pre, "model.layers.%u.mlp.down_proj", li);
    resolve(c, pre, NULL, 0, none);
}

/* Stages 0..pp-1 of `layers`: contiguous, in order, covering every layer, or refused for all. */
static void pp_split(uint32_t layers, struct fz_part spec)
{
    uint32_t pp = spec.n ? (uint32_t)spec.p[0] % 8 + 1 : 2;
    char partition[128];
    size_t n = spec.n > 1 ? spec.n - 1 : 0;
    if (n > sizeof partition - 1)
        n = sizeof partition - 1;
    if (n)
        memcpy(partition, spec.p + 1, n);
    partition[n] = '\0';
    const char *part = spec.n > 1 ? partition : NULL;
    uint32_t next = 0;
    int ok = 0;
    for (uint32_t r = 0; r < pp; r++) {
        uint32_t start = UINT32_MAX, end = UINT32_MAX;
        char msg[256];
        int rc = qtl_pp_layers(layers, pp, r, part, &start, &end, msg, sizeof msg);
        if (rc != QTL_OK) {
            if (rc != QTL_ERR_INVALID_ARGUMENT || (r && ok))
                abort(); /* a partition is refused for every stage or for none */
            fz_touch(msg, strnlen(msg, sizeof msg));
            continue;
        }
        if ((r && !ok) || start != next || end < start || end > layers)
            abort();
        ok = 1;
        next = end;
    }
    if (ok && next != layers)
        abort();
    (void)qtl_pp_layers(layers, pp, pp, part, &next, &next, NULL, 0); /* a stage past the last */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_regex_bomb(data, size))
        return 0;
    const char *dir = fz_dir("config");
    struct fz_part p[4];
    size_t np = fz_split(data, size, p, 4);
    fz_write(dir, "config.json", p[0].p, p[0].n);
    if (p[1].n)
        fz_write(dir, "hf_quant_config.json", p[1].p, p[1].n);
    else
        fz_remove(dir, "hf_quant_config.json");
    static const enum qtl_dtype overrides[3] = {QTL_DTYPE_COUNT, QTL_DTYPE_BF16, QTL_DTYPE_F16};
    enum qtl_dtype dt = overrides[size % 3];

    struct fz_budget b;
    fz_budget_init(&b, (size_t)64 << 20);
    struct qtl_open_options o = {&b.a, 0};
    qtl_config_t *c = NULL;
    int rc = qtl_config_open(dir, &o, dt, &c);
    if (!c) {
        if (rc != QTL_ERR_NOMEM)
            abort();
        return 0;
    }
    fz_touch(qtl_config_errmsg(c), strlen(qtl_config_errmsg(c)));
    if (rc == QTL_OK) {
        const struct qtl_model_shape *s = qtl_config_shape(c);
        enum qtl_quant_method m = qtl_config_method(c);
        if (!s || !qtl_arch_name(s->arch) || (unsigned)m > QTL_QM_MODELOPT)
            abort();
        if (!s->hidden || !s->heads || !s->kv_heads || !s->head_dim || !s->intermediate || !s->layers || !s->vocab)
            abort(); /* every size is a positive integer */
        if ((s->params_dtype != QTL_DTYPE_BF16 && s->params_dtype != QTL_DTYPE_F16) ||
            (dt != QTL_DTYPE_COUNT && s->params_dtype != dt))
            abort();
        int none = m == QTL_QM_NONE;
        for (uint32_t li = 0; li < s->layers && li < 2; li++)
            resolve_layer(c, li, none);
        if (s->layers > 2)
            resolve_layer(c, s->layers - 1, none);
        struct qtl_layer_quant q;
        if (qtl_config_layer_quant(c, "lm_head", NULL, 0, &q) != QTL_OK || q.scheme != QTL_LS_UNQUANTIZED)
            abort(); /* lm_head is a ParallelLMHead: never quantized */
        resolve(c, "model.embed_tokens", NULL, 0, none);
        /* module names from the input, alone and as the parts of one fused layer */
        char names[8][256];
        const char *parts[8];
        size_t n = 0;
        for (size_t i = 0; np >= 3 && i < p[2].n && n < 8;) {
            size_t j = i;
            while (j < p[2].n && p[2].p[j] != '\n')
                j++;
            size_t len = j - i < sizeof names[0] - 1 ? j - i : sizeof names[0] - 1;
            memcpy(names[n], p[2].p + i, len);
            names[n][len] = '\0';
            parts[n] = names[n];
            resolve(c, names[n], NULL, 0, none);
            n++;
            i = j + 1;
        }
        if (n)
            resolve(c, "model.layers.0.fused", parts, n, none);
        if (np == 4)
            pp_split(s->layers, p[3]);
    }
    qtl_config_close(c);
    if (b.held)
        abort(); /* a closed handle holds nothing */
    return 0;
}
