/* vLLM's --load-format sharded_state, written: per rank exactly the key set of a
 * freshly created model's state_dict() (vllm-integration.md §2): the loaded-stage
 * parameters, the attention buffers and the KV-cache placeholders of the
 * quantization family, tied embeddings under lm_head.weight only, split into
 * parts of at most max_file_size bytes. vLLM copies each file tensor into that
 * state_dict (an extra key is a KeyError, a missing one a ValueError) and then
 * runs process_weights_after_loading, so the files hold stage loaded. */
#include "load_internal.h"

#include <stdio.h>
#include <string.h>

/* A tensor of the file set: a parameter's bytes or a buffer's init value. */
struct wt {
    char name[200];
    enum qtl_dtype dtype;
    uint32_t ndim;
    uint64_t shape[QTL_PARAM_DIMS];
    const void *data;
    uint64_t nbytes;
};

struct wset {
    struct wt *v;
    size_t n, cap;
    unsigned char vals[8][4]; /* init values: F32 1.0, model-dtype -1.0 / 0 */
};

static int wadd(qtl_load_t *l, struct wset *w, const char *name, enum qtl_dtype dt, uint32_t ndim, uint64_t dim0,
                const void *data, uint64_t nbytes)
{
    if (qtl__grow(&l->al, (void **)&w->v, &w->cap, w->n + 1, sizeof *w->v))
        return QTL_ERR_NOMEM;
    struct wt *t = &w->v[w->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = dim0;
    t->data = data;
    t->nbytes = nbytes;
    return QTL_OK;
}

static int have(const struct wset *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->v[i].name, name))
            return 1;
    return 0;
}

/* A value of dtype dt (F32, BF16 or F16) into 2 or 4 bytes. */
static void value(enum qtl_dtype dt, float f, unsigned char *out)
{
    qtl__convert(QTL_DTYPE_F32, (const unsigned char *)&f, dt, out, 1);
}

/* The buffers and placeholders of one attention layer that the checkpoint did not fill. */
static int attention_keys(qtl_load_t *l, struct wset *w, uint32_t li, enum qtl_quant_method qm)
{
    static const char *const bufs[] = {"_k_scale", "_v_scale", "_q_scale", "_prob_scale"};
    enum qtl_dtype md = l->m.shape.params_dtype;
    char name[200];
    int rc = QTL_OK;
    /* every Attention: persistent F32 0-D buffers = 1.0 (set_default_quant_scales) */
    for (size_t i = 0; i < 4 && !rc; i++) {
        snprintf(name, sizeof name, "model.layers.%u.self_attn.attn.%s", li, bufs[i]);
        rc = wadd(l, w, name, QTL_DTYPE_F32, 0, 0, w->vals[0], 4);
    }
    if (qm == QTL_QM_FP8 || qm == QTL_QM_MODELOPT) { /* BaseKVCacheMethod: model-dtype 0-D = -1.0 */
        static const char *const kv[] = {"q_scale", "k_scale", "v_scale", "prob_scale"};
        for (size_t i = 0; i < 4 && !rc; i++) {
            snprintf(name, sizeof name, "model.layers.%u.self_attn.attn.%s", li, kv[i]);
            if (!have(w, name))
                rc = wadd(l, w, name, md, 0, 0, w->vals[1], qtl_dtype_bits(md) / 8);
        }
    } else if (qm == QTL_QM_CT) { /* CompressedTensorsKVCacheMethod: F32 [1] = 1.0, zero points [1] = 0 */
        static const char *const kv[] = {"k", "v", "q"};
        for (size_t i = 0; i < 3 && !rc; i++) {
            snprintf(name, sizeof name, "model.layers.%u.self_attn.attn.%s_scale", li, kv[i]);
            if (!have(w, name))
                rc = wadd(l, w, name, QTL_DTYPE_F32, 1, 1, w->vals[0], 4);
            snprintf(name, sizeof name, "model.layers.%u.self_attn.attn.%s_zero_point", li, kv[i]);
            if (!rc && !have(w, name))
                rc = wadd(l, w, name, md, 1, 1, w->vals[2], qtl_dtype_bits(md) / 8);
        }
    }
    return rc;
}

