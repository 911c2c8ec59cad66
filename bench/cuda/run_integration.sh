#!/usr/bin/env bash
# The worker integration on a GPU machine, from binaries built elsewhere and the
# Python package's wheels (scripts/pack-gpu-run puts both under .device/):
#   bench/cuda/run_integration.sh BIN_DIR LIB_DIR OUT_DIR
# Starts weightd --backend=cuda (VMM handles, then legacy IPC), runs
# client/python/examples/tiny_llama_worker.py against it, then the package's GPU
# test (CUDA tensors sharing weightd's memory). Logs under OUT_DIR; exits non-zero
# if any step failed.
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3")
mkdir -p "$out"
here=$(cd "$(dirname "$0")/../.." && pwd)
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" WEIGHTD_BIN_DIR="$bin" PYTHONUNBUFFERED=1
if compgen -G "$here/.device/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/weightd-site \
    "$here"/.device/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/weightd-site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import weightd, torch; print('weightd', weightd.__version__, 'torch', torch.__version__)" \
  || { echo "the weightd package is not importable: run scripts/pack-gpu-run where it was built"; exit 1; }
work=$(mktemp -d /tmp/weightd-integration-XXXXXX)
failed=0

for handles in vmm ipc; do
  echo "== tiny Llama worker, --cuda-handles=$handles"
  rm -rf "$work/models" && mkdir -p "$work/models"
  "$bin/weightd" --listen="unix:$work/w.sock" --handle-socket="$work/h.sock" --metrics-address=127.0.0.1:0 \
    --backend=cuda --cuda-handles="$handles" --model-root="$work/models" --log-format=json \
    2>>"$out/weightd-$handles.log" &
  daemon=$!
  for _ in $(seq 200); do [ -S "$work/h.sock" ] && break; sleep 0.05; done
  timeout 240 python3 "$here/client/python/examples/tiny_llama_worker.py" --address="unix:$work/w.sock" \
    --handle-socket="$work/h.sock" --model-root="$work/models" 2>&1 | tee "$out/worker-$handles.log"
  rc=${PIPESTATUS[0]}; echo "worker ($handles) rc=$rc"; [ "$rc" -eq 0 ] || failed=1
  kill -TERM "$daemon"; wait "$daemon"; rm -f "$work/h.sock"
done

echo "== GPU zero-copy test of the package"
(cd "$here/client/python/tests" && timeout 240 python3 -m pytest -q -s -p no:cacheprovider test_gpu_zero_copy.py test_tp_importers.py) \
  2>&1 | tee "$out/pytest-gpu.log"
rc=${PIPESTATUS[0]}; echo "pytest gpu rc=$rc"; [ "$rc" -eq 0 ] || failed=1
rm -rf "$work"
exit "$failed"
