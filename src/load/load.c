/* The loader: opens a checkpoint, has plan.c lay out the rank's parameters
 * and every copy vLLM's weight_loader calls make, then executes that plan
 * (exec.c) into one arena (or the caller's memory) and checks the values it
 * brought. Stage "loaded" is the state after the last weight_loader call;
 * qtl_load_process gives stage "processed" (postload.c). */
#include "load_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

/* ---- findings ---- */

static int add_finding(qtl_load_t *l, enum qtl_severity sev, int code, const char *id, const char *file,
                       const char *tensor, const char *msg)
{
    if (qtl__findings_add(&l->f, &l->al, sev, code, id, file, tensor, msg))
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    if (sev == QTL_SEV_ERROR && l->err.code == QTL_OK)
        qtl__fail(&l->err, code, "%s", msg);
    return QTL_OK;
}

/* The catalogue's severity; an error the caller allows (--allow ID) is a warning. */
int qtl__finding(qtl_load_t *l, int code, enum qtl_finding f, const char *file, const char *tensor, const char *fmt,
                 ...)
{
    char msg[QTL_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *id = qtl_finding_id(f);
    enum qtl_severity sev = qtl_finding_severity(f);
    for (size_t i = 0; sev == QTL_SEV_ERROR && i < l->nallow; i++)
        if (!strcmp(l->allow[i], id))
            sev = QTL_SEV_WARNING;
    return add_finding(l, sev, code, id, file, tensor, msg);
}

/* ---- open: the plan ---- */

/* A directory written by `qtl shard`: vLLM's sharded_state names,
 * model-rank-R-part-0.safetensors, or model-pp-P-tp-R-part-0.safetensors with
 * pipeline stages, with qtl.tp / qtl.rank / qtl.stage metadata and config.json. */
static int open_presharded(qtl_load_t *l, const char *path, const struct qtl_load_options *o, int *is_pre)
{
    char file[4200];
    uint32_t pp = o->pp ? o->pp : 1;
    int found[2]; /* without stages, with stages */
    for (int k = 0; k < 2; k++) { /* access(), not fopen(): libc would allocate a FILE */
        qtl_shard_file_name(file, sizeof file, path, 0, 0, k ? 2 : 1, 0);
        found[k] = access(file, F_OK) == 0;
    }
    *is_pre = found[0] || found[1];
    if (!*is_pre)
        return QTL_OK;
    if (!found[pp > 1])
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT,
                         "%s: pre-sharded %s pipeline stages (model-%s-*.safetensors), asked for pp=%u", path,
                         found[1] ? "with" : "without", found[1] ? "pp" : "rank", pp);
    qtl_shard_file_name(file, sizeof file, path, o->rank, o->pp_rank, pp, 0);
    struct qtl_open_options oo = {o->allocator, 0};
    if (qtl_st_open_file(file, &oo, &l->pre) != QTL_OK)
        return qtl__fail(&l->err, QTL_ERR_OPEN, "%s", qtl_st_errmsg(l->pre));
    const char *tp = qtl_st_metadata_get(l->pre, "qtl.tp"), *rank = qtl_st_metadata_get(l->pre, "qtl.rank");
    const char *stage = qtl_st_metadata_get(l->pre, "qtl.stage");
    if (!tp || !rank || !stage)
        return qtl__fail(&l->err, QTL_ERR_CHECKPOINT, "%s: no qtl.tp / qtl.rank / qtl.stage metadata: not written by qtl shard", file);
    if (strtoul(tp, NULL, 10) != o->tp)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: pre-sharded for tp=%s, asked for tp=%u", path, tp, o->tp);
    if (strtoul(rank, NULL, 10) != o->rank)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: holds rank %s, not %u", file, rank, o->rank);
    const char *fpp = qtl_st_metadata_get(l->pre, "qtl.pp"), *fstage = qtl_st_metadata_get(l->pre, "qtl.pp_rank");
    if ((fpp ? strtoul(fpp, NULL, 10) : 1) != pp || (fstage ? strtoul(fstage, NULL, 10) : 0) != o->pp_rank)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "%s: pre-sharded for pp=%s stage %s, asked for pp=%u stage %u",
                         file, fpp ? fpp : "1", fstage ? fstage : "0", pp, o->pp_rank);
    l->pre_processed = !strcmp(stage, "processed");
    const char *fv = qtl_st_metadata_get(l->pre, "qtl.for");
    l->pre_vllm = fv && !strcmp(fv, "vllm");
    l->pre_part[0] = l->pre;
    l->npre = 1;
    for (uint32_t part = 1;; part++) { /* vLLM globs part-*: every part that exists */
        qtl_shard_file_name(file, sizeof file, path, o->rank, o->pp_rank, pp, part);
        if (access(file, F_OK) != 0)
            break;
        if (l->npre == sizeof l->pre_part / sizeof l->pre_part[0])
            return qtl__fail(&l->err, QTL_ERR_CHECKPOINT, "%s: more than %zu parts", file, l->npre);
        if (qtl_st_open_file(file, &oo, &l->pre_part[l->npre]) != QTL_OK) {
            int rc = qtl__fail(&l->err, QTL_ERR_OPEN, "%s", qtl_st_errmsg(l->pre_part[l->npre]));
            qtl_st_close(l->pre_part[l->npre]);
            l->pre_part[l->npre] = NULL;
            return rc;
        }
        l->npre++;
    }
    return QTL_OK;
}