/* A checkpoint KV scale (qtl holds it as F32 0-D) in the dtype and shape vLLM's
 * placeholder has: model dtype 0-D (fp8, ModelOpt), F32 [1] (compressed-tensors). */
static int kv_scale_param(const struct lparam *p)
{
    const char *a = strstr(p->name, ".self_attn.attn.");
    return a && p->ndim == 0 && p->dtype == QTL_DTYPE_F32 && !strchr(a + 16, '.') && a[16] != '_';
}

static int build_set(qtl_load_t *l, struct wset *w, unsigned char (*kv)[4], size_t nkv)
{
    enum qtl_quant_method qm = l->cfg ? qtl_config_method(l->cfg) : QTL_QM_NONE;
    enum qtl_dtype md = l->m.shape.params_dtype;
    value(QTL_DTYPE_F32, 1.0f, w->vals[0]);
    value(md, -1.0f, w->vals[1]);
    memset(w->vals[2], 0, 4);
    size_t k = 0;
    int tied_here = l->m.shape.tie_word_embeddings && l->m.last_stage;
    for (size_t i = 0; i < l->m.nparams; i++) {
        const struct lparam *p = &l->m.params[i];
        if (!p->nbytes)
            continue; /* vLLM drops zero-element tensors */
        const char *name = tied_here && !strcmp(p->name, "model.embed_tokens.weight") ? "lm_head.weight" : p->name;
        if (kv_scale_param(p) && qm != QTL_QM_NONE && k < nkv) {
            enum qtl_dtype dt = qm == QTL_QM_CT ? QTL_DTYPE_F32 : md;
            qtl__convert(QTL_DTYPE_F32, p->data, dt, kv[k], 1);
            int rc = wadd(l, w, name, dt, qm == QTL_QM_CT ? 1 : 0, 1, kv[k++], qtl_dtype_bits(dt) / 8);
            if (rc)
                return rc;
            continue;
        }
        int rc = wadd(l, w, name, p->dtype, p->ndim, 0, p->data, p->nbytes);
        if (rc)
            return rc;
        memcpy(w->v[w->n - 1].shape, p->shape, sizeof p->shape);
    }
    for (uint32_t li = l->m.layer_start; li < l->m.layer_end; li++) {
        int rc = attention_keys(l, w, li, qm);
        if (rc)
            return rc;
    }
    return QTL_OK;
}

static int write_part(qtl_load_t *l, const struct wset *w, size_t a, size_t b, const char *path, const char *source,
                      const char *kv_list, size_t part, size_t nparts)
{
    static const char *const qm_names[] = {"none", "fp8", "compressed-tensors", "modelopt"};
    qtl_st_writer_t *wr = NULL;
    char num[32];
    int rc = qtl_st_writer_new(&l->al.a, &wr);
    if (rc)
        return qtl__fail(&l->err, rc, "out of memory");
    enum qtl_quant_method qm = l->cfg ? qtl_config_method(l->cfg) : QTL_QM_NONE;
    const char *meta[][2] = {{"format", "pt"},
                             {"qtl.for", "vllm"},
                             {"qtl.vllm", "0.32.0"},
                             {"qtl.stage", "loaded"},
                             {"qtl.source", source ? source : ""},
                             {"qtl.dtype", l->m.shape.params_dtype == QTL_DTYPE_F16 ? "float16" : "bfloat16"},
                             {"qtl.quantization", qm_names[qm < 4 ? qm : 0]},
                             /* the KV scales the checkpoint gave: the others are vLLM's init values */
                             {"qtl.kv_scales", kv_list}};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0] && !rc; i++)
        rc = qtl_st_writer_set_metadata(wr, meta[i][0], meta[i][1]);
    const struct {
        const char *key;
        uint64_t v;
    } nums[] = {{"qtl.tp", l->m.tp}, {"qtl.rank", l->m.rank}, {"qtl.pp", l->m.pp},
                {"qtl.pp_rank", l->m.pp_rank}, {"qtl.part", part}, {"qtl.parts", nparts}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && !rc; i++) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)nums[i].v);
        rc = qtl_st_writer_set_metadata(wr, nums[i].key, num);
    }
    for (size_t i = a; i < b && !rc; i++)
        rc = qtl_st_writer_add(wr, w->v[i].name, w->v[i].dtype, w->v[i].ndim, w->v[i].shape, w->v[i].data,
                               w->v[i].nbytes);
    if (!rc && (rc = qtl_st_writer_write_file(wr, path)))
        qtl__fail(&l->err, rc, "%s", qtl_st_writer_errmsg(wr));
    else if (rc)
        qtl__fail(&l->err, rc, "%s", qtl_st_writer_errmsg(wr));
    qtl_st_writer_free(wr);
    return rc;
}

