"""What an answered W1 request costs the frontend, in instructions (callgrind), not time: a shared
machine's noise does not reach the figure (issue 13: the frontend's CPU per request).

The standalone clipper-frontend runs under callgrind with a no-op model (answers "0" to every input)
served by a local Python replica over the shared-memory transport. Instrumentation is switched on
only for the measured window (callgrind_control), in which clipper-loadgen sends W1 queries (10
doubles, each vector new) in a closed loop on --connections keep-alive connections. Figures:
instructions of the whole frontend process in the window / requests answered (at least 99% 200,
checked), system calls per request (callgrind's sysCount, less clock_gettime: a vDSO call
natively), and the requests per replica batch from the engine's clipper_shm_request_batches_total
(callgrind slows the frontend about 50-fold, so batches differ from those at full speed: per-batch
costs weigh differently here than in a benchmark), and the prediction cache's evictions per request.

The cache is the steady state's: W1 vectors are all new, so at full speed (over 100,000 requests a
second) the default 32 MiB budget is full within seconds and from then on every answer evicts an entry,
but a 5 s window under callgrind answers only ~30,000 and would never fill it. So the frontend gets a
small budget (--cache-size-bytes, 2 MiB: ~11,000 entries) and --fill-seconds of W1 load before the
window (uninstrumented) fills it; evictions per request near 1 show it held. --fill-seconds 0 measures
a cache that is still filling, as the figures recorded before 1 December, 19:50 UTC did.

The window's callgrind dumps are kept (bench/build/request_cost/<label>.callgrind.*) to read the
profile by function:

    callgrind_annotate --inclusive=yes bench/build/request_cost/installed.callgrind.0 | head -60

Give the binary built before a change to compare (both run in the same invocation):

    python bench/request_cost.py --frontend before=/path/to/old/clipper-frontend \\
        --frontend after=/path/to/new/clipper-frontend
    python bench/request_cost.py --seconds 5 --connections 16
    python bench/request_cost.py --io-threads 2       # the cost of a second HTTP I/O thread
    python bench/request_cost.py --replica-transport zmq   # the replica over ZeroMQ

About 30-40 s per binary (valgrind start-up, the replica's registration, the fill, the window).
Owns bench/results/request_cost.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import callgrind_frontend
import common

APP = "w1"
MODEL = "noop"
# Long enough that admission control refuses nothing under callgrind's 50-fold slow-down.
SLO_MICROS = 1_000_000
MODEL_SOURCE = """
from clipper.container import Model

class NoOp(Model):
    def predict_batch(self, inputs):
        return ["0"] * len(inputs)
