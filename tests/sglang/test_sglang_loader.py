"""SGLang (0.5.23, on the CPU: its generic non-CUDA path) on weightd's memory: weightd
(host backend) loads the tiny BF16 Llama of tests/vllm with layout vllm;
WeightdModelLoader, given to SGLang as LoadConfig(load_format=<class>), builds SGLang's
LlamaForCausalLM on the lease. Differential against SGLang's own pipeline: its
DefaultModelLoader reads the same model as a fused FP8 checkpoint quantized with NumPy
(tiny_llama.write_fused_fp8) and processes it. Every weight must be weightd's memory
and equal SGLang's own in bytes, shape, strides and dtype; the arena must not change.
No forward pass: SGLang's FP8 GEMM and RoPE have no CPU kernel outside its CPU engine.

    WEIGHTD_BIN_DIR=build/bin .venv-sglang/bin/python -m pytest tests/sglang   # scripts/setup-sglang
"""
import pathlib
import sys

import pytest

import sglang.srt.model_loader.loader  # noqa: E402,F401  (in .venv-sglang; scripts/test fails without it)
import torch  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "vllm"))
sys.path.insert(0, str(REPO / "client" / "python" / "tests"))
import cpu_shims  # noqa: E402
import tiny_llama  # noqa: E402
from daemon import lease_digest  # noqa: E402

import weightd  # noqa: E402
from weightd.sglang import WeightdModelLoader  # noqa: E402


def raw(t):
    return t.detach().reshape(-1).view(torch.uint8) if t.dim() else t.detach().reshape(1).view(torch.uint8)


def load(model_dir, load_format, extra=None):
    from sglang.srt.configs.device_config import DeviceConfig
    from sglang.srt.configs.load_config import LoadConfig
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.model_loader.loader import get_model_loader

    model_config = ModelConfig(str(model_dir), dtype="bfloat16")
    loader = get_model_loader(LoadConfig(load_format=load_format, model_loader_extra_config=extra or {}), model_config)
    return loader, loader.load_model(model_config=model_config, device_config=DeviceConfig("cpu"))


@pytest.fixture(scope="module")
def sglang_cpu():
    cpu_shims.install()
    cpu_shims.init_distributed()


@pytest.fixture(scope="module")
def daemon():
    d = tiny_llama.daemon()
    yield d
    d.stop()


@pytest.fixture(params=["requantize", "channelwise"])
def fp8_path(request, monkeypatch):
    """SGLang's two per-tensor paths: "requantize" (no CUTLASS FP8: sm120, and this
    CPU), where it requantizes each fused weight with its max scale in place, and
    "channelwise" (CUTLASS FP8: sm89/sm90/sm100, e.g. H100), where the scale becomes
    [out, 1]. The second is chosen here as on such a GPU, by Fp8LinearMethod's
    cutlass_fp8_supported (no GEMM runs)."""
    if request.param == "channelwise":
        from sglang.srt.layers.quantization import fp8

        monkeypatch.setattr(fp8, "cutlass_fp8_supported", lambda: True)
    return request.param


