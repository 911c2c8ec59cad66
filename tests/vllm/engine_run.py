"""One vLLM engine in its own process (vLLM keeps process-wide state): builds
vLLM's LLM in-process on the CPU, generates greedily, and writes what the tests
compare to OUT (torch.save): the token ids, and every parameter after loading (name,
shape, stride, dtype, a contiguous copy of its values, its storage's address range);
with --load-format weightd also the lease's allocations (address ranges).

    engine_run.py MODEL_DIR OUT [--load-format weightd --extra JSON]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: the model object is reachable
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM takes most of the RAM otherwise
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["The quick brown fox", "Hello world, this is"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--load-format", default="auto")
    ap.add_argument("--extra", default="{}")
    args = ap.parse_args()

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cpu_workarounds

    cpu_workarounds.init_amx()
    cpu_workarounds.install_scaled_fp8_quant()
    if args.load_format != "weightd":
        cpu_workarounds.weightd_kernels_in_default_loader()

    from vllm import LLM, SamplingParams

    llm = LLM(model=args.model, dtype="bfloat16", enforce_eager=True, max_model_len=256, max_num_seqs=4,
              max_num_batched_tokens=256, seed=0, load_format=args.load_format,
              model_loader_extra_config=json.loads(args.extra))
    outputs = llm.generate(PROMPTS, SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True), use_tqdm=False)
    model = llm.llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner.model

    params = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        storage = p.untyped_storage()
        params[name] = {"shape": tuple(p.shape), "stride": tuple(p.stride()), "dtype": str(p.dtype),
                        "values": p.detach().contiguous().clone(), "data_ptr": p.data_ptr(),
                        "storage": (storage.data_ptr(), storage.data_ptr() + storage.nbytes())}
    result = {"tokens": [list(o.outputs[0].token_ids) for o in outputs], "params": params}
    lease = getattr(model, "_weightd_lease", None)
    if lease is not None:
        result["allocations"] = [(lease.allocation_base(i), lease.allocation_base(i) + a.size)
                                 for i, a in enumerate(lease.manifest.allocations)]
        result["entries"] = {e.name: (e.allocation, e.offset) for e in lease.manifest.tensors}
    torch.save(result, args.out)


if __name__ == "__main__":
    main()
