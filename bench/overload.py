"""Overload: goodput and latency at 1x, 2x and 4x a model's measured capacity (admission control).

Two models, each behind two apps with a 100 ms SLO (`overload`: refused queries get 429;
`overload-default`: registered with overload="default", refused queries get its default output):

  cpu          W3's model (models.CalibratedBurner: ~1 ms per call + ~20 us per input of real CPU
               work, adaptive batching). Its capacity is what the cores left over by the frontend and
               the load generator can compute: on a small machine the study measures the machine.
  accelerator  models.FixedBatchTime: 20 ms per batch of up to 32 inputs, sleeping (no CPU), like a
               model on an accelerator: capacity ~1,600/s per replica, set by the model.

and three placements:

  unpinned     as users run it: the kernel places everything.
  pinned       the whole cluster (frontend and replica sharing) on --server-cpus, the load generator on
               --loadgen-cpus of its own (sched_setaffinity, like taskset).
  isolated     the deployment rule of docs/operations.md: the replica on CPUs of its own
               (--replica-cpus, through LocalContainerManager's model_cpus), the frontend on others
               (--frontend-cpus, its frontend_cpus). On a 2-core machine the load generator has no
               third CPU: it shares the frontend's (--isolated-loadgen-cpus, default the frontend's),
               which costs the frontend, never the model, so the figures understate the rule. The
               model's capacity is what one CPU computes; the frontend must read, judge and refuse
               the rest on its own CPU.

For each scenario and placement the capacity is measured first: closed loop with enough connections
to keep full batches queued (the queue stays inside the SLO, so nothing is refused), answers within the
SLO per second. It is measured --capacity-runs times (2) before the multiples, which take the median of
those as their reference, and once more after them; the verdict divides by the median of all of them,
and a study whose capacity runs spread by more than 10% (max / min) is flagged: one capacity run once
measured the light model 20% high, its 2x then overran the frontend and load generator, and a verdict
dividing by that one figure was the study's weak point. Then open loop Poisson arrivals at each
multiple of it, each run measuring, from the load generator's side:

  goodput       2xx model answers (not the default) within the SLO, per second of the window
  admitted      p50/p99/max latency of the queries answered by the model (latency from the intended
                send time, so waiting for a free connection counts)
  429 share     queries refused at arrival (admission control), and default answers
  rss           the frontend process's RSS before the runs, its peak and after each run
  accounting    where the model's time went (a second table): goodput / capacity = busy x on-CPU
                share x inputs per CPU second x useful share, each against the capacity run, with
                late inputs, batch sizes and deadline cuts, the replica's and the frontend's CPU
                and run-queue wait (model_time_accounting)

The open loop is a client population sized for its rate: by Little's law it needs as many
connections as requests in flight, and admitted queries may wait up to the SLO, so each run gets
rate x SLO x --connection-safety connections (within the descriptor limits of the load generator and
the frontend; --connections fixes it), spread over loopback client addresses 127.0.0.2 onwards
(--source-addresses; by default enough that no address holds more than half the frontend's
max_connections_per_client_address). A run where requests still waited for a free connection, or left
the load generator late, measured the load generator, not the server: it is flagged
(`loadgen_limited`) and is not a figure of record.

and, at --default-at (2x), the same load on the overload="default" app. The issue's target: goodput at
2x >= 0.9 x capacity (also given against the best goodput any run of the study reached, where the
closed loop understates the model). Owns bench/results/overload.json and overload.png. About 6
minutes with the defaults (6 studies of about a minute).

    python bench/overload.py
    python bench/overload.py --scenarios accelerator --placements pinned --duration 10
    python bench/overload.py --scenarios cpu --placements isolated unpinned --multipliers 1 2 2 2 4

(a repeated multiplier repeats the run against the same capacity run; the 2x verdict is the median.)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster as cluster_lib
import common
import models

APP = "overload"
# The open loop's client population: rate x SLO x this many connections (bursts of the Poisson arrivals,
# answers a little past the SLO).
CONNECTION_SAFETY = 1.5
MIN_OPEN_LOOP_CONNECTIONS = 64
# Descriptors left to each process beside the population (the frontend's RPC, metrics and admin sockets).
DESCRIPTOR_MARGIN = 1024
# A source address holds at most this share of the frontend's max_connections_per_client_address.
PER_ADDRESS_SHARE_OF_CAP = 0.5
# Beyond these the load generator was the bottleneck: the share of measured requests that waited for a
# free connection, and its send lag's p99 as a share of the SLO.
MAX_WAITED_SHARE = 0.001
MAX_SEND_LAG_P99_SHARE_OF_SLO = 0.1
# Capacity runs whose max / min exceeds 1 + this disagree: the study's reference is uncertain.
MAX_CAPACITY_SPREAD = 0.10
DEFAULT_APP = "overload-default"
MODEL = "overload-model"
TARGET_GOODPUT_AT_2X = 0.9
SCENARIOS = ("cpu", "accelerator")
PLACEMENTS = ("unpinned", "pinned", "isolated")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--placements", nargs="+", choices=PLACEMENTS, default=list(PLACEMENTS))
    parser.add_argument("--server-cpus", default="0", help="pinned: the cluster's CPUs (default 0)")
    parser.add_argument("--loadgen-cpus", default="1", help="pinned: the load generator's (1)")
    parser.add_argument("--frontend-cpus", default="0", help="isolated: the frontend's CPUs (0)")
    parser.add_argument("--replica-cpus", default="1", help="isolated: the replica's CPUs (1)")
    parser.add_argument(
        "--isolated-loadgen-cpus",
        help="isolated: the load generator's CPUs (default: the frontend's; give a third CPU set "
        "where the machine has one)",
    )
    parser.add_argument("--slo-micros", type=int, default=100_000, help="the apps' SLO (100 ms)")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    parser.add_argument(
        "--capacity-runs",
        type=int,
        default=2,
        help="capacity runs before the multiples (their median sets the rates); one more follows "
        "them, and the verdict divides by the median of all (default 2)",
    )
    parser.add_argument(
        "--capacity-connections",
        type=int,
        help="closed loop connections of the capacity run (default: cpu 256, enough for full "
        "batches of 128; accelerator 64, two batches of 32)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        help="open loop connections, every run (default: rate x SLO x --connection-safety, within "
        "the descriptor limits)",
    )
    parser.add_argument(
        "--connection-safety",
        type=float,
        default=CONNECTION_SAFETY,
        help=f"open loop connections per request in flight at the SLO ({CONNECTION_SAFETY})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        help="ceiling on the open loop's connections (default: the smaller open-file limit of this "
        f"process and the frontend, and max_connections_per_io_thread, less {DESCRIPTOR_MARGIN})",
    )
    parser.add_argument(
        "--source-addresses",
        type=int,
        help="loopback client addresses of the open loop (default: enough that each holds at most "
        f"{PER_ADDRESS_SHARE_OF_CAP:g} x the frontend's max_connections_per_client_address)",
    )
    parser.add_argument(
        "--default-at",
        type=float,
        default=2.0,
        help="multiplier of the run on the overload='default' app (0 skips it)",
    )
    parser.add_argument("--fixed-micros", type=float, default=1000.0, help="cpu: per call")
    parser.add_argument("--per-input-micros", type=float, default=20.0, help="cpu: per input")
    parser.add_argument(
        "--batch-micros", type=float, default=20_000.0, help="accelerator: per batch"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="accelerator: largest batch")
    parser.add_argument(
        "--rpc-thread",
        choices=("shared", "dedicated"),
        help="the frontend's model RPC: on the I/O thread's loop or a thread of its own (default: "
        "start_clipper's, shared)",
    )
    parser.add_argument(
        "--replica-prefetch-full-batches",
        choices=("on", "off"),
        help="send a replica busy with a batch a full one to wait behind it (the engine option of "
        "that name; default: the engine's default, on)",
    )
    parser.add_argument(
        "--loadgen-nice",
        type=int,
        default=0,
        help="run the load generator at this niceness (nice -n; default 0): with 1-19 the server's "
        "processes get the CPUs first on a machine too small to give the generator its own, as if "
        "the load came from elsewhere; a generator that then falls behind flags its run",
    )
    parser.add_argument("--loadgen", help="path to clipper-loadgen (default: installed or built)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "overload.json")
    args = parser.parse_args(argv)
    if args.connection_safety <= 0:
        parser.error("--connection-safety must be positive")
    if not 0 <= args.loadgen_nice <= 19:
        parser.error("--loadgen-nice is 0 to 19")
    if args.capacity_runs < 1:
        parser.error("--capacity-runs must be at least 1")
    if args.source_addresses is not None and not 1 <= args.source_addresses <= 253:
        parser.error("--source-addresses is 1 to 253 (127.0.0.2 .. 127.0.0.254)")
    if "pinned" in args.placements:
        server, loadgen = common.parse_cpus(args.server_cpus), common.parse_cpus(args.loadgen_cpus)
        if server & loadgen:
            parser.error("--server-cpus and --loadgen-cpus overlap; give them separate CPUs")
        if not (server | loadgen) <= os.sched_getaffinity(0):
            parser.error("--server-cpus / --loadgen-cpus name CPUs this process may not use")
    if "isolated" in args.placements:
        frontend, replica = common.parse_cpus(args.frontend_cpus), common.parse_cpus(args.replica_cpus)
        if frontend & replica:
            parser.error("--frontend-cpus and --replica-cpus overlap; isolation needs separate CPUs")
        if not (frontend | replica) <= os.sched_getaffinity(0):
            parser.error("--frontend-cpus / --replica-cpus name CPUs this process may not use")
    return args


@dataclass
class Study:
    """One scenario in one placement: its cluster, and where its processes run."""

    scenario: str
    placement: str
    cluster: cluster_lib.LocalCluster
    sampler: cluster_lib.MetricsSampler
    loadgen_cpus: set[int] | None

    @property
    def name(self) -> str:
        return f"{self.scenario}/{self.placement}"


def prefetch_option(args: argparse.Namespace) -> dict[str, bool]:
    """start_clipper's replica_prefetch_full_batches when --replica-prefetch-full-batches is given."""
    if args.replica_prefetch_full_batches is None:
        return {}
    return {"replica_prefetch_full_batches": args.replica_prefetch_full_batches == "on"}


