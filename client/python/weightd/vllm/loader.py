"""`--load-format weightd`: vLLM's parameters are weightd's memory, used in place.

Each worker asks the daemon for the model (LoadModel is idempotent, so every worker of
a node may ask) with its tensor-parallel size and `layout: vllm`, attaches to its rank
read-only for the worker's life, builds the model without allocating weights, points
every parameter at the lease's tensor (no copy), then runs vLLM's post-load step
inside `weights_already_processed()`, where quantization methods only rebuild
Python-side state: nothing writes into weightd's memory. Same scheme as vLLM's own
weight cache (`--load-format ipc_cache`), filled by weightd instead of vLLM's disk load.

Layout vllm (docs/integrations.md) gives each rank vLLM's runtime parameters: fused
`qkv_proj` / `gate_up_proj` with one per-tensor scale over the fused tensor (the scale
vLLM's requantize_with_max_scale would pick, so processing changes no byte), the
vocabulary padded to 64 rows per vLLM's split, and vLLM's parameter names. The one
step left is vLLM's own: a per-tensor FP8 weight [out, in] becomes the transposed
[in, out] view its GEMM reads, and the scale a scalar.

Options, as JSON in `--model-loader-extra-config` (all optional):
  address        the daemon's gRPC address (default unix:/run/weightd/weightd.sock)
  handle_socket  its handle socket (default /run/weightd/handles.sock)
  model_id       weightd's model id (default: the served model name, else --model)
  path           the checkpoint as the daemon resolves it under its --model-root
                 (default: --model, which must then lie under the daemon's root)
  scheme         per-tensor (default) or block
The model's config (`--model`) may be the BF16 checkpoint's: its quantization_config
comes from the daemon's manifest.
"""
import contextlib
import logging

import torch
from vllm.model_executor.model_loader import register_model_loader
from vllm.model_executor.model_loader.base_loader import BaseModelLoader

from weightd.engine_lease import EngineLease, parameters_on_meta
from weightd.vllm import cpu, tensors

logger = logging.getLogger("weightd.vllm")


@register_model_loader("weightd")
class WeightdModelLoader(BaseModelLoader):
    def __init__(self, load_config):
        super().__init__(load_config)
        self.weightd = EngineLease(load_config.model_loader_extra_config, "--load-format weightd",
                                   "drop --load-format weightd to load the checkpoint from disk")

    def _model_id(self, model_config):
        served = model_config.served_model_name
        if isinstance(served, (list, tuple)):
            served = served[0] if served else None
        return self.weightd.options.get("model_id", served or model_config.model)

    def download_model(self, model_config):
        pass  # weightd reads the checkpoint

    def _load(self, vllm_config):
        from vllm.distributed import get_tensor_model_parallel_world_size

        model_config = vllm_config.model_config
        if "model_id" not in self.weightd.options:
            self.weightd.options["model_id"] = self._model_id(model_config)
        return self.weightd.load(model_config.model, get_tensor_model_parallel_world_size())

    def get_external_weight_memory(self, vllm_config):
        """This rank's bytes held by weightd: vLLM's budget (--gpu-memory-utilization)
        counts them as weights, and the free memory it checks excludes them."""
        from vllm.distributed import get_tensor_model_parallel_rank

        self._load(vllm_config)
        return self.weightd.rank_bytes(get_tensor_model_parallel_rank())

    def _attach(self, vllm_config):
        from vllm.distributed import get_tensor_model_parallel_rank

        self._load(vllm_config)
        return self.weightd.attach(get_tensor_model_parallel_rank())

    def _use_manifest_quantization(self, vllm_config):
        """A BF16 checkpoint's config has no quantization_config, so vLLM would build BF16
        parameters: build the FP8 ones weightd holds, as the manifest's config says."""
        config = self.weightd.quantization_config()
        if vllm_config.quant_config is not None or config is None:
            return
        from vllm.model_executor.layers.quantization import get_quantization_config

        vllm_config.quant_config = get_quantization_config(config["quant_method"]).from_config(config)

    def load_weights(self, model, model_config):
        """Re-points the parameters at the lease's tensors (never copies: the current
        parameters are read-only memory)."""
        from vllm.config import get_current_vllm_config

        tensors.bind(model, self._attach(get_current_vllm_config()), rebind=True)
        model._weightd_lease = self.weightd.lease

    def load_model(self, vllm_config, model_config, prefix=""):
        from vllm.model_executor.model_loader.utils import initialize_model, process_weights_after_loading
        from vllm.model_executor.model_loader.weight_cache.protocol import check_ipc_quant_support
        from vllm.model_executor.utils import weights_already_processed
        from vllm.platforms import current_platform
        from vllm.utils.torch_utils import set_default_torch_dtype

        device = vllm_config.device_config.device if self.load_config.device is None else self.load_config.device
        target_device = torch.device(device)
        lease_tensors = self._attach(vllm_config)
        self._use_manifest_quantization(vllm_config)
        with set_default_torch_dtype(model_config.dtype):
            with target_device, parameters_on_meta():
                model = initialize_model(vllm_config=vllm_config, model_config=model_config, prefix=prefix)
            check_ipc_quant_support(model)  # every quantization method accepts processed weights
            if current_platform.is_cpu():
                cpu.adapt_kernels(model)
            tensors.bind(model, lease_tensors)
            if current_platform.is_cpu():
                cpu.finalize_kernels(model)
            gemm = cpu.gemm_without_packing() if current_platform.is_cpu() else contextlib.nullcontext()
            with weights_already_processed(), gemm:
                process_weights_after_loading(model, model_config, target_device)
        leftovers = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
        if leftovers:
            raise RuntimeError(f"--load-format weightd: the lease of {self.weightd.manifest.model_id} has no "
                               f"tensor for {leftovers[:8]}{' ...' if len(leftovers) > 8 else ''}")
        lease = self.weightd.lease
        model._weightd_lease = lease  # the lease lives as long as the model
        logger.info("weightd: %d parameters of %s are weightd's memory (rank %d)",
                    len(dict(model.named_parameters())), lease.model_id, lease.rank)
        return model.eval()