/* Parameters straight from a processed pre-sharded file. */
static int params_from_file(qtl_load_t *l)
{
    size_t n = 0;
    for (size_t k = 0; k < l->npre; k++)
        n += qtl_st_tensor_count(l->pre_part[k]);
    l->m.params = qtl__calloc(&l->al, n ? n : 1, sizeof *l->m.params);
    if (!l->m.params)
        return QTL_ERR_NOMEM;
    l->m.cap = n;
    for (size_t i = 0, k = 0, at = 0; i < n; i++, at++) {
        while (at >= qtl_st_tensor_count(l->pre_part[k]))
            k++, at = 0;
        struct qtl_tensor_info ti;
        qtl_st_tensor_at(l->pre_part[k], at, &ti);
        struct lparam *p = &l->m.params[l->m.nparams++];
        if (ti.ndim > QTL_PARAM_DIMS)
            return qtl__fail(&l->err, QTL_ERR_CHECKPOINT, "%s: tensor '%s' has %u dimensions (at most %d)",
                             ti.file, ti.name, ti.ndim, QTL_PARAM_DIMS);
        snprintf(p->name, sizeof p->name, "%s", ti.name);
        p->kind = PK_BASE;
        p->dtype = ti.dtype;
        p->ndim = ti.ndim;
        for (uint32_t d = 0; d < ti.ndim; d++)
            p->shape[d] = ti.shape[d];
        p->layer = -1;
    }
    return QTL_OK;
}

