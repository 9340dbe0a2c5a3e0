"""One vLLM rank without an engine (as tests/interop/interop.py's vllm part does): for each
job, builds the model for a checkpoint as the engine would, loads it with each loader asked
for, and saves every parameter and buffer right after load_weights.

    python vllm_worker.py TP RANK PORT JOBS_JSON

JOBS_JSON: a list of {"ckpt": DIR, "out": PREFIX, "loaders": [...], "extra": {...}}. Loaders:
"default" (vLLM's DefaultModelLoader) and "qtl" (the loader vLLM resolves for load_format
"qtl": the installed package's vllm.general_plugins entry point, run by EngineArgs); a
"+processed" suffix also runs vLLM's process_weights_after_loading (with tests/interop/interop.py's
kernel substitutes for the CPU) and saves that state. Per
loader: PREFIX-<loader>.safetensors, or PREFIX-<loader>.err.json with the exception (type,
message, and a QtlError's status_name, finding_id, tensor, file); "+processed" adds
PREFIX-<loader>+processed.safetensors or PREFIX-<loader>+processed.err.json. PREFIX-info.json:
the loader class vLLM resolved and the qtl loader's statistics.
"""
import json
import os
import sys


def _error(e):
    err = {"type": type(e).__name__, "message": str(e)}
    for k in ("status_name", "finding_id", "tensor", "file"):
        if hasattr(e, k):
            err[k] = getattr(e, k)
    return err


def main(tp, rank, port, jobs):
    import torch
    from safetensors.torch import save_file
    from vllm.config import set_current_vllm_config
    from vllm.config.load import LoadConfig
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import DefaultModelLoader, get_model_loader
    from vllm.model_executor.model_loader.utils import process_weights_after_loading
    from vllm.utils.torch_utils import set_default_torch_dtype

    def snapshot(model):
        return {n: t.detach().contiguous().clone()
                for n, t in list(model.named_parameters()) + list(model.named_buffers())}

    os.environ["VLLM_DIST_IDENT"] = str(port)  # the CPU shared-memory communicator names its segment after it
    # the CUDA kernel classes and torch shims of CUDA-only ops that tests/interop/interop.py
    # registers on the CPU, so vLLM builds (and post-processes) the quantized schemes here too
    # (the same for both loaders: only vLLM's kernel choice changes)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "interop"))
    from interop import kernel_substitutes
    kernel_substitutes()
    initialized = False
    for job in jobs:
        out = job["out"]
        info = {}
        # EngineArgs runs vLLM's general plugins: the entry point registers "qtl"
        cfg = EngineArgs(model=job["ckpt"], load_format="qtl", model_loader_extra_config=job.get("extra", {}),
                         enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
                         tensor_parallel_size=tp).create_engine_config()
        with set_current_vllm_config(cfg):
            if not initialized:
                init_distributed_environment(world_size=tp, rank=rank, local_rank=rank, backend="gloo",
                                             distributed_init_method="tcp://127.0.0.1:%d" % port)
                initialize_model_parallel(tp)
                initialized = True
            mc = cfg.model_config
            for spec in job["loaders"]:
                name, _, post = spec.partition("+")
                try:
                    if name == "qtl":
                        loader = get_model_loader(cfg.load_config)
                        info["qtl_loader_class"] = "%s.%s" % (type(loader).__module__, type(loader).__qualname__)
                    else:
                        loader = DefaultModelLoader(LoadConfig(load_format="auto"))
                    cfg.compilation_config.static_forward_context.clear()  # another model reuses the layer names
                    with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
                        model = loader.create_model(vllm_config=cfg, model_config=mc)
                    loader.load_weights(model, mc)
                    if name == "qtl":
                        info["qtl_stats"] = getattr(loader, "last_stats", {})
                    save_file(snapshot(model), "%s-%s.safetensors" % (out, name))
                except Exception as e:  # reported to the test, which decides
                    with open("%s-%s.err.json" % (out, name), "w") as f:
                        json.dump(_error(e), f)
                    continue
                if post == "processed":
                    try:
                        process_weights_after_loading(model, mc, torch.device("cpu"))
                        save_file(snapshot(model), "%s-%s+processed.safetensors" % (out, name))
                    except Exception as e:  # vLLM's CPU build may lack a kernel: the test says so
                        with open("%s-%s+processed.err.json" % (out, name), "w") as f:
                            json.dump(_error(e), f)
        with open("%s-info.json" % out, "w") as f:
            json.dump(info, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))
