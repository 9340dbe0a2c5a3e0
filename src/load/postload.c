/* Stage "processed": each scheme's numeric post-processing as vLLM's
 * process_weights_after_loading does it, without kernel layout changes
 * (weights stay [N, K]: no transpose, swizzle, padding or Marlin repack).
 * The table of results is docs/processed.md. */
#include "load_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct lparam *layer_param(struct lmodel *m, const struct llayer *ly, const char *suffix)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", ly->prefix, suffix);
    for (size_t i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name))
            return &m->params[i];
    return NULL;
}

static float f32_at(const struct lparam *p, uint64_t i)
{
    float v;
    memcpy(&v, p->data + 4 * i, 4);
    return v;
}

/* Replace a per-slot F32 vector by one 0-D value. */
static int to_scalar(struct lmodel *m, struct lparam *p, float v)
{
    unsigned char *d = qtl__param_new_data(m, p, 4);
    if (!d)
        return QTL_ERR_NOMEM;
    memcpy(d, &v, 4);
    p->nbytes = 4;
    p->ndim = 0;
    memset(p->shape, 0, sizeof p->shape);
    p->kind = PK_BASE;
    return QTL_OK;
}

static float max_slots(const struct lparam *p)
{
    float m = f32_at(p, 0);
    for (uint64_t i = 1; i < p->shape[0]; i++)
        m = f32_at(p, i) > m ? f32_at(p, i) : m;
    return m;
}

static int slots_equal(const struct lparam *p)
{
    for (uint64_t i = 1; i < p->shape[0]; i++)
        if (f32_at(p, i) != f32_at(p, 0))
            return 0;
    return 1;
}

/* requantize_with_max_scale (vllm-loading.md §5.2), CUDA reading: each
 * sub-matrix is dequantized in float16 — fp16(weight) * fp16(scale_i),
 * multiplied in f32 and rounded to fp16 — then quantized with the static
 * scale op: e4m3 RNE of f32(dq) * (1 / s_max), saturated to +-448. */
void qtl__requant_fp8(uint8_t *w, uint64_t rows, uint64_t cols, float s_i, float s_max)
{
    /* The new code depends on the old code only: the arithmetic runs once per
     * code (256 entries), then the sub-matrix is remapped at memory speed. */
    float sh = qtl_f16_to_f32(qtl_f32_to_f16(s_i));
    float inv = 1.0f / s_max;
    uint8_t map[256];
    for (unsigned c = 0; c < 256; c++) {
        float xh = qtl_f16_to_f32(qtl_f32_to_f16(qtl_e4m3_to_f32((uint8_t)c)));
        float dq = qtl_f16_to_f32(qtl_f32_to_f16(xh * sh));
        map[c] = qtl_f32_to_e4m3(dq * inv);
    }
    for (uint64_t k = 0; k < rows * cols; k++)
        w[k] = map[w[k]];
}

void qtl_fp8_requantize(uint8_t *w, uint64_t rows, uint64_t cols, float s_i, float s_max)
{
    qtl__requant_fp8(w, rows, cols, s_i, s_max);
}

static int rename_param(struct lparam *p, const struct llayer *ly, const char *suffix)
{
    snprintf(p->name, sizeof p->name, "%s.%s", ly->prefix, suffix);
    return QTL_OK;
}

static void drop(struct lparam *p) { p->name[0] = '\0'; }

static int add_scalar(struct lmodel *m, const struct llayer *ly, const char *suffix, enum qtl_dtype dt, const void *v)
{
    struct lparam *p = qtl__model_grow(m);
    if (!p)
        return QTL_ERR_NOMEM;
    snprintf(p->name, sizeof p->name, "%s.%s", ly->prefix, suffix);
    p->kind = PK_BASE;
    p->dtype = dt;
    p->nbytes = qtl_dtype_bits(dt) / 8;
    p->written = qtl__calloc(m->al, 1, sizeof *p->written);
    p->nunits = 1;
    if (!p->written || !qtl__param_new_data(m, p, p->nbytes))
        return QTL_ERR_NOMEM;
    memcpy(p->data, v, (size_t)p->nbytes);
    p->written[0] = 1;
    return QTL_OK;
}

