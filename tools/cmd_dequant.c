/* qtl dequant CKPT TENSOR [--to f32|bf16] -o OUT.safetensors
 * Finds the scales of TENSOR by naming, the group/block sizes in config.json's
 * quantization_config (a minimal reader; the loading issue makes it
 * complete), dequantizes the whole tensor and writes it under the same name. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

struct part {
    size_t index;
    int present;
    struct qtl_tensor_info ti;
    void *data;
};

struct job {
    qtl_ckpt_t *ck;
    const char *name;
    char prefix[1024];
    struct part w, scale, scale2, gscale, zp, gidx, shape;
    unsigned long long group, block_r, block_c, bits;
    const char *scheme_opt;
};

/* @return 1 loaded, 0 absent, -1 error (printed). */
static int load_part(struct job *j, struct part *p, const char *suffix)
{
    char name[1100];
    if (suffix)
        snprintf(name, sizeof name, "%s.%s", j->prefix, suffix);
    else
        snprintf(name, sizeof name, "%s", j->name);
    if (qtl_ckpt_tensor_find(j->ck, name, &p->index) != QTL_OK)
        return 0;
    if (qtl_ckpt_tensor_at(j->ck, p->index, &p->ti) != QTL_OK) {
        fprintf(stderr, "qtl dequant: %s\n", qtl_ckpt_errmsg(j->ck));
        return -1;
    }
    p->data = malloc(p->ti.nbytes ? (size_t)p->ti.nbytes : 1);
    if (!p->data || qtl_ckpt_read_tensor(j->ck, p->index, p->data, (size_t)p->ti.nbytes) != QTL_OK) {
        fprintf(stderr, "qtl dequant: %s\n", p->data ? qtl_ckpt_errmsg(j->ck) : "out of memory");
        return -1;
    }
    p->present = 1;
    return 1;
}

static float scalar_of(const struct part *p)
{
    float v = 0.0f;
    if (p->ti.numel == 1 && qtl_to_f32(p->ti.dtype, p->data, 1, &v) == QTL_OK)
        return v;
    return 0.0f;
}

/* group_size / block size / bits of this layer from the checkpoint's
 * quantization config (src/load/config.c); options given on the command line win.
 * Without a readable config.json the tensors alone decide. */
static void read_config(struct job *j)
{
    qtl_config_t *c = NULL;
    struct qtl_layer_quant q;
    if (qtl_config_open(qtl_ckpt_dir(j->ck), NULL, QTL_DTYPE_COUNT, &c) == QTL_OK &&
        qtl_config_layer_quant(c, j->prefix, NULL, 0, &q) == QTL_OK && q.scheme != QTL_LS_UNQUANTIZED) {
        if (!j->group && q.group_size)
            j->group = q.group_size;
        if (!j->bits && q.bits)
            j->bits = q.bits;
        if (!j->block_r && q.block[0])
            j->block_r = q.block[0], j->block_c = q.block[1];
    }
    qtl_config_close(c);
}

/* Granularity of a scale tensor of weight [rows, cols]. */
static int granularity(struct job *j, struct qtl_dequant_desc *d, const struct part *s)
{
    uint64_t sr = s->ti.ndim ? s->ti.shape[0] : 1, sc = s->ti.ndim >= 2 ? s->ti.shape[1] : 1;
    if (s->ti.numel == 1 && !(d->rows == 1 && j->group)) {
        d->granularity = QTL_SCALE_TENSOR;
    } else if (sr == d->rows && sc == 1 && s->ti.ndim <= 2) {
        d->granularity = QTL_SCALE_CHANNEL;
    } else if (sr == d->rows && s->ti.ndim == 2 && !j->block_r) {
        d->granularity = QTL_SCALE_GROUP;
        d->group_size = (uint32_t)(j->group ? j->group : (d->cols + sc - 1) / sc);
    } else if (s->ti.ndim == 2) {
        d->granularity = QTL_SCALE_BLOCK;
        d->block_rows = (uint32_t)(j->block_r ? j->block_r : 128);
        d->block_cols = (uint32_t)(j->block_c ? j->block_c : 128);
    } else {
        fprintf(stderr, "qtl dequant: tensor '%s': scale shape does not fit weight [%llu, %llu]\n", s->ti.name,
                (unsigned long long)d->rows, (unsigned long long)d->cols);
        return -1;
    }
    return 0;
}

