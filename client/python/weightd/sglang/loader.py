"""SGLang's parameters are weightd's memory, used in place.

    LoadConfig(load_format=WeightdModelLoader, model_loader_extra_config={...})

SGLang's get_model_loader() instantiates a class given as load_format (its class hook;
there is no plugin registry for a named format). Each tensor-parallel worker asks the
daemon for the model (LoadModel is idempotent) with its tensor-parallel size and
`layout: vllm`, attaches to its rank read-only for the model's life, builds the model
without allocating weights, and points every parameter at the lease's tensor in the
form SGLang's post-load step would give it (no copy). SGLang has no "weights already
processed" mode (its own weight cache, sglang/srt/weight_cache/ipc_loader.py, skips
post-processing altogether and allows only block FP8), so this loader does per layer
what SGLang's Fp8LinearMethod.process_weights_after_loading would, without its writes:

- per-tensor FP8 (layer.quant_method an Fp8LinearMethod, no weight_block_size): SGLang
  keeps the [out, in] FP8 weight and uses its transposed [in, out] view. On GPUs with
  its CUTLASS FP8 GEMM (sm89/sm90/sm100) the scale becomes a per-output-channel
  [out, 1] F32 tensor (convert_to_channelwise: a few KiB this loader makes from the
  lease's scalar; the one tensor that is not weightd's memory besides the KV-cache
  scales); elsewhere (sm120, no CUTLASS) SGLang requantizes every fused weight with
  the max of its shard scales *in place* (requantize_with_max_scale), which with
  weightd's one fused scale changes no byte but would write into the read-only lease:
  the scale is the lease's scalar and nothing is requantized.
- block FP8: SGLang's own post-processing runs on the lease tensors; on the plain path
  (no DeepGEMM UE8M0 requantization, no MXFP8, no AMD shuffle) it changes nothing.
- unquantized layers (embeddings, lm_head) and norms: SGLang's own post-processing
  (a no-op off SGLang's CPU engine). KV-cache scales (k_scale / v_scale of each
  attention layer, not weights) are made here and set to 1.0 by SGLang as from disk.

Paths that repack or rewrite weights are refused by name (Marlin, SGLang's CPU engine
with AMX packing, ROCm fnuz, AITER, XPU, MXFP8, DeepGEMM UE8M0), as are models with a
post_load_weights step. After processing, every weight must still be the lease's
memory, or loading fails naming the parameter.

Options (model_loader_extra_config, a dict or JSON string; all optional):
  address        the daemon's gRPC address (default unix:/run/weightd/weightd.sock)
  handle_socket  its handle socket (default /run/weightd/handles.sock)
  model_id       weightd's model id (default: the model path)
  path           the checkpoint as the daemon resolves it under its --model-root
                 (default: the model path)
  scheme         per-tensor (default) or block
The model path's config may be the BF16 checkpoint's: without a quantization_config
the manifest's is used (SGLang then builds the FP8 parameters weightd holds).
"""
import logging

import torch
from torch import nn
from sglang.srt.model_loader.loader import BaseModelLoader

from weightd.engine_lease import EngineLease, bind_parameters, parameters_on_meta

logger = logging.getLogger("weightd.sglang")

NAME = "WeightdModelLoader"


