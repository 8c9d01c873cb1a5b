"""How soon two frontends on one Redis serve the same learned weights.

Owns bench/results/selection_convergence.json. One redis-server on loopback and, in this process, two
frontends' control planes as the frontend process builds them: each a native engine (the binding, no
replicas), a management service restored from the shared Redis store, and a feedback worker with its
follower thread (`SelectionFeedbackWorker.follow`). Frontend A applies feedback rounds for an `exp3`
app, one user per round; the time from A's round being stored (its `apply_feedback` returning) to B
publishing the same weights into its engine (`set_selection_weights`, timed by a thin wrapper around
B's engine) is the convergence delay. Also checks that B ends with A's weights for every user.

    python bench/selection_convergence.py                 # 2,000 rounds, ~10 s
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common

MODELS = ("right", "wrong")
OUTPUTS = {"right": "1", "wrong": "0"}


class TimedEngine:
    """The native engine, with the moment each user's weights reached it recorded."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.published: dict[int, tuple[float, dict[str, float]]] = {}
        self.changed = threading.Condition()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def set_selection_weights(self, app, uid, weights) -> None:
        self._engine.set_selection_weights(app, uid, weights)
        with self.changed:
            self.published[uid] = (time.monotonic(), dict(weights))
            self.changed.notify_all()


def start_redis(directory: str) -> tuple[subprocess.Popen, int]:
    import redis

    port = common.free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", directory, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = redis.Redis("127.0.0.1", port, socket_timeout=5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.02)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="feedback rounds, one user each")
    parser.add_argument("--users", type=int, default=200, help="distinct uids the rounds cycle over")
    options = parser.parse_args(argv)

    from clipper.management import ManagementService
    from clipper.management.selection_feedback import SelectionFeedbackWorker
    from clipper.state import RedisStateStore
    from clipper.state.selection_state import open_selection_store

    directory = tempfile.mkdtemp(prefix="selection-convergence-")
    redis_process, port = start_redis(directory)
    engines = [cluster.start_bare_engine(), cluster.start_bare_engine()]
    stop = threading.Event()
    workers = []
    try:
        stores = [RedisStateStore("127.0.0.1", port, cluster_name="converge") for _ in engines]
        services = [ManagementService(store, engine) for store, engine in zip(stores, engines)]
        services[0].restore()
        services[0].add_app(
            {"name": "app", "input_type": "ints", "default_output": "-1", "latency_slo_micros": 100000}
        )
        for name in MODELS:
            services[0].add_model({"model_name": name, "model_version": "1", "input_type": "ints"})
        services[0].operations["set_selection_policy"](
            {"app_name": "app", "policy": "exp3", "params": {}}
        )
        services[0].add_model_links({"app_name": "app", "model_names": list(MODELS)})
        services[1].restore()
        follower_side = TimedEngine(engines[1])
        bindings = [engines[0], follower_side]
        workers = [
            SelectionFeedbackWorker(service, open_selection_store(store), binding)
            for service, store, binding in zip(services, stores, bindings)
        ]
        followers = [
            threading.Thread(target=worker.follow, args=(stop, 0.1), daemon=True)
            for worker in workers
        ]
        for follower in followers:
            follower.start()
        time.sleep(0.3)  # both subscribed

        delays_ms: list[float] = []
        missed = 0
        began = time.monotonic()
        for round_number in range(options.rounds):
            uid = round_number % options.users
            # Alternate the label so weights change every round (an unchanged state publishes nothing).
            label = 1 if (round_number // options.users) % 2 == 0 else 0
            result = workers[0].apply_feedback("app", uid, OUTPUTS, label)
            stored_at = time.monotonic()
            with follower_side.changed:
                arrived = follower_side.changed.wait_for(
                    lambda uid=uid, w=result["weights"]: follower_side.published.get(uid, (0, None))[1]
                    == w,
                    timeout=5.0,
                )
            if not arrived:
                missed += 1
                continue
            delays_ms.append(max(0.0, follower_side.published[uid][0] - stored_at) * 1000)
        seconds = time.monotonic() - began
    finally:
        stop.set()
        for worker in workers:
            worker.close()
        for engine in engines:
            engine.stop()
        redis_process.terminate()
        redis_process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)

    delays_ms.sort()
    quantile = lambda q: delays_ms[min(len(delays_ms) - 1, int(q * len(delays_ms)))]
    results = {
        "machine": common.machine_info(),
        "source": cluster.source_revision(),
        "options": vars(options),
        "rounds_converged": len(delays_ms),
        "rounds_not_converged_within_5s": missed,
        "delay_ms": {
            "median": statistics.median(delays_ms),
            "p90": quantile(0.9),
            "p99": quantile(0.99),
            "max": delays_ms[-1],
        },
        "rounds_per_second": options.rounds / seconds,
        "note": "from A's round stored to B's engine given the same weights; one process, loopback Redis",
    }
    path = common.write_results("selection_convergence", results)
    d = results["delay_ms"]
    print(
        f"{len(delays_ms)} of {options.rounds} rounds reached the other frontend's engine "
        f"(not within 5 s: {missed}); delay ms: median {d['median']:.2f}, p90 {d['p90']:.2f}, "
        f"p99 {d['p99']:.2f}, max {d['max']:.2f}"
    )
    print(f"results: {path}")
    return 0 if missed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
