/* The execution engine (exec.h). Ops are validated, sorted by file offset and
 * cut into pieces of at most one chunk; workers take the pieces in file order
 * (so the kernel's readahead keeps working) and each piece records its own
 * outcome, merged per op after the parallel region, so neither the bytes nor
 * the results depend on which thread ran what. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define SMALL_OP ((uint64_t)256 << 10) /* flat ops up to this size are coalesced with their neighbours */
#define CHUNK_MIN ((size_t)4 << 10)    /* so a piece always holds a whole element */

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The given allocator, or malloc/free set up in `fallback`. */
static const struct qtl_alloc *alloc_or_default(const struct qtl_alloc *al, struct qtl_alloc *fallback)
{
    if (al)
        return al;
    qtl__alloc_init(fallback, NULL);
    return fallback;
}

/* ---- op geometry ----------------------------------------------------------
 * Only for ops op_check accepted: it has ruled out every overflow below. */

static int op_conv(const struct qtl_xop *o) { return o->src_dtype != o->dst_dtype; }

static uint64_t src_elem(const struct qtl_xop *o) { return op_conv(o) ? qtl_dtype_bits(o->src_dtype) / 8 : 1; }

/* Destination bytes for `b` source bytes (whole elements when converting). */
static uint64_t dst_bytes(const struct qtl_xop *o, uint64_t b)
{
    return op_conv(o) ? b / src_elem(o) * (qtl_dtype_bits(o->dst_dtype) / 8) : b;
}

/* Contiguous in the file and in memory: the op is one run of bytes. */
static int op_flat(const struct qtl_xop *o)
{
    return o->rows == 1 || (o->src_pitch == o->row_bytes && o->dst_pitch == dst_bytes(o, o->row_bytes));
}

static uint64_t op_kept(const struct qtl_xop *o) { return o->rows * o->row_bytes; }

/* Where byte `b` of row `r` goes (rows == 1 ignores dst_pitch: r is 0 then). */
static unsigned char *dst_at(const struct qtl_xop *o, uint64_t r, uint64_t b)
{
    return o->dst + r * o->dst_pitch + dst_bytes(o, b);
}

/* The largest multiple of the source element not above `limit`. */
static uint64_t elem_floor(const struct qtl_xop *o, uint64_t limit) { return limit / src_elem(o) * src_elem(o); }

/* ---- validation ---- */

/* The source rows end inside the range a pread offset can name. */
static int src_ok(const struct qtl_xop *o)
{
    uint64_t span, end;
    uint64_t pitch = o->rows > 1 ? o->src_pitch : 0;
    return !qtl__mul_u64(o->rows - 1, pitch, &span) && !qtl__add_u64(span, o->row_bytes, &span) &&
           !qtl__add_u64(o->src_off, span, &end) && end <= (uint64_t)INT64_MAX;
}

/* The destination rows do not overlap each other and fit in the address space. */
static int dst_ok(const struct qtl_xop *o)
{
    uint64_t row, ext;
    uint64_t pitch = o->rows > 1 ? o->dst_pitch : 0;
    if (qtl__mul_u64(o->row_bytes / src_elem(o), op_conv(o) ? qtl_dtype_bits(o->dst_dtype) / 8 : 1, &row))
        return 0;
    if (o->rows > 1 && pitch < row)
        return 0;
    return !qtl__mul_u64(o->rows - 1, pitch, &ext) && !qtl__add_u64(ext, row, &ext) && ext <= SIZE_MAX &&
           (uintptr_t)o->dst + (size_t)ext >= (uintptr_t)o->dst;
}

/* @return QTL_OK, QTL_ERR_UNSUPPORTED (dtype pair) or QTL_ERR_INVALID_ARGUMENT (geometry). */
static int op_check(const struct qtl_xop *o)
{
    if (!o->dst || !o->rows || !o->row_bytes || (o->rows > 1 && o->src_pitch < o->row_bytes))
        return QTL_ERR_INVALID_ARGUMENT;
    if (!qtl__dtype_convertible(o->src_dtype, o->dst_dtype))
        return QTL_ERR_UNSUPPORTED;
    if (o->row_bytes % src_elem(o))
        return QTL_ERR_INVALID_ARGUMENT;
    return src_ok(o) && dst_ok(o) ? QTL_OK : QTL_ERR_INVALID_ARGUMENT;
}

/* ---- fills ---- */

static int fills_ok(const struct qtl_xfill *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].pattern_len < 1 || f[i].pattern_len > 8 || f[i].bytes % f[i].pattern_len ||
            f[i].bytes > SIZE_MAX || (f[i].bytes && !f[i].dst))
            return 0;
    return 1;
}

/* The pattern once, then copies of what is already written, doubling each
 * time: a few large memcpys whatever the pattern length. */
