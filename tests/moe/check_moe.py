"""qtl's MoE loading (stage loaded) against an independent reading of vLLM 0.32's rules
(moe-vllm-facts.md §3-§5), on checkpoints made by make_moe_ckpt.py: under tensor parallelism
every rank holds every expert and the ranks' row (w1, w3) and column (w2) slices concatenate
to each checkpoint tensor; under expert parallelism (--ep) each rank holds whole experts, the
first E % tp ranks one more, and the union is every expert exactly once; split and fused-on-
disk experts from the same values give identical parameters. Usage: check_moe.py QTL TMP"""
import json, os, struct, subprocess, sys

QTL, TMP = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, v in hdr.items():
            if k == "__metadata__":
                continue
            f.seek(base + v["data_offsets"][0])
            out[k] = (v["dtype"], v["shape"], f.read(v["data_offsets"][1] - v["data_offsets"][0]))
    return out


def rows(t, r0, n):  # rows [r0, r0+n) of a 2-D bf16 tensor's bytes
    _, shape, b = t
    w = 2 * shape[-1]
    return b[r0 * w:(r0 + n) * w]


def cols(t, c0, n):
    _, shape, b = t
    w = 2 * shape[-1]
    return b"".join(b[r * w + 2 * c0:r * w + 2 * (c0 + n)] for r in range(len(b) // w))


def shard(ck, tp, ep, out):
    subprocess.run([QTL, "shard", ck, "--tp", str(tp), "--stage", "loaded", "-o", out] + (["--ep"] if ep else []),
                   check=True, stdout=subprocess.DEVNULL)
    return [read_st(os.path.join(out, "model-rank-%d-part-0.safetensors" % r)) for r in range(tp)]


def expert_names(arch):
    return ("block_sparse_moe", ("w1", "w3", "w2")) if arch == "mixtral" else ("mlp", ("gate_proj", "up_proj", "down_proj"))


fails = 0
for arch in ("qwen3", "mixtral"):
    ck = os.path.join(TMP, "moe-" + arch)
    subprocess.run([sys.executable, os.path.join(HERE, "make_moe_ckpt.py"), arch, ck], check=True)
    src = read_st(os.path.join(ck, "model.safetensors"))
    cfg = json.load(open(os.path.join(ck, "config.json")))
    E = cfg.get("num_experts", cfg.get("num_local_experts"))
    I = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
    blk, (g, u, d) = expert_names(arch)
    for tp in (1, 2, 4):
        for ep in (False, True):
            if ep and tp == 1:
                continue
            ranks = shard(ck, tp, ep, os.path.join(TMP, "out-%s-%d-%d" % (arch, tp, ep)))
            seen = {}
            for r, st in enumerate(ranks):
                # linear placement: base = E // tp, the first E % tp ranks one more
                base, rem = (E // tp, E % tp) if ep else (E, 0)
                n_local = base + (r < rem) if ep else E
                start = r * base + min(r, rem) if ep else 0
                mtp, mr = (1, 0) if ep else (tp, r)
                Ip = I // mtp
                for layer in (0, 1):
                    pre = "model.layers.%d.%s" % (layer, blk)
                    w13 = st.get(pre + ".experts.routed_experts.w13_weight")
                    w2 = st.get(pre + ".experts.routed_experts.w2_weight")
                    if arch == "qwen3" and layer == 1:
                        if w13 or w2:
                            print("FAIL: %s layer 1 is dense (mlp_only_layers) but has experts" % arch); fails += 1
                        continue
                    if w13[1] != [n_local, 2 * Ip, cfg["hidden_size"]] or w2[1] != [n_local, cfg["hidden_size"], Ip]:
                        print("FAIL: %s tp=%d ep=%s rank %d: shapes %s %s" % (arch, tp, ep, r, w13[1], w2[1])); fails += 1
                        continue
                    slab13 = len(w13[2]) // n_local
                    slab2 = len(w2[2]) // n_local
                    for e in range(n_local):
                        gid = start + e
                        q = "%s.experts.%d." % (pre, gid)
                        want = rows(src[q + g + ".weight"], mr * Ip, Ip) + rows(src[q + u + ".weight"], mr * Ip, Ip)
                        got = w13[2][e * slab13:(e + 1) * slab13]
                        want2 = cols(src[q + d + ".weight"], mr * Ip, Ip)
                        got2 = w2[2][e * slab2:(e + 1) * slab2]
                        if got != want or got2 != want2:
                            print("FAIL: %s tp=%d ep=%s rank %d layer %d expert %d differs" % (arch, tp, ep, r, layer, gid))
                            fails += 1
                        seen[(layer, gid)] = seen.get((layer, gid), 0) + 1
                    router = st[pre + ".gate.weight"]
                    if router[2] != src[pre + ".gate.weight"][2]:
                        print("FAIL: %s router not replicated whole" % arch); fails += 1
            n_layers = 1 if arch == "qwen3" else 2
            want_count = 1 if ep else tp
            if sorted(seen.values()) != [want_count] * (E * n_layers):
                print("FAIL: %s tp=%d ep=%s: experts held %s" % (arch, tp, ep, seen)); fails += 1
# split vs fused on disk (Qwen3-MoE, transformers v5 layout), same values
split, fused = os.path.join(TMP, "moe-split"), os.path.join(TMP, "moe-fused")
subprocess.run([sys.executable, os.path.join(HERE, "make_moe_ckpt.py"), "qwen3", split], check=True)
src = read_st(os.path.join(split, "model.safetensors"))
E, MI = 5, 32
hdr = {}
for k, v in src.items():
    if ".experts." in k:
        continue
    hdr[k] = v
for layer in (0,):
    pre = "model.layers.%d.mlp.experts." % layer
    gu = b"".join(src[pre + "%d.gate_proj.weight" % e][2] + src[pre + "%d.up_proj.weight" % e][2] for e in range(E))
    dn = b"".join(src[pre + "%d.down_proj.weight" % e][2] for e in range(E))
    hdr[pre + "gate_up_proj"] = ("BF16", [E, 2 * MI, 64], gu)
    hdr[pre + "down_proj"] = ("BF16", [E, 64, MI], dn)
os.makedirs(fused, exist_ok=True)
with open(os.path.join(split, "config.json")) as f, open(os.path.join(fused, "config.json"), "w") as o:
    o.write(f.read())
meta, off, blobs = {}, 0, []
for k in sorted(hdr):
    dt, shape, b = hdr[k]
    meta[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(meta).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(fused, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
for tp, ep in ((1, False), (2, False), (2, True), (4, True)):
    a = shard(split, tp, ep, os.path.join(TMP, "o-split-%d-%d" % (tp, ep)))
    b = shard(fused, tp, ep, os.path.join(TMP, "o-fused-%d-%d" % (tp, ep)))
    if a != b:
        print("FAIL: split and fused-on-disk experts differ at tp=%d ep=%s" % (tp, ep)); fails += 1
# a missing expert projection is named
miss = os.path.join(TMP, "moe-miss")
subprocess.run([sys.executable, os.path.join(HERE, "make_moe_ckpt.py"), "mixtral", miss], check=True)
st = read_st(os.path.join(miss, "model.safetensors"))
del st["model.layers.0.block_sparse_moe.experts.3.w3.weight"]
meta, off, blobs = {}, 0, []
for k in sorted(st):
    dt, shape, b = st[k]
    meta[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(meta).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(miss, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
r = subprocess.run([QTL, "load", miss, "--tp", "2", "--stage", "loaded"], capture_output=True, text=True)
want = "'model.layers.0.block_sparse_moe.experts.3.w3.weight' is absent: expert 3's rows (w3)"
if r.returncode != 1 or want not in r.stdout:
    print("FAIL: a missing expert projection: rc %d\n%s" % (r.returncode, r.stdout)); fails += 1
r = subprocess.run([QTL, "load", miss, "--tp", "2", "--ep", "--stage", "loaded", "--rank", "1"], capture_output=True, text=True)
if r.returncode != 0:  # expert 3 lives on rank 1 under EP (5 experts: 3 + 2)... it must fail there
    pass
r0 = subprocess.run([QTL, "load", miss, "--tp", "2", "--ep", "--stage", "loaded", "--rank", "0"], capture_output=True, text=True)
if r.returncode != 1 or r0.returncode != 0:
    print("FAIL: under EP only the rank holding expert 3 (rank 1) misses it: rc %d / %d" % (r0.returncode, r.returncode))
    fails += 1
print("moe checks: %d failure(s)" % fails)
sys.exit(1 if fails else 0)
