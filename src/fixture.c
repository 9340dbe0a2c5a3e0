/* Fixture generator: small, realistic checkpoints in every quantization
 * format qtl reads, split on disk (Llama) or fused on disk (Phi-3), from the
 * same deterministic float master weights.
 *
 * Determinism: an integer PRNG makes the master weights (bf16-representable
 * floats); quantization uses only IEEE +,-,*,/ and nearbyint (built with
 * -ffp-contract=off), so the same arguments give the same bytes in every build.
 * Size: tensors are produced at write time, one stored module at a time. */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- schemes ------------------------------------------------------------------ */

enum family { FAM_NONE, FAM_AUTOFP8, FAM_DEEPSEEK, FAM_CT, FAM_MODELOPT };
enum wfmt { W_BF16, W_FP8_TENSOR, W_FP8_CHANNEL, W_FP8_BLOCK, W_INT8_TENSOR, W_INT8_CHANNEL, W_NVFP4, W_PACK };
enum act { ACT_NONE, ACT_FP8_STATIC, ACT_INT8_STATIC, ACT_INT8_ASYM, ACT_NVFP4, ACT_DYNAMIC };

struct fx_scheme {
    const char *name;
    enum family fam;
    enum wfmt w;
    enum act act;
    uint32_t bits;    /* W_PACK */
    uint32_t group;   /* W_PACK group size */
    int asym, actorder;
    const char *what; /* for --help */
};

static const struct fx_scheme schemes[] = {
    {"bf16", FAM_NONE, W_BF16, ACT_NONE, 0, 0, 0, 0, "unquantized"},
    {"fp8", FAM_AUTOFP8, W_FP8_TENSOR, ACT_FP8_STATIC, 0, 0, 0, 0, "AutoFP8 per-tensor, static activations, 0-D scales"},
    {"fp8-dynamic", FAM_AUTOFP8, W_FP8_TENSOR, ACT_DYNAMIC, 0, 0, 0, 0, "AutoFP8 per-tensor, dynamic activations"},
    {"fp8-block", FAM_DEEPSEEK, W_FP8_BLOCK, ACT_DYNAMIC, 0, 0, 0, 0, "DeepSeek weight_scale_inv, 128x128 blocks"},
    {"ct-fp8", FAM_CT, W_FP8_TENSOR, ACT_FP8_STATIC, 0, 0, 0, 0, "compressed-tensors W8A8 FP8 per-tensor, [1] scales"},
    {"ct-fp8-channel", FAM_CT, W_FP8_CHANNEL, ACT_DYNAMIC, 0, 0, 0, 0, "compressed-tensors FP8_DYNAMIC (channel)"},
    {"ct-fp8-block", FAM_CT, W_FP8_BLOCK, ACT_DYNAMIC, 0, 0, 0, 0, "compressed-tensors FP8_BLOCK [128,128]"},
    {"ct-int8", FAM_CT, W_INT8_TENSOR, ACT_INT8_STATIC, 0, 0, 0, 0, "compressed-tensors W8A8 INT8 per-tensor, static input"},
    {"ct-int8-channel", FAM_CT, W_INT8_CHANNEL, ACT_DYNAMIC, 0, 0, 0, 0, "compressed-tensors W8A8 INT8 channel, dynamic token"},
    {"ct-int8-asym", FAM_CT, W_INT8_CHANNEL, ACT_INT8_ASYM, 0, 0, 0, 0, "compressed-tensors INT8 channel, static asym input (zero point)"},
    {"ct-nvfp4", FAM_CT, W_NVFP4, ACT_NVFP4, 0, 16, 0, 0, "compressed-tensors NVFP4 (W4A4)"},
    {"ct-nvfp4a16", FAM_CT, W_NVFP4, ACT_NONE, 0, 16, 0, 0, "compressed-tensors NVFP4A16"},
    {"ct-w4a16", FAM_CT, W_PACK, ACT_NONE, 4, 128, 0, 0, "compressed-tensors pack-quantized int4 g128 symmetric"},
    {"ct-w4a16-asym", FAM_CT, W_PACK, ACT_NONE, 4, 128, 1, 0, "pack-quantized int4 g128 with zero points"},
    {"ct-w8a16", FAM_CT, W_PACK, ACT_NONE, 8, 128, 0, 0, "pack-quantized int8 g128"},
    {"ct-w4a16-actorder", FAM_CT, W_PACK, ACT_NONE, 4, 128, 0, 1, "int4 g128 with g_idx (actorder=group; vLLM 0.32 refuses it)"},
    {"modelopt-fp8", FAM_MODELOPT, W_FP8_TENSOR, ACT_FP8_STATIC, 0, 0, 0, 0, "ModelOpt FP8"},
    {"modelopt-nvfp4", FAM_MODELOPT, W_NVFP4, ACT_NVFP4, 0, 16, 0, 0, "ModelOpt NVFP4"},
};
#define NSCHEMES (sizeof schemes / sizeof schemes[0])

const char *qtl_fixture_scheme_name(size_t i) { return i < NSCHEMES ? schemes[i].name : NULL; }
const char *qtl_fixture_scheme_help(size_t i) { return i < NSCHEMES ? schemes[i].what : NULL; }

void qtl_fixture_defaults(struct qtl_fixture_options *o)
{
    memset(o, 0, sizeof *o);
    o->arch = QTL_FIXTURE_LLAMA;
    o->scheme = "bf16";
    o->layers = 2;
    o->hidden = 1024;
    o->heads = 8;
    o->kv_heads = 2;
    o->head_dim = 128;
    o->intermediate = 2048;
    o->vocab = 1024;
    o->shards = 2;
}

/* ---- deterministic master weights ----------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Logical parts; the stored modules are these or fusions of them. */
enum part { P_Q, P_K, P_V, P_O, P_GATE, P_UP, P_DOWN, P_NPARTS };
static const char *const part_names[P_NPARTS] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

/* One row of bf16-representable values: sign, 7 random mantissa bits, an
 * exponent that varies by row (outlier rows), element and projection
 * (projections of one fused matrix get different ranges: q/k/v x1, x2, x0.5;
 * gate/up x2, x0.5, so per-part and shared scales differ as in real models).
 * Never zero. */
static void master_row(uint64_t seed, uint64_t tag, uint64_t r, uint64_t cols, float *out)
{
    static const int part_exp[8] = {0, 1, -1, 0, 1, -1, 0, 0};
    uint64_t row = mix(seed ^ mix(tag * 0x100000001B3ull + r));
    int base = -9 + (int)(row % 4) + part_exp[tag & 7]; /* row amplitude 2^-10 .. 2^-5 */
    for (uint64_t c = 0; c < cols; c++) {
        uint64_t h = mix(row ^ (c * 0xD6E8FEB86659FD93ull));
        int e = base - (int)(h % 5);
        uint32_t bits = (uint32_t)((h >> 8) & 1) << 31 | (uint32_t)(127 + e) << 23 | (uint32_t)((h >> 16) & 0x7F) << 16;
        out[c] = u2f(bits);
    }
}

static uint64_t part_tag(uint32_t layer, int part) { return ((uint64_t)layer << 8) | (uint64_t)part; }

struct dims {
    uint64_t rows[P_NPARTS], cols[P_NPARTS];
};

static void part_dims(const struct qtl_fixture_options *o, struct dims *d)
{
    uint64_t qd = (uint64_t)o->heads * o->head_dim, kd = (uint64_t)o->kv_heads * o->head_dim;
    uint64_t r[P_NPARTS] = {qd, kd, kd, o->hidden, o->intermediate, o->intermediate, o->hidden};
    uint64_t c[P_NPARTS] = {o->hidden, o->hidden, o->hidden, qd, o->hidden, o->hidden, o->intermediate};
    memcpy(d->rows, r, sizeof r);
    memcpy(d->cols, c, sizeof c);
}

