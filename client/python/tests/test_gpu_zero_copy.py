"""On a GPU machine: the package yields PyTorch CUDA tensors over weightd's own
device memory (VMM file descriptors, or legacy IPC handles), without a copy:
every tensor's data_ptr() is the imported allocation's base plus the manifest's
offset, and its bytes equal what weightctl export read from the same memory.
Skipped where PyTorch or a GPU is missing."""
import pytest

from daemon import Daemon, binaries_present, read_safetensors

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)
if not binaries_present():
    pytest.skip("weightd binaries not built (build/bin or WEIGHTD_BIN_DIR)", allow_module_level=True)

import weightd  # noqa: E402


@pytest.fixture(params=["vmm", "ipc"])
def gpu_daemon(request):
    d = Daemon("cuda", [f"--cuda-handles={request.param}"])
    d.generate_tiny("tiny", "--shards=2", "--dtype=bf16")
    d.start()
    yield d
    d.stop()


def test_cuda_tensors_share_weightds_memory(gpu_daemon):
    client = weightd.Client(gpu_daemon.address, gpu_daemon.handle_socket)
    client.load_and_wait("tiny", path="tiny")
    exported = gpu_daemon.dir / "export"
    result = gpu_daemon.ctl("export", "tiny", str(exported))
    assert result.returncode == 0, result.stderr
    expected = read_safetensors(exported)
    dtypes = {"F8_E4M3": torch.float8_e4m3fn, "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}

    lease = client.attach("tiny", rank=0)
    with lease as tensors:
        assert lease.device_kind == "cuda"
        assert sorted(tensors) == sorted(expected)
        for name, tensor in tensors.items():
            dtype, shape, data = expected[name]
            entry = lease.entry(name)
            assert tensor.is_cuda and tensor.device.index == lease.manifest.device, name
            assert tensor.dtype == dtypes[dtype] and list(tensor.shape) == shape, name
            assert tensor.data_ptr() == lease.allocation_base(entry.allocation) + entry.offset, f"{name} was copied"
            assert tensor.reshape(-1).view(torch.uint8).cpu().numpy().tobytes() == data, f"{name}: bytes differ"
        assert any(t.dtype == torch.float8_e4m3fn for t in tensors.values())
    client.unload("tiny")
