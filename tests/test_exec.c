/* The execution engine (exec.c): random op sets (big flat ops cut into
 * chunks, runs of tiny ops coalesced, sieved and per-row strided ops, rows
 * above a chunk, odd offsets and pitches, conversions, fills) against a naive
 * per-row pread + qtl__convert reference on 1, 2 and 3 threads; the read
 * accounting of each piece kind; per-op errors; O_DIRECT with and without its
 * buffered fallback; progress; the arena; and every allocation failing in turn. */
#include "testutil.h"

#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK ((size_t)64 << 10) /* small, so that ops are cut */
#define GAP QTL_EXEC_SIEVE_GAP_DEFAULT
#define FILE_A QTL_TEST_TMP "/a.bin"
#define FILE_B QTL_TEST_TMP "/b.bin"
#define SIZE_A (((uint64_t)3 << 20) + 777)
#define SIZE_B (((uint64_t)1 << 20) + 123)
#define SENTINEL 0xA5
#define MAX_OPS 1024
#define MAX_FILLS 16

static const char *const paths_ab[2] = {FILE_A, FILE_B};
static const uint64_t sizes_ab[2] = {SIZE_A, SIZE_B};

static void write_random(const char *path, uint64_t size, uint32_t seed)
{
    unsigned char *b = malloc(size);
    assert_non_null(b);
    for (uint64_t i = 0; i < size; i++)
        b[i] = (unsigned char)tu_xorshift(&seed);
    tu_write(path, b, size);
    free(b);
}

/* ---- op sets, with destinations as offsets into one output buffer ---- */

struct opset {
    struct qtl_xop ops[MAX_OPS];
    uint64_t dst_off[MAX_OPS];
    size_t n;
    struct qtl_xfill fills[MAX_FILLS];
    uint64_t fill_off[MAX_FILLS];
    size_t nfills;
    uint64_t out_size;
    uint32_t rng;
};

static struct opset *set_new(uint32_t seed)
{
    struct opset *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->rng = seed;
    return s;
}

static uint64_t rnd(struct opset *s, uint64_t lo, uint64_t hi) /* in [lo, hi] */
{
    uint64_t r = ((uint64_t)tu_xorshift(&s->rng) << 32) | tu_xorshift(&s->rng);
    return lo + r % (hi - lo + 1);
}

static unsigned elem(enum qtl_dtype d) { return qtl_dtype_bits(d) / 8; }

static uint64_t dst_row(const struct qtl_xop *o)
{
    return o->src_dtype == o->dst_dtype ? o->row_bytes : o->row_bytes / elem(o->src_dtype) * elem(o->dst_dtype);
}

static uint64_t dst_extent(const struct qtl_xop *o) { return (o->rows - 1) * o->dst_pitch + dst_row(o); }

/* Room for `n` bytes after a few odd padding bytes. */
static uint64_t reserve(struct opset *s, uint64_t n)
{
    uint64_t off = s->out_size + rnd(s, 0, 7);
    s->out_size = off + n;
    return off;
}

static struct qtl_xop *add_op(struct opset *s, uint32_t file, uint64_t off, uint64_t rows, uint64_t row_bytes,
                              uint64_t src_pitch, uint64_t dst_extra, enum qtl_dtype sd, enum qtl_dtype dd)
{
    assert_true(s->n < MAX_OPS);
    struct qtl_xop *o = &s->ops[s->n];
    *o = (struct qtl_xop){file, off, rows, row_bytes, src_pitch, NULL, 0, sd, dd};
    o->dst_pitch = dst_row(o) + dst_extra;
    s->dst_off[s->n++] = reserve(s, dst_extent(o));
    return o;
}

static void add_fill(struct opset *s, uint64_t off, uint64_t bytes, const char *pattern)
{
    assert_true(s->nfills < MAX_FILLS);
    struct qtl_xfill *f = &s->fills[s->nfills];
    *f = (struct qtl_xfill){NULL, bytes, (uint32_t)strlen(pattern), {0}};
    memcpy(f->pattern, pattern, f->pattern_len);
    s->fill_off[s->nfills++] = off;
}

/* ---- the random sets ---- */

static const enum qtl_dtype pairs[][2] = {
    {QTL_DTYPE_U8, QTL_DTYPE_U8},   {QTL_DTYPE_U8, QTL_DTYPE_U8},    {QTL_DTYPE_BF16, QTL_DTYPE_F32},
    {QTL_DTYPE_F16, QTL_DTYPE_BF16}, {QTL_DTYPE_I8, QTL_DTYPE_I32},   {QTL_DTYPE_F32, QTL_DTYPE_BF16},
    {QTL_DTYPE_F32, QTL_DTYPE_F32},
};

/* A strided or flat op with random dtypes, its rows trimmed to fit the file. */
static void add_random(struct opset *s, const uint64_t *sizes, uint32_t nfiles, uint64_t rows, uint64_t rb,
                       uint64_t gap, uint64_t dst_extra)
{
    const enum qtl_dtype *p = pairs[rnd(s, 0, sizeof pairs / sizeof pairs[0] - 1)];
    uint32_t file = (uint32_t)rnd(s, 0, nfiles - 1);
    unsigned es = elem(p[0]);
    rb = rb < es ? es : rb / es * es;
    uint64_t pitch = rb + gap;
    if ((rows - 1) * pitch + rb > sizes[file])
        rows = (sizes[file] - rb) / pitch + 1;
    uint64_t span = (rows - 1) * pitch + rb;
    add_op(s, file, rnd(s, 0, sizes[file] - span), rows, rb, pitch, rows > 1 ? dst_extra : 0, p[0], p[1]);
}

