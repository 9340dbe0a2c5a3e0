/* qtl bench header: parse time of a generated 100 000-tensor safetensors header.
 * The file is virtual (a byte source serving the header; the data section is
 * never read), so tensor sizes are realistic without allocating them. */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct vfile {
    unsigned char *head; /* 8 + N bytes */
    size_t head_len;
};

static int vread(void *ud, void *dst, size_t len, uint64_t off)
{
    struct vfile *v = ud;
    size_t have = off < v->head_len ? v->head_len - (size_t)off : 0;
    size_t n = len < have ? len : have;
    memcpy(dst, v->head + off, n);
    memset((unsigned char *)dst + n, 0, len - n);
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A DeepSeek-like layout: experts' gate/up/down with FP8 weights and F32 block scales. */
static char *make_header(size_t ntensors, uint64_t *data_len, size_t *len)
{
    size_t cap = ntensors * 160 + 64, o = 0;
    char *h = malloc(cap);
    if (!h)
        return NULL;
    o += (size_t)snprintf(h + o, cap - o, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    static const char *proj[] = {"gate_proj", "up_proj", "down_proj"};
    for (size_t i = 0; i < ntensors; i++) {
        size_t layer = i / 1536, expert = (i / 6) % 256, p = (i / 2) % 3, is_scale = i % 2;
        uint64_t r = p == 2 ? 7168 : 2048, c = p == 2 ? 2048 : 7168;
        uint64_t bytes = is_scale ? ((r + 127) / 128) * ((c + 127) / 128) * 4 : r * c;
        if (is_scale)
            r = (r + 127) / 128, c = (c + 127) / 128;
        o += (size_t)snprintf(h + o, cap - o,
                              ",\"model.layers.%zu.mlp.experts.%zu.%s.%s\":{\"dtype\":\"%s\",\"shape\":[%llu,%llu],"
                              "\"data_offsets\":[%llu,%llu]}",
                              layer, expert, proj[p], is_scale ? "weight_scale_inv" : "weight",
                              is_scale ? "F32" : "F8_E4M3", (unsigned long long)r, (unsigned long long)c,
                              (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    o += (size_t)snprintf(h + o, cap - o, "}");
    while (o % 8)
        h[o++] = ' ';
    *data_len = off;
    *len = o;
    return h;
}

static int bench_header(int argc, char **argv)
{
    unsigned long long ntensors = 100000, reps = 7;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--tensors") && i + 1 < argc)
            cli_parse_u64(argv[++i], &ntensors);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            cli_parse_u64(argv[++i], &reps);
    }
    if (reps < 1 || reps > 1000 || ntensors < 1 || ntensors > 10000000)
        return cli_usage_error("bench", "--tensors 1..1e7, --reps 1..1000");
    uint64_t data_len = 0;
    size_t hlen = 0;
    char *json = make_header((size_t)ntensors, &data_len, &hlen);
    struct vfile v = {malloc(hlen + 8), hlen + 8};
    unsigned char *copy = malloc(hlen + 8);
    double *t_qtl = calloc(reps, sizeof(double)), *t_jan = calloc(reps, sizeof(double)),
           *t_cpy = calloc(reps, sizeof(double));
    if (!json || !v.head || !copy || !t_qtl || !t_jan || !t_cpy) {
        fprintf(stderr, "qtl bench: out of memory\n");
        return CLI_FINDINGS;
    }
    for (int i = 0; i < 8; i++)
        v.head[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(v.head + 8, json, hlen);
    struct qtl_source src = {vread, &v, 8 + hlen + data_len};
    int status = CLI_OK;
    /* Separate loops: jansson's million small frees would otherwise leave the
     * heap fragmented for the next qtl run (malloc_consolidate). */
    for (unsigned long long r = 0; r < reps && status == CLI_OK; r++) {
        qtl_st_t *st = NULL;
        double t0 = cli_now();
        int rc = qtl_st_open_source(&src, "bench.safetensors", NULL, &st);
        t_qtl[r] = cli_now() - t0;
        if (rc || qtl_st_tensor_count(st) != ntensors) {
            fprintf(stderr, "qtl bench: %s\n", qtl_st_errmsg(st));
            status = CLI_FINDINGS;
        }
        qtl_st_close(st);
    }
    for (unsigned long long r = 0; r < reps; r++) {
        double t0 = cli_now();
        memcpy(copy, v.head, hlen + 8);
        t_cpy[r] = cli_now() - t0;
    }
    for (unsigned long long r = 0; r < reps; r++) {
        json_error_t err;
        double t0 = cli_now();
        json_t *j = json_loadb(json, hlen, JSON_REJECT_DUPLICATES, &err);
        t_jan[r] = cli_now() - t0;
        json_decref(j);
    }
    qsort(t_qtl, reps, sizeof(double), cmp_d);
    qsort(t_jan, reps, sizeof(double), cmp_d);
    qsort(t_cpy, reps, sizeof(double), cmp_d);
    double mq = t_qtl[reps / 2], mj = t_jan[reps / 2], mc = t_cpy[reps / 2];
    printf("header parse: %llu tensors, %.1f MB header, %.0f GB of described data, median of %llu\n", ntensors,
           (double)hlen / 1e6, (double)data_len / 1e9, reps);
    printf("  %-34s %9s %9s %10s\n", "", "ms", "GB/s", "x memcpy");
    printf("  %-34s %9.2f %9.3f %10.4f\n", "qtl open+validate (strict parser)", mq * 1e3, (double)hlen / mq / 1e9,
           mc / mq);
    printf("  %-34s %9.2f %9.3f %10.4f\n", "jansson json_loadb (parse only)", mj * 1e3, (double)hlen / mj / 1e9,
           mc / mj);
    printf("  %-34s %9.2f %9.3f %10.4f\n", "memcpy of the header", mc * 1e3, (double)hlen / mc / 1e9, 1.0);
    printf("  target: < 50 ms for 100 000 tensors: %s\n", mq < 0.050 ? "met" : "NOT met");
    free(json);
    free(v.head);
    free(copy);
    free(t_qtl);
    free(t_jan);
    free(t_cpy);
    return status;
}

int bench_dequant(int argc, char **argv);
int bench_load(int argc, char **argv);

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "header"))
        return bench_header(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "dequant"))
        return bench_dequant(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "load"))
        return bench_load(argc - 2, argv + 2);
    printf("usage: qtl bench header [--tensors N] [--reps R]\n"
           "       qtl bench dequant [--rows R --cols C] [--reps R]   (default 8192 x 8192, 7 reps)\n"
           "       qtl bench load CKPT [--tp T] [--rank R] [--threads N] [--reps K] [--direct]\n"
           "       mpiexec -n T qtl bench load CKPT --tp T   (every rank at once against T processes' preads)\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? CLI_OK : CLI_USAGE;
}
