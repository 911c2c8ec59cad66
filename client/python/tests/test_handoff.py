"""The package's side of the handle socket against a scripted peer: answers that
break the protocol fail with the code that names what went wrong, and close every
descriptor they received."""
import os
import socket
import struct
import tempfile
import threading

import grpc
import pytest

from weightd import WeightdError, handoff
from weightd.v1 import handoff_pb2, loader_pb2


def serve_once(answer):
    """A Unix socket whose peer reads one request and calls answer(connection)."""
    directory = tempfile.mkdtemp(prefix="weightd-handoff-")
    path = os.path.join(directory, "h.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run():
        connection, _ = server.accept()
        with connection:
            (length,) = struct.unpack("<I", connection.recv(4))
            request = handoff_pb2.AttachRequest()
            request.ParseFromString(connection.recv(length))
            assert request.model_id == "m" and request.rank == 3
            answer(connection)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return path, thread


def frame(response):
    body = response.SerializeToString()
    return struct.pack("<I", len(body)) + body


def memfd_response(allocations):
    manifest = loader_pb2.RankManifest(rank=3)
    for i in range(allocations):
        manifest.allocations.add(id=i, size=4096, handle_type=loader_pb2.HANDLE_TYPE_MEMFD)
    return handoff_pb2.AttachResponse(manifest=manifest, lease_id=7)


def open_test_memfds():
    """Descriptors of this process open on the test's memfd."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:weightd-test")
        except OSError:
            pass
    return count


def test_a_refusal_carries_the_daemons_code_and_message():
    path, thread = serve_once(lambda c: c.sendall(frame(handoff_pb2.AttachResponse(code=9, message="model m is LOADING"))))
    with pytest.raises(WeightdError) as e:
        handoff.attach(path, "m", 3, timeout=5)
    thread.join()
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.message == "model m is LOADING"


def test_fewer_descriptors_than_allocations_is_data_loss_and_leaks_none():
    memfd = os.memfd_create("weightd-test")

    def answer(connection):
        connection.sendmsg([frame(memfd_response(2))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                         struct.pack("i", memfd))])

    path, thread = serve_once(answer)
    with pytest.raises(WeightdError) as e:
        handoff.attach(path, "m", 3, timeout=5)
    thread.join()
    os.close(memfd)
    assert e.value.code == grpc.StatusCode.DATA_LOSS and "1 file descriptors for 2" in e.value.message
    assert open_test_memfds() == 0, "a received descriptor was left open"


def test_a_peer_that_closes_mid_answer_is_data_loss():
    path, thread = serve_once(lambda c: c.sendall(frame(memfd_response(1))[:6]))
    with pytest.raises(WeightdError) as e:
        handoff.attach(path, "m", 3, timeout=5)
    thread.join()
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_a_peer_that_never_answers_is_deadline_exceeded():
    done = threading.Event()
    path, thread = serve_once(lambda c: done.wait(5))
    with pytest.raises(WeightdError) as e:
        handoff.attach(path, "m", 3, timeout=0.2)
    done.set()
    thread.join()
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
