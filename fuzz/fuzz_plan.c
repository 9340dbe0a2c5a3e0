/* Fuzz target: a whole checkpoint directory through the loader — plan,
 * execution, post-processing. The input is
 *
 *   flags0 flags1 config.json SEP hf_quant_config.json SEP index.json SEP shard0 SEP shard1
 *          [SEP pp_partition]
 *
 * (SEP = FZ_SEP; an empty part is a file that does not exist). A shard part is
 * a u32 LE fill length, then the file's bytes (8-byte N, N bytes of header,
 * optional data); `fill` more bytes (at most 256 KiB) are appended, cycling the data given (0x3C
 * when none: small positive scales), so a seed holds only headers however
 * large its tensors are. The files are written into one tmpfs directory per
 * process, then qtl_load_open + qtl_load_run + qtl_load_process, walking every
 * finding, parameter, layer, op and file. Must never crash, leak or touch
 * memory outside what the API hands out (parameters are bound to buffers of
 * their exact size by default).
 *
 *   flags0 bits 0-1  tp 1, 2, 4, 8          flags1 bits 0-1  read level (0: all)
 *          bit 2     rank tp-1 (else 0)            bits 2-3  shard names: 0 model-0000{1,2}-of-00002,
 *          bits 3-4  memory: 0/3 bound per                   1 model.safetensors + model-00002-of-00002,
 *                    parameter, 1 one caller                 2 model-rank-{0,1}-part-0 (pre-sharded),
 *                    buffer, 2 the loader's arena            3 model-00001-of-00001 + extra
 *          bit 5     dtype override F16            bit 4     two executor threads
 *          bit 6     O_DIRECT reads                bit 5     pp 2 (pipeline stages), bit 6: pp_rank 1
 *          bit 7     allow every finding ID        bit 7     pp_partition: the last part
 *                    (errors become warnings, so post-processing runs)
 *
 * Harness limits (not bugs): configs of more than 256 decoder layers are skipped (they only
 * make a run slower), and so is the run of a plan needing more than 256 MiB of parameters. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILL ((size_t)256 << 10)
#define MAX_PARAM_BYTES ((uint64_t)256 << 20)

static const char *const shard_names[4][2] = {
    {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"},
    {"model.safetensors", "model-00002-of-00002.safetensors"},
    {"model-rank-0-part-0.safetensors", "model-rank-1-part-0.safetensors"},
    {"model-00001-of-00001.safetensors", "extra.safetensors"},
};

/* Every file a previous input may have left behind. */
static const char *const all_files[] = {"config.json",
                                        "hf_quant_config.json",
                                        "model.safetensors.index.json",
                                        "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors",
                                        "model.safetensors",
                                        "model-rank-0-part-0.safetensors",
                                        "model-rank-1-part-0.safetensors",
                                        "model-00001-of-00001.safetensors",
                                        "extra.safetensors"};
#define NFILES (sizeof all_files / sizeof all_files[0])
static unsigned present; /* bit i: all_files[i] exists */

static void mark(const char *name, unsigned *now)
{
    for (unsigned i = 0; i < NFILES; i++)
        if (!strcmp(all_files[i], name))
            *now |= 1u << i;
}

static void put_json(const char *dir, const char *name, struct fz_part p, unsigned *now)
{
    if (!p.n)
        return;
    fz_write(dir, name, p.p, p.n);
    mark(name, now);
}

static void put_shard(const char *dir, const char *name, struct fz_part p, unsigned *now)
{
    if (!p.n)
        return;
    if (p.n < 4) {
        fz_write(dir, name, p.p, p.n);
    } else {
        size_t fill = (size_t)fz_le(p.p, p.n, 0, 4);
        const uint8_t *raw = p.p + 4;
        size_t n = p.n - 4;
        uint64_t hlen = fz_le(raw, n, 0, 8);
        const uint8_t *pat = NULL;
        size_t npat = 0;
        if (n >= 8 && hlen <= n - 8) {
            pat = raw + 8 + hlen;
            npat = n - 8 - (size_t)hlen;
        }
        fz_write_fill(dir, name, raw, n, pat, npat, fill < MAX_FILL ? fill : MAX_FILL);
    }
    mark(name, now);
}

static void on_progress(void *ud, size_t done, size_t total)
{
    (void)ud;
    if (done > total)
        abort();
}

static void on_bytes(void *ud, uint64_t done, uint64_t total)
{
    (void)ud;
    (void)done;
    (void)total;
}

/* The input columns per rank of layer kind k (0 qkv, 1 o_proj, 2 gate_up, 3 down). */
static uint64_t layer_k(const struct qtl_model_shape *s, int k, uint32_t tp)
{
    switch (k) {
    case 1: return (uint64_t)s->heads * s->head_dim / tp;
    case 3: return s->intermediate / tp;
    default: return s->hidden;
    }
}

