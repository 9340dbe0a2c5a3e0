"""qtl: load quantized safetensors LLM checkpoints exactly as vLLM 0.32 does.

A ctypes binding of libqtl.so (the C library of include/qtl.h, built by `pip install .`):
no compiled extension, numpy and torch optional.

Inspect::

    with qtl.open("ckpt/") as ck:
        for t in ck.tensors():                     # name, file, dtype, shape, nbytes, offsets
            print(t.name, t.dtype, t.shape)

Verify (headers and scales only, as `qtl verify`)::

    for f in qtl.verify("ckpt/", tp=2):            # Finding(id, severity, message, file, tensor)
        print(f)

Load one rank (vLLM's per-rank parameters, names, dtypes and shapes)::

    w = qtl.load("ckpt/", tp=2, rank=1)            # {name: torch.Tensor}, stage "loaded"
    w = qtl.load("ckpt/", backend="numpy")         # numpy arrays (uint8 + w.dtypes[name] for FP8/BF16)
    w = qtl.load("ckpt/", stage="processed")       # after qtl's post-processing (views of qtl's memory)

Fill buffers you allocated (torch tensors, pinned memory, numpy arrays)::

    with qtl.plan("ckpt/", tp=2, rank=0) as p:
        bufs = {q.name: torch.empty(q.shape, dtype=...) for q in p.params}
        p.fill(bufs)                               # qtl reads straight into them

Errors raise QtlError (status name, finding ID, tensor, file). vLLM: `--load-format qtl`
(qtl.vllm, registered through the vllm.general_plugins entry point).
"""
from ._api import (Checkpoint, CopyOp, Finding, LayerInfo, ParamInfo, Plan, QtlError, TensorInfo, Weights,
                   finding_catalogue, inspect, load, open, plan, pp_layers, status_name, verify, version)
from ._lib import library_path

__version__ = version()

__all__ = ["Checkpoint", "CopyOp", "Finding", "LayerInfo", "ParamInfo", "Plan", "QtlError", "TensorInfo", "Weights",
           "finding_catalogue", "inspect", "library_path", "load", "open", "plan", "pp_layers", "status_name",
           "verify", "version", "__version__"]
