/* qtl load CKPT --tp T [--pp P] [--rank R] [--plan] [--json] [--threads N] [--direct] [--allow ID]...
 * qtl shard CKPT --tp T [--pp P] [--stage loaded|processed | --for vllm [--max-file-size N]] -o OUT [--allow ID]...
 * R is vLLM's global rank, pp_rank * T + tp_rank; VLLM_PP_LAYER_PARTITION is read as vLLM reads it.
 * Load each rank's parameters as vLLM does (stage "loaded", then "processed") and report, or
 * write them as one safetensors file per rank. */
#include "cli.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct args {
    const char *ckpt, *out, *stage, *for_engine;
    uint64_t max_file_size;
    int stage_given;
    unsigned long long tp, pp, rank, threads;
    const char *pp_partition;
    int has_rank, json, params, plan, direct, check, ep;
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
        } else if (!strcmp(s, "--ep")) {
            a->ep = 1;
        } else if (!strcmp(s, "--check") && !want_out) {
            a->check = 1;
        } else if (!strcmp(s, "--plan") && !want_out) {
            a->plan = 1;
        } else if (!strcmp(s, "--allow") && more) {
            if (a->nallow == 64)
                return cli_usage_error(cmd, "too many --allow");
            a->allow[a->nallow++] = argv[++i];
        } else if (!strcmp(s, "--stage") && more) {
            a->stage = argv[++i];
            a->stage_given = 1;
        } else if (!strcmp(s, "--for") && more && want_out) {
            a->for_engine = argv[++i];
            if (strcmp(a->for_engine, "vllm"))
                return cli_usage_error(cmd, "--for takes vllm");
        } else if (!strcmp(s, "--max-file-size") && more && want_out) {
            if (cli_parse_size(argv[++i], &a->max_file_size))
                return cli_usage_error(cmd, "--max-file-size takes bytes, e.g. 5GiB, 500MB or 1048576");
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
                printf("usage: qtl shard CKPT --tp T [--pp P] [--ep] [--stage loaded|processed] [--dtype bfloat16|float16]\n"
                       "         [--threads N] [--direct] [--allow ID]... -o OUT\n"
                       "  Writes OUT/model-rank-{r}-part-0.safetensors per rank (model-pp-{p}-tp-{r}-part-0 with --pp,\n"
                       "  vLLM's sharded_state names): vLLM's parameter names, dtypes and per-rank shapes (default\n"
                       "  stage 'processed'), metadata qtl.tp, qtl.rank, qtl.stage, qtl.source (qtl.pp, qtl.pp_rank);\n"
                       "  copies config.json. Nothing is written when a rank has error-level findings.\n"
                       "  --for vllm: files `vllm serve OUT --load-format sharded_state -tp T` serves as CKPT: stage\n"
                       "  loaded, exactly the key set of vLLM 0.32's fresh model per rank (attention buffers, KV-cache\n"
                       "  placeholders, tied embeddings under lm_head.weight), parts of at most --max-file-size\n"
                       "  (default 5GiB, as vLLM's saver), every non-weight file of CKPT copied (tokenizer, ...).\n"
                       "  VLLM_PP_LAYER_PARTITION=\"a,b,..\" overrides the layer split as in vLLM.\n");
            else
                printf("usage: qtl load CKPT --tp T [--pp P] [--ep] [--rank R] [--stage loaded|processed]\n"
                       "         [--dtype bfloat16|float16] [--threads N] [--direct] [--allow ID]... [--plan]\n"
                       "         [--json | --params]\n"
                       "  Loads each rank (or rank R) as vLLM does and reports parameters, bytes held and read,\n"
                       "  time, and every finding (IDs in include/qtl.h; --allow downgrades one to a warning).\n"
                       "  --params lists every parameter: name, dtype, shape and a 64-bit FNV-1a hash of its bytes.\n"
                       "  --plan prints the plan instead (nothing read): per file the byte ranges and bytes, per\n"
                       "  parameter its copy ops, the plan hash; with --json as JSON.\n"
                       "  --threads: reader threads (default: cores); --direct: O_DIRECT reads (buffered where refused).\n"
                       "  --pp P: pipeline stages as vLLM splits the layers (VLLM_PP_LAYER_PARTITION is honoured);\n"
                       "  --ep: expert parallel (MoE): the tp ranks split the experts, each holds whole experts;\n"
                       "  ranks are vLLM's global ranks, R = pp_rank * T + tp_rank.\n"
                       "  Under mpiexec -n (T x P) each process loads its own rank; rank 0 prints every rank's report\n"
                       "  in rank order; --check also replays every rank's plan on rank 0 and compares the hashes.\n");
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
    if (a->for_engine && a->stage_given && strcmp(a->stage, "loaded"))
        return cli_usage_error(cmd, "--for vllm writes stage loaded: vLLM's sharded_state loader copies the files into a "
                                    "fresh model and then runs process_weights_after_loading itself, so processed "
                                    "parameters would be post-processed twice (vllm#41174)");
    if (a->for_engine) {
        a->stage = "loaded";
        if (!a->max_file_size)
            a->max_file_size = (uint64_t)5 << 30;
    }
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

/* Open (plan) rank r. @return the handle (NULL when it could not be opened, the message on
 * stderr), *status the CLI status. */
static qtl_load_t *open_rank(const char *cmd, const struct args *a, uint32_t r, int *status)
{
    static struct progress prog;
    prog = (struct progress){r, cli_now(), 0, 0};
    struct qtl_load_options o = {.tp = (uint32_t)a->tp,
                                 .rank = r % (uint32_t)a->tp,
                                 .pp = (uint32_t)a->pp,
                                 .pp_rank = r / (uint32_t)a->tp,
                                 .pp_partition = a->pp > 1 ? a->pp_partition : NULL,
                                 .ep = a->ep,
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
        char who[32] = "";
        if (cli_dist)
            snprintf(who, sizeof who, "rank %u: ", r);
        fprintf(stderr, "qtl %s: %s%s\n", cmd, who, qtl_load_errmsg(l));
        *status = rc == QTL_ERR_OPEN || rc == QTL_ERR_INVALID_ARGUMENT ? CLI_USAGE : CLI_FINDINGS;
        qtl_load_close(l); /* nothing planned to report */
        return NULL;
    }
    *status = CLI_OK; /* no finding: nothing else sets it */
    for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
        struct qtl_diag d;
        qtl_load_finding_at(l, i, &d);
        if (d.severity == QTL_SEV_ERROR)
            *status = CLI_FINDINGS;
    }
    return l;
}

