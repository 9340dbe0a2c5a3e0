/* qtl bench load CKPT [--tp T] [--rank R] [--threads N] [--reps K] [--direct]
 * One rank's load (qtl_load_open + qtl_load_run, stage loaded) against the
 * machine's bounds measured in the same run, repetitions interleaved, medians:
 *   qtl, fresh arena          the default: a new 2 MiB-aligned huge-page arena per load
 *   qtl, reused buffer        qtl_load_set_buffer into memory faulted beforehand
 *   pread, fresh huge pages   the same byte count from the same files, 8 MiB preads on N threads
 *   pread, pre-faulted        the same into memory faulted beforehand
 *   memcpy                    the same byte count, pre-faulted to pre-faulted, N threads
 * GB/s is bytes read from files (qtl_load_bytes_read) over qtl_load_seconds.
 * Under mpiexec -n T (one process per rank): every rank loads its own rank between
 * barriers, and the aggregate (all ranks' bytes over the slowest rank's time) is set
 * against every rank preading the same byte count of its files at once. */
#include "cli.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK ((size_t)8 << 20)

static unsigned char *map(size_t n, int touch)
{
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, n, MADV_HUGEPAGE);
    if (touch)
        memset(p, 1, n);
    return p;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct files {
    int fd[64];
    uint64_t size[64];
    size_t n;
};

/* pread `bytes` bytes of the files, in order, in 8 MiB chunks over `threads` threads. */
static double pread_bound(const struct files *f, uint64_t bytes, unsigned char *dst, unsigned threads)
{
    uint64_t nchunks = (bytes + CHUNK - 1) / CHUNK;
    double t0 = cli_now();
    int64_t c;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (c = 0; c < (int64_t)nchunks; c++) {
        uint64_t at = (uint64_t)c * CHUNK, len = bytes - at < CHUNK ? bytes - at : CHUNK, base = 0;
        for (size_t i = 0; i < f->n && len; i++) { /* the chunk may span two files */
            if (at >= base + f->size[i]) {
                base += f->size[i];
                continue;
            }
            uint64_t off = at - base, n = f->size[i] - off < len ? f->size[i] - off : len;
            if (pread(f->fd[i], dst + at, (size_t)n, (off_t)off) < 0)
                break;
            at += n;
            len -= n;
            base += f->size[i];
        }
    }
    return cli_now() - t0;
}

static double memcpy_bound(unsigned char *dst, const unsigned char *src, uint64_t bytes, unsigned threads)
{
    uint64_t nchunks = (bytes + CHUNK - 1) / CHUNK;
    double t0 = cli_now();
    int64_t c;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (c = 0; c < (int64_t)nchunks; c++) {
        uint64_t at = (uint64_t)c * CHUNK, len = bytes - at < CHUNK ? bytes - at : CHUNK;
        memcpy(dst + at, src + at, (size_t)len);
    }
    return cli_now() - t0;
}

struct lrun {
    double seconds;
    uint64_t bytes;
    int rc;
};

static struct lrun qtl_run(const char *ckpt, const struct qtl_load_options *o, void *buf, size_t size)
{
    struct lrun r = {0, 0, 0};
    qtl_load_t *l = NULL;
    r.rc = qtl_load_open(ckpt, o, &l);
    if (!r.rc && buf)
        r.rc = qtl_load_set_buffer(l, buf, size);
    if (!r.rc)
        r.rc = qtl_load_run(l);
    if (r.rc)
        fprintf(stderr, "qtl bench load: %s\n", qtl_load_errmsg(l));
    r.seconds = qtl_load_seconds(l);
    r.bytes = qtl_load_bytes_read(l);
    qtl_load_close(l);
    return r;
}