def fp8_linear_form(module):
    """How SGLang's Fp8LinearMethod processes this layer here: "channelwise" or
    "per-tensor" (per-tensor FP8, the scale SGLang ends with), "block", or None when
    the layer is not an Fp8LinearMethod's. NotImplementedError for the paths that
    repack or rewrite the weight."""
    from sglang.srt.layers.quantization import fp8

    method = getattr(module, "quant_method", None)
    if not isinstance(method, fp8.Fp8LinearMethod):
        return None

    def refuse(why):
        raise NotImplementedError(f"{NAME}: SGLang's FP8 linear method {why} here, which would copy or "
                                  "rewrite weightd's read-only weights; load the checkpoint from disk instead")

    if not method.is_checkpoint_fp8_serialized:
        refuse("quantizes BF16 weights itself (quantization_config is not an FP8 checkpoint's)")
    if method.use_marlin:
        refuse("repacks weights for Marlin (GPU without FP8 support, or SGLANG_FORCE_FP8_MARLIN)")
    if fp8._is_cpu:
        refuse("packs weights for AMX (SGLang's CPU engine)")
    if fp8._is_fp8_fnuz:
        refuse("rewrites e4m3fn weights as e4m3fnuz (ROCm)")
    if fp8._use_aiter or fp8._is_xpu or fp8._is_npu:
        refuse("reshuffles weights (AITER / XPU / NPU)")
    if method.block_quant:
        if method.use_mxfp8 or method.convert_mxfp8_to_block or method.block_fp8_as_mxfp8:
            refuse("converts block scales to MXFP8")
        return "block"
    static = getattr(method.quant_config, "activation_scheme", None) == "static" or \
        getattr(method.quant_config, "linear_activation_scheme", None) == "static"
    if static:
        refuse("expects static activation scales, which weightd does not carry")
    sm120 = fp8.get_device_capability()[0] == 12
    return "channelwise" if method.cutlass_fp8_supported and not sm120 else "per-tensor"


def processed_form(module, leaf, tensor, meta, form):
    """`tensor` (the lease's) as the parameter SGLang holds after post-processing;
    ValueError when it is not what SGLang built (`meta`, the unprocessed form)."""
    if tensor.dtype != meta.dtype:
        raise ValueError(f"dtype {tensor.dtype}, SGLang expects {meta.dtype}")
    if form in ("channelwise", "per-tensor"):
        if leaf == "weight":
            if tuple(tensor.shape) != tuple(meta.shape):
                raise ValueError(f"shape {tuple(tensor.shape)}, SGLang expects {tuple(meta.shape)} [out, in]")
            return tensor.t()  # layer.weight = weight.t(): the [in, out] view its GEMM reads
        if leaf == "weight_scale":
            if tensor.numel() != 1:
                raise ValueError(f"{tensor.numel()} scales: SGLang would requantize the fused weight (write it) "
                                 "to one; load the model with layout vllm")
            scale = tensor.reshape(())  # requantize_with_max_scale's weight_scale.max()
            if form == "channelwise":
                from sglang.srt.layers.quantization.utils import convert_to_channelwise

                return convert_to_channelwise(scale, module.logical_widths)  # [out, 1] F32, a new tensor
            return scale
    if tuple(tensor.shape) != tuple(meta.shape):
        vocab = type(module).__name__ in ("VocabParallelEmbedding", "ParallelLMHead")
        hint = " (vocab rows padded to a multiple of 64, split over the ranks)" if vocab else ""
        raise ValueError(f"shape {tuple(tensor.shape)}, SGLang expects {tuple(meta.shape)}{hint}")
    return tensor


def bind(model, lease_tensors):
    """Every parameter of `model` found in `lease_tensors` becomes that tensor in its
    processed form (engine_lease.bind_parameters). Returns {name: lease tensor} of the
    parameters that must stay weightd's memory (all but channelwise scales)."""

    def convert(module, leaf, tensor, meta):
        return processed_form(module, leaf, tensor, meta, fp8_linear_form(module))

    bound = bind_parameters(model, lease_tensors, convert, NAME)
    modules = dict(model.named_modules(remove_duplicate=False))
    return {name: tensor for name, tensor in bound.items()
            if not (name.endswith(".weight_scale") and fp8_linear_form(modules[name.rpartition(".")[0]]) == "channelwise")}


def _check_block_processing(module):
    """Refuses the block-FP8 post-processing that writes (DeepGEMM's in-place UE8M0
    requantization of the scales, AMD's preshuffle)."""
    from sglang.srt.layers.quantization import fp8
    from sglang.srt.model_loader.utils import should_deepgemm_weight_requant_ue8m0

    method = module.quant_method
    runner = getattr(method.w8a8_block_fp8_linear, "func", method.w8a8_block_fp8_linear)
    if runner is fp8.deepgemm_w8a8_block_fp8_linear_with_fallback and should_deepgemm_weight_requant_ue8m0(
            weight_block_size=method.weight_block_size, output_dtype=getattr(module, "orig_dtype", None),
            weight_shape=module.weight.shape):
        raise NotImplementedError(f"{NAME}: SGLang's DeepGEMM requantizes block scales to UE8M0 in place here; "
                                  "weightd's block scales are F32 (set SGLANG_ENABLE_JIT_DEEPGEMM=0, or load from disk)")


