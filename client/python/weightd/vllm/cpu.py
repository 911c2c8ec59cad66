"""vLLM's CPU build, on weightd's memory. Its FP8 kernels repack each weight into a
VNNI-blocked copy in process_weights_after_loading, a step weights_already_processed
skips; an unpacked weight read as packed gives wrong results. So each CPU FP8 layer
gets a kernel that reads the [out, in] weight as it is, through the same AMX op
vLLM uses for weights it does not pack (MLA's kv_b_proj, is_vnni=False), and unquantized
layers (lm_head) use F.linear instead of a packed copy. GPU kernels read the
processed form directly and need none of this."""
import contextlib
from typing import Optional

import torch


# torch.ops._C.fp8_scaled_mm_cpu declares its weight mutable (`Tensor(a1!) mat2`):
# under torch.compile, functionalization would copy the "mutated" weight back into the
# parameter after every call, a write into the read-only lease. This op declares no
# mutation. Registered at import: dynamo cannot register ops while it traces.
@torch.library.custom_op("weightd::cpu_fp8_mm", mutates_args=())
def _cpu_fp8_mm(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, block_n: int, block_k: int,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.ops._C.fp8_scaled_mm_cpu(x, weight, scale, [block_n, block_k], bias, x.dtype, False)


@_cpu_fp8_mm.register_fake
def _(x, weight, scale, block_n, block_k, bias):
    return x.new_empty((x.shape[0], weight.shape[0]))


class UnpackedFp8Kernel:
    """FP8 (per-tensor or block) on the [out, in] row-major weight. Per-tensor: the
    scalar scale becomes the one-block-per-128-inputs scale vLLM's CPU per-tensor
    kernel synthesizes (kernel state, not a parameter)."""

    def __init__(self, kernel, block_size=None):
        self.__dict__.update(kernel.__dict__)  # config, layer_param_names, ...
        self._block_size = block_size  # None: per-tensor
        self._scale = None
        self._block = None

    def input_quant_key(self):
        return None

    def process_weights_after_loading(self, layer):
        pass

    def finalize(self, layer):
        if self._block_size is None:
            k, n = layer.weight.shape  # the processed per-tensor form: an [in, out] view
            self._scale = layer.weight_scale.float().reshape(()).expand(1, -(-k // 128)).contiguous()
            self._block = (-(-n // 32) * 32, 128)
        else:
            self._scale = layer.weight_scale_inv
            self._block = tuple(self._block_size)

    def apply_weights(self, layer, x, bias=None, **kwargs):
        weight = layer.weight.t() if self._block_size is None else layer.weight
        x_2d = x.reshape(-1, x.shape[-1]) if x.dim() > 2 else x
        out = _cpu_fp8_mm(x_2d, weight, self._scale, self._block[0], self._block[1], bias)
        return out.reshape(x.shape[:-1] + (out.size(-1),)) if x.dim() > 2 else out


def adapt_kernels(model):
    """Gives every FP8 layer a kernel that reads weightd's layout as it is. Refuses a
    kernel not known to (NotImplementedError naming it)."""
    from vllm.model_executor.kernels.linear.scaled_mm import cpu as cpu_kernels
    from vllm.model_executor.kernels.linear.scaled_mm.pytorch import PerTensorTorchFP8ScaledMMLinearKernel
    from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import FP8ScaledMMLinearKernel
    from vllm.model_executor.layers.quantization.fp8 import Fp8LinearMethod

    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        if not isinstance(method, Fp8LinearMethod):
            continue
        kernel = method.fp8_linear
        if isinstance(kernel, UnpackedFp8Kernel):
            continue
        if method.block_quant and isinstance(kernel, (cpu_kernels.CPUFp8BlockScaledMMKernel,
                                                      cpu_kernels.CPUFp8W8A8BlockScaledMMKernel)):
            method.fp8_linear = UnpackedFp8Kernel(kernel, block_size=method.weight_block_size)
        elif isinstance(kernel, (cpu_kernels.CPUFp8PerTensorScaledMMLinearKernel,
                                 cpu_kernels.CPUFP8W8A8ScaledMMLinearKernel)):
            method.fp8_linear = UnpackedFp8Kernel(kernel)
        elif not method.block_quant and isinstance(kernel, PerTensorTorchFP8ScaledMMLinearKernel):
            pass  # torch._scaled_mm reads the processed form as it is
        elif type(kernel).process_weights_after_loading is not FP8ScaledMMLinearKernel.process_weights_after_loading:
            raise NotImplementedError(f"--load-format weightd: {name}: vLLM's CPU FP8 kernel "
                                      f"{type(kernel).__name__} repacks weights")


def finalize_kernels(model):
    """After the parameters are bound: the kernels' scale state."""
    for module in model.modules():
        kernel = getattr(getattr(module, "quant_method", None), "fp8_linear", None)
        if isinstance(kernel, UnpackedFp8Kernel):
            kernel.finalize(module)


@contextlib.contextmanager
def gemm_without_packing():
    """Unquantized{Linear,Embedding}Method.process_weights_after_loading call
    dispatch_cpu_unquantized_gemm even for processed weights, which packs a copy of
    lm_head (oneDNN / sgl): F.linear reads the lease's tensor instead."""
    from vllm.model_executor.layers import utils as layer_utils

    original = layer_utils.dispatch_cpu_unquantized_gemm

    def dispatch(layer, remove_weight):
        layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)

    layer_utils.dispatch_cpu_unquantized_gemm = dispatch
    try:
        yield
    finally:
        layer_utils.dispatch_cpu_unquantized_gemm = original