/* Tiny ops back to back, some with gaps below and some above the sieve gap. */
static void add_tiny_run(struct opset *s, uint32_t file, uint64_t size, int count)
{
    uint64_t off = rnd(s, 0, size / 2);
    for (int i = 0; i < count; i++) {
        const enum qtl_dtype *p = pairs[rnd(s, 0, sizeof pairs / sizeof pairs[0] - 1)];
        uint64_t rb = rnd(s, 1, 400) / elem(p[0]) * elem(p[0]) + elem(p[0]);
        uint64_t kind = rnd(s, 0, 9);
        off += kind < 7 ? 0 : kind < 9 ? rnd(s, 1, 100) : rnd(s, GAP, 3 * GAP);
        if (off + rb > size)
            return;
        add_op(s, file, off, 1, rb, 0, 0, p[0], p[1]);
        off += rb;
    }
}

static void shuffle(struct opset *s)
{
    for (size_t i = s->n; i > 1; i--) {
        size_t j = (size_t)rnd(s, 0, i - 1);
        struct qtl_xop t = s->ops[i - 1];
        uint64_t d = s->dst_off[i - 1];
        s->ops[i - 1] = s->ops[j];
        s->dst_off[i - 1] = s->dst_off[j];
        s->ops[j] = t;
        s->dst_off[j] = d;
    }
}

static void add_random_fills(struct opset *s)
{
    static const char *const patterns[] = {"\x11", "ab", "xyz", "\x01\x02\x80\x3f", "01234567"};
    for (int i = 0; i < 5; i++) {
        uint64_t bytes = strlen(patterns[i]) * rnd(s, 1, 3000);
        add_fill(s, reserve(s, bytes), bytes, patterns[i]);
    }
    /* over an op's destination too: fills come first, the op overwrites its rows */
    add_fill(s, s->dst_off[0], dst_extent(&s->ops[0]), "\x5a");
}

static struct opset *random_set(uint32_t seed, const uint64_t *sizes, uint32_t nfiles)
{
    struct opset *s = set_new(seed);
    for (int i = 0; i < 4; i++) /* flat, above a chunk: cut */
        add_random(s, sizes, nfiles, 1, rnd(s, 2 * CHUNK, 3 * CHUNK), 0, 0);
    add_random(s, sizes, nfiles, 5, rnd(s, 1000, 30000), 0, 0); /* flat over several rows */
    for (uint32_t f = 0; f < nfiles; f++)
        add_tiny_run(s, f, sizes[f], 60);
    for (int i = 0; i < 8; i++) /* sieve */
        add_random(s, sizes, nfiles, rnd(s, 2, 300), rnd(s, 1, 600), rnd(s, 1, GAP - 1), rnd(s, 0, 9));
    for (int i = 0; i < 4; i++) /* per row */
        add_random(s, sizes, nfiles, rnd(s, 2, 40), rnd(s, 1, 3000), rnd(s, GAP, 4 * GAP), rnd(s, 0, 9));
    for (int i = 0; i < 2; i++) /* rows of at least half a chunk, then above a chunk (cut) */
        add_random(s, sizes, nfiles, rnd(s, 2, 8), rnd(s, CHUNK / 2, CHUNK - 1), rnd(s, 0, 100), rnd(s, 0, 9));
    for (int i = 0; i < 2; i++)
        add_random(s, sizes, nfiles, rnd(s, 2, 4), rnd(s, CHUNK + 1, 2 * CHUNK + 5), rnd(s, 0, 50), 3);
    for (int i = 0; i < 10; i++) /* single rows, odd offsets */
        add_random(s, sizes, nfiles, 1, rnd(s, 1, 5000), 0, 0);
    for (int i = 0; i < 3; i++) { /* the same source bytes to several places (replicated heads) */
        struct qtl_xop o = s->ops[s->n - 1];
        add_op(s, o.file, o.src_off, o.rows, o.row_bytes, o.src_pitch, 0, o.src_dtype, o.dst_dtype);
    }
    shuffle(s);
    add_random_fills(s);
    return s;
}

/* ---- the reference and the executor ---- */

