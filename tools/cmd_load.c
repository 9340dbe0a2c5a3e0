/* qtl load CKPT --tp T [--pp P] [--rank R] [--plan] [--json] [--threads N] [--direct] [--allow ID]...
 * qtl shard CKPT --tp T [--pp P] [--stage loaded|processed] -o OUT [--allow ID]...
 * R is vLLM's global rank, pp_rank * T + tp_rank; VLLM_PP_LAYER_PARTITION is read as vLLM reads it.
 * Load each rank's parameters as vLLM does (stage "loaded", then "processed") and report, or
 * write them as one safetensors file per rank. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct args {
    const char *ckpt, *out, *stage;
    unsigned long long tp, pp, rank, threads;
    const char *pp_partition;
    int has_rank, json, params, plan, direct;
    const char *allow[64];
    size_t nallow;
    enum qtl_dtype dtype;
};

static int parse(const char *cmd, int argc, char **argv, struct args *a, int want_out)
{
    memset(a, 0, sizeof *a);
    a->stage = "processed";
    a->dtype = QTL_DTYPE_COUNT;
    a->pp = 1;
    a->pp_partition = getenv("VLLM_PP_LAYER_PARTITION");
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(s, "--tp") && more) {
            if (cli_parse_u64(argv[++i], &a->tp) || !a->tp || a->tp > 4096)
                return cli_usage_error(cmd, "--tp takes 1..4096");
        } else if (!strcmp(s, "--pp") && more) {
            if (cli_parse_u64(argv[++i], &a->pp) || !a->pp || a->pp > 1024)
                return cli_usage_error(cmd, "--pp takes 1..1024");
        } else if (!strcmp(s, "--rank") && more) {
            if (cli_parse_u64(argv[++i], &a->rank))
                return cli_usage_error(cmd, "--rank takes an integer");
            a->has_rank = 1;
        } else if (!strcmp(s, "--threads") && more) {
            if (cli_parse_u64(argv[++i], &a->threads) || !a->threads || a->threads > 1024)
                return cli_usage_error(cmd, "--threads takes 1..1024");
        } else if (!strcmp(s, "--direct")) {
            a->direct = 1;
        } else if (!strcmp(s, "--plan") && !want_out) {
            a->plan = 1;
        } else if (!strcmp(s, "--allow") && more) {
            if (a->nallow == 64)
                return cli_usage_error(cmd, "too many --allow");
            a->allow[a->nallow++] = argv[++i];
        } else if (!strcmp(s, "--stage") && more) {
            a->stage = argv[++i];
        } else if (!strcmp(s, "--dtype") && more) {
            const char *d = argv[++i];
            a->dtype = !strcmp(d, "bfloat16") ? QTL_DTYPE_BF16 : !strcmp(d, "float16") ? QTL_DTYPE_F16 : QTL_DTYPE_COUNT;
            if (a->dtype == QTL_DTYPE_COUNT)
                return cli_usage_error(cmd, "--dtype takes bfloat16 or float16");
        } else if (!strcmp(s, "-o") && more && want_out) {
            a->out = argv[++i];
        } else if (!strcmp(s, "--json") && !want_out) {
            a->json = 1;
        } else if (!strcmp(s, "--params") && !want_out) {
            a->params = 1;
        } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            if (want_out)
                printf("usage: qtl shard CKPT --tp T [--pp P] [--stage loaded|processed] [--dtype bfloat16|float16]\n"
                       "         [--threads N] [--direct] [--allow ID]... -o OUT\n"
                       "  Writes OUT/model-rank-{r}-part-0.safetensors per rank (model-pp-{p}-tp-{r}-part-0 with --pp,\n"
                       "  vLLM's sharded_state names): vLLM's parameter names, dtypes and per-rank shapes (default\n"
                       "  stage 'processed'), metadata qtl.tp, qtl.rank, qtl.stage, qtl.source (qtl.pp, qtl.pp_rank);\n"
                       "  copies config.json. Nothing is written when a rank has error-level findings.\n"
                       "  VLLM_PP_LAYER_PARTITION=\"a,b,..\" overrides the layer split as in vLLM.\n");
            else
                printf("usage: qtl load CKPT --tp T [--pp P] [--rank R] [--stage loaded|processed]\n"
                       "         [--dtype bfloat16|float16] [--threads N] [--direct] [--allow ID]... [--plan]\n"
                       "         [--json | --params]\n"
                       "  Loads each rank (or rank R) as vLLM does and reports parameters, bytes held and read,\n"
                       "  time, and every finding (IDs in include/qtl.h; --allow downgrades one to a warning).\n"
                       "  --params lists every parameter: name, dtype, shape and a 64-bit FNV-1a hash of its bytes.\n"
                       "  --plan prints the plan instead (nothing read): per file the byte ranges and bytes, per\n"
                       "  parameter its copy ops, the plan hash; with --json as JSON.\n"
                       "  --threads: reader threads (default: cores); --direct: O_DIRECT reads (buffered where refused).\n"
                       "  --pp P: pipeline stages as vLLM splits the layers (VLLM_PP_LAYER_PARTITION is honoured);\n"
                       "  ranks are vLLM's global ranks, R = pp_rank * T + tp_rank.\n");
            return -1;
        } else if (s[0] == '-' && s[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", s);
        } else if (!a->ckpt) {
            a->ckpt = s;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", s);
        }
    }
    if (!a->ckpt || !a->tp)
        return cli_usage_error(cmd, "needs CKPT and --tp T (see qtl %s --help)", cmd);
    if (a->has_rank && a->rank >= a->tp * a->pp)
        return cli_usage_error(cmd, "--rank must be below --tp x --pp (%llu)", a->tp * a->pp);
    if (strcmp(a->stage, "loaded") && strcmp(a->stage, "processed"))
        return cli_usage_error(cmd, "--stage takes loaded or processed");
    if (want_out && !a->out)
        return cli_usage_error(cmd, "missing -o OUT");
    return 0;
}

static const char *sev_name(enum qtl_severity s) { return s == QTL_SEV_ERROR ? "error" : "warning"; }

struct progress {
    uint32_t rank;
    double t0, last;
    int shown;
};

/* Bytes, GB/s and ETA on a terminal, for loads that take over a second; at most 10 updates a second. */
static void show_progress(void *ud, uint64_t done, uint64_t total)
{
    struct progress *p = ud;
    double now = cli_now(), t = now - p->t0;
    if ((t < 1.0 && !p->shown) || (now - p->last < 0.1 && done < total))
        return;
    double rate = t > 0 ? (double)done / t : 0;
    p->last = now;
    p->shown = 1;
    fprintf(stderr, "\rrank %u: %.2f / %.2f GB, %.2f GB/s, ETA %.0f s   %s", p->rank, (double)done / 1e9,
            (double)total / 1e9, rate / 1e9, rate > 0 ? (double)(total - done) / rate : 0.0, done == total ? "\n" : "");
}

