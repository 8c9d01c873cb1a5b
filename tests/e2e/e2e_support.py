"""Helpers of the end-to-end tests: free ports, starting a cluster as a user would, raw HTTP queries."""

import http.client
import json
import os
import socket
import subprocess
import time

import clipper_native
from clipper import ClipperConnection, LocalContainerManager


def free_ports(count):
    """`count` distinct ports that were free a moment ago (held open together so none repeats)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def start_cluster(state_root, name, start_options=None, **manager_options):
    """A local cluster on free ports; `start_options` go to start_clipper (e.g. cache_size)."""
    query, management, rpc, metrics = free_ports(4)
    options = {
        "cluster_name": name,
        "clipper_query_port": query,
        "clipper_management_port": management,
        "clipper_rpc_port": rpc,
        "prometheus_port": metrics,
        "state_dir": state_root / name,
        "heartbeat_timeout_millis": 1000,
        "startup_timeout_s": 60,
        **manager_options,
    }
    conn = ClipperConnection(LocalContainerManager(**options), replica_start_timeout_s=60)
    conn.start_clipper(**(start_options or {}))
    return conn


def post(query_addr, path, body, timeout_s=30.0, headers=None):
    """POST `body` (bytes, or JSON-encoded otherwise); returns (status, decoded JSON, seconds)."""
    host, port = query_addr.rsplit(":", 1)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    started = time.monotonic()
    try:
        connection.request(
            "POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.monotonic() - started
        assert response.getheader("Content-Type", "").startswith("application/json"), raw[:200]
        return response.status, json.loads(raw), elapsed
    finally:
        connection.close()


def predict(conn, app, body, timeout_s=30.0):
    return post(conn.get_query_addr(), f"/{app}/predict", body, timeout_s)


def wait_for(predicate, timeout_s=15.0, interval_s=0.05, what="the condition"):
    """Poll `predicate` until it returns a truthy value (returned), failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(interval_s)


def model_answer(conn, app, body, timeout_s=15.0):
    """The first answer of `app` to `body` that is not the default (polling while replicas connect)."""

    def answered():
        status, answer, _ = predict(conn, app, body)
        return answer if status == 200 and not answer["default"] else None

    return wait_for(answered, timeout_s, what=f"a model answer from '{app}'")


def loadgen():
    """The clipper-loadgen binary installed with the package."""
    for base in clipper_native.__path__:
        candidate = os.path.join(base, "bin", "clipper-loadgen")
        if os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(
        "clipper-loadgen is not installed with clipper_native (pip install builds it)"
    )


def open_loop(url, rate, seconds, connections=512, slo_us=None):
    """clipper-loadgen in open loop (Poisson arrivals of W1 queries, each input new) at `rate` per
    second for `seconds` after a 0.5 s warmup; returns the process (its report: `report_of`, with
    answers_within_slo when `slo_us` is given)."""
    command = [
        loadgen(),
        "--url",
        url,
        "--w1",
        "--rate",
        str(rate),
        "--arrivals",
        "poisson",
        "--connections",
        str(connections),
        "--warmup",
        "0.5",
        "--duration",
        str(seconds),
        "--drain",
        "3",
    ]
    if slo_us is not None:
        command += ["--slo-us", str(slo_us)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def report_of(process):
    """The load generator's JSON report, once it exits (printed in short for the test's log)."""
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    report = json.loads(out)
    print(
        json.dumps({k: report[k] for k in ("requests", "status", "default_answers", "latency_us")})
    )
    return report
