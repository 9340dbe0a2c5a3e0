"""load_weights time inside vLLM, --load-format qtl against vLLM's default loader, on one
checkpoint at tp 1 (the BENCH line of the integration issue). Each rep builds a fresh model
and times load_weights alone; medians. Run with a Python that has vllm, torch and the qtl
package (tests/python/run.sh makes BUILD/python-venv so):
    BUILD/python-venv/bin/python bench/bench_vllm_load.py CKPT [REPS]"""
import os
import statistics
import sys
import time


def main(ckpt, reps):
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.config.load import LoadConfig
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import DefaultModelLoader, get_model_loader
    from vllm.utils.torch_utils import set_default_torch_dtype

    os.environ.setdefault("VLLM_DIST_IDENT", "29533")
    cfg = EngineArgs(model=ckpt, load_format="qtl", enforce_eager=True, skip_tokenizer_init=True,
                     max_model_len=128).create_engine_config()
    times = {"auto": [], "qtl": []}
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method="tcp://127.0.0.1:29533")
        initialize_model_parallel(1)
        mc = cfg.model_config
        for _ in range(reps):
            for name in ("auto", "qtl"):
                loader = get_model_loader(cfg.load_config) if name == "qtl" else DefaultModelLoader(
                    LoadConfig(load_format="auto"))
                cfg.compilation_config.static_forward_context.clear()
                with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
                    model = loader.create_model(vllm_config=cfg, model_config=mc)
                t0 = time.perf_counter()
                loader.load_weights(model, mc)
                times[name].append(time.perf_counter() - t0)
                del model
    size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt) if f.endswith(".safetensors"))
    a, q = statistics.median(times["auto"]), statistics.median(times["qtl"])
    print("BENCH vLLM load_weights %s (%.2f GB, tp 1, %d reps, medians): auto %.3f s (%.2f GB/s), "
          "qtl %.3f s (%.2f GB/s): qtl is %.1fx faster" % (ckpt, size / 1e9, reps, a, size / a / 1e9, q, size / q / 1e9,
                                                          a / q))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
