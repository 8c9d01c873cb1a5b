"""What a shared-memory replica costs per batch and per request under an open loop (issue 13).

One local cluster (bench/cluster.py), its W1 no-op replica served over shared memory, driven by
clipper-loadgen at a Poisson rate (default 20,000 req/s, W1 bodies, 64 connections, as
shm_transport.py's open loop). In separate windows of the same load:

  plain   the replica's CPU (sum over its threads of /proc/<pid>/task/*/schedstat, ns on CPU), its
          sleeps (voluntary context switches) and the batches the frontend sent it
          (clipper_replica_batches_total): CPU per batch and per request, requests per batch
  strace  `strace -c -f -p <replica>`: system calls per batch by name (strace slows the replica, so
          these are counts, not times)
  perf    `perf record -e cpu-clock -g` on the replica: where its CPU goes, top symbols (optional:
          --perf; software clock sampling, no hardware counters needed)

CPU figures are wall-clock-dependent: only a quiet machine gives figures of record. System-call
counts per batch are valid under load.

    python bench/replica_cost.py [--rate 20000] [--duration 5] [--perf] [--output FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cluster
import common
import w1
from shm_transport import voluntary_switches

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=20_000, help="offered req/s (default 20000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--connections", type=int, default=64, help="open-loop connections")
    parser.add_argument("--slo-micros", type=int, default=100_000, help="the W1 app's SLO")
    parser.add_argument("--transport", choices=("auto", "zmq"), default="auto")
    parser.add_argument("--no-strace", action="store_true", help="skip the strace window")
    parser.add_argument("--perf", action="store_true", help="add a perf record window")
    parser.add_argument("--loadgen", default=None, help="clipper-loadgen binary")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "replica_cost.json")
    return parser.parse_args(argv)


def thread_cpu_nanos(pid: int) -> int:
    """Nanoseconds on CPU so far, summed over the threads of `pid` (schedstat's first field)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with (
            contextlib.suppress(FileNotFoundError, ProcessLookupError),
            open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat,
        ):
            total += int(stat.read().split()[0])
    return total


def replica_batches(metrics_url: str) -> float:
    metrics = cluster.fetch_metrics(metrics_url)
    return sum(v for k, v in metrics.items() if k.startswith("clipper_replica_batches_total"))


class Load:
    """clipper-loadgen running in the background for the warm-up plus one window."""

    def __init__(self, loadgen: str, url: str, args: argparse.Namespace) -> None:
        self.command = common.loadgen_command(
            loadgen,
            url,
            connections=args.connections,
            duration_seconds=args.duration,
            warmup_seconds=args.warmup,
            rate_per_second=args.rate,
            workload="w1",
        )
        self.args = args

    def __enter__(self) -> Load:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(self.args.warmup)
        return self

    def __exit__(self, *exc: object) -> None:
        out, err = self.process.communicate(timeout=self.args.duration + 30)
        if self.process.returncode != 0:
            raise RuntimeError(f"clipper-loadgen failed: {err.strip()}")
        self.report = json.loads(out)


def plain_window(loadgen: str, started: Any, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    with Load(loadgen, started.url(w1.NO_OP_APP), args) as load:
        cpu0, sleeps0 = thread_cpu_nanos(pid), voluntary_switches(pid)
        batches0, when0 = replica_batches(started.metrics_url), time.monotonic()
        time.sleep(args.duration - 0.2)
        cpu1, sleeps1 = thread_cpu_nanos(pid), voluntary_switches(pid)
        batches1, when1 = replica_batches(started.metrics_url), time.monotonic()
    elapsed = when1 - when0
    throughput = load.report.get("throughput_rps") or 0.0
    requests = throughput * elapsed
    batches = batches1 - batches0
    cpu_us = (cpu1 - cpu0) / 1e3
    return {
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": throughput,
        "errors": load.report.get("errors"),
        "replica_cores": round(cpu_us / 1e6 / elapsed, 4),
        "batches_per_s": round(batches / elapsed, 1),
        "requests_per_batch": round(requests / batches, 3) if batches else None,
        "replica_cpu_us_per_request": round(cpu_us / requests, 3) if requests else None,
        "replica_cpu_us_per_batch": round(cpu_us / batches, 3) if batches else None,
        "replica_sleeps_per_batch": round((sleeps1 - sleeps0) / batches, 3) if batches else None,
    }


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def strace_window(loadgen: str, started: Any, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    with Load(loadgen, started.url(w1.NO_OP_APP), args):
        batches0 = replica_batches(started.metrics_url)
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(args.duration - 0.5)
        tracer.send_signal(2)  # SIGINT: strace detaches and prints its table
        _, table = tracer.communicate(timeout=30)
        batches = replica_batches(started.metrics_url) - batches0
    calls = {}
    for line in table.splitlines():
        match = _STRACE_ROW.match(line)
        if match and match.group(3) != "total":
            calls[match.group(3)] = int(match.group(1))
    total = sum(calls.values())
    return {
        "batches": batches,
        "calls_per_batch": round(total / batches, 3) if batches else None,
        "by_name_per_batch": {
            name: round(count / batches, 3)
            for name, count in sorted(calls.items(), key=lambda item: -item[1])
        }
        if batches
        else None,
    }


def perf_window(loadgen: str, started: Any, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    data = args.output.with_suffix(".perf.data")
    with Load(loadgen, started.url(w1.NO_OP_APP), args):
        subprocess.run(
            [
                "perf",
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-g",
                "-o",
                str(data),
                "-p",
                str(pid),
                "--",
                "sleep",
                str(args.duration - 0.5),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def report(sort: str, limit: str) -> list[str]:
        text = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(data),
                "--no-children",
                "--sort",
                sort,
                "--stdio",
                "--percent-limit",
                limit,
                "-g",
                "none",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
        ]

    result = {"by_dso": report("dso", "0.5"), "top_symbols": report("dso,sym", "0.7")[:50]}
    data.unlink(missing_ok=True)
    return result


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loadgen = common.find_loadgen(args.loadgen)
    from clipper.deployers.python import deploy_python_closure

    with contextlib.ExitStack() as stack:
        started = cluster.start_local_cluster(
            stack, "replica-cost", cache_size_bytes=None, replica_transport=args.transport
        )
        connection = started.connection
        connection.register_application(w1.NO_OP_APP, "doubles", "-1.0", args.slo_micros)
        deploy_python_closure(
            connection, w1.NO_OP_MODEL, "1", "doubles", lambda xs: ["0"] * len(xs)
        )
        connection.link_model_to_app(w1.NO_OP_APP, w1.NO_OP_MODEL)
        cluster.wait_for_model_answer(
            started.url(w1.NO_OP_APP), lambda i: {"input": [float(i)] * 10}
        )
        replicas = connection.get_all_model_replicas(verbose=True)
        (pid,) = started.replica_pids()
        result: dict[str, Any] = {
            "revision": cluster.source_revision(),
            "rate": args.rate,
            "duration_s": args.duration,
            "transport": sorted({replica["transport"] for replica in replicas}),
            "load_average": os.getloadavg(),
            "plain": plain_window(loadgen, started, pid, args),
        }
        if not args.no_strace:
            result["strace"] = strace_window(loadgen, started, pid, args)
        if args.perf:
            result["perf"] = perf_window(loadgen, started, pid, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