def capacity_connections(args: argparse.Namespace, scenario: str) -> int:
    if args.capacity_connections:
        return args.capacity_connections
    return 256 if scenario == "cpu" else 2 * args.batch_size


def one_run(
    name: str,
    app: str,
    args: argparse.Namespace,
    loadgen: str,
    study: Study,
    rate: float | None,
) -> dict[str, Any]:
    """One load generator run (open loop at `rate`, or the closed loop capacity run)."""
    cluster, sampler = study.cluster, study.sampler
    population = (
        client_population(args, rate, connection_ceiling(args, cluster.frontend_pid))
        if rate
        else None
    )
    connections = (
        population["connections"] if population else capacity_connections(args, study.scenario)
    )
    command = common.loadgen_command(
        loadgen,
        cluster.url(app),
        connections=connections,
        duration_seconds=args.duration,
        warmup_seconds=args.warmup,
        rate_per_second=rate,
        workload="w1",
        source_addresses=population["source_addresses"] if population else 0,
        extra_args=["--slo-us", str(args.slo_micros), "--drain", "2"],
    )
    if args.loadgen_nice:
        command = ["nice", "-n", str(args.loadgen_nice), *command]
    label = (
        f"{rate:,.0f}/s open loop, {connections:,} connections from "
        f"{population['source_addresses']} addresses"
        if population
        else f"closed loop {connections}"
    )
    print(f"{study.name} {name}: {app}, {label} ...", file=sys.stderr)
    rss = common.RssSampler(cluster.frontend_pid) if cluster.frontend_pid else None
    with contextlib.ExitStack() as stack:
        if rss:
            stack.enter_context(rss)
        cpu = stack.enter_context(common.CpuMeter(cluster.server_pids))
        started = time.monotonic()
        waited_before = runqueue_wait_seconds(cluster.frontend_pid)
        # The frontend's and the replicas' scheduler times over the measured window alone.
        processes = WindowSchedstat(
            {"frontend": [cluster.frontend_pid] if cluster.frontend_pid else [],
             "replica": cluster.replica_pids()},
            args.warmup,
            args.duration,
        )  # fmt: skip
        report = common.run_loadgen(
            command, timeout_seconds=args.warmup + args.duration + 60, cpus=study.loadgen_cpus
        ).report
        processes.finish()
        waited = runqueue_wait_seconds(cluster.frontend_pid) - waited_before
        elapsed = time.monotonic() - started
    window = (started + args.warmup, started + args.warmup + args.duration)
    labels = cluster_lib.app_labels(app)
    model_labels = cluster_lib.model_labels(MODEL, "1")
    outcomes = report.get("latency_by_outcome_us", {})
    answered = outcomes.get("200", {})
    requests = report["requests"] or 1
    refused = report["status"].get("429", 0) + report["status"].get("503", 0)
    limited_because = loadgen_limits(report, args.slo_micros) if rate else []
    if limited_because:
        reasons = "; ".join(limited_because)
        print(f"  the load generator fell behind the offered rate: {reasons}", file=sys.stderr)
    return {
        "run": name,
        "app": app,
        "offered_rps": report.get("offered_rps"),
        "client_population": population,
        # The load generator queued or lagged: the run was no longer an open loop at the offered
        # rate (too few connections for the latencies the server gave, or no CPU for the generator).
        "loadgen_limited": bool(limited_because),
        "loadgen_limited_because": limited_because,
        "goodput_rps": round(report["answers_within_slo"] / args.duration, 1),
        "requests": report["requests"],
        "status": report["status"],
        "refused_share": round(refused / requests, 4),
        "default_share": round(report["default_answers"] / requests, 4),
        "admitted_latency_ms": {
            key: common.rounded(answered.get(key) and answered[key] / 1000)
            for key in ("p50", "p99", "max")
        },
        "latency_by_outcome_us": outcomes,
        "engine": {
            "slo_attained_rps": sampler.rate(
                f"clipper_app_slo_attained_total{{{labels}}}", *window
            ),
            "rejected_deadline_rps": sampler.rate(
                f'clipper_app_rejected_total{{{labels},reason="deadline"}}', *window
            ),
            # Refused because they had waited out the SLO unread (the lag gate).
            "rejected_lag_rps": sampler.rate(
                f'clipper_app_rejected_total{{{labels},reason="lag"}}', *window
            ),
            # The frontend's own latency, counted from each request's arrival (its arrival clock):
            # what the load generator measures beyond it waited before the frontend saw the bytes.
            "frontend_latency_mean_ms": common.rounded(
                (sampler.histogram_mean("clipper_app_latency_seconds", labels, *window) or 0)
                * 1000
            ),
            "frontend_latency_p99_ms": common.rounded(
                (
                    sampler.histogram_quantile(
                        "clipper_app_latency_seconds", labels, 0.99, *window
                    )
                    or 0
                )
                * 1000
            ),
            # Why the replica's batches were cut (per second): "deadline" cuts are batches kept
            # small so the oldest queued task still makes its deadline.
            "batch_cuts_rps": {
                reason: sampler.rate(
                    f"clipper_model_batch_cuts_total{{{model_labels},reason=\"{reason}\"}}",
                    *window,
                )
                for reason in ("full", "deadline", "wait_expired", "queue_empty")
            },
            "learned_batch_size_end": sampler.value(
                f"clipper_model_learned_batch_size{{{model_labels}}}", window[1]
            ),
            "batch_latency_mean_ms": common.rounded(
                (
                    sampler.histogram_mean(
                        "clipper_model_batch_latency_seconds", model_labels, *window
                    )
                    or 0
                )
                * 1000
            ),
            "shed_rps": sampler.rate(f"clipper_model_shed_tasks_total{{{model_labels}}}", *window),
            "expired_rps": sampler.rate(
                f"clipper_model_expired_tasks_total{{{model_labels}}}", *window
            ),
            # Full batches sent behind the one a replica held (--replica-prefetch-full-batches).
            "prefetched_batches_rps": sampler.rate(
                f"clipper_model_prefetched_batches_total{{{model_labels}}}", *window
            ),
            "mean_batch_size": common.rounded(
                sampler.histogram_mean(
                    "clipper_model_batch_size", model_labels, *window
                )
            ),
        },
        "accounting": model_time_accounting(sampler, app, window, processes.summary()),
        "rss_mb": {
            **(rss.summary() if rss else {}),
            "after": common.megabytes(common.rss_bytes(cluster.frontend_pid))
            if cluster.frontend_pid
            else None,
        },
        "cpu_cores": cpu.summary(),
        # Seconds the frontend's threads spent runnable but waiting for a CPU, per second of the
        # run: the queueing no request stamp sees (it happens before the I/O thread wakes).
        "frontend_runqueue_wait_per_s": common.rounded(waited / elapsed, 3),
        "loadgen": common.loadgen_summary(
            report,
            command,
            (
                "throughput_rps",
                "connections",
                "source_addresses",
                "established",
                "seconds_to_connect_all",
                "send_lag_us",
                "waited_for_connection",
                "max_queue_depth",
                "lost",
            ),
        ),
    }


