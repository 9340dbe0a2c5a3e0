"""`--load-format qtl` for vLLM 0.32: a model loader that fills vLLM's parameters with qtl.

Registered in every vLLM process through the `vllm.general_plugins` entry point
(pyproject.toml: qtl = "qtl.vllm:register"); `VLLM_PLUGINS` can exclude it as any plugin.

    vllm serve MODEL --load-format qtl
    vllm serve MODEL --load-format qtl --model-loader-extra-config '{"allow": ["scale.slots-differ"], "threads": 8}'

What QtlModelLoader.load_weights does on each rank:

1. builds qtl's plan for the rank from vLLM's parallel state (tensor-parallel size and rank,
   pipeline size and stage, VLLM_PP_LAYER_PARTITION, --enable-expert-parallel with one
   data-parallel rank, the model's dtype) over the original
   Hugging Face checkpoint: every parameter with vLLM's name, dtype and per-rank shape;
2. strict: an error-level finding of the plan (scale.unwritten, tensor.shape, tensor.unmapped,
   ...) raises qtl.QtlError naming the finding ID, the tensor and the file before any byte is
   read; `allow` downgrades IDs to warnings (logged);
3. compares the plan with model.named_parameters() plus the persistent buffers: names, shapes
   and dtypes. Any difference is a hard error that lists every difference (status_name
   "PLAN_MISMATCH"). Not compared, and left untouched with the values vLLM initialized them to,
   because qtl's plan does not hold them unless the checkpoint stores them:
     - the attention layers' buffers `…attn._k_scale`, `_v_scale`, `_q_scale`, `_prob_scale`
       (F32 0-D, 1.0);
     - the KV-cache scale placeholders a quantization config adds to each attention layer:
       `…attn.k_scale`, `v_scale`, `q_scale`, `prob_scale` (-1.0, Fp8/ModelOpt) and
       compressed-tensors' `k/v/q_scale` (1.0) and `k/v/q_zero_point` (0); vLLM's own
       process_weights_after_loading turns a placeholder left at its sentinel into the
       default scale, exactly as after its default loader;
     - parameters with no elements (placeholders some schemes register);
     - non-persistent buffers (rotary_emb.cos_sin_cache), which are not weights.
   When the checkpoint carries kv scales, qtl plans them under vLLM's name and they are filled;
4. fills every planned parameter in place: a contiguous CPU parameter is bound directly
   (qtl reads into param.data, no copy); any other (a GPU parameter, a non-contiguous one) is
   read into one pinned host buffer (qtl_load_set_buffer; the bytes of those parameters) and
   copied with param.data.copy_(..., non_blocking=True), then the stream is synchronized;
5. a value found wrong while reading (scale.nan, scale.inf, scale.nonpositive, tensor.read,
   file.changed) raises in the same way, so the engine never serves it.

It does not override load_model: vLLM runs process_weights_after_loading afterwards as for
its default loader.
"""
from __future__ import annotations

import os
import re
from typing import Any

import torch
from torch import nn

from vllm.config import ModelConfig
from vllm.config.load import LoadConfig
from vllm.logger import init_logger
from vllm.model_executor.model_loader.base_loader import BaseModelLoader
from vllm.model_executor.model_loader.default_loader import DefaultModelLoader

from . import _api, _dtypes
from ._api import Plan, QtlError

logger = init_logger(__name__)

LOAD_FORMAT = "qtl"
EXTRA_CONFIG_KEYS = ("allow", "threads")

# vLLM names qtl's plan leaves out (unless the checkpoint stores them), with the reason.
VLLM_ONLY = [
    (re.compile(r"\.attn\._(k|v|q|prob)_scale$"), "an attention layer's runtime copy of a KV-cache scale (a buffer, 1.0)"),
    (re.compile(r"\.attn\.(k|v|q|prob)_(scale|zero_point)$"),
     "a KV-cache scale placeholder of the quantization config (its init value; vLLM's post-processing resolves it)"),
]


