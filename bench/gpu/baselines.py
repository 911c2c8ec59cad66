"""What users do today, to compare weightd with: load BF16 weights with PyTorch, quantize to FP8.

  (a) load every tensor onto the GPU, then quantize each to FP8 per-tensor
  (b) per tensor: load onto the GPU, quantize, free the BF16 copy

Tensors come from safetensors files (--checkpoint DIR: safe_open, framework pt, then
.to('cuda')) or are made on the host in the shapes of `weightd-gen --plan` (--plan FILE),
for checkpoints too large for the disk. Quantization is the memory-friendly form: amax
by aminmax, scale in place, cast. Prints and writes (--out) one JSON object: wall time,
peak device-memory growth (driver's view, sampled) and torch.cuda.max_memory_allocated,
FP8 footprint; an out-of-memory is a result ("oom": true), not a failure.
Without torch or a GPU: {"skipped": reason}.

  python3 baselines.py --mode b --checkpoint /models/llama8b --out b.json
  python3 baselines.py --mode a --plan llama70b.plan --cap-gib 80 --out a.json
"""
import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import devmem  # noqa: E402

FP8_MAX = 448.0


def checkpoint_tensors(directory):
    from safetensors import safe_open
    for path in sorted(glob.glob(os.path.join(directory, "*.safetensors"))):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)


def synthetic_tensors(plan_path):
    """Host tensors of the plan's shapes: N(0, 0.02) BF16, views of one shared buffer."""
    import torch
    plan = [json.loads(line) for line in open(plan_path) if line.strip()]
    largest = max(_numel(t["shape"]) for t in plan)
    block = (torch.randn(1 << 24, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16)
    buffer = block.repeat((largest + block.numel() - 1) // block.numel())[:largest]
    for t in plan:
        yield t["name"], buffer[:_numel(t["shape"])].view(t["shape"])


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def quantize(t):
    """Per-tensor FP8 E4M3 of a device tensor, consumed in place: (fp8, fp32 scale)."""
    import torch
    lo, hi = torch.aminmax(t)
    amax = torch.maximum(hi.abs(), lo.abs()).float().clamp(min=1e-12)
    t.mul_((FP8_MAX / amax).to(t.dtype)).clamp_(-FP8_MAX, FP8_MAX)
    return t.to(torch.float8_e4m3fn), amax / FP8_MAX


def run(mode, tensors, result):
    """Fills result as it goes, so an out-of-memory leaves what was done."""
    quantized, resident = {}, {}
    result.update(bf16_bytes=0, fp8_bytes=0, tensors=0, largest_tensor_bytes=0)
    result["stage"] = "load"
    for name, host in tensors:
        nbytes = host.numel() * host.element_size()
        device = host.to("cuda")
        result["bf16_bytes"] += nbytes
        result["largest_tensor_bytes"] = max(result["largest_tensor_bytes"], nbytes)
        result["tensors"] += 1
        if mode == "a":
            resident[name] = device
            continue
        q, scale = quantize(device)
        del device
        quantized[name] = (q, scale)
        result["fp8_bytes"] += q.numel() + 4
    if mode == "a":
        result["stage"] = "quantize"
        for name in list(resident):
            q, scale = quantize(resident.pop(name))
            quantized[name] = (q, scale)
            result["fp8_bytes"] += q.numel() + 4
    result["stage"] = "done"
    return quantized


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["a", "b"], required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="directory of .safetensors files")
    source.add_argument("--plan", help="weightd-gen --plan output: tensors made on the host")
    parser.add_argument("--cap-gib", type=float, default=0,
                        help="cap the torch allocator at this much memory (emulates a smaller GPU); 0: none")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    result = {"baseline": args.mode, "source": "checkpoint" if args.checkpoint else "synthetic"}
    reason = devmem.unavailable()
    if reason:
        result["skipped"] = reason
    else:
        import torch
        if args.cap_gib:
            total = torch.cuda.mem_get_info()[1]
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * 2**30 / total))
            result["cap_bytes"] = int(args.cap_gib * 2**30)
        tensors = checkpoint_tensors(args.checkpoint) if args.checkpoint else synthetic_tensors(args.plan)
        torch.cuda.synchronize()
        sampler = devmem.Sampler().start()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result["oom"] = False
        try:
            quantized = run(args.mode, tensors, result)
            torch.cuda.synchronize()
            del quantized
        except torch.cuda.OutOfMemoryError as e:
            result["oom"] = True
            result["error"] = str(e).splitlines()[0][:300]
        result["wall_seconds"] = round(time.perf_counter() - start, 4)
        result["max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["driver"] = sampler.stop()
        result["peak_growth_bytes"] = result["driver"]["peak_growth_bytes"]
    text = json.dumps(result)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