def test_sglang_runs_in_place_on_weightds_memory_and_equals_its_own_pipeline(sglang_cpu, daemon, fp8_path, tmp_path):
    model_dir = daemon.model_root / "llama"
    extra = {"address": daemon.address, "handle_socket": daemon.handle_socket, "model_id": "llama"}
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        manifest = client.load_and_wait("llama", path=str(model_dir), layout="vllm")
        watch = client.attach("llama", read_only=True)
    try:
        before = lease_digest(watch)
        loader, ours = load(model_dir, WeightdModelLoader, extra)
        after = lease_digest(watch)
        ranges = [(a._base_array.ctypes.data, a._base_array.ctypes.data + a._base_array.nbytes)
                  for a in loader.weightd.lease._allocations]
        lease = loader.weightd.lease
        assert isinstance(loader, WeightdModelLoader)
        assert before == after, "SGLang changed weightd's memory"

        reference_dir = tiny_llama.write_fused_fp8(model_dir, tmp_path / "reference", manifest.config_json.decode())
        _, theirs = load(reference_dir, "auto")

        ours_p, theirs_p = dict(ours.named_parameters()), dict(theirs.named_parameters())
        assert sorted(ours_p) == sorted(theirs_p)
        kv_scales = {n for n in ours_p if n.endswith((".attn.k_scale", ".attn.v_scale"))}
        assert len(kv_scales) == 4 and len(ours_p) == 27  # 2 layers x 12 (k/v scales too), embed_tokens, norm, lm_head
        # Made by the loader, not weightd's memory: KV-cache scales, and the channelwise scales.
        derived = kv_scales | ({n for n in ours_p if n.endswith(".weight_scale")} if fp8_path == "channelwise" else set())
        assert sorted(set(ours_p) - kv_scales) == sorted(lease.tensors)  # SGLang's names are layout vllm's
        for name, p in ours_p.items():
            q = theirs_p[name]
            assert (tuple(p.shape), p.stride(), p.dtype) == (tuple(q.shape), q.stride(), q.dtype), name
            assert torch.equal(raw(p), raw(q)), f"{name}: bytes differ from SGLang's own"
            if name in derived:
                assert p.device.type == "cpu" and (p.item() == 1.0 if name in kv_scales else p.shape[1] == 1)
                continue
            # In place: the parameter is the lease's memory, at the manifest's offset.
            assert any(lo <= p.data_ptr() and p.data_ptr() + p.untyped_storage().nbytes() <= hi
                       for lo, hi in ranges), name
            assert p.data_ptr() == lease.data_pointer(name), name
            assert p.untyped_storage().data_ptr() == lease.data_pointer(name), name
        fused = ours_p["model.layers.0.self_attn.qkv_proj.weight"]
        assert fused.dtype == torch.float8_e4m3fn and tuple(fused.shape) == (256, 512) and fused.stride() == (1, 256)
        scale = ours_p["model.layers.0.self_attn.qkv_proj.weight_scale"]
        if fp8_path == "channelwise":
            assert tuple(scale.shape) == (512, 1) and torch.all(scale == lease.tensors[
                "model.layers.0.self_attn.qkv_proj.weight_scale"].item())
        else:
            assert scale.shape == ()
        assert tuple(ours_p["model.embed_tokens.weight"].shape) == (1024, 256)  # 1000 padded to 64
        assert ours._weightd_lease is lease
    finally:
        watch.close()


def test_block_scheme_binds_in_place(sglang_cpu, daemon):
    """Block FP8: SGLang's own post-processing runs on the lease and changes nothing
    (no SGLang reference: tiny_llama writes no block checkpoint)."""
    model_dir = daemon.model_root / "llama"
    extra = {"address": daemon.address, "handle_socket": daemon.handle_socket, "model_id": "llama-block",
             "path": str(model_dir), "scheme": "block"}
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        client.load_and_wait("llama-block", path=str(model_dir), scheme="block", layout="vllm")
        watch = client.attach("llama-block", read_only=True)
    try:
        before = lease_digest(watch)
        loader, model = load(model_dir, WeightdModelLoader, extra)
        assert lease_digest(watch) == before
        params = dict(model.named_parameters())
        for name in loader.weightd.lease.tensors:
            assert params[name].data_ptr() == loader.weightd.lease.data_pointer(name), name
        w = params["model.layers.0.mlp.gate_up_proj.weight"]
        assert w.dtype == torch.float8_e4m3fn and tuple(w.shape) == (1024, 256) and w.is_contiguous()
        assert tuple(params["model.layers.0.mlp.gate_up_proj.weight_scale_inv"].shape) == (8, 2)
    finally:
        watch.close()


def test_an_unreachable_daemon_is_named_with_what_to_do(sglang_cpu, daemon, tmp_path):
    extra = {"address": f"unix:{tmp_path}/absent.sock", "handle_socket": f"{tmp_path}/absent-h.sock"}
    with pytest.raises(RuntimeError, match=f"cannot reach weightd at unix:{tmp_path}/absent.sock"):
        load(daemon.model_root / "llama", WeightdModelLoader, extra)


def test_unknown_options_are_refused():
    from sglang.srt.configs.load_config import LoadConfig

    with pytest.raises(ValueError, match="unknown option"):
        WeightdModelLoader(LoadConfig(load_format=WeightdModelLoader, model_loader_extra_config={"adress": "x"}))