int qtl_fixture_master(const struct qtl_fixture_options *o, uint32_t layer, const char *part, float *dst, uint64_t n)
{
    struct dims d;
    part_dims(o, &d);
    for (int p = 0; p < P_NPARTS; p++) {
        if (strcmp(part, part_names[p]))
            continue;
        if (n != d.rows[p] * d.cols[p])
            return QTL_ERR_INVALID_ARGUMENT;
        for (uint64_t r = 0; r < d.rows[p]; r++)
            master_row(o->seed, part_tag(layer, p), r, d.cols[p], dst + r * d.cols[p]);
        return QTL_OK;
    }
    return QTL_ERR_INVALID_ARGUMENT;
}

/* Synthetic calibrated input range of a part (static activation scales). */
static float input_amax(uint64_t seed, uint32_t layer, int part)
{
    return (float)(16 + mix(seed ^ mix(0xA11CEull + part_tag(layer, part))) % 48) / 16.0f; /* 1 .. 3.94 */
}

/* ---- stored modules ------------------------------------------------------------------ */

struct module {
    char prefix[128]; /* model.layers.L.self_attn.qkv_proj */
    uint32_t layer;
    int parts[3], nparts;
    int domain[3], ndomain; /* parts whose union gives per-tensor quantities */
    int perm_id;            /* act-order permutation source */
    uint64_t rows, cols;
    int have_q;             /* domain quantities computed (cached: one pass over the domain) */
    float w_amax, in_amax;
};

struct gen {
    const struct qtl_fixture_options *o;
    const struct fx_scheme *s;
    struct dims d;
    char *err;
    size_t cap;
};

/* Float matrix of a set of parts stacked by rows. */
static float *materialize(const struct gen *g, uint32_t layer, const int *parts, int n, uint64_t *rows, uint64_t *cols)
{
    uint64_t R = 0, C = g->d.cols[parts[0]];
    for (int i = 0; i < n; i++)
        R += g->d.rows[parts[i]];
    uint64_t numel = R * C;
    float *m = malloc((size_t)(numel ? numel : 1) * sizeof *m);
    if (!m)
        return NULL;
    uint64_t r0 = 0;
    for (int i = 0; i < n; i++) {
        int64_t nr = (int64_t)g->d.rows[parts[i]];
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (nr * (int64_t)C > (1 << 20))
#endif
        for (int64_t r = 0; r < nr; r++) /* rows are independent: same bytes for any thread count */
            master_row(g->o->seed, part_tag(layer, parts[i]), (uint64_t)r, C, m + (r0 + (uint64_t)r) * C);
        r0 += g->d.rows[parts[i]];
    }
    *rows = R;
    *cols = C;
    return m;
}

static float absmax(const float *m, uint64_t n)
{
    float a = 0.0f;
    for (uint64_t i = 0; i < n; i++) {
        float v = fabsf(m[i]);
        a = v > a ? v : a;
    }
    return a;
}

static float bf16_round(float f) { return qtl_bf16_to_f32(qtl_f32_to_bf16(f)); }

/* Scale as stored: BF16 for compressed-tensors (the model dtype), F32 otherwise. */
static float stored_scale(const struct gen *g, float s) { return g->s->fam == FAM_CT ? bf16_round(s) : s; }

static int clamp_round(float x, int lo, int hi)
{
    float v = nearbyintf(x);
    return v < (float)lo ? lo : v > (float)hi ? hi : (int)v;
}

/* Domain-wide per-tensor quantities of a module. */
struct tensor_q {
    float w_amax;  /* over the domain */
    float in_amax; /* max over the domain parts */
};

static int domain_q(const struct gen *g, struct module *m, struct tensor_q *t)
{
    if (m->have_q) {
        t->w_amax = m->w_amax, t->in_amax = m->in_amax;
        return QTL_OK;
    }
    uint64_t R, C;
    float *dm = materialize(g, m->layer, m->domain, m->ndomain, &R, &C);
    if (!dm)
        return QTL_ERR_NOMEM;
    t->w_amax = absmax(dm, R * C);
    free(dm);
    t->in_amax = 0.0f;
    for (int i = 0; i < m->ndomain; i++) {
        float a = input_amax(g->o->seed, m->layer, m->domain[i]);
        t->in_amax = a > t->in_amax ? a : t->in_amax;
    }
    m->have_q = 1, m->w_amax = t->w_amax, m->in_amax = t->in_amax;
    return QTL_OK;
}

