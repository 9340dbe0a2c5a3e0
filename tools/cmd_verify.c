/* qtl verify CKPT [--tp T | --tp-all] [--deep] [--json] [--strict] [--allow ID]...
 * A pre-flight report: the loader's plan for every tp, reading only headers and
 * scale tensors (plus group/block scales with --deep). */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vfinding {
    enum qtl_severity sev;
    char id[32];
    char *message;
};

struct report {
    struct vfinding *f;
    size_t n, cap;
};

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

static void vadd(struct report *r, enum qtl_severity sev, const char *id, const char *fmt, va_list ap)
    PRINTF_LIKE(4, 0);
static void vadd(struct report *r, enum qtl_severity sev, const char *id, const char *fmt, va_list ap)
{
    char msg[1200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (size_t i = 0; i < r->n; i++) /* the same finding from several passes once */
        if (!strcmp(r->f[i].id, id) && !strcmp(r->f[i].message, msg))
            return;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 32;
        struct vfinding *n = realloc(r->f, nc * sizeof *n);
        if (!n)
            return;
        r->f = n;
        r->cap = nc;
    }
    r->f[r->n].sev = sev;
    snprintf(r->f[r->n].id, sizeof r->f[r->n].id, "%s", id);
    r->f[r->n].message = strdup(msg);
    r->n++;
}

/* A finding whose severity the caller decides (the loader's, after `allow`; a tp size not asked for). */
static void add(struct report *r, enum qtl_severity sev, const char *id, const char *fmt, ...) PRINTF_LIKE(4, 5);
static void add(struct report *r, enum qtl_severity sev, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vadd(r, sev, id, fmt, ap);
    va_end(ap);
}

/* One of verify's own findings, at the catalogue's severity. */
static void add_default(struct report *r, enum qtl_finding f, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void add_default(struct report *r, enum qtl_finding f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vadd(r, qtl_finding_severity(f), qtl_finding_id(f), fmt, ap);
    va_end(ap);
}

/* Why qtl_load_open failed: the layout rule it names, else a generic load.open. */
static const char *open_fail_id(const qtl_load_t *l)
{
    const char *id = qtl_load_fail_id(l);
    return id ? id : qtl_finding_id(QTL_FINDING_LOAD_OPEN);
}

static const char *sev_name(enum qtl_severity s)
{
    return s == QTL_SEV_ERROR ? "error" : s == QTL_SEV_WARNING ? "warning" : "info";
}

static const char *method_name(enum qtl_quant_method m)
{
    return m == QTL_QM_CT ? "compressed-tensors" : m == QTL_QM_FP8 ? "fp8" : m == QTL_QM_MODELOPT ? "modelopt" : "none";
}

/* Checks on the scale values read at tp=1. */
static void scale_checks(struct report *r, const qtl_load_t *l, const struct qtl_model_shape *sh)
{
    for (size_t i = 0; i < qtl_load_param_count(l); i++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, i, &pi);
        if (!pi.data || pi.dtype != QTL_DTYPE_F32 || pi.ndim != 1)
            continue;
        const float *v = pi.data;
        int ct_global = cli_ends_with(pi.name, "weight_global_scale") || cli_ends_with(pi.name, "input_global_scale");
        int mo_scale2 = cli_ends_with(pi.name, "weight_scale_2");
        for (uint64_t k = 0; k < pi.shape[0]; k++) {
            /* CT global scales multiply (448*6/amax: large); ModelOpt's divide (amax/2688: small) */
            if (ct_global && v[k] > 0 && v[k] < 1.0f)
                add_default(r, QTL_FINDING_SCALE_CONVENTION,
                    "%s = %g: a compressed-tensors global scale is 448*6/amax (large); this looks like ModelOpt's "
                    "reciprocal convention (amax/2688)", pi.name, (double)v[k]);
            if (mo_scale2 && v[k] > 1.0f)
                add_default(r, QTL_FINDING_SCALE_CONVENTION,
                    "%s = %g: a ModelOpt weight_scale_2 is amax/2688 (small); this looks like the compressed-tensors "
                    "reciprocal convention", pi.name, (double)v[k]);
        }
        if (strcmp(pi.kind, "PerTensorScaleParameter") || pi.shape[0] < 2)
            continue;
        float mx = v[0], mn = v[0];
        for (uint64_t k = 1; k < pi.shape[0]; k++)
            mx = v[k] > mx ? v[k] : mx, mn = v[k] < mn ? v[k] : mn;
        if (mx == mn || !(mn > 0))
            continue;
        /* share of the fused rows whose slot is below the max (they lose precision) */
        double rows[3], tot = 0, lose = 0;
        int qkv = strstr(pi.name, "qkv_proj") != NULL;
        for (uint64_t k = 0; k < pi.shape[0] && k < 3; k++) {
            rows[k] = qkv ? (k ? (double)sh->kv_heads * sh->head_dim : (double)sh->heads * sh->head_dim) : 1.0;
            tot += rows[k];
            lose += v[k] < mx ? rows[k] : 0;
        }
        add_default(r, QTL_FINDING_SCALE_SLOTS_DIFFER,
            "%s: per-part scales differ (max/min = %.4g); vLLM reduces them with max, so %.0f%% of the fused rows are "
            "requantized or rescaled to a coarser scale", pi.name, (double)(mx / mn), 100.0 * lose / tot);
    }
}