"""
BATCHES_METRIC = "clipper_shm_request_batches_total"
EVICTIONS_METRIC = "clipper_cache_evictions_total"
PROFILE_DIR = common.BENCH_DIR / "build" / "request_cost"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    callgrind_frontend.add_frontend_argument(parser)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per binary")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--repeat", type=int, default=1, help="windows per binary (alternating)")
    parser.add_argument("--io-threads", type=int, default=1, help="the frontend's HTTP I/O threads")
    parser.add_argument(
        "--replica-transport",
        choices=["auto", "zmq"],
        default="auto",
        help="auto: shared memory (the default); zmq: the replica served over ZeroMQ",
    )
    parser.add_argument(
        "--cache-size-bytes",
        type=int,
        default=2 * 1024 * 1024,
        help="the frontend's prediction cache budget (0: off); small, so that --fill-seconds fills it",
    )
    parser.add_argument(
        "--fill-seconds",
        type=float,
        default=8.0,
        help="W1 load before the window, uninstrumented, to fill the cache (0: none): every W1 vector "
        "is new, so with a full cache each answered request also evicts an entry, as at full speed",
    )
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--profile-dir", type=Path, default=PROFILE_DIR)
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "request_cost.json")
    return parser.parse_args(argv)


def one_run(label: str, binary: str, args: argparse.Namespace, loadgen: str) -> dict[str, Any]:
    config = {
        "apps": [{"name": APP, "input_type": "doubles", "default_output": "-1.0",
                  "slo_micros": SLO_MICROS, "linked_models": [MODEL]}],
        "models": [{"name": MODEL, "version": "1", "input_type": "doubles", "current": True}],
    }  # fmt: skip
    with callgrind_frontend.frontend_under_callgrind(
        binary, config,
        ["--replica-transport", args.replica_transport, "--io-threads", str(args.io_threads),
         "--cache-size-bytes", str(args.cache_size_bytes)],
        collect_systime=True,
        prefix="clipper-request-cost-",
    ) as frontend:  # fmt: skip
        frontend.start_replica(
            MODEL_SOURCE, "NoOp", MODEL, "doubles", transport=args.replica_transport
        )
        url = f"{frontend.base}/{APP}/predict"

        def answered_by_model() -> bool:
            status, body = common.post_json(url, {"input": [0.5] * 10}, 10.0)
            return status == 200 and isinstance(body, dict) and body.get("default") is False

        callgrind_frontend.wait(answered_by_model, 120, "the no-op replica's first answer")
        if args.fill_seconds > 0:
            fill = common.loadgen_command(
                loadgen, url, connections=args.connections, duration_seconds=args.fill_seconds,
                warmup_seconds=0.0, workload="w1", extra_args=["--drain", "5"],
            )  # fmt: skip
            common.run_loadgen(fill, timeout_seconds=args.fill_seconds + 60)
        metrics_before = frontend.metrics()
        batches_before = callgrind_frontend.metric_value(metrics_before, BATCHES_METRIC)
        evictions_before = callgrind_frontend.metric_value(metrics_before, EVICTIONS_METRIC)
        if (batches_before >= 1) != (args.replica_transport == "auto"):
            raise RuntimeError(f"the replica is not served over {args.replica_transport}")
        build = frontend.build_info()
        command = common.loadgen_command(
            loadgen, url, connections=args.connections, duration_seconds=args.seconds,
            warmup_seconds=0.0, workload="w1", extra_args=["--drain", "5"],
        )  # fmt: skip
        run, totals = frontend.window(
            lambda: common.run_loadgen(command, timeout_seconds=args.seconds + 60)
        )
        metrics_after = frontend.metrics()
        batches = callgrind_frontend.metric_value(metrics_after, BATCHES_METRIC) - batches_before
        evictions = callgrind_frontend.metric_value(metrics_after, EVICTIONS_METRIC) - evictions_before
        profile = frontend.keep_dumps(args.profile_dir / f"{label}.callgrind")
    report = run.report
    answered = sum(report["status"].values())
    ok = report["status"].get("200", 0)
    if answered == 0 or ok < 0.99 * answered:
        raise RuntimeError(
            f"{label}: under 99% of the requests were answered 200: {report['status']}"
        )

    def per_request(value: float) -> float:
        return value / answered

    return {
        "frontend": label,
        "binary": binary,
        "build": build,
        "connections": args.connections,
        "io_threads": args.io_threads,
        "replica_transport": args.replica_transport,
        "cache_size_bytes": args.cache_size_bytes,
        "fill_seconds": args.fill_seconds,
        "requests": answered,
        "status": report["status"],
        "instructions": totals.instructions,
        "instructions_per_request": round(per_request(totals.instructions)),
        # clock_gettime left out: a vDSO call natively, a system call only under valgrind.
        "system_calls_per_request": round(per_request(totals.kernel_calls), 3),
        "clock_gettime_per_request": round(per_request(totals.clock_gettime_calls), 3),
        # The metrics scrapes around the window add one batch-free request each; negligible.
        "requests_per_batch": round(answered / batches, 2) if batches else None,
        # About 1 once the fill has filled the cache: each new vector's answer evicts an entry.
        "cache_evictions_per_request": round(per_request(evictions), 3),
        "profile": profile,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loadgen = common.find_loadgen(args.loadgen)
    runs = []
    for _ in range(args.repeat):
        for label, binary in callgrind_frontend.binaries(args.frontend):
            print(f"{label} ...", file=sys.stderr)
            runs.append(one_run(label, binary, args, loadgen))
            row = runs[-1]
            print(f"  {row['instructions_per_request']:,} instructions, "
                  f"{row['system_calls_per_request']} system calls per request over "
                  f"{row['requests']:,} ({row['requests_per_batch']} per batch, "
                  f"{row['cache_evictions_per_request']} cache evictions per request)",
                  file=sys.stderr)  # fmt: skip
    payload: dict[str, Any] = {
        "study": "request_cost",
        "machine": common.machine_info(),
        "slo_micros": SLO_MICROS,
        "workload": f"W1 closed loop, no-op model, replica transport {args.replica_transport}, "
        f"prediction cache {args.cache_size_bytes} bytes filled for {args.fill_seconds} s first",
        "runs": runs,
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(
        f"{'frontend':<12} {'requests':>9} {'per batch':>9} {'syscalls/req':>12} {'instr/request':>14}"
    )
    for row in runs:
        print(f"{row['frontend']:<12} {row['requests']:>9,} {row['requests_per_batch'] or 0:>9} "
              f"{row['system_calls_per_request']:>12} {row['instructions_per_request']:>14,}")  # fmt: skip
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
