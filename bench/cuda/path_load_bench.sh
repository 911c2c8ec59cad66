#!/usr/bin/env bash
# A local-path load into FP8 on one GPU against the floors measured in the same run
# (docs/performance.md, "Path loads"): plain pinned host-to-device copies of the same
# bytes, what the host side can feed the GPU each way (weightd-bench-source-floor), and
# the host side alone by route (weightd-bench-host-feed: amax pass, parking, scales from slots).
# Loads every scheme with --pin-path-sources=true (blocks of the mapped files pinned
# ahead of the readers, copied in place) and false (the default: every byte through the
# ring's pinned slots); with COLD=1 (the default) cold-cache loads (--direct-cold-reads=true,
# and through the page cache, the default) against the disk's sequential read by fio
# (where scripts/build-fio made one) and dd; and checks that a CUDA load's bytes equal
# the host backend's (the CPU reference).
#   bench/cuda/path_load_bench.sh BIN_DIR LIB_DIR OUT_DIR [LAYERS] [READ_THREADS]
# Environment: PINS (default "true false"), COLD=0 skips the cold-cache part, RINGS: daemon
# flags for the staging ring (or any daemon flags), one set per word, commas for spaces
# (default: the daemon's defaults; e.g. RINGS="--staging-slots=8 --staging-slots=32,--staging-copy-streams=4");
# CHECK_FLAGS: CUDA daemon flags for the byte check against the host backend with its defaults (e.g.
# "--scales-from-slots=true --park-per-tensor=true").
# Writes OUT_DIR/path_load_bench.jsonl and the daemons' logs.
set -u
bin=$(realpath "$1"); lib=$(realpath "$2"); out=$(realpath -m "$3"); layers=${4:-32}; threads=${5:-16}
mkdir -p "$out"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=$(mktemp -d /tmp/weightd-path-XXXXXX)
start_daemon() {
  rm -f "$work/h.sock"
  "$bin/weightd" --listen="unix:$work/w.sock" --handle-socket="$work/h.sock" --metrics-address=127.0.0.1:0 \
    --model-root="$work/models" --log-format=json --log-level=debug "$@" 2>>"$out/weightd-path.log" &
  daemon=$!
  for _ in $(seq 400); do [ -S "$work/h.sock" ] && break; sleep 0.05; done
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon"; }
ctl() { "$bin/weightctl" --address="unix:$work/w.sock" --handle-socket="$work/h.sock" --progress=false "$@"; }

"$bin/weightd-gen" --preset=8b --layers="$layers" --out="$work/models/big" --shards=4 --dtype=bf16 >/dev/null &
gen=$!
"$bin/weightd-gen" --preset=8b --layers=1 --out="$work/models/check" --shards=2 --dtype=bf16 --seed=3 >/dev/null
wait "$gen"
bytes=$(du -cb "$work"/models/big/*.safetensors | tail -n1 | cut -f1)
cat "$work"/models/big/*.safetensors >/dev/null  # warm page cache
floor=$("$bin/weightd-bench-source-floor" --threads="$threads" "$work"/models/big/*.safetensors)
echo "$floor" | tee "$out/source_floor.json"
h2d=$(echo "$floor" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pinned_h2d_gbps"])')
# The host side alone, by route (amax pass, parking, scales from the slots), on these files.
[ -x "$bin/weightd-bench-host-feed" ] && "$bin/weightd-bench-host-feed" --threads="$threads" \
  "$work"/models/big/*.safetensors | tee "$out/host_feed.json"
: >"$out/path_load_bench.jsonl"
for ring in ${RINGS:---log-level=debug}; do  # a word that changes nothing: the defaults
for pin in ${PINS:-true false}; do
  # shellcheck disable=SC2086
  start_daemon --backend=cuda --read-threads="$threads" --pin-path-sources=$pin ${ring//,/ }
  for scheme in per-tensor per-channel block; do
    t0=$(date +%s.%N); said=$(ctl load "m-$scheme" --path=big --scheme=$scheme); t1=$(date +%s.%N)
    ctl unload "m-$scheme" >/dev/null
    # load_seconds: the LoadModel call as its client timed it, from the request to READY
    # (weightctl's "loaded ... in N ms"); process_seconds: the whole weightctl process,
    # its start and connection included.
    python3 - "$bytes" "$t0" "$t1" "$h2d" "$pin" "$scheme" "$threads" "$ring" "$said" <<'PY' | tee -a "$out/path_load_bench.jsonl"
import json, re, sys
b, t0, t1, h2d = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
m = re.search(r" in ([0-9.]+) (ms|s)$", sys.argv[9].strip())
rpc = (float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)) if m else t1 - t0
load, process = b / rpc / 1e9, b / (t1 - t0) / 1e9
print(json.dumps({"pin_path_sources": sys.argv[5], "scheme": sys.argv[6], "read_threads": int(sys.argv[7]),
                  "ring": sys.argv[8].replace(",", " "),
                  "checkpoint_bytes": b, "load_seconds": round(rpc, 3), "load_gbps": round(load, 2),
                  "pinned_h2d_gbps": h2d, "ratio": round(load / h2d, 3),
                  "process_seconds": round(t1 - t0, 3), "process_ratio": round(process / h2d, 3)}))
PY
  done
  stop_daemon
done
done
grep -E '"event":"(load_planned|path_read|staging_ring|load_landed|load_finished)"' "$out/weightd-path.log" | tail -n 24

if [ "${COLD:-1}" = 1 ]; then
echo "== cold page cache: a per-tensor load (O_DIRECT, then through the page cache) against the disk's sequential read (fio, dd iflag=direct)"
evict() {
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
  python3 -c 'import os,sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY); os.fdatasync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' \
    "$work"/models/big/*.safetensors
}
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); python3 -c "print($bytes / ($t1 - $t0) / 1e9)"; }
dd_serial() { for f in "$work"/models/big/*.safetensors; do dd if="$f" of=/dev/null bs=16M iflag=direct status=none; done; }
dd_parallel() {
  for f in "$work"/models/big/*.safetensors; do dd if="$f" of=/dev/null bs=16M iflag=direct status=none & done
  wait
}
# fio (scripts/pack-gpu-run packs a static build where scripts/build-fio made one): O_DIRECT
# sequential reads of every shard, one job per shard, 16 MiB requests, with psync (one
# request in flight per job) and io_uring (8 in flight per job), and with 16 psync jobs (four
# per shard, the load's concurrency); the best is the disk's figure. For comparison, 16
# buffered (page cache) psync jobs with 4 MiB requests.
fio_read() {  # ENGINE DEPTH DIRECT BS [FIO OPTIONS] -> GB/s, or 0 when fio is missing or the engine is refused
  [ -x "$bin/fio" ] || { echo 0; return; }
  local engine=$1 depth=$2 direct=$3 bs=$4 jobs=() f
  shift 4
  for f in "$work"/models/big/*.safetensors; do jobs+=(--name="$(basename "$f")" --filename="$f"); done
  "$bin/fio" --output-format=json --group_reporting --rw=read --bs="$bs" --direct="$direct" --ioengine="$engine" \
    --iodepth="$depth" "$@" "${jobs[@]}" 2>>"$out/fio.err" | tee -a "$out/fio.json" \
    | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 1e9)
except Exception: print(0)'
}
# Four jobs per shard, each a quarter of it: the load's 16 readers' concurrency.
quarters=(--numjobs=4 --size=25% --offset_increment=25%)
evict; dd1=$(timed dd_serial)
evict; dd4=$(timed dd_parallel)
evict; fio_sync=$(fio_read psync 1 1 16M)
evict; fio_uring=$(fio_read io_uring 8 1 16M)
evict; fio_sync16=$(fio_read psync 1 1 16M "${quarters[@]}")
evict; fio_buffered16=$(fio_read psync 1 0 4M "${quarters[@]}")
echo "fio: psync $fio_sync io_uring-8 $fio_uring; 16 jobs: O_DIRECT psync 16M $fio_sync16, buffered psync 4M $fio_buffered16"
for direct in true false; do
evict
start_daemon --backend=cuda --read-threads="$threads" --direct-cold-reads=$direct
t4=$(date +%s.%N); ctl load cold --path=big --scheme=per-tensor >/dev/null; t5=$(date +%s.%N)
stop_daemon
# What the cold load left in the page cache (util-linux fincore; -1 where it is missing).
cached=$(fincore --bytes --noheadings --output RES "$work"/models/big/*.safetensors 2>/dev/null \
  | awk '{s += $1} END {print NR ? s : -1}')
python3 - "$bytes" "$dd1" "$dd4" "$fio_sync" "$fio_uring" "$t4" "$t5" "$cached" "$fio_sync16" "$fio_buffered16" "$direct" <<'PY' | tee -a "$out/path_load_bench.jsonl"
import json, sys
b = int(sys.argv[1]); dd1, dd4, fsync, furing = (float(x) for x in sys.argv[2:6])
t4, t5, cached = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
fsync16, fbuffered16 = float(sys.argv[9]), float(sys.argv[10])
load = b / (t5 - t4) / 1e9
fio = max(fsync, furing, fsync16)
print(json.dumps({"cold": True, "direct_cold_reads": sys.argv[11], "scheme": "per-tensor", "checkpoint_bytes": b,
                  "dd_direct_one_stream_gbps": round(dd1, 2), "dd_direct_one_per_shard_gbps": round(dd4, 2),
                  "fio_psync_gbps": round(fsync, 2), "fio_io_uring_depth8_gbps": round(furing, 2),
                  "fio_psync_16_jobs_gbps": round(fsync16, 2), "fio_buffered_16_jobs_gbps": round(fbuffered16, 2),
                  "load_seconds": round(t5 - t4, 3), "load_gbps": round(load, 2),
                  "ratio_to_fio": round(load / fio, 3) if fio > 0 else None,
                  "ratio_to_best_dd": round(load / max(dd1, dd4), 3), "page_cache_bytes_after": cached}))
PY
grep -E '"event":"path_read"' "$out/weightd-path.log" | tail -n 1
done
fi

echo "== a pinned load's bytes against the host backend's (CPU reference)"
ok=1
for backend in cuda host; do
  # CHECK_FLAGS go to the CUDA daemon only: the host backend with its defaults is the reference.
  flags=""; [ "$backend" = cuda ] && flags=${CHECK_FLAGS:-}
  # shellcheck disable=SC2086
  start_daemon --backend=$backend --read-threads="$threads" $flags
  for scheme in per-tensor per-channel block; do
    ctl load "c-$scheme" --path=check --scheme=$scheme >/dev/null && ctl export "c-$scheme" "$work/x-$backend-$scheme" >/dev/null || ok=0
  done
  stop_daemon
done
for scheme in per-tensor per-channel block; do
  if diff -rq "$work/x-cuda-$scheme" "$work/x-host-$scheme"; then echo "$scheme: equal"; else echo "$scheme: DIFFERENT"; ok=0; fi
done
echo "bytes_equal=$ok"
rm -rf "$work"
[ "$ok" = 1 ]