static int set_scheme(struct job *j, struct qtl_dequant_desc *d)
{
    const struct qtl_tensor_info *w = &j->w.ti;
    if (w->ndim != 2 && !(w->ndim == 1 && (w->dtype == QTL_DTYPE_F32 || w->dtype == QTL_DTYPE_BF16 || w->dtype == QTL_DTYPE_F16))) {
        fprintf(stderr, "qtl dequant: tensor '%s': a weight is 2-D, this one has %u dimension(s)\n", w->name, w->ndim);
        return -1;
    }
    d->rows = w->ndim == 2 ? w->shape[0] : 1;
    d->cols = w->ndim == 2 ? w->shape[1] : w->shape[0];
    d->weight = j->w.data;
    d->weight_dtype = w->dtype;
    const char *sch = j->scheme_opt;
    if (!sch) {
        switch (w->dtype) {
        case QTL_DTYPE_F32: case QTL_DTYPE_BF16: case QTL_DTYPE_F16: sch = "none"; break;
        case QTL_DTYPE_F8_E4M3: sch = "fp8"; break;
        case QTL_DTYPE_I8: sch = "int8"; break;
        case QTL_DTYPE_I32: sch = "packed-int"; break;
        case QTL_DTYPE_U8:
            if (j->scale.present && j->scale.ti.dtype != QTL_DTYPE_F8_E4M3)
                sch = "mxfp4";
            else
                sch = j->scale2.present ? "nvfp4-modelopt" : "nvfp4-ct";
            break;
        default:
            fprintf(stderr, "qtl dequant: tensor '%s': no scheme for dtype %s (use --scheme)\n", w->name,
                    qtl_dtype_name(w->dtype));
            return -1;
        }
    }
    int known = 0;
    for (int s = 0; s < QTL_SCHEME_COUNT && !known; s++)
        if (!strcmp(sch, qtl_dequant_scheme_name((enum qtl_scheme)s)))
            d->scheme = (enum qtl_scheme)s, known = 1;
    if (!known) {
        fprintf(stderr, "qtl dequant: unknown scheme '%s'\n", sch);
        return -2;
    }
    if (d->scheme == QTL_SCHEME_NONE)
        return 0;
    if (!j->scale.present) {
        fprintf(stderr, "qtl dequant: tensor '%s': no %s.weight_scale (or weight_scale_inv) in the checkpoint\n",
                w->name, j->prefix);
        return -1;
    }
    d->scale = j->scale.data;
    d->scale_dtype = j->scale.ti.dtype;
    switch (d->scheme) {
    case QTL_SCHEME_NVFP4_CT:
    case QTL_SCHEME_NVFP4_MODELOPT:
    case QTL_SCHEME_MXFP4: {
        d->cols *= 2; /* two E2M1 codes per byte */
        if (d->scheme != QTL_SCHEME_MXFP4) {
            const struct part *g = d->scheme == QTL_SCHEME_NVFP4_CT ? &j->gscale : &j->scale2;
            if (!g->present || g->ti.numel != 1) {
                fprintf(stderr, "qtl dequant: tensor '%s': needs a one-element %s.%s\n", w->name, j->prefix,
                        d->scheme == QTL_SCHEME_NVFP4_CT ? "weight_global_scale" : "weight_scale_2");
                return -1;
            }
            d->global_scale = scalar_of(g);
        }
        return 0;
    }
    case QTL_SCHEME_PACKED_INT:
        d->bits = (uint32_t)(j->bits ? j->bits : 4);
        if (j->shape.present && j->shape.ti.numel == 2) {
            float sh[2];
            qtl_to_f32(j->shape.ti.dtype, j->shape.data, 2, sh);
            d->rows = (uint64_t)sh[0];
            d->cols = (uint64_t)sh[1];
        } else {
            d->cols = d->cols * 32 / d->bits;
        }
        if (j->zp.present)
            d->zero_point = j->zp.data, d->zero_point_dtype = j->zp.ti.dtype;
        if (j->gidx.present) {
            if (j->gidx.ti.dtype != QTL_DTYPE_I32) {
                fprintf(stderr, "qtl dequant: tensor '%s': g_idx must be I32\n", j->gidx.ti.name);
                return -1;
            }
            d->g_idx = j->gidx.data;
        }
        break;
    case QTL_SCHEME_INT8:
        if (j->zp.present)
            d->zero_point = j->zp.data, d->zero_point_dtype = j->zp.ti.dtype;
        if (j->gidx.present && j->gidx.ti.dtype == QTL_DTYPE_I32)
            d->g_idx = j->gidx.data;
        break;
    default: break;
    }
    return granularity(j, d, &j->scale);
}

