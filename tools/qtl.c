/* qtl — command-line entry: dispatches to one function per subcommand. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

qtl_dist_t *cli_dist;

static const struct {
    const char *name;
    int (*fn)(int, char **);
    int mpi; /* runs one process per rank under mpiexec */
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, 0, "list the tensors, metadata and findings of a file or checkpoint"},
    {"verify", cmd_verify, 1, "pre-flight report: every file, config, scale and tp rule, headers and scales only"},
    {"load", cmd_load, 1, "load each tensor-parallel rank as vLLM does and report findings"},
    {"shard", cmd_shard, 1, "write one safetensors file per rank with vLLM's per-rank parameters"},
    {"dequant", cmd_dequant, 0, "dequantize one weight of a checkpoint to f32/bf16 safetensors"},
    {"fixture", cmd_fixture, 0, "write a small sample checkpoint"},
    {"bench", cmd_bench, 1, "benchmarks (qtl bench header | dequant | load)"},
};

/* The process count a launcher started (MPICH's hydra sets PMI_SIZE; PMIx and
 * OpenMPI launchers their own), 0 outside one. */
static long launched(void)
{
    static const char *const vars[] = {"PMI_SIZE", "PMIX_SIZE", "OMPI_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *s = getenv(vars[i]);
        if (s && *s)
            return strtol(s, NULL, 10);
    }
    return 0;
}

static int run(size_t c, int argc, char **argv)
{
    long n = launched();
    if (n > 1 && !commands[c].mpi) {
        fprintf(stderr, "qtl %s: runs in one process; started as %ld processes by mpiexec\n", commands[c].name, n);
        return CLI_USAGE;
    }
#ifdef QTL_MPI
    if (n >= 1) {
        int rc = qtl_dist_open(&argc, &argv, NULL, &cli_dist);
        if (rc) {
            fprintf(stderr, "qtl %s: MPI_Init failed (%s)\n", commands[c].name, qtl_strerror(rc));
            return CLI_USAGE;
        }
        /* every rank exits with the agreed status, so the last step is a barrier, not a race */
        rc = commands[c].fn(argc - 1, argv + 1);
        fflush(stdout);
        qtl_dist_close(cli_dist);
        cli_dist = NULL;
        return rc;
    }
#else
    if (n > 1) {
        fprintf(stderr, "qtl %s: started as %ld processes, but this qtl was built without MPI (install Debian's mpich "
                        "and libmpich-dev and rebuild: one process per rank needs -DQTL_MPI)\n",
                commands[c].name, n);
        return CLI_USAGE;
    }
#endif
    return commands[c].fn(argc - 1, argv + 1);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: qtl <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'qtl <command> --help' describes a command.\n"
               "exit codes: 0 done (warnings allowed), 1 findings at error level,\n"
               "            2 usage error or a path that cannot be opened as a file/checkpoint\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "qtl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_USAGE;
}

int cli_parse_u64(const char *s, unsigned long long *out)
{
    if (!s || !*s || *s == '-')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {{"", 1},          {"B", 1},          {"KB", 1000ull},        {"MB", 1000000ull},
                 {"GB", 1000000000ull}, {"TB", 1000000000000ull}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
                 {"GiB", 1ull << 30},   {"TiB", 1ull << 40}};
    if (!s || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    for (size_t i = 0; !errno && i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].suffix)) {
            if (v > UINT64_MAX / units[i].mul)
                return -1;
            *out = v * units[i].mul;
            return 0;
        }
    return -1;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cli_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qtl %s\n", qtl_version_string());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return run(i, argc, argv);
    fprintf(stderr, "qtl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
