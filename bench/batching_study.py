"""The batching comparison shared by W3 and W4: batching off, every fixed size, and adaptive (AIMD).

Owns the study's procedure, its summary table, its plots and its results file; a workload (w3.py,
w4.py) supplies only the model and the request bodies. Runs on the main thread; /metrics is sampled
every 100 ms on one background thread. Every load run is bounded in time and the cluster is always
stopped, also on errors and Ctrl-C.

Procedure, in one cluster (the prediction cache off by default, so that only batching is measured):
  - two apps with the same SLO, each linked to its own copy of the model: `<key>-fixed`, deployed
    with batch_size=1 and switched between fixed sizes with `set_model_batching` (Clipper's
    semantics: a fixed size is a cap, a batch holds what is queued up to it), and `<key>-adaptive`,
    deployed with batch_size=-1 (the AIMD controller). Its controller is never reset, so its batch
    size over time runs from its deployment to the end of the study.
  - closed loop (64 connections): adaptive, each fixed size 1, 2, ..., 128, adaptive again.
  - open loop (Poisson, rising rates): batching off, the best fixed size of the sweep, adaptive,
    interleaved at each rate. Default rates are fractions of adaptive's closed-loop throughput.

"Throughput" is answers from the model per second (the load generator's answers minus the default
answers the engine gives when a query would miss its SLO); the engine's own count of answers within
the SLO (`clipper_app_slo_attained_total`) is reported beside it as goodput. p99 is over every answer.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cluster as cluster_lib
import common

DEFAULT_SIZES = [1, 2, 4, 8, 16, 32, 64, 128]
DEFAULT_RATE_FRACTIONS = [0.2, 0.4, 0.6, 0.8, 1.0]
NOISY_OTHER_CORES = 0.2  # cores used outside the study during a run that mark it as disturbed
CUT_REASONS = ("full", "deadline", "wait_expired", "queue_empty")


@dataclass
class Workload:
    """What a study serves: the model to deploy and the requests that reach it."""

    key: str  # names the apps, models and results files ("w3", "w4")
    title: str
    input_type: str
    model_function: Callable[[], Any]  # builds the function the closure deployer ships
    loadgen_workload: str  # "w1": every request a distinct 10-double vector; "fixed": `body`
    probe: Callable[[int], Any]  # a request payload, for the start-up check
    description: dict[str, Any]
    body: str | None = None
    off_target: float | None = None  # issue target for adaptive / batching off (W3: 5x)
    calibration: Callable[[], Any] | None = None  # what the replicas measured when they started
    # Checks the deployed model's answers (given the app's URL) before any load; its report is kept.
    check_answers: Callable[[str], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Config:
    key: str  # "adaptive", "fixed_8"
    label: str
    batch_size: int  # -1 = adaptive

    @property
    def adaptive(self) -> bool:
        return self.batch_size < 0


ADAPTIVE = Config("adaptive", "adaptive", -1)


def fixed(size: int) -> Config:
    return Config(f"fixed_{size}", "off (1)" if size == 1 else f"fixed {size}", size)


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, default_slo_micros: int) -> None:
    parser.add_argument(
        "--slo-micros",
        type=int,
        default=default_slo_micros,
        help=f"both apps' latency SLO (default {default_slo_micros}); the engine's batch latency "
        "objective is 0.4 of it",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="closed loop connections (default 64)"
    )
    parser.add_argument(
        "--duration", type=float, default=3.0, help="measured seconds per run (default 3)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds before each run (default 1)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="fixed batch sizes to sweep"
    )
    parser.add_argument(
        "--adaptive-runs",
        type=int,
        default=2,
        help="closed loop runs of adaptive: before and after the sweep (default 2; median)",
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        help="open loop rates in req/s (default: --rate-fractions of adaptive's closed loop rate)",
    )
    parser.add_argument(
        "--rate-fractions",
        type=float,
        nargs="+",
        default=DEFAULT_RATE_FRACTIONS,
        help="open loop rates as fractions of adaptive's closed loop throughput "
        f"(default {' '.join(map(str, DEFAULT_RATE_FRACTIONS))})",
    )
    parser.add_argument(
        "--open-connections",
        type=int,
        default=256,
        help="open loop connections (default 256: enough that connections are not the limit)",
    )
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument("--no-open-loop", action="store_true", help="skip the open loop part")
    parser.add_argument(
        "--cache-size-bytes",
        type=int,
        default=0,
        help="prediction cache (default 0: off, so that only batching is measured)",
    )
    parser.add_argument(
        "--io-threads", type=int, default=1, help="frontend I/O threads (default 1)"
    )
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


class Study:
    """One cluster, two apps (fixed and adaptive), the sampler, and every run's record."""

    def __init__(self, workload: Workload, args: argparse.Namespace, loadgen: str) -> None:
        self.workload = workload
        self.args = args
        self.loadgen = loadgen
        self.runs: list[dict[str, Any]] = []
        self.phases: list[dict[str, Any]] = []  # adaptive runs, for the batch-size-over-time plot
        self.cluster: cluster_lib.LocalCluster | None = None
        self.sampler: cluster_lib.MetricsSampler | None = None
        self.adaptive_deployed_at = 0.0
        self.current_fixed_size = 1
        self.answer_check: dict[str, Any] | None = None

    def app(self, config: Config) -> str:
        return f"{self.workload.key}-{'adaptive' if config.adaptive else 'fixed'}"

    def model(self, config: Config) -> str:
        return self.app(config)  # one model per app, of the same name

    def start(self, stack: contextlib.ExitStack) -> None:
        from clipper.deployers.python import deploy_python_closure

        args, workload = self.args, self.workload
        self.cluster = cluster_lib.start_local_cluster(
            stack, workload.key, args.cache_size_bytes, args.io_threads
        )
        connection = self.cluster.connection
        self.sampler = stack.enter_context(cluster_lib.MetricsSampler(self.cluster.metrics_url))
        for config in (fixed(1), ADAPTIVE):
            app, model = self.app(config), self.model(config)
            connection.register_application(app, workload.input_type, "-1", args.slo_micros)
            print(f"deploying {model} (batch_size={config.batch_size}) ...", file=sys.stderr)
            deploy_python_closure(
                connection,
                name=model,
                version="1",
                input_type=workload.input_type,
                func=workload.model_function(),
                batch_size=config.batch_size,
            )
            connection.link_model_to_app(app, model)
            if config.adaptive:
                self.adaptive_deployed_at = time.monotonic()
            cluster_lib.wait_for_model_answer(self.cluster.url(app), workload.probe)
        if workload.check_answers is not None:
            self.answer_check = workload.check_answers(self.cluster.url(self.app(ADAPTIVE)))

    def set_fixed_size(self, size: int) -> None:
        assert self.cluster is not None
        if size != self.current_fixed_size:
            self.cluster.connection.set_model_batching(self.model(fixed(size)), batch_size=size)
            self.current_fixed_size = size
            time.sleep(0.1)  # the engine applies it at once; let an in-flight batch finish

    def measure(self, config: Config, mode: str, rate: float | None = None) -> dict[str, Any]:
        assert self.cluster is not None and self.sampler is not None
        args, workload = self.args, self.workload
        if not config.adaptive:
            self.set_fixed_size(config.batch_size)
        command = common.loadgen_command(
            self.loadgen,
            self.cluster.url(self.app(config)),
            connections=args.connections if mode == "closed" else args.open_connections,
            duration_seconds=args.duration,
            warmup_seconds=args.warmup,
            rate_per_second=rate,
            arrivals=args.arrivals,
            workload=workload.loadgen_workload,
            body=workload.body,
            extra_args=["--drain", "1"],
        )
        label = f"{mode} {config.label}" + (f" @ {rate:,.0f}/s" if rate else "")
        print(f"  {label}", file=sys.stderr)
        started = time.monotonic()
        with common.CpuMeter(self.cluster.server_pids) as cpu:
            run = common.run_loadgen(command, timeout_seconds=args.warmup + args.duration + 30)
        window = (started + args.warmup, started + args.warmup + args.duration)
        record = {
            "mode": mode,
            "config": config.key,
            "label": config.label,
            "batch_size": config.batch_size,
            "rate": rate,
            **summarize_run(run.report),
            "engine": self.engine_window(config, *window),
            "cpu_cores": cpu.summary(),
            "window_s": [round(t - self.adaptive_deployed_at, 2) for t in window],
            "loadgen": run.to_json(),
        }
        self.runs.append(record)
        if config.adaptive:
            self.phases.append({"label": label, "start": window[0], "end": window[1]})
        return record

    def engine_window(self, config: Config, start: float, end: float) -> dict[str, Any]:
        assert self.sampler is not None
        sampler, seconds = self.sampler, end - start
        app = cluster_lib.app_labels(self.app(config))
        model = cluster_lib.model_labels(self.model(config), "1")
        batches = sampler.delta(f"clipper_model_batches_total{{{model}}}", start, end)
        return {
            "goodput_rps": round(
                sampler.delta(f"clipper_app_slo_attained_total{{{app}}}", start, end) / seconds, 1
            ),
            "default_answers": sampler.delta(
                f"clipper_app_default_answers_total{{{app}}}", start, end
            ),
            "batches_per_s": round(batches / seconds, 1),
            "predictions_per_s": round(
                sampler.delta(f"clipper_model_predictions_total{{{model}}}", start, end) / seconds,
                1,
            ),
            "mean_batch_size": _round(
                sampler.histogram_mean("clipper_model_batch_size", model, start, end), 2
            ),
            "mean_batch_latency_us": _round(
                _seconds_to_micros(
                    sampler.histogram_mean("clipper_model_batch_latency_seconds", model, start, end)
                ),
                0,
            ),
            "learned_batch_size_end": sampler.value(
                f"clipper_model_learned_batch_size{{{model}}}", end
            ),
            "expired_tasks": sampler.delta(
                f"clipper_model_expired_tasks_total{{{model}}}", start, end
            ),
            "batch_cuts": {
                reason: sampler.delta(
                    f'clipper_model_batch_cuts_total{{{model},reason="{reason}"}}', start, end
                )
                for reason in CUT_REASONS
            },
        }

    def batching_state(self) -> Any:
        assert self.cluster is not None
        with contextlib.suppress(Exception):
            return self.cluster.connection.get_model_batching(self.model(ADAPTIVE))
        return None