static void fill_one(const struct qtl_xfill *f)
{
    size_t n = (size_t)f->bytes, have = f->pattern_len < n ? f->pattern_len : n;
    memcpy(f->dst, f->pattern, have);
    while (have < n) {
        size_t c = have < n - have ? have : n - have;
        memcpy(f->dst + have, f->dst, c);
        have += c;
    }
}

/* ---- pieces ---- */

/* The sort key of a valid op: file order, op order among equals (stable). */
struct key {
    uint32_t file;
    uint64_t off;
    size_t op;
};

static int key_cmp(const void *pa, const void *pb)
{
    const struct key *a = pa, *b = pb;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    if (a->off != b->off)
        return a->off < b->off ? -1 : 1;
    return a->op < b->op ? -1 : a->op > b->op;
}

enum piece_kind {
    P_ROWS,      /* bytes [b0, b0+len) of rows r0.. read one by one (a flat op: one "row" of all its bytes) */
    P_SIEVE,     /* rows r0.. read in one block through their gaps, then copied out */
    P_SCATTER,   /* rows r0.. read in one block through their gaps: rows to dst, gaps to junk (readv) */
    P_COALESCED, /* nops small flat ops read in one block of len bytes, then copied out */
};

/* One worker's unit: at most a chunk of reading (P_ROWS: of kept bytes). */
struct piece {
    enum piece_kind kind;
    size_t first, nops; /* the ops keys[first .. first+nops) */
    uint64_t r0, nrows;
    uint64_t b0, len;
};

/* A piece's outcome, written only by the worker that ran it. */
struct piece_out {
    struct qtl_xres res;
    uint64_t bytes, reads;
};

struct exec {
    const struct qtl_exec_cfg *cfg;
    const struct qtl_backend *be;
    const struct qtl_xop *ops;
    const struct qtl_alloc *al;
    size_t chunk;
    uint64_t sieve_gap;
    struct qtl_xres *res, *own_res; /* own_res: allocated when the caller passed none */
    struct key *keys;
    size_t nkeys;
    struct piece *pieces; /* NULL while counting */
    size_t npieces;
    struct piece_out *outs;
    int staged; /* some piece needs a staging buffer */
    unsigned nworkers;
    unsigned char **staging; /* one chunk per worker */
    int begun;
    uint64_t kept, total;
};

static const struct qtl_xop *key_op(const struct exec *x, size_t k) { return &x->ops[x->keys[k].op]; }

/* File bytes the piece reads. */
static uint64_t piece_bytes(const struct exec *x, const struct piece *p)
{
    const struct qtl_xop *o = key_op(x, p->first);
    if (p->kind == P_ROWS)
        return p->nrows * p->len;
    if (p->kind == P_SIEVE || p->kind == P_SCATTER)
        return (p->nrows - 1) * o->src_pitch + o->row_bytes;
    return p->len;
}

/* Record a piece (or only count it on the first pass, when x->pieces is NULL). */
static void emit(struct exec *x, struct piece p)
{
    if (x->pieces)
        x->pieces[x->npieces] = p;
    x->npieces++;
    x->staged |= (p.kind != P_ROWS && p.kind != P_SCATTER) || op_conv(key_op(x, p.first));
}

/* Contiguous bytes in chunks, on element boundaries when converting. */
static void plan_flat(struct exec *x, size_t k)
{
    const struct qtl_xop *o = key_op(x, k);
    uint64_t total = op_kept(o), step = elem_floor(o, x->chunk);
    for (uint64_t b = 0; b < total; b += step)
        emit(x, (struct piece){.kind = P_ROWS, .first = k, .nops = 1, .nrows = 1, .b0 = b,
                               .len = min_u64(step, total - b)});
}

static int small_flat(const struct qtl_xop *o) { return op_flat(o) && op_kept(o) <= SMALL_OP; }

/* How many keys from k form one coalesced read: small flat ops of one file,
 * each starting less than sieve_gap after the bytes before it (sources may
 * overlap: replicated heads read the same bytes), all within one chunk. */
static size_t coalesce_run(const struct exec *x, size_t k, uint64_t *end)
{
    const struct qtl_xop *a = key_op(x, k);
    uint64_t start = a->src_off;
    size_t n = 1;
    *end = start + op_kept(a);
    if (!small_flat(a))
        return 1;
    for (; k + n < x->nkeys; n++) {
        const struct qtl_xop *b = key_op(x, k + n);
        uint64_t e = b->src_off + op_kept(b) > *end ? b->src_off + op_kept(b) : *end;
        if (b->file != a->file || !small_flat(b) || e - start > x->chunk ||
            (b->src_off > *end && b->src_off - *end >= x->sieve_gap))
            break;
        *end = e;
    }
    return n;
}

