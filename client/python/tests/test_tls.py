"""The Python client over TLS to the daemon's TCP listener, with certificates made
for the test by the openssl command: mutual TLS serves load (by path and by push,
each pushed shard on its own TLS channel), list, status and unload; a client
without a certificate the daemon's CA signed is refused; a TLS file that cannot
be read is INVALID_ARGUMENT naming it."""
import subprocess

import grpc
import pytest

import weightd
from daemon import Daemon, binaries_present

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
LEAF = ["-addext", "basicConstraints=critical,CA:FALSE"]


def make_certificate(directory, name, subject, extensions=(), ca=None):
    """`openssl req -x509` with a new key, signed by `ca` (a name made before) or by itself."""
    cmd = ["openssl", "req", "-x509", *EC_KEY, "-subj", subject, *extensions,
           "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem")]
    if ca:
        cmd += ["-CA", str(directory / f"{ca}.pem"), "-CAkey", str(directory / f"{ca}.key")]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(directory / f"{name}.pem"), str(directory / f"{name}.key")


@pytest.fixture
def tls_daemon(tmp_path):
    if not binaries_present():
        pytest.skip("weightd binaries not built (build/bin or WEIGHTD_BIN_DIR)")
    ca, _ = make_certificate(tmp_path, "ca", "/CN=weightd-test-ca")
    server = make_certificate(tmp_path, "server", "/CN=localhost", [*LEAF, "-addext", "subjectAltName=DNS:localhost"],
                              ca="ca")
    client = make_certificate(tmp_path, "client", "/CN=weightd-test-client", LEAF, ca="ca")
    untrusted = make_certificate(tmp_path, "untrusted", "/CN=weightd-test-untrusted", LEAF)
    d = Daemon("host")
    d.generate_tiny("tiny", "--shards=2")
    d.flags = [f"--listen={d.address},127.0.0.1:0", f"--tls-cert={server[0]}", f"--tls-key={server[1]}",
               f"--tls-client-ca={ca}"]
    d.start()
    d.tcp_address = f"127.0.0.1:{d.ready_event()['tcp_port']}"
    d.tls = {"ca": ca, "client": client, "untrusted": untrusted}
    yield d
    d.stop()


def tcp_client(daemon, cert_and_key=(None, None)):
    return weightd.Client(daemon.tcp_address, daemon.handle_socket, tls_ca=daemon.tls["ca"],
                          tls_cert=cert_and_key[0], tls_key=cert_and_key[1], tls_server_name="localhost")


def test_mutual_tls_serves_load_push_list_status_and_unload(tls_daemon):
    with tcp_client(tls_daemon, tls_daemon.tls["client"]) as client:
        by_path = client.load_and_wait("by-path", path="tiny")
        pushed = client.load_and_wait("pushed", push=str(tls_daemon.model_root / "tiny"))
        assert pushed.resident_bytes == by_path.resident_bytes > 0
        assert sorted(m.model_id for m in client.list()) == ["by-path", "pushed"]
        assert len(client.status().models) == 2
        assert client.unload("pushed") == pushed.resident_bytes
        assert client.unload("by-path") == by_path.resident_bytes


def test_client_without_a_certificate_the_ca_signed_is_refused(tls_daemon):
    for cert_and_key in [(None, None), tls_daemon.tls["untrusted"]]:
        with tcp_client(tls_daemon, cert_and_key) as client:
            with pytest.raises(weightd.WeightdError) as refused:
                client.list()
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    with weightd.Client(tls_daemon.tcp_address, tls_daemon.handle_socket) as plain:
        with pytest.raises(weightd.WeightdError) as refused:
            plain.list()
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE


def test_unreadable_tls_file_is_invalid_argument_naming_it(tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises(weightd.WeightdError) as error:
        weightd.Client("127.0.0.1:9", tls_ca=missing)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.message.startswith(f"TLS CA file: cannot read '{missing}'")
    (tmp_path / "empty.pem").write_bytes(b"")
    with pytest.raises(weightd.WeightdError) as error:
        weightd.Client("127.0.0.1:9", tls_ca=str(tmp_path / "empty.pem"))
    assert error.value.message == f"TLS CA file: '{tmp_path / 'empty.pem'}' holds no PEM block"
    with pytest.raises(weightd.WeightdError) as error:
        weightd.Client("127.0.0.1:9", tls_cert=str(tmp_path / "client.pem"))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no key file" in error.value.message


def test_unix_socket_ignores_tls_options(daemon):
    with weightd.Client(daemon.address, daemon.handle_socket, tls_ca="/nonexistent/ca.pem") as client:
        assert client.list() == []
