#!/usr/bin/env python3
"""Seed corpora of the fuzz targets, derived from `qtl fixture` output.

    python3 fuzz/make_seeds.py [QTL] [OUT]     (defaults: build/qtl, tests/fuzz)

writes OUT/fuzz_index, OUT/fuzz_config, OUT/fuzz_plan, OUT/fuzz_dequant
(seed-* files; the campaign's merged inputs sit next to them). The input
formats are described at the top of each fuzz/fuzz_<target>.c. Same qtl,
same bytes."""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

SEP = b"\xffQTL"
QTL = sys.argv[1] if len(sys.argv) > 1 else "build/qtl"
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/fuzz"

SMALL = ["--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1", "--head-dim", "16",
         "--intermediate", "32", "--vocab", "32"]
# WNA16 groups of 128 need 128 input columns
WIDE = ["--layers", "1", "--hidden", "128", "--heads", "2", "--kv-heads", "1", "--head-dim", "64",
        "--intermediate", "128", "--vocab", "32"]


def schemes():
    out = subprocess.run([QTL, "fixture", "--help"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    lines = text[text.index("schemes:"):text.index("breaks")].splitlines()[1:]
    return [l.split()[0] for l in lines if l.strip()]


def fixture(tmp, arch, scheme, dims, extra=()):
    d = os.path.join(tmp, f"{arch}-{scheme}-{len(os.listdir(tmp))}")
    subprocess.run([QTL, "fixture", "--arch", arch, "--scheme", scheme, "-o", d, *dims, *extra], check=True,
                   capture_output=True)
    return d


def read(path):
    with open(path, "rb") as f:
        return f.read()


def compact(path):
    """The JSON file, compact (same content, fewer bytes to mutate)."""
    if not os.path.exists(path):
        return b""
    return json.dumps(json.loads(read(path)), separators=(",", ":")).encode()


def shard_part(path, literal=False):
    """u32 fill + the file's header; the fill recreates the data's length (0x3C bytes),
    or the whole file with fill 0 when literal."""
    b = read(path)
    n = struct.unpack("<Q", b[:8])[0]
    if literal or len(b) < 8 or 8 + n > len(b):  # not safetensors (a git-lfs pointer): as it is
        return struct.pack("<I", 0) + b
    return struct.pack("<I", len(b) - 8 - n) + b[:8 + n]


def save(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def index_seeds(tmp, ckpts):
    for name, d in ckpts:
        idx = compact(os.path.join(d, "model.safetensors.index.json"))
        save("fuzz_index", name, idx)
        save("fuzz_index", name + "-file", idx + (b" " if len(idx) % 2 == 0 else b""))  # odd: opened as a file
    base = json.loads(read(os.path.join(dict(ckpts)["llama-fp8"], "model.safetensors.index.json")))
    wm = base["weight_map"]
    first = sorted(wm)[0]
    hand = {
        "empty-map": {"weight_map": {}},
        "null-metadata": {"metadata": None, "weight_map": {first: wm[first]}},
        "lfs": {"weight_map": {first: "lfs.safetensors"}},
        "short": {"weight_map": {first: "short.safetensors"}},
        "duplicate": {"weight_map": {"model.norm.weight": "model.safetensors", **wm}},
        "missing": {"weight_map": {first: "model-00009-of-00009.safetensors"}},
        "outside": {"weight_map": {first: "../x.safetensors"}},
        "subdir": {"weight_map": {first: "./sub/x.safetensors"}},
        "number": {"weight_map": {first: 1}},
        "list": [1, 2],
    }
    for k, v in hand.items():
        save("fuzz_index", k, json.dumps(v, separators=(",", ":")).encode())


def config_seeds(ckpts):
    for name, d in ckpts:
        cfg = compact(os.path.join(d, "config.json"))
        hfq = os.path.join(d, "hf_quant_config.json")
        data = cfg + (SEP + compact(hfq) if os.path.exists(hfq) else b"")
        save("fuzz_config", name, data)
    cfg = json.loads(read(os.path.join(dict(ckpts)["llama-ct-fp8"], "config.json")))
    q = cfg["quantization_config"]
    variants = {}
    for arch in ("MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM", "GPT2"):
        c = json.loads(json.dumps(cfg))
        c["architectures"] = [arch]
        variants["arch-" + arch] = c
    c = json.loads(json.dumps(cfg))
    c["quantization_config"]["ignore"] = ["lm_head", "re:.*layers\\.0\\.mlp\\..*", "re:model.layers.\\d+.self_attn.k_proj"]
    variants["ct-ignore-re"] = c
    c = json.loads(json.dumps(cfg))
    g = c["quantization_config"]["config_groups"]["group_0"]
    g["targets"] = ["re:.*q_proj", "re:.*[kv]_proj"]
    c["quantization_config"]["config_groups"]["group_1"] = dict(g, targets=["re:.*mlp.*", "Linear"])
    variants["ct-two-groups"] = c
    c = json.loads(json.dumps(cfg))
    c["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
                                "modules_to_not_convert": ["lm_head", "mlp.down_proj"]}
    variants["fp8-block-ignore"] = c
    c = json.loads(json.dumps(cfg))
    del c["quantization_config"]
    del c["head_dim"]
    c["torch_dtype"] = "float16"
    variants["bf16-no-head-dim"] = c
    for k, v in variants.items():
        save("fuzz_config", k, json.dumps(v, separators=(",", ":")).encode())
    # pipeline stages: pp byte (pp = byte % 8 + 1), then VLLM_PP_LAYER_PARTITION
    c = json.loads(json.dumps(cfg))
    c["num_hidden_layers"] = 32
    base = json.dumps(c, separators=(",", ":")).encode()
    for name, spec in (("pp3-default", b"\x02"), ("pp3-partition", b"\x0210,12,10"), ("pp2-negative", b"\x01-1,33"),
                       ("pp4-bad-count", b"\x0316,16"), ("pp2-spaces", b"\x01 16, 16")):
        save("fuzz_config", name, base + SEP + SEP + b"model.layers.31.mlp.down_proj" + SEP + spec)
    save("fuzz_config", "modelopt-hfq-names",
         compact(os.path.join(dict(ckpts)["llama-modelopt-nvfp4"], "config.json")).replace(b'"quantization_config"', b'"x"')
         + SEP + compact(os.path.join(dict(ckpts)["llama-modelopt-nvfp4"], "hf_quant_config.json"))
         + SEP + b"model.layers.0.self_attn.q_proj\nlm_head\nmodel.layers.0.mlp.down_proj")


def plan_input(d, f0=0, f1=0, literal=False, names=None):
    shards = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    parts = [compact(os.path.join(d, "config.json")), compact(os.path.join(d, "hf_quant_config.json")),
             compact(os.path.join(d, "model.safetensors.index.json"))]
    parts += [shard_part(os.path.join(d, s), literal) for s in shards[:2]]
    for p in parts:
        assert SEP not in p, d
    return bytes([f0, f1]) + SEP.join(parts)


def plan_seeds(tmp, ckpts):
    tps = {"tp1": 0, "tp2": 1}
    for name, d in ckpts:
        for t, bits in tps.items():
            if t != "tp1" and not name.startswith("llama"):
                continue
            save("fuzz_plan", f"{name}-{t}", plan_input(d, f0=bits))
    # 8 heads, 2 kv heads: tp 4 and 8 replicate the kv heads
    many = ["--layers", "1", "--hidden", "32", "--heads", "8", "--kv-heads", "2", "--head-dim", "4",
            "--intermediate", "32", "--vocab", "32"]
    for scheme in ("bf16", "fp8", "ct-int8-channel"):
        d = fixture(tmp, "llama", scheme, many)
        save("fuzz_plan", f"llama-{scheme}-h8-tp4", plan_input(d, f0=2))
        save("fuzz_plan", f"llama-{scheme}-h8-tp8-rank7", plan_input(d, f0=3 | 4))
    dd = dict(ckpts)
    save("fuzz_plan", "llama-fp8-literal", plan_input(dd["llama-fp8"], literal=True))
    save("fuzz_plan", "llama-ct-nvfp4-tp2-rank1-f16", plan_input(dd["llama-ct-nvfp4"], f0=1 | 4 | 0x20))
    save("fuzz_plan", "llama-ct-int8-allow-buffer", plan_input(dd["llama-ct-int8"], f0=0x80 | 0x08))
    save("fuzz_plan", "llama-modelopt-nvfp4-arena-2threads", plan_input(dd["llama-modelopt-nvfp4"], f0=0x10, f1=0x10))
    save("fuzz_plan", "llama-fp8-scales-only", plan_input(dd["llama-fp8"], f1=1))
    save("fuzz_plan", "llama-fp8-plan-only", plan_input(dd["llama-fp8"], f1=3))
    save("fuzz_plan", "llama-bf16-direct", plan_input(dd["llama-bf16"], f0=0x40))
    # pipeline parallel: 3 layers over 2 stages, default split and a partition
    d = fixture(tmp, "llama", "ct-fp8", ["--layers", "3"] + SMALL[2:])
    save("fuzz_plan", "llama-ct-fp8-pp2-stage0", plan_input(d, f1=0x20))
    save("fuzz_plan", "llama-ct-fp8-pp2-stage1-tp2", plan_input(d, f0=1, f1=0x20 | 0x40))
    save("fuzz_plan", "llama-ct-fp8-pp2-partition", plan_input(d, f1=0x20 | 0x40 | 0x80) + SEP + b"1,2")
    # no index: the directory's *.safetensors files
    d = dd["llama-bf16"]
    b = bytes([0, 0]) + SEP.join([compact(os.path.join(d, "config.json")), b"", b"",
                                  shard_part(os.path.join(d, "model-00001-of-00002.safetensors")),
                                  shard_part(os.path.join(d, "model-00002-of-00002.safetensors"))])
    save("fuzz_plan", "llama-bf16-no-index", b)
    # the fixture's real-world failures
    for brk, scheme, extra in (("scale.unwritten", "ct-fp8", ()), ("tensor.unmapped", "fp8", ()),
                               ("scale.nan", "ct-nvfp4", ()), ("scale.nonpositive", "fp8", ()),
                               ("tensor.dtype", "ct-fp8", ()), ("scale.convention", "ct-nvfp4", ()),
                               ("scale.slots-differ", "ct-nvfp4", ()), ("quant.layer-unquantized", "fp8", ()),
                               ("quant.layer-quantized", "ct-fp8", ()), ("shard-invalid", "fp8", ())):
        try:
            d = fixture(tmp, "llama", scheme, SMALL, ("--break", brk))
        except subprocess.CalledProcessError:
            continue
        literal = brk.startswith("scale.")  # the values are the point
        save("fuzz_plan", f"break-{brk}", plan_input(d, literal=literal))
    # a pre-sharded directory written by qtl shard, loaded and processed stages
    for stage in ("loaded", "processed"):
        d = dd["llama-fp8"]
        o = os.path.join(tmp, f"shard-{stage}")
        subprocess.run([QTL, "shard", d, "--tp", "2", "--stage", stage, "-o", o], check=True, capture_output=True)
        parts = [compact(os.path.join(o, "config.json")), b"", b"",
                 shard_part(os.path.join(o, "model-rank-0-part-0.safetensors")),
                 shard_part(os.path.join(o, "model-rank-1-part-0.safetensors"))]
        save("fuzz_plan", f"presharded-{stage}-tp2", bytes([1, 2 << 2]) + SEP.join(parts))


def dequant_seed(scheme, wdt, gran, sdt, zdt, flags, bits, group, br, bc, rows, cols, gscale, pool):
    # row0 0, nrows rows - 1: the clamp makes that every row
    hdr = struct.pack("<BBBBBBBBIHHQQfQI", scheme, wdt, gran, sdt, zdt, flags, bits, 0, group, br, bc, rows, cols,
                      gscale, 0, (rows - 1) & 0xFFFFFFFF)
    assert len(hdr) == 48
    return hdr + pool


def dequant_seeds():
    # enum values of qtl.h
    F4, U8, I8, E4M3, E8M0, F16, BF16, I32, F32 = 1, 4, 5, 7, 8, 13, 14, 15, 17
    NONE, FP8, INT8, NV_CT, NV_MO, MX, PACKED = range(7)
    TENSOR, CHANNEL, GROUP, BLOCK = range(4)
    pool = bytes((i * 37 + 11) & 0xFF for i in range(256)) + b"\x3c" * 64
    seeds = {
        "none-f32": (NONE, F32, TENSOR, F32, 0, 0, 0, 0, 0, 0, 4, 16, 0.0),
        "none-bf16": (NONE, BF16, TENSOR, F32, 0, 8, 0, 0, 0, 0, 5, 33, 0.0),
        "none-f16": (NONE, F16, TENSOR, F32, 0, 0, 0, 0, 0, 0, 3, 7, 0.0),
        "fp8-tensor": (FP8, E4M3, TENSOR, F32, 0, 0, 0, 0, 0, 0, 8, 40, 0.0),
        "fp8-channel-bf16": (FP8, E4M3, CHANNEL, BF16, 0, 8, 0, 0, 0, 0, 8, 40, 0.0),
        "fp8-block": (FP8, E4M3, BLOCK, F32, 0, 0x10, 0, 0, 16, 16, 40, 72, 0.0),
        "fp8-group-gidx": (FP8, E4M3, GROUP, F16, 0, 2, 0, 8, 0, 0, 4, 32, 0.0),
        "int8-channel-zp": (INT8, I8, CHANNEL, F32, I8, 1, 0, 0, 0, 0, 8, 24, 0.0),
        "int8-tensor-zp32": (INT8, I8, TENSOR, F32, I32, 1, 0, 0, 0, 0, 2, 24, 0.0),
        "int8-group-gidx": (INT8, I8, GROUP, BF16, I8, 3, 0, 8, 0, 0, 4, 32, 0.0),
        "nvfp4-ct": (NV_CT, U8, GROUP, E4M3, 0, 0, 0, 16, 0, 0, 4, 64, 448.0 * 6.0),
        "nvfp4-ct-f4-bf16": (NV_CT, F4, GROUP, E4M3, 0, 8 | 0x10, 0, 16, 0, 0, 8, 48, 100.0),
        "nvfp4-modelopt": (NV_MO, U8, GROUP, E4M3, 0, 0, 0, 16, 0, 0, 4, 64, 0.001),
        "mxfp4": (MX, U8, GROUP, E8M0, 0, 0, 0, 32, 0, 0, 4, 96, 0.0),
        "mxfp4-u8-bf16": (MX, U8, GROUP, U8, 0, 8, 0, 32, 0, 0, 3, 64, 0.0),
        "packed4-group": (PACKED, I32, GROUP, BF16, 0, 0, 4, 16, 0, 0, 8, 64, 0.0),
        "packed4-group-zp": (PACKED, I32, GROUP, F16, I32, 1, 4, 16, 0, 0, 8, 64, 0.0),
        "packed8-channel": (PACKED, I32, CHANNEL, F32, 0, 0x10, 8, 0, 0, 0, 8, 40, 0.0),
        "packed3-channel-zp": (PACKED, I32, CHANNEL, F32, I32, 1, 3, 0, 0, 0, 7, 45, 0.0),
        "packed4-gidx": (PACKED, I32, GROUP, F32, 0, 2, 4, 16, 0, 0, 4, 64, 0.0),
        "bad-scheme": (9, E4M3, TENSOR, F32, 0, 0, 0, 0, 0, 0, 4, 4, 0.0),
    }
    for name, s in seeds.items():
        save("fuzz_dequant", name, dequant_seed(*s[:12], s[12], pool))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = []
        for scheme in schemes():
            wna16 = "w4a16" in scheme or "w8a16" in scheme
            for arch in ("llama", "phi3"):
                d = fixture(tmp, arch, scheme, WIDE if wna16 else SMALL)
                ckpts.append((f"{arch}-{scheme}", d))
        index_seeds(tmp, [c for c in ckpts if c[0] in ("llama-fp8", "phi3-fp8", "llama-ct-nvfp4", "llama-bf16")])
        config_seeds(ckpts)
        plan_seeds(tmp, ckpts)
        dequant_seeds()
    for t in ("fuzz_index", "fuzz_config", "fuzz_plan", "fuzz_dequant"):
        d = os.path.join(OUT, t)
        files = [f for f in os.listdir(d) if f.startswith("seed-")]
        total = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        print(f"{d}: {len(files)} seeds, {total} bytes")


if __name__ == "__main__":
    main()
