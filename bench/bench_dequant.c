/* qtl bench dequant: GB/s of output for every scheme, f32 and bf16, 1 and 2
 * threads, next to memset and memcpy of the same output size measured in the
 * same run (warm huge-page buffers, median of R reps). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void *huge_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, n, MADV_HUGEPAGE);
    memset(p, 1, n); /* touch: no page faults inside the timings */
    return p;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return t[n / 2];
}

static uint32_t rs = 1;
static uint8_t rb(void)
{
    rs = rs * 1103515245u + 12345u;
    return (uint8_t)(rs >> 16);
}

struct cfg {
    const char *name;
    struct qtl_dequant_desc d;
    int zp, gidx;
};

int bench_dequant(int argc, char **argv);
int bench_dequant(int argc, char **argv)
{
    unsigned long long rows = 8192, cols = 8192, reps = 7;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            cli_parse_u64(argv[++i], &rows);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
            cli_parse_u64(argv[++i], &cols);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            cli_parse_u64(argv[++i], &reps);
    }
    if (!rows || !cols || cols % 128 || rows % 128 || reps < 1 || reps > 100)
        return cli_usage_error("bench", "--rows/--cols multiples of 128, --reps 1..100");
    size_t n = (size_t)(rows * cols), out_bytes = n * 4;
    unsigned char *w = huge_alloc(2 * n), *s = huge_alloc(n / 4 + 64), *z = huge_alloc(n / 8 + 64);
    unsigned char *out = huge_alloc(out_bytes), *src = huge_alloc(out_bytes);
    int32_t *gidx = malloc(cols * sizeof *gidx);
    if (!w || !s || !z || !out || !src || !gidx) {
        fprintf(stderr, "qtl bench: out of memory\n");
        return CLI_FINDINGS;
    }
    for (size_t i = 0; i < 2 * n; i++) /* 2 bytes per element for the bf16 passthrough */
        w[i] = rb();
    for (size_t i = 0; i < n / 4 + 64; i++)
        s[i] = (uint8_t)(0x30 + rb() % 16); /* finite E4M3 / small E8M0 / bf16 high bytes */
    for (size_t i = 0; i < n / 8 + 64; i++)
        z[i] = rb();
    for (unsigned long long c = 0; c < cols; c++)
        gidx[c] = (int32_t)((c * 7) % (cols / 128));
    uint64_t R = rows, C = cols;
    struct cfg cfgs[] = {
        {"bf16 -> f32 (passthrough)", {.scheme = QTL_SCHEME_NONE, .weight_dtype = QTL_DTYPE_BF16}, 0, 0},
        {"fp8 per-tensor", {.scheme = QTL_SCHEME_FP8, .weight_dtype = QTL_DTYPE_F8_E4M3, .granularity = QTL_SCALE_TENSOR, .scale_dtype = QTL_DTYPE_BF16}, 0, 0},
        {"fp8 per-channel", {.scheme = QTL_SCHEME_FP8, .weight_dtype = QTL_DTYPE_F8_E4M3, .granularity = QTL_SCALE_CHANNEL, .scale_dtype = QTL_DTYPE_BF16}, 0, 0},
        {"fp8 block 128x128", {.scheme = QTL_SCHEME_FP8, .weight_dtype = QTL_DTYPE_F8_E4M3, .granularity = QTL_SCALE_BLOCK, .block_rows = 128, .block_cols = 128, .scale_dtype = QTL_DTYPE_BF16}, 0, 0},
        {"int8 per-channel", {.scheme = QTL_SCHEME_INT8, .weight_dtype = QTL_DTYPE_I8, .granularity = QTL_SCALE_CHANNEL, .scale_dtype = QTL_DTYPE_BF16}, 0, 0},
        {"int8 per-channel asym", {.scheme = QTL_SCHEME_INT8, .weight_dtype = QTL_DTYPE_I8, .granularity = QTL_SCALE_CHANNEL, .scale_dtype = QTL_DTYPE_BF16, .zero_point_dtype = QTL_DTYPE_I8}, 1, 0},
        {"nvfp4 (compressed-tensors)", {.scheme = QTL_SCHEME_NVFP4_CT, .weight_dtype = QTL_DTYPE_U8, .scale_dtype = QTL_DTYPE_F8_E4M3, .global_scale = 896.0f}, 0, 0},
        {"nvfp4 (ModelOpt)", {.scheme = QTL_SCHEME_NVFP4_MODELOPT, .weight_dtype = QTL_DTYPE_U8, .scale_dtype = QTL_DTYPE_F8_E4M3, .global_scale = 0.0011f}, 0, 0},
        {"mxfp4", {.scheme = QTL_SCHEME_MXFP4, .weight_dtype = QTL_DTYPE_U8, .scale_dtype = QTL_DTYPE_U8}, 0, 0},
        {"int4 packed g128", {.scheme = QTL_SCHEME_PACKED_INT, .weight_dtype = QTL_DTYPE_I32, .granularity = QTL_SCALE_GROUP, .group_size = 128, .scale_dtype = QTL_DTYPE_BF16, .bits = 4}, 0, 0},
        {"int4 packed g128 asym", {.scheme = QTL_SCHEME_PACKED_INT, .weight_dtype = QTL_DTYPE_I32, .granularity = QTL_SCALE_GROUP, .group_size = 128, .scale_dtype = QTL_DTYPE_BF16, .zero_point_dtype = QTL_DTYPE_I32, .bits = 4}, 1, 0},
        {"int4 packed g128 g_idx", {.scheme = QTL_SCHEME_PACKED_INT, .weight_dtype = QTL_DTYPE_I32, .granularity = QTL_SCALE_GROUP, .group_size = 128, .scale_dtype = QTL_DTYPE_BF16, .bits = 4}, 0, 1},
        {"int8 packed per-channel", {.scheme = QTL_SCHEME_PACKED_INT, .weight_dtype = QTL_DTYPE_I32, .granularity = QTL_SCALE_CHANNEL, .scale_dtype = QTL_DTYPE_BF16, .bits = 8}, 0, 0},
    };
    double *t = calloc(reps, sizeof *t);
    /* memset / memcpy baselines, f32 and bf16 output sizes */
    double base[2][2];
    for (int o = 0; o < 2; o++) {
        size_t bytes = o ? n * 2 : n * 4;
        for (unsigned long long r = 0; r < reps; r++) {
            double t0 = cli_now();
            memset(out, (int)r, bytes);
            t[r] = cli_now() - t0;
        }
        base[o][0] = (double)bytes / median(t, (int)reps) / 1e9;
        for (unsigned long long r = 0; r < reps; r++) {
            double t0 = cli_now();
            memcpy(out, src, bytes);
            t[r] = cli_now() - t0;
        }
        base[o][1] = (double)bytes / median(t, (int)reps) / 1e9;
    }
    printf("dequant: %llu x %llu = %.0f Mi elements, fast path %s, median of %llu, GB/s of output\n", rows, cols,
           (double)n / (1 << 20), qtl_dequant_fast_name(), reps);
    printf("baselines: f32 size memset %.1f memcpy %.1f | bf16 size memset %.1f memcpy %.1f GB/s\n\n", base[0][0],
           base[0][1], base[1][0], base[1][1]);
    printf("%-28s | %-26s | %-26s\n", "", "f32 out: 1 thr    2 thr", "bf16 out: 1 thr    2 thr");
    printf("%-28s | %-26s | %-26s\n", "scheme", "GB/s (x memset)", "GB/s (x memset)");
    int status = CLI_OK;
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0] && status == CLI_OK; k++) {
        struct qtl_dequant_desc d = cfgs[k].d;
        d.rows = R, d.cols = C, d.weight = w, d.scale = s, d.zero_point = cfgs[k].zp ? z : NULL;
        d.g_idx = cfgs[k].gidx ? gidx : NULL;
        printf("%-28s |", cfgs[k].name);
        for (int o = 0; o < 2; o++) {
            enum qtl_dtype od = o ? QTL_DTYPE_BF16 : QTL_DTYPE_F32;
            size_t bytes = o ? n * 2 : n * 4;
            for (int th = 1; th <= 2; th++) {
                char msg[256];
                for (unsigned long long r = 0; r < reps && status == CLI_OK; r++) {
                    double t0 = cli_now();
                    if (qtl_dequant(&d, 0, R, od, out, bytes, th, 1, msg, sizeof msg)) {
                        fprintf(stderr, "qtl bench: %s: %s\n", cfgs[k].name, msg);
                        status = CLI_FINDINGS;
                    }
                    t[r] = cli_now() - t0;
                }
                double gbs = (double)bytes / median(t, (int)reps) / 1e9;
                printf(" %6.1f (%4.2fx)", gbs, gbs / base[o][0]);
            }
            printf(" |");
        }
        printf("\n");
        fflush(stdout);
    }
    free(t);
    free(gidx);
    munmap(w, 2 * n);
    munmap(s, n / 4 + 64);
    munmap(z, n / 8 + 64);
    munmap(out, out_bytes);
    munmap(src, out_bytes);
    return status;
}