static int open_files(const char *ckpt, const struct qtl_load_options *o, struct files *f, uint64_t *needed,
                      uint64_t *total)
{
    qtl_load_t *l = NULL;
    int rc = qtl_load_open(ckpt, o, &l); /* the plan only: nothing is read until qtl_load_run */
    if (rc) {
        fprintf(stderr, "qtl bench load: %s\n", qtl_load_errmsg(l));
        qtl_load_close(l);
        return rc;
    }
    *needed = qtl_load_bytes_needed(l);
    f->n = 0;
    *total = 0;
    for (size_t i = 0; i < qtl_load_file_count(l) && f->n < 64; i++) {
        uint64_t size;
        const char *path = qtl_load_file_at(l, i, &size);
        if ((f->fd[f->n] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        f->size[f->n++] = size;
        *total += size;
    }
    qtl_load_close(l);
    return QTL_OK;
}

static double gbs(uint64_t bytes, double s) { return s > 0 ? (double)bytes / s / 1e9 : 0; }

#ifdef QTL_MPI
/* The slowest rank's time of one step started together: a barrier before and after. */
static double together(double (*step)(void *), void *ud)
{
    qtl_dist_barrier(cli_dist);
    double t0 = cli_now();
    step(ud);
    qtl_dist_barrier(cli_dist);
    return cli_now() - t0;
}

struct mstep {
    const char *ckpt;
    const struct qtl_load_options *o;
    const struct files *f;
    uint64_t bytes;
    unsigned threads;
    int rc;
};

static double step_qtl(void *ud)
{
    struct mstep *s = ud;
    s->rc |= qtl_run(s->ckpt, s->o, NULL, 0).rc;
    return 0;
}

static double step_pread(void *ud)
{
    struct mstep *s = ud;
    unsigned char *fresh = map((size_t)s->bytes, 0);
    if (!fresh) {
        s->rc = 1;
        return 0;
    }
    pread_bound(s->f, s->bytes, fresh, s->threads);
    munmap(fresh, (size_t)s->bytes);
    return 0;
}

static int bench_load_mpi(const char *ckpt, unsigned long long tp, unsigned long long threads, unsigned long long reps,
                          int direct)
{
    uint32_t me = qtl_dist_rank(cli_dist), n = qtl_dist_size(cli_dist);
    if (n != tp) {
        if (me == 0)
            fprintf(stderr, "qtl bench load: mpiexec started %u processes for --tp %llu (one per rank)\n", n, tp);
        return CLI_USAGE;
    }
    struct qtl_load_options o = {.tp = (uint32_t)tp, .rank = me, .dtype_override = QTL_DTYPE_COUNT,
                                 .threads = (unsigned)threads, .direct = direct};
    struct files f;
    uint64_t needed, total;
    int rc = open_files(ckpt, &o, &f, &needed, &total), worst;
    struct lrun first = {0, 0, 1};
    if (!rc)
        first = qtl_run(ckpt, &o, NULL, 0); /* warms the page cache; gives the byte count */
    qtl_dist_agree(cli_dist, rc || first.rc ? CLI_FINDINGS : CLI_OK, &worst, NULL);
    if (worst)
        return worst;
    struct mstep s = {ckpt, &o, &f, first.bytes < total ? first.bytes : total, (unsigned)threads, 0};
    double t[2][100];
    for (unsigned long long k = 0; k < reps; k++) {
        t[0][k] = together(step_qtl, &s);
        t[1][k] = together(step_pread, &s);
    }
    for (size_t i = 0; i < f.n; i++)
        close(f.fd[i]);
    char line[64];
    int len = snprintf(line, sizeof line, "%llu\n", (unsigned long long)s.bytes);
    void *all;
    uint64_t *offs;
    qtl_dist_gather(cli_dist, line, (uint64_t)len, &all, &offs);
    qtl_dist_agree(cli_dist, s.rc ? CLI_FINDINGS : CLI_OK, &worst, NULL);
    if (me == 0 && all && !worst) {
        uint64_t sum = 0;
        for (uint32_t r = 0; r < n; r++)
            sum += strtoull((const char *)all + offs[r], NULL, 10);
        for (int i = 0; i < 2; i++)
            qsort(t[i], (size_t)reps, sizeof t[i][0], cmp_d);
        double q = t[0][reps / 2], p = t[1][reps / 2];
        printf("qtl bench load %s --tp %llu under mpiexec -n %u: %llu threads per rank%s, %.1f MB read by all ranks, "
               "%llu reps, medians of the slowest rank\n",
               ckpt, tp, n, threads, direct ? ", O_DIRECT" : "", (double)sum / 1e6, reps);
        printf("  %-34s %9.4f s %8.2f GB/s\n", "qtl, every rank at once", q, gbs(sum, q));
        printf("  %-34s %9.4f s %8.2f GB/s\n", "pread into fresh pages, every rank", p, gbs(sum, p));
        printf("  qtl / bound: %.2fx\n", q > 0 ? p / q : 0.0);
    }
    qtl_dist_free(cli_dist, all);
    qtl_dist_free(cli_dist, offs);
    return worst;
}
#endif

int bench_load(int argc, char **argv);
int bench_load(int argc, char **argv)
{
    const char *ckpt = NULL;
    unsigned long long tp = 1, rank = 0, threads = 0, reps = 5;
    int direct = 0;
    for (int i = 0; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--tp") && more)
            cli_parse_u64(argv[++i], &tp);
        else if (!strcmp(argv[i], "--rank") && more)
            cli_parse_u64(argv[++i], &rank);
        else if (!strcmp(argv[i], "--threads") && more)
            cli_parse_u64(argv[++i], &threads);
        else if (!strcmp(argv[i], "--reps") && more)
            cli_parse_u64(argv[++i], &reps);
        else if (!strcmp(argv[i], "--direct"))
            direct = 1;
        else if (argv[i][0] != '-' && !ckpt)
            ckpt = argv[i];
        else
            return cli_usage_error("bench", "load CKPT [--tp T] [--rank R] [--threads N] [--reps K] [--direct]");
    }
    if (!ckpt || !tp || rank >= tp || reps < 1 || reps > 99)
        return cli_usage_error("bench", "load needs CKPT, rank < tp, --reps 1..99");
#ifdef _OPENMP
    if (!threads)
        threads = (unsigned long long)omp_get_max_threads();
#endif
    if (!threads)
        threads = 1;
#ifdef QTL_MPI
    if (cli_dist) { /* the node's cores shared by its ranks (hydra: MPI_LOCALNRANKS) */
        const char *local = getenv("MPI_LOCALNRANKS");
        unsigned long long nl = local ? strtoull(local, NULL, 10) : 1;
        if (nl > 1 && threads > nl)
            threads /= nl;
        else if (nl > 1)
            threads = 1;
        return bench_load_mpi(ckpt, tp, threads, reps, direct);
    }
#endif
    struct qtl_load_options o = {.tp = (uint32_t)tp, .rank = (uint32_t)rank, .dtype_override = QTL_DTYPE_COUNT,
                                 .threads = (unsigned)threads, .direct = direct};
    struct files f;
    uint64_t needed, total;
    if (open_files(ckpt, &o, &f, &needed, &total))
        return CLI_FINDINGS;
    struct lrun first = qtl_run(ckpt, &o, NULL, 0); /* warms the page cache; gives the byte count */
    if (first.rc)
        return CLI_FINDINGS;
    uint64_t bytes = first.bytes < total ? first.bytes : total;
    unsigned char *reuse = map((size_t)needed, 1), *pre = map((size_t)bytes, 1), *pre2 = map((size_t)bytes, 1);
    if (!reuse || !pre || !pre2)
        return cli_usage_error("bench", "out of memory for %llu bytes", (unsigned long long)(needed + 2 * bytes));
    double t[5][100];
    for (unsigned long long k = 0; k < reps; k++) {
        struct lrun a = qtl_run(ckpt, &o, NULL, 0), b = qtl_run(ckpt, &o, reuse, (size_t)needed);
        if (a.rc || b.rc)
            return CLI_FINDINGS;
        t[0][k] = a.seconds;
        t[1][k] = b.seconds;
        unsigned char *fresh = map((size_t)bytes, 0);
        if (!fresh)
            return cli_usage_error("bench", "out of memory");
        t[2][k] = pread_bound(&f, bytes, fresh, (unsigned)threads);
        munmap(fresh, (size_t)bytes);
        t[3][k] = pread_bound(&f, bytes, pre, (unsigned)threads);
        t[4][k] = memcpy_bound(pre2, pre, bytes, (unsigned)threads);
    }
    double med[5];
    for (int i = 0; i < 5; i++) {
        qsort(t[i], (size_t)reps, sizeof t[i][0], cmp_d);
        med[i] = t[i][reps / 2];
    }
    static const char *const names[5] = {"qtl, fresh arena", "qtl, reused buffer", "pread, fresh huge pages",
                                         "pread, pre-faulted", "memcpy"};
    printf("qtl bench load %s --tp %llu --rank %llu: %llu threads%s, %.1f MB read, %llu reps, medians\n", ckpt, tp,
           rank, threads, direct ? ", O_DIRECT" : "", (double)bytes / 1e6, reps);
    printf("  %-26s %9s %8s   %s\n", "", "seconds", "GB/s", "qtl fresh / this   qtl reused / this");
    for (int i = 0; i < 5; i++)
        printf("  %-26s %9.4f %8.2f   %8.2fx %16.2fx\n", names[i], med[i], gbs(bytes, med[i]), med[i] / med[0],
               med[i] / med[1]);
    munmap(reuse, (size_t)needed);
    munmap(pre, (size_t)bytes);
    munmap(pre2, (size_t)bytes);
    for (size_t i = 0; i < f.n; i++)
        close(f.fd[i]);
    return CLI_OK;
}
