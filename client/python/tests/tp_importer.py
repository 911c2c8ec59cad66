"""One worker of a tensor-parallel group, as its own process: attaches to RANK of
MODEL, checks every tensor against EXPORT_DIR (`weightctl export --rank RANK`) byte
for byte, that it sits at its allocation's base plus the manifest's offset, and on
GPUs that it is on the rank's device; prints one JSON line.
Usage: tp_importer.py ADDRESS HANDLE_SOCKET MODEL RANK EXPORT_DIR"""
import json
import sys

import weightd
from daemon import read_safetensors


def as_bytes(tensor):
    if hasattr(tensor, "is_cuda"):  # torch, on a GPU
        import torch
        return tensor.reshape(-1).view(torch.uint8).cpu().numpy().tobytes()
    return tensor.tobytes()


def pointer(tensor):
    return tensor.data_ptr() if hasattr(tensor, "data_ptr") else tensor.__array_interface__["data"][0]


def main(address, handle_socket, model, rank, export_dir):
    rank = int(rank)
    expected = read_safetensors(export_dir)
    client = weightd.Client(address, handle_socket)
    lease = client.attach(model, rank=rank)
    with lease as tensors:
        if sorted(tensors) != sorted(expected):
            sys.exit(f"rank {rank}: tensors differ from the export")
        for name, tensor in tensors.items():
            entry = lease.entry(name)
            if pointer(tensor) != lease.allocation_base(entry.allocation) + entry.offset:
                sys.exit(f"rank {rank}: {name} is not weightd's memory")
            if hasattr(tensor, "is_cuda") and tensor.device.index != lease.manifest.device:
                sys.exit(f"rank {rank}: {name} is on cuda:{tensor.device.index}, not cuda:{lease.manifest.device}")
            if as_bytes(tensor) != expected[name][2]:
                sys.exit(f"rank {rank}: {name}: bytes differ from the export")
        print(json.dumps({"rank": rank, "device": lease.manifest.device, "kind": lease.device_kind,
                          "tensors": len(tensors)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
