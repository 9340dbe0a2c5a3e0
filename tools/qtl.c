/* qtl — command-line entry: dispatches to one function per subcommand. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, "list the tensors, metadata and findings of a file or checkpoint"},
    {"verify", cmd_verify, "pre-flight report: every file, config, scale and tp rule, headers and scales only"},
    {"load", cmd_load, "load each tensor-parallel rank as vLLM does and report findings"},
    {"shard", cmd_shard, "write one safetensors file per rank with vLLM's per-rank parameters"},
    {"dequant", cmd_dequant, "dequantize one weight of a checkpoint to f32/bf16 safetensors"},
    {"fixture", cmd_fixture, "write a small sample checkpoint"},
    {"bench", cmd_bench, "benchmarks (qtl bench header | dequant)"},
};

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
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "qtl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