int qtl_load_write_vllm(qtl_load_t *l, const char *dir, const char *source, uint64_t max_file_size, size_t *nparts)
{
    if (nparts)
        *nparts = 0;
    if (!l->ran || l->processed || l->pre_processed)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT,
                         "vLLM's sharded_state needs stage loaded: it copies the files into a fresh model and then "
                         "runs process_weights_after_loading itself (processed state would be post-processed twice)");
    if (l->verify != QTL_READ_ALL)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_write_vllm needs a load that read everything");
    struct wset w = {0};
    unsigned char(*kv)[4] = qtl__calloc(&l->al, l->m.nparams ? l->m.nparams : 1, sizeof *kv);
    int rc = kv ? build_set(l, &w, kv, l->m.nparams) : QTL_ERR_NOMEM;
    if (rc == QTL_ERR_NOMEM)
        qtl__fail(&l->err, rc, "out of memory");
    /* parts: a new one before a tensor that would take the current one past max_file_size */
    size_t cuts[4096], ncut = 0;
    uint64_t in_part = 0;
    for (size_t i = 0; !rc && i < w.n; i++) {
        if (max_file_size && in_part && in_part + w.v[i].nbytes > max_file_size) {
            if (ncut == sizeof cuts / sizeof cuts[0]) {
                rc = qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "more than %zu parts: raise max_file_size", ncut);
                break;
            }
            cuts[ncut++] = i;
            in_part = 0;
        }
        in_part += w.v[i].nbytes;
    }
    size_t kv_len = 1;
    for (size_t i = 0; i < l->m.nparams; i++)
        kv_len += kv_scale_param(&l->m.params[i]) ? strlen(l->m.params[i].name) + 1 : 0;
    char *kv_list = rc ? NULL : qtl__malloc(&l->al, kv_len);
    if (!rc && !kv_list)
        rc = qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    for (size_t i = 0, o = 0; kv_list && i < l->m.nparams; i++) {
        kv_list[o] = 0;
        if (kv_scale_param(&l->m.params[i]))
            o += (size_t)snprintf(kv_list + o, kv_len - o, "%s%s", o ? "," : "", l->m.params[i].name);
    }
    int mk = rc ? 0 : qtl__mkdirs(dir, 0);
    if (mk)
        rc = qtl__fail(&l->err, QTL_ERR_OPEN, "%s: cannot create the directory: %s", dir, strerror(mk));
    for (size_t p = 0; !rc && p <= ncut; p++) {
        char path[4200];
        qtl_shard_file_name(path, sizeof path, dir, l->m.rank, l->m.pp_rank, l->m.pp, (uint32_t)p);
        rc = write_part(l, &w, p ? cuts[p - 1] : 0, p < ncut ? cuts[p] : w.n, path, source, kv_list ? kv_list : "", p,
                        ncut + 1);
    }
    if (!rc && nparts)
        *nparts = ncut + 1;
    qtl__free(&l->al, w.v);
    qtl__free(&l->al, kv);
    qtl__free(&l->al, kv_list);
    return rc;
}

/* Reading such a directory back: the buffers and placeholders no parameter of
 * qtl's model holds (vLLM's init values, not checkpoint data). */
int qtl__vllm_only_key(const char *name)
{
    const char *a = strstr(name, ".self_attn.attn.");
    return a != NULL;
}
