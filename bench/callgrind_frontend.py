"""The standalone clipper-frontend under callgrind, with one local replica: what the cost studies
(bench/refusal_cost.py, bench/request_cost.py) share.

Owns: choosing the frontend binaries to compare (LABEL=PATH), starting one under valgrind's callgrind
with instrumentation off and a config file of apps and models, starting a Python replica of a model
given as source, switching instrumentation on for a measured window (callgrind_control) and adding up
the instructions (and system calls) the dumps recorded. Instruction counts are deterministic: other
processes on a shared machine do not change them, unlike wall-clock figures.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import common


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


@dataclass
class DumpTotals:
    """What the callgrind dumps under one prefix recorded, summed over the dumps."""

    instructions: int = 0
    system_calls: int = 0  # only with --collect-systime (the `sysCount` event)
    # clock_gettime is a vDSO call natively (no kernel entry), a system call only under valgrind.
    clock_gettime_calls: int = 0

    @property
    def kernel_calls(self) -> int:
        """System calls that enter the kernel natively too."""
        return self.system_calls - self.clock_gettime_calls


def dump_totals(dump_prefix: Path) -> DumpTotals:
    """Sums the `totals:` (or `summary:`) line of every callgrind dump written under the prefix."""
    totals = DumpTotals()
    for dump in dump_prefix.parent.glob(dump_prefix.name + "*"):
        events: list[str] = []
        values: dict[str, int] = {}
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("totals:", "summary:")):
                values = dict(zip(events or ["Ir"], map(int, line.split()[1:]), strict=False))
                break
        totals.instructions += values.get("Ir", 0)
        totals.system_calls += values.get("sysCount", 0)
        if values.get("sysCount"):
            totals.clock_gettime_calls += _self_system_calls(dump, "clock_gettime")
    return totals


def _self_system_calls(dump: Path, function: str) -> int:
    """System calls made by `function` itself in one dump, read from callgrind_annotate's table."""
    table = subprocess.run(
        ["callgrind_annotate", "--sort=sysCount", "--threshold=100", str(dump)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    calls = 0
    for line in table.splitlines():
        if f":{function}" in line:
            # "   833,224 ( 0.17%) 83,322 (60.48%) ...": the second count is sysCount.
            counts = re.findall(r"([\d,]+) \(", line)
            if len(counts) >= 2:
                calls += int(counts[1].replace(",", ""))
    return calls


def metric_value(metrics_text: str, name: str) -> float:
    """Sum of every sample of `name` (any labels) in a Prometheus text page."""
    total = 0.0
    for match in re.finditer(
        rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", metrics_text, re.MULTILINE
    ):
        total += float(match.group(1))
    return total


class Frontend:
    """A standalone clipper-frontend under callgrind (instrumentation off until `window`)."""

    def __init__(self, binary: str, work: Path, config: dict[str, Any], extra_args: list[str],
                 collect_systime: bool = False) -> None:  # fmt: skip
        self.work = work
        self.query_port, self.rpc_port, self.metrics_port = common.free_ports(3)
        self.base = f"http://127.0.0.1:{self.query_port}"
        self.dump_prefix = work / "callgrind.out"
        (work / "config.json").write_text(json.dumps(config))
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={self.dump_prefix}.%p"]  # fmt: skip
        if collect_systime:
            valgrind.append("--collect-systime=yes")
        self.process = subprocess.Popen(
            [*valgrind, binary,
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

    def window(self, run: Callable[[], Any]) -> tuple[Any, DumpTotals]:
        """Runs `run()` with instrumentation on; returns its result and what the window cost."""
        subprocess.run(["callgrind_control", "-i", "on", str(self.pid)],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        result = run()
        subprocess.run(["callgrind_control", "-d", str(self.pid)],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        subprocess.run(["callgrind_control", "-i", "off", str(self.pid)],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        time.sleep(1.0)
        return result, dump_totals(self.dump_prefix)

    def keep_dumps(self, destination: Path) -> list[str]:
        """Copies the window's dumps (for callgrind_annotate) to `destination`; returns their paths."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        for dump in sorted(self.dump_prefix.parent.glob(self.dump_prefix.name + "*")):
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