def _seconds_to_micros(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e6


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summarize_run(report: dict[str, Any]) -> dict[str, Any]:
    duration = report.get("duration_s") or 1.0
    answers = report["requests"]
    defaults = report["default_answers"]
    latency = report["latency_us"]
    return {
        "answers_rps": round(answers / duration, 1),
        "model_answers_rps": round((answers - defaults) / duration, 1),
        "default_share": round(defaults / answers, 4) if answers else None,
        "p50_ms": _ms(latency.get("p50")),
        "p99_ms": _ms(latency.get("p99")),
        "p999_ms": _ms(latency.get("p999")),
        "errors": report["errors"]["total"],
        "non_2xx": report.get("non_2xx", 0),
        "unfinished": report.get("unfinished", 0) + report.get("lost", 0),
    }


def _ms(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 2)


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    return common.median([run[key] for run in runs])


# --------------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------------


def run_study(workload: Workload, args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    loadgen = common.find_loadgen(args.loadgen)
    study = Study(workload, args, loadgen)
    sizes = sorted(set(args.sizes))
    calibration: Any = None
    with contextlib.ExitStack() as stack:
        study.start(stack)
        print("closed loop sweep ...", file=sys.stderr)
        for _ in range(max(1, args.adaptive_runs // 2 + args.adaptive_runs % 2)):
            study.measure(ADAPTIVE, "closed")
        for size in sizes:
            study.measure(fixed(size), "closed")
        for _ in range(args.adaptive_runs // 2):
            study.measure(ADAPTIVE, "closed")
        closed = closed_summary(study.runs, sizes)
        best = closed["best_fixed"]
        rates = open_loop_rates(args, closed)
        if not args.no_open_loop and rates:
            print(
                f"open loop at {', '.join(f'{r:,.0f}' for r in rates)} req/s ...", file=sys.stderr
            )
            open_configs = [fixed(1), fixed(best["batch_size"]), ADAPTIVE] if best else [ADAPTIVE]
            open_configs = list(dict.fromkeys(open_configs))
            for rate in rates:
                for config in open_configs:
                    study.measure(config, "open", rate)
        batching_state = study.batching_state()
        if workload.calibration is not None:
            calibration = workload.calibration()
        timeline = adaptive_timeline(study)
        assert study.sampler is not None and study.cluster is not None
        sampler_failures = study.sampler.failures
        cluster_info = {"frontend_pid": study.cluster.frontend_pid, **study.cluster.start_kwargs}

    open_rows = open_summary(study.runs)
    checks = target_checks(workload, args, closed)
    header = (
        f"{workload.title} | SLO {args.slo_micros / 1000:g} ms (batch latency objective "
        f"{0.4 * args.slo_micros / 1000:g} ms) | {os.cpu_count()} CPUs | {args.duration:g} s runs "
        f"(+{args.warmup:g} s warmup) | cache {args.cache_size_bytes} bytes"
    )
    print_summary(header, closed, open_rows, checks, study.runs, calibration)
    if study.answer_check:
        print(f"answer check: {study.answer_check}")
    stem = args.output.stem
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plots = {
        "sweep": plot_sweep(closed, args, workload, args.output.with_name(f"{stem}_sweep.png")),
        "open_loop": plot_open_loop(
            open_rows, args, workload, args.output.with_name(f"{stem}_open_loop.png")
        ),
        "adaptive_batch_size": plot_timeline(
            timeline, args, workload, args.output.with_name(f"{stem}_adaptive_batch_size.png")
        ),
    }
    payload = {
        "study": workload.key,
        "title": workload.title,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": common.machine_info(),
        "source": cluster_lib.source_revision(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workload": workload.description,
        "model_calibration": calibration,
        "answer_check": study.answer_check,
        "cluster": cluster_info,
        "loadgen": loadgen,
        "closed": closed,
        "open": open_rows,
        "checks": checks,
        "batching_state_at_end": batching_state,
        "adaptive_timeline": timeline,
        "metrics_sampler_failures": sampler_failures,
        "plots": {name: str(path) if path else None for name, path in plots.items()},
        "runs": study.runs,
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"\nwrote {path} ({payload['wall_seconds']} s)")
    for name, plot in plots.items():
        if plot:
            print(f"plot {name}: {plot}")
    return 0


def closed_summary(runs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    closed = [run for run in runs if run["mode"] == "closed"]
    rows: list[dict[str, Any]] = []

    def row(config_key: str, label: str, batch_size: int) -> dict[str, Any] | None:
        mine = [run for run in closed if run["config"] == config_key]
        if not mine:
            return None
        return {
            "config": config_key,
            "label": label,
            "batch_size": batch_size,
            "runs": len(mine),
            "model_answers_rps": median_of(mine, "model_answers_rps"),
            "answers_rps": median_of(mine, "answers_rps"),
            "goodput_rps": common.median([run["engine"]["goodput_rps"] for run in mine]),
            "default_share": median_of(mine, "default_share"),
            "p50_ms": median_of(mine, "p50_ms"),
            "p99_ms": median_of(mine, "p99_ms"),
            "p999_ms": median_of(mine, "p999_ms"),
            "mean_batch_size": common.median([run["engine"]["mean_batch_size"] for run in mine]),
            "mean_batch_latency_us": common.median(
                [run["engine"]["mean_batch_latency_us"] for run in mine]
            ),
            "errors": sum(run["errors"] + run["non_2xx"] for run in mine),
            "other_cores_max": max(run["cpu_cores"]["other"] for run in mine),
            "all_model_answers_rps": [run["model_answers_rps"] for run in mine],
        }

    for size in sizes:
        found = row(f"fixed_{size}", fixed(size).label, size)
        if found:
            rows.append(found)
    adaptive = row("adaptive", "adaptive", -1)
    fixed_rows = [r for r in rows if r["model_answers_rps"] is not None]
    best = max(fixed_rows, key=lambda r: r["model_answers_rps"], default=None)
    off = next((r for r in rows if r["batch_size"] == 1), None)
    return {"fixed": rows, "adaptive": adaptive, "best_fixed": best, "off": off}


def open_loop_rates(args: argparse.Namespace, closed: dict[str, Any]) -> list[float]:
    if args.rates:
        return sorted(args.rates)
    adaptive = closed.get("adaptive")
    if not adaptive or not adaptive["model_answers_rps"]:
        return []
    base = adaptive["model_answers_rps"]
    return sorted({max(50.0, round(base * fraction, -2)) for fraction in args.rate_fractions})


def open_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "config": run["config"],
            "label": run["label"],
            "batch_size": run["batch_size"],
            "rate": run["rate"],
            "model_answers_rps": run["model_answers_rps"],
            "goodput_rps": run["engine"]["goodput_rps"],
            "default_share": run["default_share"],
            "p50_ms": run["p50_ms"],
            "p99_ms": run["p99_ms"],
            "unfinished": run["unfinished"],
            "mean_batch_size": run["engine"]["mean_batch_size"],
            "other_cores": run["cpu_cores"]["other"],
        }
        for run in runs
        if run["mode"] == "open"
    ]


def target_checks(
    workload: Workload, args: argparse.Namespace, closed: dict[str, Any]
) -> list[dict[str, Any]]:
    """Issue 3's targets (informational: benchmarks never fail a build)."""
    checks: list[dict[str, Any]] = []
    adaptive, best, off = closed["adaptive"], closed["best_fixed"], closed["off"]
    slo_ms = args.slo_micros / 1000

    def check(name: str, value: Any, met: bool | None, goal: str) -> None:
        checks.append({"check": name, "value": value, "goal": goal, "met": met})

    if adaptive and best:
        value = common.ratio(adaptive["model_answers_rps"], best["model_answers_rps"])
        check(
            f"adaptive / best fixed ({best['label']}) throughput",
            value,
            value is not None and value >= 0.9,
            ">= 0.9",
        )
    if adaptive:
        p99 = adaptive["p99_ms"]
        check(
            "adaptive p99 (ms), closed loop",
            p99,
            p99 is not None and p99 <= slo_ms,
            f"<= SLO {slo_ms:g}",
        )
        share = adaptive["default_share"]
        check(
            "adaptive default answers share", share, share is not None and share <= 0.01, "<= 0.01"
        )
    if adaptive and off:
        value = common.ratio(adaptive["model_answers_rps"], off["model_answers_rps"])
        goal = workload.off_target
        check(
            "adaptive / batching off throughput",
            value,
            None if goal is None else (value is not None and value >= goal),
            f">= {goal:g}" if goal is not None else "(no target)",
        )
        # Batching off answers fewer queries than one replica could (overloaded, most are late):
        # the ratio against what batches of one could deliver back to back is the fairer one.
        if off["mean_batch_latency_us"]:
            capacity = 1e6 / off["mean_batch_latency_us"]
            value = common.ratio(adaptive["model_answers_rps"], capacity)
            check(
                f"adaptive / batching off capacity (1/batch latency = {capacity:,.0f}/s)",
                value,
                None if goal is None else (value is not None and value >= goal),
                f">= {goal:g}" if goal is not None else "(no target)",
            )
    return checks


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def print_summary(
    header: str,
    closed: dict[str, Any],
    open_rows: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    calibration: Any,
) -> None:
    print(header)
    if calibration:
        print(f"model calibration (per replica, idle core): {calibration}")
    columns = (
        f"{'closed loop':<14}{'model ans/s':>12}{'goodput/s':>11}{'defaults':>9}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'batch':>7}{'batch ms':>9}{'other':>7}"
    )
    print(columns)
    print("-" * len(columns))
    rows = list(closed["fixed"]) + ([closed["adaptive"]] if closed["adaptive"] else [])
    for row in rows:
        share = row["default_share"]
        latency = row["mean_batch_latency_us"]
        print(
            f"{row['label']:<14}{common.format_number(row['model_answers_rps'], 0):>12}"
            f"{common.format_number(row['goodput_rps'], 0):>11}"
            f"{'-' if share is None else f'{100 * share:.1f}%':>9}"
            f"{common.format_number(row['p50_ms'], 2):>8}{common.format_number(row['p99_ms'], 2):>8}"
            f"{common.format_number(row['mean_batch_size'], 1):>7}"
            f"{'-' if latency is None else f'{latency / 1000:.2f}':>9}"
            f"{common.format_number(row['other_cores_max'], 2):>7}"
        )
    if closed["adaptive"] and closed["adaptive"]["runs"] > 1:
        values = ", ".join(f"{v:,.0f}" for v in closed["adaptive"]["all_model_answers_rps"])
        print(f"adaptive runs (model ans/s): {values}; the table shows the median")
    if open_rows:
        print()
        columns = (
            f"{'open loop':<14}{'rate/s':>9}{'model ans/s':>12}{'defaults':>9}{'p50 ms':>9}"
            f"{'p99 ms':>9}{'batch':>7}{'unfinished':>11}"
        )
        print(columns)
        print("-" * len(columns))
        for row in open_rows:
            share = row["default_share"]
            print(
                f"{row['label']:<14}{common.format_number(row['rate'], 0):>9}{common.format_number(row['model_answers_rps'], 0):>12}"
                f"{'-' if share is None else f'{100 * share:.1f}%':>9}"
                f"{common.format_number(row['p50_ms'], 2):>9}{common.format_number(row['p99_ms'], 2):>9}"
                f"{common.format_number(row['mean_batch_size'], 1):>7}{row['unfinished']:>11,}"
            )
    print(
        "model ans/s: answers from the model (not the default) per second, by the load generator; "
        "goodput/s: the engine's answers within the SLO; batch: mean inputs per batch sent; "
        "other: cores used outside the study."
    )
    noisy = [
        f"{run['mode']} {run['label']}"
        for run in runs
        if run["cpu_cores"]["other"] > NOISY_OTHER_CORES
    ]
    if noisy:
        print(
            f"WARNING: other work used > {NOISY_OTHER_CORES} cores during {', '.join(noisy)}; "
            "those figures are disturbed: rerun on a quiet machine."
        )
    if checks:
        print()
        print("issue 3 targets:")
        for item in checks:
            verdict = {True: "met", False: "NOT met", None: "-"}[item["met"]]
            print(
                f"  {item['check']:<48} {common.format_number(item['value'], 3):>10}  goal {item['goal']:<12} "
                f"{verdict}"
            )


def adaptive_timeline(study: Study) -> dict[str, Any]:
    """The adaptive model's learned batch size (gauge) and, per 0.5 s bin, the mean batch sent and
    the mean batch latency, all against seconds since it was deployed."""
    assert study.sampler is not None
    sampler, origin = study.sampler, study.adaptive_deployed_at
    labels = cluster_lib.model_labels(study.model(ADAPTIVE), "1")
    times, learned = sampler.series(f"clipper_model_learned_batch_size{{{labels}}}", origin)
    kept = list(zip(times, learned))
    bins: list[dict[str, Any]] = []
    if kept:
        end = kept[-1][0]
        step = 0.5
        start = 0.0
        while start + step <= end:
            a, b = origin + start, origin + start + step
            size = sampler.histogram_mean("clipper_model_batch_size", labels, a, b)
            latency = _seconds_to_micros(
                sampler.histogram_mean("clipper_model_batch_latency_seconds", labels, a, b)
            )
            if size is not None:
                bins.append(
                    {
                        "t": round(start + step / 2, 2),
                        "mean_batch_size": round(size, 2),
                        "mean_batch_latency_us": None if latency is None else round(latency),
                    }
                )
            start += step
    return {
        "objective_micros": 0.4 * study.args.slo_micros,
        "learned": [[round(t, 2), v] for t, v in kept],
        "bins": bins,
        "phases": [
            {
                "label": phase["label"],
                "start": round(phase["start"] - origin, 2),
                "end": round(phase["end"] - origin, 2),
            }
            for phase in study.phases
        ],
    }


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(
    closed: dict[str, Any], args: argparse.Namespace, workload: Workload, path: Path
) -> Path | None:
    """Throughput and p99 against the batch size, fixed sizes as a line and adaptive as a star at
    the mean batch it sent (the shape of the Clipper paper's batching figure)."""
    rows = [r for r in closed["fixed"] if r["model_answers_rps"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True)
    sizes = [r["batch_size"] for r in rows]
    top.plot(sizes, [r["model_answers_rps"] for r in rows], "o-", label="fixed batch size")
    bottom.plot(sizes, [r["p99_ms"] for r in rows], "o-", label="fixed batch size p99")
    bottom.plot(sizes, [r["p50_ms"] for r in rows], "o:", color="C0", alpha=0.5, label="fixed p50")
    adaptive = closed["adaptive"]
    if adaptive and adaptive["model_answers_rps"] is not None:
        x = adaptive["mean_batch_size"] or 1
        top.axhline(adaptive["model_answers_rps"], color="C1", ls="--", lw=1)
        top.plot(
            [x],
            [adaptive["model_answers_rps"]],
            "*",
            color="C1",
            ms=15,
            label=f"adaptive (mean batch {x:.1f})",
        )
        bottom.plot([x], [adaptive["p99_ms"]], "*", color="C1", ms=15, label="adaptive p99")
    disturbed = [r for r in rows if r["other_cores_max"] > NOISY_OTHER_CORES]
    if disturbed:
        for axis, key in ((top, "model_answers_rps"), (bottom, "p99_ms")):
            axis.plot(
                [r["batch_size"] for r in disturbed],
                [r[key] for r in disturbed],
                "x",
                color="black",
                ms=9,
                label=f"disturbed (other work > {NOISY_OTHER_CORES} cores)",
            )
    for r in rows:
        share = r["default_share"] or 0
        if share >= 0.01:
            bottom.annotate(
                f"{100 * share:.0f}% dflt",
                (r["batch_size"], r["p99_ms"]),
                textcoords="offset points",
                xytext=(4, -12),
                fontsize=7,
                color="C3",
            )
    slo_ms = args.slo_micros / 1000
    bottom.axhline(slo_ms, color="C3", ls="--", lw=1, label=f"SLO {slo_ms:g} ms")
    top.set_ylabel("model answers / s")
    top.set_title(
        f"{workload.title}\nclosed loop, {args.connections} connections, SLO {slo_ms:g} ms"
    )
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("batch size (fixed: the cap; adaptive: mean batch sent)")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(sizes, [str(s) for s in sizes])
    top.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_open_loop(
    rows: list[dict[str, Any]], args: argparse.Namespace, workload: Workload, path: Path
) -> Path | None:
    if not rows:
        return None
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for label in labels:
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["rate"])
        rates = [r["rate"] for r in mine]
        left.plot(rates, [r["model_answers_rps"] for r in mine], "o-", label=label)
        right.plot(rates, [r["p99_ms"] for r in mine], "o-", label=label)
    disturbed = [r for r in rows if r["other_cores"] > NOISY_OTHER_CORES]
    if disturbed:
        for axis, key in ((left, "model_answers_rps"), (right, "p99_ms")):
            axis.plot(
                [r["rate"] for r in disturbed],
                [r[key] for r in disturbed],
                "x",
                color="black",
                ms=9,
                label=f"disturbed (other work > {NOISY_OTHER_CORES} cores)",
            )
    all_rates = sorted({r["rate"] for r in rows})
    left.plot(all_rates, all_rates, color="grey", ls=":", lw=1, label="offered")
    slo_ms = args.slo_micros / 1000
    right.axhline(slo_ms, color="C3", ls="--", lw=1, label=f"SLO {slo_ms:g} ms")
    right.set_yscale("log")
    left.set_xlabel("offered rate (req/s, Poisson)")
    right.set_xlabel("offered rate (req/s, Poisson)")
    left.set_ylabel("model answers / s")
    right.set_ylabel("p99 latency (ms, from intended send)")
    left.set_title("throughput from the model")
    right.set_title("p99 latency (default answers included)")
    for axis in (left, right):
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    figure.suptitle(f"{workload.title}: open loop, {args.open_connections} connections")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_timeline(
    timeline: dict[str, Any], args: argparse.Namespace, workload: Workload, path: Path
) -> Path | None:
    if not timeline["learned"]:
        return None
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    times = [t for t, _ in timeline["learned"]]
    top.step(
        times,
        [v for _, v in timeline["learned"]],
        where="post",
        lw=1.2,
        label="controller's batch size (clipper_model_learned_batch_size)",
    )
    bins = timeline["bins"]
    top.plot(
        [b["t"] for b in bins],
        [b["mean_batch_size"] for b in bins],
        ".",
        color="C1",
        ms=4,
        label="mean batch sent (per 0.5 s)",
    )
    bottom.plot(
        [b["t"] for b in bins if b["mean_batch_latency_us"] is not None],
        [b["mean_batch_latency_us"] / 1000 for b in bins if b["mean_batch_latency_us"] is not None],
        ".",
        color="C2",
        ms=4,
        label="mean batch latency (per 0.5 s)",
    )
    objective_ms = timeline["objective_micros"] / 1000
    bottom.axhline(
        objective_ms, color="C3", ls="--", lw=1, label=f"objective {objective_ms:g} ms (0.4 x SLO)"
    )
    for index, phase in enumerate(timeline["phases"]):
        for axis in (top, bottom):
            axis.axvspan(phase["start"], phase["end"], color="grey", alpha=0.12, lw=0)
        top.annotate(
            phase["label"].replace("closed adaptive", "closed 64").replace("open adaptive @ ", ""),
            ((phase["start"] + phase["end"]) / 2, 1.0),
            xycoords=("data", "axes fraction"),
            textcoords="offset points",
            xytext=(0, 2 + 9 * (index % 2)),
            ha="center",
            fontsize=7,
        )
    top.set_ylabel("batch size (inputs)")
    bottom.set_ylabel("batch latency (ms)")
    bottom.set_xlabel(
        "seconds since the adaptive model was deployed (shaded: measured windows of its runs, "
        "each after 1 s of warm-up; gaps: other configurations' runs)"
    )
    top.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.06, 0.98))
    figure.suptitle(f"{workload.title}: the adaptive controller over time", y=0.995)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