/* Act-order: rank of each column in a deterministic permutation. */
static void act_order_gidx(const struct gen *g, const struct module *m, int32_t *gidx, uint64_t cols, uint32_t group)
{
    uint32_t *perm = malloc(cols * sizeof *perm);
    if (!perm)
        return;
    for (uint64_t c = 0; c < cols; c++)
        perm[c] = (uint32_t)c;
    uint64_t st = mix(g->o->seed ^ 0xAC7ull ^ part_tag(m->layer, m->perm_id));
    for (uint64_t i = cols - 1; i > 0; i--) {
        st = mix(st);
        uint64_t j = st % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (uint64_t rank = 0; rank < cols; rank++)
        gidx[perm[rank]] = (int32_t)(rank / group);
    free(perm);
}

/* ---- per-module tensors ---- */

enum tkind { T_WEIGHT, T_SCALE, T_SCALE2, T_GLOBAL, T_INPUT_SCALE, T_INPUT_ZP, T_INPUT_GLOBAL, T_ZP, T_GIDX, T_SHAPE,
             T_PLAIN };

struct tensor {
    char name[192];
    enum qtl_dtype dtype;
    uint32_t ndim;
    uint64_t shape[2];
    uint64_t nbytes;
    enum tkind kind;
    int module; /* index into modules, -1 for plain tensors */
    int plain_tag; /* plain tensors: what to generate */
    uint64_t plain_rows, plain_cols;
    int shard;
    int aux;
};

struct fill_ctx {
    struct gen *g;
    struct module *m;
    const struct tensor *t;
};

static void put_bits(uint32_t *words, uint64_t stride, uint64_t pos, uint32_t bits, uint32_t v)
{
    for (uint32_t b = 0; b < bits; b++, pos++)
        if ((v >> b) & 1u)
            words[(pos / 32) * stride] |= 1u << (pos % 32);
}

static void store_scalar(const struct tensor *t, void *dst, float v)
{
    if (t->dtype == QTL_DTYPE_BF16) {
        uint16_t h = qtl_f32_to_bf16(v);
        memcpy(dst, &h, 2);
    } else {
        memcpy(dst, &v, 4);
    }
}

/* Quantize module m and write the bytes of tensor t into dst. */
static int fill_module(void *ud, void *dst, uint64_t nbytes)
{
    struct fill_ctx *fc = ud;
    struct gen *g = fc->g;
    struct module *m = fc->m;
    const struct tensor *t = fc->t;
    const struct fx_scheme *s = g->s;
    memset(dst, 0, (size_t)nbytes);
    struct tensor_q tq;
    int rc = domain_q(g, m, &tq);
    if (rc)
        return rc;
    /* Per-tensor values and their stored forms. */
    float in_scale = 0, in_global = 0;
    int in_zp = 0;
    if (s->act == ACT_FP8_STATIC)
        in_scale = stored_scale(g, tq.in_amax / 448.0f);
    else if (s->act == ACT_INT8_STATIC)
        in_scale = stored_scale(g, tq.in_amax / 127.5f);
    else if (s->act == ACT_INT8_ASYM) {
        float mn = -0.75f * tq.in_amax, mx = tq.in_amax;
        in_scale = stored_scale(g, (mx - mn) / 255.0f);
        in_zp = clamp_round(-128.0f - mn / in_scale, -128, 127);
    } else if (s->act == ACT_NVFP4) {
        in_global = s->fam == FAM_MODELOPT ? tq.in_amax / 2688.0f : 2688.0f / tq.in_amax;
    }
    switch (t->kind) {
    case T_INPUT_SCALE: store_scalar(t, dst, s->act == ACT_NVFP4 ? in_global : in_scale); return QTL_OK;
    case T_INPUT_GLOBAL: store_scalar(t, dst, in_global); return QTL_OK;
    case T_INPUT_ZP: *(int8_t *)dst = (int8_t)in_zp; return QTL_OK;
    default: break;
    }
    float w_tensor_scale = 0, nv_global = 0;
    if (s->w == W_FP8_TENSOR)
        w_tensor_scale = stored_scale(g, tq.w_amax / 448.0f);
    else if (s->w == W_INT8_TENSOR)
        w_tensor_scale = stored_scale(g, tq.w_amax / 127.5f);
    else if (s->w == W_NVFP4)
        nv_global = s->fam == FAM_MODELOPT ? tq.w_amax / 2688.0f : 2688.0f / tq.w_amax;
    if (t->kind == T_SCALE && (s->w == W_FP8_TENSOR || s->w == W_INT8_TENSOR)) {
        store_scalar(t, dst, w_tensor_scale);
        return QTL_OK;
    }
    if (t->kind == T_GLOBAL || t->kind == T_SCALE2) {
        store_scalar(t, dst, nv_global);
        return QTL_OK;
    }
    if (t->kind == T_SHAPE) {
        int64_t sh[2] = {(int64_t)m->rows, (int64_t)m->cols};
        memcpy(dst, sh, 16);
        return QTL_OK;
    }
    uint64_t R, C;
    float *w = materialize(g, m->layer, m->parts, m->nparts, &R, &C);
    if (!w)
        return QTL_ERR_NOMEM;
    int32_t *gidx = NULL;
    if (s->w == W_PACK && s->actorder) {
        gidx = malloc(C * sizeof *gidx);
        if (!gidx) {
            free(w);
            return QTL_ERR_NOMEM;
        }
        act_order_gidx(g, m, gidx, C, s->group);
        if (t->kind == T_GIDX) {
            memcpy(dst, gidx, C * 4);
            free(gidx);
            free(w);
            return QTL_OK;
        }
    }
    uint8_t *d8 = dst;
    switch (s->w) {
    case W_BF16:
        for (uint64_t i = 0; i < R * C; i++) {
            uint16_t h = qtl_f32_to_bf16(w[i]);
            memcpy(d8 + 2 * i, &h, 2);
        }
        break;
    case W_FP8_TENSOR:
        for (uint64_t i = 0; i < R * C; i++)
            d8[i] = qtl_f32_to_e4m3(w[i] / w_tensor_scale);
        break;
    case W_INT8_TENSOR:
        for (uint64_t i = 0; i < R * C; i++)
            d8[i] = (uint8_t)(int8_t)clamp_round(w[i] / w_tensor_scale, -128, 127);
        break;
    case W_FP8_CHANNEL:
    case W_INT8_CHANNEL:
        for (uint64_t r = 0; r < R; r++) {
            float a = absmax(w + r * C, C);
            float sc = stored_scale(g, s->w == W_FP8_CHANNEL ? a / 448.0f : a / 127.5f);
            if (t->kind == T_SCALE) {
                store_scalar(t, d8 + r * (t->dtype == QTL_DTYPE_BF16 ? 2 : 4), sc);
                continue;
            }
            for (uint64_t c = 0; c < C; c++)
                d8[r * C + c] = s->w == W_FP8_CHANNEL ? qtl_f32_to_e4m3(w[r * C + c] / sc)
                                                      : (uint8_t)(int8_t)clamp_round(w[r * C + c] / sc, -128, 127);
        }
        break;
    case W_FP8_BLOCK: {
        uint64_t nbr = (R + 127) / 128, nbc = (C + 127) / 128;
        for (uint64_t br = 0; br < nbr; br++)
            for (uint64_t bc = 0; bc < nbc; bc++) {
                float a = 0.0f;
                for (uint64_t r = br * 128; r < R && r < br * 128 + 128; r++)
                    for (uint64_t c = bc * 128; c < C && c < bc * 128 + 128; c++)
                        a = fabsf(w[r * C + c]) > a ? fabsf(w[r * C + c]) : a;
                float sc = stored_scale(g, a / 448.0f);
                if (t->kind == T_SCALE) {
                    store_scalar(t, d8 + (br * nbc + bc) * (t->dtype == QTL_DTYPE_BF16 ? 2 : 4), sc);
                    continue;
                }
                for (uint64_t r = br * 128; r < R && r < br * 128 + 128; r++)
                    for (uint64_t c = bc * 128; c < C && c < bc * 128 + 128; c++)
                        d8[r * C + c] = qtl_f32_to_e4m3(w[r * C + c] / sc);
            }
        break;
    }
    case W_NVFP4: {
        uint64_t ng = C / 16;
        for (uint64_t r = 0; r < R; r++)
            for (uint64_t gi = 0; gi < ng; gi++) {
                float a = absmax(w + r * C + gi * 16, 16);
                float local = s->fam == FAM_MODELOPT ? a / (6.0f * nv_global) : nv_global * a / 6.0f;
                if (local < 0x1p-9f)
                    local = 0x1p-9f; /* never a zero block scale */
                uint8_t code = qtl_f32_to_e4m3(local);
                if (t->kind == T_SCALE) {
                    d8[r * ng + gi] = code;
                    continue;
                }
                float eff = s->fam == FAM_MODELOPT ? qtl_e4m3_to_f32(code) * nv_global : qtl_e4m3_to_f32(code) / nv_global;
                for (uint64_t j = 0; j < 16; j += 2) {
                    uint64_t c = gi * 16 + j;
                    uint8_t lo = qtl_f32_to_e2m1(w[r * C + c] / eff), hi = qtl_f32_to_e2m1(w[r * C + c + 1] / eff);
                    d8[r * (C / 2) + c / 2] = (uint8_t)(lo | hi << 4);
                }
            }
        break;
    }
    case W_PACK: {
        uint32_t bits = s->bits, G = s->group;
        int32_t qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
        uint64_t ng = (C + G - 1) / G, wpr = (C * bits + 31) / 32;
        float *gmin = malloc(ng * sizeof *gmin), *gmax = malloc(ng * sizeof *gmax);
        float *gs = malloc(ng * sizeof *gs);
        int32_t *gz = malloc(ng * sizeof *gz);
        if (!gmin || !gmax || !gs || !gz) {
            free(gmin), free(gmax), free(gs), free(gz), free(gidx), free(w);
            return QTL_ERR_NOMEM;
        }
        for (uint64_t r = 0; r < R; r++) {
            for (uint64_t k = 0; k < ng; k++)
                gmin[k] = 0.0f, gmax[k] = 0.0f; /* min <= 0 <= max, as the observer clamps */
            for (uint64_t c = 0; c < C; c++) {
                uint64_t k = gidx ? (uint64_t)gidx[c] : c / G;
                float v = w[r * C + c];
                gmin[k] = v < gmin[k] ? v : gmin[k];
                gmax[k] = v > gmax[k] ? v : gmax[k];
            }
            for (uint64_t k = 0; k < ng; k++) {
                if (s->asym) {
                    gs[k] = bf16_round((gmax[k] - gmin[k]) / (float)(qmax - qmin));
                    gz[k] = clamp_round((float)qmin - gmin[k] / gs[k], qmin, qmax);
                } else {
                    float a = -gmin[k] > gmax[k] ? -gmin[k] : gmax[k];
                    gs[k] = bf16_round(a / ((float)(qmax - qmin) / 2.0f));
                    gz[k] = 0;
                }
                if (gs[k] == 0.0f)
                    gs[k] = 0x1p-7f;
                if (t->kind == T_SCALE)
                    store_scalar(t, d8 + 2 * (r * ng + k), gs[k]);
                else if (t->kind == T_ZP)
                    put_bits((uint32_t *)dst + k, ng, r * bits, bits, (uint32_t)(gz[k] - qmin));
            }
            if (t->kind != T_WEIGHT)
                continue;
            for (uint64_t c = 0; c < C; c++) {
                uint64_t k = gidx ? (uint64_t)gidx[c] : c / G;
                int32_t q = clamp_round(w[r * C + c] / gs[k] + (float)gz[k], qmin, qmax);
                put_bits((uint32_t *)dst + r * wpr, 1, c * bits, bits, (uint32_t)(q - qmin));
            }
        }
        free(gmin), free(gmax), free(gs), free(gz);
        break;
    }
    }
    free(gidx);
    free(w);
    return QTL_OK;
}

/* Plain tensors: embeddings, norms, lm_head (BF16). */
static int fill_plain(void *ud, void *dst, uint64_t nbytes)
{
    struct fill_ctx *fc = ud;
    const struct tensor *t = fc->t;
    uint8_t *d8 = dst;
    float *row = malloc((size_t)t->plain_cols * sizeof *row);
    if (!row)
        return QTL_ERR_NOMEM;
    for (uint64_t r = 0; r < t->plain_rows; r++) {
        master_row(fc->g->o->seed, 0xE0000000ull + (uint64_t)t->plain_tag, r, t->plain_cols, row);
        for (uint64_t c = 0; c < t->plain_cols; c++) {
            float v = row[c];
            if (t->plain_cols == 1 && t->ndim == 1) /* norm weights around 1 */
                v = 1.0f + v * 8.0f;
            uint16_t h = qtl_f32_to_bf16(v);
            memcpy(d8 + 2 * (r * t->plain_cols + c), &h, 2);
        }
    }
    free(row);
    (void)nbytes;
    return QTL_OK;
}

/* ---- the tensor plan ---- */

struct plan {
    struct module *mods;
    size_t nmods;
    struct tensor *ts;
    size_t nts, cap;
};

static struct tensor *add_tensor(struct plan *p, const char *name, enum qtl_dtype dt, uint32_t ndim, uint64_t d0,
                                 uint64_t d1, enum tkind kind, int module)
{
    if (p->nts == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        struct tensor *n = realloc(p->ts, nc * sizeof *n);
        if (!n)
            return NULL;
        p->ts = n;
        p->cap = nc;
    }
    struct tensor *t = &p->ts[p->nts++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    uint64_t numel = ndim == 0 ? 1 : ndim == 1 ? d0 : d0 * d1;
    t->nbytes = numel * qtl_dtype_bits(dt) / 8;
    t->kind = kind;
    t->module = module;
    t->aux = kind != T_WEIGHT && kind != T_PLAIN;
    return t;
}

static int module_tensors(struct plan *p, const struct gen *g, int mi)
{
    const struct module *m = &p->mods[mi];
    const struct fx_scheme *s = g->s;
    char n[192];
    enum qtl_dtype sdt = s->fam == FAM_CT ? QTL_DTYPE_BF16 : QTL_DTYPE_F32;
    uint32_t sdim = (s->fam == FAM_CT) ? 1 : 0; /* per-tensor scalars: [1] in CT, 0-D elsewhere */
#define ADD(suffix, dt, nd, a, b, kind)                                                                             \
    do {                                                                                                            \
        snprintf(n, sizeof n, "%s.%s", m->prefix, suffix);                                                          \
        if (!add_tensor(p, n, dt, nd, a, b, kind, mi))                                                               \
            return QTL_ERR_NOMEM;                                                                                   \
    } while (0)
    uint64_t R = m->rows, C = m->cols;
    switch (s->w) {
    case W_BF16: ADD("weight", QTL_DTYPE_BF16, 2, R, C, T_WEIGHT); break;
    case W_FP8_TENSOR:
        ADD("weight", QTL_DTYPE_F8_E4M3, 2, R, C, T_WEIGHT);
        ADD("weight_scale", sdt, sdim, 1, 0, T_SCALE);
        break;
    case W_FP8_CHANNEL:
        ADD("weight", QTL_DTYPE_F8_E4M3, 2, R, C, T_WEIGHT);
        ADD("weight_scale", sdt, 2, R, 1, T_SCALE);
        break;
    case W_FP8_BLOCK:
        ADD("weight", QTL_DTYPE_F8_E4M3, 2, R, C, T_WEIGHT);
        ADD(s->fam == FAM_DEEPSEEK ? "weight_scale_inv" : "weight_scale", sdt, 2, (R + 127) / 128, (C + 127) / 128,
            T_SCALE);
        break;
    case W_INT8_TENSOR:
        ADD("weight", QTL_DTYPE_I8, 2, R, C, T_WEIGHT);
        ADD("weight_scale", sdt, 1, 1, 0, T_SCALE);
        break;
    case W_INT8_CHANNEL:
        ADD("weight", QTL_DTYPE_I8, 2, R, C, T_WEIGHT);
        ADD("weight_scale", sdt, 2, R, 1, T_SCALE);
        break;
    case W_NVFP4:
        ADD(s->fam == FAM_MODELOPT ? "weight" : "weight_packed", QTL_DTYPE_U8, 2, R, C / 2, T_WEIGHT);
        ADD("weight_scale", QTL_DTYPE_F8_E4M3, 2, R, C / 16, T_SCALE);
        if (s->fam == FAM_MODELOPT)
            ADD("weight_scale_2", QTL_DTYPE_F32, 0, 1, 0, T_SCALE2);
        else
            ADD("weight_global_scale", QTL_DTYPE_F32, 1, 1, 0, T_GLOBAL);
        break;
    case W_PACK: {
        uint64_t ng = (C + s->group - 1) / s->group;
        ADD("weight_packed", QTL_DTYPE_I32, 2, R, (C * s->bits + 31) / 32, T_WEIGHT);
        ADD("weight_scale", QTL_DTYPE_BF16, 2, R, ng, T_SCALE);
        ADD("weight_shape", QTL_DTYPE_I64, 1, 2, 0, T_SHAPE);
        if (s->asym)
            ADD("weight_zero_point", QTL_DTYPE_I32, 2, (R * s->bits + 31) / 32, ng, T_ZP);
        if (s->actorder)
            ADD("weight_g_idx", QTL_DTYPE_I32, 1, C, 0, T_GIDX);
        break;
    }
    }
    switch (s->act) {
    case ACT_FP8_STATIC:
    case ACT_INT8_STATIC: ADD("input_scale", sdt, sdim, 1, 0, T_INPUT_SCALE); break;
    case ACT_INT8_ASYM:
        ADD("input_scale", sdt, 1, 1, 0, T_INPUT_SCALE);
        ADD("input_zero_point", QTL_DTYPE_I8, 1, 1, 0, T_INPUT_ZP);
        break;
    case ACT_NVFP4:
        if (s->fam == FAM_MODELOPT)
            ADD("input_scale", QTL_DTYPE_F32, 0, 1, 0, T_INPUT_SCALE);
        else
            ADD("input_global_scale", QTL_DTYPE_F32, 1, 1, 0, T_INPUT_GLOBAL);
        break;
    default: break;
    }
#undef ADD
    return QTL_OK;
}

static int build_plan(struct plan *p, const struct gen *g)
{
    const struct qtl_fixture_options *o = g->o;
    int phi3 = o->arch == QTL_FIXTURE_PHI3;
    int shared = o->scale_layout == QTL_SCALE_LAYOUT_SHARED ||
                 (o->scale_layout == QTL_SCALE_LAYOUT_DEFAULT && g->s->w == W_NVFP4);
    p->nmods = (size_t)o->layers * (phi3 ? 4 : 7);
    p->mods = calloc(p->nmods ? p->nmods : 1, sizeof *p->mods);
    if (!p->mods)
        return QTL_ERR_NOMEM;
    static const int qkv[3] = {P_Q, P_K, P_V}, gu[2] = {P_GATE, P_UP};
    size_t k = 0;
    for (uint32_t l = 0; l < o->layers; l++) {
        struct {
            const char *name;
            const int *parts;
            int n;
        } fused[4] = {{"self_attn.qkv_proj", qkv, 3}, {"self_attn.o_proj", (const int[]){P_O}, 1},
                      {"mlp.gate_up_proj", gu, 2}, {"mlp.down_proj", (const int[]){P_DOWN}, 1}};
        for (int f = 0; f < 4; f++) {
            int nsub = phi3 ? 1 : fused[f].n;
            for (int sub = 0; sub < nsub; sub++) {
                struct module *m = &p->mods[k++];
                m->layer = l;
                const char *grp = f < 2 ? "self_attn" : "mlp";
                if (phi3) {
                    snprintf(m->prefix, sizeof m->prefix, "model.layers.%u.%s", l, fused[f].name);
                    m->nparts = fused[f].n;
                    memcpy(m->parts, fused[f].parts, (size_t)m->nparts * sizeof(int));
                } else {
                    m->nparts = 1;
                    m->parts[0] = fused[f].parts[sub];
                    snprintf(m->prefix, sizeof m->prefix, "model.layers.%u.%s.%s", l, grp, part_names[m->parts[0]]);
                }
                /* The domain of per-tensor quantities: the fused matrix when
                 * stored fused or when scales are shared, else the part. */
                if (phi3 || shared) {
                    m->ndomain = fused[f].n;
                    memcpy(m->domain, fused[f].parts, (size_t)m->ndomain * sizeof(int));
                    m->perm_id = 16 + f;
                } else {
                    m->ndomain = 1;
                    m->domain[0] = m->parts[0];
                    m->perm_id = m->parts[0];
                }
                m->rows = 0;
                for (int i = 0; i < m->nparts; i++)
                    m->rows += g->d.rows[m->parts[i]];
                m->cols = g->d.cols[m->parts[0]];
            }
        }
    }
    /* Tensors in a canonical order: embeddings, each layer, final norm, lm_head. */
    struct tensor *t = add_tensor(p, "model.embed_tokens.weight", QTL_DTYPE_BF16, 2, o->vocab, o->hidden, T_PLAIN, -1);
    if (!t)
        return QTL_ERR_NOMEM;
    t->plain_tag = 1, t->plain_rows = o->vocab, t->plain_cols = o->hidden;
    size_t mi = 0;
    for (uint32_t l = 0; l < o->layers; l++) {
        char n[192];
        snprintf(n, sizeof n, "model.layers.%u.input_layernorm.weight", l);
        if (!(t = add_tensor(p, n, QTL_DTYPE_BF16, 1, o->hidden, 0, T_PLAIN, -1)))
            return QTL_ERR_NOMEM;
        t->plain_tag = 16 + 2 * (int)l, t->plain_rows = o->hidden, t->plain_cols = 1;
        size_t per = phi3 ? 4 : 7;
        for (size_t j = 0; j < per; j++, mi++) {
            if (j == (phi3 ? 2u : 4u)) {
                snprintf(n, sizeof n, "model.layers.%u.post_attention_layernorm.weight", l);
                if (!(t = add_tensor(p, n, QTL_DTYPE_BF16, 1, o->hidden, 0, T_PLAIN, -1)))
                    return QTL_ERR_NOMEM;
                t->plain_tag = 17 + 2 * (int)l, t->plain_rows = o->hidden, t->plain_cols = 1;
            }
            int rc = module_tensors(p, g, (int)mi);
            if (rc)
                return rc;
        }
    }
    if (!(t = add_tensor(p, "model.norm.weight", QTL_DTYPE_BF16, 1, o->hidden, 0, T_PLAIN, -1)))
        return QTL_ERR_NOMEM;
    t->plain_tag = 2, t->plain_rows = o->hidden, t->plain_cols = 1;
    if (!(t = add_tensor(p, "lm_head.weight", QTL_DTYPE_BF16, 2, o->vocab, o->hidden, T_PLAIN, -1)))
        return QTL_ERR_NOMEM;
    t->plain_tag = 3, t->plain_rows = o->vocab, t->plain_cols = o->hidden;
    /* Shards: the main tensors by cumulative bytes; a module's scales and
     * other small tensors go to the next shard, so a weight and its scales
     * live in different files whenever there is more than one. */
    uint64_t total = 0, acc = 0;
    for (size_t i = 0; i < p->nts; i++)
        if (!p->ts[i].aux)
            total += p->ts[i].nbytes;
    int cur = 0, S = (int)o->shards;
    for (size_t i = 0; i < p->nts; i++) {
        if (p->ts[i].aux)
            continue;
        while (cur + 1 < S && acc >= total * (uint64_t)(cur + 1) / (uint64_t)S)
            cur++;
        p->ts[i].shard = cur;
        acc += p->ts[i].nbytes;
    }
    int last_weight_shard = 0;
    for (size_t i = 0; i < p->nts; i++) {
        if (!p->ts[i].aux)
            last_weight_shard = p->ts[i].shard;
        else
            p->ts[i].shard = (last_weight_shard + 1) % S;
    }
    return QTL_OK;
}

/* ---- config files ---- */

static json_t *qargs(int bits, const char *type, const char *strategy, json_t *group, json_t *dynamic, int symmetric,
                     const char *observer, json_t *block, const char *scale_dtype, const char *actorder)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:i, s:o, s:{}, s:o, s:s, s:b, s:s, s:o}", "actorder",
                     actorder ? json_string(actorder) : json_null(), "block_structure", block ? block : json_null(),
                     "dynamic", dynamic, "group_size", group ? group : json_null(), "num_bits", bits, "observer",
                     observer ? json_string(observer) : json_null(), "observer_kwargs", "scale_dtype",
                     scale_dtype ? json_string(scale_dtype) : json_null(), "strategy", strategy, "symmetric",
                     symmetric, "type", type, "zp_dtype", symmetric ? json_null() : json_string("torch.int8"));
}