static void name_checks(struct report *r, qtl_ckpt_t *ck)
{
    /* ModelOpt-style kv scales on the projections: current vLLM remaps them first, older
     * releases rewrote ".k_proj" into ".qkv_proj" and failed with a KeyError (#15784, #37214). */
    char nm[512];
    for (size_t i = 0; i < qtl_ckpt_tensor_count(ck); i++) {
        qtl_ckpt_tensor_name(ck, i, nm, sizeof nm);
        if (strstr(nm, ".k_proj.k_scale") || strstr(nm, ".v_proj.v_scale")) {
            add_default(r, QTL_FINDING_NAME_KV_SCALE_LEGACY,
                "%s: loads as self_attn.attn.%c_scale in current vLLM; releases before the kv-scale remap mis-map "
                "it to qkv_proj (KeyError, vLLM #15784 / #37214)", nm, strstr(nm, ".k_proj.") ? 'k' : 'v');
            break;
        }
    }
    static const struct {
        const char *fused, *split;
    } pairs[] = {{".self_attn.qkv_proj.", ".self_attn.q_proj."}, {".mlp.gate_up_proj.", ".mlp.gate_proj."}};
    size_t n = qtl_ckpt_tensor_count(ck);
    char name[512];
    for (size_t p = 0; p < 2; p++) {
        char fused_layer[512] = "";
        for (size_t i = 0; i < n && !fused_layer[0]; i++) {
            qtl_ckpt_tensor_name(ck, i, name, sizeof name);
            char *hit = strstr(name, pairs[p].fused);
            if (hit)
                snprintf(fused_layer, sizeof fused_layer, "%.*s", (int)(hit - name), name);
        }
        for (size_t i = 0; i < n && fused_layer[0]; i++) {
            qtl_ckpt_tensor_name(ck, i, name, sizeof name);
            char *hit = strstr(name, pairs[p].split);
            if (hit && (size_t)(hit - name) == strlen(fused_layer) && !strncmp(name, fused_layer, strlen(fused_layer))) {
                add_default(r, QTL_FINDING_NAME_FUSED_AND_SPLIT,
                    "%s: both the fused (%s*) and the split (%s*) copies of the layer are present", fused_layer,
                    pairs[p].fused + 1, pairs[p].split + 1);
                break;
            }
        }
    }
}

/* On-disk state of one checkpoint module (e.g. model.layers.0.mlp.gate_proj):
 * -1 absent, 0 unquantized (16/32-bit weight, no scale), 1 quantized. */