int qtl_load_open(const char *path, const struct qtl_load_options *o, qtl_load_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, o ? o->allocator : NULL);
    qtl_load_t *l = *out = qtl__calloc(&al, 1, sizeof *l);
    if (!l)
        return QTL_ERR_NOMEM;
    l->al = al;
    l->m.al = &l->al;
    if (!o || !o->tp || o->rank >= o->tp)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "tp must be >= 1 and rank < tp");
    if ((unsigned)o->verify > QTL_READ_NONE)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "verify (read level) must be 0..3");
    l->m.pp = o->pp ? o->pp : 1;
    l->m.pp_rank = o->pp_rank;
    if (l->m.pp_rank >= l->m.pp)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "pp_rank (%u) must be below pp (%u)", o->pp_rank, l->m.pp);
    l->m.ep = o->ep;
    l->m.first_stage = l->m.pp_rank == 0;
    l->m.last_stage = l->m.pp_rank + 1 == l->m.pp;
    l->pp_partition = o->pp_partition;
    l->allow = o->allow;
    l->nallow = o->nallow;
    l->progress = o->progress;
    l->progress_bytes = o->progress_bytes;
    l->progress_ud = o->progress_ud;
    l->verify = o->verify;
    l->threads = o->threads;
    l->direct = o->direct;
    struct qtl_open_options oo = {o->allocator, 0};
    int pre;
    int rc = open_presharded(l, path, o, &pre);
    if (rc)
        return rc;
    l->m.err = &l->err;
    l->m.tp = o->tp;
    l->m.rank = o->rank;
    if (pre && l->pre_processed) {
        if ((rc = params_from_file(l)))
            return l->err.code ? l->err.code : qtl__fail(&l->err, rc, "out of memory");
        return qtl__plan_presharded(l);
    }
    /* a loaded-stage pre-sharded file takes its layout from the copied config.json */
    if (!pre && (rc = qtl_ckpt_open(path, &oo, &l->ck)) != QTL_OK)
        return qtl__fail(&l->err, rc == QTL_ERR_NOMEM ? rc : QTL_ERR_OPEN, "%s", qtl_ckpt_errmsg(l->ck));
    if ((rc = qtl_config_open(pre ? path : qtl_ckpt_dir(l->ck), &oo, o->dtype_override, &l->cfg)) != QTL_OK)
        return qtl__fail(&l->err, rc == QTL_ERR_NOMEM || !l->cfg ? QTL_ERR_NOMEM : QTL_ERR_JSON, "%s",
                         qtl_config_errmsg(l->cfg));
    l->m.cfg = l->cfg;
    l->m.shape = *qtl_config_shape(l->cfg);
    char why[256];
    if (qtl_pp_layers(l->m.shape.layers, l->m.pp, l->m.pp_rank, l->pp_partition, &l->m.layer_start, &l->m.layer_end,
                      why, sizeof why))
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "pp=%u over %u layers: %s", l->m.pp, l->m.shape.layers, why);
    rc = qtl__model_build(&l->m);
    if (rc)
        return l->err.code ? l->err.code : qtl__fail(&l->err, rc, "out of memory");
    return pre ? qtl__plan_presharded(l) : qtl__plan_build(l);
}

void qtl__param_release(struct lmodel *m, struct lparam *p)
{
    if (p->owned)
        qtl__free(m->al, p->data);
    qtl__free(m->al, p->written);
    qtl__free(m->al, p->unit_op);
    p->data = NULL;
    p->written = NULL;
    p->unit_op = NULL;
}

unsigned char *qtl__param_new_data(struct lmodel *m, struct lparam *p, uint64_t n)
{
    unsigned char *d = qtl__malloc(m->al, n ? (size_t)n : 1);
    if (!d)
        return NULL;
    if (p->owned)
        qtl__free(m->al, p->data);
    p->data = d;
    p->owned = 1;
    return d;
}

void qtl_load_close(qtl_load_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->m.nparams; i++)
        qtl__param_release(&l->m, &l->m.params[i]);
    qtl__free(&l->al, l->m.params);
    qtl__free(&l->al, l->m.layers);
    qtl__free(&l->al, l->m.moe);
    qtl__findings_free(&l->f, &l->al);
    for (size_t i = 0; i < l->nfiles; i++)
        qtl__free(&l->al, l->files[i].path);
    qtl__free(&l->al, l->files);
    qtl__free(&l->al, l->ops);
    qtl__free(&l->al, l->bound);
    if (l->arena) {
        qtl__arena_free(l->arena);
        qtl__free(&l->al, l->arena);
    }
    qtl_config_close(l->cfg);
    qtl_ckpt_close(l->ck);
    for (size_t k = 0; k < l->npre; k++)
        qtl_st_close(l->pre_part[k]);
    if (!l->npre)
        qtl_st_close(l->pre);
    struct qtl_alloc al = l->al;
    qtl__free(&al, l);
}

/* ---- run: memory, then the executor ---- */

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
/* large parameters start on a page, small ones on a cache line */
static uint64_t param_align(uint64_t nbytes) { return nbytes >= (64u << 10) ? 4096 : 64; }

/* Offsets in the arena of every read parameter not bound elsewhere, then the shadow area;
 * UINT64_MAX when the total does not fit (a config's sizes can make it that large). */