/* A parameter of 0 columns: NVFP4 with K < 16, packed with K < 32/bits, WNA16 with group_size > K. */
static int zero_width(const struct qtl_layer_quant *q, uint64_t K, int row_layer)
{
    switch (q->scheme) {
    case QTL_LS_CT_NVFP4:
    case QTL_LS_CT_NVFP4_A16:
    case QTL_LS_MODELOPT_NVFP4:
    case QTL_LS_MODELOPT_W4A16_NVFP4: return K < 16;
    case QTL_LS_CT_WNA16: {
        int partitioned = !(q->actorder || (q->group_size == 0 && row_layer));
        return (q->bits && K < 32 / q->bits) || (partitioned && q->group_size && K < q->group_size);
    }
    default: return 0;
    }
}

/* 0 to skip the input: a harness limit, or a guard. Cached for the configs of the last input. */
static int guards_pass(const char *dir, uint32_t tp, struct fz_part cfg, struct fz_part hfq)
{
    static uint64_t last_key;
    static int last_pass = -1;
    uint64_t key = fz_hash(fz_hash(fz_hash(0, &tp, sizeof tp), cfg.p, cfg.n), hfq.p, hfq.n) ^ cfg.n ^ (hfq.n << 32);
    if (last_pass >= 0 && key == last_key)
        return last_pass;
    qtl_config_t *c = NULL;
    int pass = 1;
    if (qtl_config_open(dir, NULL, QTL_DTYPE_COUNT, &c) == QTL_OK) {
        const struct qtl_model_shape *s = qtl_config_shape(c);
        /* Guard (open bug, tests/fuzz/fuzz_plan/crash-layers-*) and a limit: the model's tables grow
         * with num_hidden_layers before anything checks it against the checkpoint (model.c
         * qtl__model_build: 10^8 layers want ~50 GB). The budget contains that; past 256
         * layers a run is only slower. */
        if (s->layers > 256 && !fz_unguarded())
            pass = 0;
        /* Guard (open bug, tests/fuzz/fuzz_plan/crash-zero-width-*): a parameter whose last
         * dimension is 0 (config sizes that leave no NVFP4 group, pack or WNA16 group per row)
         * divides by zero in plan.c init_param (qtl__param_numel(p) / pcols(p)): SIGFPE. */
        int fused = s->arch == QTL_ARCH_PHI3;
        for (uint32_t li = 0; pass && li < s->layers && !fz_unguarded(); li++) {
            static const char *const mod[4] = {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj",
                                               "mlp.down_proj"};
            static const char *const split[4][3] = {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
                                                    {NULL}, {"mlp.gate_proj", "mlp.up_proj"}, {NULL}};
            for (int k = 0; k < 4 && pass; k++) {
                char pre[128], parts[3][128];
                const char *pp[3];
                size_t np = 0;
                snprintf(pre, sizeof pre, "model.layers.%u.%s", li, mod[k]);
                for (int j = 0; !fused && j < 3 && split[k][j]; j++, np++) {
                    snprintf(parts[j], sizeof parts[j], "model.layers.%u.%s", li, split[k][j]);
                    pp[j] = parts[j];
                }
                struct qtl_layer_quant q;
                if (qtl_config_layer_quant(c, pre, pp, np, &q) == QTL_OK && zero_width(&q, layer_k(s, k, tp), k & 1))
                    pass = 0;
            }
        }
    }
    qtl_config_close(c);
    last_key = key;
    last_pass = pass;
    return pass;
}

static void walk_findings(const qtl_load_t *l)
{
    size_t n = qtl_load_finding_count(l);
    for (size_t i = 0; i < n; i++) {
        struct qtl_diag d;
        enum qtl_finding f;
        if (qtl_load_finding_at(l, i, &d) || !d.id || qtl_finding_lookup(d.id, &f) || !d.message ||
            (unsigned)d.severity > QTL_SEV_ERROR)
            abort(); /* every finding is describable and in the catalogue */
        fz_touch(d.message, strlen(d.message));
        if (d.file)
            fz_touch(d.file, strlen(d.file));
        if (d.tensor)
            fz_touch(d.tensor, strlen(d.tensor));
    }
    struct qtl_diag d;
    if (qtl_load_finding_at(l, n, &d) == QTL_OK)
        abort();
}

