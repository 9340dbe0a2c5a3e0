/* The execution engine: a list of 2-D strided copies from files into memory,
 * run on N threads through a byte-source backend. It knows nothing of vLLM,
 * checkpoints, tensors or parameters: the planner (plan.c) turns those into
 * qtl_xop descriptors, the executor only moves bytes (io-mpi-moe.md A.8).
 *
 * Determinism: every op writes only its own destination bytes, results are
 * per op, and nothing shared is mutated per copy, so the bytes and results
 * are identical for any thread count (overlapping destinations are the
 * caller's error; the planner never emits them). */
#ifndef QTL_EXEC_H
#define QTL_EXEC_H

#include "internal.h"

#define QTL_EXEC_CHUNK_DEFAULT ((size_t)8 << 20) /* piece size: 8 MiB */
#define QTL_EXEC_SIEVE_GAP_DEFAULT ((uint64_t)8 << 10) /* per-row reads at or above an 8 KiB gap */

/* One copy: `rows` rows of `row_bytes` bytes starting at file offset `src_off`,
 * `src_pitch` bytes apart in the file, into `dst`, `dst_pitch` bytes apart.
 * When src_dtype != dst_dtype each row's row_bytes / elem(src) elements are
 * converted with qtl__convert into row_bytes / elem(src) * elem(dst) bytes. */
struct qtl_xop {
    uint32_t file;      /* index into the backend's files */
    uint64_t src_off;   /* absolute offset of row 0 in the file */
    uint64_t rows;      /* >= 1 */
    uint64_t row_bytes; /* >= 1 */
    uint64_t src_pitch; /* >= row_bytes (ignored when rows == 1) */
    unsigned char *dst; /* row 0 */
    uint64_t dst_pitch; /* >= destination bytes per row (ignored when rows == 1) */
    enum qtl_dtype src_dtype, dst_dtype;
};

/* A fill done before any read: `bytes` bytes of dst with `pattern` repeated
 * (pattern_len 1..8; bytes a multiple of pattern_len). */
struct qtl_xfill {
    unsigned char *dst;
    uint64_t bytes;
    uint32_t pattern_len;
    unsigned char pattern[8];
};

/* Per-op outcome: status QTL_OK, QTL_ERR_IO (sys_errno set), QTL_ERR_TRUNCATED
 * (the file ended before the op's bytes: a file changed since the plan),
 * QTL_ERR_UNSUPPORTED (dtype pair not convertible), QTL_ERR_INVALID_ARGUMENT
 * (rows or row_bytes 0, rows overlapping in the file or in memory, row_bytes
 * not whole source elements when converting, offsets overflowing: at is
 * src_off, nothing read) or QTL_ERR_NOMEM. `at` is the file offset of the
 * failing read. The first failure of the op's pieces in file order is kept;
 * small ops coalesced into one read share that read's failure. A failed op's
 * destination bytes are unspecified. */
struct qtl_xres {
    int status;
    int sys_errno;
    uint64_t at;
};

/* The byte-source backend (pread pool now; io_uring, MPI-IO, cuFile later).
 * begin() is called once per run with the worker count (min(threads, pieces);
 * not called when there is nothing to read); read() is called by worker w
 * (0 <= w < nworkers), concurrently from several threads, and must read
 * exactly len bytes (len <= chunk) or fail; end() releases per-run state and
 * is called only after a successful begin(). begin and end may be NULL. */
struct iovec;
struct qtl_backend {
    int (*begin)(void *ud, unsigned nworkers);
    int (*read)(void *ud, unsigned w, uint32_t file, void *dst, size_t len, uint64_t off, int *sys_errno);
    /* Optional (may be NULL): read the file bytes from `off` on into the n
     * buffers in turn, exactly their total length (preadv). Buffers may alias
     * (the executor sends a strided read's gaps to one small junk buffer). */
    int (*readv)(void *ud, unsigned w, uint32_t file, const struct iovec *iov, int n, uint64_t off, int *sys_errno);
    void (*end)(void *ud);
    void *ud;
};