static uint64_t layout(qtl_load_t *l, uint64_t *shadow_off)
{
    uint64_t off = 0, total;
    for (size_t i = 0; i < l->m.nparams; i++) {
        struct lparam *p = &l->m.params[i];
        if (!p->read || (i < l->nbound && l->bound[i]))
            continue;
        uint64_t start = off > UINT64_MAX - 8192 ? UINT64_MAX : align_up(off, param_align(p->nbytes));
        if (start == UINT64_MAX || qtl__add_u64(start, p->nbytes ? p->nbytes : 1, &total))
            return UINT64_MAX;
        p->offset = start;
        off = total;
    }
    if (off > UINT64_MAX - 64 || qtl__add_u64(align_up(off, 64), l->shadow_bytes, &total) || total > SIZE_MAX / 2)
        return UINT64_MAX;
    *shadow_off = align_up(off, 64);
    return total;
}

uint64_t qtl_load_bytes_needed(qtl_load_t *l)
{
    uint64_t shadow = 0;
    return layout(l, &shadow);
}

static int place_params(qtl_load_t *l)
{
    uint64_t shadow_off = 0, total = layout(l, &shadow_off);
    unsigned char *base = l->user_base;
    if (total == UINT64_MAX)
        return qtl__fail(&l->err, QTL_ERR_NOMEM, "the rank's parameters need more bytes than this machine can address");
    if (base && l->user_size < total)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT,
                         "qtl_load_set_buffer: %zu bytes given, the plan needs %llu (qtl_load_bytes_needed)",
                         l->user_size, (unsigned long long)total);
    if (!base) {
        /* Huge pages make a warm load 4x faster (1.4 GB: 0.07 s against 0.31 s on 4 KiB pages), but
         * measured cold (--direct, page cache just dropped) they were slower and erratic: 0.9-2.0 s
         * against 0.73-1.0 s on 4 KiB pages, dd 0.85 s (this VM reports freed memory to its host) */
        if (!(l->arena = qtl__calloc(&l->al, 1, sizeof *l->arena)) ||
            qtl__arena_alloc(l->arena, (size_t)total, !l->direct))
            return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory for the rank's %llu parameter bytes",
                             (unsigned long long)total);
        base = l->arena->base;
    }
    for (size_t i = 0; i < l->m.nparams; i++) {
        struct lparam *p = &l->m.params[i];
        if (p->read)
            p->data = i < l->nbound && l->bound[i] ? l->bound[i] : base + p->offset;
    }
    l->shadow = base + shadow_off;
    return QTL_OK;
}

/* vLLM's pre-fills (F32_MIN scales) and the vocab padding rows' zeros. */
static int plan_fills(qtl_load_t *l, struct qtl_xfill **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (size_t i = 0; i < l->m.nparams; i++) {
        const struct lparam *p = &l->m.params[i];
        if (!p->read || !(p->fill_f32_min || p->fill_ones || p->pad_from < p->nbytes))
            continue;
        if (qtl__grow(&l->al, (void **)out, &cap, *n + 1, sizeof **out))
            return QTL_ERR_NOMEM;
        struct qtl_xfill *f = &(*out)[(*n)++];
        memset(f, 0, sizeof *f);
        if (p->fill_f32_min || p->fill_ones) {
            float v = p->fill_ones ? 1.0f : -FLT_MAX;
            *f = (struct qtl_xfill){p->data, p->nbytes, 4, {0}};
            memcpy(f->pattern, &v, 4);
        } else {
            *f = (struct qtl_xfill){p->data + p->pad_from, p->nbytes - p->pad_from, 1, {0}};
        }
    }
    return QTL_OK;
}

/* The executed ops (those of read parameters) as the executor's descriptors,
 * and the files they touch, renumbered. */
struct xplan {
    struct qtl_xop *xops;
    size_t *which; /* plan op of each xop */
    size_t n;
    const char **paths;
    uint64_t *sizes;
    uint32_t *file_map;
    size_t nfiles;
};

static void xplan_free(qtl_load_t *l, struct xplan *x)
{
    qtl__free(&l->al, x->xops);
    qtl__free(&l->al, x->which);
    qtl__free(&l->al, x->paths);
    qtl__free(&l->al, x->sizes);
    qtl__free(&l->al, x->file_map);
}

