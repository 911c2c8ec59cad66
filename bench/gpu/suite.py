"""The benchmark suite behind run_suite.sh: weightd beside what users do today, in one run.

Stdlib only; the PyTorch baselines run in their own processes (baselines.py) and are
skipped, with the reason recorded, where torch or a GPU is missing. Modes:
  full     8B-shaped from local disk (warm page cache), pushes of it with 1/4/8 streams,
           70B-shaped pushed from memory, baselines (a) and (b) beside each
  quick    the same with 8 and 20 layers (baseline memory cap 24 GiB: (a) still runs out)
  dry-run  host backend, small checkpoints: the suite's logic, plus a check that
           pushed bytes equal written bytes (exports compared)
Writes OUT/results.json and OUT/results.md (report.py builds the table).
"""
import argparse
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402

MODES = {
    # local: (preset, layers); big: (preset, layers, baseline cap GiB)
    "full": {"backend": "cuda", "local": ("8b", 0), "big": ("70b", 0, 80), "iterations": 50},
    "quick": {"backend": "cuda", "local": ("8b", 8), "big": ("70b", 20, 24), "iterations": 20},
    "dry-run": {"backend": "host", "local": ("small", 0), "big": ("small", 6, 1), "iterations": 5},
}
STREAMS = (1, 4, 8)