static json_t *ct_config(const struct fx_scheme *s)
{
    json_t *w = NULL, *ia = NULL;
    const char *fmt = "float-quantized";
    switch (s->w) {
    case W_FP8_TENSOR: w = qargs(8, "float", "tensor", NULL, json_false(), 1, "minmax", NULL, NULL, NULL); break;
    case W_FP8_CHANNEL: w = qargs(8, "float", "channel", NULL, json_false(), 1, "minmax", NULL, NULL, NULL); break;
    case W_FP8_BLOCK:
        w = qargs(8, "float", "block", NULL, json_false(), 1, "minmax", json_pack("[ii]", 128, 128), NULL, NULL);
        break;
    case W_INT8_TENSOR:
    case W_INT8_CHANNEL:
        w = qargs(8, "int", s->w == W_INT8_TENSOR ? "tensor" : "channel", NULL, json_false(), 1, "minmax", NULL, NULL, NULL);
        fmt = "int-quantized";
        break;
    case W_NVFP4:
        w = qargs(4, "float", "tensor_group", json_integer(16), json_false(), 1, "memoryless_minmax", NULL,
                  "torch.float8_e4m3fn", NULL);
        fmt = "nvfp4-pack-quantized";
        break;
    case W_PACK:
        w = qargs((int)s->bits, "int", "group", json_integer(s->group), json_false(), !s->asym, "minmax", NULL, NULL,
                  s->actorder ? "group" : NULL);
        fmt = "pack-quantized";
        break;
    default: break;
    }
    switch (s->act) {
    case ACT_FP8_STATIC: ia = qargs(8, "float", "tensor", NULL, json_false(), 1, "minmax", NULL, NULL, NULL); break;
    case ACT_INT8_STATIC: ia = qargs(8, "int", "tensor", NULL, json_false(), 1, "minmax", NULL, NULL, NULL); break;
    case ACT_INT8_ASYM: ia = qargs(8, "int", "tensor", NULL, json_false(), 0, "minmax", NULL, NULL, NULL); break;
    case ACT_NVFP4:
        ia = qargs(4, "float", "tensor_group", json_integer(16), json_string("local"), 1, "static_minmax", NULL,
                   "torch.float8_e4m3fn", NULL);
        break;
    case ACT_DYNAMIC:
        if (s->w == W_FP8_BLOCK)
            ia = qargs(8, "float", "group", json_integer(128), json_true(), 1, NULL, NULL, NULL, NULL);
        else
            ia = qargs(8, s->w == W_INT8_CHANNEL ? "int" : "float", "token", NULL, json_true(), 1, NULL, NULL, NULL, NULL);
        break;
    default: break;
    }
    json_t *grp = json_pack("{s:s, s:o, s:n, s:[s], s:o}", "format", fmt, "input_activations", ia ? ia : json_null(),
                            "output_activations", "targets", "Linear", "weights", w);
    return json_pack("{s:{s:o}, s:s, s:n, s:[s], s:n, s:s, s:s, s:{}, s:{}, s:s}", "config_groups", "group_0", grp,
                     "format", fmt, "global_compression_ratio", "ignore", "lm_head", "kv_cache_scheme", "quant_method",
                     "compressed-tensors", "quantization_status", "compressed", "sparsity_config", "transform_config",
                     "version", "0.12.2");
}