/* A flat op, alone or with its small neighbours. @return the keys it took. */
static size_t plan_contiguous(struct exec *x, size_t k)
{
    uint64_t end;
    size_t n = coalesce_run(x, k, &end);
    if (n == 1)
        plan_flat(x, k);
    else
        emit(x, (struct piece){.kind = P_COALESCED, .first = k, .nops = n, .len = end - key_op(x, k)->src_off});
    return n;
}

/* Rows too far apart to read through: one read per row, rows grouped up to a
 * chunk of kept bytes, a row above a chunk cut. */
static void plan_rows(struct exec *x, size_t k)
{
    const struct qtl_xop *o = key_op(x, k);
    if (o->row_bytes > x->chunk) {
        uint64_t step = elem_floor(o, x->chunk);
        for (uint64_t r = 0; r < o->rows; r++)
            for (uint64_t b = 0; b < o->row_bytes; b += step)
                emit(x, (struct piece){.kind = P_ROWS, .first = k, .nops = 1, .r0 = r, .nrows = 1, .b0 = b,
                                       .len = min_u64(step, o->row_bytes - b)});
        return;
    }
    uint64_t per = x->chunk / o->row_bytes;
    for (uint64_t r = 0; r < o->rows; r += per)
        emit(x, (struct piece){.kind = P_ROWS, .first = k, .nops = 1, .r0 = r, .nrows = min_u64(per, o->rows - r),
                               .len = o->row_bytes});
}

/* Rows close together (row_bytes < chunk/2): blocks of whole rows spanning
 * at most a chunk of the file, gaps included. Without a conversion and with a
 * scatter read, the rows land in place and only the gaps touch scratch memory;
 * otherwise the block goes through staging. */
static void plan_sieve(struct exec *x, size_t k)
{
    const struct qtl_xop *o = key_op(x, k);
    enum piece_kind kind = x->be->readv && !op_conv(o) ? P_SCATTER : P_SIEVE;
    uint64_t per = 1 + (x->chunk - o->row_bytes) / o->src_pitch;
    for (uint64_t r = 0; r < o->rows; r += per)
        emit(x, (struct piece){.kind = kind, .first = k, .nops = 1, .r0 = r, .nrows = min_u64(per, o->rows - r)});
}

/* The pieces of the op at key k (and of the neighbours it coalesces with). */
static size_t plan_at(struct exec *x, size_t k)
{
    const struct qtl_xop *o = key_op(x, k);
    if (op_flat(o))
        return plan_contiguous(x, k);
    if (o->src_pitch - o->row_bytes >= x->sieve_gap || o->row_bytes >= x->chunk / 2)
        plan_rows(x, k);
    else
        plan_sieve(x, k);
    return 1;
}

static void plan_all(struct exec *x)
{
    x->npieces = 0;
    for (size_t k = 0; k < x->nkeys;)
        k += plan_at(x, k);
}

/* ---- running pieces ---- */

/* One backend read, counted in the piece's outcome; a failure is kept there. */
static int piece_read(const struct exec *x, unsigned w, struct piece_out *po, uint32_t file, unsigned char *to,
                      uint64_t len, uint64_t off)
{
    int sys_errno = 0;
    int rc = x->be->read(x->be->ud, w, file, to, (size_t)len, off, &sys_errno);
    po->reads++;
    if (rc) {
        po->res = (struct qtl_xres){rc, sys_errno, off};
        return rc;
    }
    po->bytes += len;
    return QTL_OK;
}

/* Copy or convert `n` source bytes of op o into its destination. */
static void put(const struct qtl_xop *o, unsigned char *to, const unsigned char *from, uint64_t n)
{
    if (op_conv(o))
        qtl__convert(o->src_dtype, from, o->dst_dtype, to, n / src_elem(o));
    else
        memcpy(to, from, (size_t)n);
}

/* `len` source bytes at `off` into `to`: straight when the dtypes agree,
 * through the worker's staging buffer when converting. */
static int read_out(const struct exec *x, unsigned w, struct piece_out *po, const struct qtl_xop *o,
                    unsigned char *to, uint64_t len, uint64_t off)
{
    if (!op_conv(o))
        return piece_read(x, w, po, o->file, to, len, off);
    int rc = piece_read(x, w, po, o->file, x->staging[w], len, off);
    if (!rc)
        put(o, to, x->staging[w], len);
    return rc;
}

static void run_rows(const struct exec *x, unsigned w, const struct piece *p, struct piece_out *po)
{
    const struct qtl_xop *o = key_op(x, p->first);
    for (uint64_t r = p->r0; r < p->r0 + p->nrows; r++)
        if (read_out(x, w, po, o, dst_at(o, r, p->b0), p->len, o->src_off + r * o->src_pitch + p->b0))
            return;
}

