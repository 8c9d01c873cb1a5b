"""What the selection layer costs per query and per feedback round, measured in one cluster.

Owns the overhead study of the model-selection layer and bench/results/selection_overhead.json. One
local cluster (public admin API) serves three no-op models and four apps: `single` (Clipper's default
policy, one linked model), `exp3` (two models linked; each query draws one by the user's learned
weights, natively), `cascade` (the same two linked in order; the first reports no confidence, so it
counts as sure and answers every query: what a cascade costs when it never escalates, its copy of the
input for the stage after included) and `split` (a third model served by two replicas, no selection:
the same halving of each replica's batches that exp3's draw causes, so exp3/split is what selection
itself costs and split/single what splitting the queries over two replica processes costs). clipper-loadgen drives the W1 workload (a distinct 10-double
vector per request, 64 keep-alive connections, closed loop) against each app in turn, window after
window, so all see the same machine; then it drives `POST /exp3/update` (each round: both models' outputs from the cache or
evaluated, the policy's observe in the frontend's Python worker, the state stored, the weights
published) to measure feedback throughput. Processes unpinned, as users run them. Beside each
window: the queries per batch the replicas got and the CPU time (user + system, kernel included) the
frontend and the replicas spent per query, which a shared machine disturbs less than the rate.

    python bench/selection_overhead.py                  # 3 rounds of 5 s windows per app (~2 min)
    python bench/selection_overhead.py --pairs 5 --seconds 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common

APPS = ("single", "exp3", "cascade", "split")


def noop(inputs):
    return ["0"] * len(inputs)


def batches_by_model(metrics_url: str) -> int:
    """Batches answered so far, all models together (clipper_model_batches_total)."""
    import re
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(float(value))
        for value in re.findall(r"^clipper_model_batches_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    )


def process_costs(pids: list[int]) -> tuple[float, int]:
    """User + system CPU seconds and context switches (all threads) the given processes had so far."""
    seconds = sum(common.process_cpu_seconds(pid) or 0.0 for pid in pids)
    switches = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.endswith("ctxt_switches:") or "ctxt_switches:" in line:
                    switches += int(line.split()[1])
    return seconds, switches


def window_costs(report: dict, batches: int, costs: dict[str, tuple[float, int]], cpu: common.CpuMeter) -> dict:
    """Queries per batch, and CPU microseconds and context switches per query of the frontend and of
    the replicas, over one window (clipper-loadgen's warm-up included: every request it sent, over
    the batches, CPU and switches of the whole window)."""
    answered = (report.get("requests") or 0) + (report.get("warmup_requests") or 0)
    if not answered:
        return {"batches": batches}
    return {
        "batches": batches,
        "queries_per_batch": round(answered / batches, 2) if batches else None,
        "cpu_micros_per_query": round(sum(c[0] for c in costs.values()) * 1e6 / answered, 2),
        **{f"{side}_cpu_micros_per_query": round(costs[side][0] * 1e6 / answered, 2) for side in costs},
        **{f"{side}_switches_per_query": round(costs[side][1] / answered, 3) for side in costs},
        "cpu_cores": cpu.summary(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=3, help="rounds of windows (single, exp3, cascade in turn)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each window")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--replica-transport",
        choices=("auto", "zmq"),
        default=None,
        help="replicas over shared memory where they can (auto, the default) or ZeroMQ only",
    )
    parser.add_argument(
        "--name", default="selection_overhead", help="results file name in bench/results/"
    )
    options = parser.parse_args(argv)

    import cloudpickle

    from clipper.deployers.python import deploy_python_closure

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    loadgen = common.find_loadgen()
    with contextlib.ExitStack() as stack:
        running = cluster.start_local_cluster(
            stack,
            "selection",
            cache_size_bytes=32 * 1024 * 1024,
            replica_transport=options.replica_transport,
        )
        conn = running.connection
        for name in ("noop_a", "noop_b"):
            deploy_python_closure(conn, name=name, version="1", input_type="doubles", func=noop)
        deploy_python_closure(
            conn, name="noop_c", version="1", input_type="doubles", func=noop, num_replicas=2
        )
        conn.register_application("single", "doubles", default_output="-1", slo_micros=100_000)
        conn.link_model_to_app("single", "noop_a")
        conn.register_application("exp3", "doubles", default_output="-1", slo_micros=100_000)
        conn.set_selection_policy("exp3", "exp3")
        conn.link_model_to_app("exp3", "noop_a")
        conn.link_model_to_app("exp3", "noop_b")
        conn.register_application("cascade", "doubles", default_output="-1", slo_micros=100_000)
        conn.set_selection_policy("cascade", "cascade", order=["noop_a", "noop_b"])
        conn.link_model_to_app("cascade", "noop_a")
        conn.link_model_to_app("cascade", "noop_b")
        conn.register_application("split", "doubles", default_output="-1", slo_micros=100_000)
        conn.link_model_to_app("split", "noop_c")
        for app in APPS:
            cluster.wait_for_model_answer(running.url(app), lambda i: {"input": [float(i)]})

        metrics_url = f"http://{running.metric_addr}/metrics"
        windows: dict[str, list[dict]] = {app: [] for app in APPS}
        for _ in range(options.pairs):
            for app in APPS:
                sides = {"frontend": [running.frontend_pid], "replicas": running.replica_pids()}
                batches = batches_by_model(metrics_url)
                start = {side: process_costs(pids) for side, pids in sides.items()}
                every_pid = [pid for pids in sides.values() for pid in pids]
                with common.CpuMeter(lambda every_pid=every_pid: every_pid) as cpu:
                    run = common.run_loadgen(
                        common.loadgen_command(
                            loadgen, running.url(app), connections=options.connections,
                            duration_seconds=options.seconds, warmup_seconds=1.0,
                        )
                    )
                batches = batches_by_model(metrics_url) - batches
                costs = {}
                for side, pids in sides.items():
                    seconds, switches = process_costs(pids)
                    costs[side] = (seconds - start[side][0], switches - start[side][1])
                windows[app].append({**run.to_json(), **window_costs(run.report, batches, costs, cpu)})

        update_url = f"http://{running.query_addr}/exp3/update"
        update = common.run_loadgen(
            common.loadgen_command(
                loadgen, update_url, connections=8, duration_seconds=options.seconds,
                warmup_seconds=1.0, workload="fixed",
                body=json.dumps({"uid": 1, "input": [1.0], "label": 0}),
            )
        )
        state = conn.get_selection_state("exp3", uid=1)

    def throughput(run: dict) -> float | None:
        return run.get("throughput_rps")

    def median_of(app: str, key: str) -> float | None:
        return common.median([w.get(key) for w in windows[app]])

    single = common.median([throughput(w) for w in windows["single"]])
    split = common.median([throughput(w) for w in windows["split"]])
    exp3 = common.median([throughput(w) for w in windows["exp3"]])
    cascade = common.median([throughput(w) for w in windows["cascade"]])
    results = {
        "machine": common.machine_info(),
        "source": cluster.source_revision(),
        "replica_transport": options.replica_transport or "auto",
        "windows": windows,
        "single_median_rps": single,
        "exp3_median_rps": exp3,
        "exp3_over_single": common.ratio(exp3, single),
        "cascade_median_rps": cascade,
        "cascade_over_single": common.ratio(cascade, single),
        "split_median_rps": split,
        "split_over_single": common.ratio(split, single),
        "exp3_over_split": common.ratio(exp3, split),
        "queries_per_batch": {app: median_of(app, "queries_per_batch") for app in APPS},
        "cpu_micros_per_query": {app: median_of(app, "cpu_micros_per_query") for app in APPS},
        "frontend_cpu_micros_per_query": {app: median_of(app, "frontend_cpu_micros_per_query") for app in APPS},
        "replicas_cpu_micros_per_query": {app: median_of(app, "replicas_cpu_micros_per_query") for app in APPS},
        "frontend_switches_per_query": {app: median_of(app, "frontend_switches_per_query") for app in APPS},
        "replicas_switches_per_query": {app: median_of(app, "replicas_switches_per_query") for app in APPS},
        "update": update.to_json(),
        "update_median_rps": throughput(update.to_json()),
        "feedback_rounds_stored": state["feedback"],
    }
    path = common.write_results(options.name, results)
    print(f"W1 closed loop, {options.connections} connections, median of {options.pairs} windows each:")
    print(f"  single (1 model)       {common.format_number(single)} req/s")
    print(f"  exp3 (2 models, draw)  {common.format_number(exp3)} req/s   ratio {common.format_number(common.ratio(exp3, single), 3)}")
    print(f"  cascade (2, first sure) {common.format_number(cascade)} req/s  ratio {common.format_number(common.ratio(cascade, single), 3)}")
    print(f"  split (1 model, 2 replicas) {common.format_number(split)} req/s   ratio {common.format_number(common.ratio(split, single), 3)}")
    for app in APPS:
        print(f"  {app:<8} {common.format_number(results['queries_per_batch'][app])} queries per batch; "
              f"CPU us per query: frontend {common.format_number(results['frontend_cpu_micros_per_query'][app], 2)}, "
              f"replicas {common.format_number(results['replicas_cpu_micros_per_query'][app], 2)}; "
              f"context switches per query: frontend "
              f"{common.format_number(results['frontend_switches_per_query'][app], 3)}, "
              f"replicas {common.format_number(results['replicas_switches_per_query'][app], 3)}")
    print(f"/update (8 connections): {common.format_number(throughput(update.to_json()))} rounds/s; "
          f"rounds stored for uid 1: {state['feedback']}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