/* Tensor sizes must be what the scheme implies. */
static int check_sizes(struct job *j, const struct qtl_dequant_desc *d)
{
    uint64_t wb, sb, zb;
    char msg[512];
    if (qtl_dequant_check(d, &wb, &sb, &zb, msg, sizeof msg) != QTL_OK) {
        fprintf(stderr, "qtl dequant: tensor '%s': %s\n", j->name, msg);
        return -1;
    }
    const struct {
        const struct part *p;
        uint64_t want;
    } c[] = {{&j->w, wb}, {&j->scale, sb}, {&j->zp, zb}};
    for (size_t i = 0; i < 3; i++)
        if (c[i].p->present && c[i].want && c[i].p->ti.nbytes != c[i].want) {
            fprintf(stderr, "qtl dequant: %s: tensor '%s' holds %llu bytes, %s [%llu, %llu] needs %llu\n", c[i].p->ti.file,
                    c[i].p->ti.name, (unsigned long long)c[i].p->ti.nbytes, qtl_dequant_scheme_name(d->scheme),
                    (unsigned long long)d->rows, (unsigned long long)d->cols, (unsigned long long)c[i].want);
            return -1;
        }
    if (d->g_idx && j->gidx.ti.numel != d->cols) {
        fprintf(stderr, "qtl dequant: tensor '%s' has %llu entries, the weight %llu columns\n", j->gidx.ti.name,
                (unsigned long long)j->gidx.ti.numel, (unsigned long long)d->cols);
        return -1;
    }
    return 0;
}

static void free_job(struct job *j)
{
    struct part *ps[] = {&j->w, &j->scale, &j->scale2, &j->gscale, &j->zp, &j->gidx, &j->shape};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        free(ps[i]->data);
    qtl_ckpt_close(j->ck);
}