struct qtl_exec_cfg {
    unsigned threads;        /* 0: the number of cores (omp_get_max_threads); 1 without OpenMP */
    size_t chunk;            /* 0: QTL_EXEC_CHUNK_DEFAULT; largest read and staging buffer; at least 4 KiB */
    uint64_t sieve_gap;      /* 0: QTL_EXEC_SIEVE_GAP_DEFAULT */
    const struct qtl_alloc *al; /* staging buffers and the run's tables (NULL: malloc) */
    /* Called on worker 0 (the calling thread, so never concurrently) after each
     * of its pieces, and once at the end with done == total; done counts the
     * planned file bytes of all finished pieces, over-read included, failed
     * pieces too (may be NULL). */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
};

struct qtl_exec_stats {
    uint64_t bytes_read; /* from files, sieve and coalescing over-read included */
    uint64_t bytes_kept; /* source bytes the ops asked for */
    uint64_t reads;      /* backend read calls */
    uint64_t pieces;
    double seconds;
};

/* Run fills, then every op. @return QTL_OK when every op succeeded,
 * QTL_ERR_NOMEM when staging could not be allocated (nothing read or filled;
 * every valid op's res is NOMEM; a failing begin() is the same with its
 * status), QTL_ERR_INVALID_ARGUMENT for a malformed fill (before anything is
 * done; res and st untouched), else the status of the first failed op in op
 * order; res[i] (may be NULL) holds each op's outcome, st (may be NULL) the
 * totals (bytes_kept over the valid ops). Fills may overlap op destinations:
 * the ops overwrite them. */
int qtl__exec_run(const struct qtl_exec_cfg *cfg, const struct qtl_backend *be, const struct qtl_xfill *fills,
                  size_t nfills, const struct qtl_xop *ops, size_t nops, struct qtl_xres *res,
                  struct qtl_exec_stats *st);

/* ---- the pread backend ---- */
struct qtl_pread_backend;
/* Open `n` files read-only (O_DIRECT too when `direct`: reads then go through
 * 4 KiB-aligned supersets in per-worker bounce buffers of 8 MiB + 8 KiB, a
 * longer read taking several windows, and a file or read refusing O_DIRECT
 * with EINVAL falls back to buffered reads for that file). Each file's size is
 * checked against sizes[i] (a file that changed since the plan is
 * QTL_ERR_TRUNCATED / QTL_ERR_IO, named in err; a missing one QTL_ERR_OPEN).
 * al may be NULL (malloc), err may be NULL. Reads: QTL_ERR_TRUNCATED at the
 * end of the file, QTL_ERR_IO with the errno, QTL_ERR_INVALID_ARGUMENT for a
 * file index >= n. bytes_read counts the bytes asked for, not the windows. */
int qtl__pread_backend_open(const char *const *paths, const uint64_t *sizes, size_t n, int direct,
                            const struct qtl_alloc *al, struct qtl_err *err, struct qtl_pread_backend **out,
                            struct qtl_backend *be);
void qtl__pread_backend_close(struct qtl_pread_backend *pb);
/* Files that fell back from O_DIRECT to buffered reads. */
size_t qtl__pread_backend_fallbacks(const struct qtl_pread_backend *pb);

/* ---- destination memory ---- */
/* One 2 MiB-aligned anonymous mapping (zero-filled, MADV_HUGEPAGE when
 * `huge`), faulted by the threads that fill it. size 0 is valid: base is then
 * a non-NULL pointer to an unused mapping. mmap failing is QTL_ERR_NOMEM. */
struct qtl_arena {
    unsigned char *base;
    size_t size;
    void *map;
    size_t map_size;
};
int qtl__arena_alloc(struct qtl_arena *a, size_t size, int huge);
void qtl__arena_free(struct qtl_arena *a);

#endif