/* stage: 0 planned, 1 run, 2 processed. */
static void walk_params(const qtl_load_t *l, int stage, int read_all)
{
    size_t n = qtl_load_param_count(l);
    for (size_t i = 0; i < n; i++) {
        struct qtl_param_info pi;
        if (qtl_load_param_at(l, i, &pi) || !pi.name || !pi.kind || !qtl_dtype_name(pi.dtype) || pi.ndim > 4 ||
            (pi.ndim && !pi.shape))
            abort();
        if (stage == 0 && pi.data)
            abort(); /* no data before qtl_load_run */
        if (stage == 1 && read_all && !pi.data)
            abort(); /* every parameter read */
        if (pi.data)
            fz_touch(pi.data, (size_t)pi.nbytes);
    }
    struct qtl_param_info pi;
    if (qtl_load_param_at(l, n, &pi) == QTL_OK)
        abort();
}

/* Bytes an op writes per row into its parameter (the source row, converted). */
static uint64_t dst_row_bytes(const struct qtl_copy_op *op)
{
    unsigned sb = qtl_dtype_bits(op->src_dtype), db = qtl_dtype_bits(op->dst_dtype);
    return sb ? op->row_bytes / sb * db + (op->row_bytes % sb) * db / sb : 0;
}

/* Does every op that writes a parameter stay inside it? 0 when one does not. */
static int ops_inside(const qtl_load_t *l)
{
    int ok = 1;
    for (size_t i = 0; i < qtl_load_op_count(l); i++) {
        struct qtl_copy_op op;
        struct qtl_param_info pi;
        if (qtl_load_op_at(l, i, &op) || op.superseded || !op.rows || qtl_load_param_at(l, op.param, &pi))
            continue;
        uint64_t end = op.dst_offset + (op.rows - 1) * op.dst_pitch + dst_row_bytes(&op);
        if (end <= pi.nbytes)
            continue;
        int block = strcmp(pi.kind, "BlockQuantScaleParameter") == 0;
        if (!block || fz_unguarded() || fz_verbose())
            fprintf(stderr, "fuzz_plan: op %zu ('%s') writes bytes [%llu, %llu) of parameter '%s' (%llu bytes)\n", i,
                    op.tensor, (unsigned long long)op.dst_offset, (unsigned long long)end, pi.name,
                    (unsigned long long)pi.nbytes);
        /* Guard (open bug, tests/fuzz/fuzz_plan/crash-block-scale-*): block scales of a fused
         * layer whose partitions are not multiples of the block (tp=1 skips check_block) are
         * placed at ceil(offset / block) rows, past the end of the parameter (plan.c emit_shard,
         * and emit() never bounds dst_row + rows). Unguarded the run goes on, and ASan reports
         * the write past the parameter's buffer. Other parameters: a new bug. */
        if (!block)
            abort();
        ok = fz_unguarded();
    }
    return ok;
}