class WindowSchedstat:
    """On-CPU and run-queue-wait seconds of groups of processes (all their threads, from
    /proc/<pid>/task/*/schedstat) between `delay` and `delay + duration` seconds from now: the
    measured window of a load generator run, taken by timers while it runs."""

    def __init__(self, groups: dict[str, list[int]], delay: float, duration: float) -> None:
        self.groups = groups
        self.ends_at = time.monotonic() + delay + duration
        self.snapshots: list[tuple[float, dict[str, tuple[float, float]]]] = []
        self._timers = [
            threading.Timer(delay, self._snapshot),
            threading.Timer(delay + duration, self._snapshot),
        ]
        for timer in self._timers:
            timer.start()

    def _snapshot(self) -> None:
        taken = {name: schedstat_seconds(pids) for name, pids in self.groups.items()}
        self.snapshots.append((time.monotonic(), taken))

    def finish(self) -> None:
        for timer in self._timers:
            timer.cancel()  # one not yet due; one that is running completes its snapshot
            timer.join()
        # The run ended just as the window did, before the timer thread got a CPU: the end is now.
        if len(self.snapshots) == 1 and time.monotonic() >= self.ends_at:
            self._snapshot()

    def summary(self) -> dict[str, dict[str, float]]:
        """Per group: CPU cores used and run-queue wait per second of the window ({} if the run
        ended before the window did)."""
        if len(self.snapshots) < 2:
            return {}
        (start, before), (end, after) = self.snapshots[0], self.snapshots[-1]
        seconds = max(end - start, 1e-9)
        # A thread that exited within the window takes its times with it: never below 0.
        return {
            name: {
                "cpu_cores": round(max(after[name][0] - before[name][0], 0.0) / seconds, 3),
                "runqueue_wait_per_s": round(
                    max(after[name][1] - before[name][1], 0.0) / seconds, 3
                ),
            }
            for name in self.groups
        }


