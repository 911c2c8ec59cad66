#!/usr/bin/env bash
# weightd beside what users do today (PyTorch load-then-quantize), peak GPU memory
# and load speed, measured side by side in one run (see docs/performance.md):
#   bench/gpu/run_suite.sh BIN_DIR LIB_DIR OUT_DIR [--quick | --dry-run]
# full: about 4-6 minutes on one H200; --quick: about 2-3; --dry-run: host backend,
# small checkpoints, no GPU needed (baselines skipped without torch and a GPU).
# Writes OUT_DIR/results.json and OUT_DIR/results.md; the daemon's log in OUT_DIR.
set -u
bin=$(realpath "$1"); lib=$(realpath -m "$2"); out=$(realpath -m "$3"); mode=full
case "${4:-}" in --quick) mode=quick ;; --dry-run) mode=dry-run ;; "") ;; *) echo "unknown option $4" >&2; exit 2 ;; esac
mkdir -p "$out"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for tool in weightd weightctl weightd-gen weightd-push-gen weightd-bench-tcp weightd-bench-attach; do
  [ -x "$bin/$tool" ] || { echo "missing $bin/$tool (build it; scripts/pack-gpu-run packs it)" >&2; exit 2; }
done
[ "$mode" = dry-run ] || nvidia-smi -L | tee "$out/gpu.txt"
exec python3 "$(dirname "$0")/suite.py" "$bin" "$out" --mode="$mode"