static void reference(const struct opset *s, const char *const *paths, unsigned char *out)
{
    for (size_t i = 0; i < s->nfills; i++)
        for (uint64_t b = 0; b < s->fills[i].bytes; b++)
            out[s->fill_off[i] + b] = s->fills[i].pattern[b % s->fills[i].pattern_len];
    for (size_t i = 0; i < s->n; i++) {
        const struct qtl_xop *o = &s->ops[i];
        if (!qtl__dtype_convertible(o->src_dtype, o->dst_dtype) || o->rows == 0)
            continue;
        int fd = open(paths[o->file], O_RDONLY);
        unsigned char *row = malloc(o->row_bytes);
        assert_true(fd >= 0);
        assert_non_null(row);
        for (uint64_t r = 0; r < o->rows; r++) {
            unsigned char *to = out + s->dst_off[i] + r * o->dst_pitch;
            if (pread(fd, row, o->row_bytes, (off_t)(o->src_off + r * o->src_pitch)) != (ssize_t)o->row_bytes)
                break; /* past the end: the executor reports it, nothing to compare */
            if (o->src_dtype == o->dst_dtype)
                memcpy(to, row, o->row_bytes);
            else
                assert_int_equal(qtl__convert(o->src_dtype, row, o->dst_dtype, to, o->row_bytes / elem(o->src_dtype)),
                                 0);
        }
        free(row);
        close(fd);
    }
}

static unsigned char *out_buffer(const struct opset *s)
{
    unsigned char *b = malloc(s->out_size + 1);
    assert_non_null(b);
    memset(b, SENTINEL, s->out_size + 1);
    return b;
}

static int exec_set(const struct opset *s, const struct qtl_exec_cfg *cfg, const struct qtl_backend *be,
                    unsigned char *out, struct qtl_xres *res, struct qtl_exec_stats *st)
{
    struct qtl_xop *ops = malloc(MAX_OPS * sizeof *ops);
    struct qtl_xfill fills[MAX_FILLS];
    assert_non_null(ops);
    for (size_t i = 0; i < s->n; i++) {
        ops[i] = s->ops[i];
        ops[i].dst = out + s->dst_off[i];
    }
    for (size_t i = 0; i < s->nfills; i++) {
        fills[i] = s->fills[i];
        fills[i].dst = out + s->fill_off[i];
    }
    int rc = qtl__exec_run(cfg, be, fills, s->nfills, ops, s->n, res, st);
    free(ops);
    return rc;
}

/* Equal buffers, or a message naming the first differing op. */
static void expect_same(const struct opset *s, const unsigned char *got, const unsigned char *want, const char *what)
{
    if (!memcmp(got, want, s->out_size + 1))
        return;
    uint64_t at = 0;
    while (got[at] == want[at])
        at++;
    for (size_t i = 0; i < s->n; i++)
        if (at >= s->dst_off[i] && at < s->dst_off[i] + dst_extent(&s->ops[i]))
            fail_msg("%s: byte %llu differs, in op %zu (file %u off %llu rows %llu row_bytes %llu pitch %llu %s->%s)",
                     what, (unsigned long long)at, i, s->ops[i].file, (unsigned long long)s->ops[i].src_off,
                     (unsigned long long)s->ops[i].rows, (unsigned long long)s->ops[i].row_bytes,
                     (unsigned long long)s->ops[i].src_pitch, qtl_dtype_name(s->ops[i].src_dtype),
                     qtl_dtype_name(s->ops[i].dst_dtype));
    fail_msg("%s: byte %llu differs, outside every op", what, (unsigned long long)at);
}

static uint64_t kept_of(const struct opset *s)
{
    uint64_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += s->ops[i].rows * s->ops[i].row_bytes;
    return k;
}

static struct qtl_pread_backend *open_backend(const char *const *paths, const uint64_t *sizes, size_t n, int direct,
                                              struct qtl_backend *be)
{
    struct qtl_err err = {0, ""};
    struct qtl_pread_backend *pb = NULL;
    TU_EXPECT(qtl__pread_backend_open(paths, sizes, n, direct, NULL, &err, &pb, be), QTL_OK, err.msg);
    return pb;
}

/* The set on 1, 2 and 3 threads: the reference's bytes, every op OK, and the
 * same accounting each time. */
static void check_threads(const struct opset *s, const char *const *paths, const struct qtl_backend *be, size_t chunk)
{
    unsigned char *want = out_buffer(s);
    reference(s, paths, want);
    struct qtl_exec_stats first = {0};
    for (unsigned t = 1; t <= 3; t++) {
        unsigned char *got = out_buffer(s);
        struct qtl_xres res[MAX_OPS];
        struct qtl_exec_stats st;
        struct qtl_exec_cfg cfg = {t, chunk, 0, NULL, NULL, NULL};
        char what[32];
        snprintf(what, sizeof what, "threads=%u", t);
        TU_EXPECT(exec_set(s, &cfg, be, got, res, &st), QTL_OK, what);
        expect_same(s, got, want, what);
        for (size_t i = 0; i < s->n; i++)
            assert_int_equal(res[i].status, QTL_OK);
        TU_EQ_U64(st.bytes_kept, kept_of(s));
        assert_true(st.bytes_read >= st.bytes_kept);
        if (t == 1) {
            first = st;
        } else { /* the same accounting as on 1 thread */
            TU_EQ_U64(st.bytes_read, first.bytes_read);
            TU_EQ_U64(st.reads, first.reads);
            TU_EQ_U64(st.pieces, first.pieces);
        }
        free(got);
    }
    free(want);
}

static int setup_files(void **state)
{
    (void)state;
    tu_mkdir_p(QTL_TEST_TMP);
    write_random(FILE_A, SIZE_A, 0x1234567u);
    write_random(FILE_B, SIZE_B, 0x89abcdefu);
    return 0;
}

