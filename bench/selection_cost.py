"""Where the selection layer's overhead goes, in instructions per answered query (callgrind), not
time: a shared machine's noise does not reach the figure.

The standalone clipper-frontend and every model replica run under callgrind, instrumentation off
until the measured windows. One frontend serves three apps over no-op Python models (the W1 workload:
10 doubles, each vector new, so the cache never answers):
  - `single`: one model, one replica (Clipper's default; the reference);
  - `exp3`: two models, one replica each, one drawn per query by weight (the `sample` plan exp3
    publishes; here the app's default weights, 0.5 each, as for a user without feedback);
  - `split`: one model served by two replicas: the same halving of batches as `exp3`, without any
    selection. The gap exp3 - split is what selection itself costs; split - single what splitting
    the queries over two replica processes costs.
clipper-loadgen drives each app in turn for a window; instructions are summed over the frontend and
all four replicas, less what each process spends idle (heartbeats, liveness checks, timers: measured
in an idle window first and subtracted by each window's length, since valgrind's slow rates would
make them look large per query), with the batches each window sent (from /metrics) beside them.
The batch sizes, and so the per-batch share of the figures, follow valgrind's timing, not the real
one: compare binaries and apps within one run and read the batch size beside each figure.

Each frontend binary given (label=path; by default the installed one) runs once. Give the binary built
before a change to compare:

    python bench/selection_cost.py --frontend before=/path/to/old/clipper-frontend --frontend after=...
    python bench/selection_cost.py --seconds 5 --transport zmq

About 1.5-2 min per binary (valgrind start-up of five processes, three windows).
Owns bench/results/selection_cost.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import callgrind
import callgrind_frontend
import common

APPS = ("single", "exp3", "split")
# model -> replicas
MODELS = {"noop_a": 1, "noop_b": 1, "noop_c": 2}
MODEL_SOURCE = """
from clipper.container import Model

class Noop(Model):
    def predict_batch(self, inputs):
        return ["0"] * len(inputs)
