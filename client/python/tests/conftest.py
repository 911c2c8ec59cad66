import sys
import pathlib

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from daemon import Daemon, binaries_present  # noqa: E402


@pytest.fixture
def daemon():
    if not binaries_present():
        pytest.skip("weightd binaries not built (build/bin or WEIGHTD_BIN_DIR)")
    d = Daemon("host")
    d.generate_tiny("tiny", "--shards=2", "--dtype=mixed")
    d.start()
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    import weightd
    with weightd.Client(daemon.address, daemon.handle_socket) as c:
        yield c