static void test_random_sets(void **state)
{
    (void)state;
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths_ab, sizes_ab, 2, 0, &be);
    struct qtl_backend staged = be; /* without readv: strided reads sieve through staging */
    staged.readv = NULL;
    for (uint32_t seed = 1; seed <= 6; seed++) {
        struct opset *s = random_set(seed * 2654435761u, sizes_ab, 2);
        check_threads(s, paths_ab, &be, CHUNK);
        check_threads(s, paths_ab, &staged, CHUNK);
        free(s);
    }
    qtl__pread_backend_close(pb);
}

/* ---- what each piece kind reads ---- */

struct expect_stats {
    uint64_t pieces, reads, bytes_read;
};

static void check_stats(struct opset *s, struct expect_stats e)
{
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths_ab, sizes_ab, 2, 0, &be);
    unsigned char *want = out_buffer(s), *got = out_buffer(s);
    reference(s, paths_ab, want);
    struct qtl_exec_stats st;
    struct qtl_exec_cfg cfg = {2, CHUNK, 0, NULL, NULL, NULL};
    TU_EXPECT(exec_set(s, &cfg, &be, got, NULL, &st), QTL_OK, "stats");
    expect_same(s, got, want, "stats");
    TU_EQ_U64(st.pieces, e.pieces);
    TU_EQ_U64(st.reads, e.reads);
    TU_EQ_U64(st.bytes_read, e.bytes_read);
    TU_EQ_U64(st.bytes_kept, kept_of(s));
    free(want);
    free(got);
    free(s);
    qtl__pread_backend_close(pb);
}

static void test_flat_cut(void **state)
{
    (void)state;
    struct opset *s = set_new(1);
    add_op(s, 0, 5, 1, 2 * CHUNK + CHUNK / 2, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){3, 3, 2 * CHUNK + CHUNK / 2});
    s = set_new(1); /* converting: cut on elements, the same bytes read */
    add_op(s, 0, 3, 1, 2 * CHUNK + 6, 0, 0, QTL_DTYPE_BF16, QTL_DTYPE_F32);
    check_stats(s, (struct expect_stats){3, 3, 2 * CHUNK + 6});
}

static void test_coalesced(void **state)
{
    (void)state;
    struct opset *s = set_new(2);
    for (int i = 0; i < 20; i++)
        add_op(s, 1, 1001 + 100 * (uint64_t)i, 1, 100, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){1, 1, 2000});
    s = set_new(2); /* gaps below the sieve gap are read through */
    for (int i = 0; i < 20; i++)
        add_op(s, 1, 1001 + 150 * (uint64_t)i, 1, 100, 0, 0, QTL_DTYPE_F16, QTL_DTYPE_BF16);
    check_stats(s, (struct expect_stats){1, 1, 19 * 150 + 100});
    s = set_new(2); /* gaps at the sieve gap are not */
    for (int i = 0; i < 5; i++)
        add_op(s, 1, 1001 + (100 + GAP) * (uint64_t)i, 1, 100, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){5, 5, 500});
    s = set_new(2); /* nor ops in another file, nor beyond a chunk */
    add_op(s, 0, 1001, 1, 100, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 1, 1101, 1, 100, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    for (int i = 0; i < 3; i++) /* the first two fill a chunk exactly */
        add_op(s, 1, 200000 + CHUNK / 2 * (uint64_t)i, 1, CHUNK / 2, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){4, 4, 200 + 3 * CHUNK / 2});
}

static void test_sieve_and_rows(void **state)
{
    (void)state;
    struct opset *s = set_new(3); /* sieve: the gaps show in bytes_read */
    add_op(s, 0, 7, 100, 100, 300, 5, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){1, 1, 99 * 300 + 100});
    s = set_new(3); /* blocks of at most a chunk of file */
    add_op(s, 0, 7, 1000, 100, 300, 0, QTL_DTYPE_I8, QTL_DTYPE_I32);
    uint64_t per = 1 + (CHUNK - 100) / 300, blocks = (1000 + per - 1) / per;
    check_stats(s, (struct expect_stats){blocks, blocks, (1000 - blocks) * 300 + blocks * 100});
    s = set_new(3); /* per row: nothing over-read */
    add_op(s, 0, 7, 10, 100, 100 + GAP, 3, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){1, 10, 1000});
    s = set_new(3); /* per row: a chunk of kept bytes per piece (65 rows of 1000) */
    add_op(s, 0, 7, 66, 1000, 1000 + GAP, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){2, 66, 66000});
    s = set_new(3); /* rows above a chunk are cut */
    add_op(s, 0, 7, 2, CHUNK + 12, CHUNK + 20, 1, QTL_DTYPE_F32, QTL_DTYPE_BF16);
    check_stats(s, (struct expect_stats){4, 4, 2 * (CHUNK + 12)});
    s = set_new(3); /* contiguous source, strided destination */
    add_op(s, 1, 9, 50, 64, 64, 16, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_stats(s, (struct expect_stats){1, 1, 50 * 64});
}

/* ---- errors ---- */

