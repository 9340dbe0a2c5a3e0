"""The qtl package against the C CLI: bit-exact parameters (FNV-1a of `qtl load --params`),
inspection, verification, errors, and buffers the caller allocated."""
from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess

import pytest

import qtl
from conftest import HAVE, fnv1a64, raw

SCHEMES = ("bf16", "fp8", "ct-nvfp4", "ct-w4a16-asym")


# ---- bit-exact against qtl load --params ------------------------------------------------------

@pytest.mark.parametrize("backend", [pytest.param("torch", marks=pytest.mark.torch),
                                     pytest.param("numpy", marks=pytest.mark.numpy)])
@pytest.mark.parametrize("stage", ["loaded", "processed"])
@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_load_equals_cli(fixture_dir, cli_params, scheme, tp, stage, backend):
    ckpt = fixture_dir(scheme)
    ref = cli_params(ckpt, tp, stage)
    for rank in range(tp):
        w = qtl.load(ckpt, tp=tp, rank=rank, stage=stage, backend=backend)
        assert list(w) == list(ref[rank]), "names or order differ from the CLI's"
        for name, (dtype, shape, h) in ref[rank].items():
            v = w[name]
            assert w.dtypes[name] == dtype, name
            assert w.shapes[name] == shape, name
            assert fnv1a64(raw(v)) == h, "%s: bytes differ from `qtl load --params` (rank %d)" % (name, rank)
        assert w.zero_copy == (stage == "processed")


