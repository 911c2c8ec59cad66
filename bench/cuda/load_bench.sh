#!/usr/bin/env bash
# Local-path load into FP8 on the GPU against plain pinned host-to-device copies of
# the same bytes, measured in the same run, for several read-thread counts:
#   bench/cuda/load_bench.sh BIN_DIR LIB_DIR OUT_DIR [LAYERS]
# Writes OUT_DIR/load_bench.jsonl; the daemon's debug log (weightd-load.log) has
# the time split (path_read, staging_ring events).
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3"); layers=${4:-4}
mkdir -p "$out"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=$(mktemp -d /tmp/weightd-load-XXXXXX)
start_daemon() {
  "$bin/weightd" --listen="unix:$work/w.sock" --handle-socket="$work/h.sock" --metrics-address=127.0.0.1:0 \
    --backend=cuda --model-root="$work/models" --log-format=json --log-level=debug "$@" 2>>"$out/weightd-load.log" &
  daemon=$!
  for _ in $(seq 200); do [ -S "$work/h.sock" ] && break; sleep 0.05; done
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon"; rm -f "$work/h.sock"; }
ctl() { "$bin/weightctl" --address="unix:$work/w.sock" --handle-socket="$work/h.sock" --progress=false "$@"; }

echo "== local-path load against pinned H2D of the same bytes"
"$bin/weightd-gen" --preset=8b --layers="$layers" --out="$work/models/llama8b4" --shards=4 --dtype=bf16
bytes=$(du -cb "$work"/models/llama8b4/*.safetensors | tail -n1 | cut -f1)
cat "$work"/models/llama8b4/*.safetensors >/dev/null  # warm page cache
for t in 1 8 16; do "$bin/weightd-bench-read" --threads=$t "$work"/models/llama8b4/*.safetensors | tee -a "$out/read_bench.jsonl"; done
h2d=$("$bin/weightd-bench-cuda" --elements=16384 --h2d-bytes="$bytes" | python3 -c 'import json,sys; print(json.load(sys.stdin)["h2d_pinned_gbps"])')
: >"$out/load_bench.jsonl"
for flags in "--read-threads=1" "--read-threads=8" "--read-threads=16" "--read-threads=16 --staging-ring-bytes=32MiB" \
    "--read-threads=16 --staging-ring-bytes=256MiB"; do
  # shellcheck disable=SC2086
  start_daemon $flags
  t0=$(date +%s.%N); ctl load llama --path=llama8b4 >/dev/null; t1=$(date +%s.%N)
  stop_daemon
  python3 - "$bytes" "$t0" "$t1" "$h2d" "$flags" <<'PY' | tee -a "$out/load_bench.jsonl"
import json, sys
b, t0, t1, h2d = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
load = b / (t1 - t0) / 1e9
print(json.dumps({"flags": sys.argv[5], "checkpoint_bytes": b, "load_seconds": round(t1 - t0, 3),
                  "load_gbps": round(load, 2), "pinned_h2d_gbps": h2d, "ratio": round(load / h2d, 3)}))
PY
done
grep -E '"event":"(path_read|staging_ring|load_finished)"' "$out/weightd-load.log" | tail -n 12
rm -rf "$work"