def schedstat_seconds(pids: list[int]) -> tuple[float, float]:
    """(on-CPU, run-queue wait) seconds so far of every thread of `pids` (schedstat fields 1, 2)."""
    on_cpu = waited = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = (task / "schedstat").read_text().split()
                    on_cpu += int(fields[0])
                    waited += int(fields[1])
    return on_cpu / 1e9, waited / 1e9


def model_time_accounting(
    sampler: cluster_lib.MetricsSampler,
    app: str,
    window: tuple[float, float],
    processes: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """Where the model's time went in one run (engine metrics and scheduler times over the window).

    goodput = busy x inputs_per_busy_second x useful_share, where
      busy                    seconds per second the replica had a batch (the dispatcher's batch
                              latencies, each counted from when the replica could start it): 1.0
                              means never idle from the frontend's view;
      inputs_per_busy_second  inputs the model evaluated per busy second; itself
                              on_cpu_share x inputs_per_cpu_second:
        on_cpu_share          the replica's CPU seconds per busy second: below 1 it held a batch
                              without running (waiting for a CPU: see its run-queue wait; or for
                              the frontend: the batch's transit, the answer not read yet);
        inputs_per_cpu_second the model's own efficiency: batch sizes (a small batch pays the fixed
                              cost for fewer inputs) and the per-input cost (caches shared with the
                              frontend and the load generator);
      useful_share            of the inputs evaluated, those answered within the SLO (the rest were
                              admitted and evaluated but answered late: wasted work).
    Compared with the capacity run the ratios multiply to the goodput ratio (the engine's count of
    answers within the SLO)."""
    model_labels = cluster_lib.model_labels(MODEL, "1")
    seconds = window[1] - window[0]
    inputs = sampler.delta(f"clipper_model_predictions_total{{{model_labels}}}", *window) / seconds
    busy = (
        sampler.delta(f"clipper_model_batch_latency_seconds_sum{{{model_labels}}}", *window)
        / seconds
    )
    good = (
        sampler.delta(f"clipper_app_slo_attained_total{{{cluster_lib.app_labels(app)}}}", *window)
        / seconds
    )
    replica = processes.get("replica", {})
    replica_cpu = replica.get("cpu_cores")
    return {
        "slo_attained_rps": round(good, 1),
        "model_inputs_rps": round(inputs, 1),
        "busy": common.rounded(busy, 3),
        "inputs_per_busy_second": round(inputs / busy, 1) if busy > 0 else None,
        "useful_share": common.rounded(good / inputs, 4) if inputs > 0 else None,
        # Evaluated, but answered after the deadline (the client got the default or nothing useful).
        "late_inputs_rps": round(max(inputs - good, 0.0), 1),
        "on_cpu_share": common.rounded(replica_cpu / busy, 3) if replica_cpu and busy > 0 else None,
        "inputs_per_cpu_second": round(inputs / replica_cpu, 1) if replica_cpu else None,
        "replica_cpu_cores": replica_cpu,
        "replica_runqueue_wait_per_s": replica.get("runqueue_wait_per_s"),
        # Held a batch but neither ran nor waited for a CPU: waited for the frontend (the batch in
        # transit, or its answer not read yet by a busy or descheduled frontend thread).
        "replica_waiting_for_frontend": common.rounded(
            max(busy - replica_cpu - replica["runqueue_wait_per_s"], 0.0), 3
        )
        if replica_cpu is not None and "runqueue_wait_per_s" in replica
        else None,
        "replica_cpu_us_per_input": round(replica_cpu / inputs * 1e6, 1)
        if replica_cpu and inputs > 0
        else None,
        "frontend_cpu_cores": processes.get("frontend", {}).get("cpu_cores"),
        "frontend_runqueue_wait_per_s": processes.get("frontend", {}).get("runqueue_wait_per_s"),
    }


def accounting_ratios(run: dict[str, Any], capacity: dict[str, Any]) -> dict[str, float | None]:
    """A run's goodput over the capacity run's, split into the three factors of
    model_time_accounting (their product is the goodput ratio)."""
    ratios: dict[str, float | None] = {}
    keys = ("slo_attained_rps", "busy", "inputs_per_busy_second", "on_cpu_share")
    for key in (*keys, "inputs_per_cpu_second", "useful_share"):
        ours, theirs = run["accounting"].get(key), capacity["accounting"].get(key)
        ratios[key] = common.rounded(ours / theirs, 3) if ours and theirs else None
    return ratios


def connection_ceiling(args: argparse.Namespace, frontend_pid: int | None) -> int:
    """The most connections an open loop run may open: the descriptors of the load generator (it
    raises its soft limit to this process's hard one) and of the frontend, and the frontend's
    max_connections_per_io_thread (one I/O thread), each less DESCRIPTOR_MARGIN."""
    if args.max_connections:
        return args.max_connections
    from clipper_native import defaults

    limits = [defaults.MAX_CONNECTIONS_PER_IO_THREAD]
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if ours != resource.RLIM_INFINITY:
        limits.append(ours)
    frontend = open_file_limit(frontend_pid)
    if frontend:
        limits.append(frontend)
    return max(MIN_OPEN_LOOP_CONNECTIONS, min(limits) - DESCRIPTOR_MARGIN)


def client_population(args: argparse.Namespace, rate: float, ceiling: int) -> dict[str, Any]:
    """The open loop's connections and source addresses for `rate` (Little's law: requests in
    flight = rate x the time each holds a connection, up to the SLO for an admitted query)."""
    from clipper_native import defaults

    wanted = math.ceil(rate * args.slo_micros / 1e6 * args.connection_safety)
    connections = args.connections or min(max(wanted, MIN_OPEN_LOOP_CONNECTIONS), ceiling)
    per_address = max(
        1, int(defaults.MAX_CONNECTIONS_PER_CLIENT_ADDRESS * PER_ADDRESS_SHARE_OF_CAP)
    )
    return {
        "connections": connections,
        "wanted": wanted,
        "ceiling": ceiling,
        "capped": not args.connections and wanted > ceiling,
        "fixed_by_option": bool(args.connections),
        "source_addresses": args.source_addresses or min(253, math.ceil(connections / per_address)),
    }


def loadgen_limits(report: dict[str, Any], slo_micros: float) -> list[str]:
    """Why an open loop run fell behind its offered rate in the load generator (empty: it did not)."""
    reasons = []
    waited = report.get("waited_for_connection") or 0
    measured = (report.get("requests") or 0) + (report.get("unfinished") or 0)
    if waited > MAX_WAITED_SHARE * max(1, measured):
        # Every connection was busy: the server's answers (429s included) took longer than the
        # population was sized for, or the rate outgrew it.
        answers_p99 = (report.get("latency_us") or {}).get("p99") or 0
        reasons.append(
            f"{waited:,} of {measured:,} requests waited for a free connection (its FIFO held up "
            f"to {report.get('max_queue_depth', 0):,}; answers took {answers_p99 / 1000:.0f} ms at "
            "p99, refusals included)"
        )
    lag_p99 = (report.get("send_lag_us") or {}).get("p99") or 0
    if lag_p99 > MAX_SEND_LAG_P99_SHARE_OF_SLO * slo_micros:
        reasons.append(
            f"requests left it {lag_p99 / 1000:.1f} ms late at p99 (> "
            f"{MAX_SEND_LAG_P99_SHARE_OF_SLO * slo_micros / 1000:g} ms)"
        )
    return reasons


def open_file_limit(pid: int | None) -> int | None:
    """The soft open-file limit of process `pid` (/proc/<pid>/limits); None if unknown."""
    with contextlib.suppress(OSError, TypeError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    return None


def run_study(
    scenario: str, placement: str, args: argparse.Namespace, loadgen: str
) -> dict[str, Any]:
    """Starts a cluster for `scenario` in `placement`, measures its capacity, then each multiple."""
    from clipper.deployers.python import deploy_python_closure

    server_cpus = common.parse_cpus(args.server_cpus) if placement == "pinned" else None
    loadgen_cpus = common.parse_cpus(args.loadgen_cpus) if placement == "pinned" else None
    placement_options: dict[str, Any] = {}
    if placement == "isolated":
        placement_options = {
            "frontend_cpus": args.frontend_cpus,
            "model_cpus": {MODEL: args.replica_cpus},
        }
        loadgen_cpus = common.parse_cpus(args.isolated_loadgen_cpus or args.frontend_cpus)
    calibration_path = None
    if scenario == "cpu":
        # Each replica appends its calibration here (ns per step as measured where it runs, and
        # batches of 1, 16 and 128 timed against their nominal cost).
        calibration_path = os.path.join(
            tempfile.mkdtemp(prefix="clipper-overload-calibration-"), "calibration.jsonl"
        )
        model: Any = models.CalibratedBurner(
            args.fixed_micros, args.per_input_micros, report_path=calibration_path
        )
        batch_size = -1
    else:
        model, batch_size = models.FixedBatchTime(args.batch_micros), args.batch_size
    with contextlib.ExitStack() as stack:
        # The frontend and the replicas it starts inherit the placement.
        with common.pinned(server_cpus):
            cluster = cluster_lib.start_local_cluster(
                stack, "overload", cache_size_bytes=0, rpc_thread=args.rpc_thread,
                **prefetch_option(args),
                **placement_options,
            )  # fmt: skip
            connection = cluster.connection
            connection.register_application(APP, "doubles", "-1", args.slo_micros)
            connection.register_application(
                DEFAULT_APP, "doubles", "-1", args.slo_micros, overload="default"
            )
            deploy_python_closure(
                connection, name=MODEL, version="1", input_type="doubles", func=model,
                batch_size=batch_size,
            )  # fmt: skip
        connection.link_model_to_app(APP, MODEL)
        connection.link_model_to_app(DEFAULT_APP, MODEL)
        cluster_lib.wait_for_model_answer(cluster.url(APP), lambda i: {"input": [float(i)] * 10})
        rss_before = common.megabytes(common.rss_bytes(cluster.frontend_pid))
        placed = {
            "frontend": cpus_allowed(cluster.frontend_pid),
            "replicas": [cpus_allowed(r.pid) for r in cluster.manager.list_replicas()],
        }
        sampler = stack.enter_context(cluster_lib.MetricsSampler(cluster.metrics_url))
        study = Study(scenario, placement, cluster, sampler, loadgen_cpus)
        capacity_runs = []
        for index in range(args.capacity_runs):
            if index:
                time.sleep(1.0)
            capacity_runs.append(one_run(f"capacity {index + 1}", APP, args, loadgen, study, None))
        reference = capacity_reference(capacity_runs)["goodput_rps"]
        runs = []
        for multiplier in args.multipliers:
            time.sleep(1.0)  # the queue empties between runs
            rate = multiplier * reference
            runs.append(one_run(f"{multiplier:g}x", APP, args, loadgen, study, rate))
        if args.default_at > 0:
            time.sleep(1.0)
            rate = args.default_at * reference
            runs.append(one_run(f"{args.default_at:g}x", DEFAULT_APP, args, loadgen, study, rate))
        time.sleep(1.0)
        capacity_runs.append(
            one_run(f"capacity {len(capacity_runs) + 1}", APP, args, loadgen, study, None)
        )
        rss_after = common.megabytes(common.rss_bytes(cluster.frontend_pid))
    calibration = []
    if calibration_path:
        calibration = models.read_calibration_reports(calibration_path)
        shutil.rmtree(os.path.dirname(calibration_path), ignore_errors=True)
    measured = capacity_reference(capacity_runs)
    capacity = measured["run"]
    for run in runs:
        run["accounting"]["vs_capacity"] = accounting_ratios(run, capacity)
    # --multipliers may repeat 2 (e.g. 1 2 2 2 4) to see the run-to-run spread against one capacity
    # run: the verdict takes the median of the 2x runs.
    at_2x = common.median([r["goodput_rps"] for r in runs if r["run"] == "2x" and r["app"] == APP])
    ratio_2x = None if at_2x is None else at_2x / measured["goodput_rps"]
    # The closed loop can understate what the model computes (its latency, not the model, bounds
    # it: in the isolated placement the load generator shares the frontend's CPU); the best goodput
    # any run reached is the other reference.
    best = max(r["goodput_rps"] for r in [*capacity_runs, *runs])
    ratio_2x_best = None if at_2x is None else at_2x / best
    return {
        "scenario": scenario,
        "placement": placement,
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "loadgen_cpus": sorted(loadgen_cpus) if loadgen_cpus else None,
        "frontend_cpus": placement_options.get("frontend_cpus"),
        "replica_cpus": placement_options.get("model_cpus", {}).get(MODEL),
        "capacity": capacity,
        "capacity_rps": measured["goodput_rps"],
        "capacity_runs_rps": measured["each_rps"],
        "capacity_spread": measured["spread"],
        "capacity_disagrees": measured["disagrees"],
        "capacity_runs": capacity_runs,
        "runs": runs,
        "rpc_thread": args.rpc_thread or "shared",
        "replica_prefetch_full_batches": args.replica_prefetch_full_batches or "default",
        "loadgen_nice": args.loadgen_nice,
        "cpus_allowed": placed,
        "goodput_at_2x_over_capacity": common.rounded(ratio_2x, 3),
        "goodput_at_2x_each_over_capacity": [
            common.rounded(r["goodput_rps"] / measured["goodput_rps"], 3)
            for r in runs
            if r["run"] == "2x" and r["app"] == APP
        ],
        # Runs whose load generator was the bottleneck: their figures are not of record.
        "loadgen_limited_runs": [f"{r['run']} {r['app']}" for r in runs if r["loadgen_limited"]],
        "best_goodput_rps": best,
        "goodput_at_2x_over_best": common.rounded(ratio_2x_best, 3),
        "frontend_rss_mb": {"before": rss_before, "after": rss_after},
        "model_calibration": calibration,
    }


def capacity_reference(capacity_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's capacity from its capacity runs: the median goodput, the run nearest it (whose
    accounting the others are compared with), the spread max / min - 1, and whether that exceeds
    MAX_CAPACITY_SPREAD (one run 20% high once doubled as a 2.4x load: not a reference to divide by)."""
    each = [run["goodput_rps"] for run in capacity_runs]
    middle = common.median(each)
    spread = max(each) / min(each) - 1 if min(each) > 0 else math.inf
    return {
        "goodput_rps": middle,
        "run": min(capacity_runs, key=lambda run: abs(run["goodput_rps"] - middle)),
        "each_rps": each,
        "spread": common.rounded(spread, 3) if math.isfinite(spread) else None,
        "disagrees": not spread <= MAX_CAPACITY_SPREAD,
    }


def runqueue_wait_seconds(pid: int | None) -> float:
    """Run-queue wait of all of `pid`'s threads so far (/proc/<pid>/task/*/schedstat, field 2)."""
    total = 0
    with contextlib.suppress(OSError, TypeError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def cpus_allowed(pid: int | None) -> str | None:
    """The CPUs process `pid` may run on, as the kernel reports them (the placement as applied)."""
    with contextlib.suppress(OSError, TypeError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return None


def print_table(result: dict[str, Any], slo_ms: float) -> None:
    capacity, runs, reference = result["capacity"], result["runs"], result["capacity_rps"]
    each = ", ".join(f"{rps:,.0f}" for rps in result["capacity_runs_rps"])
    print(
        f"\n{result['scenario']} / {result['placement']}: capacity (closed loop) "
        f"{reference:,.0f} answers/s within the {slo_ms:g} ms SLO (median of {each}; spread "
        f"{capacity_spread_text(result)}) "
        f"(other cores {capacity['cpu_cores']['other']}; CPUs allowed: {result['cpus_allowed']})"
    )
    header = (
        f"{'run':>10} {'app':>17} {'offered/s':>10} {'goodput/s':>10} {'x cap':>6} {'429 %':>6} "
        f"{'dflt %':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'rss MB':>7} {'other':>6} "
        f"{'rq wait':>7} {'conns':>6} {'addrs':>5}"
    )
    print(header)
    for run in runs:
        latency = run["admitted_latency_ms"]
        print(
            f"{run['run']:>10} {run['app']:>17} {run['offered_rps'] or 0:>10,.0f} "
            f"{run['goodput_rps']:>10,.0f} {run['goodput_rps'] / reference:>6.2f} "
            f"{100 * run['refused_share']:>6.1f} {100 * run['default_share']:>6.1f} "
            f"{latency['p50'] or 0:>7.1f} {latency['p99'] or 0:>7.1f} {latency['max'] or 0:>7.1f} "
            f"{run['rss_mb'].get('max_mb') or 0:>7.1f} {run['cpu_cores']['other']:>6.2f} "
            f"{run['frontend_runqueue_wait_per_s'] or 0:>7.3f} "
            f"{run['client_population']['connections']:>6} "
            f"{run['client_population']['source_addresses']:>5}"
            + ("  * load generator limited" if run["loadgen_limited"] else "")
        )
    print_accounting(result)
    if result["loadgen_limited_runs"]:
        print(
            "* the load generator queued or lagged in these runs (too few connections for the "
            "latencies the server gave, or a generator short of CPU): they were no longer an open "
            "loop at the offered rate and are not figures of record ("
            + "; ".join(
                f"{r['run']} {r['app']}: {', '.join(r['loadgen_limited_because'])}"
                for r in runs
                if r["loadgen_limited"]
            )
            + ")"
        )
    warning = common.disturbed_warning(
        {f"{r['run']} {r['app']} #{i + 1}": r["cpu_cores"]["other"] for i, r in enumerate(runs)}
    )
    if warning:
        print(warning)
    line = verdict(result)
    if line:
        print(line)
    rss = result["frontend_rss_mb"]
    print(f"frontend RSS: {rss['before']} MB before the runs, {rss['after']} MB after")
    for report in result.get("model_calibration") or []:
        measured = report["measured_micros_by_batch_size"]["128"]
        nominal = report["nominal_micros_by_batch_size"]["128"]
        print(
            f"model calibration (replica pid {report['pid']}): {report['nanos_per_unit']} ns per "
            f"step; a batch of 128 took {measured:,.0f} us of CPU against {nominal:,.0f} nominal"
        )


def verdict(result: dict[str, Any]) -> str | None:
    """The study's line on the target: goodput at 2x over capacity, and why it is not a figure of
    record when the load generator limited the 2x run or the capacity runs disagree."""
    ratio_2x = result["goodput_at_2x_over_capacity"]
    if ratio_2x is None:
        return None
    met = "met" if ratio_2x >= TARGET_GOODPUT_AT_2X else "NOT met"
    if f"2x {APP}" in result["loadgen_limited_runs"]:
        met += ", but the load generator limited the 2x run: not a figure of record"
    if result["capacity_disagrees"]:
        met += (
            f", but the capacity runs disagree ({capacity_spread_text(result)} apart): "
            "not a figure of record"
        )
    each = result["goodput_at_2x_each_over_capacity"]
    spread = f" (median of {', '.join(f'{x:.2f}' for x in each)})" if len(each) > 1 else ""
    return (
        f"goodput at 2x / capacity = {ratio_2x:.2f}{spread} (target >= {TARGET_GOODPUT_AT_2X}: "
        f"{met}); / the best goodput of any run ({result['best_goodput_rps']:,.0f}/s) = "
        f"{result['goodput_at_2x_over_best']:.2f}"
    )


def capacity_spread_text(result: dict[str, Any]) -> str:
    spread = result["capacity_spread"]
    return "unbounded" if spread is None else f"{100 * spread:.1f}%"


def print_accounting(result: dict[str, Any]) -> None:
    """Where the model's time went, run by run: goodput / capacity = busy x on-CPU share x inputs
    per CPU second x useful share, each against the capacity run (model_time_accounting)."""
    print(
        f"{'model time':>10} {'app':>17} {'busy':>6} {'in/busy s':>9} {'useful':>7} "
        f"{'late/s':>7} {'batch':>6} {'dl cuts/s':>9} {'rep cpu':>7} {'us/in':>6} {'rep rqw':>7} "
        f"{'fe cpu':>6} {'rep waits fe':>12} | {'= x cap':>7} {'busy':>6} {'on cpu':>6} {'in/cpu':>6} {'useful':>6}"
    )
    for run in [*result["capacity_runs"], *result["runs"]]:
        a = run["accounting"]
        ratio = a.get("vs_capacity", {})

        def number(value: float | None, spec: str) -> str:
            return format(value, spec) if value is not None else "-"

        print(
            f"{run['run']:>10} {run['app']:>17} {number(a['busy'], '6.3f')} "
            f"{number(a['inputs_per_busy_second'], '9,.0f')} {number(a['useful_share'], '7.3f')} "
            f"{a['late_inputs_rps']:>7,.0f} {number(run['engine']['mean_batch_size'], '6.1f')} "
            f"{run['engine']['batch_cuts_rps']['deadline']:>9.1f} "
            f"{number(a['replica_cpu_cores'], '7.3f')} {number(a['replica_cpu_us_per_input'], '6.1f')} "
            f"{number(a['replica_runqueue_wait_per_s'], '7.3f')} "
            f"{number(a['frontend_cpu_cores'], '6.3f')} "
            f"{number(a['replica_waiting_for_frontend'], '12.3f')} | "
            f"{number(ratio.get('slo_attained_rps'), '7.3f')} {number(ratio.get('busy'), '6.3f')} "
            f"{number(ratio.get('on_cpu_share'), '6.3f')} "
            f"{number(ratio.get('inputs_per_cpu_second'), '6.3f')} "
            f"{number(ratio.get('useful_share'), '6.3f')}"
        )


def plot(results: list[dict[str, Any]], slo_ms: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        2, len(results), figsize=(4.2 * len(results), 7), sharex=True, squeeze=False
    )
    for column, result in enumerate(results):
        top, bottom = axes[0, column], axes[1, column]
        capacity = result["capacity_rps"]
        rejecting = [r for r in result["runs"] if r["app"] == APP]
        x = [r["offered_rps"] / capacity for r in rejecting]
        top.plot(x, [r["goodput_rps"] / capacity for r in rejecting], "o-", color="C2",
                 label="goodput (reject)")  # fmt: skip
        top.plot(x, [r["offered_rps"] * r["refused_share"] / capacity for r in rejecting], "s--",
                 color="C3", label="refused with 429")  # fmt: skip
        for run in result["runs"]:
            if run["app"] == DEFAULT_APP:
                top.plot(run["offered_rps"] / capacity, run["goodput_rps"] / capacity, "D",
                         color="C4", label="goodput (overload=default)")  # fmt: skip
        top.axhline(1.0, color="grey", ls=":", label=f"capacity {capacity:,.0f}/s")
        top.axhline(TARGET_GOODPUT_AT_2X, color="grey", ls="--", lw=0.8,
                    label=f"target at 2x: {TARGET_GOODPUT_AT_2X}")  # fmt: skip
        top.set_title(f"{result['scenario']}, {result['placement']}", fontsize=10)
        top.set_ylim(bottom=0)
        top.grid(alpha=0.3)
        top.legend(fontsize=7)
        for key, style in (("p50", "o-"), ("p99", "o-"), ("max", ".:")):
            bottom.plot(x, [r["admitted_latency_ms"][key] for r in rejecting], style,
                        label=f"{key} admitted")  # fmt: skip
        bottom.axhline(slo_ms, color="black", ls="--", lw=0.8, label=f"SLO {slo_ms:g} ms")
        bottom.set_xlabel("offered load / measured capacity")
        bottom.set_ylim(bottom=0)
        bottom.grid(alpha=0.3)
        bottom.legend(fontsize=7)
    axes[0, 0].set_ylabel("answers / s, as a multiple of capacity")
    axes[1, 0].set_ylabel("latency of model answers (ms)")
    figure.suptitle(
        f"Overload with admission control: SLO {slo_ms:g} ms, Poisson arrivals", fontsize=11
    )
    return common.save_figure(figure, path)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, loadgen = common.begin_loadgen_study(args.loadgen)
    models.register_by_value()
    slo_ms = args.slo_micros / 1000
    results = [
        run_study(scenario, placement, args, loadgen)
        for scenario in args.scenarios
        for placement in args.placements
    ]
    for result in results:
        print_table(result, slo_ms)
    payload = {
        "study": "overload",
        "machine": common.machine_info(),
        "source": cluster_lib.source_revision(),
        "settings": {
            "slo_micros": args.slo_micros,
            "cpu_model": {
                "fixed_micros": args.fixed_micros,
                "per_input_micros": args.per_input_micros,
            },
            "accelerator_model": {"batch_micros": args.batch_micros, "batch_size": args.batch_size},
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "capacity_runs": f"{args.capacity_runs} before the multiples, 1 after",
            "max_capacity_spread": MAX_CAPACITY_SPREAD,
            "open_loop_connections": {
                "fixed": args.connections,
                "safety": args.connection_safety,
                "max": args.max_connections,
                "source_addresses": args.source_addresses,
                "rule": "rate x SLO x safety, within the descriptor limits (each run's "
                "client_population)",
            },
        },
        "target_goodput_at_2x": TARGET_GOODPUT_AT_2X,
        # False when some run's load generator was the bottleneck (loadgen_limited).
        "load_generator_kept_up": not any(r["loadgen_limited_runs"] for r in results),
        # False when some study's capacity runs spread by more than MAX_CAPACITY_SPREAD.
        "capacity_runs_agree": not any(r["capacity_disagrees"] for r in results),
        "studies": results,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(f"results: {path} ({payload['elapsed_s']} s)")
    with contextlib.suppress(ImportError):
        print(f"plot: {plot(results, slo_ms, path.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
