/* qtl fixture: realistic small checkpoints in every supported format. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void help(void)
{
    printf("usage: qtl fixture --arch llama|phi3 --scheme SCHEME [--layers N --hidden H --heads A\n"
           "         --kv-heads G --head-dim D --intermediate I --vocab V] [--shards S] [--seed X]\n"
           "         [--scale-layout default|per-part|shared] [--break ID] -o DIR\n"
           "  Defaults: llama, bf16, 2 layers, hidden 1024, 8 heads, 2 kv heads, head dim 128,\n"
           "  intermediate 2048, vocab 1024, 2 shards, seed 0. Same arguments -> same bytes.\n"
           "schemes:\n");
    for (size_t i = 0; qtl_fixture_scheme_name(i); i++)
        printf("  %-18s %s\n", qtl_fixture_scheme_name(i), qtl_fixture_scheme_help(i));
    printf("breaks (--break ID: a real-world failure built in, for qtl verify):\n");
    for (size_t i = 0; qtl_fixture_break_name(i); i++)
        printf("  %-18s %s\n", qtl_fixture_break_name(i), qtl_fixture_break_help(i));
}

int cmd_fixture(int argc, char **argv)
{
    struct qtl_fixture_options o;
    qtl_fixture_defaults(&o);
    o.progress = 1;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return CLI_OK;
        }
        if (i + 1 >= argc)
            return cli_usage_error("fixture", "'%s' needs a value (see qtl fixture --help)", a);
        const char *v = argv[++i];
        unsigned long long n = 0;
        int num = cli_parse_u64(v, &n) == 0;
        struct {
            const char *flag;
            uint32_t *dst;
        } dims[] = {{"--layers", &o.layers},   {"--hidden", &o.hidden},     {"--heads", &o.heads},
                    {"--kv-heads", &o.kv_heads}, {"--head-dim", &o.head_dim}, {"--intermediate", &o.intermediate},
                    {"--vocab", &o.vocab},     {"--shards", &o.shards}};
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
        else if (!strcmp(a, "--seed")) {
            if (!num)
                return cli_usage_error("fixture", "--seed takes an unsigned integer");
            o.seed = n;
        } else if (!strcmp(a, "--arch")) {
            if (!strcmp(v, "llama"))
                o.arch = QTL_FIXTURE_LLAMA;
            else if (!strcmp(v, "phi3"))
                o.arch = QTL_FIXTURE_PHI3;
            else
                return cli_usage_error("fixture", "--arch takes llama or phi3");
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
    printf("wrote %s: %s %s, %u layer(s), %u shard(s) in %.2f s\n", out, o.arch == QTL_FIXTURE_PHI3 ? "phi3" : "llama",
           o.scheme, o.layers, o.shards, cli_now() - t0);
    return CLI_OK;
}
