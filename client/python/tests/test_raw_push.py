"""The Python client's push on the daemon's raw push connection (weightd.raw_push)
against the real daemon: a raw push exports the same bytes as a path load; a daemon
run with --raw-unix-push=false is pushed over gRPC; a truncated shard gets DATA_LOSS."""
import shutil

import grpc
import pytest

import weightd
import weightd.push
import weightd.raw_push
from weightd.raw_push import push_file_raw
from weightd.v1 import loader_pb2
from daemon import Daemon, binaries_present


@pytest.fixture
def make_daemon():
    if not binaries_present():
        pytest.skip("weightd binaries not built (build/bin or WEIGHTD_BIN_DIR)")
    started = []

    def make(*flags):
        d = Daemon("host", flags)
        d.generate_tiny("tiny", "--shards=3", "--dtype=mixed")
        d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def raw_outcomes(monkeypatch):
    """{shard file: what the Pusher's push_file_raw call gave (True, False, or the WeightdError's code)}."""
    outcomes = {}

    def recording(target, model_id, path):
        name = path.rsplit("/", 1)[-1]
        try:
            outcomes[name] = push_file_raw(target, model_id, path)
        except weightd.WeightdError as e:
            outcomes[name] = e.code
            raise
        return outcomes[name]

    monkeypatch.setattr(weightd.push, "push_file_raw", recording)
    return outcomes


def export(daemon, model):
    out = daemon.dir / f"export-{model}"
    result = daemon.ctl("export", model, str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return (out / "model.safetensors").read_bytes()


def test_a_raw_push_exports_the_same_bytes_as_a_path_load(make_daemon, raw_outcomes, monkeypatch):
    daemon = make_daemon()
    monkeypatch.setattr(weightd.raw_push, "CHUNK_BYTES", 100_000)  # many frames per shard, the last one short
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        client.load_and_wait("by-path", path="tiny")
        pushed = client.load_and_wait("by-raw", push=str(daemon.model_root / "tiny"))
        assert pushed.resident_bytes > 0
    assert list(raw_outcomes.values()) == [True] * 3, f"not every shard went raw: {raw_outcomes}"
    assert export(daemon, "by-raw") == export(daemon, "by-path")


def test_a_daemon_without_raw_pushes_is_pushed_over_grpc(make_daemon, raw_outcomes):
    daemon = make_daemon("--raw-unix-push=false")
    shard = daemon.model_root / "tiny" / "model-00001-of-00003.safetensors"
    assert push_file_raw(daemon.address, "m", str(shard)) is False
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        client.load_and_wait("by-path", path="tiny")
        client.load_and_wait("by-push", push=str(daemon.model_root / "tiny"))
    assert list(raw_outcomes.values()) == [False] * 3, raw_outcomes
    assert export(daemon, "by-push") == export(daemon, "by-path")


def test_a_truncated_shard_pushed_raw_gets_data_loss(make_daemon, raw_outcomes):
    daemon = make_daemon()
    local = daemon.dir / "local"
    shutil.copytree(daemon.model_root / "tiny", local)
    shard = local / "model-00002-of-00003.safetensors"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    with weightd.Client(daemon.address, daemon.handle_socket) as client:
        with pytest.raises(weightd.WeightdError) as failed:
            client.load_and_wait("cut", push=str(local))
        assert failed.value.code == grpc.StatusCode.DATA_LOSS, failed.value
        assert "model-00002-of-00003.safetensors" in failed.value.message
        listed = {m.model_id: m for m in client.list()}
        assert listed["cut"].state == loader_pb2.MODEL_STATE_FAILED
    # The daemon failed the cut shard on its raw connection (the others fail with the load).
    assert raw_outcomes["model-00002-of-00003.safetensors"] == grpc.StatusCode.DATA_LOSS, raw_outcomes
