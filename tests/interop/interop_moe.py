#!/usr/bin/env python3
"""qtl's MoE loading against vLLM 0.32's own loader (not part of make test; run it in the interop venv):

    build/interop-venv/bin/python tests/interop/interop_moe.py BUILD_DIR

For tiny Mixtral and Qwen3-MoE checkpoints (tests/moe/make_moe_ckpt.py: BF16, split and fused on
disk; and, when BUILD_DIR/qtl fixture knows --arch mixtral|qwen3-moe, qtl's fixtures of every
scheme, Qwen3-MoE also with --fused-experts), at tp 1, tp 2 and tp 2 + expert parallel
(enable_expert_parallel=True / qtl shard --ep): vLLM's named_parameters() of every rank right after
loader.load_weights (stage loaded, before process_weights_after_loading; one process per rank, gloo,
as the vllm part of interop.py) must equal the tensors of `qtl shard CKPT --tp T [--ep] --stage
loaded`: the same names, dtypes and shapes, and the same bytes wherever a checkpoint tensor wrote
vLLM's parameter. Bytes no checkpoint tensor writes are torch.empty garbage in vLLM: they are found by
building the model twice more with torch.empty returning memory filled with 0x5A and then 0xA5 (only
the initial garbage changes; a byte keeping the fill in both runs was never written), left out of the
comparison and reported (vLLM-only parameters that are nothing but garbage are reported, not failed).
Names interop.py's VLLM_ONLY documents are vLLM-only by design.

Only the kernel / backend *selection* is substituted so that the CPU build constructs the layers:
interop.py's kernel_substitutes() for the dense layers, and for NVFP4 MoE the Marlin experts class
(what a GPU without FP4 MMA, e.g. sm80/sm90 without FlashInfer, selects) reports the current device as
supported inside select_nvfp4_moe_backend. FP8 MoE needs none (vLLM's CPU build selects
Fp8MoeBackend.NONE and still constructs and loads every parameter). A `NOTE globalsf` run repeats the
NVFP4 checkpoints at tp 2 + EP with the FlashInfer CUTLASS experts class substituted instead
(use_global_sf: every rank holds every expert's input scales, moe-vllm-facts.md section 5.33); it is
informational, since qtl models the per-rank (non-FlashInfer) layout.

Also: Mixtral fused on disk under three namings (make_moe_ckpt's block_sparse_moe.experts.gate_up_proj,
transformers v5's mlp.experts.gate_up_proj, and experts.w13 / experts.w2, the names vLLM's mapping has
for w1/w3 experts), Mixtral experts named gate_proj/up_proj/down_proj, FP8 block scale refinement
(--moe-intermediate 128 / 192) and checkpoints with missing expert tensors (--break). A fused checkpoint
with a split twin of the same values (qtl fixture --fused-experts; make_moe_ckpt's fused ones, split
here) is, when qtl refuses it, also compared against qtl's output for the twin.

Verdicts: PASS equal over the written bytes (or both refuse); FAIL any difference, bytes vLLM never
writes that qtl loads without an error-level finding, or vLLM loads a checkpoint qtl refuses for
another reason than a documented gap (a refusal where vLLM leaves parameters unwritten passes). When
qtl's only errors are scale.unwritten / param.unwritten, it is re-run with --allow for them (said in the
result). SKIP when qtl refuses with "not supported yet" / "does not model yet" (vLLM's outcome
recorded) or vLLM's CPU build cannot construct the layer even with the substitutes. Ends with
"N passed, N failed, N skipped"; exit 1 on a FAIL.
QTL_INTEROP_ONLY=REGEX limits it to matching checkpoint names.
"""
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import interop as I  # noqa: E402  (helpers only: kernel_substitutes, free_port, raw_bytes, VLLM_ONLY, ...)

FILLS = (0x5A, 0xA5)
QTL_GAP = re.compile(r"not supported yet|does not model yet")
CPU_GAP = re.compile(r"No \S+ MoE backend supports|Failed to find a kernel|not supported on CPU|CPU backend")
SCHEMES = ("bf16", "fp8", "fp8-dynamic", "fp8-block", "ct-fp8", "ct-fp8-channel", "ct-fp8-block", "ct-int8",
           "ct-int8-channel", "ct-int8-asym", "ct-nvfp4", "ct-nvfp4a16", "ct-w4a16", "ct-w4a16-asym", "ct-w8a16",
           "ct-w4a16-actorder", "modelopt-fp8", "modelopt-nvfp4")
MODES = (("tp1", 1, False), ("tp2", 2, False), ("tp2-ep", 2, True))