static void test_open_size_mismatch(void **state)
{
    (void)state;
    struct qtl_err err = {0, ""};
    struct qtl_pread_backend *pb = NULL;
    struct qtl_backend be;
    uint64_t more = SIZE_A + 1, less = SIZE_A - 1;
    const char *missing = QTL_TEST_TMP "/missing.bin";
    TU_EXPECT(qtl__pread_backend_open(paths_ab, &more, 1, 0, NULL, &err, &pb, &be), QTL_ERR_TRUNCATED, err.msg);
    assert_null(pb);
    assert_non_null(strstr(err.msg, FILE_A));
    assert_non_null(strstr(err.msg, "3146505"));
    assert_non_null(strstr(err.msg, "3146506"));
    TU_EXPECT(qtl__pread_backend_open(paths_ab, &less, 1, 1, NULL, &err, &pb, &be), QTL_ERR_IO, err.msg);
    assert_non_null(strstr(err.msg, "3146504"));
    TU_EXPECT(qtl__pread_backend_open(&missing, &less, 1, 0, NULL, &err, &pb, &be), QTL_ERR_OPEN, err.msg);
    assert_null(pb);
}

/* The file shrinks after the plan: ops past the new end fail, at the offset
 * of the read that found it, on any thread count; the others are done. */
static void truncated_after_open(int direct)
{
    const char *path = QTL_TEST_TMP "/shrinks.bin";
    const uint64_t size = SIZE_B, t = 600005;
    write_random(path, size, 77);
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(&path, &size, 1, direct, &be);
    assert_int_equal(truncate(path, (off_t)t), 0);
    struct opset *s = set_new(4);
    add_op(s, 0, 3, 1, 100, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 0, t - 70000, 1, 200000, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 0, t + 1000, 1, 10, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 0, t - 100, 10, 10, 20, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 0, 200000, 3, 4, 64, 0, QTL_DTYPE_BF16, QTL_DTYPE_F32);
    static const struct qtl_xres want[] = {
        {QTL_OK, 0, 0}, {QTL_ERR_TRUNCATED, 0, t - 70000 + CHUNK}, {QTL_ERR_TRUNCATED, 0, t + 1000},
        {QTL_ERR_TRUNCATED, 0, t - 100}, {QTL_OK, 0, 0},
    };
    unsigned char *ref = out_buffer(s);
    reference(s, &path, ref);
    for (unsigned th = 1; th <= 3; th += 2) {
        unsigned char *got = out_buffer(s);
        struct qtl_xres res[5];
        struct qtl_exec_cfg cfg = {th, CHUNK, 0, NULL, NULL, NULL};
        TU_EXPECT(exec_set(s, &cfg, &be, got, res, NULL), QTL_ERR_TRUNCATED, "first failed op");
        for (int i = 0; i < 5; i++) {
            assert_int_equal(res[i].status, want[i].status);
            TU_EQ_U64(res[i].at, want[i].at);
        }
        assert_memory_equal(got + s->dst_off[0], ref + s->dst_off[0], 100);
        assert_memory_equal(got + s->dst_off[4], ref + s->dst_off[4], dst_extent(&s->ops[4]));
        free(got);
    }
    free(ref);
    free(s);
    qtl__pread_backend_close(pb);
}

static void test_truncated_after_open(void **state)
{
    (void)state;
    truncated_after_open(0);
    truncated_after_open(1); /* O_DIRECT: the aligned window reads short */
}

static void test_unsupported_and_invalid(void **state)
{
    (void)state;
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths_ab, sizes_ab, 2, 0, &be);
    struct opset *s = set_new(5);
    add_op(s, 0, 10, 1, 64, 0, 0, QTL_DTYPE_F32, QTL_DTYPE_BF16);
    add_op(s, 0, 74, 1, 64, 0, 0, QTL_DTYPE_F32, QTL_DTYPE_I32); /* float to int: not a copy_ qtl does */
    add_op(s, 0, 138, 4, 64, 64, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 0, 202, 1, 6, 0, 0, QTL_DTYPE_F32, QTL_DTYPE_F16);      /* not whole elements */
    add_op(s, 0, 300, 2, 64, 32, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);      /* rows overlap */
    add_op(s, 0, UINT64_MAX - 5, 1, 64, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8); /* offset overflows */
    unsigned char *want = out_buffer(s), *got = out_buffer(s);
    reference(s, paths_ab, want);
    memset(want + s->dst_off[1], SENTINEL, 64);                      /* the reference would have copied these */
    memset(want + s->dst_off[3], SENTINEL, dst_extent(&s->ops[3]));
    memset(want + s->dst_off[4], SENTINEL, dst_extent(&s->ops[4]));
    memset(want + s->dst_off[5], SENTINEL, dst_extent(&s->ops[5]));
    struct qtl_xres res[6];
    struct qtl_exec_cfg cfg = {2, CHUNK, 0, NULL, NULL, NULL};
    TU_EXPECT(exec_set(s, &cfg, &be, got, res, NULL), QTL_ERR_UNSUPPORTED, "first failed op");
    static const int status[] = {QTL_OK, QTL_ERR_UNSUPPORTED, QTL_OK, QTL_ERR_INVALID_ARGUMENT,
                                 QTL_ERR_INVALID_ARGUMENT, QTL_ERR_INVALID_ARGUMENT};
    for (int i = 0; i < 6; i++)
        assert_int_equal(res[i].status, status[i]);
    TU_EQ_U64(res[1].at, 74);
    expect_same(s, got, want, "unsupported");
    struct qtl_xfill bad = {got, 3, 2, {1, 2}};
    assert_int_equal(qtl__exec_run(&cfg, &be, &bad, 1, NULL, 0, NULL, NULL), QTL_ERR_INVALID_ARGUMENT);
    free(want);
    free(got);
    free(s);
    qtl__pread_backend_close(pb);
}

