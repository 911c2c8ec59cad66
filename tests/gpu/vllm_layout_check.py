"""Layout vllm on a GPU, as a PyTorch worker uses it (bench/cuda/run_vllm_layout.sh runs it):
two daemons, one on the cuda backend and one on the host backend, load the same BF16
checkpoint with layout vllm; the worker attaches rank 0 of both and
  1. compares every tensor's bytes: the CUDA tensors (weightd's device memory, mapped in
     place) against the host backend's (the CPU kernels);
  2. runs the FP8 GEMM vLLM runs, torch._scaled_mm(x_fp8, W.t(), s_x, s_w), on every
     fused and unfused FP8 weight in place, and compares it with the BF16 GEMM on the
     checkpoint's weights stacked the same way (q|k|v, gate|up): the relative error must
     stay within what E4M3 allows (3 mantissa bits: about 2^-4 per element, less after
     summation).
Prints one JSON line per model and exits non-zero on any mismatch."""
import argparse
import json
import sys

import torch
from safetensors.torch import load_file

import weightd

FP8_TOLERANCE = 0.08  # relative Frobenius error; E4M3 rounding of both operands gives about 0.03


def checkpoint_tensors(model_dir):
    import glob
    tensors = {}
    for f in sorted(glob.glob(f"{model_dir}/*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def reference_weight(name, source):
    """The BF16 weight of vLLM parameter `name`, stacked from the checkpoint as vLLM stacks it."""
    prefix = name[: -len(".weight")]
    for fused, parts in ((".qkv_proj", (".q_proj", ".k_proj", ".v_proj")), (".gate_up_proj", (".gate_proj", ".up_proj"))):
        if prefix.endswith(fused):
            base = prefix[: -len(fused)]
            return torch.cat([source[f"{base}{p}.weight"] for p in parts]).float()
    return source[name].float()


def host_bytes(array):
    import numpy as np
    return torch.from_numpy(np.ascontiguousarray(array).view(np.uint8).reshape(-1).copy())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda-address", required=True)
    ap.add_argument("--cuda-handles", required=True)
    ap.add_argument("--host-address", required=True)
    ap.add_argument("--host-handles", required=True)
    ap.add_argument("--model", required=True, help="path under both daemons' --model-root")
    ap.add_argument("--model-dir", required=True, help="the same checkpoint, for the BF16 reference")
    ap.add_argument("--scheme", default="per-tensor")
    args = ap.parse_args()

    source = checkpoint_tensors(args.model_dir)
    gpu = weightd.Client(args.cuda_address, args.cuda_handles)
    host = weightd.Client(args.host_address, args.host_handles)
    model_id = f"vllm-{args.scheme}"
    for client in (gpu, host):
        client.load_and_wait(model_id, path=args.model, scheme=args.scheme, layout="vllm")
    failed = []
    result = {"scheme": args.scheme, "tensors": 0, "bytes": 0, "gemms": 0, "max_rel_error": 0.0}
    with gpu.attach(model_id, read_only=True) as on_gpu, host.attach(model_id) as on_host:
        if set(on_gpu) != set(on_host):
            failed.append(f"names differ: {sorted(set(on_gpu) ^ set(on_host))[:4]}")
        for name, tensor in on_gpu.items():
            assert tensor.is_cuda
            gpu_bytes = tensor.contiguous().reshape(-1).view(torch.uint8).cpu()
            if not torch.equal(gpu_bytes, host_bytes(on_host[name])):
                diff = int((gpu_bytes != host_bytes(on_host[name])).sum())
                failed.append(f"{name}: {diff} bytes differ between the cuda and host backends")
            result["tensors"] += 1
            result["bytes"] += gpu_bytes.numel()
        torch.manual_seed(0)
        for name, w in on_gpu.items():
            if w.dtype != torch.float8_e4m3fn or args.scheme != "per-tensor":
                continue
            scale = on_gpu[name + "_scale"].reshape(1).float()
            x = torch.randn(32, w.shape[1], device=w.device, dtype=torch.bfloat16)
            x_scale = (x.abs().max().float() / 448.0).reshape(1)
            x_fp8 = (x.float() / x_scale).clamp(-448, 448).to(torch.float8_e4m3fn)
            before = w.view(torch.uint8).clone()
            y = torch._scaled_mm(x_fp8, w.t(), scale_a=x_scale, scale_b=scale, out_dtype=torch.bfloat16)
            if not torch.equal(before, w.view(torch.uint8)):
                failed.append(f"{name}: the GEMM changed the weight")
            ref = x.float() @ reference_weight(name, source).to(w.device).t()
            rel = float((y.float() - ref).norm() / ref.norm())
            result["gemms"] += 1
            result["max_rel_error"] = max(result["max_rel_error"], rel)
            if rel > FP8_TOLERANCE:
                failed.append(f"{name}: FP8 GEMM relative error {rel:.4f} > {FP8_TOLERANCE}")
    for client in (gpu, host):
        client.unload(model_id)
        client.close()
    result["failed"] = failed
    print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
