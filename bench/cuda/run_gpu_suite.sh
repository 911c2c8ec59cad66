#!/usr/bin/env bash
# Runs the GPU tests and benchmarks on a machine with a GPU, from binaries built
# elsewhere (scripts/setup) and copied with their shared libraries:
#   bench/cuda/run_gpu_suite.sh BIN_DIR LIB_DIR OUT_DIR
# Writes logs and bench.json / load_bench.json under OUT_DIR; prints a summary.
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3")
mkdir -p "$out"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" WEIGHTD_BIN_DIR="$bin"
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/weightd-gpu-XXXXXX)
nvidia-smi -L | tee "$out/gpu.txt"

echo "== GPU kernel tests"
"$bin/cuda_quantize_test" >"$out/cuda_quantize_test.log" 2>&1; echo "cuda_quantize_test rc=$?"
tail -n 3 "$out/cuda_quantize_test.log"
echo "== GPU end-to-end tests"
"$bin/cuda_e2e_test" >"$out/cuda_e2e_test.log" 2>&1; echo "cuda_e2e_test rc=$?"
grep -E "^\[  (FAILED|PASSED) |footprint|verified|Failure" "$out/cuda_e2e_test.log" | head -20

start_daemon() {  # $1: handles, then extra daemon flags
  local handles=$1; shift
  "$bin/weightd" --listen="unix:$work/w.sock" --handle-socket="$work/h.sock" --metrics-address=127.0.0.1:0 \
    --backend=cuda --cuda-handles="$handles" --model-root="$work/models" --log-format=json "$@" 2>>"$out/weightd.log" &
  daemon=$!
  for _ in $(seq 200); do [ -S "$work/h.sock" ] && break; sleep 0.05; done
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon"; rm -f "$work/h.sock"; }
ctl() { "$bin/weightctl" --address="unix:$work/w.sock" --handle-socket="$work/h.sock" --progress=false "$@"; }

echo "== Python worker: torch fp8 conversion and zero-copy import"
# The Python package (its generated stubs read the lease's manifest) from the wheels
# scripts/pack-gpu-run made.
if compgen -G "$here/.device/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/weightd-site \
    "$here"/.device/wheels/*.whl && export PYTHONPATH="/tmp/weightd-site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$bin/weightd-gen" --preset=small --out="$work/models/small" --shards=2 --dtype=bf16 >/dev/null
for handles in vmm ipc; do
  start_daemon $handles
  ctl load small --path=small >/dev/null && ctl export small "$work/export-$handles" >/dev/null \
    && ctl manifest small --json >"$work/manifest-$handles.json" \
    && ctl verify "$work/models/small" "$work/export-$handles" \
    && python3 "$here/tests/gpu/torch_import_check.py" "$work/models/small" "$work/export-$handles" \
         --manifest="$work/manifest-$handles.json" --handle-socket="$work/h.sock" --model=small 2>&1 | tail -n 3
  echo "python check ($handles) rc=${PIPESTATUS[0]}"
  stop_daemon
done

echo "== kernel and H2D benchmark"
"$bin/weightd-bench-cuda" | tee "$out/bench.json"

bash "$here/bench/cuda/load_bench.sh" "$bin" "$lib" "$out"
rm -rf "$work"
