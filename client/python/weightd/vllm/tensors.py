"""A lease's tensors as vLLM's parameters, without a copy: each one takes the form
vLLM's post-load step would give the parameter (a per-tensor FP8 weight the transposed
[in, out] view its GEMM reads, the scale a scalar)."""
import torch

from weightd.engine_lease import bind_parameters


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
    processed form (engine_lease.bind_parameters). `rebind`: the parameters are already
    in the processed form."""

    def convert(module, leaf, tensor, meta):
        if rebind and _per_tensor_fp8(module) and leaf == "weight":
            meta = torch.empty_like(meta.t(), device="meta")  # compare in the unprocessed form
        return processed_form(module, leaf, tensor, meta)

    bind_parameters(model, lease_tensors, convert, "--load-format weightd")