static int xplan_build(qtl_load_t *l, struct xplan *x)
{
    size_t nf = l->nfiles ? l->nfiles : 1, no = l->nops ? l->nops : 1;
    memset(x, 0, sizeof *x);
    x->xops = qtl__calloc(&l->al, no, sizeof *x->xops);
    x->which = qtl__calloc(&l->al, no, sizeof *x->which);
    x->paths = qtl__calloc(&l->al, nf, sizeof *x->paths);
    x->sizes = qtl__calloc(&l->al, nf, sizeof *x->sizes);
    x->file_map = qtl__calloc(&l->al, nf, sizeof *x->file_map);
    if (!x->xops || !x->which || !x->paths || !x->sizes || !x->file_map)
        return QTL_ERR_NOMEM;
    for (size_t i = 0; i < l->nfiles; i++)
        x->file_map[i] = UINT32_MAX;
    for (size_t i = 0; i < l->nops; i++) {
        const struct pop *o = &l->ops[i];
        const struct lparam *p = &l->m.params[o->param];
        if (!p->read)
            continue;
        if (x->file_map[o->file] == UINT32_MAX) {
            x->file_map[o->file] = (uint32_t)x->nfiles;
            x->paths[x->nfiles] = l->files[o->file].path;
            x->sizes[x->nfiles++] = l->files[o->file].size;
        }
        unsigned char *dst = (o->superseded ? l->shadow : p->data) + o->dst_off;
        x->xops[x->n] = (struct qtl_xop){x->file_map[o->file], o->src_off, o->rows, o->row_bytes, o->src_pitch, dst,
                                         o->dst_pitch, o->src_dtype, p->dtype};
        x->which[x->n++] = i;
    }
    return QTL_OK;
}

static void exec_progress(void *ud, uint64_t done, uint64_t total)
{
    qtl_load_t *l = ud;
    l->progress_bytes(l->progress_ud, done, total);
}

/* Read failures become findings naming the file, the tensor and the offset. */
static void read_findings(qtl_load_t *l, const struct xplan *x, const struct qtl_xres *res)
{
    for (size_t i = 0; i < x->n; i++) {
        if (res[i].status == QTL_OK)
            continue;
        const struct pop *o = &l->ops[x->which[i]];
        const char *file = l->files[o->file].path, *t = qtl__op_tensor(l, o);
        const char *why = res[i].status == QTL_ERR_IO && res[i].sys_errno ? strerror(res[i].sys_errno)
                                                                           : qtl_strerror(res[i].status);
        qtl__finding(l, res[i].status, QTL_FINDING_TENSOR_READ, file, t, "%s: tensor '%s': reading %llu bytes at offset %llu failed: %s",
                     file, t, (unsigned long long)(o->rows * o->row_bytes), (unsigned long long)res[i].at, why);
    }
}

