#!/usr/bin/env python3
"""How a fleet of 4 daemons gets one model from peers, on one machine.

Every daemon (host backend) listens on TCP loopback with mutual TLS and serves at
most --peer-serve-bandwidth bytes per second to its peers, a network-like rate,
so the figures show what relaying changes rather than this machine's CPU. One
seed loads the model from its files; then, each scenario on fresh receivers:

  single  one peer-to-peer transfer: seed -> B
  chain   B <- seed, C <- B, D <- C, started together (C and D relay what has landed)
  fanout  B, C and D all pull from the seed at once (the seed's bandwidth is shared)

Each scenario's time is from its first load request to its last load's end, and
is reported as a ratio to `single`, measured in the same run. The receivers'
bytes are checked against the seed's (weightctl export) for the chain's last node.

  python3 bench/peer/fanout.py BIN_DIR [--bandwidth=48MiB] [--preset=small] [--out=FILE.jsonl]
"""
import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time


class Daemon:
    def __init__(self, bin_dir, root, name, certs, bandwidth):
        self.bin, self.dir = bin_dir, os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "models"), exist_ok=True)
        self.log = open(os.path.join(self.dir, "log"), "w+")
        cert, key = certs
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "weightd"), f"--listen=unix:{self.dir}/w.sock,127.0.0.1:0",
             f"--handle-socket={self.dir}/h.sock", "--metrics-address=", "--backend=host",
             f"--model-root={self.dir}/models", "--log-format=json", f"--tls-cert={cert}", f"--tls-key={key}",
             f"--tls-client-ca={cert}", f"--peer-tls-ca={cert}", f"--peer-tls-cert={cert}", f"--peer-tls-key={key}",
             "--peer-tls-server-name=localhost", f"--peer-serve-bandwidth={bandwidth}"],
            stderr=self.log)
        self.port = 0
        for _ in range(400):
            self.log.seek(0)
            m = re.search(r'"tcp_port":(\d+)', self.log.read())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.025)
        if not self.port:
            raise RuntimeError(f"daemon {name} did not start")
        self.address = f"127.0.0.1:{self.port}"

    def ctl(self, *args):
        return subprocess.run([os.path.join(self.bin, "weightctl"), f"--address=unix:{self.dir}/w.sock",
                               f"--handle-socket={self.dir}/h.sock", "--progress=false", *args],
                              capture_output=True, text=True)

    def knows(self, model):
        return f'"model_id": "{model}"' in self.ctl("list", "--json").stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def pull_all(pulls):
    """Runs (receiver, peer) pulls at once, each once its peer knows the model; returns seconds."""
    results, threads = {}, []
    start = time.monotonic()
    for receiver, peer in pulls:
        while not peer.knows("m"):
            time.sleep(0.005)
        t = threading.Thread(target=lambda r=receiver, p=peer: results.__setitem__(r.address, r.ctl(
            "load", "m", f"--peer={p.address}")))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    for address, r in results.items():
        if r.returncode != 0:
            raise RuntimeError(f"pull into {address} failed: {r.stderr}")
    return seconds


def same_export(a, b, work):
    da, db = os.path.join(work, "export-a"), os.path.join(work, "export-b")
    for d, out in ((a, da), (b, db)):
        shutil.rmtree(out, ignore_errors=True)
        r = d.ctl("export", "m", out)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
    cmp = filecmp.dircmp(da, db)
    files = cmp.common_files
    same = not cmp.left_only and not cmp.right_only and all(
        filecmp.cmp(os.path.join(da, f), os.path.join(db, f), shallow=False) for f in files)
    return same


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("--bandwidth", default="48MiB")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    work = tempfile.mkdtemp(prefix="weightd-peer-bench-")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out",
                    cert], check=True, capture_output=True)
    seed = Daemon(bin_dir, work, "seed", (cert, key), args.bandwidth)
    daemons = [seed]
    try:
        subprocess.run([os.path.join(bin_dir, "weightd-gen"), f"--preset={args.preset}",
                        f"--out={seed.dir}/models/m"], check=True, capture_output=True)
        r = seed.ctl("load", "m", "--path=m", "--json")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        resident = int(json.loads(seed.ctl("list", "--json").stdout)["models"][0]["resident_bytes"])
        rows = []
        for scenario in ("single", "chain", "fanout"):
            receivers = [Daemon(bin_dir, work, f"{scenario}-{i}", (cert, key), args.bandwidth) for i in range(3)]
            daemons += receivers
            if scenario == "single":
                pulls = [(receivers[0], seed)]
            elif scenario == "chain":
                pulls = [(receivers[0], seed), (receivers[1], receivers[0]), (receivers[2], receivers[1])]
            else:
                pulls = [(r, seed) for r in receivers]
            seconds = pull_all(pulls)
            last = pulls[-1][0]
            rows.append({"scenario": scenario, "receivers": len(pulls), "seconds": round(seconds, 3),
                         "fp8_bytes": resident, "bandwidth": args.bandwidth,
                         "bytes_equal": same_export(seed, last, work)})
            for d in receivers:
                d.stop()
            daemons = [d for d in daemons if d not in receivers]
        single = rows[0]["seconds"]
        for row in rows:
            row["ratio_to_single"] = round(row["seconds"] / single, 3)
            line = json.dumps(row)
            print(line)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
        ok = all(r["bytes_equal"] for r in rows)
        return 0 if ok else 1
    finally:
        for d in daemons:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