# ---------------------------------------------------------------------------------------------
# worker side (inside the venv, one process per rank)

NVFP4_PICK = {"kind": "marlin"}  # which experts class the NVFP4 substitute lets through (per job)


def moe_substitutes(used):
    """NVFP4 MoE backend selection on the CPU: vLLM's select_nvfp4_moe_backend walks its backend list
    and asks each experts class is_supported_config, whose _supports_current_device is False on the
    CPU for all of them. Only while that function runs, the chosen class (MarlinExperts, or
    FlashInferExperts for the globalsf runs) answers True; every other check is vLLM's own."""
    from vllm.model_executor.layers.fused_moe.oracle import nvfp4 as o
    import vllm.model_executor.layers.quantization.modelopt as mo
    import vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors_moe.\
        compressed_tensors_moe_w4a4_nvfp4 as ctn
    orig = o.select_nvfp4_moe_backend
    targets = {"marlin": o.NvFp4MoeBackend.MARLIN, "flashinfer_cutlass": o.NvFp4MoeBackend.FLASHINFER_CUTLASS}

    def select(*a, **kw):
        cls = o.backend_to_kernel_cls(targets[NVFP4_PICK["kind"]])[0]
        # Marlin: only the device check; FlashInfer CUTLASS's quant-scheme check asks the GPU's
        # compute capability too, so there the whole is_supported_config answers yes
        attr = "_supports_current_device" if NVFP4_PICK["kind"] == "marlin" else "is_supported_config"
        had = cls.__dict__.get(attr)
        setattr(cls, attr, staticmethod((lambda: True) if attr == "_supports_current_device" else
                                        (lambda *x, **y: (True, None))))
        try:
            backend, k = orig(*a, **kw)
        finally:
            if had is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, had)
        used.append("NVFP4 MoE: %s selected (%s.%s substituted)" % (backend.value, cls.__name__, attr))
        return backend, k
    o.select_nvfp4_moe_backend = select
    mo.select_nvfp4_moe_backend = select
    ctn.select_nvfp4_moe_backend = select


class EmptyFill:
    """torch.empty returns memory filled with one byte value (None: untouched) while building the model."""

    def __init__(self, value):
        self.value = value

    def __enter__(self):
        import torch
        self.orig = torch.empty
        if self.value is None:
            return self
        orig, v = self.orig, self.value

        def empty(*a, **kw):
            t = orig(*a, **kw)
            try:
                if t.device.type == "cpu" and t.numel() and t.is_contiguous():
                    t.reshape(-1).view(torch.uint8).fill_(v)
            except (RuntimeError, TypeError):
                pass
            return t
        torch.empty = empty
        return self

    def __exit__(self, *exc):
        import torch
        torch.empty = self.orig


def moe_info(model):
    """What vLLM decided per RoutedExperts (quant method, backend, placement)."""
    from vllm.model_executor.layers.fused_moe.routed_experts import RoutedExperts
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, RoutedExperts):
            qm = mod.quant_method
            em = mod.expert_map
            out[name] = {
                "method": type(qm).__name__,
                "backend": str(getattr(qm, "nvfp4_backend", getattr(qm, "fp8_backend", "")) or ""),
                "use_global_sf": bool(getattr(qm, "use_global_sf", False)),
                "refine": list(getattr(qm, "weight_scale_refine", None) or []),
                "local": int(mod.local_num_experts), "global": int(mod.global_num_experts),
                "expert_map": em.tolist() if em is not None else None,
                "ispp": int(mod.intermediate_size_per_partition),
            }
    return out


