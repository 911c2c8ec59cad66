"""How an inference worker swaps its weight loading for weightd, on a GPU machine.

1. Writes a tiny BF16 Llama checkpoint into the daemon's model root (transformers'
   save_pretrained; a plain-PyTorch Llama with the same names when transformers
   is missing, and it says so).
2. For each FP8 scheme: loads it through weightd (progress events), attaches
   rank 0, checks that every CUDA tensor is weightd's memory (data_ptr ==
   allocation base + manifest offset), builds the model with its linear layers
   reading the FP8 weights and scales in place (dequantized to BF16 per forward)
   and every other parameter pointing at weightd's BF16 tensors, and compares its
   logits with the BF16 model's: max abs difference and top-1 agreement.

Exits non-zero when a check fails.
  tiny_llama_worker.py --address unix:/tmp/w.sock --handle-socket /tmp/h.sock --model-root /tmp/models
"""
import argparse
import glob
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_llama  # noqa: E402
import weightd  # noqa: E402
from weightd.v1 import loader_pb2  # noqa: E402

BLOCK = 128


class Fp8Linear(nn.Module):
    """y = x W^T with W held in FP8 by weightd (no copy) and its scale: per tensor
    (weight_scale []), per output row (weight_scale [rows, 1]) or per 128x128 block
    (weight_scale_inv [ceil(rows/128), ceil(cols/128)]); W = q * s."""

    def __init__(self, weight, scale, block):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.block = block

    def dequantized(self):
        rows, cols = self.weight.shape
        s = self.scale.float()
        if self.block:
            s = s.repeat_interleave(BLOCK, 0)[:rows].repeat_interleave(BLOCK, 1)[:, :cols]
        elif s.numel() == 1:
            s = s.reshape(())
        return (self.weight.float() * s).to(torch.bfloat16)

    def forward(self, x):
        return F.linear(x, self.dequantized())


def build_from_weightd(tensors):
    """The model with every weight taken from weightd's tensors, none copied."""
    model = tiny_llama.make_model()
    for name, tensor in tensors.items():
        if tensor.dtype != torch.float8_e4m3fn:
            continue
        prefix = name[: -len(".weight")]
        block = prefix + ".weight_scale_inv" in tensors
        scale = tensors[prefix + (".weight_scale_inv" if block else ".weight_scale")]
        parent, _, child = prefix.rpartition(".")
        setattr(model.get_submodule(parent), child, Fp8Linear(tensor, scale, block))
    for name, param in model.named_parameters():
        if name not in tensors:
            sys.exit(f"FAIL: weightd has no tensor {name}")
        param.data = tensors[name]  # shares weightd's memory
    return model


def check_zero_copy(lease, tensors, model):
    for name, tensor in tensors.items():
        entry = lease.entry(name)
        if not tensor.is_cuda or tensor.data_ptr() != lease.allocation_base(entry.allocation) + entry.offset:
            sys.exit(f"FAIL: {name} is not weightd's memory")
    pointers = {t.data_ptr() for t in tensors.values()}
    used = [p for p in model.parameters()] + [b for m in model.modules() if isinstance(m, Fp8Linear)
                                              for b in (m.weight, m.scale)]
    if any(t.data_ptr() not in pointers for t in used):
        sys.exit("FAIL: the model holds a weight that is not weightd's memory")
    kinds = sorted({loader_pb2.HandleType.Name(a.handle_type) for a in lease.manifest.allocations})
    fp8 = sum(t.dtype == torch.float8_e4m3fn for t in tensors.values())
    print(f"  zero-copy: {len(tensors)} tensors ({fp8} FP8) on cuda:{lease.manifest.device} through {', '.join(kinds)}; "
          f"data_ptr == allocation base + offset for every one, and for every weight the model uses")


def run_scheme(client, scheme, reference_logits, ids, max_logit):
    model_id = f"tiny-llama-{scheme}"
    started, events = time.time(), 0
    for event in client.load(model_id, path="tiny-llama", scheme=scheme):
        events += 1
    manifest = event.manifest
    print(f"{scheme}: loaded in {time.time() - started:.2f} s ({events} progress events), "
          f"{manifest.resident_bytes} bytes resident from {manifest.source_bytes}")
    lease = client.attach(model_id, rank=0)
    with lease as tensors:
        model = build_from_weightd(tensors)
        check_zero_copy(lease, tensors, model)
        fp8_logits = tiny_llama.logits(model, ids)
        del model
    client.unload(model_id)
    diff = (fp8_logits - reference_logits).abs().max().item()
    agree = (fp8_logits.argmax(-1) == reference_logits.argmax(-1)).float().mean().item()
    cosine = torch.nn.functional.cosine_similarity(fp8_logits.float(), reference_logits.float(), dim=-1).mean().item()
    # Closeness decides: a randomly initialized model's logits are nearly flat (top-1
    # margins far below the FP8 error), so its top-1 agreement is printed, not judged.
    ok = 0 < diff <= 0.1 * max_logit and cosine >= 0.99
    print(f"  logits vs BF16: max abs difference {diff:.5f} (max |logit| {max_logit:.3f}), mean cosine {cosine:.5f}, "
          f"top-1 agreement {agree * 100:.1f}% over {ids.numel()} positions -> {'PASS' if ok else 'FAIL'}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True)
    parser.add_argument("--handle-socket", required=True)
    parser.add_argument("--model-root", required=True, help="the daemon's --model-root")
    parser.add_argument("--schemes", default="per-tensor,per-channel,block")
    args = parser.parse_args()

    checkpoint = os.path.join(args.model_root, "tiny-llama")
    print(tiny_llama.write_checkpoint(checkpoint))
    print(f"  files: {', '.join(sorted(os.path.basename(f) for f in glob.glob(checkpoint + '/*')))}")
    from safetensors.torch import load_file
    reference = tiny_llama.make_model()
    state = {}
    for f in sorted(glob.glob(checkpoint + "/*.safetensors")):
        state.update(load_file(f, device="cuda"))
    reference.load_state_dict(state, strict=False)
    missing = {n for n, _ in reference.named_parameters()} - set(state)
    if missing:
        sys.exit(f"FAIL: the checkpoint lacks {sorted(missing)}")
    torch.manual_seed(1)
    ids = torch.randint(0, tiny_llama.CONFIG["vocab_size"], (4, 64), device="cuda")
    reference_logits = tiny_llama.logits(reference, ids)
    max_logit = reference_logits.abs().max().item()

    client = weightd.Client(args.address, args.handle_socket)
    results = [run_scheme(client, scheme, reference_logits, ids, max_logit) for scheme in args.schemes.split(",")]
    print("integration:", "PASS" if all(results) else "FAIL")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