static json_t *quant_config(const struct fx_scheme *s)
{
    switch (s->fam) {
    case FAM_AUTOFP8:
        return json_pack("{s:s, s:s, s:[s]}", "quant_method", "fp8", "activation_scheme",
                         s->act == ACT_DYNAMIC ? "dynamic" : "static", "ignored_layers", "lm_head");
    case FAM_DEEPSEEK:
        return json_pack("{s:s, s:s, s:s, s:[ii]}", "activation_scheme", "dynamic", "fmt", "e4m3", "quant_method", "fp8",
                         "weight_block_size", 128, 128);
    case FAM_CT: return ct_config(s);
    case FAM_MODELOPT: {
        int nv = s->w == W_NVFP4;
        json_t *args = nv ? json_pack("{s:b, s:i, s:s, s:i}", "dynamic", 0, "num_bits", 4, "type", "float", "group_size", 16)
                          : json_pack("{s:b, s:i, s:s}", "dynamic", 0, "num_bits", 8, "type", "float");
        json_t *iargs = json_deep_copy(args);
        return json_pack("{s:{s:{s:o, s:o, s:[s]}}, s:[s], s:s, s:{s:s, s:s}, s:s}", "config_groups", "group_0",
                         "input_activations", iargs, "weights", args, "targets", "Linear", "ignore", "lm_head",
                         "quant_algo", nv ? "NVFP4" : "FP8", "producer", "name", "modelopt", "version", "0.29.0",
                         "quant_method", "modelopt");
    }
    default: return NULL;
    }
}

