"""What many users of a learning policy cost the frontend: the native per-user weights table, measured.

Owns bench/results/selection_users_memory.json. One native engine (the binding, no replicas: the table
is filled the way the feedback worker fills it, through `Engine.set_selection_weights`) with one app
that samples between two linked models (exp3's native mode). It publishes weights for `--users`
distinct uids (1 million by default) in steps, reading this process's RSS after each step, then keeps
publishing new uids up to `--overflow` times that many to show the table's bound: past its capacity
(2^20 entries) a write evicts an entry of its shard, so memory stops growing. What it does not
measure, and where those figures are: the learned state in the store (SQLite about 150 bytes per
user, Redis about 210) and the feedback worker's cache of states (at most 100,000 users, about 374
bytes each), in docs/interfaces.md.

    python bench/selection_users_memory.py                  # 1,000,000 users, ~30 s
    python bench/selection_users_memory.py --users 200000   # a quick check
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common

MODELS = ("a", "b")


def start_engine():
    app = {
        "name": "app",
        "input_type": "doubles",
        "default_output": "-1",
        "slo_micros": 100_000,
        "linked_models": list(MODELS),
        "selection": {"mode": "sample"},
    }
    models = [{"name": m, "version": "1", "input_type": "doubles", "current": True} for m in MODELS]
    return cluster.start_bare_engine({"apps": [app], "models": models})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=5, help="RSS readings while filling")
    parser.add_argument(
        "--overflow", type=float, default=1.5, help="then publish up to this many times --users"
    )
    options = parser.parse_args(argv)

    engine = start_engine()
    pid = os.getpid()
    weights = {"a": 0.75, "b": 0.25}
    gc.collect()
    baseline = common.rss_bytes(pid)
    readings = [{"users": 0, "rss_bytes": baseline}]
    published = 0
    began = time.monotonic()
    targets = [options.users * (i + 1) // options.steps for i in range(options.steps)]
    targets.append(int(options.users * options.overflow))
    for target in targets:
        while published < target:
            engine.set_selection_weights("app", published, weights)
            published += 1
        gc.collect()
        readings.append({"users": published, "rss_bytes": common.rss_bytes(pid)})
    seconds = time.monotonic() - began
    engine.stop()

    at_users = next(r for r in readings if r["users"] == options.users)
    per_user = (at_users["rss_bytes"] - baseline) / options.users
    overflow = readings[-1]
    results = {
        "machine": common.machine_info(),
        "source": cluster.source_revision(),
        "options": vars(options),
        "linked_models": len(MODELS),
        "readings": readings,
        "bytes_per_user": per_user,
        "rss_growth_at_users_bytes": at_users["rss_bytes"] - baseline,
        "rss_growth_after_overflow_bytes": overflow["rss_bytes"] - baseline,
        "publish_seconds": seconds,
        "publishes_per_second": published / seconds,
        "note": "RSS of this process (the engine lives in it); publishes from Python, one call each",
    }
    path = common.write_results("selection_users_memory", results)
    mb = lambda v: f"{v / 2**20:,.1f} MiB"
    for reading in readings:
        print(f"  {reading['users']:>10,} users  RSS {mb(reading['rss_bytes'])}")
    print(
        f"{options.users:,} users: +{mb(results['rss_growth_at_users_bytes'])} "
        f"({per_user:.0f} bytes per user); after {overflow['users']:,} publishes: "
        f"+{mb(results['rss_growth_after_overflow_bytes'])}; "
        f"{results['publishes_per_second']:,.0f} publishes/s from Python"
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
