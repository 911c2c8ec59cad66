"""The Python package against the real daemon on host devices: load with
progress, attach (NumPy arrays over the mapped memory, exact bytes), the lease's
lifetime (close, and the holding process's death), and status codes."""
import os
import signal
import subprocess
import sys
import time

import grpc
import ml_dtypes
import numpy as np
import pytest

import weightd
from weightd.v1 import loader_pb2
from daemon import Daemon, read_safetensors


def leases(client, model):
    return next((m.leases for m in client.list() if m.model_id == model), None)


def wait_for_leases(client, model, expected, seconds=5.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if leases(client, model) == expected:
            return True
        time.sleep(0.025)
    return False


def test_load_yields_progress_then_the_manifest(client):
    events = list(client.load("tiny", path="tiny"))
    assert events, "no progress events"
    phases = [e.phase for e in events]
    assert phases == sorted(phases), f"phases went backwards: {phases}"
    done = [e.bytes_done for e in events]
    assert done == sorted(done)
    last = events[-1]
    assert last.phase == loader_pb2.PHASE_READY
    assert last.HasField("manifest")
    assert last.bytes_total > 0 and last.bytes_done == last.bytes_total
    assert last.tensors_done == last.tensors_total > 0
    assert last.manifest.state == loader_pb2.MODEL_STATE_READY
    assert client.manifest("tiny") == last.manifest
    # The same spec again finds the resident model.
    assert client.load_and_wait("tiny", path="tiny").model_id == "tiny"


def test_attached_arrays_equal_the_cpu_reference_byte_for_byte(daemon, client):
    client.load_and_wait("tiny", path="tiny")
    reference = daemon.dir / "reference"
    for args in (["quantize", str(daemon.model_root / "tiny"), str(reference)],
                 ["verify", str(daemon.model_root / "tiny"), str(reference)]):
        result = daemon.ctl(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    expected = read_safetensors(reference)
    numpy_dtypes = {"F8_E4M3": ml_dtypes.float8_e4m3fn, "BF16": ml_dtypes.bfloat16, "F16": np.float16,
                    "F32": np.float32}

    lease = client.attach("tiny", rank=0)
    with lease as tensors:
        assert lease.device_kind == "host"
        assert sorted(tensors) == sorted(expected)
        fp8 = 0
        for name, array in tensors.items():
            dtype, shape, data = expected[name]
            assert isinstance(array, np.ndarray), name
            assert array.dtype == np.dtype(numpy_dtypes[dtype]), name
            assert list(array.shape) == shape, name
            assert array.tobytes() == data, f"{name}: bytes differ from the reference"
            entry = lease.entry(name)
            pointer = array.__array_interface__["data"][0]
            assert pointer == lease.allocation_base(entry.allocation) + entry.offset == lease.data_pointer(name)
            assert not array.flags.writeable
            fp8 += dtype == "F8_E4M3"
        assert fp8 > 0


def test_push_load_gives_the_same_bytes_as_a_path_load(daemon, client):
    client.load_and_wait("by-path", path="tiny")
    events = list(client.load("by-push", push=str(daemon.model_root / "tiny")))
    assert events[-1].phase == loader_pb2.PHASE_READY
    with client.attach("by-path") as a, client.attach("by-push") as b:
        assert sorted(a) == sorted(b)
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), name


def test_a_peer_load_gives_the_same_bytes_as_a_path_load(daemon, client):
    """A second daemon on the node pulls the model from the first over its Unix socket."""
    client.load_and_wait("seed", path="tiny")
    other = Daemon("host")
    other.start()
    try:
        with weightd.Client(other.address, other.handle_socket) as receiver:
            events = list(receiver.load("copy", peer=[daemon.address], peer_model="seed"))
            assert events[-1].phase == loader_pb2.PHASE_READY
            assert events[-1].manifest.spec.source.peer.address == daemon.address
            with client.attach("seed") as a, receiver.attach("copy") as b:
                assert sorted(a) == sorted(b)
                for name in a:
                    assert a[name].tobytes() == b[name].tobytes(), name
            with pytest.raises(weightd.WeightdError) as refused:
                receiver.load_and_wait("other", peer=daemon.address, peer_model="seed", scheme="block")
            assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        other.stop()
    with pytest.raises(ValueError):
        list(client.load("x", path="tiny", peer=daemon.address))


def test_lease_lasts_until_close(client):
    client.load_and_wait("tiny", path="tiny")
    with client.attach("tiny") as tensors:
        kept = next(iter(tensors.values()))
        snapshot = kept.tobytes()
        assert wait_for_leases(client, "tiny", 1)
        with pytest.raises(weightd.WeightdError) as refused:
            client.unload("tiny")
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert leases(client, "tiny") == 0, "the lease outlived the with block"
    assert client.unload("tiny") > 0
    # An array kept past the lease still reads its pages (they stay mapped).
    assert kept.tobytes() == snapshot


def test_lease_ends_when_the_holding_process_dies(daemon, client):
    client.load_and_wait("tiny", path="tiny")
    script = ("import sys, weightd\n"
              f"lease = weightd.Client({daemon.address!r}, {daemon.handle_socket!r}).attach('tiny')\n"
              "print(len(lease.tensors), flush=True)\n"
              "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        line = child.stdout.readline()
        assert line.strip().isdigit() and int(line) > 0, f"the child did not attach: {line!r}"
        assert wait_for_leases(client, "tiny", 1)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert wait_for_leases(client, "tiny", 0), "the killed process still holds a lease"
    assert client.unload("tiny") > 0


def test_errors_carry_the_daemons_code_and_message(daemon, client):
    with pytest.raises(weightd.WeightdError) as e:
        client.manifest("absent")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "absent" in e.value.message
    with pytest.raises(weightd.WeightdError) as e:
        client.attach("absent")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(weightd.WeightdError) as e:
        list(client.load("m", path="no-such-dir"))
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "no-such-dir" in e.value.message

    client.load_and_wait("tiny", path="tiny")
    with pytest.raises(weightd.WeightdError) as e:
        client.load_and_wait("tiny", path="tiny", scheme="block")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(weightd.WeightdError) as e:
        client.attach("tiny", rank=5)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT

    nowhere = weightd.Client(f"unix:{daemon.dir}/none.sock", f"{daemon.dir}/none.sock")
    with pytest.raises(weightd.WeightdError) as e:
        nowhere.list()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(weightd.WeightdError) as e:
        nowhere.attach("tiny")
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_host_attach_works_where_torch_cannot_be_imported(daemon, client):
    client.load_and_wait("tiny", path="tiny")
    script = ("import sys\n"
              "sys.modules['torch'] = None  # any import of torch now fails\n"
              "import weightd\n"
              f"with weightd.Client({daemon.address!r}, {daemon.handle_socket!r}).attach('tiny') as t:\n"
              "    print(len(t))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0


def _first_descriptor(daemon, model_id):
    from weightd import handoff

    sock, manifest, _, fds = handoff.attach(daemon.handle_socket, model_id, 0, 10)
    for extra in fds[1:]:
        os.close(extra)
    return sock, fds[0], manifest.allocations[0].size


def test_a_lease_can_neither_write_nor_resize_the_memory_unless_the_load_allows_writing(client, daemon):
    import mmap

    from weightd import handoff

    client.load_and_wait("ro", path="tiny")
    sock, fd, size = _first_descriptor(daemon, "ro")
    try:
        with pytest.raises(PermissionError):  # a read-only descriptor: no writable shared mapping
            mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(OSError):
            os.ftruncate(fd, 0)
        mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ).close()
    finally:
        os.close(fd)
        handoff.release(sock)

    client.load_and_wait("rw", path="tiny", writable=True)
    sock, fd, size = _first_descriptor(daemon, "rw")
    try:
        mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE).close()
        for new_size in (0, size // 2, size * 2):  # sealed: shrinking would SIGBUS every other mapping
            with pytest.raises(PermissionError):
                os.ftruncate(fd, new_size)
        assert os.fstat(fd).st_size == size
    finally:
        os.close(fd)
        handoff.release(sock)
