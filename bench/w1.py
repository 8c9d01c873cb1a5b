"""The W1 study: a no-op model, one distinct 10-double vector per request, Clipper against nginx.

Owns the study's scenarios, their order, the summary table and bench/results/w1.json. It starts
nginx (the reference: a fixed 200 JSON answer) and a local Clipper cluster through the public admin
API, drives both with clipper-loadgen, and stops both at the end. Runs on the main thread (RSS
sampling on one background thread). Every run is bounded in time; the whole study with the defaults
takes about two minutes.

    python bench/w1.py                       # 8 s windows, 1 repeat, 20,000 req/s open loop
    python bench/w1.py --repeat 3 --rates 10000 20000 40000
    python bench/w1.py --targets nginx        # only the reference (e.g. to check the harness)

Scenarios, each measured against nginx and then Clipper in the same run:
  closed_64   closed loop, 64 keep-alive connections: throughput (ratio ours/nginx; target >= 0.5)
  closed_1    closed loop, 1 connection: unloaded latency (target: p50 within 3x of nginx)
  open_<R>    open loop, Poisson arrivals at R req/s, latency from the intended send time
              (target at 20,000/s: p99 within 3x of nginx, no errors, no default answers)
  memory      RSS idle, under closed_64, and holding 10,000 idle keep-alive connections (< 200 MB)

Placement: by default each server under test (nginx with its workers; the Clipper frontend with
its model replica) is confined to CPU 0 and the load generator to CPU 1, so that the client never
competes with the server for a core and both servers get the same resources. On a small VM this
matters more than it seems: a thread woken on the other vCPU costs ~25 us here (an inter-processor
interrupt and a halted vCPU resumed), against ~1 us on the same one. `--no-pin` leaves placement
to the kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import common

NO_OP_APP = "w1"
NO_OP_MODEL = "noop"
RSS_TARGET_MB = 200.0
# More than this many cores used by processes outside the study during a run marks it as disturbed.
NOISY_OTHER_CORES = 0.2


@dataclass
class Target:
    """A server under test: where to send W1 queries and whose memory to read."""

    name: str
    url: str
    pid: int
    rss: Callable[[], int | None]
    server_pids: Callable[[], list[int]]  # the processes that serve it, for CPU accounting
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------


def start_nginx(workers: int, stack: contextlib.ExitStack) -> Target:
    server = common.NginxServer(port=common.free_port(), workers=workers)
    server.start()
    stack.callback(server.stop)
    status, body = common.post_json(server.url + f"{NO_OP_APP}/predict", {"input": [0.0] * 10})
    if status != 200:
        raise RuntimeError(
            f"nginx answered {status} {body!r} to a probe; see its error log: {server.error_log()}"
        )
    version = subprocess.run(
        [server.binary, "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    return Target(
        name="nginx",
        url=server.url + f"{NO_OP_APP}/predict",
        pid=server.pid,
        rss=lambda: common.tree_rss_bytes(server.pid),
        server_pids=lambda: [server.pid, *common.children_of(server.pid)],
        info={"worker_processes": workers, "version": version, "rss_scope": "master + workers"},
    )


def frontend_pid(manager: Any, query_port: int) -> tuple[int | None, str]:
    """The frontend's pid from the container manager, else the one listening on the query port."""
    for attribute in ("frontend_pid", "pid"):
        value = getattr(manager, attribute, None)
        if isinstance(value, int) and value > 0:
            return value, f"manager.{attribute}"
    endpoints = getattr(manager, "_endpoints", None)
    value = getattr(endpoints, "pid", None)
    if isinstance(value, int) and value > 0:
        return value, "manager endpoints record"
    return common.pid_listening_on(query_port), "/proc/net/tcp listener on the query port"


