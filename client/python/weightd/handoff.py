"""The handle socket: one AttachRequest frame out, one AttachResponse frame back
with a file descriptor per fd-backed allocation (SCM_RIGHTS). A frame is a 4-byte
little-endian length and a serialized message. The connection is the lease."""
import array
import socket
import struct

from weightd.errors import WeightdError
from weightd.v1 import handoff_pb2

_MAX_FDS = 250
_RELEASE_WAIT_SECONDS = 5.0


def attach(socket_path, model_id, rank, timeout):
    """Returns (connected socket, RankManifest, lease id, fds by allocation index:
    an int, or None for allocations without a descriptor)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except OSError as e:
        sock.close()
        raise WeightdError.from_number(14, f"cannot connect to handle socket {socket_path}: {e.strerror or e}")
    try:
        body = handoff_pb2.AttachRequest(model_id=model_id, rank=rank).SerializeToString()
        sock.sendall(struct.pack("<I", len(body)) + body)
        payload, fds = _receive_frame(sock, socket_path)
        response = handoff_pb2.AttachResponse()
        response.ParseFromString(payload)
    except BaseException:
        sock.close()
        raise
    if response.code != 0:
        sock.close()
        _close_all(fds)
        raise WeightdError.from_number(response.code, response.message)
    return sock, response.manifest, response.lease_id, _by_allocation(response.manifest, fds, sock, model_id, rank)


def release(sock):
    """Half-closes and waits (bounded) for the daemon to close its end, which it
    does once the lease has ended: an unload right afterwards then succeeds."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(_RELEASE_WAIT_SECONDS)
        while sock.recv(1):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def _receive_frame(sock, socket_path):
    data = b""
    fds = array.array("i")
    while len(data) < 4 or len(data) < 4 + struct.unpack("<I", data[:4])[0]:
        try:
            chunk, ancdata, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(_MAX_FDS * fds.itemsize))
        except socket.timeout:
            raise WeightdError.from_number(4, f"no answer from handle socket {socket_path}") from None
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cmsg[: len(cmsg) - (len(cmsg) % fds.itemsize)])
        if not chunk:
            _close_all(fds)
            raise WeightdError.from_number(15 if data else 14, f"handle socket {socket_path} closed mid-answer")
        data += chunk
    return data[4:], list(fds)


def _by_allocation(manifest, fds, sock, model_id, rank):
    from weightd.v1 import loader_pb2

    with_fd = (loader_pb2.HANDLE_TYPE_MEMFD, loader_pb2.HANDLE_TYPE_CUDA_VMM_FD)
    wanted = sum(1 for a in manifest.allocations if a.handle_type in with_fd)
    if wanted != len(fds):
        sock.close()
        _close_all(fds)
        raise WeightdError.from_number(15, f"lease for {model_id} rank {rank} came with {len(fds)} file "
                                           f"descriptors for {wanted} fd-backed allocations")
    received = iter(fds)
    return [next(received) if a.handle_type in with_fd else None for a in manifest.allocations]


def _close_all(fds):
    import os
    for fd in fds:
        os.close(fd)
