"""Goodput right after a deployment against the steady state: W3's model under open loop load.

Goodput is the number of answers from a model within the app's SLO per second (the engine's
`clipper_app_slo_attained_total`, sampled every 100 ms). A deployed model starts with an adaptive
batch size of 1; the issue's target is that the first 8 seconds after a deployment keep at least
half the steady state's goodput, i.e. the controller does not collapse to default answers while it
learns. Owns the two scenarios below, their plot and bench/results/goodput.json; the model is W3's
(models.CalibratedBurner). Runs on the main thread with the load generator in a child process;
about one minute with the defaults.

  fresh        the app is registered and under load (answered with its default: no model), then the
               model is deployed (batch_size=-1) and linked; t0 = when the link call returned.
  new_version  version 1 serves in its steady state, then version 2 is deployed (it becomes the
               current version when its replica has connected, and starts learning from 1);
               t0 = when the deploy call returned.

Each scenario is one load generator run (Poisson, --rate): the deployment starts --lead seconds in,
the first window is [t0, t0 + 8 s], the steady window [t0 + 12 s, the end of the run - 1 s].

    python bench/goodput.py                    # 5,000 req/s, SLO 20 ms
    python bench/goodput.py --rate 8000 --slo-micros 50000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster as cluster_lib
import common
import models

APP = "goodput"
MODEL = "w3-burner"
FIRST_WINDOW_S = 8.0
STEADY_FROM_S = 12.0
BIN_S = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=5000.0, help="offered req/s (default 5000)")
    parser.add_argument("--slo-micros", type=int, default=20_000, help="the app's SLO (20 ms)")
    parser.add_argument(
        "--run-seconds",
        type=float,
        default=28.0,
        help="length of each scenario's load run (default 28)",
    )
    parser.add_argument(
        "--lead", type=float, default=2.0, help="seconds of load before the deployment (default 2)"
    )
    parser.add_argument("--connections", type=int, default=256, help="open loop connections")
    parser.add_argument("--fixed-micros", type=float, default=1000.0)
    parser.add_argument("--per-input-micros", type=float, default=20.0)
    parser.add_argument(
        "--scenarios", nargs="+", choices=("fresh", "new_version"), default=["fresh", "new_version"]
    )
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "goodput.json")
    return parser.parse_args(argv)


class LoadRun:
    """clipper-loadgen in the background for a fixed time; killed if the study fails."""

    def __init__(self, command: list[str], timeout_seconds: float) -> None:
        self.command = command
        self.timeout_seconds = timeout_seconds
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.report: dict[str, Any] | None = None

    def wait(self) -> dict[str, Any]:
        import json

        try:
            stdout, stderr = self.process.communicate(timeout=self.timeout_seconds)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("clipper-loadgen did not finish in time") from None
        if self.process.returncode != 0:
            raise RuntimeError(f"clipper-loadgen failed: {stderr.strip()}")
        self.report = json.loads(stdout)
        return self.report

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def scenario(
    name: str,
    args: argparse.Namespace,
    loadgen: str,
    cluster: cluster_lib.LocalCluster,
    sampler: cluster_lib.MetricsSampler,
    deploy: Any,
    version: str,
) -> dict[str, Any]:
    """One load run with a deployment `args.lead` seconds in; `deploy()` returns when it serves."""
    command = common.loadgen_command(
        loadgen,
        cluster.url(APP),
        connections=args.connections,
        duration_seconds=args.run_seconds,
        warmup_seconds=0,
        rate_per_second=args.rate,
        workload="w1",
        extra_args=["--drain", "1"],
    )
    print(
        f"{name}: load at {args.rate:,.0f}/s, deploying after {args.lead:g} s ...", file=sys.stderr
    )
    with common.CpuMeter(cluster.server_pids) as cpu:
        run = LoadRun(command, timeout_seconds=args.run_seconds + 30)
        try:
            time.sleep(args.lead)
            deploy_started = time.monotonic()
            deploy()
            t0 = time.monotonic()
            report = run.wait()
        finally:
            run.stop()
    end = run.started + args.run_seconds
    first = (t0, t0 + FIRST_WINDOW_S)
    steady = (t0 + STEADY_FROM_S, end - 1.0)
    if steady[1] - steady[0] < 3.0:
        raise RuntimeError(
            f"{name}: the deployment took {t0 - deploy_started:.1f} s, leaving "
            f"{steady[1] - steady[0]:.1f} s of steady state; raise --run-seconds"
        )
    app = cluster_lib.app_labels(APP)
    model = cluster_lib.model_labels(MODEL, version)

    def window(start: float, stop: float) -> dict[str, Any]:
        p99_seconds = sampler.histogram_quantile(
            "clipper_app_latency_seconds", app, 0.99, start, stop
        )
        return {
            "seconds": round(stop - start, 2),
            "goodput_rps": sampler.rate(f"clipper_app_slo_attained_total{{{app}}}", start, stop),
            "requests_rps": sampler.rate(f"clipper_app_requests_total{{{app}}}", start, stop),
            "default_answers_rps": sampler.rate(
                f"clipper_app_default_answers_total{{{app}}}", start, stop
            ),
            "p99_bucket_ms": common.rounded(p99_seconds and p99_seconds * 1000, 1),
            "mean_batch_size": common.rounded(
                sampler.histogram_mean("clipper_model_batch_size", model, start, stop)
            ),
        }

    bins = []
    moment = run.started
    while moment + BIN_S <= end:
        span = (moment, moment + BIN_S)
        bins.append(
            {
                "t": round(moment + BIN_S / 2 - t0, 2),
                "goodput_rps": sampler.rate(f"clipper_app_slo_attained_total{{{app}}}", *span),
                "default_rps": sampler.rate(f"clipper_app_default_answers_total{{{app}}}", *span),
            }
        )
        moment += BIN_S
    times, learned = sampler.series(f"clipper_model_learned_batch_size{{{model}}}", t0)
    first_summary, steady_summary = window(*first), window(*steady)
    return {
        "scenario": name,
        "version": version,
        "deploy_seconds": round(t0 - deploy_started, 2),
        "first_8s": first_summary,
        "steady": steady_summary,
        "ratio_first_to_steady": common.ratio(
            first_summary["goodput_rps"], steady_summary["goodput_rps"]
        ),
        "cpu_cores": cpu.summary(),
        "bins": bins,
        "learned_batch_size": [[round(t, 2), v] for t, v in zip(times, learned) if t > -5],
        "loadgen": common.loadgen_summary(
            report, command, ("requests", "throughput_rps", "default_answers", "latency_us")
        ),
    }


def plot(results: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 1, figsize=(10, 3.6 * len(results)), squeeze=False)
    for axis, result in zip(axes[:, 0], results):
        bins = result["bins"]
        axis.plot(
            [b["t"] for b in bins],
            [b["goodput_rps"] for b in bins],
            "-",
            color="C2",
            label="goodput (model answers within SLO / s)",
        )
        axis.plot(
            [b["t"] for b in bins],
            [b["default_rps"] for b in bins],
            "-",
            color="C3",
            lw=0.8,
            alpha=0.7,
            label="default answers / s",
        )
        axis.axhline(args.rate, color="grey", ls=":", lw=1, label=f"offered {args.rate:,.0f}/s")
        first, steady = result["first_8s"], result["steady"]
        axis.hlines(
            first["goodput_rps"],
            0,
            FIRST_WINDOW_S,
            color="C0",
            lw=2.5,
            label=f"first 8 s mean {first['goodput_rps']:,.0f}/s",
        )
        axis.hlines(
            steady["goodput_rps"],
            STEADY_FROM_S,
            bins[-1]["t"],
            color="C1",
            lw=2.5,
            label=f"steady mean {steady['goodput_rps']:,.0f}/s "
            f"(ratio {result['ratio_first_to_steady']:.2f})",
        )
        axis.axvline(0, color="black", lw=1)
        axis.axvspan(-result["deploy_seconds"], 0, color="grey", alpha=0.15, lw=0)
        axis.set_ylim(bottom=0, top=args.rate * 1.35)
        axis.set_ylabel("answers / s (0.5 s bins)")
        twin = axis.twinx()
        learned = result["learned_batch_size"]
        twin.step(
            [t for t, _ in learned],
            [v for _, v in learned],
            where="post",
            color="C4",
            lw=0.8,
            alpha=0.8,
            label="learned batch size (right)",
        )
        twin.set_ylabel("batch size")
        twin.set_ylim(bottom=0)
        axis.set_title(
            f"{result['scenario']}: version {result['version']} deployed at t=0 "
            f"(shaded: the deploy call, {result['deploy_seconds']:.1f} s)",
            fontsize=10,
        )
        lines = axis.get_legend_handles_labels()
        twin_lines = twin.get_legend_handles_labels()
        axis.legend(
            lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize=7, loc="lower right"
        )
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since the deployment returned")
    figure.suptitle(
        f"Goodput after a deployment: W3 model, open loop {args.rate:,.0f}/s Poisson, "
        f"SLO {args.slo_micros / 1000:g} ms",
        fontsize=11,
    )
    return common.save_figure(figure, path)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, loadgen = common.begin_loadgen_study(args.loadgen)
    models.register_by_value()
    from clipper.deployers.python import deploy_python_closure

    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="clipper-bench-goodput-"))
        calibration_path = os.path.join(scratch, "calibration")
        cluster = cluster_lib.start_local_cluster(stack, "goodput", cache_size_bytes=0)
        connection = cluster.connection
        connection.register_application(APP, "doubles", "-1", args.slo_micros)
        sampler = stack.enter_context(cluster_lib.MetricsSampler(cluster.metrics_url))
        next_version = 1
        linked = False

        def deploy_version(version: str) -> None:
            nonlocal linked
            deploy_python_closure(
                connection,
                name=MODEL,
                version=version,
                input_type="doubles",
                func=models.CalibratedBurner(
                    args.fixed_micros, args.per_input_micros, calibration_path
                ),
                batch_size=-1,
            )
            if not linked:
                connection.link_model_to_app(APP, MODEL)
                linked = True

        for name in args.scenarios:
            if name == "new_version" and not linked:
                # Version 1 first, in its steady state, so that version 2 replaces a serving one.
                deploy_version(str(next_version))
                next_version += 1
                time.sleep(1.0)
            version = str(next_version)
            results.append(
                scenario(
                    name,
                    args,
                    loadgen,
                    cluster,
                    sampler,
                    lambda version=version: deploy_version(version),
                    version,
                )
            )
            next_version += 1
        calibration = models.read_calibration_reports(calibration_path)

    print(
        f"Goodput after a deployment | W3 model ({args.fixed_micros:g} us + "
        f"{args.per_input_micros:g} us/input) | open loop {args.rate:,.0f}/s Poisson | SLO "
        f"{args.slo_micros / 1000:g} ms | {os.cpu_count()} CPUs"
    )
    columns = (
        f"{'scenario':<13}{'deploy s':>9}{'window':>9}{'goodput/s':>11}{'defaults/s':>11}"
        f"{'p99<= ms':>9}{'batch':>7}"
    )
    print(columns)
    print("-" * len(columns))
    for result in results:
        for key, label in (("first_8s", "first 8s"), ("steady", "steady")):
            row = result[key]
            print(
                f"{result['scenario'] if key == 'first_8s' else '':<13}"
                f"{result['deploy_seconds'] if key == 'first_8s' else '':>9}{label:>9}"
                f"{row['goodput_rps']:>11,.0f}{row['default_answers_rps']:>11,.0f}"
                f"{'-' if row['p99_bucket_ms'] is None else row['p99_bucket_ms']:>9}"
                f"{'-' if row['mean_batch_size'] is None else row['mean_batch_size']:>7}"
            )
    print(
        "goodput/s: the engine's answers from the model within the SLO; p99<=: the upper bound of "
        "the engine's latency bucket holding the 99th percentile."
    )
    warning = common.disturbed_warning({r["scenario"]: r["cpu_cores"]["other"] for r in results})
    if warning:
        print(warning)
    print()
    print("issue 3 target: goodput in the first 8 s after a deployment >= 0.5 x steady state")
    checks = []
    for result in results:
        value = result["ratio_first_to_steady"]
        met = value is not None and value >= 0.5
        checks.append(
            {
                "check": f"{result['scenario']} first 8 s / steady",
                "value": value,
                "goal": ">= 0.5",
                "met": met,
            }
        )
        print(
            f"  {result['scenario']:<13} first 8 s / steady {value:>8.3f}  "
            f"{'met' if met else 'NOT met'}"
        )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    plot_path = plot(results, args, args.output.with_name(f"{args.output.stem}.png"))
    payload = {
        "study": "goodput",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": common.machine_info(),
        "source": cluster_lib.source_revision(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model_calibration": calibration,
        "checks": checks,
        "plot": str(plot_path),
        "scenarios": results,
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"\nwrote {path} ({payload['wall_seconds']} s)\nplot: {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