def run_job(job, tp, rank, used):
    """One checkpoint on this rank: the model built and loaded three times (torch.empty untouched, then
    filled with each of FILLS); saves the untouched run's named_parameters and the mask of bytes that
    kept the fill in both filled runs (never written). Returns the job's result dict."""
    import gc
    import torch
    from safetensors.torch import save_file
    from vllm.config import set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.utils.torch_utils import set_default_torch_dtype

    def err(e):
        lines = [x.strip() for x in ("%s: %s" % (type(e).__name__, e)).splitlines() if x.strip()]
        return (" ".join(lines[:1] + [x for x in lines if x.startswith("Value error")][:1]))[:400]

    NVFP4_PICK["kind"] = job.get("nvfp4", "marlin")
    res = {}
    snaps = []
    for fill in (None,) + (FILLS if job["masks"] else ()):
        del used[:]
        try:
            cfg = EngineArgs(model=job["ckpt"], enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
                             tensor_parallel_size=tp, enable_expert_parallel=job["ep"]).create_engine_config()
            with set_current_vllm_config(cfg):
                loader, mc = get_model_loader(cfg.load_config), cfg.model_config
                with set_default_torch_dtype(mc.dtype), torch.device("cpu"), EmptyFill(fill):
                    model = loader.create_model(vllm_config=cfg, model_config=mc)
                t = time.perf_counter()
                loader.load_weights(model, mc)
                secs = time.perf_counter() - t
        except Exception as e:
            return {"refused": err(e)}
        snaps.append({n: p.detach().contiguous().clone() for n, p in model.named_parameters()})
        if fill is None:
            res["load_seconds"] = secs
            res["substitutes"] = sorted(set(used))
            res["moe"] = moe_info(model)
            params = set(n for n, _ in model.named_parameters())
            res["buffers"] = sorted(n for n, _ in model.named_buffers())
            res["state_dict_aliases"] = sorted(k for k in model.state_dict() if k not in params and
                                               k not in res["buffers"])
        del model
        gc.collect()
    base = snaps[0]
    save_file(base, job["out"] + "-rank-%d.safetensors" % rank)
    if job["masks"]:
        masks, unstable = {}, []
        for n, t in base.items():
            b = [I.raw_bytes(s[n]) for s in snaps[1:]]
            m = (b[0] == FILLS[0]) & (b[1] == FILLS[1])
            if bool(m.any()):
                masks[n] = m.to(torch.uint8)
            raw = I.raw_bytes(t)
            if any(not torch.equal(raw[~m], x[~m]) for x in b):
                unstable.append(n)
        save_file(masks, job["out"] + "-rank-%d-mask.safetensors" % rank)
        res["unstable"] = unstable
    return res


def worker(jobs_path, tp, rank, port):
    """The MoE part's rank process: interop.serve_jobs over run_job, with the MoE backend substitutes."""
    I.serve_jobs(jobs_path, tp, rank, port, run_job, "out", setup=moe_substitutes)


def run_workers(jobs, tp, work, tag):
    return I.run_rank_workers(os.path.abspath(__file__), "--worker", jobs, tp, work, tag, "out", 600 + 30 * len(jobs))

# ---------------------------------------------------------------------------------------------
# orchestrator side


