/* Shared declarations of the qtl command-line tool. */
#ifndef QTL_CLI_H
#define QTL_CLI_H

#include "qtl.h"

#include <jansson.h>
#include <stdio.h>

/* One exit-code rule for every command (README "Exit codes"). */
enum cli_exit {
    CLI_OK = 0,       /* done; warnings allowed */
    CLI_FINDINGS = 1, /* findings at error level, incl. a bad file inside a checkpoint */
    CLI_USAGE = 2     /* usage error, or the path cannot be opened as a file/checkpoint at all */
};

int cmd_inspect(int argc, char **argv);
int cmd_fixture(int argc, char **argv);
int cmd_dequant(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_shard(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Print rank's plan (tools/cmd_plan.c): text, or one JSON object (preceded by
 * ",\n" unless first). 0, or -1 when the JSON could not be built (null printed). */
int cli_print_plan(const qtl_load_t *l, uint32_t rank, uint32_t tp, int json, int first);

/* JSON output (tools/cli_json.c). Every --json document is built with jansson from these
 * and printed by cli_json_dump; strings and keys go through cli_json_str / cli_json_set,
 * which emit valid UTF-8 as it is and replace each ill-formed subsequence by U+FFFD. */
json_t *cli_json_str(const char *s);                           /* NULL -> null */
int cli_json_set(json_t *obj, const char *key, json_t *value); /* steals value; 0 on success */
json_t *cli_json_u64(uint64_t v);                              /* an exact integer */
json_t *cli_json_seconds(double s);                            /* a real, rounded to microseconds */
/* Print doc (stolen; NULL prints null) to stdout with jansson's flags, key order kept,
 * no newline after it. 0 on success, -1 (and a message on stderr) when out of memory. */
int cli_json_dump(json_t *doc, size_t flags);

/* The MPI handle when the CLI runs under mpiexec (QTL_MPI builds), else NULL (tools/qtl.c). */
extern qtl_dist_t *cli_dist;

/* Print "qtl <cmd>: message" to stderr and return CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Parse a byte size: digits with an optional KB/MB/GB/TB (10^3..) or KiB/MiB/GiB/TiB (2^10..)
 * suffix; 0 on success. */
int cli_parse_size(const char *s, uint64_t *out);
/* Parse an unsigned decimal option value; returns 0 on success. */
int cli_parse_u64(const char *s, unsigned long long *out);
/* Monotonic clock in seconds. */
double cli_now(void);
/* 1 when s ends with suffix. */
int cli_ends_with(const char *s, const char *suffix);

#endif
