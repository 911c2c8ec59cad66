"""What an engine's model loader (weightd.vllm, weightd.sglang) needs from weightd, the
same for every engine: its options, LoadModel with layout vllm for the worker's
tensor-parallel size (idempotent), a read-only lease on its rank for the model's life,
the lease's tensors as torch tensors over the same memory, errors that name the socket
and say what to do, and a model built without allocating weights. Imports no engine."""
import contextlib
import json
import warnings

# tls_*: a daemon on TCP with TLS, as weightd.Client's arguments of those names.
TLS_OPTIONS = ("tls_ca", "tls_cert", "tls_key", "tls_server_name")
OPTIONS = {"address", "handle_socket", "model_id", "path", "scheme", *TLS_OPTIONS}
SCHEMES = ("per-tensor", "block")
DEFAULT_ADDRESS = "unix:/run/weightd/weightd.sock"
DEFAULT_HANDLE_SOCKET = "/run/weightd/handles.sock"
UNFUSED_MODULES = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")


def as_torch(array):
    """A host lease's NumPy array (FP8 as ml_dtypes.float8_e4m3fn, BF16 as
    ml_dtypes.bfloat16) as a torch tensor over the same memory; GPU leases' torch
    tensors as they are."""
    import torch

    if isinstance(array, torch.Tensor):
        return array
    import ml_dtypes
    import numpy as np

    with warnings.catch_warnings():
        # The mapping is read-only and nothing writes the parameters: torch's warning
        # about non-writable arrays says nothing here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if array.dtype == np.dtype(ml_dtypes.float8_e4m3fn):
            return torch.from_numpy(array.view(np.uint8)).view(torch.float8_e4m3fn)
        if array.dtype == np.dtype(ml_dtypes.bfloat16):
            return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
        return torch.from_numpy(array)


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter registered while a model is built is a meta tensor; buffers
    (RoPE caches, KV-cache scales) stay real, since weightd does not carry them.
    Engines register each parameter as soon as they make it (torch.empty), so no weight
    memory stays allocated."""
    import torch
    from torch import nn

    original = nn.Module.register_parameter

    def register_parameter(module, name, param):
        if param is not None and param.device.type != "meta":
            meta = nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=False)
            meta.__dict__.update({k: v for k, v in param.__dict__.items() if not k.startswith("_")})
            param = meta
        return original(module, name, param)

    nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def bind_parameters(model, lease_tensors, convert, who):
    """Every parameter of `model` found by name in `lease_tensors` becomes
    convert(module, leaf, tensor, meta), the tensor in the form the engine's post-load
    step would give it (`meta`: the parameter the engine built). Tied parameters
    (lm_head on embed_tokens) stay one object. Returns {name: lease tensor} of the
    bound parameters. ValueError naming the tensor when convert refuses it, when a
    lease tensor matches no parameter, or when the lease holds checkpoint (unfused)
    names: the model was loaded with layout checkpoint."""
    from torch import nn

    modules = dict(model.named_modules(remove_duplicate=False))
    names_of = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    bound = {}
    for names in names_of.values():
        present = [n for n in names if n in lease_tensors]
        if not present:
            continue  # a placeholder the engine drops or makes itself, or missing: checked after processing
        module_name, _, leaf = names[0].rpartition(".")
        module = modules[module_name]
        tensor = lease_tensors[present[0]]
        try:
            data = convert(module, leaf, tensor, module._parameters[leaf])
        except ValueError as e:
            raise ValueError(f"{who}: {present[0]}: {e}") from None
        param = nn.Parameter(data, requires_grad=False)
        for name in names:
            owner, _, owner_leaf = name.rpartition(".")
            modules[owner]._parameters[owner_leaf] = param
            bound[name] = tensor
    unused = sorted(set(lease_tensors) - set(bound))
    unfused = [n for n in unused if any(f".{m}." in n for m in UNFUSED_MODULES)]
    if unfused:
        raise ValueError(f"{who}: the lease holds {unfused[0]}, a checkpoint name: the model was loaded with "
                         "layout checkpoint (unload it, or use another model id)")
    if unused:
        raise ValueError(f"{who}: the lease's {unused[:4]} match no parameter of {type(model).__name__}")
    return bound


class EngineLease:
    """One worker's model from weightd. `who` names the loader in messages;
    `instead` says how to load without weightd."""

    def __init__(self, options, who, instead):
        if isinstance(options, str):
            options = json.loads(options)
        self.options = dict(options or {})
        self.who = who
        self.instead = instead
        unknown = sorted(set(self.options) - OPTIONS)
        if unknown:
            raise ValueError(f"{who}: unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
        if self.options.get("scheme", "per-tensor") not in SCHEMES:
            raise ValueError(f"{who}: scheme {self.options['scheme']!r} is not one of {SCHEMES}")
        self.manifest = None
        self.lease = None

    def _client(self):
        import weightd

        return weightd.Client(self.options.get("address", DEFAULT_ADDRESS),
                              self.options.get("handle_socket", DEFAULT_HANDLE_SOCKET),
                              **{key: self.options[key] for key in TLS_OPTIONS if key in self.options})

    def _unreachable(self, where, error):
        return RuntimeError(f"{self.who}: cannot reach weightd at {where} ({error}). Start weightd "
                            f"(docs/running.md), point the loader's \"address\" / \"handle_socket\" options at its "
                            f"sockets, or {self.instead}")

    def load(self, model_path, tp_size):
        """LoadModel (idempotent): model id and path default to the engine's model path."""
        if self.manifest is not None:
            return self.manifest
        import grpc

        import weightd

        client = self._client()
        try:
            self.manifest = client.load_and_wait(
                self.options.get("model_id", model_path), path=self.options.get("path", model_path),
                scheme=self.options.get("scheme", "per-tensor"), tp_size=tp_size, layout="vllm")
        except weightd.WeightdError as e:
            if e.code == grpc.StatusCode.UNAVAILABLE:
                raise self._unreachable(self.options.get("address", DEFAULT_ADDRESS), e.message) from None
            raise
        finally:
            client.close()
        return self.manifest

    def attach(self, rank):
        """The rank's lease, read-only, kept in self.lease; its tensors as torch tensors."""
        import weightd

        client = self._client()
        try:
            self.lease = client.attach(self.manifest.model_id, rank=rank, read_only=True)
        except (OSError, weightd.WeightdError) as e:
            raise self._unreachable(self.options.get("handle_socket", DEFAULT_HANDLE_SOCKET), e) from None
        finally:
            client.close()
        return {name: as_torch(t) for name, t in self.lease.tensors.items()}

    def rank_bytes(self, rank):
        """Bytes of the rank's allocations: weights the engine must not allocate again."""
        return sum(a.size for r in self.manifest.ranks if r.rank == rank for a in r.allocations)

    def quantization_config(self):
        """The load's quantization_config (from the manifest's config); None for scheme none."""
        return json.loads(self.manifest.config_json or b"{}").get("quantization_config")