def checkpoints(build, work):
    """(name, dir, arch, scheme) of every checkpoint compared."""
    qtl = I.qtl_bin(build)
    out = []
    make = os.path.join(ROOT, "tests", "moe", "make_moe_ckpt.py")
    for arch, fused in (("qwen3", False), ("qwen3", True), ("mixtral", False), ("mixtral", True)):
        name = "make_moe_ckpt %s%s" % (arch, " fused" if fused else "")
        d = os.path.join(work, "ck-tiny-%s%s" % (arch, "-fused" if fused else ""))
        subprocess.run([sys.executable, make, arch, d] + (["fused"] if fused else []), check=True)
        out.append((name, d, arch, "bf16"))
    for arch in ("qwen3", "mixtral"):  # split twins of the fused ones (same values), for qtl only
        src = os.path.join(work, "ck-tiny-%s-fused" % arch)
        TWINS[src] = src + "-splittwin"
        unfuse(src, TWINS[src], arch)
    fused = os.path.join(work, "ck-tiny-mixtral-fused")
    # transformers v5's own fused Mixtral names (conversion_mapping.py: .block_sparse_moe. -> .mlp.)
    d = fused + "-v5names"
    rename_tensors(fused, d, [(".block_sparse_moe.", ".mlp.")])
    out.append(("make_moe_ckpt mixtral fused, v5 names (mlp.experts.gate_up_proj)", d, "mixtral", "bf16"))
    # the fused names vLLM's Mixtral loader maps (gate_up = "w13" for w1/w3 names, routed_experts.py:1215-1216)
    d = fused + "-w13names"
    rename_tensors(fused, d, [(".experts.gate_up_proj", ".experts.w13"), (".experts.down_proj", ".experts.w2")])
    out.append(("make_moe_ckpt mixtral fused, vLLM's fused names (experts.w13 / experts.w2)", d, "mixtral", "bf16"))
    TWINS[d] = TWINS[fused]
    help_text = subprocess.run([qtl, "fixture", "--help"], capture_output=True, text=True).stdout
    if "mixtral" not in help_text or "qwen3-moe" not in help_text:
        print("NOTE qtl fixture has no --arch mixtral|qwen3-moe: only make_moe_ckpt.py checkpoints")
        return out
    # 5 experts: E % ep = 1 at ep 2 (the first rank holds one more); H 256 and I 256: whole 128-blocks
    # at tp 2, NVFP4 16-groups; attention with 2 kv heads (tp 2); vocab padded to 128; 2 shards
    small = ["--layers", "2", "--hidden", "256", "--heads", "2", "--kv-heads", "2", "--head-dim", "128",
             "--intermediate", "512", "--moe-intermediate", "256", "--experts", "5", "--vocab", "100",
             "--shards", "2"]
    variants = [(arch, sc, []) for arch in ("mixtral", "qwen3-moe") for sc in SCHEMES]
    variants += [("qwen3-moe", sc, ["--fused-experts"]) for sc in ("bf16", "fp8-block")]
    # FP8 block with I' not a multiple of 128: vLLM refines the scale grid (gcd rule, section 5.31):
    # I 128 at tp 2 (I' 64, grid 64x64; tp 1 and EP need none), I 192 (not whole blocks even at tp 1)
    variants += [("qwen3-moe", "fp8-block", ["--moe-intermediate", "128"]),
                 ("qwen3-moe", "fp8-block", ["--moe-intermediate", "192"])]
    # tensors missing on disk: vLLM keeps torch.empty garbage (or its ones) there, qtl reports it
    variants += [("qwen3-moe", "bf16", ["--break", "expert.missing"]), ("mixtral", "fp8", ["--break", "scale.unwritten"]),
                 ("qwen3-moe", "ct-nvfp4", ["--break", "scale.unwritten"])]
    for arch, sc, extra in variants:
        tag = "".join(x.replace("--", "-") for x in extra)
        d = os.path.join(work, "ck-%s-%s%s" % (arch, sc, tag))
        args = small + (["--mlp-only-layers", "1"] if arch == "qwen3-moe" else []) + extra
        r = subprocess.run([qtl, "fixture", "--arch", arch, "--scheme", sc, "-o", d] + args,
                           capture_output=True, text=True)
        name = "fixture %s %s%s" % (arch, sc, " " + " ".join(extra) if extra else "")
        if r.returncode:
            print("SKIP %s: qtl fixture refuses it: %s" % (name, (r.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        out.append((name, d, arch, sc))
        if "--fused-experts" in extra:  # qtl fixture: the split one of the same arguments has the same values
            TWINS[d] = os.path.join(work, "ck-%s-%s" % (arch, sc))
        if arch == "mixtral" and sc in ("bf16", "ct-nvfp4") and not extra:
            # expert names gate_proj/up_proj/down_proj, as W8A8 compressed-tensors exports of Mixtral have
            # them (MixtralModel.hf_to_vllm_mapper maps them to w1/w3/w2, models/mixtral.py:292-298)
            dd = d + "-gateupdown"
            rename_tensors(d, dd, [(".w1.", ".gate_proj."), (".w3.", ".up_proj."), (".w2.", ".down_proj.")])
            out.append((name + ", experts named gate_proj/up_proj/down_proj", dd, arch, sc))
    return out


TWINS = {}  # fused-on-disk checkpoint -> a split-on-disk one with the same values (qtl is run on it too)


def unfuse(src, dst, arch):
    """The split-on-disk twin of make_moe_ckpt.py's fused checkpoint src: experts.gate_up_proj [E, 2I, H]
    -> experts.e.<gate>.weight rows [0, I) and experts.e.<up>.weight rows [I, 2I); down_proj [E, H, I]
    -> experts.e.<down>.weight."""
    import shutil
    from safetensors.torch import load_file, save_file
    g, u, dn = ("w1", "w3", "w2") if arch == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "config.json"), dst)
    sd = load_file(os.path.join(src, "model.safetensors"))
    out = {}
    for k, t in sd.items():
        if k.endswith(".experts.gate_up_proj"):
            i = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[k[:-len("gate_up_proj")] + "%d.%s.weight" % (e, g)] = t[e, :i].clone()
                out[k[:-len("gate_up_proj")] + "%d.%s.weight" % (e, u)] = t[e, i:].clone()
        elif k.endswith(".experts.down_proj"):
            for e in range(t.shape[0]):
                out[k[:-len("down_proj")] + "%d.%s.weight" % (e, dn)] = t[e].clone()
        else:
            out[k] = t
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})