def _parse_extra(extra: Any) -> tuple[list[str], int | None]:
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ValueError("model_loader_extra_config must be a dict for load format %s, got %s"
                         % (LOAD_FORMAT, type(extra).__name__))
    unknown = sorted(set(extra) - set(EXTRA_CONFIG_KEYS))
    if unknown:
        raise ValueError("Unexpected extra config keys for load format %s: %s (qtl takes %s)"
                         % (LOAD_FORMAT, unknown, ", ".join(EXTRA_CONFIG_KEYS)))
    allow = extra.get("allow", [])
    if isinstance(allow, str) or not isinstance(allow, (list, tuple)) or not all(isinstance(a, str) for a in allow):
        raise ValueError("allow must be a list of qtl finding IDs (e.g. [\"scale.slots-differ\"]), got %r" % (allow,))
    for a in allow:
        _api._check_finding_id(a)
    threads = extra.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError("threads must be a positive integer, got %r" % (threads,))
    return list(allow), threads


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a loader fills: model.named_parameters() (shared ones once, under their first
    name, as vLLM's tied lm_head) plus the persistent buffers."""
    out: dict[str, torch.Tensor] = dict(model.named_parameters())
    seen = {id(t) for t in out.values()}
    for mod_name, mod in model.named_modules():
        skip = getattr(mod, "_non_persistent_buffers_set", set())
        for b_name, b in mod._buffers.items():
            if b is None or b_name in skip or id(b) in seen:
                continue
            seen.add(id(b))
            out["%s.%s" % (mod_name, b_name) if mod_name else b_name] = b
    return out


def compare(plan: Plan, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """(differences, vLLM-only names left untouched) between qtl's plan and the model's tensors."""
    diffs, untouched = [], []
    planned = {p.name: p for p in plan.params}
    for name, p in planned.items():
        t = tensors.get(name)
        if t is None:
            diffs.append("%s: qtl plans it (%s %s), the model has no such parameter" % (name, p.dtype, list(p.shape)))
            continue
        want = _dtypes.dtype_from_torch(t.dtype)
        torch_shape = tuple(_dtypes.torch_layout(p.dtype, p.shape, p.nbytes)[1])
        if want != p.dtype or tuple(t.shape) != torch_shape:
            diffs.append("%s: the model has %s %s, qtl plans %s %s" % (name, str(t.dtype).replace("torch.", ""),
                                                                      list(t.shape), p.dtype, list(p.shape)))
    for name, t in tensors.items():
        if name in planned:
            continue
        if t.numel() == 0 or any(rx.search(name) for rx, _ in VLLM_ONLY):
            untouched.append(name)
        else:
            diffs.append("%s: the model has it (%s %s), qtl's plan does not" % (name, str(t.dtype).replace("torch.", ""),
                                                                               list(t.shape)))
    return diffs, untouched


def fill(plan: Plan, tensors: dict[str, torch.Tensor], staging: str = "auto") -> dict[str, int]:
    """Fill the plan's parameters into `tensors` (name -> tensor, already compared). staging
    "auto": contiguous CPU tensors are bound directly, the others go through one pinned host
    buffer and a copy; "always": every tensor through the buffer (the GPU path, testable on a
    CPU). Raises QtlError for error-level findings. Returns {"direct": n, "staged": n, "staged_bytes": n}."""
    staged = []
    plan.raise_for_errors()
    for p in plan.params:
        t = tensors[p.name].data
        if staging != "always" and t.device.type == "cpu" and t.is_contiguous():
            plan.bind(p.index, t)
        else:
            staged.append(p)
    buf = None
    nbytes = 0
    if staged:
        nbytes = plan.bytes_needed  # the unbound parameters' bytes in qtl's layout
        pin = torch.cuda.is_available()
        buf = torch.empty(max(nbytes, 1), dtype=torch.uint8, pin_memory=pin)
        plan.set_buffer(buf)
    plan.run()
    if staged:
        views = plan.weights("torch")  # views of the pinned buffer for the staged parameters
        devices = set()
        for p in staged:
            t = tensors[p.name].data
            t.copy_(views[p.name], non_blocking=t.device.type != "cpu")
            devices.add(t.device)
        for d in devices:
            if d.type == "cuda":
                torch.cuda.synchronize(d)  # the pinned buffer is freed when this returns
        del views
    return {"direct": len(plan.params) - len(staged), "staged": len(staged), "staged_bytes": nbytes}


class QtlModelLoader(BaseModelLoader):
    """vLLM model loader for `--load-format qtl` (see the module documentation).

    model_loader_extra_config keys: "allow" (a list of qtl finding IDs downgraded to warnings)
    and "threads" (qtl's reader threads; default: the cores). Any other key is refused.
    """

    def __init__(self, load_config: LoadConfig) -> None:
        super().__init__(load_config)
        self.allow, self.threads = _parse_extra(load_config.model_loader_extra_config)
        self.last_stats: dict[str, Any] = {}

    def _default_loader(self) -> DefaultModelLoader:
        lc = LoadConfig(load_format="safetensors", download_dir=self.load_config.download_dir,
                        ignore_patterns=self.load_config.ignore_patterns,
                        use_tqdm_on_load=self.load_config.use_tqdm_on_load)
        return DefaultModelLoader(lc)

    def download_model(self, model_config: ModelConfig) -> None:
        """As DefaultModelLoader (safetensors files): fetch the model unless it is a local directory."""
        self._default_loader().download_model(model_config)

    def checkpoint_dir(self, model_config: ModelConfig) -> str:
        """The local directory of the checkpoint (downloaded as DefaultModelLoader does when
        model_config.model is a hub name)."""
        if os.path.isdir(model_config.model):
            return model_config.model
        folder, _files, _st, _index = self._default_loader()._prepare_weights(
            model_config.model, None, model_config.revision, False, None)
        return folder

    @staticmethod
    def _expert_parallel() -> bool:
        """vLLM's --enable-expert-parallel. qtl splits the experts over the tp ranks, which is
        vLLM's expert-parallel layout with one data-parallel rank; with several, refuse."""
        from vllm.config import get_current_vllm_config
        pc = get_current_vllm_config().parallel_config
        if not getattr(pc, "enable_expert_parallel", False):
            return False
        if getattr(pc, "data_parallel_size", 1) > 1 or getattr(pc, "prefill_context_parallel_size", 1) > 1:
            raise QtlError("expert parallelism over data-parallel or context-parallel ranks: qtl splits the experts "
                           "over the tensor-parallel ranks only", name="UNSUPPORTED")
        return True

    def load_weights(self, model: nn.Module, model_config: ModelConfig) -> None:
        from vllm.distributed.parallel_state import get_pp_group, get_tp_group
        tp_group, pp_group = get_tp_group(), get_pp_group()
        tp, rank = tp_group.world_size, tp_group.rank_in_group
        pp, pp_rank = pp_group.world_size, pp_group.rank_in_group
        ep = self._expert_parallel()
        path = self.checkpoint_dir(model_config)
        dtype = model_config.dtype if model_config.dtype in (torch.bfloat16, torch.float16) else None
        with Plan(path, tp, rank, pp, pp_rank, read="all", allow=self.allow, dtype=dtype,
                  threads=self.threads, ep=ep) as plan:
            plan.raise_for_errors()  # before anything is read or written
            tensors = model_tensors(model)
            diffs, untouched = compare(plan, tensors)
            if diffs:
                raise QtlError("the model vLLM built differs from qtl's plan for tp rank %d/%d, pp stage %d/%d of %s "
                               "(%d difference(s)):\n  %s" % (rank, tp, pp_rank, pp, path, len(diffs),
                                                              "\n  ".join(diffs)), name="PLAN_MISMATCH")
            stats = fill(plan, tensors)
            for f in plan.findings:
                if not f.is_error and f.severity == "warning":
                    logger.warning("qtl: %s", f)
            stats.update(params=len(plan.params), untouched=untouched, bytes_read=plan.bytes_read,
                         seconds=plan.seconds, tp=tp, rank=rank, pp=pp, pp_rank=pp_rank)
            self.last_stats = stats
        logger.info("qtl: loaded %d parameters (%.1f MB read in %.3f s) for tp rank %d/%d, pp stage %d/%d; %d "
                    "vLLM-only tensors left at their init values", stats["params"], stats["bytes_read"] / 1e6,
                    stats["seconds"], rank, tp, pp_rank, pp, len(untouched))


def register() -> None:
    """The vllm.general_plugins entry point: register QtlModelLoader as load format "qtl".
    Idempotent (vLLM calls plugins in the engine and in every worker, possibly more than once);
    it leaves a "qtl" format another package registered alone, with a warning."""
    from vllm.model_executor import model_loader as ml
    table = getattr(ml, "_LOAD_FORMAT_TO_MODEL_LOADER", {})
    cur = table.get(LOAD_FORMAT)
    if cur is not None:
        if cur is QtlModelLoader:
            return
        if getattr(cur, "__module__", "") == __name__ and cur.__qualname__ == QtlModelLoader.__qualname__:
            return  # this module imported twice (e.g. reloaded): the class registered is ours
        logger.warning("qtl: load format %r is already registered by %s; not replacing it", LOAD_FORMAT, cur)
        return
    ml.register_model_loader(LOAD_FORMAT)(QtlModelLoader)
