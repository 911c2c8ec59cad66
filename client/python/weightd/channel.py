"""gRPC channels to weightd. A Unix socket is always plain (the daemon checks the
peer's uid there); TCP uses TLS when any TLS option is given (mutual TLS with a
client certificate), and is plain otherwise (a daemon run with --insecure-tcp).
The same rules as the C++ client's ChannelCredentialsFor (client/cpp/channel.h)."""
import grpc

from weightd.errors import WeightdError

MAX_MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
_INVALID_ARGUMENT = 3


def grpc_target(address):
    """"unix:/p", "unix:///p" and "host:port" as given; a bare path is a Unix socket."""
    return "unix:" + address if address.startswith("/") else address


def is_unix(target):
    return target.startswith(("unix:", "unix-abstract:"))


def _read_pem(path, what):
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise WeightdError.from_number(_INVALID_ARGUMENT, f"{what}: cannot read '{path}': {e.strerror}") from None
    if b"-----BEGIN " not in pem:
        raise WeightdError.from_number(_INVALID_ARGUMENT, f"{what}: '{path}' holds no PEM block")
    return pem


class Tls:
    """TLS towards a TCP address, its PEM files read once, here: `ca` (the roots
    that signed the daemon's certificate; None: the system's), `cert` and `key`
    (this client's, for mutual TLS), `server_name` (the name in the daemon's
    certificate when it is not the host dialed). A file that cannot be read, or a
    certificate without its key, raises WeightdError INVALID_ARGUMENT naming it."""

    def __init__(self, ca=None, cert=None, key=None, server_name=None):
        if cert and not key:
            raise WeightdError.from_number(_INVALID_ARGUMENT, f"TLS client certificate '{cert}' has no key file")
        if key and not cert:
            raise WeightdError.from_number(_INVALID_ARGUMENT, f"TLS client key '{key}' has no certificate file")
        self.root_certificates = _read_pem(ca, "TLS CA file") if ca else None
        self.certificate_chain = _read_pem(cert, "TLS certificate file") if cert else None
        self.private_key = _read_pem(key, "TLS key file") if key else None
        self.server_name = server_name

    @classmethod
    def of(cls, ca=None, cert=None, key=None, server_name=None):
        """A Tls when any option is given, else None (plain TCP)."""
        return cls(ca, cert, key, server_name) if (ca or cert or key or server_name) else None


def open_channel(target, tls=None, options=()):
    """A channel to `target` (see grpc_target) with weightd's message limits and
    `options` (gRPC channel arguments); TLS on TCP when `tls` is a Tls."""
    options = CHANNEL_OPTIONS + list(options)
    if tls is None or is_unix(target):
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.root_certificates,
                                               private_key=tls.private_key,
                                               certificate_chain=tls.certificate_chain)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, credentials, options=options)