def rename_tensors(src, dst, pairs):
    """A copy of checkpoint src with each (old, new) of pairs replaced in every tensor name (same bytes)."""
    import shutil
    import struct
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for f in os.listdir(src):
        p = os.path.join(src, f)

        def ren(k):
            for a, b in pairs:
                k = k.replace(a, b)
            return k
        if f.endswith(".index.json"):
            idx = json.load(open(p))
            idx["weight_map"] = {ren(k): v for k, v in idx["weight_map"].items()}
            json.dump(idx, open(os.path.join(dst, f), "w"), indent=2)
            continue
        if not f.endswith(".safetensors"):
            shutil.copy(p, os.path.join(dst, f))
            continue
        blob = open(p, "rb").read()
        n = struct.unpack("<Q", blob[:8])[0]
        hdr = json.loads(blob[8:8 + n])
        h = json.dumps({ren(k): v for k, v in hdr.items()}).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(dst, f), "wb") as o:
            o.write(struct.pack("<Q", len(h)) + h + blob[8 + n:])


# qtl's findings for parameter bytes no checkpoint tensor writes (vLLM keeps torch.empty / its init there)
ALLOWABLE = {"scale.unwritten", "param.unwritten"}


def qtl_shard(qtl, d, tp, ep, out):
    """qtl shard --stage loaded; when its only error-level findings say some parameter bytes are never
    written (ALLOWABLE), once more with --allow for them. Returns (error line or None, [allowed IDs])."""
    base = [qtl, "shard", d, "--tp", str(tp), "--stage", "loaded", "-o", out] + (["--ep"] if ep else [])
    r = subprocess.run(base, capture_output=True, text=True)
    if r.returncode == 0:
        return None, []
    lines = [x.strip() for x in r.stderr.strip().splitlines() if x.strip()]
    ids = set(re.findall(r"error \[([\w.-]+)\]", r.stderr))
    if ids and ids <= ALLOWABLE:
        r2 = subprocess.run(base + [a for i in sorted(ids) for a in ("--allow", i)], capture_output=True, text=True)
        if r2.returncode == 0:
            return None, sorted(ids)
        lines = [x.strip() for x in r2.stderr.strip().splitlines() if x.strip()]
    why = (next((x for x in lines if QTL_GAP.search(x)), None) or next((x for x in lines if "error [" in x), None)
           or (lines or ["exit %d" % r.returncode])[0])
    return why[:400], []


def desc(t):
    return I.tensor_desc(t)


def values(t, m=None, n=4):
    """A few values of t (where mask m, if given), for reports."""
    import torch
    x = t.reshape(-1)
    if m is not None:
        # m is a byte mask; take whole elements whose first byte is masked
        es = t.element_size()
        em = m.reshape(-1, es)[:, 0].bool() if es > 1 else m.bool()
        x = x[em]
    if t.dtype in (torch.float8_e4m3fn, torch.uint8):
        vals = x.view(torch.uint8)[:n].tolist()
        return "bytes %s" % ["0x%02x" % v for v in vals]
    return "%s" % [float(v) for v in x[:n].tolist()]


def compare_rank(vsd, masks, qsd, allowed):
    """vLLM's loaded params vsd (with never-written byte masks) vs qtl's rank file qsd.
    Returns (equal, partly-garbage notes, vLLM-only-garbage notes, documented vLLM-only, problems).
    Bytes vLLM never writes are left out of the comparison; that qtl loads such a parameter without
    an error-level finding (allowed: qtl shard needed --allow scale.unwritten) is a problem: vLLM
    would serve garbage there."""
    import torch
    equal, partial, garbage, doc, probs = [], [], [], [], []
    for k in sorted(set(vsd) | set(qsd)):
        v, q, m = vsd.get(k), qsd.get(k), masks.get(k)
        if v is None:
            probs.append("%s: qtl has it (%s), vLLM does not" % (k, desc(q)))
            continue
        if q is None:
            if any(re.search(p, k) for p, _ in I.VLLM_ONLY):
                doc.append(k)
            elif m is not None and bool(m.all()):
                garbage.append("%s (%s, never written)" % (k, desc(v)))
            else:
                probs.append("%s: vLLM has it (%s%s), qtl does not" % (
                    k, desc(v), ", %d of %d bytes written" % (int((m == 0).sum()), m.numel()) if m is not None else ""))
            continue
        if v.dtype != q.dtype or v.shape != q.shape:
            probs.append("%s: vLLM %s, qtl %s%s" % (k, desc(v), desc(q), " (vLLM never writes it)"
                                                    if m is not None and bool(m.all()) else ""))
            continue
        a, b = I.raw_bytes(v), I.raw_bytes(q)
        keep = torch.ones_like(a, dtype=torch.bool) if m is None else ~m.bool()
        diff = (a != b) & keep
        if bool(diff.any()):
            idx = int(diff.nonzero()[0])
            es = v.element_size()
            el = idx // es
            flat_v, flat_q = v.reshape(-1), q.reshape(-1)
            coord = list(torch.unravel_index(torch.tensor(el), v.shape)) if v.dim() else []
            probs.append("%s %s: %d of %d written bytes differ; first at element %s: vLLM %s, qtl %s" % (
                k, desc(v), int(diff.sum()), int(keep.sum()), [int(c) for c in coord],
                values(flat_v[el:el + 1]), values(flat_q[el:el + 1])))
            continue
        if m is not None:
            note = "%s: %d of %d bytes never written by vLLM (vLLM there: %s; qtl: %s)" % (
                k, int(m.sum()), m.numel(), values(v, m), values(q, m))
            if not allowed:
                probs.append(note + " -- qtl loads it without an error-level finding")
                continue
            partial.append(note)
        equal.append(k)
    return equal, partial, garbage, doc, probs