/* FP8 per-tensor (fp8, compressed-tensors, ModelOpt): requantize_with_max_scale
 * of each sub-matrix to the largest slot, scales collapsed to one value. */
int qtl__process_fp8_tensor(struct lmodel *m, const struct llayer *ly, int *slots_differ)
{
    (void)slots_differ;
    struct lparam *w = layer_param(m, ly, "weight"), *ws = layer_param(m, ly, "weight_scale"), *is;
    float s_max = max_slots(ws);
    int unfused = f32_at(ws, ws->shape[0] - 1) > -448.0f;
    int skip = ly->q.scheme == QTL_LS_MODELOPT_FP8 && slots_equal(ws);
    if (unfused && !skip) {
        uint64_t start = 0;
        for (int i = 0; i < ly->L; i++) {
            uint64_t n = ly->part[i];
            if (n)
                qtl__requant_fp8(w->data + start * w->shape[1], n, w->shape[1], f32_at(ws, (uint64_t)i), s_max);
            start += n;
        }
    }
    int rc = to_scalar(m, ws, s_max);
    if (!rc && (is = layer_param(m, ly, "input_scale")))
        rc = to_scalar(m, is, max_slots(is));
    return rc;
}

/* W8A8 INT8: convert_to_channelwise for fused per-tensor scales; a static
 * asymmetric input becomes one scale, a zero point and azp_adj. */
int qtl__process_int8(struct lmodel *m, const struct llayer *ly, int *slots_differ)
{
    (void)slots_differ;
    struct lparam *ws = layer_param(m, ly, "weight_scale"), *w = layer_param(m, ly, "weight"), *is, *zp, *p;
    int rc;
    if (ly->q.scheme == QTL_LS_CT_INT8_TENSOR && ly->L > 1) { /* convert_to_channelwise */
        uint64_t N = w->shape[0], start = 0;
        float v[3];
        for (int i = 0; i < ly->L; i++)
            v[i] = f32_at(ws, (uint64_t)i);
        unsigned char *d = qtl__param_new_data(m, ws, N * 4);
        if (!d)
            return QTL_ERR_NOMEM;
        for (int i = 0; i < ly->L; i++) {
            for (uint64_t r = start; r < start + ly->part[i]; r++)
                memcpy(d + 4 * r, &v[i], 4);
            start += ly->part[i];
        }
        ws->nbytes = N * 4;
        ws->ndim = 2;
        ws->shape[0] = N;
        ws->shape[1] = 1;
        ws->kind = PK_CHANNEL;
    }
    if (!(is = layer_param(m, ly, "input_scale")))
        return QTL_OK;
    float s = f32_at(is, 0);
    if (!(zp = layer_param(m, ly, "input_zero_point")))
        return to_scalar(m, is, s); /* max over one value */
    int32_t azp = (int8_t)zp->data[0];
    float range_max = s * (float)(127 - azp), range_min = s * (float)(-128 - azp);
    float scale = (range_max - range_min) / 255.0f;
    int32_t azp2 = (int32_t)(-128.0f - range_min / scale);
    if ((rc = to_scalar(m, is, scale)))
        return rc;
    if (!qtl__param_new_data(m, zp, 4))
        return QTL_ERR_NOMEM;
    memcpy(zp->data, &azp2, 4);
    zp->dtype = QTL_DTYPE_I32;
    zp->ndim = 0;
    zp->nbytes = 4;
    /* azp_adj = column sums of the transposed weight, times the zero point: [1, N] */
    uint64_t N = w->shape[0], K = w->shape[1];
    if (!(p = qtl__model_grow(m)))
        return QTL_ERR_NOMEM;
    w = layer_param(m, ly, "weight"); /* the array may have moved */
    snprintf(p->name, sizeof p->name, "%s.azp_adj", ly->prefix);
    p->kind = PK_BASE;
    p->dtype = QTL_DTYPE_I32;
    p->ndim = 2;
    p->shape[0] = 1;
    p->shape[1] = N;
    p->nbytes = N * 4;
    p->written = qtl__calloc(m->al, 1, sizeof *p->written);
    p->nunits = 1;
    if (!p->written || !qtl__param_new_data(m, p, p->nbytes))
        return QTL_ERR_NOMEM;
    for (uint64_t n = 0; n < N; n++) {
        int32_t sum = 0;
        for (uint64_t k = 0; k < K; k++)
            sum += (int8_t)w->data[n * K + k];
        sum *= azp2;
        memcpy(p->data + 4 * n, &sum, 4);
    }
    return QTL_OK;
}

