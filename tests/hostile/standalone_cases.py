"""The standalone `clipper-frontend` binary under attack: the parser and slow-client cases of the query
port, each against a binary of its own (configured by file, one real replica connected over ZeroMQ)
while a load of normal queries runs against that binary. Each row says whether the binary stayed up,
its RSS before and after, and what the load lost (the table's own columns are the cluster's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from e2e_support import free_ports, wait_for
from hostile_cluster import (
    BYSTANDER_APP,
    BYSTANDER_SLO_MICROS,
    QUERY_PORT_LIMITS,
    Case,
    Outcome,
    QueryLoad,
    proc_status_field,
    raw_exchange,
)
from query_port_cases import (
    chunked_flood,
    headers_never_finished,
    invalid_utf8_answers,
    nesting_bombs,
    post_request,
)

from clipper_native import frontend_binary

STRINGS_APP = "strings-app"

MODEL_SOURCE = """\
from clipper.container import Model


class SumOfEach(Model):
    def predict_batch(self, inputs):
        return [float(row.sum()) for row in inputs]
"""


class StandaloneFrontend:
    """`clipper-frontend` started the way an operator starts it (flags and a configuration file, the
    catalogue's query-port limits), with the bystander's app served by one replica process. Stops both
    on exit; the attack cases only need `query_port` (the load and the raw exchanges use it)."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="clipper-standalone-")
        self.directory = Path(self._directory.name)
        self.query_port, self.rpc_port, self.metrics_port = free_ports(3)
        self.process: subprocess.Popen | None = None
        self.replica: subprocess.Popen | None = None

    def __enter__(self) -> StandaloneFrontend:
        config = {
            "apps": [
                {"name": BYSTANDER_APP, "input_type": "doubles", "default_output": "-1.0",
                 "slo_micros": BYSTANDER_SLO_MICROS, "linked_models": ["summer"]},
                {"name": STRINGS_APP, "input_type": "strings", "default_output": "none",
                 "slo_micros": BYSTANDER_SLO_MICROS, "linked_models": []},
            ],
            "models": [{"name": "summer", "version": "1", "input_type": "doubles", "current": True}],
        }  # fmt: skip
        (self.directory / "config.json").write_text(json.dumps(config))
        (self.directory / "summer_model.py").write_text(MODEL_SOURCE)
        limits = [
            f"--{name.replace('_', '-')}={value}" for name, value in QUERY_PORT_LIMITS.items()
        ]
        try:
            self.process = subprocess.Popen(
                [str(frontend_binary()), f"--query-port={self.query_port}",
                 f"--rpc-port={self.rpc_port}", f"--metrics-port={self.metrics_port}",
                 f"--config={self.directory / 'config.json'}", *limits],
                stdout=subprocess.DEVNULL, stderr=(self.directory / "frontend.log").open("w"),
            )  # fmt: skip
            self.replica = subprocess.Popen(
                [sys.executable, "-m", "clipper.container.cli", "--model", "summer_model:SumOfEach",
                 "--name", "summer", "--version", "1", "--input-type", "doubles",
                 "--frontend", f"tcp://127.0.0.1:{self.rpc_port}"],
                cwd=self.directory, env={**os.environ, "PYTHONPATH": str(self.directory)},
                stdout=subprocess.DEVNULL, stderr=(self.directory / "replica.log").open("w"),
            )  # fmt: skip
            wait_for(self._model_answers, timeout_s=60, what="the standalone binary's model")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in (self.replica, self.process):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self._directory.cleanup()

    def _model_answers(self) -> bool:
        try:
            status, body, _ = raw_exchange(
                self.query_port, post_request(f"/{BYSTANDER_APP}/predict", b'{"input": [1.0, 2.0]}'),
                source="127.0.0.1", timeout_s=5,
            )  # fmt: skip
        except OSError:
            return False
        return status == 200 and json.loads(body or b"{}").get("default") is False

    def alive(self) -> bool:
        """The process runs and its model still answers."""
        return self.process is not None and self.process.poll() is None and self._model_answers()

    def rss_kib(self) -> int:
        assert self.process is not None
        return proc_status_field(self.process.pid, "VmRSS")


def _against_standalone(attack: Callable[[StandaloneFrontend], Outcome]) -> Outcome:
    """Run `attack` against a fresh binary while 4 clients query it; pass when the attack's check
    holds, the binary is alive and answering after it, and no query was lost or late."""
    with StandaloneFrontend() as frontend:
        rss_before = frontend.rss_kib()
        slo_s = BYSTANDER_SLO_MICROS / 1_000_000
        with QueryLoad(frontend, BYSTANDER_APP, slo_s) as load:
            time.sleep(0.2)
            outcome = attack(frontend)
        alive = frontend.alive()
        rss_after = frontend.rss_kib() if alive else 0
    report = load.report
    return Outcome(
        f"{outcome.observed}; binary alive: {'yes' if alive else 'NO'}, RSS "
        f"{rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB; load: {report.describe()}",
        outcome.passed and alive and report.sent > 0 and report.lost == 0 and report.late == 0,
        report,
    )


def huge_bodies(frontend: StandaloneFrontend) -> Outcome:
    head = f"POST /{BYSTANDER_APP}/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
    announced, _, _ = raw_exchange(frontend.query_port, head.encode(), timeout_s=5)
    chunked = chunked_flood(frontend.query_port, 100 * 1024 * 1024)
    return Outcome(
        f"10 MB announced: {announced}; 100 MB chunked: {chunked}", announced == chunked == 413
    )


CASES = [
    Case(
        "standalone binary: nesting bombs",
        "400 naming the depth on /predict and /update; binary up, 0 lost",
        lambda _cluster: _against_standalone(nesting_bombs),
    ),
    Case(
        "standalone binary: headers never finished (slowloris)",
        f"408 after {QUERY_PORT_LIMITS['header_timeout_millis'] / 1000:.0f} s; binary up, 0 lost",
        lambda _cluster: _against_standalone(headers_never_finished),
    ),
    Case(
        "standalone binary: huge bodies",
        "413 for 10 MB announced and 100 MB chunked; binary up, 0 lost",
        lambda _cluster: _against_standalone(huge_bodies),
    ),
    Case(
        "standalone binary: invalid UTF-8",
        "400 for raw bytes in a target, as valid JSON; 400 for a strings input; binary up, 0 lost",
        lambda _cluster: _against_standalone(
            lambda frontend: invalid_utf8_answers(frontend.query_port, STRINGS_APP)
        ),
    ),
]
