"""A tensor-parallel load with one importer process per rank, as inference workers
run: each process attaches to its own rank and finds that rank's bytes (equal to
`weightctl export --rank R`, which `weightctl verify --tp` checks against the CPU
reference) at weightd's addresses. On host devices everywhere; on GPUs where two or
more are visible (one rank per GPU)."""
import json
import os
import subprocess
import sys

import pytest

from daemon import Daemon, binaries_present

if not binaries_present():
    pytest.skip("weightd binaries not built (build/bin or WEIGHTD_BIN_DIR)", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))


def gpu_count():
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def cases():
    yield pytest.param("host", 2, id="host-tp2")
    yield pytest.param("host", 4, id="host-tp4")
    gpus = min(gpu_count(), 8)
    if gpus >= 2:
        yield pytest.param("cuda", 2 if gpus < 4 else (4 if gpus < 8 else 8), id=f"cuda-tp{gpus}")


@pytest.mark.parametrize("backend,tp", list(cases()))
def test_one_importer_process_per_rank(backend, tp):
    flags = ["--host-devices=8"] if backend == "host" else []
    d = Daemon(backend, flags)
    try:
        checkpoint = d.generate_tiny("tiny", "--shards=2", "--dtype=bf16")
        d.start()
        load = d.ctl("load", "tiny", "--path=tiny", f"--tp={tp}")
        assert load.returncode == 0, load.stderr
        exports = []
        for rank in range(tp):
            out = d.dir / f"rank{rank}"
            exported = d.ctl("export", "tiny", str(out), f"--rank={rank}")
            assert exported.returncode == 0, exported.stderr
            verified = d.ctl("verify", str(checkpoint), str(out), f"--tp={tp}", f"--rank={rank}")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            exports.append(out)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
        workers = [subprocess.Popen([sys.executable, os.path.join(HERE, "tp_importer.py"), d.address, d.handle_socket,
                                     "tiny", str(rank), str(exports[rank])], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env) for rank in range(tp)]
        reports = []
        for rank, worker in enumerate(workers):
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, f"rank {rank}: {err}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
        print(reports)
        assert [r["rank"] for r in reports] == list(range(tp))
        assert len({r["device"] for r in reports}) == tp, "two ranks on one device"
        assert all(r["tensors"] > 0 for r in reports)
    finally:
        d.stop()