static void walk_plan(const qtl_load_t *l)
{
    size_t np = qtl_load_param_count(l), nf = qtl_load_file_count(l);
    for (size_t i = 0; i < qtl_load_layer_count(l); i++) {
        struct qtl_layer_info li;
        if (qtl_load_layer_at(l, i, &li) || !li.prefix || li.nmodules < 1 || li.nmodules > 3 ||
            (unsigned)li.quant.scheme >= QTL_LS_COUNT)
            abort();
        for (size_t k = 0; k < li.nmodules; k++)
            if (!li.modules[k])
                abort();
    }
    for (size_t i = 0; i < qtl_load_op_count(l); i++) {
        struct qtl_copy_op op;
        if (qtl_load_op_at(l, i, &op) || !op.tensor || op.param >= np || op.file >= nf)
            abort(); /* an op names a parameter and a file of the plan */
    }
    for (size_t i = 0; i < nf; i++) {
        uint64_t sz;
        const char *path = qtl_load_file_at(l, i, &sz);
        if (!path)
            abort();
    }
    (void)qtl_load_plan_hash(l);
    (void)qtl_load_bytes_to_read(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *dir = fz_dir("plan");
    uint8_t f0 = data[0], f1 = data[1];
    struct fz_part p[6];
    fz_split(data + 2, size - 2, p, 6);
    if (fz_regex_bomb(p[0].p, p[0].n) || fz_regex_bomb(p[1].p, p[1].n))
        return 0; /* the configs: see fuzz_util.h */
    unsigned now = 0;
    put_json(dir, "config.json", p[0], &now);
    put_json(dir, "hf_quant_config.json", p[1], &now);
    put_json(dir, "model.safetensors.index.json", p[2], &now);
    const char *const *names = shard_names[(f1 >> 2) & 3];
    put_shard(dir, names[0], p[3], &now);
    put_shard(dir, names[1], p[4], &now);
    for (unsigned i = 0; i < NFILES; i++)
        if ((present & ~now) & (1u << i))
            fz_remove(dir, all_files[i]);
    present = now;

    static const uint32_t tps[4] = {1, 2, 4, 8};
    static const char *allow_all[QTL_FINDING_COUNT];
    for (int i = 0; i < QTL_FINDING_COUNT; i++)
        allow_all[i] = qtl_finding_id((enum qtl_finding)i);
    struct fz_budget b;
    fz_budget_init(&b, (size_t)128 << 20);
    struct qtl_load_options o;
    memset(&o, 0, sizeof o);
    o.tp = tps[f0 & 3];
    o.rank = f0 & 4 ? o.tp - 1 : 0;
    o.dtype_override = f0 & 0x20 ? QTL_DTYPE_F16 : QTL_DTYPE_COUNT;
    o.allow = f0 & 0x80 ? allow_all : NULL;
    o.nallow = f0 & 0x80 ? QTL_FINDING_COUNT : 0;
    o.allocator = &b.a;
    o.progress = on_progress;
    o.progress_bytes = on_bytes;
    o.verify = f1 & 3;
    o.threads = f1 & 0x10 ? 2 : 1;
    o.direct = (f0 & 0x40) != 0;
    o.pp = f1 & 0x20 ? 2 : 1;
    o.pp_rank = o.pp == 2 && (f1 & 0x40) ? 1 : 0;
    char partition[64];
    if (f1 & 0x80) {
        size_t n = p[5].n < sizeof partition - 1 ? p[5].n : sizeof partition - 1;
        if (n)
            memcpy(partition, p[5].p, n);
        partition[n] = '\0';
        o.pp_partition = partition;
    }
    int mem = (f0 >> 3) & 3;
    if (!guards_pass(dir, o.tp, p[0], p[1]))
        return 0;

    qtl_load_t *l = NULL;
    int rc = qtl_load_open(dir, &o, &l);
    if (!l) {
        if (rc != QTL_ERR_NOMEM)
            abort(); /* only an allocation failure leaves no handle */
        return 0;
    }
    fz_touch(qtl_load_errmsg(l), strlen(qtl_load_errmsg(l)));
    if (fz_verbose())
        fprintf(stderr, "fuzz_plan: tp=%u rank=%u pp=%u/%u open: %s%s%s, %zu findings\n", o.tp, o.rank, o.pp_rank,
                o.pp, qtl_errname(rc), rc ? ": " : "", rc ? qtl_load_errmsg(l) : "", qtl_load_finding_count(l));
    const char *fail = qtl_load_fail_id(l);
    enum qtl_finding fid;
    if (fail && qtl_finding_lookup(fail, &fid))
        abort();
    walk_findings(l);
    void **bound = NULL;
    size_t nbound = 0;
    void *buffer = NULL;
    if (rc == QTL_OK) {
        walk_plan(l);
        walk_params(l, 0, 0);
        uint64_t need = qtl_load_bytes_needed(l), all = 0;
        int run = need <= MAX_PARAM_BYTES && ops_inside(l);
        nbound = qtl_load_param_count(l);
        for (size_t i = 0; i < nbound; i++) {
            struct qtl_param_info pi;
            qtl_load_param_at(l, i, &pi);
            all += pi.nbytes < MAX_PARAM_BYTES ? pi.nbytes : MAX_PARAM_BYTES;
        }
        if (run && (mem == 0 || mem == 3) && nbound && all <= MAX_PARAM_BYTES) {
            if (!(bound = calloc(nbound, sizeof *bound)))
                abort();
            for (size_t i = 0; i < nbound; i++) {
                struct qtl_param_info pi;
                qtl_load_param_at(l, i, &pi);
                if (!(bound[i] = calloc(1, pi.nbytes ? (size_t)pi.nbytes : 1)))
                    abort();
                if (qtl_load_bind(l, i, bound[i], pi.nbytes) != QTL_OK)
                    abort();
            }
        } else if (run && mem == 1) {
            if (!(buffer = calloc(1, need ? (size_t)need : 1)))
                abort();
            if (qtl_load_set_buffer(l, buffer, (size_t)need) != QTL_OK)
                abort();
        }
        if (run) {
            rc = qtl_load_run(l);
            walk_findings(l);
            walk_params(l, 1, rc != QTL_ERR_NOMEM && o.verify == QTL_READ_ALL);
            if (rc != QTL_ERR_NOMEM && qtl_load_process(l) == QTL_OK) {
                walk_findings(l);
                walk_params(l, 2, 0);
            }
            fz_touch(qtl_load_errmsg(l), strlen(qtl_load_errmsg(l)));
        }
    }
    qtl_load_close(l);
    for (size_t i = 0; bound && i < nbound; i++)
        free(bound[i]);
    free(bound);
    free(buffer);
    if (b.held)
        abort(); /* a closed handle holds nothing */
    return 0;
}