static int disk_quantized(qtl_ckpt_t *ck, const char *mod)
{
    static const char *const qsuf[] = {".weight_packed", ".weight_scale", ".weight_scale_inv", ".weight_global_scale",
                                       ".weight_scale_2"};
    char nm[400];
    size_t i;
    for (size_t k = 0; k < sizeof qsuf / sizeof qsuf[0]; k++) {
        snprintf(nm, sizeof nm, "%s%s", mod, qsuf[k]);
        if (qtl_ckpt_tensor_find(ck, nm, &i) == QTL_OK)
            return 1;
    }
    snprintf(nm, sizeof nm, "%s.weight", mod);
    struct qtl_tensor_info ti;
    if (qtl_ckpt_tensor_find(ck, nm, &i) != QTL_OK || qtl_ckpt_tensor_at(ck, i, &ti) != QTL_OK)
        return -1;
    return ti.dtype == QTL_DTYPE_BF16 || ti.dtype == QTL_DTYPE_F16 || ti.dtype == QTL_DTYPE_F32 ? 0 : 1;
}

/* Turns the loader's errors about one module into consequences of a root finding. */
static void demote(struct report *r, const char *mod)
{
    char key[200];
    snprintf(key, sizeof key, "'%s.", mod);
    for (size_t i = 0; i < r->n; i++)
        if (r->f[i].sev == QTL_SEV_ERROR && strstr(r->f[i].message, key)) {
            r->f[i].sev = qtl_finding_severity(QTL_FINDING_CONSEQUENCE);
            snprintf(r->f[i].id, sizeof r->f[i].id, "%s", qtl_finding_id(QTL_FINDING_CONSEQUENCE));
        }
}

/* Per linear layer of the loader's model: the scheme the config gives it (counted), and
 * whether the tensors on disk agree: quantized in the config but stored unquantized, or the
 * reverse. */
static void quant_layer_checks(struct report *r, qtl_ckpt_t *ck, const qtl_load_t *l, size_t counts[QTL_LS_COUNT])
{
    for (size_t li = 0; li < qtl_load_layer_count(l); li++) {
        struct qtl_layer_info in;
        qtl_load_layer_at(l, li, &in);
        counts[in.quant.scheme]++;
        int nq = 0, nu = 0;
        for (size_t p = 0; p < in.nmodules; p++) {
            int st = disk_quantized(ck, in.modules[p]);
            nq += st == 1, nu += st == 0;
        }
        if (in.quant.scheme != QTL_LS_UNQUANTIZED && nu && !nq)
            add_default(r, QTL_FINDING_QUANT_LAYER_UNQUANTIZED,
                        "%s: the quantization config gives it %s, but the checkpoint stores it unquantized (16/32-bit "
                        "weight, no scale tensors); add it to the config's ignore list or quantize it",
                        in.prefix, qtl_layer_scheme_name(in.quant.scheme));
        else if (in.quant.scheme == QTL_LS_UNQUANTIZED && nq)
            add_default(r, QTL_FINDING_QUANT_LAYER_QUANTIZED,
                        "%s: the config leaves it unquantized (ignored or no quantization_config), but the checkpoint "
                        "stores quantized weights or scales for it",
                        in.prefix);
        else
            continue;
        for (size_t p = 0; p < in.nmodules; p++)
            demote(r, in.modules[p]);
        demote(r, in.prefix);
    }
}

/* The quantization method a config names, read directly when qtl's config parser refuses it. */
static void raw_method(const char *dir, char *name, size_t cap, char *source, size_t scap)
{
    char path[4200];
    static const char *const files[2] = {"config.json", "hf_quant_config.json"};
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        json_t *j = json_load_file(path, 0, NULL);
        json_t *q = json_object_get(j, f ? "quantization" : "quantization_config");
        const char *m = json_string_value(json_object_get(q, f ? "quant_algo" : "quant_method"));
        if (m) {
            snprintf(name, cap, "%s", m);
            snprintf(source, scap, "%s", files[f]);
        }
        json_decref(j);
        if (m)
            return;
    }
}

static int verify(int argc, char **argv);

/* A directory `qtl shard` wrote (vLLM's sharded_state names): its layout from the first
 * file's metadata, then every rank planned and its scales read, as one report. */
