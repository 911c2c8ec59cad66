#!/usr/bin/env bash
# Layout vllm on a GPU machine, from binaries built elsewhere (scripts/pack-gpu-run):
#   bench/cuda/run_vllm_layout.sh BIN_DIR LIB_DIR OUT_DIR
# Generates a small Llama (BF16, 2 layers), starts weightd --backend=cuda and weightd
# --backend=host on it, and for each scheme: exports rank 0 of the cuda load and
# verifies it against the CPU reference of the fused layout (weightctl verify
# --layout vllm), then runs tests/gpu/vllm_layout_check.py (the CUDA tensors mapped by
# PyTorch equal the host backend's bytes; torch._scaled_mm on the mapped weights
# against a BF16 GEMM). Logs under OUT_DIR; exits non-zero if any step failed.
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3")
mkdir -p "$out"
here=$(cd "$(dirname "$0")/../.." && pwd)
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONUNBUFFERED=1
if compgen -G "$here/.device/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/weightd-site \
    "$here"/.device/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/weightd-site${PYTHONPATH:+:$PYTHONPATH}"
fi
work=$(mktemp -d /tmp/weightd-vllm-layout-XXXXXX)
failed=0
"$bin/weightd-gen" --preset=small --layers=2 --out="$work/models/small" --shards=2 --dtype=bf16 >/dev/null || exit 1
start() {  # NAME BACKEND
  "$bin/weightd" --listen="unix:$work/$1.sock" --handle-socket="$work/$1-h.sock" --metrics-address=127.0.0.1:0 \
    --backend="$2" --model-root="$work/models" --log-format=json 2>>"$out/weightd-$1.log" &
  for _ in $(seq 200); do [ -S "$work/$1-h.sock" ] && break; sleep 0.05; done
}
start gpu cuda; gpu_pid=$!
start host host; host_pid=$!
ctl() { "$bin/weightctl" --address="unix:$work/gpu.sock" --handle-socket="$work/gpu-h.sock" --progress=false "$@"; }
for scheme in per-tensor per-channel block; do
  echo "== $scheme: cuda export against the CPU reference"
  ctl load "v-$scheme" --path=small --layout=vllm --scheme="$scheme" && ctl export "v-$scheme" "$work/export-$scheme" \
    && ctl verify "$work/models/small" "$work/export-$scheme" --layout=vllm --scheme="$scheme" 2>&1 | tee -a "$out/verify.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
  ctl unload "v-$scheme" >/dev/null
  echo "== $scheme: PyTorch worker on the mapped memory"
  timeout 240 python3 "$here/tests/gpu/vllm_layout_check.py" --cuda-address="unix:$work/gpu.sock" \
    --cuda-handles="$work/gpu-h.sock" --host-address="unix:$work/host.sock" --host-handles="$work/host-h.sock" \
    --model=small --model-dir="$work/models/small" --scheme="$scheme" 2>&1 | tee -a "$out/check.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
done
kill -TERM "$gpu_pid" "$host_pid"; wait "$gpu_pid" "$host_pid"
rm -rf "$work"
echo "run_vllm_layout: failed=$failed"
exit "$failed"
