"""The Python client of weightd: load (with progress), manifest, attach (zero-copy
tensors), unload, list, status. Every failure raises WeightdError carrying the
daemon's status code. Thread-safe: a Client may be shared by threads."""
import grpc

from weightd.channel import Tls, grpc_target, is_unix, open_channel
from weightd.errors import WeightdError
from weightd.lease import Lease
from weightd.push import Pusher, local_shards
from weightd.v1 import loader_pb2, loader_pb2_grpc

SCHEMES = {"per-tensor": loader_pb2.SCHEME_PER_TENSOR, "per-channel": loader_pb2.SCHEME_PER_CHANNEL,
           "block": loader_pb2.SCHEME_BLOCK, "none": loader_pb2.SCHEME_NONE}
NONFINITE = {"fail": loader_pb2.NONFINITE_FAIL, "saturate": loader_pb2.NONFINITE_SATURATE}
LAYOUTS = {"checkpoint": loader_pb2.LAYOUT_CHECKPOINT, "vllm": loader_pb2.LAYOUT_VLLM}


class Client:
    """`address`: "unix:/path", a bare "/path" or "host:port". On TCP, TLS when any
    tls_* option is given: `tls_ca` (PEM roots that signed the daemon's certificate;
    None: the system's), `tls_cert` and `tls_key` (this client's certificate, for a
    daemon with --tls-client-ca), `tls_server_name` (the name in the daemon's
    certificate when it is not the host in `address`). On TCP, a TLS file that
    cannot be read raises WeightdError INVALID_ARGUMENT naming it."""

    def __init__(self, address="unix:/run/weightd/weightd.sock", handle_socket="/run/weightd/handles.sock",
                 attach_timeout=30.0, tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None):
        self._target = grpc_target(address)
        # A Unix socket never uses TLS (the daemon checks the peer's uid): nothing to read.
        self._tls = None if is_unix(self._target) else Tls.of(tls_ca, tls_cert, tls_key, tls_server_name)
        self._channel = open_channel(self._target, self._tls)
        self._stub = loader_pb2_grpc.LoaderStub(self._channel)
        self.handle_socket = handle_socket
        self.attach_timeout = attach_timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def load(self, model_id, path=None, push=None, scheme="per-tensor", ignore=(), nonfinite="fail", tp_size=1,
             devices=(), layout="checkpoint", writable=False, peer=None, peer_model=None, peer_streams=0,
             prefer_peers=False):
        """Loads a checkpoint, yielding every LoadEvent (phase, bytes_done, bytes_total,
        tensors_done, tensors_total, bytes_per_second); the last one is PHASE_READY and
        carries the manifest. `path`: a directory under the daemon's --model-root;
        `push`: a local directory or .safetensors file, streamed to the daemon.
        `layout`: "checkpoint" (the checkpoint's tensors) or "vllm" (vLLM's fused
        parameters, for the vLLM loader plugin: weightd.vllm). `writable`: workers may
        map the memory writable (frameworks that post-process weights in place); by
        default the host backend hands out read-only descriptors. `peer`: another
        weightd that holds the model ("host:port" or "unix:/path"; a list: the first,
        then fallbacks), whose FP8 bytes are placed without quantizing again
        (docs/cluster.md); `peer_model` its id there (default: model_id).
        `prefer_peers`: a path load takes the bytes from one of the daemon's --peers
        that holds the same checkpoint, reading the files only when none does."""
        if sum(x is not None for x in (path, push, peer)) != 1:
            raise ValueError("load needs exactly one of path=, push= or peer=")
        if scheme not in SCHEMES or nonfinite not in NONFINITE or layout not in LAYOUTS:
            raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, nonfinite one of {sorted(NONFINITE)}, "
                             f"layout one of {sorted(LAYOUTS)}")
        request = loader_pb2.LoadModelRequest(
            model_id=model_id,
            quantization=loader_pb2.Quantization(scheme=SCHEMES[scheme], ignore=list(ignore),
                                                 nonfinite=NONFINITE[nonfinite]),
            placement=loader_pb2.Placement(tp_size=tp_size, devices=list(devices), layout=LAYOUTS[layout],
                                           writable=writable))
        files = []
        if push is not None:
            files, config_json = local_shards(push)
            request.source.push.shard_files.extend(f.rsplit("/", 1)[-1] for f in files)
            request.source.push.config_json = config_json
        elif peer is not None:
            addresses = [peer] if isinstance(peer, str) else list(peer)
            request.source.peer.address = addresses[0]
            request.source.peer.fallback_addresses.extend(addresses[1:])
            request.source.peer.model_id = peer_model or ""
            request.source.peer.streams = peer_streams
        else:
            request.source.path.path = path
            request.prefer_peers = prefer_peers
        pusher = None
        try:
            for event in self._stub.LoadModel(request):
                # The first event means the daemon waits for the shards.
                if files and pusher is None:
                    pusher = Pusher(self._target, model_id, files, self._tls)
                yield event
        except grpc.RpcError as e:
            raise WeightdError.from_rpc(e) from None
        finally:
            failed = pusher.join() if pusher is not None else None
        if failed is not None:
            raise failed

    def load_and_wait(self, model_id, **kwargs):
        """load() to the end; returns the manifest."""
        manifest = None
        for event in self.load(model_id, **kwargs):
            if event.HasField("manifest"):
                manifest = event.manifest
        if manifest is None:
            raise WeightdError.from_number(15, f"load of {model_id} ended without a manifest")
        return manifest

    def manifest(self, model_id):
        return self._call(self._stub.GetManifest, loader_pb2.GetManifestRequest(model_id=model_id))

    def attach(self, model_id, rank=0, read_only=False):
        """A Lease on `rank`: use it as a context manager (it yields the dict of
        tensors) or call close(). See weightd.lease. Host ranks are always mapped
        read-only; `read_only` maps GPU ranks (VMM handles) read-only too."""
        return Lease(self.handle_socket, model_id, rank, self.attach_timeout, read_only)

    def unload(self, model_id, force=False):
        """Returns the bytes freed."""
        request = loader_pb2.UnloadModelRequest(model_id=model_id, force=force)
        return self._call(self._stub.UnloadModel, request).freed_bytes

    def list(self):
        return list(self._call(self._stub.ListModels, loader_pb2.ListModelsRequest()).models)

    def status(self):
        return self._call(self._stub.GetStatus, loader_pb2.GetStatusRequest())

    @staticmethod
    def _call(method, request):
        try:
            return method(request)
        except grpc.RpcError as e:
            raise WeightdError.from_rpc(e) from None
