"""Driver's view of device memory (cudaMemGetInfo through torch), sampled by a thread.

Imported by baselines.py; run as a script it samples for another process (the daemon):
    python3 devmem.py OUT.json     prints "ready" once it has the starting free bytes,
                                   samples until SIGTERM, then writes OUT.json.
Without torch or a GPU it writes {"skipped": reason} and exits 0.
"""
import json
import signal
import sys
import threading
import time


def unavailable():
    """Why the driver's view cannot be sampled here, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


class Sampler:
    """Lowest free device memory seen since start(); growth = free at start - lowest."""

    def __init__(self, period_s=0.0005):
        import torch
        self._torch = torch
        self._period = period_s
        self._stop = threading.Event()
        torch.cuda.init()
        self.free_before, self.total = torch.cuda.mem_get_info()
        self.min_free = self.free_before
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            free, _ = self._torch.cuda.mem_get_info()
            self.min_free = min(self.min_free, free)
            self.samples += 1
            time.sleep(self._period)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        free, _ = self._torch.cuda.mem_get_info()
        self.min_free = min(self.min_free, free)
        return {"free_before_bytes": self.free_before, "min_free_bytes": self.min_free,
                "total_bytes": self.total, "peak_growth_bytes": self.free_before - self.min_free,
                "samples": self.samples}


def main():
    out = sys.argv[1]
    reason = unavailable()
    if reason:
        with open(out, "w") as f:
            json.dump({"skipped": reason}, f)
        print("ready", flush=True)
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    sampler = Sampler().start()
    print("ready", flush=True)
    while not stopping.wait(0.05):
        pass
    with open(out, "w") as f:
        json.dump(sampler.stop(), f)


if __name__ == "__main__":
    main()