def twin_check(qtl, job, d, mode, tp, ep):
    """vLLM's state for fused checkpoint d against qtl's output for its split twin (same values)."""
    from safetensors.torch import load_file
    twin = TWINS.get(d)
    if not twin:
        return ""
    out = job["out"] + "-twin-qtl"
    err, allowed = qtl_shard(qtl, twin, tp, ep, out)
    if err:
        return "; qtl refuses the split twin too: %s" % err
    probs, neq = [], 0
    for r in range(tp):
        vsd = load_file(job["out"] + "-rank-%d.safetensors" % r)
        masks = load_file(job["out"] + "-rank-%d-mask.safetensors" % r)
        eq, _, _, _, pr = compare_rank(vsd, masks, load_file(os.path.join(out, "model-rank-%d-part-0.safetensors" % r)),
                                       allowed)
        neq += len(eq)
        probs += ["rank %d: %s" % (r, p) for p in pr]
    return "; vLLM's state for it against qtl's for the split-on-disk twin %s (same values): %s" % (
        os.path.basename(twin), "%d parameters equal, no difference" % neq if not probs else
        "%d equal, differences: %s" % (neq, I.short(probs, 3)))


def how(rr):
    """vLLM's MoE decisions, for reports."""
    first = next(iter(rr[0].get("moe", {}).values()), {})
    s = "%s%s, E_local %s" % (first.get("method", "?"), " backend %s" % first["backend"] if first.get("backend") else "",
                              "/".join(str(next(iter(x.get("moe", {}).values()), {}).get("local", "?")) for x in rr))
    if first.get("refine"):
        s += ", I' %d, FP8 block scales refined by %s" % (first["ispp"], first["refine"])
    return s