static void run_sieve(const struct exec *x, unsigned w, const struct piece *p, struct piece_out *po)
{
    const struct qtl_xop *o = key_op(x, p->first);
    const unsigned char *s = x->staging[w];
    if (piece_read(x, w, po, o->file, x->staging[w], piece_bytes(x, p), o->src_off + p->r0 * o->src_pitch))
        return;
    for (uint64_t i = 0; i < p->nrows; i++)
        put(o, dst_at(o, p->r0 + i, 0), s + i * o->src_pitch, o->row_bytes);
}

#define SCATTER_IOV 1024 /* IOV_MAX on Linux */
#define JUNK_BYTES 4096  /* where gap bytes go; a longer gap takes several entries */

/* One readv of the rows [r, r+n) (at most SCATTER_IOV entries with their gaps). @return rows done. */
static uint64_t scatter_batch(const struct exec *x, unsigned w, struct piece_out *po, const struct qtl_xop *o,
                              uint64_t r, uint64_t n, unsigned char *junk)
{
    struct iovec iov[SCATTER_IOV];
    uint64_t gap = o->src_pitch - o->row_bytes, per_gap = (gap + JUNK_BYTES - 1) / JUNK_BYTES, done = 0, bytes = 0;
    int k = 0;
    while (done < n && (uint64_t)k + 1 + per_gap <= SCATTER_IOV) {
        iov[k++] = (struct iovec){dst_at(o, r + done, 0), (size_t)o->row_bytes};
        bytes += o->row_bytes;
        if (++done == n)
            break;
        for (uint64_t g = 0; g < gap; g += JUNK_BYTES)
            iov[k++] = (struct iovec){junk, (size_t)min_u64(JUNK_BYTES, gap - g)};
        bytes += gap;
    }
    int sys_errno = 0, rc = x->be->readv(x->be->ud, w, o->file, iov, k, o->src_off + r * o->src_pitch, &sys_errno);
    po->reads++;
    if (rc) {
        po->res = (struct qtl_xres){rc, sys_errno, o->src_off + r * o->src_pitch};
        return 0;
    }
    po->bytes += bytes;
    return done;
}

static void run_scatter(const struct exec *x, unsigned w, const struct piece *p, struct piece_out *po)
{
    const struct qtl_xop *o = key_op(x, p->first);
    unsigned char junk[JUNK_BYTES];
    for (uint64_t r = p->r0, n; r < p->r0 + p->nrows; r += n)
        if (!(n = scatter_batch(x, w, po, o, r, p->r0 + p->nrows - r, junk)))
            return;
}

static void run_coalesced(const struct exec *x, unsigned w, const struct piece *p, struct piece_out *po)
{
    const struct qtl_xop *a = key_op(x, p->first);
    const unsigned char *s = x->staging[w];
    if (piece_read(x, w, po, a->file, x->staging[w], p->len, a->src_off))
        return;
    for (size_t j = 0; j < p->nops; j++) {
        const struct qtl_xop *o = key_op(x, p->first + j);
        put(o, o->dst, s + (o->src_off - a->src_off), op_kept(o));
    }
}

static void run_piece(const struct exec *x, unsigned w, size_t i)
{
    const struct piece *p = &x->pieces[i];
    if (p->kind == P_ROWS)
        run_rows(x, w, p, &x->outs[i]);
    else if (p->kind == P_SIEVE)
        run_sieve(x, w, p, &x->outs[i]);
    else if (p->kind == P_SCATTER)
        run_scatter(x, w, p, &x->outs[i]);
    else
        run_coalesced(x, w, p, &x->outs[i]);
}

static unsigned worker_id(void)
{
#ifdef _OPENMP
    return (unsigned)omp_get_thread_num();
#else
    return 0;
#endif
}

/* Pieces handed out one at a time in file order; worker 0 (the calling
 * thread) reports progress, so the callback never runs concurrently. */
static void run_all(const struct exec *x)
{
    uint64_t done = 0;
    if (!x->npieces)
        return; /* no team of zero threads */
#ifdef _OPENMP
#pragma omp parallel for num_threads(x->nworkers) schedule(dynamic, 1) if (x->nworkers > 1)
#endif
    for (size_t i = 0; i < x->npieces; i++) {
        unsigned w = worker_id();
        uint64_t d;
        run_piece(x, w, i);
#ifdef _OPENMP
#pragma omp atomic capture
#endif
        d = done += piece_bytes(x, &x->pieces[i]);
        if (w == 0 && x->cfg->progress)
            x->cfg->progress(x->cfg->progress_ud, d, x->total);
    }
}