def supported_kwargs(function: Callable[..., Any], **candidates: Any) -> dict[str, Any]:
    """The subset of `candidates` that `function` accepts (not every manager has every knob)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return candidates
    return {key: value for key, value in candidates.items() if key in parameters}


def start_clipper(args: argparse.Namespace, stack: contextlib.ExitStack) -> Target:
    # Imported here so that `--targets nginx` works without the project installed.
    from clipper import ClipperConnection, LocalContainerManager
    from clipper.deployers.python import deploy_python_closure

    query_port, management_port, rpc_port, metrics_port = common.free_ports(4)
    state_dir = tempfile.mkdtemp(prefix="clipper-bench-w1-")
    stack.callback(shutil.rmtree, state_dir, True)
    manager_kwargs: dict[str, Any] = {
        "cluster_name": f"bench-w1-{os.getpid()}",
        "clipper_query_port": query_port,
        "clipper_management_port": management_port,
        "clipper_rpc_port": rpc_port,
    }
    # The hold scenario opens its connections from one address: the per-address cap (4,096 by
    # default, a defence against one client taking every connection) is raised above it so the
    # scenario measures memory per held connection, as it does for nginx.
    manager_kwargs.update(
        supported_kwargs(
            LocalContainerManager.__init__,
            prometheus_port=metrics_port,
            state_dir=state_dir,
            query_port_limits={"max_connections_per_client_address": max(4096, args.hold + 1024)},
        )
    )
    manager = LocalContainerManager(**manager_kwargs)
    connection = ClipperConnection(manager)
    candidates: dict[str, Any] = {
        "qf_http_thread_pool_size": args.io_threads,
        "cache_size": args.cache_size_bytes,
        "rpc_thread": args.rpc_thread,
    }
    if getattr(args, "allow_unauthenticated_replicas", False):  # bench/replica_auth.py's reference
        candidates["allow_unauthenticated_replicas"] = True
    start_kwargs = supported_kwargs(connection.start_clipper, **candidates)
    connection.start_clipper(**start_kwargs)
    stack.callback(connection.stop_all)
    connection.register_application(NO_OP_APP, "doubles", "-1.0", args.slo_micros)
    deploy_python_closure(
        connection,
        name=NO_OP_MODEL,
        version="1",
        input_type="doubles",
        func=lambda xs: ["0"] * len(xs),
    )
    connection.link_model_to_app(NO_OP_APP, NO_OP_MODEL)
    url = f"http://{connection.get_query_addr()}/{NO_OP_APP}/predict"

    # The replica may still be connecting: wait for an answer from the model, not the default.
    deadline = time.monotonic() + 60
    status, body = 0, None
    probe = 0
    while time.monotonic() < deadline:
        probe += 1
        status, body = common.post_json(url, {"input": [float(probe)] + [0.5] * 9})
        if status == 200 and isinstance(body, dict) and body.get("default") is False:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(
            f"Clipper never answered from the model within 60 s; last answer {status} {body!r}"
        )

    def replica_pids() -> list[int]:
        return [
            child
            for child in common.descendants_of(os.getpid())
            if "clipper.container" in common.process_command_line(child)
        ]

    pid, pid_source = frontend_pid(manager, query_port)
    if pid is None:
        raise RuntimeError(
            f"cannot find the Clipper frontend process (nothing listens on port {query_port})"
        )
    return Target(
        name="clipper",
        url=url,
        pid=pid,
        rss=lambda: common.rss_bytes(pid),
        server_pids=lambda: [pid, *common.descendants_of(pid), *replica_pids()],
        info={
            "frontend_pid_source": pid_source,
            "frontend_command": common.process_command_line(pid),
            "start_clipper_kwargs": start_kwargs,
            "slo_micros": args.slo_micros,
            "rss_scope": "frontend process (engine + management API), replicas excluded",
            "probe_answer": body,
        },
    )


# --------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    title: str
    connections: int
    rate_per_second: float | None = None


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen = [
        Scenario("closed_64", f"closed loop, {args.connections} conns", args.connections),
        Scenario("closed_1", "closed loop, 1 conn", 1),
    ]
    for rate in args.rates:
        chosen.append(
            Scenario(
                f"open_{rate}", f"open {rate}/s {args.arrivals}", args.open_connections, float(rate)
            )
        )
    return chosen


def run_scenario(
    loadgen: str, target: Target, scenario: Scenario, args: argparse.Namespace, sample_rss: bool
) -> dict[str, Any]:
    extra = ["--spin-us", str(args.spin_us)] if args.spin_us else []
    if args.busy_poll:
        extra.append("--busy-poll")
    command = common.loadgen_command(
        loadgen,
        target.url,
        connections=scenario.connections,
        duration_seconds=args.duration,
        warmup_seconds=args.warmup,
        rate_per_second=scenario.rate_per_second,
        arrivals=args.arrivals,
        workload="w1",
        extra_args=extra,
    )
    timeout = args.warmup + args.duration + 20
    with contextlib.ExitStack() as stack:
        sampler = None
        if sample_rss:
            sampler = common.RssSampler(target.pid, include_children=target.name == "nginx")
            stack.enter_context(sampler)
        cpu = stack.enter_context(common.CpuMeter(target.server_pids))
        run = common.run_loadgen(command, timeout_seconds=timeout, cpus=cpus_for(args, "loadgen"))
    run.extra["cpu_cores"] = cpu.summary()
    if sampler is not None:
        run.extra["rss_during"] = sampler.summary()
    return run.to_json()


def run_hold(loadgen: str, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    command = common.loadgen_command(
        loadgen,
        target.url,
        duration_seconds=args.hold_seconds,
        hold_connections=args.hold,
        workload="w1",
    )
    run, samples = common.run_loadgen_hold(
        command,
        target.rss,
        settle_seconds=min(1.0, args.hold_seconds / 3),
        timeout_seconds=args.hold_seconds + 60,
        cpus=cpus_for(args, "loadgen"),
    )
    run.extra["rss_during"] = {
        "max_mb": common.megabytes(max(samples)) if samples else None,
        "median_mb": common.megabytes(sorted(samples)[len(samples) // 2]) if samples else None,
        "samples": len(samples),
    }
    return run.to_json()


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------


def summarize(
    runs: list[dict[str, Any]], scenario_list: list[Scenario], targets: list[str]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario in scenario_list:
        per_target: dict[str, Any] = {}
        for name in targets:
            mine = [r for r in runs if r["scenario"] == scenario.key and r["target"] == name]
            if not mine:
                continue
            per_target[name] = {
                "repeats": len(mine),
                "throughput_rps": common.median([r["throughput_rps"] for r in mine]),
                "p50_us": common.median([r["latency_us"]["p50"] for r in mine]),
                "p90_us": common.median([r["latency_us"]["p90"] for r in mine]),
                "p99_us": common.median([r["latency_us"]["p99"] for r in mine]),
                "p999_us": common.median([r["latency_us"]["p999"] for r in mine]),
                "max_us": max(r["latency_us"]["max"] for r in mine),
                "errors": sum(r["errors"]["total"] for r in mine),
                "non_2xx": sum(r["non_2xx"] for r in mine),
                "default_answers": sum(r["default_answers"] for r in mine),
                "unfinished": sum(r["unfinished"] + r["lost"] for r in mine),
                "server_cores": common.median([r["cpu_cores"]["server"] for r in mine]),
                "other_cores_max": max(r["cpu_cores"]["other"] for r in mine),
                "steal_cores_max": max(r["cpu_cores"]["steal"] for r in mine),
                "rss_during_max_mb": max(
                    (r.get("rss_during", {}).get("max_mb") or 0 for r in mine), default=None
                ),
            }
        if "clipper" in per_target and "nginx" in per_target:
            ours, reference = per_target["clipper"], per_target["nginx"]
            per_target["ratio"] = {
                key: common.ratio(ours[key], reference[key])
                for key in ("throughput_rps", "p50_us", "p90_us", "p99_us", "p999_us")
            }
        summary[scenario.key] = per_target
    return summary


def memory_summary(
    runs: list[dict[str, Any]], idle: dict[str, Any], targets: list[str]
) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    for name in targets:
        under_load = [r for r in runs if r["target"] == name and r["scenario"] == "closed_64"]
        holding = [r for r in runs if r["target"] == name and r["scenario"] == "hold"]
        memory[name] = {
            "idle_mb": idle.get(name, {}).get("before"),
            "idle_after_mb": idle.get(name, {}).get("after"),
            "under_w1_max_mb": max(
                (r["rss_during"]["max_mb"] or 0 for r in under_load), default=None
            ),
            "holding_max_mb": max((r["rss_during"]["max_mb"] or 0 for r in holding), default=None),
            "held_connections": min((r["hold"]["held_at_end"] for r in holding), default=None),
        }
    return memory


def target_checks(
    summary: dict[str, Any], memory: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Issue 2's targets on the medians (informational: benchmarks never fail a build)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: Any, passed: bool | None, goal: str) -> None:
        checks.append({"check": name, "value": value, "goal": goal, "met": passed})

    ratios = summary.get("closed_64", {}).get("ratio")
    if ratios:
        value = ratios["throughput_rps"]
        check(
            "closed_64 throughput ours/nginx", value, value is not None and value >= 0.5, ">= 0.5"
        )
    ratios = summary.get("closed_1", {}).get("ratio")
    if ratios:
        value = ratios["p50_us"]
        check("closed_1 p50 ours/nginx", value, value is not None and value <= 3.0, "<= 3")
    open_key = (
        "open_20000"
        if "open_20000" in summary
        else next((k for k in summary if k.startswith("open_")), None)
    )
    if open_key and "ratio" in summary[open_key]:
        value = summary[open_key]["ratio"]["p99_us"]
        check(f"{open_key} p99 ours/nginx", value, value is not None and value <= 3.0, "<= 3")
        ours = summary[open_key]["clipper"]
        clean = ours["errors"] + ours["non_2xx"] + ours["default_answers"] + ours["unfinished"]
        check(f"{open_key} errors+non_2xx+defaults+unfinished", clean, clean == 0, "0")
    if "clipper" in memory:
        for key in ("idle_mb", "under_w1_max_mb", "holding_max_mb"):
            value = memory["clipper"][key]
            if value is not None:
                check(
                    f"clipper frontend RSS {key}",
                    value,
                    value < RSS_TARGET_MB,
                    f"< {RSS_TARGET_MB:.0f} MB",
                )
        held = memory["clipper"]["held_connections"]
        if held is not None:
            check("clipper connections held", held, held >= args.hold, f">= {args.hold}")
    return checks


def print_summary(
    summary: dict[str, Any],
    memory: dict[str, Any],
    checks: list[dict[str, Any]],
    scenario_list: list[Scenario],
    header: str,
) -> None:
    print(header)
    columns = (
        f"{'scenario':<26}{'target':<9}{'req/s':>11}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}"
        f"{'errors':>8}{'non2xx':>8}{'defaults':>9}{'srv cpu':>8}{'other':>7}"
    )
    print(columns)
    print("-" * len(columns))
    for scenario in scenario_list:
        rows = summary.get(scenario.key, {})
        label = scenario.title
        for name in ("nginx", "clipper"):
            if name not in rows:
                continue
            row = rows[name]
            print(
                f"{label:<26}{name:<9}{common.format_number(row['throughput_rps'], 0):>11}"
                f"{common.format_number(row['p50_us']):>10}{common.format_number(row['p99_us']):>10}"
                f"{common.format_number(row['p999_us']):>10}{row['errors'] + row['unfinished']:>8}"
                f"{row['non_2xx']:>8}{row['default_answers']:>9}"
                f"{common.format_number(row['server_cores'], 2):>8}"
                f"{common.format_number(row['other_cores_max'], 2):>7}"
            )
            label = ""
        if "ratio" in rows:
            ratio = rows["ratio"]

            def times(value: float | None) -> str:
                return "-" if value is None else f"{value:.2f}x"

            print(
                f"{'':<26}{'ours/ngx':<9}{times(ratio['throughput_rps']):>11}"
                f"{times(ratio['p50_us']):>10}{times(ratio['p99_us']):>10}"
                f"{times(ratio['p999_us']):>10}"
            )
    noisy = [
        f"{key}/{name}"
        for key, rows in summary.items()
        for name, row in rows.items()
        if name != "ratio" and row["other_cores_max"] > NOISY_OTHER_CORES
    ]
    print(
        "srv cpu: cores used by the server's processes (median); other: cores used by processes "
        "outside this study (max)."
    )
    if noisy:
        print(
            f"WARNING: other work used > {NOISY_OTHER_CORES} cores during {', '.join(noisy)}; "
            "those figures are disturbed: rerun when the machine is quiet."
        )
    print()
    print(
        f"{'RSS (MB)':<26}{'idle':>10}{'under W1':>10}{'holding':>10}{'held':>8}{'idle after':>12}"
    )
    for name, row in memory.items():
        scope = "clipper frontend" if name == "clipper" else "nginx (all procs)"
        print(
            f"{scope:<26}{common.format_number(row['idle_mb']):>10}"
            f"{common.format_number(row['under_w1_max_mb']):>10}"
            f"{common.format_number(row['holding_max_mb']):>10}{common.format_number(row['held_connections']):>8}"
            f"{common.format_number(row['idle_after_mb']):>12}"
        )
    if checks:
        print()
        print("issue 2 targets (medians):")
        for item in checks:
            verdict = {True: "met", False: "NOT met", None: "-"}[item["met"]]
            value = common.format_number(item["value"], 2)
            print(f"  {item['check']:<48} {value:>10}  goal {item['goal']:<10} {verdict}")


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="measured seconds per run (default 8)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default 2)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per scenario and target; medians are reported"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="closed loop connections (default 64)"
    )
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[20000],
        help="open loop rates in req/s (default 20000)",
    )
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument(
        "--open-connections", type=int, default=64, help="open loop connections (default 64)"
    )
    parser.add_argument(
        "--hold", type=int, default=10000, help="idle connections to hold (0 = skip)"
    )
    parser.add_argument(
        "--hold-seconds", type=float, default=5.0, help="how long to hold them (default 5)"
    )
    parser.add_argument(
        "--nginx-workers", type=int, default=1, help="nginx worker_processes (default 1)"
    )
    parser.add_argument(
        "--io-threads", type=int, default=1, help="Clipper frontend I/O threads (default 1)"
    )
    parser.add_argument(
        "--rpc-thread",
        choices=("shared", "dedicated"),
        default="shared",
        help="model RPC on the single I/O thread's loop, or on a thread of its own (default shared)",
    )
    parser.add_argument(
        "--slo-micros", type=int, default=100_000, help="the W1 app's SLO (default 100 ms)"
    )
    parser.add_argument(
        "--cache-size-bytes",
        type=int,
        default=32 * 2**20,
        help="Clipper prediction cache (W1 never hits it)",
    )
    parser.add_argument(
        "--spin-us", type=float, default=0.0, help="loadgen --spin-us for open loop send times"
    )
    parser.add_argument(
        "--busy-poll",
        action="store_true",
        help="loadgen never sleeps (removes its wake-up delay from latencies; takes a whole core)",
    )
    parser.add_argument(
        "--server-cpus",
        default="0",
        help="CPUs for the server under test and everything it starts (taskset syntax; default 0)",
    )
    parser.add_argument(
        "--loadgen-cpus", default="1", help="CPUs for clipper-loadgen (taskset syntax; default 1)"
    )
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the kernel")
    parser.add_argument(
        "--targets", nargs="+", choices=("nginx", "clipper"), default=["nginx", "clipper"]
    )
    parser.add_argument(
        "--loadgen", help="path to clipper-loadgen (default: installed, PATH, or built)"
    )
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "w1.json")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.placement = None if args.no_pin else placement(args, parser)
    return args


def placement(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, set[int]]:
    """The server and load generator CPU sets, checked against the CPUs this process may use."""
    try:
        server, loadgen = common.parse_cpus(args.server_cpus), common.parse_cpus(args.loadgen_cpus)
    except ValueError as exc:
        parser.error(str(exc))
    usable = os.sched_getaffinity(0)
    if not (server | loadgen) <= usable:
        parser.error(
            f"--server-cpus {args.server_cpus} / --loadgen-cpus {args.loadgen_cpus} name CPUs "
            f"outside the usable set {sorted(usable)}; pass others or --no-pin"
        )
    if server & loadgen:
        parser.error("--server-cpus and --loadgen-cpus overlap; give them separate CPUs")
    return {"server": server, "loadgen": loadgen}


def cpus_for(args: argparse.Namespace, role: str) -> set[int] | None:
    return None if args.placement is None else args.placement[role]


def placement_text(args: argparse.Namespace) -> str:
    if args.placement is None:
        return "unpinned"
    return f"servers on CPU {args.server_cpus}, loadgen on CPU {args.loadgen_cpus}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so nginx and the cluster are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    loadgen = common.find_loadgen(args.loadgen)
    scenario_list = scenarios(args)
    runs: list[dict[str, Any]] = []
    idle: dict[str, dict[str, float | None]] = {}
    targets: list[Target] = []

    with contextlib.ExitStack() as stack:
        # Servers inherit the CPU set of the thread that starts them (replicas included).
        if "nginx" in args.targets:
            with common.pinned(cpus_for(args, "server")):
                targets.append(start_nginx(args.nginx_workers, stack))
        if "clipper" in args.targets:
            print("starting Clipper and deploying the no-op model ...", file=sys.stderr)
            with common.pinned(cpus_for(args, "server")):
                targets.append(start_clipper(args, stack))
        time.sleep(0.5)
        for target in targets:
            idle[target.name] = {"before": common.megabytes(target.rss())}

        for repeat in range(args.repeat):
            for scenario in scenario_list:
                for target in targets:
                    print(
                        f"[{repeat + 1}/{args.repeat}] {scenario.key} -> {target.name}",
                        file=sys.stderr,
                    )
                    report = run_scenario(
                        loadgen, target, scenario, args, sample_rss=scenario.key == "closed_64"
                    )
                    runs.append(
                        {
                            "scenario": scenario.key,
                            "target": target.name,
                            "repeat": repeat,
                            **report,
                        }
                    )
            if args.hold > 0:
                for target in targets:
                    print(
                        f"[{repeat + 1}/{args.repeat}] hold {args.hold} -> {target.name}",
                        file=sys.stderr,
                    )
                    report = run_hold(loadgen, target, args)
                    runs.append(
                        {"scenario": "hold", "target": target.name, "repeat": repeat, **report}
                    )
        time.sleep(1.0)
        for target in targets:
            idle[target.name]["after"] = common.megabytes(target.rss())
        target_info = {
            target.name: {"pid": target.pid, "url": target.url, **target.info} for target in targets
        }

    names = [target.name for target in targets]
    summary = summarize(runs, scenario_list, names)
    memory = memory_summary(runs, idle, names)
    checks = target_checks(summary, memory, args)
    header = (
        "W1: no-op model, distinct 10-double vectors | "
        f"nginx worker_processes={args.nginx_workers}, "
        f"clipper io_threads={args.io_threads} rpc_thread={args.rpc_thread} | "
        f"{os.cpu_count()} CPUs, {placement_text(args)} | "
        f"median of {args.repeat} run(s) of {args.duration:g} s (+{args.warmup:g} s warmup)"
    )
    print_summary(summary, memory, checks, scenario_list, header)
    payload = {
        "study": "w1",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": common.machine_info(),
        "config": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
            if key != "placement"
        },
        "placement": placement_text(args),
        "loadgen": loadgen,
        "targets": target_info,
        "summary": summary,
        "memory_mb": memory,
        "checks": checks,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.output} ({payload['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
