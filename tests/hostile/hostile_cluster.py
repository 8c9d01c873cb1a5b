"""What every hostile case works with: a real local cluster (frontend and replica processes) started
the way a user starts one, the probes the cases use (the management API, the query port over raw
sockets, the frontend's /proc entries), and the bystander, a normal client that keeps querying while a
case attacks and counts what it lost.

Attack traffic comes from other loopback source addresses (127.0.0.2 and up) to 127.0.0.1 only, so the
per-address caps single out the attacker and never the bystander (127.0.0.1); every loop is bounded in
count and time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import e2e_models
from e2e_support import start_cluster, wait_for

from clipper import ClipperConnection
from clipper.container import ReplicaCredentials
from clipper.deployers.python import deploy_python_closure
from clipper.management.auth import read_token
from clipper.management.endpoints import FrontendEndpoints, process_is_alive

SLO_MICROS = 20_000_000
BYSTANDER_APP = "bystander"
BYSTANDER_SLO_MICROS = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The query port's limits in the catalogue's cluster: short timeouts keep the timeout cases to
# seconds, and a per-address cap low enough for a flood from one address to reach it.
QUERY_PORT_LIMITS = {
    "header_timeout_millis": 2_000,
    "body_timeout_millis": 3_000,
    "idle_timeout_millis": 4_000,
    "max_connections_per_client_address": 256,
}


@dataclass
class LoadReport:
    """Queries a case sent itself while it did its damage (see `QueryLoad`)."""

    sent: int = 0
    answered: int = 0  # 200, by the deadline (the model's answer or the app's default)
    defaults: int = 0
    late: int = 0  # answered after the app's SLO plus slack
    lost: int = 0  # no HTTP answer, or an answer other than 200

    def describe(self) -> str:
        return (
            f"{self.sent} queries: {self.answered} answered in time ({self.defaults} defaults), "
            f"{self.late} late, {self.lost} lost"
        )


@dataclass
class Outcome:
    observed: str
    passed: bool
    load: LoadReport | None = None  # the case's own queries, when it sent some


@dataclass(frozen=True)
class Case:
    name: str
    expected: str
    run: Callable[[HostileCluster], Outcome]
    # The case stops and starts the frontend itself: queries lost meanwhile are the case's point,
    # so the bystander sits it out.
    restarts_frontend: bool = False


class HostileCluster:
    """A running local cluster, with the bystander's app deployed, and the probes the cases use."""

    def __init__(self, state_root: Path, name: str = "hostile") -> None:
        self.state_root = state_root
        self.conn: ClipperConnection = start_cluster(
            state_root, name, query_port_limits=QUERY_PORT_LIMITS
        )
        self.state_dir = Path(self.conn.cm.state_dir)
        self.conn.register_application(BYSTANDER_APP, "doubles", "-1.0", BYSTANDER_SLO_MICROS)
        deploy_python_closure(self.conn, "bystander-model", "1", "doubles", e2e_models.sum_of_each)
        self.conn.link_model_to_app(BYSTANDER_APP, "bystander-model")
        self.wait_until_answering(BYSTANDER_APP)

    def stop(self) -> None:
        self.conn.stop_all(clear_state=True)

    # ---- where things are ----------------------------------------------------------------------------

    @property
    def endpoints(self) -> FrontendEndpoints:
        endpoints = FrontendEndpoints.read(self.state_dir)
        assert endpoints is not None, "the frontend published no endpoints"
        return endpoints

    @property
    def management_port(self) -> int:
        return self.endpoints.management_port

    @property
    def query_port(self) -> int:
        return self.endpoints.query_port

    @property
    def pid(self) -> int:
        return self.endpoints.pid

    def replica_credentials(self) -> ReplicaCredentials:
        """The keys the cluster hands its replicas (CURVE on the RPC port)."""
        return ReplicaCredentials.from_file(self.state_dir / "replica_credentials.json")

    def log_text(self) -> str:
        return self.conn.cm.frontend_log_path.read_text(errors="replace")

    # ---- the management API ------------------------------------------------------------------------

    def token_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {read_token(self.state_dir)}"}

    def admin(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, object]:
        connection = http.client.HTTPConnection("127.0.0.1", self.management_port, timeout=10)
        try:
            data = None if body is None else json.dumps(body)
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            connection.close()

    # ---- the query port ------------------------------------------------------------------------------

    def query(
        self, app: str, body: object, timeout_s: float = 10.0, path: str = "predict"
    ) -> tuple[int, dict, float]:
        """POST to /<app>/<path> on a fresh connection; (status, decoded JSON, seconds)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.query_port, timeout=timeout_s)
        started = time.monotonic()
        try:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            connection.request("POST", f"/{app}/{path}", body=data)
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw), time.monotonic() - started
        finally:
            connection.close()

    def wait_until_answering(self, app: str, body: object = None, timeout_s: float = 30.0) -> None:
        """Until `app` gives a non-default answer (its replicas connected)."""
        body = body if body is not None else {"input": [1.0, 2.0]}

        def answered() -> bool:
            try:
                status, answer, _ = self.query(app, body, timeout_s=5)
            except OSError:
                return False
            return status == 200 and answer.get("default") is False

        wait_for(answered, timeout_s=timeout_s, what=f"a model's answer on {app}")

    # ---- the frontend process ------------------------------------------------------------------------

    def alive(self) -> bool:
        endpoints = FrontendEndpoints.read(self.state_dir)
        if endpoints is None or not process_is_alive(endpoints.pid, endpoints.process_start_ticks):
            return False
        try:
            return self.admin("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def rss_kib(self) -> int:
        return proc_status_field(self.pid, "VmRSS")

    def threads(self) -> int:
        return proc_status_field(self.pid, "Threads")

    def open_descriptors(self) -> int:
        return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields_after_name = stat.read().rsplit(")", 1)[1].split()
        return (int(fields_after_name[11]) + int(fields_after_name[12])) / CLK_TCK


def proc_status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def attacker_address(index: int, addresses: int = 40) -> str:
    """One of `addresses` loopback source addresses other than 127.0.0.1."""
    return f"127.0.0.{2 + index % addresses}"


def raw_exchange(
    port: int, data: bytes, source: str = "127.0.0.2", timeout_s: float = 10.0
) -> tuple[int | None, bytes | None, float]:
    """Send `data` on a fresh connection from `source` and read until the server closes (or the
    time runs out); returns (first status or None, everything after the first head, seconds)."""
    received, elapsed = raw_read_all(port, data, source, timeout_s)
    if not received:
        return None, None, elapsed
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, elapsed


def raw_read_all(
    port: int, data: bytes, source: str = "127.0.0.2", timeout_s: float = 10.0
) -> tuple[bytes, float]:
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout_s)
        sock.connect(("127.0.0.1", port))
        started = time.monotonic()
        if data:
            sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(1 << 20):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks), time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# ---- the bystander --------------------------------------------------------------------------------


@dataclass
class BystanderReport:
    sent: int = 0
    lost: int = 0  # no answer, or not a 200
    defaults: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def describe(self) -> str:
        if not self.latencies_ms:
            return f"{self.lost}/{self.sent}"
        return (
            f"{self.lost}/{self.sent} (median {statistics.median(self.latencies_ms):.1f} ms, "
            f"p99 {percentile(self.latencies_ms, 0.99):.1f} ms)"
        )


class Bystander:
    """A normal client on 127.0.0.1: one keep-alive connection, a query every `interval_s`, each
    answer checked. A query without a 200 answer is lost; no query is retried."""

    def __init__(self, cluster: HostileCluster, interval_s: float = 0.02) -> None:
        self.port = cluster.query_port
        self.interval_s = interval_s
        self.report = BystanderReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        body = json.dumps({"input": [1.0, 2.0]})
        while not self._stop.is_set():
            self.report.sent += 1
            started = time.monotonic()
            try:
                connection.request("POST", f"/{BYSTANDER_APP}/predict", body=body)
                response = connection.getresponse()
                answer = json.loads(response.read())
                if response.status != 200:
                    self.report.lost += 1
                else:
                    self.report.latencies_ms.append((time.monotonic() - started) * 1000)
                    self.report.defaults += bool(answer.get("default"))
            except (OSError, http.client.HTTPException, ValueError):
                self.report.lost += 1
                connection.close()  # the next query opens a new connection
            self._stop.wait(self.interval_s)
        connection.close()


# ---- a case's own queries -------------------------------------------------------------------------


class QueryLoad:
    """`clients` threads querying `app` back to back while a case does its damage; each query gets
    the app's SLO plus `slack_s` to answer (the answer may be the default)."""

    def __init__(
        self,
        cluster: HostileCluster,
        app: str,
        slo_s: float,
        clients: int = 4,
        slack_s: float = 1.0,
        body: object = None,
    ) -> None:
        self.cluster = cluster
        self.app = app
        self.deadline_s = slo_s + slack_s
        self.body = json.dumps(body if body is not None else {"input": [1.0, 2.0]})
        self.report = LoadReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> QueryLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.deadline_s + 30)

    def _run(self) -> None:
        port = self.cluster.query_port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self.deadline_s + 5)
        while not self._stop.is_set():
            started = time.monotonic()
            outcome = "lost"
            try:
                connection.request("POST", f"/{self.app}/predict", body=self.body)
                response = connection.getresponse()
                answer = json.loads(response.read())
                if response.status == 200:
                    late = time.monotonic() - started > self.deadline_s
                    outcome = "late" if late else ("default" if answer.get("default") else "ok")
            except (OSError, http.client.HTTPException, ValueError):
                connection.close()
            with self._lock:
                self.report.sent += 1
                if outcome in ("ok", "default"):
                    self.report.answered += 1
                    self.report.defaults += outcome == "default"
                elif outcome == "late":
                    self.report.late += 1
                else:
                    self.report.lost += 1
        connection.close()