/* Open and run rank r. @return the handle (NULL when it could not be opened), *status the CLI status. */
static qtl_load_t *run_rank(const char *cmd, const struct args *a, uint32_t r, int *status)
{
    static struct progress prog;
    prog = (struct progress){r, cli_now(), 0, 0};
    struct qtl_load_options o = {.tp = (uint32_t)a->tp,
                                 .rank = r % (uint32_t)a->tp,
                                 .pp = (uint32_t)a->pp,
                                 .pp_rank = r / (uint32_t)a->tp,
                                 .pp_partition = a->pp > 1 ? a->pp_partition : NULL,
                                 .dtype_override = a->dtype,
                                 .allow = a->allow,
                                 .nallow = a->nallow,
                                 .progress_ud = &prog,
                                 .verify = QTL_READ_ALL, /* --plan: the plan of a full load, never run */
                                 .threads = (unsigned)a->threads,
                                 .direct = a->direct,
                                 .progress_bytes = isatty(2) ? show_progress : NULL};
    qtl_load_t *l = NULL;
    int rc = qtl_load_open(a->ckpt, &o, &l);
    if (rc) {
        fprintf(stderr, "qtl %s: %s\n", cmd, qtl_load_errmsg(l));
        *status = rc == QTL_ERR_OPEN || rc == QTL_ERR_INVALID_ARGUMENT ? CLI_USAGE : CLI_FINDINGS;
        qtl_load_close(l); /* nothing planned to report */
        return NULL;
    }
    if (a->plan) {
        *status = CLI_OK; /* no finding: nothing else sets it */
        for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
            struct qtl_diag d;
            qtl_load_finding_at(l, i, &d);
            *status = d.severity == QTL_SEV_ERROR ? CLI_FINDINGS : CLI_OK;
            if (*status)
                break;
        }
        return l;
    }
    rc = qtl_load_run(l);
    if (!rc && !strcmp(a->stage, "processed"))
        rc = qtl_load_process(l);
    *status = rc ? CLI_FINDINGS : CLI_OK;
    return l;
}