/* Execute the plan (and post-process). @return the CLI status. */
static int exec_rank(const struct args *a, qtl_load_t *l)
{
    int rc = qtl_load_run(l);
    if (!rc && !strcmp(a->stage, "processed"))
        rc = qtl_load_process(l);
    return rc ? CLI_FINDINGS : CLI_OK;
}

static qtl_load_t *run_rank(const char *cmd, const struct args *a, uint32_t r, int *status)
{
    qtl_load_t *l = open_rank(cmd, a, r, status);
    if (l && !a->plan)
        *status = exec_rank(a, l);
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

/* --params: name, dtype, shape and a 64-bit FNV-1a hash of the bytes of every parameter. */
static void print_params(FILE *f, const qtl_load_t *l)
{
    for (size_t i = 0; i < qtl_load_param_count(l); i++) {
        struct qtl_param_info pi;
        qtl_load_param_at(l, i, &pi);
        uint64_t fnv = 0xcbf29ce484222325ull;
        for (uint64_t k = 0; k < pi.nbytes; k++)
            fnv = (fnv ^ ((const unsigned char *)pi.data)[k]) * 0x100000001b3ull;
        fprintf(f, "  %s %s [", pi.name, qtl_dtype_name(pi.dtype));
        for (uint32_t d = 0; d < pi.ndim; d++)
            fprintf(f, "%s%llu", d ? ", " : "", (unsigned long long)pi.shape[d]);
        fprintf(f, "] %016llx\n", (unsigned long long)fnv);
    }
}

/* One rank's report, as text. */
static void print_rank(FILE *f, const struct args *a, const qtl_load_t *l, uint32_t r)
{
    uint64_t h = held(l), rd = qtl_load_bytes_read(l);
    double t = qtl_load_seconds(l);
    if (a->pp > 1)
        fprintf(f, "rank %u/%llu (stage %u, tp rank %u): ", r, a->tp * a->pp, r / (uint32_t)a->tp, r % (uint32_t)a->tp);
    else
        fprintf(f, "rank %u/%llu: ", r, a->tp);
    fprintf(f, "%zu parameters, %.1f MB held, %.1f MB needed, %.1f MB read in %.3f s (%.2f GB/s)",
            qtl_load_param_count(l), (double)h / 1e6, (double)qtl_load_bytes_to_read(l) / 1e6, (double)rd / 1e6, t,
            t > 0 ? (double)rd / t / 1e9 : 0.0);
    if (!strcmp(a->stage, "processed"))
        fprintf(f, ", post-processed in %.3f s", qtl_load_process_seconds(l));
    fprintf(f, "\n");
    for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
        struct qtl_diag d;
        qtl_load_finding_at(l, i, &d);
        fprintf(f, "  %s [%s]: %s\n", sev_name(d.severity), d.id, d.message);
    }
    if (a->params)
        print_params(f, l);
}