/* The first failing piece of each op in file order (pieces are planned in
 * file order, so in index order) becomes the op's result. */
static void merge_results(const struct exec *x)
{
    for (size_t i = 0; i < x->npieces; i++) {
        const struct piece *p = &x->pieces[i];
        if (!x->outs[i].res.status)
            continue;
        for (size_t j = 0; j < p->nops; j++) {
            struct qtl_xres *r = &x->res[x->keys[p->first + j].op];
            if (!r->status)
                *r = x->outs[i].res;
        }
    }
}

/* ---- one run ---- */

static unsigned max_threads(const struct qtl_exec_cfg *cfg)
{
#ifdef _OPENMP
    return cfg->threads ? cfg->threads : (unsigned)omp_get_max_threads();
#else
    (void)cfg;
    return 1; /* a single worker: more staging buffers would never be used */
#endif
}

static void exec_init(struct exec *x, const struct qtl_exec_cfg *cfg, const struct qtl_backend *be,
                      const struct qtl_xop *ops, struct qtl_alloc *fallback)
{
    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    x->be = be;
    x->ops = ops;
    x->al = alloc_or_default(cfg->al, fallback);
    x->chunk = cfg->chunk ? (cfg->chunk < CHUNK_MIN ? CHUNK_MIN : cfg->chunk) : QTL_EXEC_CHUNK_DEFAULT;
    x->sieve_gap = cfg->sieve_gap ? cfg->sieve_gap : QTL_EXEC_SIEVE_GAP_DEFAULT;
}

/* Every op's result from op_check, and the sorted keys of the valid ones. */
static int validate(struct exec *x, size_t nops)
{
    size_t nvalid = 0;
    for (size_t i = 0; i < nops; i++) {
        int rc = op_check(&x->ops[i]);
        x->res[i] = (struct qtl_xres){rc, 0, rc ? x->ops[i].src_off : 0};
        nvalid += !rc;
    }
    x->keys = qtl__calloc(x->al, nvalid, sizeof *x->keys);
    if (!x->keys)
        return QTL_ERR_NOMEM;
    for (size_t i = 0; i < nops; i++)
        if (!x->res[i].status) {
            x->keys[x->nkeys++] = (struct key){x->ops[i].file, x->ops[i].src_off, i};
            x->kept += op_kept(&x->ops[i]);
        }
    qsort(x->keys, x->nkeys, sizeof *x->keys, key_cmp);
    return QTL_OK;
}

/* Count the pieces, then allocate and record them. */
static int plan(struct exec *x)
{
    plan_all(x);
    size_t n = x->npieces;
    x->pieces = qtl__calloc(x->al, n, sizeof *x->pieces);
    x->outs = qtl__calloc(x->al, n, sizeof *x->outs);
    if (!x->pieces || !x->outs)
        return QTL_ERR_NOMEM;
    plan_all(x);
    for (size_t i = 0; i < n; i++)
        x->total += piece_bytes(x, &x->pieces[i]);
    return QTL_OK;
}

/* Staging for every worker (only when some piece goes through staging), then
 * the backend's per-run state. */
static int start_workers(struct exec *x)
{
    unsigned t = max_threads(x->cfg);
    x->nworkers = x->npieces < t ? (unsigned)x->npieces : t;
    if (x->staged) {
        x->staging = qtl__calloc(x->al, x->nworkers, sizeof *x->staging);
        if (!x->staging)
            return QTL_ERR_NOMEM;
        for (unsigned w = 0; w < x->nworkers; w++)
            if (!(x->staging[w] = qtl__malloc(x->al, x->chunk)))
                return QTL_ERR_NOMEM;
    }
    int rc = x->be->begin ? x->be->begin(x->be->ud, x->nworkers) : QTL_OK;
    x->begun = !rc;
    return rc;
}

/* Everything allocated before a byte is read or written. */
static int prepare(struct exec *x, size_t nops, struct qtl_xres *res)
{
    x->res = res;
    if (!res && !(x->res = x->own_res = qtl__calloc(x->al, nops, sizeof *x->res)))
        return QTL_ERR_NOMEM;
    int rc = validate(x, nops);
    if (!rc)
        rc = plan(x);
    if (!rc && x->npieces)
        rc = start_workers(x);
    return rc;
}

/* A run that could not start: every op that passed validation gets rc. */
static void mark_unrun(const struct exec *x, size_t nops, int rc)
{
    for (size_t i = 0; x->res && i < nops; i++)
        if (!x->res[i].status)
            x->res[i] = (struct qtl_xres){rc, 0, 0};
}

static int first_failure(const struct qtl_xres *res, size_t nops)
{
    for (size_t i = 0; i < nops; i++)
        if (res[i].status)
            return res[i].status;
    return QTL_OK;
}