def verdicts(build, work, cks, results, qres, mode_jobs):
    """Prints one line per (checkpoint, mode); returns (ok, {"compared": N})."""
    from safetensors.torch import load_file
    ok_all = True
    counts = {"compared": 0}
    for (name, d, arch, sc), (mode, tp, ep), job in mode_jobs:
        tag = "moe %s %s" % (name, mode)
        rr = results[job["out"]]
        qerr, allowed = qres[(d, mode)]
        crash = [x["crash"] for x in rr if x.get("crash")]
        if crash:
            ok_all &= I.report(False, tag, "harness: %s" % crash[0].strip().splitlines()[-1])
            continue
        refused = [x["refused"] for x in rr if x.get("refused")]
        if refused:
            if CPU_GAP.search(refused[0]):
                print("SKIP %s: vLLM's CPU build cannot construct it (%s); qtl: %s" % (
                    tag, refused[0], "refuses (%s)" % qerr if qerr else "loads it"))
            elif qerr:
                I.report(True, "%s: vLLM refuses it (%s); qtl refuses it too (%s)" % (tag, refused[0], qerr))
            else:
                ok_all &= I.report(False, tag, "vLLM refuses it (%s); qtl loads it" % refused[0])
            continue
        subs = sorted(set(s for x in rr for s in x.get("substitutes", [])))
        if qerr:
            if QTL_GAP.search(qerr):
                print("SKIP %s: qtl does not model it yet (%s); vLLM loads it [%s]%s" % (
                    tag, qerr, how(rr), " [substitutes: %s]" % "; ".join(subs) if subs else ""))
            else:
                unwritten = sorted(set(k for r in range(tp) if job["masks"] for k in
                                       load_file(job["out"] + "-rank-%d-mask.safetensors" % r)))
                if unwritten:  # qtl's refusal stands for vLLM's garbage there
                    I.report(True, "%s: qtl refuses it (%s) where vLLM loads it but leaves %d parameter(s) (partly) "
                             "never written: %s [%s]" % (tag, qerr, len(unwritten), ", ".join(unwritten[:3]), how(rr)))
                else:
                    ok_all &= I.report(False, tag, "vLLM loads it [%s], qtl refuses: %s%s" % (
                        how(rr), qerr, twin_check(I.qtl_bin(build), job, d, mode, tp, ep)))
            continue
        probs, partial, garbage, ndoc, neq = [], [], [], 0, 0
        for r, x in enumerate(rr):
            if x.get("unstable"):
                probs.append("rank %d: vLLM's loaded values depend on torch.empty's initial contents: %s" % (
                    r, ", ".join(x["unstable"][:4])))
            vsd = load_file(job["out"] + "-rank-%d.safetensors" % r)
            masks = load_file(job["out"] + "-rank-%d-mask.safetensors" % r)
            qf = os.path.join(job["qout"], "model-rank-%d-part-0.safetensors" % r)
            if not os.path.exists(qf):
                probs.append("rank %d: qtl wrote no %s" % (r, os.path.basename(qf)))
                continue
            eq, pa, ga, do, pr = compare_rank(vsd, masks, load_file(qf), allowed)
            neq += len(eq)
            ndoc += len(do)
            partial += ["rank %d: %s" % (r, p) for p in pa]
            garbage += ["rank %d: %s" % (r, g) for g in ga]
            probs += ["rank %d: %s" % (r, p) for p in pr]
        counts["compared"] += 1
        extra = ""
        if partial or garbage:
            extra = "; left out as never written by vLLM (torch.empty): %s" % I.short(garbage + partial, 4)
        if allowed:
            extra += "; qtl needed %s" % " ".join("--allow " + a for a in allowed)
        ok_all &= I.report(not probs, "%s: %d parameters equal over %d rank(s), %d documented vLLM-only [%s]%s%s" % (
            tag, neq, tp, ndoc, how(rr), " [substitutes: %s]" % "; ".join(subs) if subs else "", "" if probs else extra),
            I.short(probs, 6))
    return ok_all, counts


def facts(cks, results, mode_jobs):
    """Observations on moe-vllm-facts.md from the runs (NOTE lines)."""
    seen_alias, seen_buf = set(), set()
    for (name, d, arch, sc), (mode, tp, ep), job in mode_jobs:
        rr = results[job["out"]]
        for r, x in enumerate(rr):
            for a in x.get("state_dict_aliases", []):
                seen_alias.add(re.sub(r"layers\.\d+", "layers.L", a))
            for b in x.get("buffers", []):
                seen_buf.add(re.sub(r"layers\.\d+", "layers.L", b))
            if ep and x.get("moe") and sc == "bf16" and name.startswith("fixture"):
                for mname, info in list(x["moe"].items())[:1]:
                    print("NOTE placement %s %s rank %d: %s holds %d of %d experts, expert_map %s" % (
                        name, mode, r, mname, info["local"], info["global"], info["expert_map"]))
    print("NOTE state_dict() names not in named_parameters()/named_buffers(): %s" % (sorted(seen_alias) or "none"))
    print("NOTE buffers (not compared; qtl writes parameters): %s" % (sorted(seen_buf) or "none"))