/* One rank's report, as a JSON object (docs/plan-json.md). */
static json_t *json_rank(const struct args *a, const qtl_load_t *l, uint32_t r)
{
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)qtl_load_plan_hash(l));
    json_t *fa = json_array();
    for (size_t i = 0; i < qtl_load_finding_count(l); i++) {
        struct qtl_diag d;
        qtl_load_finding_at(l, i, &d);
        json_array_append_new(fa, json_pack("{s:s, s:o, s:o}", "severity", sev_name(d.severity), "id",
                                            cli_json_str(d.id), "message", cli_json_str(d.message)));
    }
    return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "rank", (json_int_t)r, "pp_rank",
                     (json_int_t)(r / a->tp), "tp_rank", (json_int_t)(r % a->tp), "parameters",
                     cli_json_u64(qtl_load_param_count(l)), "bytes_held", cli_json_u64(held(l)), "bytes_to_read",
                     cli_json_u64(qtl_load_bytes_to_read(l)), "bytes_read", cli_json_u64(qtl_load_bytes_read(l)),
                     "plan_hash", hash, "seconds", cli_json_seconds(qtl_load_seconds(l)), "process_seconds",
                     cli_json_seconds(qtl_load_process_seconds(l)), "findings", fa);
}

static int print_doc(const struct args *a, json_t *ranks)
{
    json_t *doc = json_pack("{s:o, s:I, s:I, s:o}", "checkpoint", cli_json_str(a->ckpt), "tp", (json_int_t)a->tp, "pp",
                            (json_int_t)a->pp, "ranks", ranks);
    int rc = cli_json_dump(doc, JSON_INDENT(2));
    printf("\n");
    return rc;
}

#ifdef QTL_MPI
static int mpi_load(const char *cmd, const struct args *a, int shard);
#endif

int cmd_load(int argc, char **argv)
{
    struct args a;
    int rc = parse("load", argc, argv, &a, 0);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
#ifdef QTL_MPI
    if (cli_dist)
        return mpi_load("load", &a, 0);
#endif
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
        if (a.json)
            json_array_append_new(ranks, json_rank(&a, l, r));
        else
            print_rank(stdout, &a, l, r);
        qtl_load_close(l);
    }
    if (a.json && print_doc(&a, ranks) && worst == CLI_OK)
        worst = CLI_FINDINGS;
    return worst;
}

/* Write rank r's file into OUT (vLLM's sharded_state name). @return the CLI status. */
static int write_rank(const struct args *a, qtl_load_t *l, uint32_t r)
{
    if (a->for_engine) {
        size_t parts;
        int wr = qtl_load_write_vllm(l, a->out, a->ckpt, a->max_file_size, &parts);
        if (wr)
            fprintf(stderr, "qtl shard: rank %u: %s\n", r, qtl_load_errmsg(l));
        else
            printf("wrote rank %u: %zu part(s) for vLLM's sharded_state in %s\n", r, parts, a->out);
        return wr ? CLI_FINDINGS : CLI_OK;
    }
    char path[4200];
    qtl_shard_file_name(path, sizeof path, a->out, r % (uint32_t)a->tp, r / (uint32_t)a->tp, (uint32_t)a->pp, 0);
    int wr = qtl_load_write(l, path, a->ckpt);
    if (wr)
        fprintf(stderr, "qtl shard: rank %u: %s\n", r, qtl_load_errmsg(l));
    else
        printf("wrote %s (%zu parameters)\n", path, qtl_load_param_count(l));
    return wr ? CLI_FINDINGS : CLI_OK;
}

/* A rank's findings on stderr, when it has error-level ones and writes nothing. */
static void refuse_rank(const qtl_load_t *l, uint32_t r)
{
    for (size_t i = 0; l && i < qtl_load_finding_count(l); i++) {
        struct qtl_diag d;
        qtl_load_finding_at(l, i, &d);
        fprintf(stderr, "  %s [%s]: %s\n", sev_name(d.severity), d.id, d.message);
    }
    fprintf(stderr, "qtl shard: rank %u has error-level findings; nothing written for it\n", r);
}