/* A backend over memory whose reads touching `bad_off` fail with EIO; it also
 * checks that reads name a worker begin() was told about. */
struct mem_backend {
    const unsigned char *data;
    uint64_t bad_off;
    unsigned nworkers;
    atomic_int bad_worker;        /* set from worker threads */
    const unsigned char *lo, *hi; /* the destinations: a read landing elsewhere sets `elsewhere` */
    atomic_int elsewhere;
};

static int mem_begin(void *ud, unsigned nworkers)
{
    ((struct mem_backend *)ud)->nworkers = nworkers;
    return QTL_OK;
}

static int mem_read(void *ud, unsigned w, uint32_t file, void *dst, size_t len, uint64_t off, int *sys_errno)
{
    struct mem_backend *m = ud;
    (void)file;
    if (w >= m->nworkers)
        atomic_store(&m->bad_worker, 1); /* no cmocka assert off the main thread */
    if (off <= m->bad_off && m->bad_off < off + len) {
        *sys_errno = EIO;
        return QTL_ERR_IO;
    }
    if ((const unsigned char *)dst < m->lo || (const unsigned char *)dst + len > m->hi)
        atomic_store(&m->elsewhere, 1);
    memcpy(dst, m->data + off, len);
    return QTL_OK;
}

static void test_io_error(void **state)
{
    (void)state;
    unsigned char data[4096];
    for (int i = 0; i < 4096; i++)
        data[i] = (unsigned char)(i * 7);
    struct mem_backend m = {data, 1500, 0, 0, NULL, NULL, 0};
    struct qtl_backend be = {.begin = mem_begin, .read = mem_read, .ud = &m};
    unsigned char out[4096];
    struct qtl_xop ops[3] = {
        {0, 0, 1, 1000, 0, out, 0, QTL_DTYPE_U8, QTL_DTYPE_U8},
        {0, 1000, 10, 100, 200, out + 1000, 100, QTL_DTYPE_U8, QTL_DTYPE_U8},
        {0, 3000, 1, 1000, 0, out + 3000, 0, QTL_DTYPE_U8, QTL_DTYPE_U8},
    };
    struct qtl_xres res[3];
    struct qtl_exec_stats st;
    struct qtl_exec_cfg cfg = {3, CHUNK, 0, NULL, NULL, NULL};
    memset(out, 0, sizeof out);
    assert_int_equal(qtl__exec_run(&cfg, &be, NULL, 0, ops, 3, res, &st), QTL_ERR_IO);
    assert_int_equal(res[0].status, QTL_OK);
    assert_int_equal(res[1].status, QTL_ERR_IO);
    assert_int_equal(res[1].sys_errno, EIO);
    TU_EQ_U64(res[1].at, 1000); /* the sieved block */
    assert_int_equal(res[2].status, QTL_OK);
    assert_memory_equal(out, data, 1000);
    assert_memory_equal(out + 3000, data + 3000, 1000);
    TU_EQ_U64(st.bytes_read, 2000);
    assert_int_equal(atomic_load(&m.bad_worker), 0);
    assert_in_range(m.nworkers, 1, 3);
}

/* An allocator that remembers its largest request. */
static void *max_alloc(void *opaque, size_t size)
{
    size_t *max = opaque;
    *max = size > *max ? size : *max;
    return malloc(size);
}

static void max_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

/* Same-dtype flat and per-row ops are read straight into their destination,
 * with no staging buffer at all; converting goes through one. */
static void test_straight_reads(void **state)
{
    (void)state;
    const size_t n = (size_t)1 << 20;
    unsigned char *data = malloc(n), *out = malloc(n);
    assert_non_null(data);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 13 + (i >> 9));
    struct mem_backend m = {data, UINT64_MAX, 0, 0, out, out + n, 0};
    struct qtl_backend be = {.begin = mem_begin, .read = mem_read, .ud = &m};
    size_t max = 0;
    struct qtl_allocator hooks = {max_alloc, max_free, &max};
    struct qtl_alloc al;
    qtl__alloc_init(&al, &hooks);
    struct qtl_xop ops[3] = {
        {0, 1, 1, 300001, 0, out, 0, QTL_DTYPE_U8, QTL_DTYPE_U8},
        {0, 400000, 20, 500, 500 + GAP, out + 400000, 501, QTL_DTYPE_U8, QTL_DTYPE_U8},
        {0, 800000, 1, 100000, 0, out + 800000, 0, QTL_DTYPE_BF16, QTL_DTYPE_F32},
    };
    struct qtl_exec_cfg cfg = {2, CHUNK, 0, &al, NULL, NULL};
    assert_int_equal(qtl__exec_run(&cfg, &be, NULL, 0, ops, 2, NULL, NULL), QTL_OK);
    assert_int_equal(atomic_load(&m.elsewhere), 0);
    assert_true(max < CHUNK);
    assert_memory_equal(out, data + 1, 300001);
    for (int r = 0; r < 20; r++)
        assert_memory_equal(out + 400000 + 501 * r, data + 400000 + (500 + GAP) * (uint64_t)r, 500);
    assert_int_equal(qtl__exec_run(&cfg, &be, NULL, 0, ops + 2, 1, NULL, NULL), QTL_OK);
    assert_int_equal(atomic_load(&m.elsewhere), 1);
    assert_true(max >= CHUNK);
    free(data);
    free(out);
}