def globalsf_note(build, work, cks):
    """The NVFP4 checkpoints at tp 2 + EP with FlashInfer CUTLASS's experts class substituted (a
    global-SF backend): vLLM's input-scale parameters then have the global expert count (informational)."""
    from safetensors.torch import load_file
    qtl = I.qtl_bin(build)
    jobs, meta = [], []
    for name, d, arch, sc in cks:
        if sc not in ("ct-nvfp4", "modelopt-nvfp4"):
            continue
        out = os.path.join(work, "gsf-%s" % os.path.basename(d))
        qout = out + "-qtl"
        qerr, _ = qtl_shard(qtl, d, 2, True, qout)
        jobs.append({"ckpt": d, "ep": True, "out": out, "masks": True, "nvfp4": "flashinfer_cutlass"})
        meta.append((name, qout, qerr))
    if not jobs:
        return
    results, died = run_workers(jobs, 2, work, "globalsf")
    for job, (name, qout, qerr) in zip(jobs, meta):
        rr = results[job["out"]]
        bad = [x.get("refused") or x.get("crash") for x in rr if x.get("refused") or x.get("crash")]
        if bad:
            print("NOTE globalsf %s tp2-ep: vLLM cannot build it with FlashInfer CUTLASS substituted: %s" % (
                name, bad[0].strip().splitlines()[-1][:300]))
            continue
        import torch
        diffs = []
        vs = [load_file(job["out"] + "-rank-%d.safetensors" % r) for r in range(2)]
        qs = [load_file(os.path.join(qout, "model-rank-%d-part-0.safetensors" % r)) if not qerr else {} for r in range(2)]
        whole = {}
        for r, x in enumerate(rr):
            masks = load_file(job["out"] + "-rank-%d-mask.safetensors" % r)
            _, _, _, _, pr = compare_rank(vs[r], masks, qs[r], True)
            diffs += ["rank %d: %s" % (r, p) for p in pr if "layers.0." in p]
            for k, v in vs[r].items():  # a global-SF parameter: every expert's rows, qtl's ranks concatenated
                if k in qs[0] and v.shape[0] == next(iter(x["moe"].values()))["global"] and v.shape != qs[r][k].shape:
                    cat = torch.cat([qs[0][k], qs[1][k]])
                    whole.setdefault(re.sub(r"layers\.\d+", "layers.L", k), []).append(
                        v.shape == cat.shape and torch.equal(I.raw_bytes(v), I.raw_bytes(cat)))
        subs = sorted(set(s for x in rr for s in x.get("substitutes", []) if "NVFP4" in s))
        print("NOTE globalsf %s tp2-ep [%s, use_global_sf=%s]: vLLM vs qtl (per-rank layout), layer 0: %s%s" % (
            name, "; ".join(subs), next(iter(rr[0]["moe"].values()))["use_global_sf"],
            I.short(diffs, 4) or "no difference", "; global-expert parameters: %s" % ", ".join(
                "%s on every rank %s qtl's ranks concatenated" % (k, "==" if all(v) else "!=")
                for k, v in sorted(whole.items())) if whole else ""))


def main(build):
    import shutil
    t0 = time.perf_counter()
    qtl = I.qtl_bin(build)
    work = os.path.join(build, "interop-moe")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    only = os.environ.get("QTL_INTEROP_ONLY", "")
    cks = [c for c in checkpoints(build, work) if not only or re.search(only, c[0])]
    qres, mode_jobs = {}, []
    tq = time.perf_counter()
    for ck in cks:
        name, d, arch, sc = ck
        for mode, tp, ep in MODES:
            qout = os.path.join(work, "q-%s-%s" % (os.path.basename(d), mode))
            qres[(d, mode)] = qtl_shard(qtl, d, tp, ep, qout)
            job = {"ckpt": d, "ep": ep, "out": os.path.join(work, "v-%s-%s" % (os.path.basename(d), mode)),
                   "qout": qout, "masks": not qres[(d, mode)][0] or not QTL_GAP.search(qres[(d, mode)][0])}
            mode_jobs.append((ck, (mode, tp, ep), job))
    print("NOTE qtl shard: %d runs in %.1f s" % (len(qres), time.perf_counter() - tq))
    results = {}
    for tp in (1, 2):
        jobs = [j for _, (m, t, e), j in mode_jobs if t == tp]
        if not jobs:
            continue
        t = time.perf_counter()
        res, died = run_workers(jobs, tp, work, "tp%d" % tp)
        results.update(res)
        print("NOTE vLLM tp=%d: %d jobs (%s) in %.0f s%s" % (
            tp, len(jobs), "+".join(sorted(set(m for _, (m, tt, _), _ in mode_jobs if tt == tp))),
            time.perf_counter() - t, " (a worker died: %s)" % died if died else ""))
    ok, counts = verdicts(build, work, cks, results, qres, mode_jobs)
    facts(cks, results, mode_jobs)
    if not counts["compared"]:
        ok &= I.report(False, "moe: nothing compared", "every checkpoint was skipped or refused")
    if not only or re.search(only, "globalsf"):
        t = time.perf_counter()
        globalsf_note(build, work, cks)
        print("NOTE globalsf runs: %.0f s" % (time.perf_counter() - t))
    print("NOTE interop_moe: %.0f s" % (time.perf_counter() - t0))
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    import io
    buf = io.StringIO()
    real = sys.stdout

    class Tee:
        def write(self, s):
            real.write(s)
            real.flush()
            buf.write(s)

        def flush(self):
            real.flush()
    sys.stdout = Tee()
    ok = main(os.path.abspath(sys.argv[1]))
    lines = buf.getvalue().splitlines()
    print("%d passed, %d failed, %d skipped" % tuple(sum(x.startswith(p) for x in lines)
                                                      for p in ("PASS ", "FAIL ", "SKIP ")))
    sys.exit(0 if ok else 1)
