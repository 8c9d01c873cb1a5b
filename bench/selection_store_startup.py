"""What a frontend's start costs with many users stored in the SQLite selection store (issue 9).

Owns bench/results/selection_store_startup.json. For each --users count: one local cluster (public
admin API, embedded state store) with an `exp3` app over two registered models, stopped; its
`selection.sqlite3` then filled with that many users' learned states (the text exp3 stores after 50
rounds, written straight into the table); then the frontend process started again and timed: until it
answers (start_clipper returns), and until its feedback worker logs that every stored user's weights
reached the engine (`event=selection_weights_published`). The frontend's RSS is read then, and its
peak (VmHWM) over the whole start. A cluster with no stored users is the reference in the same run.

    python bench/selection_store_startup.py                       # 0, 100,000 and 1,000,000 users
    python bench/selection_store_startup.py --users 0 20000       # a quick check (~15 s)
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common

APP = "bandit"
MODELS = ("a", "b")
PUBLISHED = re.compile(r"event=selection_weights_published users=(\d+)")


def learned_state_text() -> str:
    """A user's stored text after 50 rounds of exp3 in which model "a" was right."""
    from clipper.selection import make_policy
    from clipper.state.selection_state import encode_state

    policy = make_policy("exp3")
    state = policy.init_state(list(MODELS))
    for _ in range(50):
        state = policy.observe(state, {"a": "1", "b": "0"}, 1)
    return encode_state(state)


def fill(database: Path, users: int, text: str) -> None:
    """`users` rows of `text` for APP, in the selection store's own table, 100,000 a transaction."""
    db = sqlite3.connect(database)
    try:
        for start in range(0, users, 100_000):
            with db:
                db.executemany(
                    "INSERT INTO selection_state (app, uid, state) VALUES (?, ?, ?)",
                    ((APP, uid, text) for uid in range(start, min(start + 100_000, users))),
                )
    finally:
        db.close()


def peak_rss_bytes(pid: int) -> int | None:
    """The process's peak resident set (VmHWM) so far."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def published_users(log_path: Path, offset: int) -> int | None:
    """The user count of the first `selection_weights_published` event past `offset` in the log."""
    with open(log_path, encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        found = PUBLISHED.search(log.read())
    return None if found is None else int(found.group(1))


def measure(users: int, text: str, timeout_s: float) -> dict:
    with contextlib.ExitStack() as stack:
        from clipper import LocalContainerManager

        # INFO: the publish event is what is timed.
        running = cluster.start_cluster(
            stack, f"store-{users}", LocalContainerManager, log_level="INFO"
        )
        conn = running.connection
        conn.register_application(APP, "doubles", "-1", 100_000)
        for name in MODELS:
            conn.register_model(name, "1", "doubles")
        conn.set_selection_policy(APP, "exp3")
        for name in MODELS:
            conn.link_model_to_app(APP, name)
        conn.stop_all()
        with common.timed(f"filling {users:,} users"):
            fill(Path(conn.cm.state_dir) / "selection.sqlite3", users, text)
        log_path = Path(conn.cm.frontend_log_path)
        offset = log_path.stat().st_size
        started = time.monotonic()
        conn.start_clipper()
        answering_s = time.monotonic() - started
        pid = conn.cm.frontend_pid()
        deadline = started + timeout_s
        while (published := published_users(log_path, offset)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{users:,} users not published within {timeout_s} s")
            time.sleep(0.05)
        published_s = time.monotonic() - started
        return {
            "users": users,
            "published_users": published,
            "answering_s": round(answering_s, 2),
            "published_s": round(published_s, 2),
            "rss_after_publish_bytes": common.rss_bytes(pid),
            "peak_rss_bytes": peak_rss_bytes(pid),
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[0, 100_000, 1_000_000])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to publish, at most")
    parser.add_argument("--name", default="selection_store_startup", help="results file's name")
    options = parser.parse_args(argv)
    started = time.monotonic()
    text = learned_state_text()
    runs = [measure(users, text, options.timeout) for users in options.users]
    reference = next((run for run in runs if run["users"] == 0), None)
    for run in runs:
        if reference is not None and run["users"]:
            grown = run["peak_rss_bytes"] - reference["peak_rss_bytes"]
            run["peak_rss_over_reference_bytes"] = grown
            run["peak_rss_over_reference_bytes_per_user"] = round(grown / run["users"], 1)
    results = {
        "machine": common.machine_info(),
        "source": cluster.source_revision(),
        "options": vars(options),
        "state_text_bytes": len(text),
        "runs": runs,
        "elapsed_s": round(time.monotonic() - started, 1),
        "note": "the frontend process (engine + management + feedback worker); SQLite store",
    }
    path = common.write_results(options.name, results)
    mib = lambda value: f"{value / 2**20:,.1f} MiB"
    for run in runs:
        extra = ""
        if "peak_rss_over_reference_bytes" in run:
            extra = (
                f" (+{mib(run['peak_rss_over_reference_bytes'])} over no users, "
                f"{run['peak_rss_over_reference_bytes_per_user']:.0f} B/user)"
            )
        print(
            f"{run['users']:>10,} users: answering {run['answering_s']:.2f} s, all published "
            f"{run['published_s']:.2f} s, RSS then {mib(run['rss_after_publish_bytes'])}, "
            f"peak {mib(run['peak_rss_bytes'])}{extra}"
        )
    print(f"results: {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
