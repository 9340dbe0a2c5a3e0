/* qtl fixture: realistic small checkpoints in every supported format. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void help(void)
{
    printf("usage: qtl fixture --arch llama|phi3|mixtral|qwen3-moe --scheme SCHEME [--layers N --hidden H\n"
           "         --heads A --kv-heads G --head-dim D --intermediate I --vocab V] [--shards S] [--seed X]\n"
           "         [--scale-layout default|per-part|shared] [--break ID] -o DIR\n"
           "         MoE: [--experts E --top-k K --moe-intermediate I] qwen3-moe: [--mlp-only-layers L,L..\n"
           "         --decoder-sparse-step N --fused-experts]\n"
           "  Defaults: llama, bf16, 2 layers, hidden 1024, 8 heads, 2 kv heads, head dim 128,\n"
           "  intermediate 2048, vocab 1024, 2 shards, seed 0. Same arguments -> same bytes.\n"
           "  mixtral: block_sparse_moe.experts.E.w1|w2|w3, every layer MoE, intermediate_size = the\n"
           "  expert size. qwen3-moe: mlp.experts.E.gate_proj|up_proj|down_proj, q/k norms, dense\n"
           "  (--intermediate) MLP in the mlp-only / off-step layers. Both: a BF16 router (...gate.weight)\n"
           "  in the quantization config's ignore list; 4 experts, top-k 2, expert size = --intermediate.\n"
           "  --fused-experts: mlp.experts.gate_up_proj [E, 2I, H] and down_proj [E, H, I] as\n"
           "  transformers v5 saves them (save_original_format=False): bf16 and fp8-block only.\n"
           "schemes:\n");
    for (size_t i = 0; qtl_fixture_scheme_name(i); i++)
        printf("  %-18s %s\n", qtl_fixture_scheme_name(i), qtl_fixture_scheme_help(i));
    printf("breaks (--break ID: a real-world failure built in, for qtl verify):\n");
    for (size_t i = 0; qtl_fixture_break_name(i); i++)
        printf("  %-18s %s\n", qtl_fixture_break_name(i), qtl_fixture_break_help(i));
}

#define MAX_MLP_ONLY 4096

/* "0,3,5" -> layers; "" or "none" -> no layer. @return the count, or -1. */
static long parse_layers(const char *v, uint32_t *out)
{
    long n = 0;
    if (!*v || !strcmp(v, "none"))
        return 0;
    for (const char *p = v;;) {
        char buf[32];
        size_t len = strcspn(p, ",");
        unsigned long long x;
        if (!len || len >= sizeof buf || n >= MAX_MLP_ONLY)
            return -1;
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (cli_parse_u64(buf, &x) || x > 1000000)
            return -1;
        out[n++] = (uint32_t)x;
        if (!p[len])
            return n;
        p += len + 1;
    }
}

int cmd_fixture(int argc, char **argv)
{
    struct qtl_fixture_options o;
    qtl_fixture_defaults(&o);
    o.progress = 1;
    static uint32_t mlp_only[MAX_MLP_ONLY];
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return CLI_OK;
        }
        if (!strcmp(a, "--fused-experts")) {
            o.fused_experts = 1;
            continue;
        }
        if (i + 1 >= argc)
            return cli_usage_error("fixture", "'%s' needs a value (see qtl fixture --help)", a);
        const char *v = argv[++i];
        unsigned long long n = 0;
        int num = cli_parse_u64(v, &n) == 0;
        struct {
            const char *flag;
            uint32_t *dst;
        } dims[] = {{"--layers", &o.layers},
                    {"--hidden", &o.hidden},
                    {"--heads", &o.heads},
                    {"--kv-heads", &o.kv_heads},
                    {"--head-dim", &o.head_dim},
                    {"--intermediate", &o.intermediate},
                    {"--vocab", &o.vocab},
                    {"--shards", &o.shards},
                    {"--experts", &o.experts},
                    {"--top-k", &o.top_k},
                    {"--moe-intermediate", &o.moe_intermediate},
                    {"--decoder-sparse-step", &o.decoder_sparse_step}};
        int matched = 0;
        for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++)
            if (!strcmp(a, dims[k].flag)) {
                if (!num || n < 1 || n > 1000000)
                    return cli_usage_error("fixture", "%s takes 1..1000000", a);
                *dims[k].dst = (uint32_t)n;
                matched = 1;
            }
        if (matched)
            continue;
        if (!strcmp(a, "-o"))
            out = v;
        else if (!strcmp(a, "--scheme"))
            o.scheme = v;
        else if (!strcmp(a, "--break"))
            o.break_id = v;
        else if (!strcmp(a, "--mlp-only-layers")) {
            long k = parse_layers(v, mlp_only);
            if (k < 0)
                return cli_usage_error("fixture", "--mlp-only-layers takes layer numbers separated by commas");
            o.mlp_only_layers = mlp_only;
            o.n_mlp_only_layers = (size_t)k;
        } else if (!strcmp(a, "--seed")) {
            if (!num)
                return cli_usage_error("fixture", "--seed takes an unsigned integer");
            o.seed = n;
        } else if (!strcmp(a, "--arch")) {
            size_t k = 0;
            while (qtl_fixture_arch_name(k) && strcmp(v, qtl_fixture_arch_name(k)))
                k++;
            if (!qtl_fixture_arch_name(k))
                return cli_usage_error("fixture", "--arch takes llama, phi3, mixtral or qwen3-moe");
            o.arch = (enum qtl_fixture_arch)k;
        } else if (!strcmp(a, "--scale-layout")) {
            if (!strcmp(v, "default"))
                o.scale_layout = QTL_SCALE_LAYOUT_DEFAULT;
            else if (!strcmp(v, "per-part"))
                o.scale_layout = QTL_SCALE_LAYOUT_PER_PART;
            else if (!strcmp(v, "shared"))
                o.scale_layout = QTL_SCALE_LAYOUT_SHARED;
            else
                return cli_usage_error("fixture", "--scale-layout takes default, per-part or shared");
        } else
            return cli_usage_error("fixture", "unknown option '%s'", a);
    }
    if (!out)
        return cli_usage_error("fixture", "missing -o DIR");
    int known = 0;
    for (size_t i = 0; qtl_fixture_scheme_name(i); i++)
        known |= !strcmp(o.scheme, qtl_fixture_scheme_name(i));
    if (!known)
        return cli_usage_error("fixture", "unknown scheme '%s' (see qtl fixture --help)", o.scheme);
    char msg[1024];
    double t0 = cli_now();
    int rc = qtl_fixture_write(&o, out, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "qtl fixture: %s\n", msg);
        return rc == QTL_ERR_INVALID_ARGUMENT ? CLI_USAGE : CLI_FINDINGS;
    }
    printf("wrote %s: %s %s, %u layer(s), %u shard(s) in %.2f s\n", out, qtl_fixture_arch_name((size_t)o.arch),
           o.scheme, o.layers, o.shards, cli_now() - t0);
    return CLI_OK;
}