static void fill_stats(const struct exec *x, struct qtl_exec_stats *st, double seconds)
{
    memset(st, 0, sizeof *st);
    st->bytes_kept = x->kept;
    st->pieces = x->npieces;
    for (size_t i = 0; x->outs && i < x->npieces; i++) {
        st->bytes_read += x->outs[i].bytes;
        st->reads += x->outs[i].reads;
    }
    st->seconds = seconds;
}

static void exec_free(struct exec *x)
{
    if (x->begun && x->be->end)
        x->be->end(x->be->ud);
    for (unsigned w = 0; x->staging && w < x->nworkers; w++)
        qtl__free(x->al, x->staging[w]);
    qtl__free(x->al, x->staging);
    qtl__free(x->al, x->outs);
    qtl__free(x->al, x->pieces);
    qtl__free(x->al, x->keys);
    qtl__free(x->al, x->own_res);
}

int qtl__exec_run(const struct qtl_exec_cfg *cfg, const struct qtl_backend *be, const struct qtl_xfill *fills,
                  size_t nfills, const struct qtl_xop *ops, size_t nops, struct qtl_xres *res,
                  struct qtl_exec_stats *st)
{
    static const struct qtl_exec_cfg defaults;
    double t0 = now_seconds();
    struct qtl_alloc fallback;
    struct exec x;
    if (!fills_ok(fills, nfills))
        return QTL_ERR_INVALID_ARGUMENT;
    exec_init(&x, cfg ? cfg : &defaults, be, ops, &fallback);
    int rc = prepare(&x, nops, res);
    if (!rc) {
        for (size_t i = 0; i < nfills; i++)
            fill_one(&fills[i]);
        run_all(&x);
        merge_results(&x);
        if (x.cfg->progress)
            x.cfg->progress(x.cfg->progress_ud, x.total, x.total);
        rc = first_failure(x.res, nops);
    } else {
        mark_unrun(&x, nops, rc);
    }
    if (st)
        fill_stats(&x, st, now_seconds() - t0);
    exec_free(&x);
    return rc;
}

/* ---- the pread backend ---- */

#define DIO_ALIGN ((size_t)4 << 10) /* covers 512 B and 4 KiB logical blocks */
#define BOUNCE_SIZE (QTL_EXEC_CHUNK_DEFAULT + 2 * DIO_ALIGN) /* a default chunk and its ragged ends */
#define IO_MAX ((size_t)1 << 30)    /* per pread call: below SSIZE_MAX and aligned */

struct pfile {
    int fd;            /* buffered reads */
    int dfd;           /* O_DIRECT, or -1 */
    atomic_int direct; /* reads still go through dfd */
};

struct bounce {
    void *raw;
    unsigned char *buf; /* raw rounded up to DIO_ALIGN */
};

struct qtl_pread_backend {
    struct qtl_alloc al;
    struct pfile *files;
    size_t n;
    atomic_size_t fallbacks;
    struct bounce *bounce; /* one per worker during a run when a file reads direct */
    unsigned nbounce;
};

/* pread until `len` bytes or the end of the file (*got says how far). Under
 * O_DIRECT a read ending off an `align` boundary is the end of the file: stop
 * there rather than ask for an unaligned offset. @return 0 or an errno value. */
static int pread_full(int fd, unsigned char *buf, size_t len, uint64_t off, size_t align, size_t *got)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got < IO_MAX ? len - *got : IO_MAX;
        ssize_t r = pread(fd, buf + *got, want, (off_t)(off + *got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            break;
        *got += (size_t)r;
        if ((size_t)r % align)
            break;
    }
    return 0;
}

static int read_buffered(int fd, unsigned char *dst, size_t len, uint64_t off, int *sys_errno)
{
    size_t got;
    int e = pread_full(fd, dst, len, off, 1, &got);
    if (e) {
        *sys_errno = e;
        return QTL_ERR_IO;
    }
    return got < len ? QTL_ERR_TRUNCATED : QTL_OK;
}

/* The file reads buffered from now on; counted once per file whichever
 * worker gets there first. */
static void fall_back(struct qtl_pread_backend *pb, struct pfile *f)
{
    if (atomic_exchange(&f->direct, 0))
        atomic_fetch_add(&pb->fallbacks, 1);
}

/* The 4 KiB-aligned window around each piece of the wanted bytes into the
 * bounce buffer, the wanted bytes out of it. At the end of the file the window
 * reads short, which is fine as long as the wanted bytes are there. */