class Suite:
    def __init__(self, bin_dir, out, mode, skip_baselines=False):
        self.bin, self.out, self.mode = bin_dir, out, MODES[mode]
        self.mode_name = mode
        self.skip_baselines = skip_baselines
        self.work = tempfile.mkdtemp(prefix="weightd-suite-")
        self.models = os.path.join(self.work, "models")
        os.makedirs(self.models)
        self.sock, self.hsock = os.path.join(self.work, "w.sock"), os.path.join(self.work, "h.sock")
        self.daemon = None
        self.results = {"mode": mode, "backend": self.mode["backend"], "runs": {}}

    def log(self, *parts):
        print("[suite %6.1fs]" % (time.monotonic() - START), *parts, flush=True)

    def tool(self, name, *args, check=True):
        """Runs a binary of BIN; returns its stdout."""
        proc = subprocess.run([os.path.join(self.bin, name), *map(str, args)], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (name, proc.returncode, proc.stderr.strip()[-500:]))
        return proc.stdout

    def ctl(self, *args):
        return self.tool("weightctl", "--address=unix:" + self.sock, "--handle-socket=" + self.hsock,
                         "--progress=false", *args)

    def last_json(self, text):
        return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])

    # --- daemon ---------------------------------------------------------------
    def start_daemon(self):
        log = open(os.path.join(self.out, "weightd.log"), "a")
        self.daemon = subprocess.Popen(
            [os.path.join(self.bin, "weightd"), "--listen=unix:" + self.sock, "--handle-socket=" + self.hsock,
             "--metrics-address=", "--backend=" + self.mode["backend"], "--model-root=" + self.models,
             "--log-format=json", "--log-level=debug"], stderr=log)
        for _ in range(400):
            if os.path.exists(self.hsock):
                return
            time.sleep(0.05)
        raise RuntimeError("weightd did not start; see weightd.log")

    def stop_daemon(self):
        if self.daemon:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=120)
            self.daemon = None
        for path in (self.sock, self.hsock):
            if os.path.exists(path):
                os.unlink(path)

    @staticmethod
    def host_state():
        """What the kernel's memory management did, to compare one step across runs: a
        step that is slower inside the full suite than alone shows here whether the
        host reclaimed, compacted or fell back from huge pages meanwhile."""
        state = {}
        try:
            for line in open("/proc/meminfo"):
                key, value = line.split(":", 1)
                if key in ("MemFree", "MemAvailable", "Cached", "Dirty", "Writeback", "AnonPages", "AnonHugePages",
                           "Mlocked"):
                    state["meminfo_" + key + "_kib"] = int(value.split()[0])
            for line in open("/proc/vmstat"):
                key, value = line.split()
                if key.startswith(("pgscan", "pgsteal", "compact_", "thp_fault", "allocstall", "pgmajfault",
                                   "pgfault", "nr_dirty", "workingset_refault", "kswapd")):
                    state[key] = int(value)
        except OSError:
            pass
        return state

    def timed_load(self, label, load):
        """A fresh daemon, the driver's view sampled around `load()`; keeps the daemon up."""
        self.stop_daemon()
        self.start_daemon()
        before = self.host_state()
        sample_file = os.path.join(self.work, label + ".mem.json")
        sampler = subprocess.Popen([sys.executable, os.path.join(HERE, "devmem.py"), sample_file],
                                   stdout=subprocess.PIPE, text=True)
        sampler.stdout.readline()  # "ready": the starting free bytes are taken
        start = time.perf_counter()
        try:
            run = load()
        finally:
            wall = time.perf_counter() - start
            sampler.send_signal(signal.SIGTERM)
            sampler.wait(timeout=60)
        status = json.loads(self.ctl("status", "--json"))
        run.update(wall_seconds=round(wall, 4), driver=json.load(open(sample_file)),
                   daemon_peak_bytes=sum(int(d.get("peak_bytes", 0)) for d in status.get("devices", [])),
                   resident_bytes=sum(int(m.get("resident_bytes", 0)) for m in status.get("models", [])),
                   source_bytes=sum(int(m.get("source_bytes", 0)) for m in status.get("models", [])))
        after = self.host_state()
        run["host_before"] = {k: v for k, v in before.items() if k.startswith("meminfo_")}
        run["host_delta"] = {k: after[k] - before[k] for k in before
                             if k in after and not k.startswith("meminfo_") and after[k] != before[k]}
        run["peak_growth_bytes"] = run["driver"].get("peak_growth_bytes", run["daemon_peak_bytes"])
        run["peak_source"] = "driver" if "peak_growth_bytes" in run["driver"] else "daemon"
        self.results["runs"][label] = run
        self.log(label, json.dumps({k: run[k] for k in ("wall_seconds", "peak_growth_bytes", "resident_bytes")}))
        return run

    # --- the runs -------------------------------------------------------------
    def gen(self, name, preset, layers, shards, fill="fast"):
        path = os.path.join(self.models, name)
        self.tool("weightd-gen", "--preset=" + preset, "--layers=%d" % layers, "--shards=%d" % shards,
                  "--fill=" + fill, "--out=" + path)
        return path

    def baseline(self, label, mode, source_flag, cap_gib=0):
        if self.skip_baselines:
            return
        out = os.path.join(self.work, label + ".json")
        cmd = [sys.executable, os.path.join(HERE, "baselines.py"), "--mode", mode, *source_flag, "--out", out]
        if cap_gib:
            cmd += ["--cap-gib", str(cap_gib)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        result = json.load(open(out)) if os.path.exists(out) else {"failed": proc.stderr.strip()[-500:]}
        self.results["runs"][label] = result
        self.log(label, json.dumps({k: result.get(k) for k in ("wall_seconds", "peak_growth_bytes", "oom",
                                                               "skipped", "failed")}))

    def push(self, model, preset, layers, streams):
        return self.last_json(self.tool(
            "weightd-push-gen", "--address=unix:" + self.sock, "--model=" + model, "--preset=" + preset,
            "--layers=%d" % layers, "--streams=%d" % streams, "--fill=fast"))

    def attach(self, label, model):
        result = self.last_json(self.tool(
            "weightd-bench-attach", "--address=unix:" + self.sock, "--handle-socket=" + self.hsock,
            "--model=" + model, "--iterations=%d" % self.mode["iterations"]))
        self.results["runs"][label] = result
        self.log(label, json.dumps(result))

    def local(self):
        preset, layers = self.mode["local"]
        path = self.gen("local", preset, layers, 4)
        for f in sorted(os.listdir(path)):  # warm the page cache
            with open(os.path.join(path, f), "rb") as fh:
                while fh.read(64 << 20):
                    pass
        self.timed_load("weightd_local", lambda: {"stdout": self.ctl("load", "local", "--path=local").strip()})
        self.attach("attach_local", "local")
        self.stop_daemon()
        for mode in ("a", "b"):
            self.baseline("baseline_%s_local" % mode, mode, ["--checkpoint", path])
        # Cold page cache: the files' pages are dropped before each run
        # (posix_fadvise DONTNEED, no privileges needed); weightd and (b).
        if self.evict(path):
            self.timed_load("weightd_local_cold",
                            lambda: {"stdout": self.ctl("load", "local", "--path=local").strip()})
            self.stop_daemon()
            self.evict(path)
            self.baseline("baseline_b_local_cold", "b", ["--checkpoint", path])
        shutil.rmtree(path)

    def evict(self, path):
        """Drops the page cache of every file under `path`; False where the kernel keeps them."""
        cached = 0
        for f in sorted(os.listdir(path)):
            fd = os.open(os.path.join(path, f), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                cached += self.resident_pages(fd)
            finally:
                os.close(fd)
        self.log("evict", path, "pages still cached:", cached)
        return cached == 0

    @staticmethod
    def resident_pages(fd):
        """Pages of the file still in the page cache (mincore over a mapping)."""
        import ctypes
        import mmap
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return 0
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = ctypes.create_string_buffer(pages)
        try:
            if libc.mincore(addr, size, vec) != 0:
                return 0
            return sum(b & 1 for b in vec.raw)
        finally:
            libc.munmap(addr, size)

    def pushes(self):
        preset, layers = self.mode["local"]
        for streams in STREAMS:
            run = self.timed_load("weightd_push_%d" % streams,
                                  lambda: self.push("pushed", preset, layers, streams))
            run["tcp"] = self.last_json(self.tool("weightd-bench-tcp", "--streams=%d" % streams,
                                                  "--bytes=%d" % run["bytes"]))
        self.stop_daemon()

    def big(self):
        preset, layers, cap = self.mode["big"]
        self.timed_load("weightd_big", lambda: self.push("big", preset, layers, 8))
        self.attach("attach_big", "big")
        self.stop_daemon()
        plan = os.path.join(self.work, "big.plan")
        with open(plan, "w") as f:
            f.write(self.tool("weightd-gen", "--plan", "--preset=" + preset, "--layers=%d" % layers))
        for mode in ("a", "b"):
            self.baseline("baseline_%s_big" % mode, mode, ["--plan", plan], cap)
        self.results["big_cap_gib"] = cap

    def push_equals_written(self):
        """Pushed bytes are the written file's: the two loads export the same files."""
        self.gen("tiny", "tiny", 0, 3, fill="exact")
        self.stop_daemon()
        self.start_daemon()
        self.ctl("load", "written", "--path=tiny")
        self.tool("weightd-push-gen", "--address=unix:" + self.sock, "--model=pushed", "--preset=tiny",
                  "--streams=3", "--fill=exact")
        a, b = os.path.join(self.work, "export-written"), os.path.join(self.work, "export-pushed")
        self.ctl("export", "written", a)
        self.ctl("export", "pushed", b)
        self.stop_daemon()
        names = sorted(os.listdir(a))
        _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
        ok = bool(names) and not mismatch and not errors
        self.results["push_equals_written"] = {"ok": ok, "files": names, "mismatch": mismatch + errors}
        self.log("push_equals_written", ok)
        return ok

    def run(self, steps):
        try:
            for step in steps:
                try:
                    getattr(self, step)()
                except Exception as e:  # one failed step leaves the others' results
                    self.results.setdefault("errors", {})[step] = str(e)[-800:]
                    self.log(step, "FAILED:", e)
                    self.stop_daemon()
        finally:
            self.stop_daemon()
            shutil.rmtree(self.work, ignore_errors=True)
        self.results["seconds"] = round(time.monotonic() - START, 1)
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=2)
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write(report.markdown(self.results))
        print(report.markdown(self.results))
        return not self.results.get("errors")


START = time.monotonic()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bin")
    parser.add_argument("out")
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--steps", default="local,pushes,big",
                        help="comma-separated steps to run, e.g. --steps=big (the 70B-shaped push alone)")
    parser.add_argument("--skip-baselines", action="store_true", help="weightd's runs only")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    suite = Suite(os.path.abspath(args.bin), os.path.abspath(args.out), args.mode, args.skip_baselines)
    steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in steps if s not in ("local", "pushes", "big")]
    if unknown:
        parser.error("unknown steps: " + ", ".join(unknown))
    if args.mode == "dry-run":
        steps.insert(0, "push_equals_written")
    sys.exit(0 if suite.run(steps) else 1)


if __name__ == "__main__":
    main()
