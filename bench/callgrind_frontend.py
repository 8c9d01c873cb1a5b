"""The standalone clipper-frontend under callgrind, with one local replica, measured over one window:
what the cost studies (bench/refusal_cost.py, bench/request_cost.py) share.

Owns the start-up side: choosing the frontend binaries to compare (--frontend LABEL=PATH), starting
one under callgrind with a config file of apps and models, starting a Python replica of a model given
as source, waiting for them, reading the frontend's metrics, and keeping a window's dumps for
callgrind_annotate. The callgrind side (command prefix, window control, reading dumps) is
bench/callgrind.py's. Instruction counts are deterministic: other processes on a shared machine do
not change them, unlike wall-clock figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import callgrind
import common


def add_frontend_argument(parser: argparse.ArgumentParser) -> None:
    """--frontend LABEL=PATH (repeatable), read by `binaries`."""
    parser.add_argument(
        "--frontend",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a clipper-frontend binary to measure (repeatable; default: the installed one)",
    )


def binaries(specs: list[str]) -> list[tuple[str, str]]:
    """(label, path) of each --frontend LABEL=PATH; by default the installed clipper-frontend."""
    if not specs:
        from clipper_native import frontend_binary

        return [("installed", str(frontend_binary()))]
    pairs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--frontend wants LABEL=PATH of an existing binary, got {spec!r}")
        pairs.append((label, path))
    return pairs


def get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def metric_value(metrics_text: str, name: str) -> float:
    """Sum of every sample of `name` (any labels) in a Prometheus text page."""
    total = 0.0
    for match in re.finditer(
        rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", metrics_text, re.MULTILINE
    ):
        total += float(match.group(1))
    return total


# The frontend's dumps: <work>/callgrind.out.<pid>.<n>.
DUMP_LABEL = "callgrind.out"


class Frontend:
    """A standalone clipper-frontend under callgrind (instrumentation off until `window`)."""

    def __init__(self, binary: str, work: Path, config: dict[str, Any], extra_args: list[str],
                 collect_systime: bool = False) -> None:  # fmt: skip
        self.work = work
        self.query_port, self.rpc_port, self.metrics_port = common.free_ports(3)
        self.base = f"http://127.0.0.1:{self.query_port}"
        (work / "config.json").write_text(json.dumps(config))
        self.windows = 0
        self.process = subprocess.Popen(
            [*callgrind.command_prefix(work, DUMP_LABEL, collect_systime), binary,
             "--query-port", str(self.query_port), "--rpc-port", str(self.rpc_port),
             "--metrics-port", str(self.metrics_port), "--config", str(work / "config.json"),
             *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.replicas: list[subprocess.Popen] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        wait(lambda: get(self.base + "/readyz")[0] == 200, 120, "the frontend under valgrind")

    def start_replica(self, module_source: str, model_class: str, name: str, input_type: str,
                      transport: str = "auto") -> None:  # fmt: skip
        """A replica of `model_class` (defined in `module_source`) on this frontend's RPC port."""
        module = f"{name.replace('-', '_')}_model"
        (self.work / f"{module}.py").write_text(module_source)
        self.replicas.append(subprocess.Popen(
            [sys.executable, "-m", "clipper.container.cli", "--model", f"{module}:{model_class}",
             "--name", name, "--version", "1", "--input-type", input_type,
             "--frontend", f"tcp://127.0.0.1:{self.rpc_port}", "--transport", transport],
            cwd=self.work, env={**os.environ, "PYTHONPATH": str(self.work)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip

    def metrics(self) -> str:
        return get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]

    def build_info(self) -> str | None:
        found = re.search(r"clipper_build_info\{([^}]*)\}", self.metrics())
        return found.group(1) if found else None

    def window(self, run: Callable[[], Any]) -> tuple[Any, callgrind.DumpTotals]:
        """Runs `run()` with instrumentation on; returns its result and what the window cost.

        Once per frontend: the first dump after instrumentation is first switched on is sound, a
        dump after switching it off and on again is not (bench/callgrind.py)."""
        if self.windows:
            raise RuntimeError("one window per frontend under callgrind")
        self.windows += 1
        callgrind.instrument([self.pid], True)
        result, _ = callgrind.window([self.pid], run)
        callgrind.instrument([self.pid], False)
        time.sleep(1.0)
        return result, callgrind.dump_totals(self.work, DUMP_LABEL)

    def keep_dumps(self, destination: Path) -> list[str]:
        """Copies the window's dumps (for callgrind_annotate) to `destination`; returns their paths."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        for dump in callgrind.dump_files(self.work, DUMP_LABEL):
            if dump.stat().st_size == 0 or "totals:" not in dump.read_text(errors="replace"):
                continue
            target = destination.with_name(f"{destination.name}.{len(kept)}")
            shutil.copyfile(dump, target)
            kept.append(str(target))
        return kept

    def stop(self) -> None:
        for replica in self.replicas:
            replica.kill()
            replica.wait(timeout=10)
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def frontend_under_callgrind(binary: str, config: dict[str, Any], extra_args: list[str],
                             collect_systime: bool = False, prefix: str = "clipper-callgrind-"
                             ) -> Iterator[Frontend]:  # fmt: skip
    """A Frontend in a scratch directory, stopped (with its replicas) and cleaned up on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        frontend = Frontend(binary, Path(scratch), config, extra_args, collect_systime)
        try:
            frontend.wait_ready()
            yield frontend
        finally:
            frontend.stop()
