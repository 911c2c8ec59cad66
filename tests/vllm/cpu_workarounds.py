"""Workarounds for vLLM 0.32's CPU build, for these tests only (docs/development.md):
1. torch.ops._C.static_scaled_fp8_quant and its dynamic variants are zero-argument
   stubs in the CPU build, so vLLM's default loader fails on every per-tensor FP8
   checkpoint (requantize_with_max_scale calls ops.scaled_fp8_quant): replaced by the
   same arithmetic in torch.
2. The AMX attention kernel (csrc/cpu/cpu_attn_amx.hpp) uses tile instructions without
   asking Linux for AMX state (arch_prctl XTILEDATA): SIGILL on a single-sequence step,
   even for a BF16 model, unless something asked first; torch.cpu._init_amx() asks.
3. The reference run (vLLM's default loader) gets the kernels weightd's loader gives
   the CPU (weightd/vllm/cpu.py) instead of the VNNI-packing ones, so that both runs
   compute with the same kernels and their processed parameters can be compared."""
import torch


def install_scaled_fp8_quant():
    from vllm import _custom_ops as ops

    try:
        if len(torch.ops._C.static_scaled_fp8_quant.default._schema.arguments) > 0:
            return  # a real op: nothing to work around
    except Exception:
        pass
    fmax = torch.finfo(torch.float8_e4m3fn).max

    def scaled_fp8_quant(input, scale=None, num_token_padding=None, scale_ub=None, use_per_token_if_dynamic=False,
                         output=None, group_shape=None):
        x = input.float()
        if scale is None:
            if use_per_token_if_dynamic:
                amax = x.abs().amax(dim=1, keepdim=True)
                if scale_ub is not None:
                    amax = amax.clamp(max=scale_ub)
                scale = (amax / fmax).clamp(min=1e-12)
            else:
                scale = (x.abs().max() / fmax).clamp(min=1e-12).reshape(1)
        s = scale.float()
        if s.ndim == 1 and s.numel() > 1:
            s = s.view(1, -1) if group_shape == (-1, 1) else s.view(-1, 1)
        q = (x / s).clamp(-fmax, fmax).to(torch.float8_e4m3fn)
        if num_token_padding and q.shape[0] < num_token_padding:
            q = torch.cat([q, q.new_zeros(num_token_padding - q.shape[0], q.shape[1])])
        if output is not None:
            output.copy_(q)
            q = output
        return q, scale

    ops.scaled_fp8_quant = scaled_fp8_quant


def init_amx():
    if torch.cpu._is_amx_tile_supported():
        torch.cpu._init_amx()


def weightd_kernels_in_default_loader():
    from vllm.model_executor.model_loader import base_loader

    from weightd.vllm import cpu

    original = base_loader.process_weights_after_loading

    def process(model, model_config, target_device):
        cpu.adapt_kernels(model)
        with cpu.gemm_without_packing():
            original(model, model_config, target_device)
        cpu.finalize_kernels(model)

    base_loader.process_weights_after_loading = process
