"""The real weightd started on temporary Unix sockets for the tests, and a reader
of safetensors files for reference bytes."""
import hashlib
import json
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[3]


def bin_dir():
    return pathlib.Path(os.environ.get("WEIGHTD_BIN_DIR", REPO / "build" / "bin"))


def binaries_present():
    return all((bin_dir() / name).exists() for name in ("weightd", "weightctl", "weightd-gen"))


class Daemon:
    def __init__(self, backend="host", flags=()):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="weightd-py-"))
        self.model_root = self.dir / "models"
        self.model_root.mkdir()
        self.address = f"unix:{self.dir}/weightd.sock"
        self.handle_socket = str(self.dir / "handles.sock")
        self.backend = backend
        self.flags = list(flags)
        self.process = None
        self.log = self.dir / "weightd.log"

    def generate_tiny(self, name="tiny", *flags):
        subprocess.run([str(bin_dir() / "weightd-gen"), "--preset=tiny", f"--out={self.model_root / name}", *flags],
                       check=True, capture_output=True)
        return self.model_root / name

    def start(self):
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(bin_dir() / "weightd"), f"--listen={self.address}", f"--handle-socket={self.handle_socket}",
                 "--metrics-address=127.0.0.1:0", f"--backend={self.backend}", f"--model-root={self.model_root}", *self.flags],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 30
        while not os.path.exists(self.handle_socket) or not os.path.exists(self.dir / "weightd.sock"):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"weightd did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def ready_event(self, seconds=30):
        """The daemon's "ready" log record (JSON), once it has written it."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            for line in self.log.read_text().splitlines():
                if line.startswith("{") and json.loads(line).get("event") == "ready":
                    return json.loads(line)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"weightd wrote no ready event: {self.log.read_text()}")

    def ctl(self, *args):
        return subprocess.run([str(bin_dir() / "weightctl"), f"--address={self.address}",
                               f"--handle-socket={self.handle_socket}", "--progress=false", *args],
                              capture_output=True, text=True)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def read_safetensors(directory):
    """{name: (dtype, shape, bytes)} of every .safetensors file in `directory`."""
    tensors = {}
    for path in sorted(pathlib.Path(directory).glob("*.safetensors")):
        data = path.read_bytes()
        (header_size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_size])
        start = 8 + header_size
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            tensors[name] = (info["dtype"], list(info["shape"]), data[start + begin:start + end])
    return tensors


def lease_digest(lease):
    """sha256 over every allocation of a host lease (its read-only memfd mappings): what
    a test compares before and after an engine ran on the memory."""
    digest = hashlib.sha256()
    for allocation in lease._allocations:
        digest.update(allocation._base_array.tobytes())
    return digest.hexdigest()
