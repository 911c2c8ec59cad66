"""vLLM itself (the CPU build, scripts/setup-vllm) on weightd's memory: weightd (host
backend) loads a tiny BF16 Llama with layout vllm, and vLLM with `--load-format weightd`
attaches and generates. Differential against vLLM's own pipeline: vLLM's default loader
reads the same model quantized by `weightctl quantize --layout=vllm` (an FP8 checkpoint
in the fused layout, which must equal, byte for byte, the same checkpoint quantized here
with NumPy: tiny_llama.py) and processes it. Every parameter must be weightd's memory
and equal vLLM's own in bytes, shape, strides and scale; the arena must not change; the
greedy tokens must match. Each engine runs in its own process (engine_run.py)."""
import json
import pathlib
import subprocess
import sys

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "client" / "python" / "tests"))
import tiny_llama  # noqa: E402
from daemon import lease_digest  # noqa: E402

import weightd  # noqa: E402


def run_engine(model, out, *args, check=True):
    result = subprocess.run([sys.executable, str(HERE / "engine_run.py"), str(model), str(out), *args],
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"engine_run.py {model} {' '.join(args)}:\n{result.stderr[-6000:]}"
    return result


def raw(values):
    return values.reshape(-1).view(torch.uint8)


@pytest.fixture(scope="module")
def daemon():
    d = tiny_llama.daemon()
    yield d
    d.stop()


def test_vllm_runs_in_place_on_weightds_memory_and_equals_its_own_pipeline(daemon, tmp_path):
    model_dir = str(daemon.model_root / "llama")
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        # The plugin's own LoadModel (model id and path default to --model) attaches to this load.
        manifest = client.load_and_wait(model_dir, path=model_dir, layout="vllm")
        lease = client.attach(model_dir)
        try:
            before = lease_digest(lease)
            extra = json.dumps({"address": daemon.address, "handle_socket": daemon.handle_socket})
            run_engine(model_dir, tmp_path / "weightd.pt", "--load-format", "weightd", "--extra", extra)
            after = lease_digest(lease)
        finally:
            lease.close()
    assert before == after, "vLLM changed weightd's memory"

    reference_dir = tmp_path / "reference"
    quantized = daemon.ctl("quantize", model_dir, str(reference_dir), "--layout=vllm")
    assert quantized.returncode == 0, quantized.stderr
    numpy_dir = tiny_llama.write_fused_fp8(model_dir, tmp_path / "numpy", manifest.config_json.decode())
    from safetensors.torch import load_file
    by_weightctl = load_file(str(reference_dir / "model.safetensors"))
    by_numpy = load_file(str(numpy_dir / "model.safetensors"))
    assert sorted(by_weightctl) == sorted(by_numpy)
    for name, tensor in by_numpy.items():
        assert torch.equal(raw(by_weightctl[name]), raw(tensor)), f"{name}: weightctl quantize differs from NumPy"
    assert json.loads((reference_dir / "config.json").read_text())["quantization_config"] == \
        json.loads(manifest.config_json)["quantization_config"]
    run_engine(reference_dir, tmp_path / "reference.pt")

    ours = torch.load(tmp_path / "weightd.pt", weights_only=False)
    theirs = torch.load(tmp_path / "reference.pt", weights_only=False)
    assert sorted(ours["params"]) == sorted(theirs["params"])
    assert len(ours["params"]) == 23  # 2 layers x 9, embed_tokens, norm, lm_head... as vLLM builds them
    for name, p in ours["params"].items():
        q = theirs["params"][name]
        assert (p["shape"], p["stride"], p["dtype"]) == (q["shape"], q["stride"], q["dtype"]), name
        assert torch.equal(raw(p["values"]), raw(q["values"])), f"{name}: bytes differ from vLLM's own"
        # In place: the parameter's storage is the lease's mapping, at the manifest's offset.
        assert any(lo <= p["storage"][0] and p["storage"][1] <= hi for lo, hi in ours["allocations"]), name
        allocation, offset = ours["entries"][name]
        assert p["data_ptr"] == ours["allocations"][allocation][0] + offset, name
    fused = ours["params"]["model.layers.0.self_attn.qkv_proj.weight"]
    assert fused["dtype"] == "torch.float8_e4m3fn" and fused["shape"] == (256, 512)  # [in, out]: 256 + 2 x 128 rows
    assert ours["params"]["model.layers.0.self_attn.qkv_proj.weight_scale"]["shape"] == ()
    assert ours["params"]["model.embed_tokens.weight"]["shape"] == (1024, 256)  # 1000 padded to 64
    assert ours["tokens"] == theirs["tokens"]


def test_an_unreachable_daemon_is_named_with_what_to_do(tmp_path, daemon):
    extra = json.dumps({"address": f"unix:{tmp_path}/absent.sock", "handle_socket": f"{tmp_path}/absent-h.sock"})
    result = run_engine(daemon.model_root / "llama", tmp_path / "none.pt", "--load-format", "weightd", "--extra", extra,
                        check=False)
    assert result.returncode != 0
    assert f"cannot reach weightd at unix:{tmp_path}/absent.sock" in result.stderr, result.stderr[-3000:]
    assert "drop --load-format weightd" in result.stderr