/* ---- O_DIRECT ---- */

/* 1 when the filesystem under `path` refuses O_DIRECT opens. */
static int refuses_direct(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd >= 0)
        close(fd);
    return fd < 0 && errno == EINVAL;
}

/* 1 when an aligned O_DIRECT read of `path` works: then the backend has no
 * reason to fall back. */
static int direct_reads_work(const char *path)
{
    void *buf = NULL;
    int fd = open(path, O_RDONLY | O_DIRECT);
    int ok = fd >= 0 && posix_memalign(&buf, 4096, 4096) == 0 && pread(fd, buf, 4096, 0) >= 0;
    free(buf);
    if (fd >= 0)
        close(fd);
    return ok;
}

/* The fallback count the filesystem under `path` calls for, one file. */
static void expect_fallbacks(const struct qtl_pread_backend *pb, const char *path)
{
    size_t n = qtl__pread_backend_fallbacks(pb);
    if (direct_reads_work(path))
        assert_int_equal(n, 0);
    else
        assert_true(n >= 1);
    print_message("O_DIRECT %s under %s: %zu fallback(s)\n", refuses_direct(path) ? "refused" : "taken", path, n);
}

/* tmpfs refused O_DIRECT before Linux 6.6 (then the backend must fall back);
 * later kernels take it, and the bytes must still match. */
static void test_direct_tmpfs(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/qtl_test_exec_%ld.bin", (long)getpid());
    const uint64_t size = ((uint64_t)1 << 20) + 4097;
    write_random(path, size, 99);
    const char *const paths[1] = {path};
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths, &size, 1, 1, &be);
    struct opset *s = random_set(31, &size, 1);
    check_threads(s, paths, &be, CHUNK);
    expect_fallbacks(pb, path);
    free(s);
    qtl__pread_backend_close(pb);
    unlink(path);
}

/* procfs always refuses O_DIRECT: a fallback at open, then buffered reads. */
static void test_direct_fallback_at_open(void **state)
{
    (void)state;
    const char *const paths[1] = {"/proc/version"};
    const uint64_t size = 0; /* procfs reports 0 whatever the contents */
    unsigned char want[8], got[8];
    int fd = open(paths[0], O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, want, sizeof want) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof want || !refuses_direct(paths[0]))
        skip();
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths, &size, 1, 1, &be);
    assert_int_equal(qtl__pread_backend_fallbacks(pb), 1);
    struct qtl_xop op = {0, 0, 1, sizeof got, 0, got, 0, QTL_DTYPE_U8, QTL_DTYPE_U8};
    struct qtl_exec_cfg cfg = {2, CHUNK, 0, NULL, NULL, NULL};
    assert_int_equal(qtl__exec_run(&cfg, &be, NULL, 0, &op, 1, NULL, NULL), QTL_OK);
    assert_memory_equal(got, want, sizeof want);
    qtl__pread_backend_close(pb);
}

/* The real disk: aligned windows, ragged heads and tails, the short read at
 * the end of a file whose size is not a multiple of 4 KiB, and one read
 * larger than a bounce buffer. */
static void test_direct_disk(void **state)
{
    (void)state;
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths_ab, sizes_ab, 2, 1, &be);
    struct opset *s = random_set(41, sizes_ab, 2);
    add_op(s, 0, SIZE_A - 5, 1, 5, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 1, 4090, 1, 13, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    add_op(s, 1, SIZE_B - 3 * 4096 - 2, 3, 2, 4096, 0, QTL_DTYPE_BF16, QTL_DTYPE_F32);
    check_threads(s, paths_ab, &be, CHUNK);
    expect_fallbacks(pb, FILE_A); /* both files share the directory */
    free(s);
    qtl__pread_backend_close(pb);

    const char *path = QTL_TEST_TMP "/big.bin";
    const uint64_t size = QTL_EXEC_CHUNK_DEFAULT + ((uint64_t)1 << 20) + 3;
    write_random(path, size, 5);
    pb = open_backend(&path, &size, 1, 1, &be);
    s = set_new(6);
    add_op(s, 0, 1, 1, size - 1, 0, 0, QTL_DTYPE_U8, QTL_DTYPE_U8);
    check_threads(s, &path, &be, 2 * QTL_EXEC_CHUNK_DEFAULT);
    free(s);
    qtl__pread_backend_close(pb);
}

/* ---- progress ---- */