static int verify_presharded(const char *dir, int json, int strict)
{
    char file[4200];
    int pp_dir = 0;
    qtl_shard_file_name(file, sizeof file, dir, 0, 0, 1, 0);
    if (access(file, F_OK) != 0) {
        qtl_shard_file_name(file, sizeof file, dir, 0, 0, 2, 0);
        pp_dir = 1;
    }
    qtl_st_t *st = NULL;
    if (qtl_st_open_file(file, NULL, &st) != QTL_OK) {
        fprintf(stderr, "qtl verify: %s\n", qtl_st_errmsg(st));
        qtl_st_close(st);
        return CLI_USAGE;
    }
    const char *m_tp = qtl_st_metadata_get(st, "qtl.tp"), *m_pp = qtl_st_metadata_get(st, "qtl.pp");
    const char *m_for = qtl_st_metadata_get(st, "qtl.for"), *m_stage = qtl_st_metadata_get(st, "qtl.stage");
    const char *m_src = qtl_st_metadata_get(st, "qtl.source"), *m_v = qtl_st_metadata_get(st, "qtl.vllm");
    unsigned long tp = m_tp ? strtoul(m_tp, NULL, 10) : 0, pp = m_pp ? strtoul(m_pp, NULL, 10) : 1;
    char what[512];
    snprintf(what, sizeof what, "%s (tp=%lu, pp=%lu, stage %s, from %s)",
             m_for && !strcmp(m_for, "vllm") ? "vLLM sharded_state directory" : "qtl pre-sharded directory", tp, pp,
             m_stage ? m_stage : "?", m_src && *m_src ? m_src : "?");
    int bad = !tp || !pp || (pp > 1) != pp_dir;
    size_t nerr = 0, nwarn = 0;
    json_t *ranks = json_array(), *fa = json_array();
    for (unsigned long r = 0; !bad && r < tp * pp; r++) {
        struct qtl_load_options o = {.tp = (uint32_t)tp, .rank = (uint32_t)(r % tp), .pp = (uint32_t)pp,
                                     .pp_rank = (uint32_t)(r / tp), .dtype_override = QTL_DTYPE_COUNT,
                                     .verify = QTL_READ_SCALES};
        qtl_load_t *l = NULL;
        int rc = qtl_load_open(dir, &o, &l);
        if (!rc)
            qtl_load_run(l);
        size_t params = rc ? 0 : qtl_load_param_count(l);
        if (rc) {
            nerr++;
            json_array_append_new(fa, json_pack("{s:s, s:s, s:o}", "severity", "error", "id", qtl_finding_id(QTL_FINDING_SHARD_INVALID),
                                                "message", cli_json_str(qtl_load_errmsg(l))));
            if (!json)
                printf("error [%s]: rank %lu: %s\n", qtl_finding_id(QTL_FINDING_SHARD_INVALID), r, qtl_load_errmsg(l));
        }
        for (size_t i = 0; !rc && i < qtl_load_finding_count(l); i++) {
            struct qtl_diag d;
            qtl_load_finding_at(l, i, &d);
            nerr += d.severity == QTL_SEV_ERROR;
            nwarn += d.severity == QTL_SEV_WARNING;
            json_array_append_new(fa, json_pack("{s:s, s:o, s:o}", "severity", sev_name(d.severity), "id",
                                                cli_json_str(d.id), "message", cli_json_str(d.message)));
            if (!json)
                printf("%s [%s]: rank %lu: %s\n", sev_name(d.severity), d.id, r, d.message);
        }
        json_array_append_new(ranks, json_pack("{s:I, s:o, s:b}", "rank", (json_int_t)r, "parameters",
                                               cli_json_u64(params), "loads", !rc));
        qtl_load_close(l);
    }
    qtl_st_close(st);
    if (bad) {
        fprintf(stderr, "qtl verify: %s: no qtl.tp/qtl.pp metadata matching its file names\n", dir);
        json_decref(ranks);
        json_decref(fa);
        return CLI_USAGE;
    }
    const char *verdict = nerr ? "errors" : nwarn ? "warnings" : "ok";
    int out_rc = 0;
    if (json) {
        json_t *doc = json_pack("{s:s, s:o, s:{s:o, s:I, s:I, s:o, s:o, s:o}, s:o, s:s}", "schema", "qtl.verify/1",
                                "checkpoint", cli_json_str(dir), "presharded", "for", cli_json_str(m_for), "tp",
                                (json_int_t)tp, "pp", (json_int_t)pp, "stage", cli_json_str(m_stage), "vllm",
                                cli_json_str(m_v), "ranks", ranks, "findings", fa, "verdict", verdict);
        out_rc = cli_json_dump(doc, JSON_INDENT(2));
        printf("\n");
    } else {
        json_decref(ranks);
        json_decref(fa);
        printf("%s: %s; every rank planned and its scales read\n", dir, what);
        printf("verdict: %s (%zu error(s), %zu warning(s))\n", verdict, nerr, nwarn);
    }
    return nerr || (strict && nwarn) || out_rc ? CLI_FINDINGS : CLI_OK;
}