static int write_json_file(const char *dir, const char *name, json_t *j, char *msg, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = j ? json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15)) : -1;
    json_decref(j);
    if (rc) {
        snprintf(msg, cap, "%s: cannot write", path);
        return QTL_ERR_IO;
    }
    return QTL_OK;
}

static int write_configs(const struct gen *g, const char *dir, char *msg, size_t cap)
{
    const struct qtl_fixture_options *o = g->o;
    int phi3 = o->arch == QTL_FIXTURE_PHI3;
    json_t *cfg = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:s}",
                            "architectures", phi3 ? "Phi3ForCausalLM" : "LlamaForCausalLM", "model_type",
                            phi3 ? "phi3" : "llama", "hidden_size", (int)o->hidden, "intermediate_size",
                            (int)o->intermediate, "num_attention_heads", (int)o->heads, "num_key_value_heads",
                            (int)o->kv_heads, "head_dim", (int)o->head_dim, "num_hidden_layers", (int)o->layers,
                            "vocab_size", (int)o->vocab, "max_position_embeddings", 4096, "rms_norm_eps", 1e-5,
                            "rope_theta", 10000.0, "tie_word_embeddings", 0, "torch_dtype", "bfloat16",
                            "transformers_version", "4.57.0");
    json_t *q = quant_config(g->s);
    if (cfg && q)
        json_object_set_new(cfg, "quantization_config", q);
    int rc = write_json_file(dir, "config.json", cfg, msg, cap);
    if (!rc && g->s->fam == FAM_MODELOPT) {
        json_t *h = json_pack("{s:{s:s, s:s}, s:{s:s, s:n, s:[s]}}", "producer", "name", "modelopt", "version", "0.29.0",
                              "quantization", "quant_algo", g->s->w == W_NVFP4 ? "NVFP4" : "FP8",
                              "kv_cache_quant_algo", "exclude_modules", "lm_head");
        if (h && g->s->w == W_NVFP4)
            json_object_set_new(json_object_get(h, "quantization"), "group_size", json_integer(16));
        rc = write_json_file(dir, "hf_quant_config.json", h, msg, cap);
    }
    return rc;
}

/* ---- built-in failures (qtl fixture --break) ---- */

static const struct {
    const char *id, *help;
} breaks[] = {
    {"scale.unwritten", "drop a scale of layer 0's first attention module (input scale first)"},
    {"tensor.unmapped", "add lm_head.input_scale, which no parameter takes (vLLM #45102)"},
    {"scale.nan", "a NaN in a per-tensor, global or channel weight scale"},
    {"scale.nonpositive", "a zero per-tensor, global or channel weight scale"},
    {"shard-invalid", "replace the second shard with a git-lfs pointer"},
    {"truncated", "cut the second shard in half (a truncated download)"},
    {"shard-missing", "delete the second shard"},
    {"tensor.dtype", "store a weight scale with an integer dtype of the same size"},
    {"tp.group", "WNA16: intermediate 768, so down_proj's K/tp is not a multiple of 128 at tp=4"},
    {"tp.block", "block FP8: intermediate 1536, so gate_up's rows per rank miss the 128 block at tp=8"},
    {"scale.convention", "NVFP4: a global scale stored in the other convention (its reciprocal)"},
    {"scale.slots-differ", "NVFP4, split on disk: per-part global scales (q/k/v and gate/up differ)"},
    {"quant.layer-unquantized", "layer 0's o_proj stored as BF16 without scales; the config still quantizes it"},
    {"quant.layer-quantized", "layer 0's o_proj added to the config's ignore list; its tensors stay quantized"},
};
#define NBREAKS (sizeof breaks / sizeof breaks[0])

const char *qtl_fixture_break_name(size_t i) { return i < NBREAKS ? breaks[i].id : NULL; }
const char *qtl_fixture_break_help(size_t i) { return i < NBREAKS ? breaks[i].help : NULL; }

enum edit { ED_DROP, ED_NAN, ED_ZERO, ED_RECIP, ED_RETYPE, ED_UNQUANT };

#define BROKEN_MODULE "model.layers.0.self_attn.o_proj"

static int shard_path(const struct qtl_fixture_options *o, const char *dir, uint32_t k, char *buf, size_t cap)
{
    if (o->shards == 1)
        return snprintf(buf, cap, "%s/model.safetensors", dir), 0;
    return snprintf(buf, cap, "%s/model-%05u-of-%05u.safetensors", dir, k + 1, o->shards), 0;
}

/* Rewrite the shard holding `name` with one edit; returns 0 when done. */
static int edit_tensor(const struct qtl_fixture_options *o, const char *dir, const char *name, enum edit ed,
                       char *msg, size_t cap)
{
    for (uint32_t k = 0; k < o->shards; k++) {
        char path[4200];
        shard_path(o, dir, k, path, sizeof path);
        qtl_st_t *st = NULL;
        size_t idx;
        if (qtl_st_open_file(path, NULL, &st) != QTL_OK || qtl_st_tensor_find(st, name, &idx) != QTL_OK) {
            qtl_st_close(st);
            continue;
        }
        size_t n = qtl_st_tensor_count(st);
        void **bufs = calloc(n, sizeof *bufs);
        qtl_st_writer_t *w = NULL;
        int rc = bufs ? qtl_st_writer_new(NULL, &w) : QTL_ERR_NOMEM;
        rc = rc ? rc : qtl_st_writer_set_metadata(w, "format", "pt");
        for (size_t i = 0; i < n && !rc; i++) {
            struct qtl_tensor_info ti;
            qtl_st_tensor_at(st, i, &ti);
            bufs[i] = malloc(ti.nbytes + 8);
            if (!bufs[i] || qtl_st_read_tensor(st, i, bufs[i], (size_t)ti.nbytes)) {
                rc = QTL_ERR_IO;
                break;
            }
            enum qtl_dtype dt = ti.dtype;
            const char *tname = ti.name;
            if (i == idx && ed == ED_UNQUANT) { /* BROKEN_MODULE.weight as BF16 [hidden, heads*head_dim] */
                uint64_t shape[2] = {o->hidden, (uint64_t)o->heads * o->head_dim};
                uint16_t *h = malloc(shape[0] * shape[1] * 2);
                if (!h) {
                    rc = QTL_ERR_NOMEM;
                    break;
                }
                for (uint64_t e = 0; e < shape[0] * shape[1]; e++)
                    h[e] = qtl_f32_to_bf16((float)((int)(e % 17) - 8) / 64.0f);
                free(bufs[i]);
                bufs[i] = h;
                rc = qtl_st_writer_add(w, BROKEN_MODULE ".weight", QTL_DTYPE_BF16, 2, shape, h, shape[0] * shape[1] * 2);
                continue;
            }
            if (i == idx) {
                unsigned char *b = bufs[i];
                if (ed == ED_DROP)
                    continue;
                if (ed == ED_RETYPE)
                    dt = dt == QTL_DTYPE_F32 ? QTL_DTYPE_I32 : dt == QTL_DTYPE_BF16 ? QTL_DTYPE_I16 : QTL_DTYPE_U8;
                float v;
                if ((ed == ED_NAN || ed == ED_ZERO || ed == ED_RECIP) && qtl_to_f32(ti.dtype, b, 1, &v) == QTL_OK) {
                    v = ed == ED_NAN ? NAN : ed == ED_ZERO ? 0.0f : 1.0f / v;
                    if (ti.dtype == QTL_DTYPE_F32)
                        memcpy(b, &v, 4);
                    else if (ti.dtype == QTL_DTYPE_BF16) {
                        uint16_t h = qtl_f32_to_bf16(v);
                        memcpy(b, &h, 2);
                    } else if (ti.dtype == QTL_DTYPE_F8_E4M3)
                        b[0] = ed == ED_NAN ? 0x7F : 0x00;
                }
            }
            rc = qtl_st_writer_add(w, tname, dt, ti.ndim, ti.shape, bufs[i], ti.nbytes);
        }
        qtl_st_close(st);
        if (!rc)
            rc = qtl_st_writer_write_file(w, path);
        if (rc)
            snprintf(msg, cap, "--break: rewriting %s failed", path);
        qtl_st_writer_free(w);
        for (size_t i = 0; bufs && i < n; i++)
            free(bufs[i]);
        free(bufs);
        return rc;
    }
    snprintf(msg, cap, "--break: no tensor '%s' in this fixture", name);
    return QTL_ERR_INVALID_ARGUMENT;
}