struct progress_log {
    int calls, off_main, backwards;
    uint64_t last, total;
};

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
    struct progress_log *p = ud;
#ifdef _OPENMP
    p->off_main |= omp_get_thread_num() != 0;
#endif
    p->backwards |= done < p->last || done > total;
    p->calls++;
    p->last = done;
    p->total = total;
}

static void test_progress(void **state)
{
    (void)state;
    struct qtl_backend be;
    struct qtl_pread_backend *pb = open_backend(paths_ab, sizes_ab, 2, 0, &be);
    struct opset *s = random_set(51, sizes_ab, 2);
    unsigned char *got = out_buffer(s);
    for (unsigned t = 1; t <= 2; t++) {
        struct progress_log log = {0, 0, 0, 0, 0};
        struct qtl_exec_stats st;
        struct qtl_exec_cfg cfg = {t, CHUNK, 0, NULL, on_progress, &log};
        assert_int_equal(exec_set(s, &cfg, &be, got, NULL, &st), QTL_OK);
        if (t == 1) /* after every piece, then once at the end */
            TU_EQ_U64(log.calls, st.pieces + 1);
        assert_int_equal(log.off_main, 0);
        assert_int_equal(log.backwards, 0);
        TU_EQ_U64(log.last, log.total);
        TU_EQ_U64(log.total, st.bytes_read);
    }
    free(got);
    free(s);
    qtl__pread_backend_close(pb);
}

/* ---- the arena ---- */

static void test_arena(void **state)
{
    (void)state;
    for (int huge = 0; huge <= 1; huge++) {
        struct qtl_arena a;
        const size_t size = ((size_t)5 << 20) + 1;
        assert_int_equal(qtl__arena_alloc(&a, size, huge), QTL_OK);
        assert_int_equal((uintptr_t)a.base % ((uintptr_t)2 << 20), 0);
        assert_true(a.base >= (unsigned char *)a.map);
        assert_true(a.base + size <= (unsigned char *)a.map + a.map_size);
        for (size_t i = 0; i < size; i += 4096)
            assert_int_equal(a.base[i], 0);
        assert_int_equal(a.base[size - 1], 0);
        memset(a.base, 1, size);
        qtl__arena_free(&a);
        assert_null(a.map);
    }
    struct qtl_arena z;
    assert_int_equal(qtl__arena_alloc(&z, 0, 1), QTL_OK); /* size 0: still a real pointer */
    assert_non_null(z.base);
    assert_int_equal(z.size, 0);
    qtl__arena_free(&z);
    assert_null(z.base);
}

/* ---- every allocation failing in turn ---- */

/* Open (O_DIRECT: bounce buffers too), run on 2 threads, close. A failed run
 * has read nothing and written nothing. */
static int oom_session(const struct opset *s, const unsigned char *want)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, &tu_allocator);
    struct qtl_err err = {0, ""};
    struct qtl_pread_backend *pb = NULL;
    struct qtl_backend be;
    int rc = qtl__pread_backend_open(paths_ab, sizes_ab, 2, 1, &al, &err, &pb, &be);
    if (rc)
        return rc;
    unsigned char *got = out_buffer(s);
    struct qtl_xres res[MAX_OPS];
    struct qtl_exec_stats st;
    struct qtl_exec_cfg cfg = {2, CHUNK, 0, &al, NULL, NULL};
    rc = exec_set(s, &cfg, &be, got, res, &st);
    if (rc == QTL_OK)
        expect_same(s, got, want, "oom session");
    else {
        TU_EQ_U64(st.reads, 0);
        for (uint64_t i = 0; i <= s->out_size; i++)
            assert_int_equal(got[i], SENTINEL);
        for (size_t i = 0; i < s->n; i++)
            assert_int_equal(res[i].status, rc);
    }
    free(got);
    qtl__pread_backend_close(pb);
    return rc;
}

static void test_oom(void **state)
{
    (void)state;
    struct opset *s = random_set(61, sizes_ab, 2);
    unsigned char *want = out_buffer(s);
    reference(s, paths_ab, want);
    for (long n = 0;; n++) {
        tu_counter_reset(n);
        int rc = oom_session(s, want);
        if (tu_counter.live != 0)
            fail_msg("fail_at=%ld: %ld allocation(s) leaked (rc %s)", n, tu_counter.live, qtl_errname(rc));
        if (!tu_counter.failed) {
            TU_EXPECT(rc, QTL_OK, "no allocation failed");
            break;
        }
        TU_EXPECT(rc, QTL_ERR_NOMEM, "an allocation failed");
    }
    tu_counter_reset(-1);
    free(want);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_sets),
        cmocka_unit_test(test_flat_cut),
        cmocka_unit_test(test_coalesced),
        cmocka_unit_test(test_sieve_and_rows),
        cmocka_unit_test(test_open_size_mismatch),
        cmocka_unit_test(test_truncated_after_open),
        cmocka_unit_test(test_unsupported_and_invalid),
        cmocka_unit_test(test_io_error),
        cmocka_unit_test(test_straight_reads),
        cmocka_unit_test(test_direct_tmpfs),
        cmocka_unit_test(test_direct_fallback_at_open),
        cmocka_unit_test(test_direct_disk),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, setup_files, NULL);
}
