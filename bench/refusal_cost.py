"""What a refused query costs the frontend, in instructions (callgrind), not time: a shared machine's
noise does not reach the figure.

The standalone clipper-frontend runs under callgrind with a model that takes 300 ms per batch behind
an app with a 20 ms SLO: once its first batch is measured, every query is refused at arrival (429),
except a probe every so often (admission control measures an idle model again after 500 ms without an
answered batch). Instrumentation is switched on only for the measured window (callgrind_control), in
which clipper-loadgen sends W1 queries (10 doubles, each vector new) on a few keep-alive connections.
Figure: instructions of the whole frontend process in the window / requests answered, with the 429
and 200 (probe) counts beside it.

Each frontend binary given (label=path; by default the installed one) runs twice: with the prediction
cache off (the refusal comes before the body is decoded) and on (the body is decoded and the cache
consulted before refusing). Give the binary built before a change to compare:

    python bench/refusal_cost.py --frontend before=/path/to/old/clipper-frontend
    python bench/refusal_cost.py --seconds 5

About 10-15 s per binary and cache setting (valgrind start-up, the first slow batch, the window).
Owns bench/results/refusal_cost.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import common

SLO_MICROS = 20_000
MODEL_SECONDS_PER_BATCH = 0.3
MODEL_SOURCE = f"""
import time
from clipper.container import Model

class Slow(Model):
    def predict_batch(self, inputs):
        time.sleep({MODEL_SECONDS_PER_BATCH})
        return ["1.0" for _ in inputs]
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--frontend",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a clipper-frontend binary to measure (repeatable; default: the installed one)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "refusal_cost.json")
    return parser.parse_args(argv)


def binaries(specs: list[str]) -> list[tuple[str, str]]:
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


def _get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def total_instructions(dump_prefix: Path) -> int:
    """Sum of the `totals:` (or `summary:`) lines of every callgrind dump written under the prefix."""
    total = 0
    for dump in dump_prefix.parent.glob(dump_prefix.name + "*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total += int(line.split()[1])
                break
    return total


def one_run(label: str, binary: str, cache_on: bool, args: argparse.Namespace, loadgen: str):
    with tempfile.TemporaryDirectory(prefix="clipper-refusal-") as scratch:
        work = Path(scratch)
        query_port, rpc_port, metrics_port = common.free_ports(3)
        config = {
            "apps": [{"name": "slow", "input_type": "doubles", "default_output": "-1",
                      "slo_micros": SLO_MICROS, "linked_models": ["slow"]}],
            "models": [{"name": "slow", "version": "1", "input_type": "doubles", "current": True}],
        }  # fmt: skip
        (work / "config.json").write_text(json.dumps(config))
        (work / "slow_model.py").write_text(MODEL_SOURCE)
        dump_prefix = work / "callgrind.out"
        frontend = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={dump_prefix}.%p", binary,
             "--query-port", str(query_port), "--rpc-port", str(rpc_port),
             "--metrics-port", str(metrics_port), "--config", str(work / "config.json"),
             "--cache-size-bytes", "33554432" if cache_on else "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        replica = None
        try:
            base = f"http://127.0.0.1:{query_port}"
            _wait(lambda: _get(base + "/readyz")[0] == 200, 120, "the frontend under valgrind")
            replica = subprocess.Popen(
                [sys.executable, "-m", "clipper.container.cli", "--model", "slow_model:Slow",
                 "--name", "slow", "--version", "1", "--input-type", "doubles",
                 "--frontend", f"tcp://127.0.0.1:{rpc_port}"],
                cwd=work, env={**__import__("os").environ, "PYTHONPATH": str(work)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            counter = iter(range(10**9))

            def refused() -> bool:
                status, _ = common.post_json(
                    base + "/slow/predict", {"input": [0.25, float(next(counter))]}, 10.0
                )
                return status == 429

            _wait(refused, 120, "the first refusal (the model's first batch measured)")
            build = re.search(r"clipper_build_info\{([^}]*)\}", _get(base + "/metrics")[1])
            subprocess.run(["callgrind_control", "-i", "on", str(frontend.pid)],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            run = common.run_loadgen(
                common.loadgen_command(
                    loadgen,
                    base + "/slow/predict",
                    connections=args.connections,
                    duration_seconds=args.seconds,
                    warmup_seconds=0.0,
                    workload="w1",
                    extra_args=["--drain", "2"],
                ),
                timeout_seconds=args.seconds + 60,
            )
            subprocess.run(["callgrind_control", "-d", str(frontend.pid)],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            time.sleep(1.0)
            instructions = total_instructions(dump_prefix)
        finally:
            if replica is not None:
                replica.kill()
                replica.wait(timeout=10)
            frontend.terminate()
            try:
                frontend.wait(timeout=60)
            except subprocess.TimeoutExpired:
                frontend.kill()
                frontend.wait(timeout=10)
    report = run.report
    answered = sum(report["status"].values())
    return {
        "frontend": label,
        "binary": binary,
        "build": build.group(1) if build else None,
        "cache": "on" if cache_on else "off",
        "requests": answered,
        "status": report["status"],
        "instructions": instructions,
        "instructions_per_request": round(instructions / answered) if answered else None,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loadgen = common.find_loadgen(args.loadgen)
    runs = []
    for label, binary in binaries(args.frontend):
        for cache_on in (False, True):
            print(f"{label}, cache {'on' if cache_on else 'off'} ...", file=sys.stderr)
            runs.append(one_run(label, binary, cache_on, args, loadgen))
            row = runs[-1]
            print(f"  {row['instructions_per_request']:,} instructions per request over "
                  f"{row['requests']:,} ({row['status']})", file=sys.stderr)  # fmt: skip
    payload: dict[str, Any] = {
        "study": "refusal_cost",
        "machine": common.machine_info(),
        "slo_micros": SLO_MICROS,
        "model_seconds_per_batch": MODEL_SECONDS_PER_BATCH,
        "runs": runs,
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"{'frontend':<12} {'cache':<6} {'requests':>9} {'429':>7} {'instr/request':>14}")
    for row in runs:
        print(f"{row['frontend']:<12} {row['cache']:<6} {row['requests']:>9,} "
              f"{row['status'].get('429', 0):>7,} {row['instructions_per_request'] or 0:>14,}")  # fmt: skip
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
