"""What SGLang 0.5.23 lacks on a CPU-only host without its CPU engine, for these tests
only (none of it touches weightd's loader):

- RotaryEmbedding's constructor imports vllm._custom_ops.rotary_embedding on a
  platform that is neither CUDA nor SGLang's CPU engine. A stand-in module lets the
  model be built; nothing here runs a forward pass.
- scaled_fp8_quant, which SGLang's requantize_with_max_scale calls when its own
  DefaultModelLoader processes the reference checkpoint, is bound to a CUDA (JIT) or
  sgl-kernel op only. This is the CUDA kernel's arithmetic
  (kernels/jit/csrc/gemm/per_tensor_quant_fp8.cuh: e4m3(clip(fp32(x) * (1 / s))))
  in torch.
- A world-size-1 process group (gloo) and SGLang's runtime context, as
  sglang.test.layer_ut_utils.init_single_process_dist sets them up (that module
  imports SGLang's benchmark datasets, hence a copy).
"""
import socket
import sys
import types

import torch


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install():
    if "vllm._custom_ops" not in sys.modules:
        vllm = sys.modules.setdefault("vllm", types.ModuleType("vllm"))
        ops = types.ModuleType("vllm._custom_ops")

        def rotary_embedding(*args, **kwargs):
            raise NotImplementedError("tests/sglang: no rotary embedding kernel on this host")

        ops.rotary_embedding = rotary_embedding
        vllm._custom_ops = ops
        sys.modules["vllm._custom_ops"] = ops

    from sglang.kernels.ops.quantization import fp8_kernel

    def sgl_per_tensor_quant_fp8(input, output, scale, is_static=False):
        assert is_static, "only static per-tensor quantization is needed here"
        inverse = torch.tensor(1.0, dtype=torch.float32) / scale.float().reshape(())
        output.copy_((input.float() * inverse).clamp(-448.0, 448.0).to(output.dtype))

    fp8_kernel.sgl_per_tensor_quant_fp8 = sgl_per_tensor_quant_fp8


def init_distributed():
    from sglang.srt.distributed import parallel_state
    from sglang.srt.distributed.parallel_state import (init_distributed_environment, initialize_model_parallel,
                                                       model_parallel_is_initialized)
    from sglang.srt.runtime_context import SpawnRanks, get_parallel, publish, reset_context
    from sglang.srt.server_args import ServerArgs

    if not torch.distributed.is_initialized():
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method=f"tcp://127.0.0.1:{_free_port()}")
    if not model_parallel_is_initialized():
        reset_context()
        publish(ServerArgs(model_path="dummy", tp_size=1), role="test", ranks=SpawnRanks(world_rank=0))
        if parallel_state._WORLD is not None:
            get_parallel().override_permanently(world_group=parallel_state._WORLD)
        initialize_model_parallel(backend="gloo")