static int read_direct(struct qtl_pread_backend *pb, struct pfile *f, unsigned char *buf, unsigned char *dst,
                       size_t len, uint64_t off, int *sys_errno)
{
    while (len) {
        size_t head = (size_t)(off % DIO_ALIGN), got;
        size_t want = len < BOUNCE_SIZE - head ? len : BOUNCE_SIZE - head;
        size_t window = (head + want + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;
        int e = pread_full(f->dfd, buf, window, off - head, DIO_ALIGN, &got);
        if (e == EINVAL) { /* the filesystem takes O_DIRECT opens but not reads (some FUSE mounts) */
            fall_back(pb, f);
            return read_buffered(f->fd, dst, len, off, sys_errno);
        }
        if (e) {
            *sys_errno = e;
            return QTL_ERR_IO;
        }
        if (got < head + want)
            return QTL_ERR_TRUNCATED;
        memcpy(dst, buf + head, want);
        dst += want;
        len -= want;
        off += want;
    }
    return QTL_OK;
}

static int pb_read(void *ud, unsigned w, uint32_t file, void *dst, size_t len, uint64_t off, int *sys_errno)
{
    struct qtl_pread_backend *pb = ud;
    if (file >= pb->n)
        return QTL_ERR_INVALID_ARGUMENT;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return QTL_ERR_TRUNCATED; /* past the end of any file */
    struct pfile *f = &pb->files[file];
    if (atomic_load(&f->direct) && w < pb->nbounce)
        return read_direct(pb, f, pb->bounce[w].buf, dst, len, off, sys_errno);
    return read_buffered(f->fd, dst, len, off, sys_errno);
}

/* preadv until every buffer is full (advancing over short reads). */
static int pb_readv(void *ud, unsigned w, uint32_t file, const struct iovec *iov, int n, uint64_t off, int *sys_errno)
{
    struct qtl_pread_backend *pb = ud;
    (void)w;
    if (file >= pb->n || n < 0 || n > SCATTER_IOV)
        return QTL_ERR_INVALID_ARGUMENT;
    struct iovec v[SCATTER_IOV];
    memcpy(v, iov, (size_t)n * sizeof *v);
    for (int i = 0; i < n;) {
        ssize_t r = preadv(pb->files[file].fd, v + i, n - i, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *sys_errno = errno;
            return QTL_ERR_IO;
        }
        if (r == 0)
            return QTL_ERR_TRUNCATED;
        off += (uint64_t)r;
        size_t left = (size_t)r;
        while (i < n && left >= v[i].iov_len)
            left -= v[i++].iov_len;
        if (i < n && left) { /* a short read ended inside v[i] */
            v[i].iov_base = (unsigned char *)v[i].iov_base + left;
            v[i].iov_len -= left;
        }
    }
    return QTL_OK;
}

static void pb_end(void *ud)
{
    struct qtl_pread_backend *pb = ud;
    for (unsigned w = 0; w < pb->nbounce; w++)
        qtl__free(&pb->al, pb->bounce[w].raw);
    qtl__free(&pb->al, pb->bounce);
    pb->bounce = NULL;
    pb->nbounce = 0;
}

static int any_direct(struct qtl_pread_backend *pb)
{
    for (size_t i = 0; i < pb->n; i++)
        if (atomic_load(&pb->files[i].direct))
            return 1;
    return 0;
}

/* Bounce buffers, over-allocated through the allocator and aligned by hand. */
static int pb_begin(void *ud, unsigned nworkers)
{
    struct qtl_pread_backend *pb = ud;
    if (!nworkers || !any_direct(pb))
        return QTL_OK;
    if (!(pb->bounce = qtl__calloc(&pb->al, nworkers, sizeof *pb->bounce)))
        return QTL_ERR_NOMEM;
    pb->nbounce = nworkers;
    for (unsigned w = 0; w < nworkers; w++) {
        unsigned char *raw = qtl__malloc(&pb->al, BOUNCE_SIZE + DIO_ALIGN);
        if (!raw) {
            pb_end(pb);
            return QTL_ERR_NOMEM;
        }
        pb->bounce[w].raw = raw;
        pb->bounce[w].buf = raw + (DIO_ALIGN - (uintptr_t)raw % DIO_ALIGN) % DIO_ALIGN;
    }
    return QTL_OK;
}

static int check_size(int fd, const char *path, uint64_t want, struct qtl_err *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return qtl__fail(err, QTL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return qtl__fail(err, QTL_ERR_OPEN, "%s: not a regular file", path);
    uint64_t have = (uint64_t)sb.st_size;
    if (have == want)
        return QTL_OK;
    return qtl__fail(err, have < want ? QTL_ERR_TRUNCATED : QTL_ERR_IO,
                     "%s: %llu bytes, the plan expects %llu (the file changed since it was planned)", path,
                     (unsigned long long)have, (unsigned long long)want);
}

/* The O_DIRECT descriptor; a filesystem refusing it (EINVAL: tmpfs before
 * Linux 6.6, procfs, some FUSE mounts) leaves the file buffered. */
static int open_direct(struct qtl_pread_backend *pb, struct pfile *f, const char *path, struct qtl_err *err)
{
#ifdef O_DIRECT
    f->dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (f->dfd >= 0) {
        atomic_store(&f->direct, 1);
        return QTL_OK;
    }
    if (errno != EINVAL)
        return qtl__fail(err, QTL_ERR_OPEN, "%s: cannot open with O_DIRECT: %s", path, strerror(errno));
#else
    (void)f;
    (void)path;
    (void)err;
#endif
    atomic_fetch_add(&pb->fallbacks, 1);
    return QTL_OK;
}

static int open_file(struct qtl_pread_backend *pb, struct pfile *f, const char *path, uint64_t size, int direct,
                     struct qtl_err *err)
{
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return qtl__fail(err, QTL_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    int rc = check_size(f->fd, path, size, err);
    return rc || !direct ? rc : open_direct(pb, f, path, err);
}

static struct qtl_pread_backend *pb_new(const struct qtl_alloc *al, size_t n)
{
    struct qtl_pread_backend *pb = qtl__calloc(al, 1, sizeof *pb);
    if (!pb)
        return NULL;
    pb->al = *al;
    atomic_init(&pb->fallbacks, 0);
    if (!(pb->files = qtl__calloc(al, n, sizeof *pb->files))) {
        qtl__free(al, pb);
        return NULL;
    }
    pb->n = n;
    for (size_t i = 0; i < n; i++) {
        pb->files[i].fd = pb->files[i].dfd = -1;
        atomic_init(&pb->files[i].direct, 0);
    }
    return pb;
}

int qtl__pread_backend_open(const char *const *paths, const uint64_t *sizes, size_t n, int direct,
                            const struct qtl_alloc *al, struct qtl_err *err, struct qtl_pread_backend **out,
                            struct qtl_backend *be)
{
    struct qtl_alloc fallback;
    struct qtl_err scratch;
    *out = NULL;
    memset(be, 0, sizeof *be);
    struct qtl_pread_backend *pb = pb_new(alloc_or_default(al, &fallback), n);
    if (!pb)
        return qtl__fail(err ? err : &scratch, QTL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int rc = open_file(pb, &pb->files[i], paths[i], sizes[i], direct, err ? err : &scratch);
        if (rc) {
            qtl__pread_backend_close(pb);
            return rc;
        }
    }
    /* O_DIRECT reads go through bounce buffers: strided reads then take the staged sieve */
    *be = (struct qtl_backend){pb_begin, pb_read, direct ? NULL : pb_readv, pb_end, pb};
    *out = pb;
    return QTL_OK;
}

void qtl__pread_backend_close(struct qtl_pread_backend *pb)
{
    if (!pb)
        return;
    pb_end(pb);
    for (size_t i = 0; i < pb->n; i++) {
        if (pb->files[i].fd >= 0)
            close(pb->files[i].fd);
        if (pb->files[i].dfd >= 0)
            close(pb->files[i].dfd);
    }
    struct qtl_alloc al = pb->al;
    qtl__free(&al, pb->files);
    qtl__free(&al, pb);
}

size_t qtl__pread_backend_fallbacks(const struct qtl_pread_backend *pb) { return atomic_load(&pb->fallbacks); }

/* ---- destination memory ---- */

#define ARENA_ALIGN ((size_t)2 << 20) /* one transparent huge page */

int qtl__arena_alloc(struct qtl_arena *a, size_t size, int huge)
{
    memset(a, 0, sizeof *a);
    if (size > SIZE_MAX - 2 * ARENA_ALIGN)
        return QTL_ERR_NOMEM;
    /* size 0 still maps a page: base stays a real pointer callers may offset by 0 */
    size_t rounded = (size + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    rounded = rounded ? rounded : ARENA_ALIGN;
    /* 2 MiB of slack so an aligned base always fits: mmap only promises 4 KiB */
    void *map = mmap(NULL, rounded + ARENA_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return QTL_ERR_NOMEM;
    a->map = map;
    a->map_size = rounded + ARENA_ALIGN;
    a->base = (unsigned char *)map + (ARENA_ALIGN - (uintptr_t)map % ARENA_ALIGN) % ARENA_ALIGN;
    a->size = size;
#ifdef MADV_HUGEPAGE
    if (huge)
        (void)madvise(a->base, rounded, MADV_HUGEPAGE); /* a hint: with THP off the pages stay 4 KiB */
#else
    (void)huge;
#endif
    return QTL_OK;
}

void qtl__arena_free(struct qtl_arena *a)
{
    if (a->map)
        munmap(a->map, a->map_size);
    memset(a, 0, sizeof *a);
}