static int execute(qtl_load_t *l)
{
    struct xplan x;
    struct qtl_xfill *fills = NULL;
    struct qtl_xres *res = NULL;
    struct qtl_pread_backend *pb = NULL;
    struct qtl_backend be;
    size_t nfills = 0;
    int rc = xplan_build(l, &x);
    if (!rc)
        rc = plan_fills(l, &fills, &nfills);
    if (!rc && !(res = qtl__calloc(&l->al, x.n ? x.n : 1, sizeof *res)))
        rc = QTL_ERR_NOMEM;
    if (rc) {
        rc = qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
    } else if ((rc = qtl__pread_backend_open(x.paths, x.sizes, x.nfiles, l->direct, &l->al, &l->err, &pb, &be))) {
        if (rc != QTL_ERR_NOMEM)
            qtl__finding(l, rc, QTL_FINDING_FILE_CHANGED, NULL, NULL, "%s", l->err.msg);
    } else {
        struct qtl_exec_cfg cfg = {l->threads, 0, 0, &l->al, l->progress_bytes ? exec_progress : NULL, l};
        struct qtl_exec_stats st = {0};
        rc = qtl__exec_run(&cfg, &be, fills, nfills, x.xops, x.n, res, &st);
        l->bytes_read = st.bytes_read;
        l->fallbacks = qtl__pread_backend_fallbacks(pb);
        if (rc == QTL_ERR_NOMEM && !st.bytes_read)
            qtl__fail(&l->err, rc, "out of memory for the executor's staging buffers");
        else
            read_findings(l, &x, res);
        qtl__pread_backend_close(pb);
    }
    qtl__free(&l->al, res);
    qtl__free(&l->al, fills);
    xplan_free(l, &x);
    return rc;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

static int first_error(const qtl_load_t *l)
{
    for (size_t i = 0; i < l->f.n; i++)
        if (l->f.v[i].sev == QTL_SEV_ERROR)
            return l->f.v[i].code ? l->f.v[i].code : QTL_ERR_CHECKPOINT;
    return QTL_OK;
}

int qtl_load_run(qtl_load_t *l)
{
    if (l->ran)
        return l->err.code;
    l->ran = 1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (l->verify != QTL_READ_NONE) {
        int rc = place_params(l);
        if (rc) /* out of memory, or the caller's buffer is too small: nothing read */
            return rc;
        if (execute(l) == QTL_ERR_NOMEM) /* read failures are findings; running out of memory is not */
            return QTL_ERR_NOMEM;
    }
    qtl__plan_value_checks(l);
    if (l->pre)
        l->processed = l->pre_processed; /* never post-processed twice */
    l->seconds = seconds_since(&t0);
    return l->err.code == QTL_ERR_NOMEM ? QTL_ERR_NOMEM : first_error(l);
}

int qtl_load_set_buffer(qtl_load_t *l, void *base, size_t size)
{
    if (l->ran)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_set_buffer after qtl_load_run");
    l->user_base = base;
    l->user_size = size;
    return QTL_OK;
}

int qtl_load_bind(qtl_load_t *l, size_t i, void *dst, uint64_t nbytes)
{
    if (l->ran || i >= l->m.nparams)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_bind: %s",
                         l->ran ? "after qtl_load_run" : "parameter index out of range");
    if (nbytes != l->m.params[i].nbytes)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_bind: parameter '%s' has %llu bytes, not %llu",
                         l->m.params[i].name, (unsigned long long)l->m.params[i].nbytes, (unsigned long long)nbytes);
    if (!l->bound) {
        if (!(l->bound = qtl__calloc(&l->al, l->m.nparams, sizeof *l->bound)))
            return qtl__fail(&l->err, QTL_ERR_NOMEM, "out of memory");
        l->nbound = l->m.nparams;
    }
    l->bound[i] = dst;
    return QTL_OK;
}

int qtl_load_process(qtl_load_t *l)
{
    if (!l->ran)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_process before qtl_load_run");
    if (l->processed)
        return QTL_OK;
    for (size_t i = 0; i < l->f.n; i++)
        if (l->f.v[i].sev == QTL_SEV_ERROR)
            return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT,
                             "not post-processing a load with error-level findings (first: %s)", l->f.v[i].message);
    if (l->verify != QTL_READ_ALL)
        return qtl__fail(&l->err, QTL_ERR_INVALID_ARGUMENT, "qtl_load_process needs a load that read everything");
    for (size_t i = 0; i < l->m.nmoe; i++) /* unquantized and block-FP8 experts are kept as loaded */
        if (l->m.moe[i].q.scheme != QTL_LS_UNQUANTIZED && l->m.moe[i].q.scheme != QTL_LS_FP8_BLOCK)
            return qtl__fail(&l->err, QTL_ERR_UNSUPPORTED,
                             "%s.experts: vLLM 0.32's post-load step for %s experts is not modelled yet; use stage "
                             "loaded",
                             l->m.moe[i].prefix, qtl_layer_scheme_name(l->m.moe[i].q.scheme));
    int differ;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = qtl__model_process(&l->m, &differ);
    if (rc)
        return qtl__fail(&l->err, rc, "post-processing failed: %s", qtl_strerror(rc));
    l->process_seconds = seconds_since(&t0);
    l->processed = 1;
    if (differ)
        qtl__finding(l, QTL_OK, QTL_FINDING_SCALE_SLOTS_DIFFER, NULL, NULL,
                "a fused layer's per-slot global scales differ; vLLM takes the max and warns that accuracy may drop");
    return QTL_OK;
}

