#!/usr/bin/env bash
# Tensor-parallel load of a Llama-70B-shaped checkpoint streamed from memory
# (weightd-push-gen, no disk) with tp 1 and tp = every visible GPU (up to 8):
# wall time, GB/s, and per GPU the peak device memory weightd accounted against
# the FP8 bytes resident there, host-to-device bytes against the checkpoint's (the
# broadcast of replicated tensors keeps them near 1x), and the driver's view at load end.
#   bench/gpu/tp_bench.sh BIN_DIR LIB_DIR OUT_DIR [LAYERS]
# Writes OUT_DIR/tp_bench.jsonl.
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3"); layers=${4:-80}
mkdir -p "$out"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=$(mktemp -d /tmp/weightd-tp-XXXXXX)
gpus=$(nvidia-smi -L | wc -l); [ "$gpus" -gt 8 ] && gpus=8
: >"$out/tp_bench.jsonl"
for tp in 1 "$gpus"; do
  "$bin/weightd" --listen="unix:$work/w.sock" --handle-socket="$work/h.sock" --metrics-address=127.0.0.1:0 \
    --backend=cuda --log-format=json --log-level=debug 2>>"$out/weightd-tp$tp.log" &
  daemon=$!
  for _ in $(seq 400); do [ -S "$work/h.sock" ] && break; sleep 0.05; done
  "$bin/weightd-push-gen" --address="unix:$work/w.sock" --model=llama70 --preset=70b --layers="$layers" \
    --shards=8 --streams=8 --fill=fast --tp="$tp" >"$work/push.json"
  "$bin/weightctl" --address="unix:$work/w.sock" status --json >"$work/status.json"
  "$bin/weightctl" --address="unix:$work/w.sock" manifest llama70 --json >"$work/manifest.json"
  kill -TERM "$daemon"; wait "$daemon"; rm -f "$work/h.sock"
  python3 - "$tp" "$work" "$out/weightd-tp$tp.log" <<'PY' | tee -a "$out/tp_bench.jsonl"
import json, sys
tp, work, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
h2d = 0  # host-to-device bytes of the load, all GPUs (staging_ring events at load end)
for line in open(log):
    if '"event":"staging_ring"' in line:
        h2d += json.loads(line).get("h2d_bytes", 0)
push, status, manifest = (json.load(open(f"{work}/{n}.json")) for n in ("push", "status", "manifest"))
fp8 = {int(r.get("device", 0)): sum(int(a["size"]) for a in r["allocations"]) for r in manifest["ranks"]}
devices = []
for d in status["devices"]:
    i = int(d.get("index", 0))
    if i in fp8:
        peak = int(d.get("peak_bytes", 0))
        devices.append({"device": i, "resident_bytes": fp8[i], "peak_bytes": peak,
                        "peak_over_resident_mib": round((peak - fp8[i]) / 2**20, 1)})
print(json.dumps({"tp": tp, "push": push, "devices": devices, "h2d_bytes": h2d,
                  "h2d_over_source_bytes": round(h2d / push["tensor_bytes"], 3)}))
PY
done
grep -h '"event":"\(driver_memory\|nccl_communicator\)"' "$out"/weightd-tp*.log | tail -n 8
rm -rf "$work"
