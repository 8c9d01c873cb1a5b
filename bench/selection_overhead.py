"""What the selection layer costs per query and per feedback round, measured in one cluster.

Owns the overhead study of the model-selection layer and bench/results/selection_overhead.json. One
local cluster (public admin API) serves two no-op models and three apps: `single` (Clipper's default
policy, one linked model), `exp3` (both models linked; each query draws one by the user's learned
weights, natively) and `cascade` (both models linked in order; the first reports no confidence, so it
counts as sure and answers every query: what a cascade costs when it never escalates, its copy of the
input for the stage after included). clipper-loadgen drives the W1 workload (a distinct 10-double
vector per request, 64 keep-alive connections, closed loop) against each app in turn, window after
window, so all see the same machine; then it drives `POST /exp3/update` (each round: both models' outputs from the cache or
evaluated, the policy's observe in the frontend's Python worker, the state stored, the weights
published) to measure feedback throughput. Processes unpinned, as users run them.

    python bench/selection_overhead.py                  # 3 rounds of 5 s windows per app (~1.5 min)
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

APPS = ("single", "exp3", "cascade")


def noop(inputs):
    return ["0"] * len(inputs)


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
        for app in APPS:
            cluster.wait_for_model_answer(running.url(app), lambda i: {"input": [float(i)]})

        windows: dict[str, list[dict]] = {app: [] for app in APPS}
        for _ in range(options.pairs):
            for app in APPS:
                run = common.run_loadgen(
                    common.loadgen_command(
                        loadgen, running.url(app), connections=options.connections,
                        duration_seconds=options.seconds, warmup_seconds=1.0,
                    )
                )
                windows[app].append(run.to_json())

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

    single = common.median([throughput(w) for w in windows["single"]])
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
        "update": update.to_json(),
        "update_median_rps": throughput(update.to_json()),
        "feedback_rounds_stored": state["feedback"],
    }
    path = common.write_results(options.name, results)
    print(f"W1 closed loop, {options.connections} connections, median of {options.pairs} windows each:")
    print(f"  single (1 model)       {common.format_number(single)} req/s")
    print(f"  exp3 (2 models, draw)  {common.format_number(exp3)} req/s   ratio {common.format_number(common.ratio(exp3, single), 3)}")
    print(f"  cascade (2, first sure) {common.format_number(cascade)} req/s  ratio {common.format_number(common.ratio(cascade, single), 3)}")
    print(f"/update (8 connections): {common.format_number(throughput(update.to_json()))} rounds/s; "
          f"rounds stored for uid 1: {state['feedback']}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
