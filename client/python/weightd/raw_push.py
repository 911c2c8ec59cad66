"""The raw push connection on the daemon's Unix socket (base/raw_push_wire.h;
docs/api.md, "Raw push on the Unix socket"): one shard's PushShards stream without
gRPC, its bytes sent straight from the file (sendfile). The same protocol and
statuses as the C++ client's RawShardStream (client/cpp/raw_shard_stream.cc):

  client -> daemon  b"WDPUSH01"; the daemon answers the same 8 bytes, or (a daemon
                    that takes no raw pushes) HTTP/2 or nothing: use gRPC instead
  client -> daemon  frames: a 4-byte little-endian length, then a serialized
                    ShardChunk (the first carries `open`); a frame of length 0 ends
  daemon -> client  a 4-byte little-endian length, then [u32 code][u32 message
                    length][message][serialized PushSummary]

TLS never applies: a Unix socket is always plain (the daemon checks the peer's uid)."""
import os
import socket
import struct

from google.protobuf.message import DecodeError

from weightd.errors import WeightdError
from weightd.v1 import loader_pb2

MAGIC = b"WDPUSH01"
CHUNK_BYTES = 4 << 20
# How long the daemon may take to accept (it answers at once).
GREETING_TIMEOUT_SECONDS = 10
MAX_REPLY_BYTES = 64 << 10
_SUN_PATH_BYTES = 108
_NOT_FOUND, _INVALID_ARGUMENT, _INTERNAL, _UNAVAILABLE = 5, 3, 13, 14
_LENGTH = struct.Struct("<I")
_NO_ANSWER = "weightd closed the raw push connection without an answer"


def push_file_raw(target, model_id, path):
    """Pushes the shard file `path` into the push load of `model_id` on the daemon
    at `target` ("unix:/p", "unix:///p", a bare "/p", or "unix-abstract:name").
    True once the daemon has the shard; False when the daemon takes no raw pushes
    (nothing was sent: push over gRPC instead). Raises WeightdError with the
    daemon's status when it fails the shard, UNAVAILABLE when the socket cannot
    be reached or closes without an answer."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise WeightdError.from_number(_NOT_FOUND, f"cannot open {path}: {e.strerror}") from None
    with f, _connect(target) as sock:
        if not _greet(sock):
            return False
        size = os.fstat(f.fileno()).st_size
        _send_shard(sock, f, path, loader_pb2.ShardChunk(open=loader_pb2.ShardOpen(
            model_id=model_id, shard_file=os.path.basename(path), size=size)), size)
        _read_reply(sock)
        return True


def _socket_name(target):
    if target.startswith("unix-abstract:"):
        name, prefix = target[len("unix-abstract:"):], "\0"  # an abstract name starts with a NUL byte
    else:
        name, prefix = target[len("unix:"):] if target.startswith("unix:") else target, ""
        if target.startswith("unix:") and name.startswith("//"):
            name = name[2:]
    if not name or len(name.encode()) + len(prefix) >= _SUN_PATH_BYTES:
        raise WeightdError.from_number(_INVALID_ARGUMENT, f"bad Unix socket address '{target}'")
    return prefix + name


def _connect(target):
    name = _socket_name(target)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(name)
    except OSError as e:
        sock.close()
        raise WeightdError.from_number(_UNAVAILABLE, f"cannot connect to {target}: {e.strerror}") from None
    return sock


def _greet(sock):
    """Whether the daemon accepted the connection for a raw push."""
    sock.settimeout(GREETING_TIMEOUT_SECONDS)
    try:
        sock.sendall(MAGIC)
        accepted = _recv_exactly(sock, len(MAGIC)) == MAGIC
    except OSError:  # refused, reset, or the timeout
        return False
    sock.settimeout(None)  # blocking again (sendfile needs it): the answer comes when the shard is placed
    return accepted


def _send_shard(sock, f, path, first, size):
    """Sends `first` and then the file's bytes as data frames, then the end frame.
    A daemon that failed the shard stops reading: the write fails and its answer,
    which carries the status, is read all the same."""
    try:
        opening = first.SerializeToString()
        sock.sendall(_LENGTH.pack(len(opening)) + opening)
        offset = 0
        while offset < size:
            n = min(CHUNK_BYTES, size - offset)
            prefix = _data_field_prefix(n)
            sock.sendall(_LENGTH.pack(len(prefix) + n) + prefix)
            end = offset + n
            while offset < end:
                sent = os.sendfile(sock.fileno(), f.fileno(), offset, end - offset)
                if sent == 0:
                    # The file shrank inside a frame: the daemon's answer names the cut.
                    _shutdown(sock, socket.SHUT_WR)
                    return
                offset += sent
        sock.sendall(_LENGTH.pack(0))
    except (BrokenPipeError, ConnectionResetError):
        return
    except OSError as e:
        _shutdown(sock, socket.SHUT_RDWR)  # the daemon sees the shard cut: its load fails
        raise WeightdError.from_number(_INTERNAL, f"sending {path}: {e.strerror}") from None


def _shutdown(sock, how):
    try:
        sock.shutdown(how)
    except OSError:
        pass


def _data_field_prefix(length):
    """The tag and length of ShardChunk's `data` (field 2, length-delimited)."""
    prefix = bytearray(b"\x12")
    while length >= 0x80:
        prefix.append((length & 0x7F) | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix)


def _read_reply(sock):
    """The daemon's PushSummary, or its status raised."""
    try:
        length = _recv_exactly(sock, _LENGTH.size)
        if len(length) != _LENGTH.size:
            raise WeightdError.from_number(_UNAVAILABLE, _NO_ANSWER)
        (n,) = _LENGTH.unpack(length)
        if n > MAX_REPLY_BYTES:
            raise WeightdError.from_number(_INTERNAL, "malformed raw push answer from the daemon")
        body = _recv_exactly(sock, n)
    except ConnectionResetError:
        raise WeightdError.from_number(_UNAVAILABLE, _NO_ANSWER) from None
    if len(body) != n:
        raise WeightdError.from_number(_UNAVAILABLE, "weightd closed the raw push connection inside its answer")
    if n < 8:
        raise WeightdError.from_number(_INTERNAL, f"malformed raw push answer: a reply of {n} bytes")
    code, message_bytes = struct.unpack_from("<II", body)
    if code > 16 or message_bytes > n - 8:
        raise WeightdError.from_number(_INTERNAL, "malformed raw push answer from the daemon")
    if code != 0:
        raise WeightdError.from_number(code, body[8:8 + message_bytes].decode("utf-8", "replace"))
    try:
        return loader_pb2.PushSummary.FromString(body[8 + message_bytes:])
    except DecodeError:
        raise WeightdError.from_number(_INTERNAL, "malformed PushSummary from the daemon") from None


def _recv_exactly(sock, n):
    """Up to `n` bytes: fewer when the connection ends first."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
