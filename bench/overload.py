"""Overload: goodput and latency at 1x, 2x and 4x a model's measured capacity (admission control).

W3's model (models.CalibratedBurner: ~1 ms per call + ~20 us per input of real CPU work, adaptive
batching) behind an app with a 100 ms SLO. The capacity is measured first: closed loop with enough
connections to keep full batches queued (the queue stays far inside the SLO, so nothing is refused),
answers within the SLO per second. Then open loop Poisson arrivals at each multiple of it, each run
measuring, from the load generator's side:

  goodput       2xx model answers (not the default) within the SLO, per second of the window
  admitted      p50/p99/max latency of the queries answered by the model (latency from the intended
                send time, so waiting for a free connection counts)
  429 share     queries refused at arrival (admission control), and default answers
  rss           the frontend process's RSS before the runs, its peak and after each run

and, at --default-at (2x), the same load on a twin app registered with overload="default" (refused
queries answered 200 with its default output). The issue's target: goodput at 2x >= 0.9 x capacity.
Owns bench/results/overload.json and overload.png. About 1.5 minutes with the defaults.

    python bench/overload.py
    python bench/overload.py --multipliers 0.5 1 2 4 --duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster as cluster_lib
import common
import models

APP = "overload"
DEFAULT_APP = "overload-default"
MODEL = "w3-burner"
TARGET_GOODPUT_AT_2X = 0.9
NOISY_OTHER_CORES = 0.2  # cores used outside the study during a run that mark it as disturbed


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slo-micros", type=int, default=100_000, help="the apps' SLO (100 ms)")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    parser.add_argument(
        "--capacity-connections",
        type=int,
        default=256,
        help="closed loop connections of the capacity run (enough for full batches of 128)",
    )
    parser.add_argument("--connections", type=int, default=2048, help="open loop connections")
    parser.add_argument(
        "--default-at",
        type=float,
        default=2.0,
        help="multiplier of the run on the overload='default' app (0 skips it)",
    )
    parser.add_argument("--fixed-micros", type=float, default=1000.0)
    parser.add_argument("--per-input-micros", type=float, default=20.0)
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "overload.json")
    return parser.parse_args(argv)


def run_load(command: list[str], timeout_seconds: float) -> dict[str, Any]:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_seconds, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"clipper-loadgen failed: {completed.stderr.strip()}")
    return json.loads(completed.stdout)


def one_run(
    name: str,
    app: str,
    args: argparse.Namespace,
    loadgen: str,
    cluster: cluster_lib.LocalCluster,
    sampler: cluster_lib.MetricsSampler,
    rate: float | None,
) -> dict[str, Any]:
    """One load generator run (open loop at `rate`, or the closed loop capacity run)."""
    command = common.loadgen_command(
        loadgen,
        cluster.url(app),
        connections=args.connections if rate else args.capacity_connections,
        duration_seconds=args.duration,
        warmup_seconds=args.warmup,
        rate_per_second=rate,
        workload="w1",
        extra_args=["--slo-us", str(args.slo_micros), "--drain", "2"],
    )
    label = f"{rate:,.0f}/s open loop" if rate else f"closed loop {args.capacity_connections}"
    print(f"{name}: {app}, {label} ...", file=sys.stderr)
    rss = common.RssSampler(cluster.frontend_pid) if cluster.frontend_pid else None
    with contextlib.ExitStack() as stack:
        if rss:
            stack.enter_context(rss)
        cpu = stack.enter_context(common.CpuMeter(cluster.server_pids))
        started = time.monotonic()
        report = run_load(command, timeout_seconds=args.warmup + args.duration + 60)
    window = (started + args.warmup, started + args.warmup + args.duration)
    labels = cluster_lib.app_labels(app)
    outcomes = report.get("latency_by_outcome_us", {})
    answered = outcomes.get("200", {})
    requests = report["requests"] or 1
    refused = report["status"].get("429", 0) + report["status"].get("503", 0)
    return {
        "run": name,
        "app": app,
        "offered_rps": report.get("offered_rps"),
        "goodput_rps": round(report["answers_within_slo"] / args.duration, 1),
        "requests": report["requests"],
        "status": report["status"],
        "refused_share": round(refused / requests, 4),
        "default_share": round(report["default_answers"] / requests, 4),
        "admitted_latency_ms": {key: _ms(answered.get(key)) for key in ("p50", "p99", "max")},
        "latency_by_outcome_us": outcomes,
        "engine": {
            "slo_attained_rps": round(
                sampler.delta(f"clipper_app_slo_attained_total{{{labels}}}", *window)
                / args.duration,
                1,
            ),
            "rejected_deadline_rps": round(
                sampler.delta(f'clipper_app_rejected_total{{{labels},reason="deadline"}}', *window)
                / args.duration,
                1,
            ),
            "mean_batch_size": _round(
                sampler.histogram_mean(
                    "clipper_model_batch_size", cluster_lib.model_labels(MODEL, "1"), *window
                )
            ),
        },
        "rss_mb": {
            **(rss.summary() if rss else {}),
            "after": common.megabytes(common.rss_bytes(cluster.frontend_pid))
            if cluster.frontend_pid
            else None,
        },
        "cpu_cores": cpu.summary(),
        "loadgen": {
            k: report.get(k)
            for k in ("throughput_rps", "send_lag_us", "max_queue_depth", "unfinished", "lost")
        }
        | {"errors": report.get("errors"), "command": " ".join(command)},
    }


def _ms(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def print_table(capacity: dict[str, Any], runs: list[dict[str, Any]], slo_ms: float) -> None:
    print(
        f"\ncapacity (closed loop): {capacity['goodput_rps']:,.0f} answers/s within the "
        f"{slo_ms:g} ms SLO (other cores {capacity['cpu_cores']['other']})"
    )
    header = (
        f"{'run':>10} {'app':>17} {'offered/s':>10} {'goodput/s':>10} {'x cap':>6} {'429 %':>6} "
        f"{'dflt %':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'rss MB':>7} {'other':>6}"
    )
    print(header)
    for run in runs:
        latency = run["admitted_latency_ms"]
        print(
            f"{run['run']:>10} {run['app']:>17} {run['offered_rps'] or 0:>10,.0f} "
            f"{run['goodput_rps']:>10,.0f} {run['goodput_rps'] / capacity['goodput_rps']:>6.2f} "
            f"{100 * run['refused_share']:>6.1f} {100 * run['default_share']:>6.1f} "
            f"{latency['p50'] or 0:>7.1f} {latency['p99'] or 0:>7.1f} {latency['max'] or 0:>7.1f} "
            f"{run['rss_mb'].get('max_mb') or 0:>7.1f} {run['cpu_cores']['other']:>6.2f}"
        )
    disturbed = [r["run"] for r in runs if r["cpu_cores"]["other"] > NOISY_OTHER_CORES]
    if disturbed:
        print(f"WARNING: other work used > {NOISY_OTHER_CORES} cores during {', '.join(disturbed)}")


def plot(capacity: dict[str, Any], runs: list[dict[str, Any]], slo_ms: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rejecting = [r for r in runs if r["app"] == APP]
    x = [r["offered_rps"] / capacity["goodput_rps"] for r in rejecting]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    top.plot(x, [r["goodput_rps"] for r in rejecting], "o-", color="C2", label="goodput (reject)")
    top.plot(
        x,
        [r["offered_rps"] * r["refused_share"] for r in rejecting],
        "s--",
        color="C3",
        label="refused with 429 / s",
    )
    for run in runs:
        if run["app"] == DEFAULT_APP:
            top.plot(
                run["offered_rps"] / capacity["goodput_rps"],
                run["goodput_rps"],
                "D",
                color="C4",
                label="goodput (overload=default)",
            )
    top.axhline(capacity["goodput_rps"], color="grey", ls=":", label="capacity (closed loop)")
    top.axhline(
        TARGET_GOODPUT_AT_2X * capacity["goodput_rps"],
        color="grey",
        ls="--",
        lw=0.8,
        label=f"target at 2x: {TARGET_GOODPUT_AT_2X} x capacity",
    )
    top.set_ylabel("answers / s")
    top.set_ylim(bottom=0)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(x, [r["admitted_latency_ms"]["p50"] for r in rejecting], "o-", label="p50 admitted")
    bottom.plot(x, [r["admitted_latency_ms"]["p99"] for r in rejecting], "o-", label="p99 admitted")
    bottom.plot(x, [r["admitted_latency_ms"]["max"] for r in rejecting], ".:", label="max admitted")
    bottom.axhline(slo_ms, color="black", ls="--", lw=0.8, label=f"SLO {slo_ms:g} ms")
    bottom.set_ylabel("latency of model answers (ms)")
    bottom.set_xlabel("offered load / measured capacity")
    bottom.set_ylim(bottom=0)
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    figure.suptitle(
        f"Overload with admission control: W3 model, SLO {slo_ms:g} ms, Poisson arrivals",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    loadgen = common.find_loadgen(args.loadgen)
    models.register_by_value()
    from clipper.deployers.python import deploy_python_closure

    slo_ms = args.slo_micros / 1000
    with contextlib.ExitStack() as stack:
        cluster = cluster_lib.start_local_cluster(stack, "overload", cache_size_bytes=0)
        connection = cluster.connection
        connection.register_application(APP, "doubles", "-1", args.slo_micros)
        connection.register_application(
            DEFAULT_APP, "doubles", "-1", args.slo_micros, overload="default"
        )
        deploy_python_closure(
            connection,
            name=MODEL,
            version="1",
            input_type="doubles",
            func=models.CalibratedBurner(args.fixed_micros, args.per_input_micros),
            batch_size=-1,
        )
        connection.link_model_to_app(APP, MODEL)
        connection.link_model_to_app(DEFAULT_APP, MODEL)
        cluster_lib.wait_for_model_answer(cluster.url(APP), lambda i: {"input": [float(i)] * 10})
        rss_before = common.megabytes(common.rss_bytes(cluster.frontend_pid))
        sampler = stack.enter_context(cluster_lib.MetricsSampler(cluster.metrics_url))
        capacity = one_run("capacity", APP, args, loadgen, cluster, sampler, rate=None)
        runs = []
        for multiplier in args.multipliers:
            time.sleep(1.0)  # the queue empties between runs
            rate = multiplier * capacity["goodput_rps"]
            runs.append(one_run(f"{multiplier:g}x", APP, args, loadgen, cluster, sampler, rate))
        if args.default_at > 0:
            time.sleep(1.0)
            rate = args.default_at * capacity["goodput_rps"]
            runs.append(
                one_run(f"{args.default_at:g}x", DEFAULT_APP, args, loadgen, cluster, sampler, rate)
            )
        rss_after = common.megabytes(common.rss_bytes(cluster.frontend_pid))

    print_table(capacity, runs, slo_ms)
    at_2x = next((r for r in runs if r["run"] == "2x" and r["app"] == APP), None)
    ratio_2x = None if at_2x is None else at_2x["goodput_rps"] / capacity["goodput_rps"]
    if ratio_2x is not None:
        verdict = "met" if ratio_2x >= TARGET_GOODPUT_AT_2X else "NOT met"
        print(
            f"goodput at 2x / capacity = {ratio_2x:.2f} (target >= {TARGET_GOODPUT_AT_2X}: {verdict})"
        )
    print(f"frontend RSS: {rss_before} MB before the runs, {rss_after} MB after")
    results = {
        "study": "overload",
        "machine": common.machine_info(),
        "source": cluster_lib.source_revision(),
        "settings": {
            "slo_micros": args.slo_micros,
            "model": {"fixed_micros": args.fixed_micros, "per_input_micros": args.per_input_micros},
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "capacity_connections": args.capacity_connections,
            "open_loop_connections": args.connections,
        },
        "capacity": capacity,
        "runs": runs,
        "goodput_at_2x_over_capacity": None if ratio_2x is None else round(ratio_2x, 3),
        "target_goodput_at_2x": TARGET_GOODPUT_AT_2X,
        "frontend_rss_mb": {"before": rss_before, "after": rss_after},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = common.write_results(args.output.stem, results, args.output.parent)
    print(f"results: {path}")
    with contextlib.suppress(ImportError):
        print(f"plot: {plot(capacity, runs, slo_ms, path.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