static uint64_t held(const qtl_load_t *l)
{
    uint64_t b = 0;
    for (size_t i = 0; i < qtl_load_param_count(l); i++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, i, &pi);
        b += pi.nbytes;
    }
    return b;
}

/* --plan: every rank's plan, findings on stderr. */
static int plan_ranks(const struct args *a, uint32_t r0, uint32_t r1)
{
    int worst = CLI_OK;
    if (a->json)
        printf("[\n");
    for (uint32_t r = r0; r < r1; r++) {
        int st;
        qtl_load_t *l = run_rank("load", a, r, &st);
        worst = st > worst ? st : worst;
        if (!l)
            break; /* the JSON array is still closed */
        for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
            struct qtl_diag d;
            qtl_load_finding_at(l, i, &d);
            fprintf(stderr, "rank %u: %s [%s]: %s\n", r, sev_name(d.severity), d.id, d.message);
        }
        if (cli_print_plan(l, r, (uint32_t)a->tp, a->json, r == r0) && worst == CLI_OK)
            worst = CLI_FINDINGS;
        qtl_load_close(l);
    }
    if (a->json)
        printf("\n]\n");
    return worst;
}

int cmd_load(int argc, char **argv)
{
    struct args a;
    int rc = parse("load", argc, argv, &a, 0);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    int worst = CLI_OK;
    uint32_t world = (uint32_t)(a.tp * a.pp);
    uint32_t r0 = a.has_rank ? (uint32_t)a.rank : 0, r1 = a.has_rank ? (uint32_t)a.rank + 1 : world;
    if (a.plan)
        return plan_ranks(&a, r0, r1);
    json_t *ranks = a.json ? json_array() : NULL;
    for (uint32_t r = r0; r < r1; r++) {
        int st;
        qtl_load_t *l = run_rank("load", &a, r, &st);
        worst = st > worst ? st : worst;
        if (st == CLI_USAGE || !l || !qtl_load_param_count(l)) {
            qtl_load_close(l);
            break;
        }
        uint64_t h = held(l), rd = qtl_load_bytes_read(l);
        double t = qtl_load_seconds(l);
        if (a.json) {
            char hash[17];
            snprintf(hash, sizeof hash, "%016llx", (unsigned long long)qtl_load_plan_hash(l));
            json_t *fa = json_array();
            for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
                struct qtl_diag d;
                qtl_load_finding_at(l, i, &d);
                json_array_append_new(fa, json_pack("{s:s, s:o, s:o}", "severity", sev_name(d.severity), "id",
                                                    cli_json_str(d.id), "message", cli_json_str(d.message)));
            }
            json_array_append_new(ranks, json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "rank",
                                                   (json_int_t)r, "pp_rank", (json_int_t)(r / a.tp), "tp_rank",
                                                   (json_int_t)(r % a.tp), "parameters", cli_json_u64(qtl_load_param_count(l)),
                                                   "bytes_held", cli_json_u64(h), "bytes_to_read",
                                                   cli_json_u64(qtl_load_bytes_to_read(l)), "bytes_read",
                                                   cli_json_u64(rd), "plan_hash", hash, "seconds",
                                                   cli_json_seconds(t), "process_seconds",
                                                   cli_json_seconds(qtl_load_process_seconds(l)), "findings", fa));
        } else {
            if (a.pp > 1)
                printf("rank %u/%u (stage %u, tp rank %u): ", r, world, r / (uint32_t)a.tp, r % (uint32_t)a.tp);
            else
                printf("rank %u/%llu: ", r, a.tp);
            printf("%zu parameters, %.1f MB held, %.1f MB needed, %.1f MB read in %.3f s (%.2f GB/s)",
                   qtl_load_param_count(l), (double)h / 1e6, (double)qtl_load_bytes_to_read(l) / 1e6,
                   (double)rd / 1e6, t, t > 0 ? (double)rd / t / 1e9 : 0.0);
            if (!strcmp(a.stage, "processed"))
                printf(", post-processed in %.3f s", qtl_load_process_seconds(l));
            printf("\n");
            for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
                struct qtl_diag d;
                qtl_load_finding_at(l, i, &d);
                printf("  %s [%s]: %s\n", sev_name(d.severity), d.id, d.message);
            }
            for (size_t i = 0; a.params && i < qtl_load_param_count(l); i++) {
                struct qtl_param_info pi;
                qtl_load_param_at(l, i, &pi);
                uint64_t fnv = 0xcbf29ce484222325ull;
                for (uint64_t k = 0; k < pi.nbytes; k++)
                    fnv = (fnv ^ ((const unsigned char *)pi.data)[k]) * 0x100000001b3ull;
                printf("  %s %s [", pi.name, qtl_dtype_name(pi.dtype));
                for (uint32_t d = 0; d < pi.ndim; d++)
                    printf("%s%llu", d ? ", " : "", (unsigned long long)pi.shape[d]);
                printf("] %016llx\n", (unsigned long long)fnv);
            }
        }
        qtl_load_close(l);
    }
    if (a.json) {
        json_t *doc = json_pack("{s:o, s:I, s:I, s:o}", "checkpoint", cli_json_str(a.ckpt), "tp", (json_int_t)a.tp,
                                "pp", (json_int_t)a.pp, "ranks", ranks);
        if (cli_json_dump(doc, JSON_INDENT(2)) && worst == CLI_OK)
            worst = CLI_FINDINGS;
        printf("\n");
    }
    return worst;
}

