/* One process per rank on MPI (MPICH): the few collective steps a load needs —
 * agreeing on every phase's status, proving every rank planned from the same
 * files and config (the plan hash), and gathering each rank's report on rank 0.
 * Data never moves through MPI: each rank reads its own bytes with the local
 * executor (io-mpi-moe.md Part B: independent preads after an allreduce of the
 * plan hash beat collective reads). Built only with MPI (libqtl_mpi). */
#include "qtl.h"
#include "internal.h"

#include <mpi.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qtl_dist {
    struct qtl_alloc al;
    MPI_Comm comm;
    int rank, size;
    int we_initialized;
};

int qtl_dist_open(int *argc, char ***argv, const struct qtl_allocator *allocator, qtl_dist_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, allocator);
    *out = NULL;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return QTL_ERR_IO;
    qtl_dist_t *d = qtl__calloc(&al, 1, sizeof *d);
    if (!d) {
        if (!inited)
            MPI_Finalize();
        return QTL_ERR_NOMEM;
    }
    d->al = al;
    d->we_initialized = !inited;
    /* a duplicate: qtl's collectives never interleave with the host's on MPI_COMM_WORLD */
    if (MPI_Comm_dup(MPI_COMM_WORLD, &d->comm) != MPI_SUCCESS) {
        qtl_dist_close(d);
        return QTL_ERR_IO;
    }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    *out = d;
    return QTL_OK;
}

uint32_t qtl_dist_rank(const qtl_dist_t *d) { return (uint32_t)d->rank; }
uint32_t qtl_dist_size(const qtl_dist_t *d) { return (uint32_t)d->size; }

int qtl_dist_agree(qtl_dist_t *d, int local, int *worst, uint32_t *nfailed)
{
    int v[2] = {local, local != 0}, mx = 0, n = 0;
    if (MPI_Allreduce(&v[0], &mx, 1, MPI_INT, MPI_MAX, d->comm) != MPI_SUCCESS ||
        MPI_Allreduce(&v[1], &n, 1, MPI_INT, MPI_SUM, d->comm) != MPI_SUCCESS)
        return QTL_ERR_IO;
    if (worst)
        *worst = mx;
    if (nfailed)
        *nfailed = (uint32_t)n;
    return QTL_OK;
}

/* MPI-4 large-count collectives: parts of 2 GiB and more. */
#if MPI_VERSION < 4
#error "qtl's MPI layer needs MPI-4 (large-count calls): Debian 12's MPICH 4.0 has them"
#endif

int qtl_dist_gather(qtl_dist_t *d, const void *mine, uint64_t len, void **all, uint64_t **offsets)
{
    *all = NULL;
    *offsets = NULL;
    uint64_t *lens = NULL, *offs = NULL;
    MPI_Count *counts = NULL;
    MPI_Aint *displs = NULL;
    unsigned char *buf = NULL;
    int bad = 0;
    size_t n = (size_t)d->size;
    if (d->rank == 0) {
        lens = qtl__calloc(&d->al, n, sizeof *lens);
        offs = qtl__calloc(&d->al, n + 1, sizeof *offs);
        counts = qtl__calloc(&d->al, n, sizeof *counts);
        displs = qtl__calloc(&d->al, n, sizeof *displs);
        bad = !lens || !offs || !counts || !displs;
    }
    uint64_t l64 = len;
    if (MPI_Gather(&l64, 1, MPI_UINT64_T, lens, 1, MPI_UINT64_T, 0, d->comm) != MPI_SUCCESS)
        bad = 2;
    if (d->rank == 0 && !bad) {
        for (size_t r = 0; r < n && !bad; r++) {
            bad = qtl__add_u64(offs[r], lens[r], &offs[r + 1]) || offs[r + 1] > (uint64_t)PTRDIFF_MAX - 1;
            counts[r] = (MPI_Count)lens[r];
            displs[r] = (MPI_Aint)offs[r];
        }
        if (!bad)
            bad = !(buf = qtl__malloc(&d->al, (size_t)offs[n] + 1));
    }
    /* rank 0's allocations decide for everyone: no rank enters the Gatherv alone */
    int go = !bad;
    MPI_Bcast(&go, 1, MPI_INT, 0, d->comm);
    int rc = !go ? (bad == 2 ? QTL_ERR_IO : QTL_ERR_NOMEM)
             : MPI_Gatherv_c(mine, (MPI_Count)len, MPI_BYTE, buf, counts, displs, MPI_BYTE, 0, d->comm) == MPI_SUCCESS
                 ? QTL_OK
                 : QTL_ERR_IO;
    qtl__free(&d->al, lens);
    qtl__free(&d->al, counts);
    qtl__free(&d->al, displs);
    if (rc || d->rank != 0) {
        qtl__free(&d->al, buf);
        qtl__free(&d->al, offs);
        return rc;
    }
    buf[offs[n]] = 0; /* text stays a C string */
    *all = buf;
    *offsets = offs;
    return QTL_OK;
}

void qtl_dist_free(qtl_dist_t *d, void *p)
{
    if (d)
        qtl__free(&d->al, p);
}

/* This rank's files as "name\tsize\n" lines (names without directories: nodes may
 * hold their copies under different paths). */
