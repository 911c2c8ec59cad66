#!/usr/bin/env bash
# Push throughput (weightd-push-gen on the daemon's Unix socket: its raw push
# connection, push_gbps; then the same push over gRPC, push_grpc_gbps) beside raw TCP loopback of the same bytes with the same number
# of streams, twice: reading into one cache-resident buffer (tcp_gbps) and landing
# every byte in DRAM, as a receiver must (dram_tcp_gbps, --land-bytes: 4 GiB of
# landing buffers), the same over a Unix socket (dram_unix_gbps; unix_via_buffer_gbps
# reads into a 4 MiB buffer first and copies into the landing buffers, as a receiver
# of framed messages outside gRPC would), and gRPC alone landing the same bytes in
# DRAM (grpc_gbps, weightd-bench-grpc: the push path's floor before it gathers or
# places), per
# quantization scheme, on one fresh daemon; prints a line per run and the CPU
# seconds of the daemon, the pushing client and the TCP run (the push path's cost,
# not only its speed):
#   bench/gpu/push_bench.sh BIN_DIR LIB_DIR OUT_DIR [BACKEND]
# PRESET (8b), LAYERS (0: the preset's), SCHEMES ("per_tensor none"), STREAMS
# ("1 4 8"), LAND_BYTES (4294967296) override the defaults; DAEMON_ENV ("NAME=VALUE
# ...") sets environment variables for the daemon alone (GLIBC_TUNABLES=..., say),
# DAEMON_FLAGS ("--flag=value ...") adds flags to its command line.
# BACKEND: cuda (default) or host.
set -euo pipefail
bin=$(realpath "$1"); lib=$(realpath -m "$2"); out=$(realpath -m "$3"); backend=${4:-cuda}
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$out"
run=$(mktemp -d)
trap 'kill "$daemon" 2>/dev/null || true; rm -rf "$run"' EXIT
# shellcheck disable=SC2086
env ${DAEMON_ENV:-} "$bin/weightd" --listen="unix:$run/w.sock" --handle-socket="$run/h.sock" --metrics-address= \
  --backend="$backend" --model-root="$run" --log-format=json --log-level=debug ${DAEMON_FLAGS:-} 2>"$out/push-bench-daemon.log" &
daemon=$!
for _ in $(seq 100); do [ -S "$run/w.sock" ] && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
# The daemon's minor page faults, and the host's TLB shootdowns (every core's count
# from /proc/interrupts): what unmapping and refaulting receive buffers costs.
faults() { awk '{print $10}' "/proc/$daemon/stat"; }
shootdowns() { awk '$1 == "TLB:" {s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s}' /proc/interrupts; }
# The daemon's CPU ticks by thread name (gRPC's nexting_thread receives and parses, wd-rawpush
# reads a raw push connection but ends with it, before the count: its CPU is in the total only,
# wd-work drains and gathers, wd-place places), as JSON.
thread_cpu() {
  python3 - "$daemon" <<'PY'
import glob, json, sys
ticks = {}
for stat in glob.glob(f"/proc/{sys.argv[1]}/task/*/stat"):
    try:
        text = open(stat).read()
    except OSError:
        continue
    name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
    ticks[name] = ticks.get(name, 0) + int(rest[11]) + int(rest[12])
print(json.dumps(ticks))
PY
}
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])['$1'])" "$2"; }
land=${LAND_BYTES:-4294967296}
n=0
for scheme in ${SCHEMES:-per_tensor none}; do
  for streams in ${STREAMS:-1 4 8}; do
    n=$((n + 1))
    before=$(cpu); threads_before=$(thread_cpu); faults_before=$(faults); tlb_before=$(shootdowns)
    push=$("$bin/weightd-push-gen" --address="unix:$run/w.sock" --model="m$n" --preset="${PRESET:-8b}" \
      --layers="${LAYERS:-0}" --streams="$streams" --fill=fast --scheme="$scheme")
    after=$(cpu); threads_after=$(thread_cpu); faults_after=$(faults); tlb_after=$(shootdowns)
    "$bin/weightctl" --address="unix:$run/w.sock" unload "m$n" >/dev/null
    grpc_before=$(cpu)
    push_grpc=$("$bin/weightd-push-gen" --address="unix:$run/w.sock" --model="m$n" --preset="${PRESET:-8b}" \
      --layers="${LAYERS:-0}" --streams="$streams" --fill=fast --scheme="$scheme" --transport=grpc)
    grpc_after=$(cpu)
    tcp=$("$bin/weightd-bench-tcp" --streams="$streams" --bytes="$(field bytes "$push")")
    dram=$("$bin/weightd-bench-tcp" --streams="$streams" --bytes="$(field bytes "$push")" --land-bytes="$land")
    unix=$("$bin/weightd-bench-tcp" --streams="$streams" --bytes="$(field bytes "$push")" --land-bytes="$land" --unix=1)
    unix_via=$("$bin/weightd-bench-tcp" --streams="$streams" --bytes="$(field bytes "$push")" --land-bytes="$land" \
      --unix=1 --via-buffer=1)
    grpc=$("$bin/weightd-bench-grpc" --streams="$streams" --bytes="$(field bytes "$push")" --land-bytes="$land")
    "$bin/weightctl" --address="unix:$run/w.sock" unload "m$n" >/dev/null
    python3 - "$scheme" "$streams" "$push" "$tcp" "$(( after - before ))" "$dram" "$threads_before" "$threads_after" "$grpc" \
      "$(( faults_after - faults_before ))" "$(( ${tlb_after:-0} - ${tlb_before:-0} ))" "$unix" "$unix_via" \
      "$push_grpc" "$(( grpc_after - grpc_before ))" <<'PY' | tee -a "$out/push-bench.jsonl"