int cmd_dequant(int argc, char **argv)
{
    struct job j;
    memset(&j, 0, sizeof j);
    const char *ckpt = NULL, *out = NULL, *to = "f32";
    unsigned long long threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-o") && more)
            out = argv[++i];
        else if (!strcmp(a, "--to") && more)
            to = argv[++i];
        else if (!strcmp(a, "--scheme") && more)
            j.scheme_opt = argv[++i];
        else if (!strcmp(a, "--group") && more) {
            if (cli_parse_u64(argv[++i], &j.group) || !j.group)
                return cli_usage_error("dequant", "--group takes a positive integer");
        } else if (!strcmp(a, "--bits") && more) {
            if (cli_parse_u64(argv[++i], &j.bits) || j.bits < 1 || j.bits > 8)
                return cli_usage_error("dequant", "--bits takes 1..8");
        } else if (!strcmp(a, "--threads") && more) {
            if (cli_parse_u64(argv[++i], &threads) || threads < 1 || threads > 256)
                return cli_usage_error("dequant", "--threads takes 1..256");
        } else if (!strcmp(a, "--block") && more) {
            if (sscanf(argv[++i], "%llux%llu", &j.block_r, &j.block_c) != 2 || !j.block_r || !j.block_c)
                return cli_usage_error("dequant", "--block takes ROWSxCOLS, e.g. 128x128");
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: qtl dequant CKPT TENSOR [--to f32|bf16] -o OUT.safetensors\n"
                   "         [--scheme none|fp8|int8|nvfp4-ct|nvfp4-modelopt|mxfp4|packed-int]\n"
                   "         [--group G] [--block RxC] [--bits N] [--threads T]\n"
                   "  TENSOR is the stored weight (...weight, or ...weight_packed). Its scales are found\n"
                   "  by name (weight_scale, weight_scale_inv, weight_scale_2, weight_global_scale,\n"
                   "  weight_zero_point, weight_g_idx, weight_shape); group and block sizes come from\n"
                   "  config.json's quantization_config unless given.\n");
            return CLI_OK;
        } else if (a[0] == '-' && a[1])
            return cli_usage_error("dequant", "unknown option '%s'", a);
        else if (!ckpt)
            ckpt = a;
        else if (!j.name)
            j.name = a;
        else
            return cli_usage_error("dequant", "unexpected argument '%s'", a);
    }
    if (!ckpt || !j.name || !out)
        return cli_usage_error("dequant", "usage: qtl dequant CKPT TENSOR [--to f32|bf16] -o OUT.safetensors");
    enum qtl_dtype od = !strcmp(to, "f32") ? QTL_DTYPE_F32 : !strcmp(to, "bf16") ? QTL_DTYPE_BF16 : QTL_DTYPE_COUNT;
    if (od == QTL_DTYPE_COUNT)
        return cli_usage_error("dequant", "--to takes f32 or bf16");
    if (qtl_ckpt_open(ckpt, NULL, &j.ck) != QTL_OK) {
        fprintf(stderr, "qtl dequant: %s\n", qtl_ckpt_errmsg(j.ck));
        qtl_ckpt_close(j.ck);
        return CLI_USAGE;
    }
    size_t plen = strlen(j.name);
    if (cli_ends_with(j.name, ".weight_packed"))
        plen -= strlen(".weight_packed");
    else if (cli_ends_with(j.name, ".weight"))
        plen -= strlen(".weight");
    snprintf(j.prefix, sizeof j.prefix, "%.*s", (int)plen, j.name);
    int status = CLI_FINDINGS;
    int found = load_part(&j, &j.w, NULL);
    if (found == 0)
        fprintf(stderr, "qtl dequant: no tensor '%s' in %s\n", j.name, ckpt);
    if (found <= 0 || load_part(&j, &j.scale, "weight_scale") < 0 ||
        (!j.scale.present && load_part(&j, &j.scale, "weight_scale_inv") < 0) ||
        load_part(&j, &j.scale2, "weight_scale_2") < 0 || load_part(&j, &j.gscale, "weight_global_scale") < 0 ||
        load_part(&j, &j.zp, "weight_zero_point") < 0 || load_part(&j, &j.gidx, "weight_g_idx") < 0 ||
        load_part(&j, &j.shape, "weight_shape") < 0) {
        free_job(&j);
        return CLI_FINDINGS;
    }
    read_config(&j);
    struct qtl_dequant_desc d;
    memset(&d, 0, sizeof d);
    int rc = set_scheme(&j, &d);
    if (rc == -2) {
        free_job(&j);
        return CLI_USAGE;
    }
    if (rc == 0 && check_sizes(&j, &d) == 0) {
        size_t bytes = (size_t)(d.rows * d.cols * (od == QTL_DTYPE_F32 ? 4 : 2));
        void *buf = malloc(bytes ? bytes : 1);
        char msg[512];
        double t0 = cli_now();
        if (!buf) {
            fprintf(stderr, "qtl dequant: out of memory for %zu bytes\n", bytes);
        } else if (qtl_dequant(&d, 0, d.rows, od, buf, bytes, (int)threads, 1, msg, sizeof msg) != QTL_OK) {
            fprintf(stderr, "qtl dequant: tensor '%s': %s\n", j.name, msg);
        } else {
            double t1 = cli_now();
            qtl_st_writer_t *w = NULL;
            uint64_t shape[2] = {d.rows, d.cols};
            int wr = qtl_st_writer_new(NULL, &w);
            if (!wr)
                wr = qtl_st_writer_set_metadata(w, "format", "pt");
            if (!wr)
                wr = qtl_st_writer_set_metadata(w, "qtl_dequant_scheme", qtl_dequant_scheme_name(d.scheme));
            if (!wr)
                wr = qtl_st_writer_add(w, j.name, od, 2, shape, buf, bytes);
            if (!wr)
                wr = qtl_st_writer_write_file(w, out);
            if (wr) {
                fprintf(stderr, "qtl dequant: %s\n", w ? qtl_st_writer_errmsg(w) : "out of memory");
            } else {
                printf("%s: %s [%llu, %llu] -> %s %s (%.2f GB/s of output)\n", j.name, qtl_dequant_scheme_name(d.scheme),
                       (unsigned long long)d.rows, (unsigned long long)d.cols, to, out,
                       t1 > t0 ? (double)bytes / (t1 - t0) / 1e9 : 0.0);
                status = CLI_OK;
            }
            qtl_st_writer_free(w);
        }
        free(buf);
    }
    free_job(&j);
    return status;
}