static char *file_lines(qtl_dist_t *d, const qtl_load_t *l, uint64_t *len)
{
    size_t cap = 64, n = 0;
    for (size_t i = 0; i < qtl_load_file_count(l); i++)
        cap += strlen(qtl_load_file_at(l, i, NULL)) + 32;
    char *s = qtl__malloc(&d->al, cap);
    if (!s)
        return NULL;
    s[0] = 0;
    for (size_t i = 0; i < qtl_load_file_count(l); i++) {
        uint64_t size;
        const char *p = qtl_load_file_at(l, i, &size), *b = strrchr(p, '/');
        n += (size_t)snprintf(s + n, cap - n, "%s\t%llu\n", b ? b + 1 : p, (unsigned long long)size);
    }
    *len = n;
    return s;
}

/* The size field of `name`'s line in the "name\tsize\n" list [list, end), or NULL. */
static const char *find_line(const char *list, const char *end, const char *name, size_t nlen)
{
    for (const char *p = list; p < end;) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        const char *nl = tab ? memchr(tab, '\n', (size_t)(end - tab)) : NULL;
        if (!tab || !nl)
            return NULL;
        if ((size_t)(tab - p) == nlen && !memcmp(p, name, nlen))
            return tab + 1;
        p = nl + 1;
    }
    return NULL;
}

/* Rank 0's account of a mismatch: which ranks differ, and in which files. */
static void describe_mismatch(const uint64_t *hashes, const char *all, const uint64_t *offs, int size, char *msg,
                              size_t cap)
{
    size_t o = (size_t)snprintf(msg, cap, "ranks disagree on the plan (files, tensors, config or layout): rank 0 has "
                                          "plan hash %016llx",
                                (unsigned long long)hashes[0]);
    const char *mine = all + offs[0], *mine_end = all + offs[1];
    for (int r = 1; r < size && o < cap; r++) {
        if (hashes[r] == hashes[0])
            continue;
        o += (size_t)snprintf(msg + o, cap - o, "; rank %d has %016llx", r, (unsigned long long)hashes[r]);
        int named = 0;
        const char *theirs = all + offs[r], *theirs_end = all + offs[r + 1];
        /* its files against rank 0's, then rank 0's it lacks */
        for (int side = 0; side < 2; side++) {
            const char *p = side ? mine : theirs, *end = side ? mine_end : theirs_end;
            while (p < end && o < cap) {
                const char *tab = memchr(p, '\t', (size_t)(end - p));
                const char *nl = tab ? memchr(tab, '\n', (size_t)(end - tab)) : NULL;
                if (!tab || !nl)
                    break;
                int nlen = (int)(tab - p);
                const char *other = find_line(side ? theirs : mine, side ? theirs_end : mine_end, p, (size_t)nlen);
                if (!other) {
                    o += (size_t)snprintf(msg + o, cap - o, ", %.*s %s", nlen, p, side ? "missing there" : "only there");
                    named = 1;
                } else if (!side && strtoull(other, NULL, 10) != strtoull(tab + 1, NULL, 10)) {
                    o += (size_t)snprintf(msg + o, cap - o, ", %.*s is %llu bytes there and %llu on rank 0", nlen, p,
                                          strtoull(tab + 1, NULL, 10), strtoull(other, NULL, 10));
                    named = 1;
                }
                p = nl + 1;
            }
        }
        if (!named && o < cap)
            o += (size_t)snprintf(msg + o, cap - o, " (same file names and sizes: the tensor tables or config.json "
                                                    "differ)");
    }
}

int qtl_dist_check_plan(qtl_dist_t *d, const qtl_load_t *l, char *msg, size_t cap)
{
    if (msg && cap)
        msg[0] = 0;
    uint64_t h = qtl_load_plan_hash(l), lo = 0, hi = 0;
    if (MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, d->comm) != MPI_SUCCESS ||
        MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, d->comm) != MPI_SUCCESS)
        return QTL_ERR_IO;
    if (lo == hi)
        return QTL_OK;
    /* they differ: gather every rank's hash and file list for rank 0's message */
    uint64_t *hashes = d->rank == 0 ? qtl__calloc(&d->al, (size_t)d->size, sizeof *hashes) : NULL;
    MPI_Gather(&h, 1, MPI_UINT64_T, hashes, 1, MPI_UINT64_T, 0, d->comm);
    uint64_t len = 0;
    char *lines = file_lines(d, l, &len);
    void *all = NULL;
    uint64_t *offs = NULL;
    int rc = qtl_dist_gather(d, lines ? lines : "", lines ? len : 0, &all, &offs);
    if (d->rank == 0 && msg) {
        if (!rc && hashes)
            describe_mismatch(hashes, all, offs, d->size, msg, cap);
        else
            snprintf(msg, cap, "ranks disagree on the plan hash (%016llx .. %016llx)", (unsigned long long)lo,
                     (unsigned long long)hi);
    }
    qtl__free(&d->al, lines);
    qtl__free(&d->al, hashes);
    qtl_dist_free(d, all);
    qtl_dist_free(d, offs);
    return QTL_ERR_CHECKPOINT;
}

int qtl_dist_barrier(qtl_dist_t *d) { return MPI_Barrier(d->comm) == MPI_SUCCESS ? QTL_OK : QTL_ERR_IO; }

void qtl_dist_abort(qtl_dist_t *d, int code) { MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code); }

void qtl_dist_close(qtl_dist_t *d)
{
    if (!d)
        return;
    if (d->comm != MPI_COMM_NULL && d->comm != 0)
        MPI_Comm_free(&d->comm);
    int we = d->we_initialized;
    struct qtl_alloc al = d->al;
    qtl__free(&al, d);
    if (we)
        MPI_Finalize();
}