/* compressed-tensors NVFP4: weight_packed -> weight, global scales inverted
 * (max over slots), alpha. */
int qtl__process_ct_nvfp4(struct lmodel *m, const struct llayer *ly, int *slots_differ)
{
    rename_param(layer_param(m, ly, "weight_packed"), ly, "weight");
    struct lparam *wg = layer_param(m, ly, "weight_global_scale");
    *slots_differ |= !slots_equal(wg);
    float wgs = 1.0f / max_slots(wg);
    int rc = to_scalar(m, wg, wgs);
    struct lparam *ig = layer_param(m, ly, "input_global_scale");
    if (rc || !ig)
        return rc;
    *slots_differ |= !slots_equal(ig);
    float inv = max_slots(ig), igs = 1.0f / inv, alpha = igs * wgs;
    if ((rc = to_scalar(m, ig, igs)) || (rc = add_scalar(m, ly, "input_global_scale_inv", QTL_DTYPE_F32, &inv)))
        return rc;
    return add_scalar(m, ly, "alpha", QTL_DTYPE_F32, &alpha);
}

/* ModelOpt NVFP4 (W4A4 and W4A16): weight_scale_2 -> weight_global_scale, alpha. */
int qtl__process_modelopt_nvfp4(struct lmodel *m, const struct llayer *ly, int *slots_differ)
{
    struct lparam *s2 = layer_param(m, ly, "weight_scale_2"), *in = layer_param(m, ly, "input_scale");
    *slots_differ |= !slots_equal(s2);
    float wgs = max_slots(s2);
    rename_param(s2, ly, "weight_global_scale");
    if (ly->q.scheme == QTL_LS_MODELOPT_W4A16_NVFP4) { /* weight-only: the input scale goes */
        drop(in);
        return to_scalar(m, s2, wgs);
    }
    *slots_differ |= !slots_equal(in);
    float igs = max_slots(in), alpha = igs * wgs, inv = 1.0f / igs;
    rename_param(in, ly, "input_global_scale");
    int rc;
    if ((rc = to_scalar(m, s2, wgs)) || (rc = to_scalar(m, in, igs)) ||
        (rc = add_scalar(m, ly, "alpha", QTL_DTYPE_F32, &alpha)))
        return rc;
    return add_scalar(m, ly, "input_global_scale_inv", QTL_DTYPE_F32, &inv);
}

static int process_layer(struct lmodel *m, const struct llayer *ly, int *slots_differ)
{
    const struct scheme_traits *t = qtl__scheme(ly->q.scheme);
    return t && t->process ? t->process(m, ly, slots_differ) : QTL_OK;
}

int qtl__model_process(struct lmodel *m, int *slots_differ)
{
    *slots_differ = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        int rc = process_layer(m, &m->layers[i], slots_differ);
        if (rc)
            return rc;
    }
    /* compact dropped parameters */
    size_t k = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->params[i].name[0])
            m->params[k++] = m->params[i];
        else
            qtl__param_release(m, &m->params[i]);
    }
    m->nparams = k;
    return QTL_OK;
}