int qtl_load_write(qtl_load_t *l, const char *path, const char *source)
{
    qtl_st_writer_t *w = NULL;
    char num[32];
    int rc = qtl_st_writer_new(&l->al.a, &w);
    if (rc)
        return qtl__fail(&l->err, rc, "out of memory");
    snprintf(num, sizeof num, "%u", l->m.tp);
    rc = qtl_st_writer_set_metadata(w, "qtl.tp", num);
    snprintf(num, sizeof num, "%u", l->m.rank);
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.rank", num);
    if (l->m.pp > 1) { /* only with stages: tp-only files stay as they were */
        snprintf(num, sizeof num, "%u", l->m.pp);
        rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.pp", num);
        snprintf(num, sizeof num, "%u", l->m.pp_rank);
        rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.pp_rank", num);
    }
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.stage", l->processed ? "processed" : "loaded");
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "qtl.source", source ? source : "");
    rc = rc ? rc : qtl_st_writer_set_metadata(w, "format", "pt");
    for (size_t i = 0; !rc && i < l->m.nparams; i++) {
        const struct lparam *p = &l->m.params[i];
        rc = qtl_st_writer_add(w, p->name, p->dtype, p->ndim, p->shape, p->data, p->nbytes);
    }
    int mk = rc ? 0 : qtl__mkdirs(path, 1);
    if (mk)
        rc = qtl__fail(&l->err, QTL_ERR_OPEN, "%s: cannot create its directory: %s", path, strerror(mk));
    else if ((rc = rc ? rc : qtl_st_writer_write_file(w, path)))
        qtl__fail(&l->err, rc, "%s", qtl_st_writer_errmsg(w));
    qtl_st_writer_free(w);
    return rc;
}

/* ---- accessors ---- */

void qtl_shard_file_name(char *buf, size_t cap, const char *dir, uint32_t tp_rank, uint32_t pp_rank, uint32_t pp,
                         uint32_t part)
{
    if (pp > 1)
        snprintf(buf, cap, "%s%smodel-pp-%u-tp-%u-part-%u.safetensors", dir ? dir : "", dir ? "/" : "", pp_rank,
                 tp_rank, part);
    else
        snprintf(buf, cap, "%s%smodel-rank-%u-part-%u.safetensors", dir ? dir : "", dir ? "/" : "", tp_rank, part);
}

const char *qtl_load_errmsg(const qtl_load_t *l) { return l ? l->err.msg : "out of memory"; }
int qtl_load_errcode(const qtl_load_t *l) { return l ? l->err.code : QTL_ERR_NOMEM; }
const char *qtl_load_fail_id(const qtl_load_t *l) { return l && l->m.fail_id ? l->m.fail_id : NULL; }
size_t qtl_load_param_count(const qtl_load_t *l) { return l->m.nparams; }
size_t qtl_load_finding_count(const qtl_load_t *l) { return l->f.n; }
uint64_t qtl_load_bytes_read(const qtl_load_t *l) { return l->bytes_read; }
double qtl_load_seconds(const qtl_load_t *l) { return l->seconds; }
double qtl_load_process_seconds(const qtl_load_t *l) { return l->process_seconds; }

static const char *const kind_names[] = {"ModelWeightParameter", "PerTensorScaleParameter", "ChannelQuantScaleParameter",
                                         "GroupQuantScaleParameter", "BlockQuantScaleParameter", "PackedvLLMParameter",
                                         "PackedvLLMParameter", "PackedColumnParameter", "RowvLLMParameter",
                                         "BasevLLMParameter", "VocabParallelEmbedding", "replicated"};

int qtl_load_param_at(const qtl_load_t *l, size_t i, struct qtl_param_info *pi)
{
    if (i >= l->m.nparams)
        return QTL_ERR_INVALID_ARGUMENT;
    const struct lparam *p = &l->m.params[i];
    pi->name = p->name;
    pi->kind = kind_names[p->kind];
    pi->dtype = p->dtype;
    pi->ndim = p->ndim;
    pi->shape = p->shape;
    pi->data = p->data;
    pi->nbytes = p->nbytes;
    return QTL_OK;
}

int qtl_load_finding_at(const qtl_load_t *l, size_t i, struct qtl_diag *d)
{
    if (i >= l->f.n)
        return QTL_ERR_INVALID_ARGUMENT;
    qtl__findings_at(&l->f, i, d);
    return QTL_OK;
}