"""
CONFIG = {
    "apps": [
        {"name": "single", "input_type": "doubles", "default_output": "-1", "slo_micros": 1_000_000,
         "linked_models": ["noop_a"]},
        {"name": "exp3", "input_type": "doubles", "default_output": "-1", "slo_micros": 1_000_000,
         "linked_models": ["noop_a", "noop_b"],
         "selection": {"mode": "sample", "weights": {"noop_a": 0.5, "noop_b": 0.5}}},
        {"name": "split", "input_type": "doubles", "default_output": "-1", "slo_micros": 1_000_000,
         "linked_models": ["noop_c"]},
    ],
    "models": [{"name": name, "version": "1", "input_type": "doubles", "current": True} for name in MODELS],
}  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    callgrind_frontend.add_frontend_argument(parser)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per app")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--transport", choices=("auto", "zmq"), default="auto")
    parser.add_argument(
        "--wall", action="store_true",
        help="no callgrind: rates, CPU time and context switches per query, binaries interleaved",
    )  # fmt: skip
    parser.add_argument("--pairs", type=int, default=3, help="--wall: rounds of windows")
    parser.add_argument("--dumps", help="keep the callgrind dumps in this folder (default: a temporary one)")
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "selection_cost.json")
    return parser.parse_args(argv)


def _metrics(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def batches_by_model(text: str) -> dict[str, int]:
    """clipper_model_batches_total per model name."""
    counts: dict[str, int] = {}
    for match in re.finditer(r'^clipper_model_batches_total\{([^}]*)\} (\S+)$', text, re.MULTILINE):
        name = re.search(r'model="([^"]*)"', match.group(1))
        if name:
            counts[name.group(1)] = counts.get(name.group(1), 0) + int(float(match.group(2)))
    return counts


def dump_label(process: str) -> str:
    return "frontend" if process == "frontend" else "replica-" + process.replace("/", "-")


def process_costs(pids: list[int]) -> tuple[float, int]:
    """User + system CPU seconds and context switches (every thread) the processes had so far."""
    seconds = sum(common.process_cpu_seconds(pid) or 0.0 for pid in pids)
    switches = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if "ctxt_switches:" in line:
                        switches += int(line.split()[1])
    return seconds, switches


class Cluster:
    """One standalone frontend and the four replicas, under callgrind or not, on free ports."""

    def __init__(self, stack: contextlib.ExitStack, binary: str, args: argparse.Namespace, under_callgrind: bool):
        self.work = Path(args.dumps) if args.dumps else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="clipper-selection-cost-")))
        self.work.mkdir(parents=True, exist_ok=True)
        work = self.work
        (work / "config.json").write_text(json.dumps(CONFIG))
        (work / "bench_noop.py").write_text(MODEL_SOURCE)
        query_port, rpc_port, metrics_port = common.free_ports(3)
        self.processes: dict[str, subprocess.Popen] = {}
        stack.callback(self.stop)

        def prefix(name: str) -> list[str]:
            return callgrind.command_prefix(work, dump_label(name)) if under_callgrind else []

        self.processes["frontend"] = subprocess.Popen(
            [*prefix("frontend"), binary,
             "--query-port", str(query_port), "--rpc-port", str(rpc_port),
             "--metrics-port", str(metrics_port), "--config", str(work / "config.json"),
             "--replica-transport", args.transport],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{query_port}"
        callgrind_frontend.wait(lambda: common.post_json(self.base + "/healthz", None)[0] in (200, 405), 120, "the frontend")
        environment = {**os.environ, "PYTHONPATH": str(work)}
        for model, replicas in MODELS.items():
            for replica in range(replicas):
                self.processes[f"{model}/{replica}"] = subprocess.Popen(
                    [*prefix(f"{model}/{replica}"), sys.executable,
                     "-m", "clipper.container.cli", "--model", "bench_noop:Noop", "--name", model,
                     "--version", "1", "--input-type", "doubles", "--transport", args.transport,
                     "--frontend", f"tcp://127.0.0.1:{rpc_port}", "--log-level", "WARNING"],
                    cwd=work, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.pids = {name: process.pid for name, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def wait_ready(self) -> None:
        def connected() -> bool:
            text = _metrics(self.metrics_url)
            counts = {
                name: int(float(value))
                for name, value in re.findall(
                    r'^clipper_model_connected_replicas\{[^}]*model="([^"]*)"[^}]*\} (\S+)$', text, re.MULTILINE
                )
            }  # fmt: skip
            return all(counts.get(model, 0) >= replicas for model, replicas in MODELS.items())

        callgrind_frontend.wait(connected, 300, "every replica to connect")
        counter = iter(range(10**9))
        for app in APPS:

            def answered(app: str = app) -> bool:
                status, body = common.post_json(f"{self.base}/{app}/predict", {"input": [0.5, float(next(counter))]}, 30.0)
                return status == 200 and isinstance(body, dict) and body.get("default") is False

            callgrind_frontend.wait(answered, 120, f"a model's answer on {app}")

    def build(self) -> str | None:
        build = re.search(r"clipper_build_info\{([^}]*)\}", _metrics(self.metrics_url))
        return build.group(1) if build else None

    def load(self, app: str, args: argparse.Namespace, loadgen: str, warmup: float) -> common.LoadgenRun:
        return common.run_loadgen(
            common.loadgen_command(
                loadgen, f"{self.base}/{app}/predict", connections=args.connections,
                duration_seconds=args.seconds, warmup_seconds=warmup, workload="w1",
                extra_args=["--drain", "5"],
            ),
            timeout_seconds=args.seconds + 120,
        )  # fmt: skip


def window_row(app: str, report: dict, batches: dict[str, int]) -> dict[str, Any]:
    answered = (report.get("requests") or 0) + (report.get("warmup_requests") or 0)
    sent = sum(batches.values())
    return {
        "app": app,
        "answered": answered,
        "throughput_rps": report.get("throughput_rps"),
        "status": report["status"],
        "batches": batches,
        "queries_per_batch": round(answered / sent, 2) if sent else None,
    }


def one_binary(label: str, binary: str, args: argparse.Namespace, loadgen: str) -> dict[str, Any]:
    """Instructions per query of each app, the frontend and its replicas under callgrind."""
    with contextlib.ExitStack() as stack:
        cluster = Cluster(stack, binary, args, under_callgrind=True)
        cluster.wait_ready()
        build = cluster.build()
        pids = cluster.pids
        work = cluster.work
        metrics_url = cluster.metrics_url
        windows = []
        # Instrumentation stays on from here: switching it off between windows corrupts the next
        # dump's summary (callgrind 3.19 reports it negative), so each window zeroes, then dumps.
        callgrind.instrument(list(pids.values()), True)
        # An idle window first: what every process spends per second without queries (heartbeats,
        # liveness checks, timers; slow under valgrind, so large per query at valgrind's rates),
        # subtracted from each loaded window by its length.
        _, idle_seconds = callgrind.window(list(pids.values()), lambda: time.sleep(args.seconds))
        time.sleep(1.0)
        idle = {name: callgrind.events_of_dump(work, dump_label(name), pid, 1) for name, pid in pids.items()}
        idle_per_second = {name: events.get("Ir", 0) / idle_seconds for name, events in idle.items()}
        idle_calls_per_second = {name: events.get("sysCount", 0) / idle_seconds for name, events in idle.items()}
        for number, app in enumerate(APPS, start=2):
            before = batches_by_model(_metrics(metrics_url))
            run, elapsed = callgrind.window(
                list(pids.values()), lambda app=app: cluster.load(app, args, loadgen, warmup=0.0)
            )
            after = batches_by_model(_metrics(metrics_url))
            time.sleep(1.0)
            events = {name: callgrind.events_of_dump(work, dump_label(name), pid, number) for name, pid in pids.items()}
            by_process = {
                name: max(0, round(events[name].get("Ir", 0) - idle_per_second[name] * elapsed))
                for name in pids
            }
            calls = {
                name: max(0, round(events[name].get("sysCount", 0) - idle_calls_per_second[name] * elapsed))
                for name in pids
            }
            row = window_row(app, run.report, {m: after.get(m, 0) - before.get(m, 0) for m in MODELS})
            answered = row["answered"]
            sent = sum(row["batches"].values())
            replicas_total = sum(v for name, v in by_process.items() if name != "frontend")
            row["instructions"] = by_process
            row["per_query"] = {
                "total": round(sum(by_process.values()) / answered) if answered else None,
                "frontend": round(by_process["frontend"] / answered) if answered else None,
                "replicas": round(replicas_total / answered) if answered else None,
            }
            row["per_batch_replicas"] = round(replicas_total / sent) if sent else None
            # System calls (valgrind turns clock_gettime, a vDSO call natively, into one: the frontend's
            # figure includes those; compare apps, not absolute counts).
            row["system_calls"] = calls
            replica_calls = sum(v for name, v in calls.items() if name != "frontend")
            row["system_calls_per_query"] = {
                "frontend": round(calls["frontend"] / answered, 3) if answered else None,
                "replicas": round(replica_calls / answered, 3) if answered else None,
            }
            windows.append(row)
            print(f"  {app:<7} {answered:>7,} answered, {row['queries_per_batch']} per batch, "
                  f"{row['per_query']['total']:,} instr/query (frontend {row['per_query']['frontend']:,}, "
                  f"replicas {row['per_query']['replicas']:,}); system calls per query "
                  f"{row['system_calls_per_query']}", file=sys.stderr)  # fmt: skip
    single = windows[0]["per_query"]["total"]
    return {
        "frontend": label,
        "binary": binary,
        "build": build,
        "idle_instructions_per_second": {name: round(v) for name, v in idle_per_second.items()},
        "windows": windows,
        "exp3_over_single": common.ratio(windows[1]["per_query"]["total"], single),
        "split_over_single": common.ratio(windows[2]["per_query"]["total"], single),
    }


def wall_runs(specs: list[tuple[str, str]], args: argparse.Namespace, loadgen: str) -> list[dict[str, Any]]:
    """Without callgrind: every binary's cluster up at once, windows interleaved (binary after binary,
    app after app, `--pairs` rounds) so all see the same machine; per window the rate, the batches
    and the CPU time (user + system: the kernel's wake-ups included, which callgrind does not see)
    and context switches per query of the frontend and of the replicas. Times, so noisy on a shared
    machine: medians over rounds, and ratios within a binary."""
    with contextlib.ExitStack() as stack:
        clusters = {label: Cluster(stack, binary, args, under_callgrind=False) for label, binary in specs}
        for cluster in clusters.values():
            cluster.wait_ready()
        rows: dict[str, dict[str, list[dict]]] = {label: {app: [] for app in APPS} for label in clusters}
        for _ in range(args.pairs):
            for app in APPS:
                for label, cluster in clusters.items():
                    sides = {
                        "frontend": [cluster.pids["frontend"]],
                        "replicas": [pid for name, pid in cluster.pids.items() if name != "frontend"],
                    }
                    before = batches_by_model(_metrics(cluster.metrics_url))
                    start = {side: process_costs(pids) for side, pids in sides.items()}
                    run = cluster.load(app, args, loadgen, warmup=1.0)
                    end = {side: process_costs(pids) for side, pids in sides.items()}
                    after = batches_by_model(_metrics(cluster.metrics_url))
                    row = window_row(app, run.report, {m: after.get(m, 0) - before.get(m, 0) for m in MODELS})
                    for side in sides:
                        seconds = end[side][0] - start[side][0]
                        switches = end[side][1] - start[side][1]
                        row[f"{side}_cpu_micros_per_query"] = round(seconds * 1e6 / row["answered"], 2)
                        row[f"{side}_switches_per_query"] = round(switches / row["answered"], 3)
                    rows[label][app].append(row)
        results = []
        for label, binary in specs:
            summary: dict[str, Any] = {"frontend": label, "binary": binary, "build": clusters[label].build()}
            for app in APPS:
                summary[app] = {
                    key: common.median([row[key] for row in rows[label][app]])
                    for key in ("throughput_rps", "queries_per_batch", "frontend_cpu_micros_per_query",
                                "replicas_cpu_micros_per_query", "frontend_switches_per_query",
                                "replicas_switches_per_query")
                }  # fmt: skip
            single = summary["single"]["throughput_rps"]
            summary["exp3_over_single"] = common.ratio(summary["exp3"]["throughput_rps"], single)
            summary["split_over_single"] = common.ratio(summary["split"]["throughput_rps"], single)
            summary["windows"] = rows[label]
            results.append(summary)
        return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loadgen = common.find_loadgen(args.loadgen)
    specs = callgrind_frontend.binaries(args.frontend)
    if args.wall:
        runs = wall_runs(specs, args, loadgen)
        payload: dict[str, Any] = {
            "study": "selection_cost_wall", "machine": common.machine_info(), "transport": args.transport,
            "seconds": args.seconds, "connections": args.connections, "pairs": args.pairs, "runs": runs,
        }  # fmt: skip
        path = common.write_results(args.output.stem + "_wall", payload, args.output.parent)
        print(f"{'frontend':<10} {'app':<7} {'req/s':>9} {'per batch':>9} {'fe us/q':>8} {'rep us/q':>8} "
              f"{'fe sw/q':>8} {'rep sw/q':>8}")  # fmt: skip
        for run in runs:
            for app in APPS:
                row = run[app]
                print(f"{run['frontend']:<10} {app:<7} {row['throughput_rps'] or 0:>9,.0f} "
                      f"{row['queries_per_batch'] or 0:>9} {row['frontend_cpu_micros_per_query'] or 0:>8} "
                      f"{row['replicas_cpu_micros_per_query'] or 0:>8} {row['frontend_switches_per_query'] or 0:>8} "
                      f"{row['replicas_switches_per_query'] or 0:>8}")  # fmt: skip
            print(f"{run['frontend']:<10} exp3/single {run['exp3_over_single']}, split/single {run['split_over_single']}")
        print(f"results: {path}", file=sys.stderr)
        return 0
    runs = []
    for label, binary in specs:
        print(f"{label} ({args.transport}) ...", file=sys.stderr)
        runs.append(one_binary(label, binary, args, loadgen))
    payload = {
        "study": "selection_cost",
        "machine": common.machine_info(),
        "transport": args.transport,
        "seconds": args.seconds,
        "connections": args.connections,
        "runs": runs,
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"{'frontend':<10} {'app':<7} {'per batch':>9} {'instr/query':>12} {'frontend':>9} {'replicas':>9} "
          f"{'fe sys/q':>9} {'rep sys/q':>9}")  # fmt: skip
    for run in runs:
        for row in run["windows"]:
            q = row["per_query"]
            c = row["system_calls_per_query"]
            print(f"{run['frontend']:<10} {row['app']:<7} {row['queries_per_batch'] or 0:>9} "
                  f"{q['total'] or 0:>12,} {q['frontend'] or 0:>9,} {q['replicas'] or 0:>9,} "
                  f"{c['frontend'] or 0:>9} {c['replicas'] or 0:>9}")  # fmt: skip
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