/* Under mpiexec, rank 0 verifies (headers and scales: nothing worth splitting) and every
 * rank exits with its status; the others only wait for it. */
int cmd_verify(int argc, char **argv)
{
#ifdef QTL_MPI
    if (cli_dist) {
        int rc = qtl_dist_rank(cli_dist) == 0 ? verify(argc, argv) : CLI_OK, worst = rc;
        fflush(stdout);
        if (qtl_dist_agree(cli_dist, rc, &worst, NULL))
            qtl_dist_abort(cli_dist, CLI_FINDINGS);
        return worst;
    }
#endif
    return verify(argc, argv);
}

static int verify(int argc, char **argv)
{
    const char *ckpt = NULL, *allow[64];
    size_t nallow = 0;
    unsigned long long tp = 0, pp = 0;
    int json = 0, deep = 0, strict = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--tp") && i + 1 < argc) || !strncmp(a, "--tp=", 5)) {
            if (cli_parse_u64(a[4] == '=' ? a + 5 : argv[++i], &tp) || !tp || tp > 4096)
                return cli_usage_error("verify", "--tp takes 1..4096");
        } else if (!strcmp(a, "--pp") && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &pp) || !pp || pp > 1024)
                return cli_usage_error("verify", "--pp takes 1..1024");
        } else if (!strcmp(a, "--tp-all"))
            tp = 0;
        else if (!strcmp(a, "--deep"))
            deep = 1;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--strict"))
            strict = 1;
        else if (!strcmp(a, "--allow") && i + 1 < argc) {
            if (nallow == 64)
                return cli_usage_error("verify", "too many --allow");
            allow[nallow++] = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: qtl verify CKPT [--tp T | --tp-all] [--pp P] [--deep] [--json] [--strict] [--allow ID]...\n"
                   "  Checks a checkpoint before it reaches a GPU: every file rule, the quantization config\n"
                   "  against the tensors, every scale the loader will use (values: per-tensor, global,\n"
                   "  channel and input scales; --deep also scans group/block scales), names no parameter\n"
                   "  takes, and each tensor-parallel size (default: every power of two up to 64).\n"
                   "  Reads headers and scale tensors only. Exit: 0 clean or warnings, 1 errors (--strict:\n"
                   "  warnings too), 2 usage or unreadable CKPT. JSON schema: docs/verify-json.md.\n"
                   "  --pp P: each pipeline stage's layers, parameters and bytes per rank (at --tp T, else 1),\n"
                   "  split as vLLM splits them (VLLM_PP_LAYER_PARTITION is honoured).\n");
            return CLI_OK;
        } else if (a[0] == '-' && a[1])
            return cli_usage_error("verify", "unknown option '%s'", a);
        else if (!ckpt)
            ckpt = a;
        else
            return cli_usage_error("verify", "unexpected argument '%s'", a);
    }
    if (!ckpt)
        return cli_usage_error("verify", "missing CKPT (see qtl verify --help)");
    char probe[4200], probe_pp[4200];
    qtl_shard_file_name(probe, sizeof probe, ckpt, 0, 0, 1, 0);
    qtl_shard_file_name(probe_pp, sizeof probe_pp, ckpt, 0, 0, 2, 0);
    if (access(probe, F_OK) == 0 || access(probe_pp, F_OK) == 0)
        return verify_presharded(ckpt, json, strict);
    double t0 = cli_now();
    qtl_ckpt_t *ck = NULL;
    if (qtl_ckpt_open(ckpt, NULL, &ck) != QTL_OK) {
        fprintf(stderr, "qtl verify: %s\n", qtl_ckpt_errmsg(ck));
        qtl_ckpt_close(ck);
        return CLI_USAGE;
    }
    struct report r = {0};
    qtl_config_t *cfg = NULL;
    char source[64] = "";
    int crc = qtl_config_open(qtl_ckpt_dir(ck), NULL, QTL_DTYPE_COUNT, &cfg), have_cfg = crc == QTL_OK;
    if (!have_cfg)
        add_default(&r, crc == QTL_ERR_UNSUPPORTED ? QTL_FINDING_CONFIG_UNSUPPORTED : QTL_FINDING_CONFIG_INVALID, "%s",
                    qtl_config_errmsg(cfg));
    enum qtl_quant_method method = have_cfg ? qtl_config_method(cfg) : QTL_QM_NONE;
    char mname[64];
    snprintf(mname, sizeof mname, "%s", method_name(method));
    if (!have_cfg) /* still name what the config asks for (mxfp4, gptq, awq, ...) */
        raw_method(qtl_ckpt_dir(ck), mname, sizeof mname, source, sizeof source);
    struct qtl_model_shape shape = {0};
    if (have_cfg) {
        shape = *qtl_config_shape(cfg);
        char hfq[4200];
        snprintf(hfq, sizeof hfq, "%s/hf_quant_config.json", qtl_ckpt_dir(ck));
        snprintf(source, sizeof source, "%s",
                 method == QTL_QM_MODELOPT && access(hfq, R_OK) == 0 ? "config.json + hf_quant_config.json" : "config.json");
    }
    name_checks(&r, ck);
    /* tp = 1: the whole checkpoint, scales read */
    uint64_t bytes = 0;
    size_t counts[QTL_LS_COUNT] = {0};
    if (have_cfg) {
        struct qtl_load_options o = {.tp = 1, .rank = 0, .dtype_override = QTL_DTYPE_COUNT, .allow = allow, .nallow = nallow, .verify = deep ? 2 : 1};
        qtl_load_t *l = NULL;
        if (qtl_load_open(ckpt, &o, &l) != QTL_OK) {
            add(&r, QTL_SEV_ERROR, open_fail_id(l), "%s", qtl_load_errmsg(l));
        } else {
            qtl_load_run(l);
            for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
                struct qtl_diag d;
                qtl_load_finding_at(l, i, &d);
                add(&r, d.severity, d.id, "%s", d.message);
            }
            scale_checks(&r, l, &shape);
            bytes += qtl_load_bytes_read(l);
            quant_layer_checks(&r, ck, l, counts);
        }
        qtl_load_close(l);
    }
    /* every tp: plan only */
    uint32_t tps[8], ntp = 0, largest = 0;
    if (tp)
        tps[ntp++] = (uint32_t)tp;
    else
        for (uint32_t t = 1; t <= 64; t *= 2)
            tps[ntp++] = t;
    int tp_ok[8] = {0};
    char tp_why[8][32];
    for (uint32_t k = 0; k < ntp && have_cfg; k++) {
        struct qtl_load_options o = {.tp = tps[k], .rank = 0, .dtype_override = QTL_DTYPE_COUNT, .allow = allow, .nallow = nallow, .verify = 3};
        qtl_load_t *l = NULL;
        enum qtl_severity sev = tp ? QTL_SEV_ERROR : QTL_SEV_INFO; /* a size not asked for only informs */
        snprintf(tp_why[k], sizeof tp_why[k], "ok");
        if (qtl_load_open(ckpt, &o, &l) != QTL_OK) {
            snprintf(tp_why[k], sizeof tp_why[k], "%s", open_fail_id(l));
            add(&r, sev, tp_why[k], "%s", qtl_load_errmsg(l));
        } else if (qtl_load_run(l) != QTL_OK) {
            for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
                struct qtl_diag d;
                qtl_load_finding_at(l, i, &d);
                if (d.severity == QTL_SEV_ERROR && !strcmp(d.id, qtl_finding_id(QTL_FINDING_TENSOR_SHAPE))) {
                    snprintf(tp_why[k], sizeof tp_why[k], "%s", d.id);
                    add(&r, sev, d.id, "tp=%u: %s", tps[k], d.message);
                }
            }
            tp_ok[k] = !strcmp(tp_why[k], "ok");
        } else {
            tp_ok[k] = 1;
        }
        if (tp_ok[k] && tps[k] > largest)
            largest = tps[k];
        if (tp_ok[k] && shape.kv_heads && tps[k] > shape.kv_heads)
            add_default(&r, QTL_FINDING_TP_KV_REPLICATED,
                "tp=%u: the %u kv heads are replicated %u times (each rank holds 1 kv head; each kv head's k/v rows "
                "and scales are loaded on %u ranks)", tps[k], shape.kv_heads, tps[k] / shape.kv_heads, tps[k] / shape.kv_heads);
        qtl_load_close(l);
    }
    /* --pp: every stage's plan at tp (or 1), rank 0 */
    struct stage {
        uint32_t start, end;
        size_t params;
        uint64_t bytes;
        int ok;
    } stages[1024];
    const char *partition = getenv("VLLM_PP_LAYER_PARTITION");
    int pp_bad = 0;
    for (uint32_t s = 0; s < pp && have_cfg; s++) {
        struct qtl_load_options o = {.tp = tp ? (uint32_t)tp : 1, .rank = 0, .dtype_override = QTL_DTYPE_COUNT,
                                     .allow = allow, .nallow = nallow, .verify = 3, .pp = (uint32_t)pp, .pp_rank = s,
                                     .pp_partition = partition};
        qtl_load_t *l = NULL;
        struct stage *g = &stages[s];
        *g = (struct stage){0};
        char why[256];
        if (qtl_pp_layers(shape.layers, (uint32_t)pp, s, partition, &g->start, &g->end, why, sizeof why)) {
            fprintf(stderr, "qtl verify: --pp %llu over %u layers: %s\n", pp, shape.layers, why);
            pp_bad = 1; /* the user's environment: a usage error */
            pp = 0;
            break;
        }
        if (qtl_load_open(ckpt, &o, &l) == QTL_OK) {
            g->ok = 1;
            g->params = qtl_load_param_count(l);
            for (size_t i = 0; i < g->params; i++) {
                struct qtl_param_info pi;
                qtl_load_param_at(l, i, &pi);
                g->bytes += pi.nbytes;
            }
        }
        qtl_load_close(l);
    }
    double secs = cli_now() - t0;
    for (size_t i = 0; i < qtl_ckpt_shard_count(ck); i++) {
        qtl_st_t *st;
        if (qtl_ckpt_shard(ck, i, &st) == QTL_OK)
            bytes += 8 + qtl_st_header_size(st);
    }
    size_t nerr = 0, nwarn = 0;
    for (size_t i = 0; i < r.n; i++)
        nerr += r.f[i].sev == QTL_SEV_ERROR, nwarn += r.f[i].sev == QTL_SEV_WARNING;
    const char *verdict = nerr ? "errors" : nwarn ? "warnings" : "ok";
    int out_rc = 0;
    if (json) {
        json_t *layers = json_object(), *tpa = json_array(), *fa = json_array();
        for (int s = 0; s < QTL_LS_COUNT; s++)
            if (counts[s])
                json_object_set_new(layers, qtl_layer_scheme_name((enum qtl_layer_scheme)s), cli_json_u64(counts[s]));
        for (uint32_t k = 0; k < ntp && have_cfg; k++)
            json_array_append_new(tpa, json_pack("{s:i, s:b, s:o}", "tp", (int)tps[k], "loads", tp_ok[k], "reason",
                                                 cli_json_str(tp_why[k])));
        for (size_t i = 0; i < r.n; i++)
            json_array_append_new(fa, json_pack("{s:s, s:o, s:o}", "severity", sev_name(r.f[i].sev), "id",
                                                cli_json_str(r.f[i].id), "message", cli_json_str(r.f[i].message)));
        json_t *doc = json_pack("{s:s, s:o, s:{s:o, s:o, s:o}, s:o, s:I}", "schema", "qtl.verify/1", "checkpoint",
                                cli_json_str(ckpt), "quantization", "method", cli_json_str(mname), "source",
                                cli_json_str(source), "layers", layers, "tp", tpa, "largest_tp", (json_int_t)largest);
        if (pp && doc) {
            json_t *pa = json_array();
            for (uint32_t s = 0; s < pp && have_cfg; s++)
                json_array_append_new(pa, json_pack("{s:I, s:I, s:I, s:b, s:o, s:o}", "stage", (json_int_t)s,
                                                    "layer_start", (json_int_t)stages[s].start, "layer_end",
                                                    (json_int_t)stages[s].end, "loads", stages[s].ok, "parameters",
                                                    cli_json_u64(stages[s].params), "bytes_per_rank",
                                                    cli_json_u64(stages[s].bytes)));
            json_object_set_new(doc, "pp", pa);
        }
        if (doc) {
            json_object_set_new(doc, "findings", fa);
            json_object_set_new(doc, "bytes_read", cli_json_u64(bytes));
            json_object_set_new(doc, "seconds", cli_json_seconds(secs));
            json_object_set_new(doc, "verdict", json_string(verdict));
        } else {
            json_decref(fa);
        }
        out_rc = cli_json_dump(doc, JSON_INDENT(2));
        printf("\n");
    } else {
        int color = isatty(1);
        printf("checkpoint %s: %s quantization (%s)%s\n", ckpt, mname, source[0] ? source : "no config",
               have_cfg ? "" : ", not loadable by qtl");
        for (int s = 0; s < QTL_LS_COUNT; s++)
            if (counts[s])
                printf("  %zu linear layer(s): %s\n", counts[s], qtl_layer_scheme_name((enum qtl_layer_scheme)s));
        printf("tensor parallel:");
        for (uint32_t k = 0; k < ntp && have_cfg; k++)
            printf(" %u:%s", tps[k], tp_ok[k] ? "ok" : tp_why[k]);
        if (have_cfg)
            printf("; largest tp that loads: %u\n", largest);
        else
            printf(" not checked (no usable config)\n");
        for (uint32_t s = 0; s < pp && have_cfg; s++)
            printf("pipeline stage %u/%llu (tp=%llu): layers %u..%u (%u), %zu parameters, %.1f MB per rank%s\n", s, pp,
                   tp ? tp : 1, stages[s].start, stages[s].end ? stages[s].end - 1 : 0, stages[s].end - stages[s].start,
                   stages[s].params, (double)stages[s].bytes / 1e6, stages[s].ok ? "" : " (does not load at this tp)");
        for (int sev = QTL_SEV_ERROR; sev >= QTL_SEV_INFO; sev--)
            for (size_t i = 0; i < r.n; i++)
                if ((int)r.f[i].sev == sev)
                    printf("%s%s%s [%s]: %s\n", color ? (sev == QTL_SEV_ERROR ? "\033[31m" : sev == QTL_SEV_WARNING ? "\033[33m" : "") : "",
                           sev_name(r.f[i].sev), color ? "\033[0m" : "", r.f[i].id, r.f[i].message);
        printf("read %.2f MB (headers and scales) in %.3f s\n", (double)bytes / 1e6, secs);
        printf("verdict: %s (%zu error(s), %zu warning(s))\n", verdict, nerr, nwarn);
    }
    for (size_t i = 0; i < r.n; i++)
        free(r.f[i].message);
    free(r.f);
    qtl_config_close(cfg);
    qtl_ckpt_close(ck);
    if (pp_bad)
        return CLI_USAGE;
    return nerr || (strict && nwarn) || out_rc ? CLI_FINDINGS : CLI_OK;
}