static int copy_file(const char *dir, const char *out, const char *name)
{
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", out, name);
    FILE *in = fopen(src, "rb"), *o = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t n;
    int bad = !in || !o;
    while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0)
        bad = fwrite(buf, 1, n, o) != n;
    bad |= in && ferror(in);
    if (in)
        fclose(in);
    if (o && fclose(o))
        bad = 1;
    if (bad)
        fprintf(stderr, "qtl shard: cannot copy %s to %s\n", src, out);
    return bad;
}

/* config.json travels with the shards; --for vllm: every non-weight file of the checkpoint
 * directory too (tokenizer files, generation_config.json, hf_quant_config.json, chat
 * templates), as vLLM's save_sharded_state example copies them. Weights and their indexes
 * (*.safetensors, *.bin, *.pt, *.pth, *.index.json) are not copied; nor are sub-directories. */
static int copy_config(const struct args *a)
{
    if (!a->for_engine)
        return copy_file(a->ckpt, a->out, "config.json");
    static const char *const weights[] = {".safetensors", ".bin", ".pt", ".pth", ".index.json", ".gguf"};
    DIR *d = opendir(a->ckpt);
    int bad = !d;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        int skip = 0;
        for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
            skip |= cli_ends_with(e->d_name, weights[i]);
        char path[4200];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", a->ckpt, e->d_name);
        if (!skip && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            bad |= copy_file(a->ckpt, a->out, e->d_name);
    }
    if (d)
        closedir(d);
    return bad;
}

int cmd_shard(int argc, char **argv)
{
    struct args a;
    int rc = parse("shard", argc, argv, &a, 1);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
#ifdef QTL_MPI
    if (cli_dist)
        return mpi_load("shard", &a, 1);
#endif
    for (uint32_t r = 0; r < (uint32_t)(a.tp * a.pp); r++) {
        int st;
        qtl_load_t *l = run_rank("shard", &a, r, &st);
        if (st != CLI_OK) {
            refuse_rank(l, r);
            qtl_load_close(l);
            return st;
        }
        st = write_rank(&a, l, r);
        qtl_load_close(l);
        if (st)
            return st;
    }
    return copy_config(&a) ? CLI_FINDINGS : CLI_OK;
}

#ifdef QTL_MPI
/* ---- one process per rank (mpiexec -n W, W = tp x pp) ----
 * Phases, each ended by an agreement of every rank's status so that a failure
 * anywhere stops all ranks at the same point (nothing hangs, every rank exits
 * with the worst status): plan; plan hash; execute; (shard: write); report,
 * gathered and printed by rank 0 in rank order, as the single process prints it. */

/* The text a FILE * wrote into memory. */
struct memout {
    char *buf;
    size_t len;
    FILE *f;
};

static int agree(const char *cmd, int local, int *worst)
{
    uint32_t n;
    if (qtl_dist_agree(cli_dist, local, worst, &n)) {
        fprintf(stderr, "qtl %s: rank %u: MPI failed to agree on a status; aborting\n", cmd, qtl_dist_rank(cli_dist));
        qtl_dist_abort(cli_dist, CLI_FINDINGS);
    }
    if (*worst && local == 0 && qtl_dist_rank(cli_dist) == 0)
        fprintf(stderr, "qtl %s: %u rank(s) failed; every rank stops\n", cmd, n);
    return *worst;
}

/* Rank 0 prints every rank's part in rank order. */
static int gather_print(const char *text, size_t len, FILE *to)
{
    void *all;
    uint64_t *offs;
    int rc = qtl_dist_gather(cli_dist, text, len, &all, &offs);
    if (!rc && all)
        fwrite(all, 1, (size_t)offs[qtl_dist_size(cli_dist)], to);
    qtl_dist_free(cli_dist, all);
    qtl_dist_free(cli_dist, offs);
    return rc;
}

