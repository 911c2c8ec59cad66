"""The deployment contract, checked on every manifest in deploy/k8s and on every
template of deploy/helm/weightd rendered with its default values (helm-python-sdk,
which renders as `helm template` does): weightd is a native sidecar, probed over
gRPC on the health service, shares its socket volume with the worker, exposes
/metrics, runs as non-root with resource requests; the alerts name metrics that the
daemon really exports; the Dockerfile is multi-stage and runs as non-root."""

import os
import pathlib
import re
import subprocess
import time
import urllib.request

import helm_python
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRICS_PORT = 9400


def k8s_documents():
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def chart_documents(values=None):
    with helm_python.Chart.load(DEPLOY / "helm" / "weightd") as chart:
        rendered = chart.render(values=values, name="weightd", namespace="inference")
    docs = []
    for name, text in rendered.items():
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


SOURCES = {"k8s": k8s_documents, "helm": chart_documents}


@pytest.fixture(params=sorted(SOURCES), scope="module")
def documents(request):
    return SOURCES[request.param]()


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)} documents"
    return found[0]


def pod_spec(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def sidecar(spec):
    found = [c for c in spec.get("initContainers", []) if c["name"] == "weightd"]
    assert len(found) == 1, "weightd must be an init container"
    return found[0]


def flag(container, name):
    for arg in container.get("args", []):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def test_every_document_has_a_kind_and_a_name(documents):
    assert documents
    for d in documents:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d


def test_weightd_is_a_native_sidecar_beside_the_worker(documents):
    spec = pod_spec(documents)
    weightd = sidecar(spec)
    assert weightd.get("restartPolicy") == "Always"
    assert [c["name"] for c in spec["containers"]] and "weightd" not in [c["name"] for c in spec["containers"]]


def test_grpc_startup_and_readiness_probes_on_the_health_service(documents):
    weightd = sidecar(pod_spec(documents))
    health = flag(weightd, "health-address")
    assert health is not None, "the probes need --health-address"
    port = int(health.rsplit(":", 1)[1])
    assert port in [p["containerPort"] for p in weightd["ports"]]
    for probe in ("startupProbe", "readinessProbe"):
        assert weightd[probe]["grpc"]["port"] == port, probe
        # An empty service name asks for the server's overall health.
        assert weightd[probe]["grpc"].get("service", "") == ""
    # The Loader API is not on the network: every --listen address is a Unix socket.
    assert all(a.startswith("unix:") for a in flag(weightd, "listen").split(","))


def test_socket_volume_is_shared_by_both_containers(documents):
    spec = pod_spec(documents)
    weightd = sidecar(spec)
    grpc_socket = flag(weightd, "listen").split(",")[0][len("unix:"):]
    handle_socket = flag(weightd, "handle-socket")
    socket_dir = os.path.dirname(grpc_socket)
    assert os.path.dirname(handle_socket) == socket_dir
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in [weightd] + spec["containers"]:
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == socket_dir]
        assert len(mounts) == 1, f"{container['name']} does not mount {socket_dir}"
        assert "emptyDir" in volumes[mounts[0]["name"]]
        assert not mounts[0].get("readOnly", False)
    worker_env = {e["name"]: e.get("value") for c in spec["containers"] for e in c.get("env", [])}
    assert worker_env.get("WEIGHTD_ADDRESS") == "unix:" + grpc_socket
    assert worker_env.get("WEIGHTD_HANDLE_SOCKET") == handle_socket


