#!/usr/bin/env bash
# The load-speed goals of docs/performance.md (issue 19) in one run on one GPU host, at the
# daemon's defaults: warm and cold 8B-shaped path loads (bench/cuda/path_load_bench.sh, two
# warm rounds per scheme; cold against fio where scripts/build-fio made one, else the cold
# goal reads as not measured), then per-tensor pushes at 1, 4 and 8 streams against their
# floors (bench/gpu/push_bench.sh), then each ratio against its goal
# (bench/gpu/load_speed_ratios.py: OUT_DIR/ratios.txt and ratios.json; exit 1 when one is
# missed). Run it alone on the host: the floors are measured beside the loads.
#   bench/gpu/load_speed_run.sh BIN_DIR LIB_DIR OUT_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=$1 lib=$2 out=$(realpath -m "$3")
mkdir -p "$out"
PINS=false COLD=1 RINGS="--log-level=debug --log-level=info" \
  bash "$here/../cuda/path_load_bench.sh" "$bin" "$lib" "$out/path" 32 16 >"$out/path.out" 2>&1
echo "path_load_bench.sh rc=$?" >>"$out/path.out"
SCHEMES=per_tensor STREAMS="1 4 8" bash "$here/push_bench.sh" "$bin" "$lib" "$out/push" >"$out/push.out" 2>&1
echo "push_bench.sh rc=$?" >>"$out/push.out"
python3 "$here/load_speed_ratios.py" "$out/path/path_load_bench.jsonl" "$out/push/push-bench.jsonl" \
  "$out/ratios.json" | tee "$out/ratios.txt"
exit "${PIPESTATUS[0]}"
