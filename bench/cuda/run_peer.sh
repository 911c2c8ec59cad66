#!/usr/bin/env bash
# A peer pull of the 8B-shaped model between two daemons on one GPU (docs/cluster.md),
# beside a local path load of the same checkpoint and raw TCP loopback of the same
# bytes over the same number of streams, all in this run:
#   bench/cuda/run_peer.sh BIN_DIR LIB_DIR OUT_DIR [LAYERS]
# The seed loads from its files; the receiver pulls the FP8 bytes over a Unix socket
# and over TCP with mutual TLS, at 4 and 8 streams, and its peak device memory growth
# (the driver's free memory, sampled from before the receiver starts) is compared
# with its FP8 footprint. Writes OUT_DIR/peer_bench.jsonl and the daemons' logs.
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3"); layers=${4:-32}
here=$(dirname "$(realpath "$0")")
mkdir -p "$out"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=$(mktemp -d /tmp/weightd-peer-XXXXXX)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tls=(--tls-cert="$work/cert.pem" --tls-key="$work/key.pem" --tls-client-ca="$work/cert.pem"
     --peer-tls-ca="$work/cert.pem" --peer-tls-cert="$work/cert.pem" --peer-tls-key="$work/key.pem"
     --peer-tls-server-name=localhost)
start_daemon() {  # NAME, then flags
  local name=$1; shift
  mkdir -p "$work/$name/models"
  "$bin/weightd" --listen="unix:$work/$name/w.sock,127.0.0.1:0" --handle-socket="$work/$name/h.sock" \
    --metrics-address=127.0.0.1:0 --backend="${WEIGHTD_BENCH_BACKEND:-cuda}" --model-root="$work/$name/models" --log-format=json "${tls[@]}" \
    "$@" 2>>"$out/weightd-$name.log" &
  eval "pid_$name=$!"
  for _ in $(seq 400); do grep -q '"tcp_port"' "$out/weightd-$name.log" 2>/dev/null && break; sleep 0.05; done
  eval "port_$name=$(grep -o '"tcp_port":[0-9]*' "$out/weightd-$name.log" | tail -1 | cut -d: -f2)"
}
ctl() { local name=$1; shift; "$bin/weightctl" --address="unix:$work/$name/w.sock" --handle-socket="$work/$name/h.sock" --progress=false "$@"; }
now() { date +%s.%N; }

"$bin/weightd-gen" --preset=8b --layers="$layers" --out="$work/seed/models/llama8b" --shards=4 --dtype=bf16 >/dev/null
bytes=$(du -cb "$work"/seed/models/llama8b/*.safetensors | tail -n1 | cut -f1)
cat "$work"/seed/models/llama8b/*.safetensors >/dev/null  # warm page cache

start_daemon seed
t0=$(now); ctl seed load m --path=llama8b >/dev/null || exit 1; t1=$(now)
fp8=$(ctl seed list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["resident_bytes"])')
python3 - "$bytes" "$fp8" "$t0" "$t1" <<'PY' | tee "$out/peer_bench.jsonl"
import json, sys
b, f, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(json.dumps({"case": "local path load (seed)", "checkpoint_bytes": b, "fp8_bytes": f, "seconds": round(t1 - t0, 3),
                  "checkpoint_gbps": round(b / (t1 - t0) / 1e9, 2), "fp8_gbps": round(f / (t1 - t0) / 1e9, 2)}))
PY

for streams in 4 8; do
  "$bin/weightd-bench-tcp" --streams=$streams --bytes="$fp8" | python3 -c '
import json, sys; r = json.load(sys.stdin); r["case"] = "raw TCP loopback, %s streams" % sys.argv[1]; print(json.dumps(r))' \
    "$streams" | tee -a "$out/peer_bench.jsonl"
done

start_daemon receiver
# Device memory growth of the first pull (the receiver's context and staging ring
# were made when it started): the driver's free memory, sampled through the pull.
python3 "$here/../gpu/devmem.py" "$out/devmem-receiver.json" > "$work/devmem.out" &
sampler=$!
for _ in $(seq 200); do grep -q ready "$work/devmem.out" 2>/dev/null && break; sleep 0.05; done
for transport in unix tcp; do
  for streams in 4 8; do
    if [ "$transport" = unix ]; then peer="unix:$work/seed/w.sock"; else peer="127.0.0.1:$port_seed"; fi
    t0=$(now); ctl receiver load m --peer="$peer" --peer-streams=$streams >/dev/null || exit 1; t1=$(now)
    if [ -n "$sampler" ]; then kill -TERM "$sampler"; wait "$sampler"; sampler=""; fi
    python3 - "$fp8" "$t0" "$t1" "$transport" "$streams" <<'PY' | tee -a "$out/peer_bench.jsonl"
import json, sys
f, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(json.dumps({"case": "peer pull over %s, %s streams" % (sys.argv[4], sys.argv[5]), "fp8_bytes": f,
                  "seconds": round(t1 - t0, 3), "fp8_gbps": round(f / (t1 - t0) / 1e9, 2)}))
PY
    if [ "$transport$streams" = tcp4 ]; then  # once: the received bytes against the seed's
      equal=false
      ctl receiver export m "$work/received" >/dev/null && ctl seed export m "$work/seeded" >/dev/null \
        && cmp -s "$work/received/model.safetensors" "$work/seeded/model.safetensors" && equal=true
      echo "{\"case\": \"received bytes equal the seed's (tcp, 4 streams)\", \"equal\": $equal}" | tee -a "$out/peer_bench.jsonl"
      rm -rf "$work/received" "$work/seeded"
    fi
    ctl receiver unload m >/dev/null
  done
done
python3 - "$out/devmem-receiver.json" "$fp8" <<'PY' | tee -a "$out/peer_bench.jsonl"
import json, sys
d = json.load(open(sys.argv[1])); f = int(sys.argv[2])
g = d.get("peak_growth_bytes")
print(json.dumps({"case": "receiver peak device memory growth, first pull", "growth_bytes": g, "fp8_bytes": f,
                  "over_fp8_mib": None if g is None else round((g - f) / 2**20, 1), "sampler": d}))
PY
kill -TERM "$pid_receiver" "$pid_seed"; wait
rm -rf "$work"