def test_metrics_port_is_exposed_and_scraped(documents):
    weightd = sidecar(pod_spec(documents))
    port = int(flag(weightd, "metrics-address").rsplit(":", 1)[1])
    assert port == METRICS_PORT
    named = {p["name"]: p["containerPort"] for p in weightd["ports"]}
    assert named.get("metrics") == port
    service = one(documents, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    monitor = one(documents, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The ServiceMonitor finds the Service, and the Service finds the pod.
    service_labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    pod_labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_containers_run_as_non_root_with_resource_requests(documents):
    spec = pod_spec(documents)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    for container in [sidecar(spec)] + spec["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context.get("runAsUser", 1) != 0, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
    # Both sides of the handle socket have one uid (SO_PEERCRED).
    uids = {c["securityContext"]["runAsUser"] for c in [sidecar(spec)] + spec["containers"]}
    assert len(uids) == 1


def test_alerts_cover_failures_memory_peaks_and_slow_loads(documents):
    rules = one(documents, "PrometheusRule")["spec"]["groups"][0]["rules"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "weightd_loads_total" in exprs["WeightdLoadFailures"]
    assert 'result="error"' in exprs["WeightdLoadFailures"]
    peak = exprs["WeightdDeviceMemoryPeakNearCapacity"]
    assert "weightd_device_memory_peak_bytes" in peak and "weightd_device_memory_capacity_bytes" in peak
    slow = exprs["WeightdSlowLoads"]
    assert "weightd_load_duration_seconds_bucket" in slow
    # The threshold is a bucket bound of the histogram, or the alert can never be exact.
    le = re.search(r'le="([0-9.]+)"', slow).group(1)
    assert float(le) in exported_histogram_bounds()["weightd_load_duration_seconds"]


# ---------------------------------------------------------------- what the daemon exports

METRICS_SOURCE = ROOT / "services" / "metrics" / "metrics.cc"


def exported_families():
    """Metric family names that services/metrics/metrics.cc registers."""
    text = METRICS_SOURCE.read_text()
    names = set(re.findall(r'\.Name\("(weightd_[a-z_]+)"\)', text))
    names |= set(re.findall(r'MetricFamily\s+\w+\{"(weightd_[a-z_]+)"', text))
    return names


def exported_histogram_bounds():
    text = METRICS_SOURCE.read_text()
    bounds = {}
    # Each family's builder runs from its .Name(...) to the next one.
    pieces = re.split(r'\.Name\("(weightd_[a-z_]+)"\)', text)
    for name, body in zip(pieces[1::2], pieces[2::2]):
        match = re.search(r"BucketBoundaries\{([^}]*)\}", body)
        if match:
            bounds[name] = {float(b) for b in match.group(1).split(",")}
    return bounds


def series_names(families):
    """Every name a query may use: histograms add _bucket, _count and _sum."""
    names = set(families)
    for h in exported_histogram_bounds():
        names |= {h + "_bucket", h + "_count", h + "_sum"}
    return names


def referenced_metrics(documents):
    rules = one(documents, "PrometheusRule")["spec"]["groups"][0]["rules"]
    names = set()
    for r in rules:
        names |= set(re.findall(r"\bweightd_[a-z_]+", r["expr"]))
    return names


def test_the_issue_metrics_are_all_registered():
    families = exported_families()
    for name in [
        "weightd_device_memory_used_bytes", "weightd_device_memory_peak_bytes",
        "weightd_device_memory_capacity_bytes", "weightd_load_device_memory_peak_bytes",
        "weightd_model_resident_bytes", "weightd_host_pinned_memory_used_bytes",
        "weightd_host_pinned_memory_peak_bytes", "weightd_received_bytes_total",
        "weightd_quantized_bytes_total", "weightd_loads_total", "weightd_errors_total",
        "weightd_load_duration_seconds", "weightd_load_throughput_bytes_per_second",
        "weightd_models", "weightd_active_leases", "weightd_build_info",
    ]:
        assert name in families, name


def test_alert_expressions_name_exported_metrics(documents):
    referenced = referenced_metrics(documents)
    assert referenced
    assert referenced <= series_names(exported_families()), referenced - series_names(exported_families())


WEIGHTD = ROOT / "build" / "bin" / "weightd"


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory):
    """/metrics of the real daemon on one host device, right after it is ready."""
    if not WEIGHTD.exists():
        pytest.skip("build/bin/weightd is not built (scripts/test builds it first)")
    run = tmp_path_factory.mktemp("weightd")
    daemon = subprocess.Popen(
        [str(WEIGHTD), f"--listen=unix:{run}/weightd.sock", f"--handle-socket={run}/handles.sock",
         "--metrics-address=127.0.0.1:0", "--backend=host", "--log-format=json"],
        stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.time() + 30
        while port is None and time.time() < deadline:
            line = daemon.stderr.readline()
            if not line:
                break
            match = re.search(r'"event":"ready".*?"metrics_port":(\d+)|"metrics_port":(\d+).*?"event":"ready"', line)
            if match:
                port = int(match.group(1) or match.group(2))
        assert port, "weightd did not log ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            yield response.read().decode()
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)


def test_alert_metrics_exist_in_a_live_scrape(live_metrics, documents):
    scraped = set(re.findall(r"^(weightd_[a-z_]+)", live_metrics, re.M))
    referenced = referenced_metrics(documents)
    assert referenced <= scraped, referenced - scraped
    assert 'weightd_build_info{cuda="' in live_metrics


def test_live_families_match_the_source(live_metrics):
    typed = set(re.findall(r"^# TYPE (weightd_[a-z_]+) ", live_metrics, re.M))
    assert typed <= exported_families(), typed - exported_families()


# ---------------------------------------------------------------- the image

def dockerfile_stages():
    """[(base image, stage name, [instructions])] of deploy/Dockerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), parts[0])
            stages.append((image, parts[2] if len(parts) > 2 else None, []))
        elif stages:
            stages[-1][2].append((word.upper(), rest))
    return stages, args


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages, args = dockerfile_stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build[1] == "build"
    # Built from source with the distribution's packages: scripts/setup runs in the build stage.
    runs = " ".join(rest for word, rest in build[2] if word == "RUN")
    assert "scripts/setup" in runs
    # The CUDA toolkit is installed into the build stage (nvcc), by default.
    assert args.get("CUDA") not in (None, "none")
    assert "cuda-nvcc-" in runs
    # The runtime stage carries only what the build stage produced.
    copies = [rest for word, rest in runtime[2] if word == "COPY"]
    assert any(c.startswith("--from=build ") for c in copies)
    users = [rest for word, rest in runtime[2] if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert runtime[2][-1][0] in ("CMD", "ENTRYPOINT") or any(w == "ENTRYPOINT" for w, _ in runtime[2])


def test_image_builds_with_nccl_and_ships_its_runtime():
    stages, args = dockerfile_stages()
    build, runtime = stages[0], stages[-1]
    runs = " ".join(rest for word, rest in build[2] if word == "RUN")
    # NCCL from NVIDIA's repository, pinned to a version built for the image's CUDA.
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+", args.get("NCCL", "")), args.get("NCCL")
    assert "libnccl-dev=${nccl}" in runs and 'nccl="${NCCL}+cuda' in runs
    # CMake would drop NCCL silently; the image's configure fails without it instead.
    assert "-DWEIGHTD_REQUIRE_NCCL=ON" in runs
    assert "WEIGHTD_REQUIRE_NCCL" in (ROOT / "CMakeLists.txt").read_text()
    # The runtime stage installs the libnccl2 the build stage downloaded.
    assert "apt-get download libnccl2=${nccl}" in runs
    copies = [rest for word, rest in runtime[2] if word == "COPY"]
    assert any(c.startswith("--from=build /debs/") for c in copies), copies
    assert any("dpkg -i /tmp/debs/" in rest for word, rest in runtime[2] if word == "RUN")


def test_image_user_matches_the_pod_security_context(documents):
    stages, _ = dockerfile_stages()
    user = [rest for word, rest in stages[-1][2] if word == "USER"][-1].split(":")[0]
    assert int(user) == pod_spec(documents)["securityContext"]["runAsUser"]


# ---------------------------------------------------------------- sizing

def memory_bytes(quantity):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()
    return int(number) * units.get(unit, 1)


def test_sidecar_sizes_itself_from_its_memory_limit(documents):
    """--host-memory-limit is auto (a quarter of the container's cgroup memory limit),
    and the container has a memory limit for it to read, so a push cannot grow weightd
    past its limit into the OOM killer."""
    weightd = sidecar(pod_spec(documents))
    assert flag(weightd, "host-memory-limit") in (None, "auto")
    limit = memory_bytes(weightd["resources"]["limits"]["memory"])
    assert limit >= memory_bytes(weightd["resources"]["requests"]["memory"])
    assert limit // 4 >= 1 << 30, "auto would leave pushes less than 1 GiB on the host"


def test_chart_host_memory_limit_is_a_value():
    weightd = sidecar(pod_spec(chart_documents({"hostMemoryLimit": "6GiB"})))
    assert flag(weightd, "host-memory-limit") == "6GiB"


# ---------------------------------------------------------------- peers (chart option)

PEERS_SECRET = "weightd-peer-tls"


def peers_values(**peers):
    return {"peers": {"enabled": True, "tls": {"secretName": PEERS_SECRET}, **peers}}


def services(docs):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}


def test_peers_are_off_by_default():
    docs = chart_documents()
    assert "weightd-peers" not in services(docs)
    weightd = sidecar(pod_spec(docs))
    assert not any(a.startswith(("--peer", "--tls-")) for a in weightd["args"]), weightd["args"]
    assert "peers" not in [p["name"] for p in weightd["ports"]]
    assert "peer-tls" not in [v["name"] for v in pod_spec(docs)["volumes"]]


def test_peers_headless_service_lists_every_daemon_pod():
    docs = chart_documents(peers_values())
    service = services(docs)["weightd-peers"]
    assert service["spec"]["clusterIP"] == "None"
    # A node still loading (not ready) can already relay what it holds.
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] and service["spec"]["selector"].items() <= pod_labels.items()
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [("peers", 7070, "peers")]
    # Not scraped: the ServiceMonitor selects the metrics Service only.
    monitor = one(docs, "ServiceMonitor")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_peers_flags_name_the_headless_service_over_mutual_tls():
    docs = chart_documents(peers_values(port=7171, serveBandwidth="1GiB", serveStreams=32))
    weightd = sidecar(pod_spec(docs))
    listen = flag(weightd, "listen").split(",")
    assert listen == ["unix:/run/weightd/weightd.sock", "0.0.0.0:7171"]
    assert flag(weightd, "peers") == "dns:///weightd-peers.inference.svc.cluster.local:7171"
    assert flag(weightd, "peer-tls-server-name") == "weightd-peers.inference.svc"
    assert flag(weightd, "peer-serve-bandwidth") == "1GiB"
    assert flag(weightd, "peer-serve-streams") == "32"
    assert {"name": "peers", "containerPort": 7171, "protocol": "TCP"} in weightd["ports"]
    assert services(docs)["weightd-peers"]["spec"]["ports"][0]["port"] == 7171
    # Server and client sides use the mounted secret's files.
    mount = [m for m in weightd["volumeMounts"] if m["name"] == "peer-tls"]
    assert len(mount) == 1
    tls = mount[0]["mountPath"]
    for server, client, key in [("tls-cert", "peer-tls-cert", "tls.crt"), ("tls-key", "peer-tls-key", "tls.key"),
                                ("tls-client-ca", "peer-tls-ca", "ca.crt")]:
        assert flag(weightd, server) == flag(weightd, client) == f"{tls}/{key}", key


def test_peers_defaults_and_overrides():
    weightd = sidecar(pod_spec(chart_documents(peers_values())))
    assert flag(weightd, "peer-serve-bandwidth") == "0"
    assert flag(weightd, "peer-serve-streams") == "64"
    # A bandwidth given as a number is printed whole, not as a float.
    weightd = sidecar(pod_spec(chart_documents(peers_values(serveBandwidth=1073741824))))
    assert flag(weightd, "peer-serve-bandwidth") == "1073741824"
    weightd = sidecar(pod_spec(chart_documents(peers_values(tls={"secretName": PEERS_SECRET, "serverName": "peers.example"}))))
    assert flag(weightd, "peer-tls-server-name") == "peers.example"


def test_peers_tls_secret_is_mounted_read_only_in_weightd_only():
    spec = pod_spec(chart_documents(peers_values()))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["peer-tls"]["secret"]["secretName"] == PEERS_SECRET
    mount = [m for m in sidecar(spec)["volumeMounts"] if m["name"] == "peer-tls"]
    assert len(mount) == 1 and mount[0]["readOnly"] is True
    for worker in spec["containers"]:
        assert "peer-tls" not in [m["name"] for m in worker["volumeMounts"]]


def test_peers_without_a_tls_secret_fail_to_render():
    with pytest.raises(helm_python.HelmRenderError, match=r"peers\.enabled requires peers\.tls\.secretName.*mutual TLS"):
        chart_documents({"peers": {"enabled": True}})


def test_peers_port_must_not_collide():
    with pytest.raises(helm_python.HelmRenderError, match=r"peers\.port must differ"):
        chart_documents(peers_values(port=METRICS_PORT))


@pytest.mark.parametrize("peers", [False, True])
@pytest.mark.parametrize("options", [
    {}, {"gpu": {"mode": "wholeNode"}}, {"gpu": {"mode": "none"}}, {"probes": {"mode": "exec"}},
    {"modelRoot": ""}, {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
    {"extraArgs": ["--log-level=debug"]},
], ids=["default", "wholeNode", "no-gpu", "exec-probes", "no-model-root", "no-monitoring", "extra-args"])
def test_chart_renders_with_every_option(options, peers):
    values = {**options, **(peers_values() if peers else {})}
    docs = chart_documents(values or None)
    weightd = sidecar(pod_spec(docs))
    assert ("weightd-peers" in services(docs)) == peers
    assert (flag(weightd, "peers") is not None) == peers
    if options.get("probes", {}).get("mode") == "exec":
        assert "exec" in weightd["readinessProbe"]
        # exec probes open no health port.
        assert "grpc-health" not in [p["name"] for p in weightd["ports"]]