@pytest.mark.numpy
@pytest.mark.parametrize("arch,scheme,tp,pp", [("phi3", "ct-nvfp4", 2, 1), ("llama", "ct-fp8", 2, 2)])
def test_phi3_and_pipeline_stages_equal_cli(fixture_dir, cli_params, arch, scheme, tp, pp):
    """Phi-3 (fused on disk) and pipeline stages (2 layers over pp 2): global rank g = pp_rank * tp + rank."""
    ckpt = fixture_dir(scheme, arch=arch, layers=2)
    for stage in ("loaded", "processed"):
        ref = cli_params(ckpt, tp, stage, pp)
        for g in range(tp * pp):
            w = qtl.load(ckpt, tp=tp, rank=g % tp, pp=pp, pp_rank=g // tp, stage=stage, backend="numpy")
            assert list(w) == list(ref[g])
            assert all(fnv1a64(raw(w[k])) == h for k, (_, _, h) in ref[g].items()), (stage, g)


@pytest.mark.numpy
def test_progress_callback(fixture_dir):
    calls = []
    qtl.load(fixture_dir("bf16"), backend="numpy", threads=2, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


@pytest.mark.torch
def test_torch_dtypes(fixture_dir):
    import torch
    w = qtl.load(fixture_dir("ct-nvfp4"))
    assert w["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert w["model.layers.0.self_attn.qkv_proj.weight_scale"].dtype == torch.float8_e4m3fn
    assert w["model.layers.0.self_attn.qkv_proj.weight_packed"].dtype == torch.uint8  # vLLM's packed NVFP4 param
    assert w["model.layers.0.self_attn.qkv_proj.weight_global_scale"].dtype == torch.float32
    w = qtl.load(fixture_dir("fp8"))
    assert w["model.layers.0.self_attn.qkv_proj.weight"].dtype == torch.float8_e4m3fn
    assert tuple(w["model.layers.0.self_attn.qkv_proj.weight"].shape) == w.shapes["model.layers.0.self_attn.qkv_proj.weight"]
    from qtl import _dtypes
    t, shape = _dtypes.torch_layout("F4", (4, 32), 64)
    assert shape == (4, 16) and t == getattr(torch, "float4_e2m1fn_x2", torch.uint8)
    assert _dtypes.torch_layout("F8_E8M0", (3,), 3)[0] == getattr(torch, "float8_e8m0fnu", torch.uint8)


@pytest.mark.numpy
def test_numpy_layout(fixture_dir):
    import numpy as np
    w = qtl.load(fixture_dir("fp8"), backend="numpy")
    name = "model.layers.0.self_attn.qkv_proj.weight"
    assert w[name].dtype == np.uint8 and w.dtypes[name] == "F8_E4M3" and w[name].shape == w.shapes[name]
    emb = "model.embed_tokens.weight"
    assert w.dtypes[emb] == "BF16" and w[emb].dtype == np.uint8
    assert w[emb].shape == (w.shapes[emb][0], w.shapes[emb][1] * 2)  # the last dimension in bytes
    f32 = [k for k, d in w.dtypes.items() if d == "F32"]
    assert f32 and all(w[k].dtype == np.float32 for k in f32)
    if HAVE["ml_dtypes"]:
        import ml_dtypes
        assert w.typed(emb).dtype == ml_dtypes.bfloat16 and w.typed(emb).shape == w.shapes[emb]
        assert w.typed(name).dtype == ml_dtypes.float8_e4m3fn


@pytest.mark.numpy
def test_processed_views_outlive_everything(fixture_dir, cli_params):
    """stage processed without copy: views of qtl's memory, which lives while a view does."""
    ckpt = fixture_dir("fp8")
    ref = cli_params(ckpt, 1, "processed")[0]
    w = qtl.load(ckpt, stage="processed", backend="numpy")
    name = next(iter(w))
    keep = w[name]
    del w
    gc.collect()
    junk = [bytearray(1 << 20) for _ in range(8)]  # reuse freed memory if it were freed
    assert fnv1a64(keep.tobytes()) == ref[name][2]
    del junk
    w2 = qtl.load(ckpt, stage="processed", backend="numpy", copy=True)
    assert not w2.zero_copy and all(fnv1a64(raw(w2[k])) == ref[k][2] for k in ref)


# ---- the plan, and buffers the caller allocated ----------------------------------------------

@pytest.mark.numpy
def test_plan_and_fill_buffers(fixture_dir, cli_params):
    import numpy as np
    ckpt = fixture_dir("ct-w4a16-asym")
    ref = cli_params(ckpt, 2, "loaded")[1]
    with qtl.plan(ckpt, tp=2, rank=1) as p:
        assert [(q.name, q.dtype, q.shape) for q in p.params] == [(k, v[0], v[1]) for k, v in ref.items()]
        assert sum(q.nbytes for q in p.params) > 0 and p.bytes_needed > 0
        assert all(os.path.exists(f) and size > 0 for f, size in p.files)
        assert p.layers and p.layers[0].scheme and p.ops()
        assert not p.errors()
        # a mix: numpy arrays, a bytearray, a memoryview; one left to qtl's memory
        bufs: dict = {}
        for i, q in enumerate(p.params[1:]):
            bufs[q.name] = bytearray(q.nbytes) if i % 3 == 0 else memoryview(bytearray(q.nbytes)) if i % 3 == 1 \
                else np.empty(q.nbytes, dtype=np.uint8)
        with pytest.raises(ValueError):
            p.bind(p.params[1].name, bytearray(p.params[1].nbytes + 1))  # the wrong size
        with pytest.raises(KeyError):
            p.fill({"no.such.param": bytearray(4)})
        p.fill(bufs)
        w = p.weights("numpy")
        for k, (_, _, h) in ref.items():
            got = bytes(bufs[k]) if k in bufs else raw(w[k])
            assert fnv1a64(got) == h, k
        with pytest.raises(ValueError):
            p.run()  # once per handle


@pytest.mark.torch
def test_fill_torch_tensors(fixture_dir, cli_params):
    import torch
    ckpt = fixture_dir("ct-nvfp4")
    ref = cli_params(ckpt, 2, "loaded")[0]
    with qtl.plan(ckpt, tp=2, rank=0) as p:
        from qtl import _dtypes
        ts = {}
        for q in p.params:
            t, shape = _dtypes.torch_layout(q.dtype, q.shape, q.nbytes)
            ts[q.name] = torch.empty(shape, dtype=t)
        with pytest.raises(ValueError):
            p.bind(0, torch.empty(ts[p.params[0].name].shape[::-1], dtype=torch.bfloat16).t())  # not contiguous
        p.fill(ts)
    for k, (_, _, h) in ref.items():
        assert fnv1a64(raw(ts[k])) == h, k


# ---- inspection ----------------------------------------------------------------------------

def test_inspect_matches_cli(fixture_dir, cli):
    ckpt = fixture_dir("ct-nvfp4")
    ref = json.loads(subprocess.run([cli, "inspect", ckpt, "--json"], capture_output=True, text=True,
                                    check=True).stdout)
    with qtl.open(ckpt) as ck:
        assert ck.files == [f["file"] for f in ref["files"]]
        assert ck.index_path and ck.index_path.endswith("model.safetensors.index.json")
        mine = {t.name: t for t in ck.tensors()}
        assert set(mine) == {t["name"] for t in ref["tensors"]}
        for t in ref["tensors"]:
            m = mine[t["name"]]
            assert (m.dtype, list(m.shape)) == (t["dtype"], t["shape"]), t["name"]
            assert os.path.basename(m.file) in ck.files
        assert ck.check() == []
        assert ck.metadata(0) == ref["files"][0]["metadata"]
        name = "model.layers.0.self_attn.q_proj.weight_scale"
        assert name in ck and "nope" not in ck
        b = ck.read(name, backend="bytes")
        assert len(b) == ck[name].nbytes
        with open(ck[name].file, "rb") as f:
            f.seek(ck[name].file_offset)
            assert f.read(len(b)) == b
    assert [t.name for t in qtl.inspect(ckpt)] == list(mine)


def test_checkpoint_errors(tmp_path, fixture_dir):
    with pytest.raises(qtl.QtlError) as e:
        qtl.open(str(tmp_path / "nope"))
    assert e.value.status_name in ("OPEN", "NO_CHECKPOINT") and e.value.status < 0
    d = tmp_path / "lfs"
    shutil.copytree(fixture_dir("bf16"), d)
    (d / "model-00002-of-00002.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n"
                                                        "size 10\n")
    with qtl.open(str(d)) as ck:
        fs = ck.check()
    assert any(f.id == "shard-invalid" and f.is_error for f in fs), fs
    d = tmp_path / "unlisted"  # a tensor the index does not list: still a tensor (vLLM loads it), and a warning
    shutil.copytree(fixture_dir("bf16"), d)
    index = json.loads((d / "model.safetensors.index.json").read_text())
    gone = sorted(index["weight_map"])[0]
    del index["weight_map"][gone]
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with qtl.open(str(d)) as ck:
        assert gone in ck.names()
        assert [(f.id, f.severity, f.tensor) for f in ck.check()] == [("tensor-not-in-index", "warning", gone)]


# ---- verification and errors -----------------------------------------------------------------

def test_verify_scale_unwritten(fixture_dir):
    fs = qtl.verify(fixture_dir("ct-fp8", "scale.unwritten"))
    hit = [f for f in fs if f.id == "scale.unwritten"]
    assert hit and hit[0].severity == "error" and hit[0].is_error
    assert hit[0].tensor and hit[0].tensor.endswith("input_scale") and hit[0].status == "CHECKPOINT"
    assert hit[0].rank == 0 and "scale.unwritten" in str(hit[0])
    assert not [f for f in qtl.verify(fixture_dir("ct-fp8"), tp=2) if f.is_error]
    # allow downgrades it
    fs = qtl.verify(fixture_dir("ct-fp8", "scale.unwritten"), allow=["scale.unwritten"])
    assert [f.severity for f in fs if f.id == "scale.unwritten"] == ["warning"]


def test_verify_layout_and_nan(fixture_dir):
    fs = qtl.verify(fixture_dir("bf16"), tp=4)  # 2 heads over 4 ranks
    assert [f.id for f in fs if f.is_error] == ["tp.heads"]
    fs = qtl.verify(fixture_dir("ct-fp8", "scale.nan"))
    assert [f.id for f in fs if f.is_error] == ["scale.nan"]


@pytest.mark.numpy
def test_qtlerror_carries_the_finding(fixture_dir):
    with pytest.raises(qtl.QtlError) as e:
        qtl.load(fixture_dir("ct-fp8", "scale.unwritten"), backend="numpy")
    err = e.value
    assert err.finding_id == "scale.unwritten" and err.status_name == "CHECKPOINT"
    assert err.tensor and err.tensor.endswith("k_proj.input_scale")
    assert "[scale.unwritten]" in str(err) and err.findings[0].id == "scale.unwritten"
    with pytest.raises(qtl.QtlError) as e:
        qtl.load(fixture_dir("ct-fp8", "scale.nan"), backend="numpy")
    err = e.value
    assert err.finding_id == "scale.nan" and err.tensor and err.tensor.endswith("weight_scale")
    assert err.file and err.file.endswith(".safetensors") and os.path.exists(err.file)
    assert err.file in str(err)
    w = qtl.load(fixture_dir("ct-fp8", "scale.nan"), backend="numpy", allow=["scale.nan"])
    assert [f.severity for f in w.findings if f.id == "scale.nan"] == ["warning"]
    with pytest.raises(qtl.QtlError) as e:
        qtl.plan(fixture_dir("bf16"), tp=4)
    assert e.value.finding_id == "tp.heads"
    with pytest.raises(qtl.QtlError) as e:
        qtl.plan("/nonexistent/ckpt")
    assert e.value.status_name in ("OPEN", "NO_CHECKPOINT") and e.value.finding_id is None
    with pytest.raises(ValueError):
        qtl.plan(fixture_dir("bf16"), allow=["no-such-finding"])
    with pytest.raises(ValueError):
        qtl.plan(fixture_dir("bf16"), tp=2, rank=2)


def test_catalogue_and_helpers():
    cat = qtl.finding_catalogue()
    ids = [c[0] for c in cat]
    assert "scale.unwritten" in ids and "tp.heads" in ids and len(ids) == len(set(ids))
    assert dict((i, s) for i, s, _ in cat)["tensor-not-in-index"] == "warning"
    assert qtl.pp_layers(32, 3, 0) == (0, 11) and qtl.pp_layers(32, 3, 2) == (22, 32)
    with pytest.raises(ValueError):
        qtl.pp_layers(32, 3, 0, "1,2")
    assert qtl.status_name(-26) == "INVALID_OFFSET" and qtl.status_name(-999) == "UNKNOWN"
    assert qtl.version() == qtl.__version__