int cmd_shard(int argc, char **argv)
{
    struct args a;
    int rc = parse("shard", argc, argv, &a, 1);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    for (uint32_t r = 0; r < (uint32_t)(a.tp * a.pp); r++) {
        int st;
        qtl_load_t *l = run_rank("shard", &a, r, &st);
        if (st != CLI_OK) {
            for (size_t i = 0; l && i < qtl_load_finding_count(l); i++) {
                struct qtl_diag d;
                qtl_load_finding_at(l, i, &d);
                fprintf(stderr, "  %s [%s]: %s\n", sev_name(d.severity), d.id, d.message);
            }
            fprintf(stderr, "qtl shard: rank %u has error-level findings; nothing written for it\n", r);
            qtl_load_close(l);
            return st;
        }
        char path[4200];
        qtl_shard_file_name(path, sizeof path, a.out, r % (uint32_t)a.tp, r / (uint32_t)a.tp, (uint32_t)a.pp, 0);
        int wr = qtl_load_write(l, path, a.ckpt);
        if (wr)
            fprintf(stderr, "qtl shard: %s\n", qtl_load_errmsg(l));
        else
            printf("wrote %s (%zu parameters)\n", path, qtl_load_param_count(l));
        qtl_load_close(l);
        if (wr)
            return CLI_FINDINGS;
    }
    /* config.json travels with the shards */
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/config.json", a.ckpt);
    snprintf(dst, sizeof dst, "%s/config.json", a.out);
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    return CLI_OK;
}
