"""Checks, on a GPU machine with PyTorch, what a Python worker sees of weightd:

1. PyTorch's own float8_e4m3fn conversion of the same scaled values gives the
   bytes weightd wrote (per-tensor, per-channel and block scales).
2. A Python process imports a loaded model's memory through the handle socket
   (VMM file descriptors over SCM_RIGHTS, or a legacy IPC handle), builds CUDA
   tensors on it without a copy, and reads the exported bytes.

Usage: torch_import_check.py CHECKPOINT EXPORT --manifest M.json
       [--handle-socket S --model ID]
"""
import argparse
import array
import ctypes
import json
import socket
import struct
import sys

import torch
from safetensors.torch import load_file


def load_dir(path):
    import glob
    tensors = {}
    for f in sorted(glob.glob(path + "/*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def expand_scale(scale, shape, name):
    rows, cols = shape
    if name.endswith("_scale_inv"):  # 128x128 blocks
        return scale.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    if scale.dim() == 2:  # per channel [rows, 1]
        return scale.expand(rows, cols)
    return scale.reshape(1, 1).expand(rows, cols)


def check_torch_conversion(source, export):
    checked = 0
    for name, q in export.items():
        if q.dtype != torch.float8_e4m3fn:
            continue
        scale_name = next((name + s for s in ("_scale", "_scale_inv") if name + s in export), None)
        scale = expand_scale(export[scale_name].float(), q.shape, scale_name)
        x = source[name].float()
        inv = torch.reciprocal(scale)  # fp32 IEEE, elementwise
        y = torch.clamp(x * inv, -448.0, 448.0)
        ours = q.view(torch.uint8)
        theirs = y.to(torch.float8_e4m3fn).view(torch.uint8)
        mismatches = int((ours != theirs).sum())
        if mismatches:
            sys.exit(f"{name}: {mismatches} bytes differ from torch's float8_e4m3fn conversion")
        checked += 1
    print(f"torch float8_e4m3fn conversion agrees on {checked} quantized tensors")


def attach(handle_socket, model, rank=0):
    # AttachRequest{model_id=1 (string), rank=2 (varint)}, framed by a 4-byte LE length.
    body = b"\x0a" + bytes([len(model)]) + model.encode() + b"\x10" + bytes([rank])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(handle_socket)
    sock.sendall(struct.pack("<I", len(body)) + body)
    fds = array.array("i")
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("<I", data[:4])[0]:
        chunk, ancdata, _, _ = sock.recvmsg(1 << 20, socket.CMSG_LEN(64 * fds.itemsize))
        if not chunk:
            sys.exit("handle socket closed")
        data += chunk
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return sock, list(fds), data[4:]


def ipc_handles(response):
    """The legacy IPC handles of the lease's manifest (GetManifest carries none)."""
    from weightd.v1 import handoff_pb2
    parsed = handoff_pb2.AttachResponse()
    parsed.ParseFromString(response)
    return [a.cuda_ipc_handle for a in parsed.manifest.allocations]


class CudaArray:
    def __init__(self, pointer, size):
        self.__cuda_array_interface__ = {"shape": (size,), "typestr": "|u1", "data": (pointer, False), "version": 3}


def import_vmm(fd, size, device):
    cuda = ctypes.CDLL("libcuda.so.1")
    handle = ctypes.c_ulonglong()
    ok = cuda.cuMemImportFromShareableHandle(ctypes.byref(handle), ctypes.c_void_p(fd), 1)  # POSIX FD
    assert ok == 0, f"cuMemImportFromShareableHandle: {ok}"
    address = ctypes.c_ulonglong()
    assert cuda.cuMemAddressReserve(ctypes.byref(address), ctypes.c_size_t(size), ctypes.c_size_t(0),
                                    ctypes.c_ulonglong(0), ctypes.c_ulonglong(0)) == 0
    assert cuda.cuMemMap(address, ctypes.c_size_t(size), ctypes.c_size_t(0), handle, ctypes.c_ulonglong(0)) == 0

    class Location(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]

    class Access(ctypes.Structure):
        _fields_ = [("location", Location), ("flags", ctypes.c_int)]

    access = Access(Location(1, device), 3)  # CU_MEM_LOCATION_TYPE_DEVICE, PROT_READWRITE
    assert cuda.cuMemSetAccess(address, ctypes.c_size_t(size), ctypes.byref(access), ctypes.c_size_t(1)) == 0
    return address.value


def cuda_runtime():
    import glob
    import os
    site = os.path.dirname(os.path.dirname(torch.__file__))
    for pattern in (site + "/nvidia/cu*/lib/libcudart.so*", site + "/nvidia/cuda_runtime/lib/libcudart.so*",
                    "/usr/local/cuda/lib64/libcudart.so*"):
        found = sorted(glob.glob(pattern))
        if found:
            return ctypes.CDLL(found[0])
    sys.exit("no libcudart found")


def import_ipc(handle_bytes):
    torch.cuda.current_device()  # the runtime's primary context, shared with torch
    handle = ctypes.create_string_buffer(bytes(handle_bytes), 64)
    pointer = ctypes.c_void_p()

    class IpcHandle(ctypes.Structure):
        _fields_ = [("reserved", ctypes.c_char * 64)]

    err = cuda_runtime().cudaIpcOpenMemHandle(ctypes.byref(pointer), IpcHandle.from_buffer_copy(handle.raw), 1)
    assert err == 0, f"cudaIpcOpenMemHandle: {err}"
    return pointer.value


def check_import(manifest, export, handle_socket, model):
    torch.zeros(1, device="cuda")  # makes the primary context current for the driver calls
    rank = manifest["ranks"][0]
    sock, fds, response = attach(handle_socket, model)
    bases = []
    next_fd = 0
    for allocation in rank["allocations"]:
        size = int(allocation["size"])
        if allocation["handle_type"] == "HANDLE_TYPE_CUDA_VMM_FD":
            bases.append(import_vmm(fds[next_fd], size, int(rank.get("device", 0))))
            next_fd += 1
        else:
            bases.append(import_ipc(ipc_handles(response)[int(allocation.get("id", 0))]))
    checked = 0
    for t in rank["tensors"]:
        size = int(t["size"])
        base = bases[int(t.get("allocation", 0))]
        view = torch.as_tensor(CudaArray(base + int(t.get("offset", 0)), size), device="cuda")  # no copy
        expected = export[t["name"]].contiguous().reshape(-1).view(torch.uint8).cuda()
        if not torch.equal(view, expected):
            sys.exit(f"{t['name']}: bytes imported in Python differ from the export")
        checked += 1
    print(f"python imported {len(bases)} allocation(s) ({rank['allocations'][0]['handle_type']}) without a copy; "
          f"{checked} tensors equal the export")
    sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("export")
    parser.add_argument("--manifest")
    parser.add_argument("--handle-socket")
    parser.add_argument("--model")
    args = parser.parse_args()
    export = load_dir(args.export)
    check_torch_conversion(load_dir(args.checkpoint), export)
    if args.handle_socket:
        check_import(json.load(open(args.manifest)), export, args.handle_socket, args.model)


if __name__ == "__main__":
    main()
