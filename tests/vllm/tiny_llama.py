"""The tiny Llama of the vLLM tests, and its FP8 reference made here, independently
of weightd's code:
- write_bf16(dir): a BF16 Llama (transformers' save_pretrained; 2 layers, 4 heads, 2
  key/value heads, vocabulary 1000, not a multiple of 64) and a byte-level BPE
  tokenizer trained on a few sentences (no hub access).
- write_fused_fp8(bf16_dir, dir, config_json): the same model as an FP8 checkpoint in
  vLLM's fused layout (qkv_proj, gate_up_proj, one per-tensor scale per weight over
  the fused tensor), quantized with NumPy by docs/quantization.md's formula, for vLLM's
  default loader; unpadded, as checkpoints are.
"""
import json
import os
import shutil

import ml_dtypes
import numpy as np

FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
TEXT = ["The quick brown fox jumps over the lazy dog.",
        "Weights are loaded once and shared by every inference worker.",
        "A tiny language model for testing the loader plugin.",
        "Hello world, this is a test of the tokenizer.",
        "Once upon a time there was a small model that ran on the CPU."] * 20


def daemon(flags=()):
    """The real weightd (host backend, client/python/tests/daemon.py) with this model
    under its root as `llama`, started."""
    import sys
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "client" / "python" / "tests"))
    from daemon import Daemon, binaries_present

    assert binaries_present(), "weightd binaries not built (build/bin or WEIGHTD_BIN_DIR)"
    d = Daemon("host", flags=list(flags))
    write_bf16(d.model_root / "llama")
    d.start()
    return d


def write_bf16(directory, seed=0):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    os.makedirs(directory, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=1000, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         torch_dtype="bfloat16")
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():  # wider than the default init, so greedy tokens are not near ties
        for param in model.parameters():
            if param.ndim == 2:
                param.normal_(0, 0.08)
    model.save_pretrained(directory)
    return directory


def quantize(x):
    """Per-tensor FP8 of float32 `x`: s = fp32(amax / 448) (1 for all zeros), then
    e4m3fn(rne(clamp(fp32(x * fp32(1 / s)), -448, 448))); NumPy's float32 arithmetic is
    IEEE round-to-nearest-even, and so is ml_dtypes' cast."""
    amax = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    scale = np.float32(amax / np.float32(448)) if amax > 0 else np.float32(1)
    inv = np.float32(np.float32(1) / scale)
    y = np.clip((x * inv).astype(np.float32), np.float32(-448), np.float32(448))
    return y.astype(ml_dtypes.float8_e4m3fn), scale


def _quantized(name, array):
    return array.ndim == 2 and name.endswith(".weight") and not any(
        s in name for s in ("embed_tokens", "lm_head", "norm"))


def write_fused_fp8(bf16_dir, directory, config_json):
    import torch
    from safetensors.torch import load_file, save_file

    os.makedirs(directory, exist_ok=True)
    for f in os.listdir(bf16_dir):
        if not f.endswith(".safetensors") and f != "config.json":
            shutil.copy(os.path.join(bf16_dir, f), directory)
    source = {}
    for f in sorted(os.listdir(bf16_dir)):
        if f.endswith(".safetensors"):
            source.update(load_file(os.path.join(bf16_dir, f)))
    arrays = {n: t.float().numpy() for n, t in source.items()}
    out = {}
    for name, array in arrays.items():
        module = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else ""
        if any(module in parts for parts in FUSED.values()):
            continue
        if _quantized(name, array):
            q, s = quantize(array)
            out[name] = torch.from_numpy(q.view(np.uint8)).view(torch.float8_e4m3fn)
            out[name + "_scale"] = torch.tensor(s, dtype=torch.float32)
        else:
            out[name] = source[name]
    prefixes = sorted({n.rsplit(".", 2)[0] for n in arrays if n.rsplit(".", 2)[-2] in ("q_proj", "gate_proj")})
    for prefix in prefixes:
        for fused, parts in FUSED.items():
            names = [f"{prefix}.{p}.weight" for p in parts]
            if not all(n in arrays for n in names):
                continue
            q, s = quantize(np.concatenate([arrays[n] for n in names]))
            out[f"{prefix}.{fused}.weight"] = torch.from_numpy(q.view(np.uint8)).view(torch.float8_e4m3fn)
            out[f"{prefix}.{fused}.weight_scale"] = torch.tensor(s, dtype=torch.float32)
    save_file(out, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(config_json if isinstance(config_json, str) else json.dumps(config_json))
    return directory