import json, os, sys
scheme, streams, push, tcp, ticks = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
dram = json.loads(sys.argv[6])
grpc = json.loads(sys.argv[9])
unix, unix_via = json.loads(sys.argv[12]), json.loads(sys.argv[13])
push_grpc, grpc_ticks = json.loads(sys.argv[14]), int(sys.argv[15])
t0, t1 = json.loads(sys.argv[7]), json.loads(sys.argv[8])
hz = os.sysconf("SC_CLK_TCK")
by_thread = {k: round((v - t0.get(k, 0)) / hz, 2) for k, v in t1.items() if v - t0.get(k, 0) > 0}
print(json.dumps({"scheme": scheme, "streams": streams, "bytes": push["bytes"], "push_gbps": push["gbps"],
                  "tcp_gbps": tcp["gbps"], "push_over_tcp": round(push["gbps"] / tcp["gbps"], 3),
                  "dram_tcp_gbps": dram["gbps"], "push_over_dram_tcp": round(push["gbps"] / dram["gbps"], 3),
                  "dram_unix_gbps": unix["gbps"], "push_over_dram_unix": round(push["gbps"] / unix["gbps"], 3),
                  "push_grpc_gbps": push_grpc["gbps"],
                  "push_grpc_over_dram_tcp": round(push_grpc["gbps"] / dram["gbps"], 3),
                  "push_grpc_daemon_cpu_seconds": grpc_ticks / os.sysconf("SC_CLK_TCK"),
                  "unix_via_buffer_gbps": unix_via["gbps"],
                  "grpc_gbps": grpc["gbps"], "push_over_grpc": round(push["gbps"] / grpc["gbps"], 3),
                  "grpc_server_cpu_seconds": grpc["server_cpu_seconds"],
                  "grpc_server_minor_faults": grpc.get("server_minor_faults"),
                  "daemon_cpu_seconds": ticks / os.sysconf("SC_CLK_TCK"), "client_cpu_seconds": push["cpu_seconds"],
                  "tcp_cpu_seconds": tcp["cpu_seconds"], "daemon_cpu_seconds_by_thread": by_thread,
                  "daemon_minor_faults": int(sys.argv[10]), "host_tlb_shootdowns": int(sys.argv[11]),
                  "grpc_experiments": os.environ.get("GRPC_EXPERIMENTS", ""),
                  "daemon_env": os.environ.get("DAEMON_ENV", ""),
                  "daemon_flags": os.environ.get("DAEMON_FLAGS", "")}))
PY
  done
done