/* --check: rank 0 replays every rank's plan and compares the parameter hashes each rank reported. */
static int check_ranks(const struct args *a, const char *all, const uint64_t *offs, uint32_t world)
{
    int bad = 0;
    for (uint32_t r = 0; r < world; r++) {
        int st;
        qtl_load_t *l = run_rank("load", a, r, &st);
        char *mine = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&mine, &n);
        if (l && f)
            print_params(f, l);
        if (f)
            fclose(f);
        int same = l && st == CLI_OK && mine && n == offs[r + 1] - offs[r] && !memcmp(mine, all + offs[r], n);
        if (!same) {
            fprintf(stderr, "qtl load --check: rank %u's parameters differ from rank 0's replay of its plan\n", r);
            bad = 1;
        }
        free(mine);
        qtl_load_close(l);
    }
    printf("check: %s\n", bad ? "MISMATCH" : "every rank's parameter hashes equal rank 0's replay of its plan");
    return bad ? CLI_FINDINGS : CLI_OK;
}

static int mpi_load(const char *cmd, const struct args *a, int shard)
{
    uint32_t me = qtl_dist_rank(cli_dist), size = qtl_dist_size(cli_dist), world = (uint32_t)(a->tp * a->pp);
    if (size != world) { /* every rank sees the same sizes: no collective needed to agree */
        if (me == 0)
            fprintf(stderr, "qtl %s: mpiexec started %u processes, but --tp %llu x --pp %llu needs %u (one per rank)\n",
                    cmd, size, a->tp, a->pp, world);
        return CLI_USAGE;
    }
    if (a->has_rank || a->plan) {
        if (me == 0)
            fprintf(stderr, "qtl %s: under mpiexec each process is its rank: %s is not taken\n", cmd,
                    a->has_rank ? "--rank" : "--plan");
        return CLI_USAGE;
    }
    int st, worst;
    qtl_load_t *l = open_rank(cmd, a, me, &st);
    if (agree(cmd, l ? CLI_OK : st, &worst)) {
        qtl_load_close(l);
        return worst;
    }
    char msg[4096];
    if (qtl_dist_check_plan(cli_dist, l, msg, sizeof msg)) {
        if (me == 0)
            fprintf(stderr, "qtl %s: %s\n", cmd, msg);
        qtl_load_close(l);
        return CLI_FINDINGS;
    }
    st = exec_rank(a, l);
    if (shard && st)
        refuse_rank(l, me);
    if (shard && !agree(cmd, st, &worst)) {
        st = write_rank(a, l, me);
        if (!agree(cmd, st, &worst) && me == 0 && copy_config(a))
            worst = CLI_FINDINGS;
        qtl_load_close(l);
        return worst;
    }
    if (shard) {
        qtl_load_close(l);
        return worst;
    }
    /* the report: text or one JSON object per rank, and the parameter hashes for --check */
    struct memout out = {0}, par = {0};
    out.f = open_memstream(&out.buf, &out.len);
    par.f = open_memstream(&par.buf, &par.len);
    if (!out.f || !par.f)
        qtl_dist_abort(cli_dist, CLI_FINDINGS); /* cannot take part in the gathers below */
    if (a->json) {
        json_t *j = json_rank(a, l, me);
        char *txt = j ? json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT) : NULL;
        fprintf(out.f, "%s%c", txt ? txt : "null", 0); /* NUL-separated */
        free(txt);
        json_decref(j);
    } else {
        print_rank(out.f, a, l, me);
    }
    if (a->check)
        print_params(par.f, l);
    fclose(out.f);
    fclose(par.f);
    qtl_load_close(l);
    agree(cmd, st, &worst);
    if (!a->json) {
        fflush(stdout);
        gather_print(out.buf, out.len, stdout);
    } else {
        void *all;
        uint64_t *offs;
        if (!qtl_dist_gather(cli_dist, out.buf, out.len, &all, &offs) && all) {
            json_t *ranks = json_array();
            for (uint32_t r = 0; r < size; r++)
                json_array_append_new(ranks, json_loads((const char *)all + offs[r], 0, NULL));
            if (print_doc(a, ranks) && worst == CLI_OK)
                worst = CLI_FINDINGS;
        }
        qtl_dist_free(cli_dist, all);
        qtl_dist_free(cli_dist, offs);
    }
    if (a->check) {
        void *all;
        uint64_t *offs;
        int c = CLI_OK;
        if (!qtl_dist_gather(cli_dist, par.buf, par.len, &all, &offs) && all)
            c = check_ranks(a, all, offs, size);
        qtl_dist_free(cli_dist, all);
        qtl_dist_free(cli_dist, offs);
        int w2;
        agree(cmd, c, &w2);
        worst = w2 > worst ? w2 : worst;
    }
    free(out.buf);
    free(par.buf);
    return worst;
}
#endif
