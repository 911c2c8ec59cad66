"""A lease's tensors as vLLM's parameters, without a copy: NumPy arrays over the host
backend's read-only mapping become torch tensors over the same memory, and each one
takes the form vLLM's post-load step would give the parameter (a per-tensor FP8
weight the transposed [in, out] view its GEMM reads, the scale a scalar)."""
import warnings

import torch
from torch import nn


def as_torch(array):
    """A host lease's NumPy array (FP8 as ml_dtypes.float8_e4m3fn, BF16 as
    ml_dtypes.bfloat16) as a torch tensor over the same memory; GPU leases' torch
    tensors as they are."""
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


def _per_tensor_fp8(module):
    from vllm.model_executor.layers.quantization.fp8 import Fp8LinearMethod

    method = getattr(module, "quant_method", None)
    return isinstance(method, Fp8LinearMethod) and not method.block_quant


def processed_form(module, leaf, tensor, meta):
    """`tensor` as the parameter vLLM holds after process_weights_after_loading;
    ValueError when it is not what vLLM built (`meta`, in the unprocessed form)."""
    if tensor.dtype != meta.dtype:
        raise ValueError(f"dtype {tensor.dtype}, vLLM expects {meta.dtype}")
    if _per_tensor_fp8(module):
        if leaf == "weight":
            if tuple(tensor.shape) != tuple(meta.shape):
                raise ValueError(f"shape {tuple(tensor.shape)}, vLLM expects {tuple(meta.shape)} [out, in]")
            return tensor.t()  # process_fp8_weight_tensor_strategy: the (in, out) view
        if leaf == "weight_scale":
            if tensor.numel() != 1:
                raise ValueError(f"{tensor.numel()} scales: vLLM would requantize the fused weight (write it) "
                                 "to one; load the model with layout vllm")
            return tensor.reshape(())  # requantize_with_max_scale's weight_scale.max()
    if tuple(tensor.shape) != tuple(meta.shape):
        vocab = type(module).__name__ in ("VocabParallelEmbedding", "ParallelLMHead")
        hint = " (vocab rows padded to a multiple of 64, split over the ranks)" if vocab else ""
        raise ValueError(f"shape {tuple(tensor.shape)}, vLLM expects {tuple(meta.shape)}{hint}")
    return tensor


def bind(model, lease_tensors, rebind=False):
    """Every parameter of `model` found in `lease_tensors` becomes that tensor in its
    processed form. Tied parameters (lm_head on embed_tokens) stay one object.
    ValueError naming the tensor when one does not fit, or when the lease holds
    checkpoint (unfused) names."""
    modules = dict(model.named_modules(remove_duplicate=False))
    names_of = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    used = set()
    for names in names_of.values():
        present = [n for n in names if n in lease_tensors]
        if not present:
            continue  # a placeholder vLLM drops (attention q/k/v scales), or missing: checked after processing
        used.update(present)
        module_name, _, leaf = names[0].rpartition(".")
        module = modules[module_name]
        meta = module._parameters[leaf]
        if rebind and _per_tensor_fp8(module) and leaf == "weight":
            meta = torch.empty_like(meta.t(), device="meta")  # compare in the unprocessed form
        try:
            data = processed_form(module, leaf, lease_tensors[present[0]], meta)
        except ValueError as e:
            raise ValueError(f"--load-format weightd: {present[0]}: {e}") from None
        param = nn.Parameter(data, requires_grad=False)
        for name in names:
            owner, _, owner_leaf = name.rpartition(".")
            modules[owner]._parameters[owner_leaf] = param
    unused = sorted(set(lease_tensors) - used)
    unfused = [n for n in unused if any(f".{m}." in n for m in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"))]
    if unfused:
        raise ValueError(f"--load-format weightd: the lease holds {unfused[0]}, a checkpoint name: the model was "
                         "loaded with layout checkpoint (unload it, or use another model id)")
    if unused:
        raise ValueError(f"--load-format weightd: the lease's {unused[:4]} match no parameter of "
                         f"{type(model).__name__}")
