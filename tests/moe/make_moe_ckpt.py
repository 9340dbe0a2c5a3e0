"""A tiny Qwen3-MoE or Mixtral BF16 checkpoint with deterministic random values, written as
transformers writes them: per-expert tensors (experts.E.gate_proj|up_proj|down_proj, Mixtral
experts.E.w1|w3|w2) or, with "fused", transformers v5's save_original_format=False layout
(experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]); Qwen3-MoE's layer 1 is dense
(mlp_only_layers). Usage: make_moe_ckpt.py qwen3|mixtral OUT [fused]"""
import json, os, struct, sys, random
arch, out = sys.argv[1], sys.argv[2]
fused = len(sys.argv) > 3 and sys.argv[3] == "fused"
H, NH, KV, D, L, V, I, MI, E = 64, 4, 2, 16, 2, 128, 128, 32, 5
rnd = random.Random(1)
T = {}
def t(name, *shape):
    n = 1
    for s in shape: n *= s
    T[name] = (shape, bytes(rnd.getrandbits(8) & 0x7f if i % 2 else rnd.getrandbits(8) for i in range(2 * n)))
t("model.embed_tokens.weight", V, H)
blk = "block_sparse_moe" if arch == "mixtral" else "mlp"
w1, w2, w3 = ("w1", "w2", "w3") if arch == "mixtral" else ("gate_proj", "down_proj", "up_proj")
for l in range(L):
    p = "model.layers.%d." % l
    t(p + "input_layernorm.weight", H); t(p + "post_attention_layernorm.weight", H)
    t(p + "self_attn.q_proj.weight", NH * D, H); t(p + "self_attn.k_proj.weight", KV * D, H)
    t(p + "self_attn.v_proj.weight", KV * D, H); t(p + "self_attn.o_proj.weight", H, NH * D)
    if arch != "mixtral":
        t(p + "self_attn.q_norm.weight", D); t(p + "self_attn.k_norm.weight", D)
    if arch != "mixtral" and l == 1:  # mlp_only_layers [1]
        t(p + "mlp.gate_proj.weight", I, H); t(p + "mlp.up_proj.weight", I, H); t(p + "mlp.down_proj.weight", H, I)
        continue
    t(p + blk + ".gate.weight", E, H)
    if fused:
        t(p + blk + ".experts.gate_up_proj", E, 2 * MI, H); t(p + blk + ".experts.down_proj", E, H, MI)
    else:
        for e in range(E):
            q = p + blk + ".experts.%d." % e
            t(q + w1 + ".weight", MI, H); t(q + w3 + ".weight", MI, H); t(q + w2 + ".weight", H, MI)
t("model.norm.weight", H); t("lm_head.weight", V, H)
cfg = {"architectures": ["MixtralForCausalLM" if arch == "mixtral" else "Qwen3MoeForCausalLM"],
       "hidden_size": H, "num_attention_heads": NH, "num_key_value_heads": KV, "head_dim": D,
       "num_hidden_layers": L, "vocab_size": V, "torch_dtype": "bfloat16", "num_experts_per_tok": 2,
       "tie_word_embeddings": False}
if arch == "mixtral":
    cfg.update(intermediate_size=MI, num_local_experts=E, model_type="mixtral")
else:
    cfg.update(intermediate_size=I, moe_intermediate_size=MI, num_experts=E, decoder_sparse_step=1,
               mlp_only_layers=[1], model_type="qwen3_moe")
os.makedirs(out, exist_ok=True)
json.dump(cfg, open(out + "/config.json", "w"), indent=2)
hdr, off, blobs = {}, 0, []
for k in sorted(T):
    shape, b = T[k]
    hdr[k] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(b)]}
    off += len(b); blobs.append(b)
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
with open(out + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); [f.write(b) for b in blobs]