def process(model, target_device):
    """SGLang's post-load step on the bound model, minus what binding already did."""
    from sglang.srt.layers.quantization.kv_cache import BaseKVCacheMethod
    from sglang.srt.model_loader.loader import _modules_with_quant_method

    if hasattr(model, "post_load_weights"):
        raise NotImplementedError(f"{NAME}: {type(model).__name__}.post_load_weights derives tensors from the "
                                  "weights after loading; not supported")
    with target_device:
        for module, method in _modules_with_quant_method(model):
            form = fp8_linear_form(module)
            if form in ("channelwise", "per-tensor"):
                continue  # bound in the processed form
            if isinstance(method, BaseKVCacheMethod):
                method.create_weights(module)  # k_scale / v_scale = -1: none in the checkpoint
            elif form == "block":
                _check_block_processing(module)
            method.process_weights_after_loading(module)


def check_in_place(model, in_place):
    """Every weight bound from the lease is still the lease's memory."""
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, tensor in in_place.items():
        param = params.get(name)
        if param is None or param.untyped_storage().data_ptr() != tensor.untyped_storage().data_ptr():
            raise RuntimeError(f"{NAME}: SGLang's post-processing replaced {name} with a copy (it repacks it on "
                               "this platform); weightd's memory would not be used")


class WeightdModelLoader(BaseModelLoader):
    def __init__(self, load_config):
        super().__init__(load_config)
        self.weightd = EngineLease(load_config.model_loader_extra_config, NAME,
                                   "use SGLang's default load format to load the checkpoint from disk")

    def download_model(self, model_config):
        pass  # weightd reads the checkpoint

    def _attach(self, model_config):
        from sglang.srt.distributed.parallel_state import (get_tensor_model_parallel_rank,
                                                           get_tensor_model_parallel_world_size)

        self.weightd.load(model_config.model_path, get_tensor_model_parallel_world_size())
        return self.weightd.attach(get_tensor_model_parallel_rank())

    def _use_manifest_quantization(self, model_config):
        """A BF16 checkpoint's config has no quantization_config, so SGLang would build
        BF16 parameters: take the manifest's, as if the config said it."""
        config = self.weightd.quantization_config()
        if getattr(model_config.hf_config, "quantization_config", None) is not None or config is None:
            return
        model_config.hf_config.quantization_config = config
        model_config.quantization = config["quant_method"]

    def load_model(self, *, model_config, device_config):
        from sglang.srt.model_loader.loader import _get_quantization_config, _initialize_model
        from sglang.srt.model_loader.utils import set_default_torch_dtype

        target_device = torch.device(device_config.device)
        lease_tensors = self._attach(model_config)
        self._use_manifest_quantization(model_config)
        quant_config = _get_quantization_config(model_config, self.load_config)
        with set_default_torch_dtype(model_config.dtype):
            with target_device, parameters_on_meta():
                model = _initialize_model(model_config, self.load_config, quant_config)
            in_place = bind(model, lease_tensors)
            process(model, target_device)
        leftovers = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
        if leftovers:
            raise RuntimeError(f"{NAME}: the lease of {self.weightd.manifest.model_id} has no tensor for "
                               f"{leftovers[:8]}{' ...' if len(leftovers) > 8 else ''}")
        check_in_place(model, in_place)
        lease = self.weightd.lease
        if target_device.type == "cuda":
            # Held by the daemon before SGLang sampled its pre-load memory: count it as
            # this rank's weights (ModelRunner.account_preloaded_weights).
            self.preloaded_weights_bytes = self.weightd.rank_bytes(lease.rank)
        model._weightd_lease = lease  # the lease lives as long as the model
        logger.info("weightd: %d parameters of %s are weightd's memory (rank %d)",
                    len(in_place), lease.model_id, lease.rank)
        return model.eval()