/* The first existing "<module>.<suffix>" among the suffixes. */
static int pick(const struct qtl_fixture_options *o, const char *dir, const char *const *suffixes, char *out, size_t cap)
{
    const char *module = o->arch == QTL_FIXTURE_PHI3 ? "model.layers.0.self_attn.qkv_proj" : "model.layers.0.self_attn.k_proj";
    qtl_ckpt_t *ck = NULL;
    int found = 0;
    if (qtl_ckpt_open(dir, NULL, &ck) == QTL_OK)
        for (size_t i = 0; suffixes[i] && !found; i++) {
            size_t idx;
            snprintf(out, cap, "%s.%s", module, suffixes[i]);
            found = qtl_ckpt_tensor_find(ck, out, &idx) == QTL_OK;
        }
    qtl_ckpt_close(ck);
    return found;
}

static int rewrite_index(const struct qtl_fixture_options *o, const char *dir, char *msg, size_t cap);

/* Adds `module` to the ignore list of config.json's quantization_config (the key the
 * method reads: ignore, or ignored_layers for fp8). */
static int ignore_module(const char *dir, const char *module, char *msg, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    json_t *q = json_object_get(cfg, "quantization_config");
    if (!json_is_object(q)) {
        json_decref(cfg);
        snprintf(msg, cap, "--break: %s has no quantization_config", path);
        return QTL_ERR_INVALID_ARGUMENT;
    }
    const char *key = json_object_get(q, "ignore") ? "ignore" : "ignored_layers";
    json_t *list = json_object_get(q, key);
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(q, key, list);
    }
    json_array_append_new(list, json_string(module));
    return write_json_file(dir, "config.json", cfg, msg, cap);
}

static int apply_break(const struct qtl_fixture_options *o, const struct fx_scheme *s, const char *dir, char *msg,
                       size_t cap)
{
    const char *b = o->break_id;
    char name[256], path[4200];
    static const char *const scales_in[] = {"input_global_scale", "input_scale", "weight_global_scale", "weight_scale_2",
                                            "weight_scale", NULL};
    static const char *const scales_w[] = {"weight_global_scale", "weight_scale_2", "weight_scale", NULL};
    int rc;
    if (!strcmp(b, "scale.unwritten")) {
        if (!pick(o, dir, scales_in, name, sizeof name))
            goto not_applicable;
        if ((rc = edit_tensor(o, dir, name, ED_DROP, msg, cap)))
            return rc;
        return rewrite_index(o, dir, msg, cap);
    }
    if (!strcmp(b, "scale.nan") || !strcmp(b, "scale.nonpositive") || !strcmp(b, "tensor.dtype")) {
        if (!pick(o, dir, scales_w, name, sizeof name) || s->w == W_PACK || s->w == W_FP8_BLOCK)
            goto not_applicable; /* group / block scales are read only by verify --deep */
        return edit_tensor(o, dir, name, !strcmp(b, "scale.nan") ? ED_NAN : !strcmp(b, "tensor.dtype") ? ED_RETYPE : ED_ZERO,
                           msg, cap);
    }
    if (!strcmp(b, "scale.convention")) {
        static const char *const g[] = {"weight_global_scale", "weight_scale_2", NULL};
        if (s->w != W_NVFP4 || !pick(o, dir, g, name, sizeof name))
            goto not_applicable;
        return edit_tensor(o, dir, name, ED_RECIP, msg, cap);
    }
    if (!strcmp(b, "tensor.unmapped")) {
        static const float one = 1.0f;
        static const uint64_t shape1 = 1;
        shard_path(o, dir, o->shards - 1, path, sizeof path);
        qtl_st_t *st = NULL;
        if (qtl_st_open_file(path, NULL, &st) != QTL_OK) {
            qtl_st_close(st);
            return QTL_ERR_IO;
        }
        size_t n = qtl_st_tensor_count(st);
        void **bufs = calloc(n + 1, sizeof *bufs);
        qtl_st_writer_t *w = NULL;
        rc = bufs ? qtl_st_writer_new(NULL, &w) : QTL_ERR_NOMEM;
        rc = rc ? rc : qtl_st_writer_set_metadata(w, "format", "pt");
        for (size_t i = 0; i < n && !rc; i++) {
            struct qtl_tensor_info ti;
            qtl_st_tensor_at(st, i, &ti);
            bufs[i] = malloc(ti.nbytes + 8);
            rc = bufs[i] ? qtl_st_read_tensor(st, i, bufs[i], (size_t)ti.nbytes) : QTL_ERR_NOMEM;
            rc = rc ? rc : qtl_st_writer_add(w, ti.name, ti.dtype, ti.ndim, ti.shape, bufs[i], ti.nbytes);
        }
        rc = rc ? rc : qtl_st_writer_add(w, "lm_head.input_scale", QTL_DTYPE_F32, 1, &shape1, &one, 4);
        qtl_st_close(st);
        rc = rc ? rc : qtl_st_writer_write_file(w, path);
        qtl_st_writer_free(w);
        for (size_t i = 0; bufs && i < n; i++)
            free(bufs[i]);
        free(bufs);
        return rc ? rc : rewrite_index(o, dir, msg, cap);
    }
    if (!strcmp(b, "shard-invalid") || !strcmp(b, "truncated") || !strcmp(b, "shard-missing")) {
        if (o->shards < 2)
            goto not_applicable;
        shard_path(o, dir, 1, path, sizeof path);
        if (!strcmp(b, "shard-missing"))
            return unlink(path) ? QTL_ERR_IO : QTL_OK;
        if (!strcmp(b, "truncated")) {
            struct stat sb;
            return stat(path, &sb) || truncate(path, sb.st_size / 2) ? QTL_ERR_IO : QTL_OK;
        }
        FILE *f = fopen(path, "wb");
        if (!f)
            return QTL_ERR_IO;
        fprintf(f, "version https://git-lfs.github.com/spec/v1\noid sha256:%064d\nsize %u\n", 0, 123456789u);
        fclose(f);
        return QTL_OK;
    }
    if (!strcmp(b, "quant.layer-unquantized") || !strcmp(b, "quant.layer-quantized")) {
        if (s->fam == FAM_NONE)
            goto not_applicable;
        if (!strcmp(b, "quant.layer-quantized"))
            return ignore_module(dir, BROKEN_MODULE, msg, cap);
        /* the module's tensors: the weight becomes BF16, every scale / zero point goes */
        char names[16][256];
        size_t nn = 0;
        qtl_ckpt_t *ck = NULL;
        if (qtl_ckpt_open(dir, NULL, &ck) == QTL_OK)
            for (size_t i = 0; i < qtl_ckpt_tensor_count(ck) && nn < 16; i++)
                if (!qtl_ckpt_tensor_name(ck, i, names[nn], sizeof names[nn]) &&
                    !strncmp(names[nn], BROKEN_MODULE ".", strlen(BROKEN_MODULE ".")))
                    nn++;
        qtl_ckpt_close(ck);
        for (size_t i = 0; i < nn; i++) {
            const char *leaf = names[i] + strlen(BROKEN_MODULE ".");
            int w = !strcmp(leaf, "weight") || !strcmp(leaf, "weight_packed");
            if ((rc = edit_tensor(o, dir, names[i], w ? ED_UNQUANT : ED_DROP, msg, cap)))
                return rc;
        }
        return rewrite_index(o, dir, msg, cap);
    }
    if (!strcmp(b, "tp.group") || !strcmp(b, "tp.block") || !strcmp(b, "scale.slots-differ"))
        return QTL_OK; /* built in at generation time */
    snprintf(msg, cap, "unknown --break '%s'", b);
    return QTL_ERR_INVALID_ARGUMENT;
not_applicable:
    snprintf(msg, cap, "--break %s does not apply to scheme %s (arch %s)", b, s->name,
             o->arch == QTL_FIXTURE_PHI3 ? "phi3" : "llama");
    return QTL_ERR_INVALID_ARGUMENT;
}

