/* qtl fixture -o DIR [--shards S] [--seed X]: a small unquantized (BF16)
 * Llama-shaped checkpoint, sharded with model.safetensors.index.json.
 * (The quantized schemes of the fixture issue build on this.) */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { HIDDEN = 256, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 64, INTER = 512, VOCAB = 512 };

struct ftensor {
    char name[96];
    uint32_t ndim;
    uint64_t shape[2];
    uint16_t *data;
    uint64_t nbytes;
};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s += 0x9E3779B97F4A7C15ull; /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* bf16 of a uniform value in [-scale, scale): exact, by truncating a float
 * built from 7 random mantissa bits. */
static uint16_t rand_bf16(uint64_t *s, int exponent)
{
    uint64_t r = rng_next(s);
    uint16_t sign = (uint16_t)((r & 1) << 15);
    uint16_t mant = (uint16_t)((r >> 1) & 0x7F);
    return (uint16_t)(sign | (uint16_t)((exponent + 127) << 7) | mant);
}

static int add(struct ftensor *t, size_t *n, const char *name, uint64_t r, uint64_t c, uint64_t *seed, int ones)
{
    struct ftensor *f = &t[(*n)++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->ndim = c ? 2 : 1;
    f->shape[0] = r;
    f->shape[1] = c;
    uint64_t numel = r * (c ? c : 1);
    f->nbytes = numel * 2;
    f->data = malloc(f->nbytes);
    if (!f->data)
        return -1;
    for (uint64_t i = 0; i < numel; i++)
        f->data[i] = ones ? 0x3F80 : rand_bf16(seed, -6 - (int)(rng_next(seed) & 3));
    return 0;
}

static int write_json(const char *path, json_t *j)
{
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    return rc;
}

int cmd_fixture(int argc, char **argv)
{
    const char *out = NULL;
    unsigned long long shards = 2, seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &shards) || shards < 1 || shards > 99)
                return cli_usage_error("fixture", "--shards takes 1..99");
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &seed))
                return cli_usage_error("fixture", "--seed takes an unsigned integer");
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: qtl fixture -o DIR [--shards S] [--seed X]\n"
                   "  Writes a small BF16 Llama-shaped checkpoint (config.json, S shards and\n"
                   "  model.safetensors.index.json, or model.safetensors for S = 1).\n");
            return CLI_OK;
        } else
            return cli_usage_error("fixture", "unknown argument '%s'", argv[i]);
    }
    if (!out)
        return cli_usage_error("fixture", "missing -o DIR");
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return cli_usage_error("fixture", "cannot create %s: %s", out, strerror(errno));

    static struct ftensor t[4 + LAYERS * 9];
    size_t n = 0;
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
    char name[96];
    int rc = add(t, &n, "model.embed_tokens.weight", VOCAB, HIDDEN, &s, 0);
    static const struct {
        const char *part;
        uint64_t r, c;
        int ones;
    } parts[] = {{"input_layernorm", HIDDEN, 0, 1},
                 {"self_attn.q_proj", HEADS * HEAD_DIM, HIDDEN, 0},
                 {"self_attn.k_proj", KV_HEADS * HEAD_DIM, HIDDEN, 0},
                 {"self_attn.v_proj", KV_HEADS * HEAD_DIM, HIDDEN, 0},
                 {"self_attn.o_proj", HIDDEN, HEADS * HEAD_DIM, 0},
                 {"post_attention_layernorm", HIDDEN, 0, 1},
                 {"mlp.gate_proj", INTER, HIDDEN, 0},
                 {"mlp.up_proj", INTER, HIDDEN, 0},
                 {"mlp.down_proj", HIDDEN, INTER, 0}};
    for (int l = 0; l < LAYERS && !rc; l++)
        for (size_t p = 0; p < sizeof parts / sizeof parts[0] && !rc; p++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, parts[p].part);
            rc = add(t, &n, name, parts[p].r, parts[p].c, &s, parts[p].ones);
        }
    if (!rc)
        rc = add(t, &n, "model.norm.weight", HIDDEN, 0, &s, 1);
    if (!rc)
        rc = add(t, &n, "lm_head.weight", VOCAB, HIDDEN, &s, 0);
    if (rc) {
        fprintf(stderr, "qtl fixture: out of memory\n");
        return CLI_FINDINGS;
    }

    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += t[i].nbytes;
    json_t *wm = json_object();
    int status = CLI_OK;
    size_t first = 0;
    for (unsigned long long k = 0; k < shards && status == CLI_OK; k++) {
        /* Tensors in order; shard k ends once it holds its share of the bytes. */
        uint64_t goal = total * (k + 1) / shards, acc = 0;
        for (size_t i = 0; i < first; i++)
            acc += t[i].nbytes;
        size_t last = first;
        while (last < n && (acc < goal || k + 1 == shards))
            acc += t[last++].nbytes;
        char file[64], path[4096];
        if (shards == 1)
            snprintf(file, sizeof file, "model.safetensors");
        else
            snprintf(file, sizeof file, "model-%05llu-of-%05llu.safetensors", k + 1, shards);
        snprintf(path, sizeof path, "%s/%s", out, file);
        qtl_st_writer_t *w = NULL;
        rc = qtl_st_writer_new(NULL, &w);
        if (!rc)
            rc = qtl_st_writer_set_metadata(w, "format", "pt");
        for (size_t i = first; i < last && !rc; i++) {
            rc = qtl_st_writer_add(w, t[i].name, QTL_DTYPE_BF16, t[i].ndim, t[i].shape, t[i].data, t[i].nbytes);
            json_object_set_new(wm, t[i].name, json_string(file));
        }
        if (!rc)
            rc = qtl_st_writer_write_file(w, path);
        if (rc) {
            fprintf(stderr, "qtl fixture: %s\n", qtl_st_writer_errmsg(w));
            status = CLI_FINDINGS;
        }
        qtl_st_writer_free(w);
        first = last;
    }
    for (size_t i = 0; i < n; i++)
        free(t[i].data);
    char path[4096];
    if (status == CLI_OK && shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
        json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
        if (write_json(path, idx))
            status = CLI_FINDINGS;
        wm = NULL;
    }
    json_decref(wm);
    snprintf(path, sizeof path, "%s/config.json", out);
    json_t *cfg = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:s}", "architectures",
                            "LlamaForCausalLM", "model_type", "llama", "hidden_size", HIDDEN, "intermediate_size",
                            INTER, "num_attention_heads", HEADS, "num_key_value_heads", KV_HEADS, "head_dim",
                            HEAD_DIM, "num_hidden_layers", LAYERS, "vocab_size", VOCAB, "rms_norm_eps", 1e-5,
                            "tie_word_embeddings", 0, "torch_dtype", "bfloat16");
    if (status != CLI_OK)
        json_decref(cfg);
    else if (write_json(path, cfg))
        status = CLI_FINDINGS;
    if (status == CLI_OK)
        printf("wrote %s: %zu tensors, %llu bytes of BF16 weights in %llu file(s)\n", out, n,
               (unsigned long long)total, shards);
    return status;
}