/* ---- driver ---- */

/* model.safetensors.index.json from what the shards hold (sorted keys, as HF writes it). */
static int rewrite_index(const struct qtl_fixture_options *o, const char *dir, char *msg, size_t cap)
{
    if (o->shards < 2)
        return QTL_OK;
    json_t *wm = json_object();
    uint64_t total = 0;
    for (uint32_t k = 0; k < o->shards; k++) {
        char path[4200], file[64];
        shard_path(o, dir, k, path, sizeof path);
        snprintf(file, sizeof file, "%s", qtl__basename(path));
        qtl_st_t *st = NULL;
        if (qtl_st_open_file(path, NULL, &st) != QTL_OK) {
            snprintf(msg, cap, "%s", qtl_st_errmsg(st));
            qtl_st_close(st);
            json_decref(wm);
            return QTL_ERR_IO;
        }
        for (size_t i = 0; i < qtl_st_tensor_count(st); i++) {
            struct qtl_tensor_info ti;
            qtl_st_tensor_at(st, i, &ti);
            json_object_set_new(wm, ti.name, json_string(file));
            total += ti.nbytes;
        }
        qtl_st_close(st);
    }
    json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
    return write_json_file(dir, "model.safetensors.index.json", idx, msg, cap);
}

int qtl_fixture_write(const struct qtl_fixture_options *o, const char *dir, char *msg, size_t cap)
{
    char dummy[8];
    if (!msg || !cap)
        msg = dummy, cap = sizeof dummy;
    msg[0] = '\0';
    struct gen g = {o, NULL, {{0}, {0}}, msg, cap};
    for (size_t i = 0; i < NSCHEMES; i++)
        if (o->scheme && !strcmp(o->scheme, schemes[i].name))
            g.s = &schemes[i];
    if (!g.s) {
        snprintf(msg, cap, "unknown scheme '%s'", o->scheme ? o->scheme : "(null)");
        return QTL_ERR_INVALID_ARGUMENT;
    }
    if (!o->layers || !o->hidden || !o->heads || !o->kv_heads || !o->head_dim || !o->intermediate || !o->vocab ||
        !o->shards || o->shards > 99999 || o->arch > QTL_FIXTURE_PHI3) {
        snprintf(msg, cap, "every dimension and the shard count must be positive");
        return QTL_ERR_INVALID_ARGUMENT;
    }
    struct qtl_fixture_options ob;
    if (o->break_id && (!strcmp(o->break_id, "tp.group") || !strcmp(o->break_id, "tp.block") ||
                        !strcmp(o->break_id, "scale.slots-differ"))) {
        int ok = !strcmp(o->break_id, "tp.group") ? g.s->w == W_PACK && !g.s->actorder
                 : !strcmp(o->break_id, "tp.block") ? g.s->w == W_FP8_BLOCK
                                                     : g.s->w == W_NVFP4 && o->arch == QTL_FIXTURE_LLAMA;
        if (!ok) {
            snprintf(msg, cap, "--break %s does not apply to scheme %s", o->break_id, g.s->name);
            return QTL_ERR_INVALID_ARGUMENT;
        }
        ob = *o;
        if (!strcmp(o->break_id, "tp.group"))
            ob.intermediate = 768;
        else if (!strcmp(o->break_id, "tp.block"))
            ob.intermediate = 1536;
        else
            ob.scale_layout = QTL_SCALE_LAYOUT_PER_PART;
        o = &ob;
        g.o = o;
    }
    part_dims(o, &g.d);
    for (int p = 0; p < P_NPARTS; p++) {
        if (g.s->w == W_NVFP4 && g.d.cols[p] % 16) {
            snprintf(msg, cap, "%s: %s has %llu input columns, NVFP4 needs a multiple of 16", g.s->name,
                     part_names[p], (unsigned long long)g.d.cols[p]);
            return QTL_ERR_INVALID_ARGUMENT;
        }
        if (g.s->w == W_PACK && g.d.cols[p] % g.s->group) {
            snprintf(msg, cap, "%s: %s has %llu input columns, not a multiple of the group size %u", g.s->name,
                     part_names[p], (unsigned long long)g.d.cols[p], g.s->group);
            return QTL_ERR_INVALID_ARGUMENT;
        }
    }
    int mk = qtl__mkdirs(dir, 0);
    if (mk) {
        snprintf(msg, cap, "%s: cannot create: %s", dir, strerror(mk));
        return QTL_ERR_OPEN;
    }
    struct plan p = {0};
    int rc = build_plan(&p, &g);
    struct fill_ctx *ctx = rc ? NULL : calloc(p.nts ? p.nts : 1, sizeof *ctx);
    if (!rc && !ctx)
        rc = QTL_ERR_NOMEM;
    if (rc == QTL_ERR_NOMEM)
        snprintf(msg, cap, "out of memory");
    int tty = o->progress && isatty(2);
    for (uint32_t sh = 0; !rc && sh < o->shards; sh++) {
        char file[64], path[4200];
        if (o->shards == 1)
            snprintf(file, sizeof file, "model.safetensors");
        else
            snprintf(file, sizeof file, "model-%05u-of-%05u.safetensors", sh + 1, o->shards);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        qtl_st_writer_t *w = NULL;
        rc = qtl_st_writer_new(NULL, &w);
        if (!rc)
            rc = qtl_st_writer_set_metadata(w, "format", "pt");
        uint64_t bytes = 0;
        for (size_t i = 0; !rc && i < p.nts; i++) {
            struct tensor *t = &p.ts[i];
            if (t->shard != (int)sh)
                continue;
            ctx[i] = (struct fill_ctx){&g, t->module >= 0 ? &p.mods[t->module] : NULL, t};
            rc = qtl_st_writer_add_fill(w, t->name, t->dtype, t->ndim, t->shape, t->nbytes,
                                        t->module >= 0 ? fill_module : fill_plain, &ctx[i]);
            bytes += t->nbytes;
        }
        if (tty)
            fprintf(stderr, "\rqtl fixture: writing %s (%u/%u, %.1f MB)...", file, sh + 1, o->shards, (double)bytes / 1e6);
        if (!rc)
            rc = qtl_st_writer_write_file(w, path);
        if (rc)
            snprintf(msg, cap, "%s", w ? qtl_st_writer_errmsg(w) : "out of memory");
        qtl_st_writer_free(w);
    }
    if (tty)
        fprintf(stderr, "\n");
    if (!rc)
        rc = rewrite_index(o, dir, msg, cap);
    if (!rc)
        rc = write_configs(&g, dir, msg, cap);
    if (!rc && o->break_id)
        rc = apply_break(o, g.s, dir, msg, cap);
    free(ctx);
    free(p.ts);
    free(p.mods);
    return rc;
}
