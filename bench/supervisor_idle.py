"""What an idle local cluster's frontend costs in system calls, and how much of it is the replica
supervisor (clipper.managers.local_supervisor, a thread of the frontend process).

Starts a cluster of local processes (LocalContainerManager, whose frontend supervises its replicas),
deploys a no-op model with `--replicas` replicas, sends no load, and attaches `strace -f` to the
frontend for `--duration` seconds. Every traced call counts: by thread, and by kind for the
supervisor's thread, which is the one whose calls name the cluster's replica records directory
(`<state_dir>/replicas`). strace slows each call it stops, so its timings are not read; counts of
an idle process do not depend on the machine's load (the engine's own timers and the supervisor's
ticks run on the clock).

    python bench/supervisor_idle.py                    # 2 replicas, 10 s (about 30 s in all)
    python bench/supervisor_idle.py --replicas 4 --duration 5

Writes bench/results/supervisor_idle.json and prints a summary.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster
import common

APP = "idle"
MODEL = "idle-noop"
# "1234 openat(...) = 3", "1234 poll(... <unfinished ...>"; "<... poll resumed>" lines are the
# second half of a call already counted.
_CALL = re.compile(r"^(\d+)\s+([a-z0-9_]+)\(")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=2, help="replicas of the no-op model")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds traced")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before tracing")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "supervisor_idle.json")
    return parser.parse_args(argv)


def trace_calls(pid: int, duration_s: float, trace: Path) -> list[tuple[int, str, str]]:
    """(thread id, system call, the line) of every call `pid`'s threads make in `duration_s`."""
    tracer = subprocess.Popen(
        ["strace", "-f", "-q", "-o", str(trace), "-p", str(pid)], stderr=subprocess.PIPE
    )
    time.sleep(duration_s)
    tracer.send_signal(signal.SIGINT)
    _, errors = tracer.communicate(timeout=30)
    if tracer.returncode not in (0, -signal.SIGINT) and not trace.exists():
        raise RuntimeError(f"strace failed: {errors.decode(errors='replace').strip()}")
    calls = []
    for line in trace.read_text(errors="replace").splitlines():
        match = _CALL.match(line)
        if match:
            calls.append((int(match.group(1)), match.group(2), line))
    return calls


def summarize(calls: list[tuple[int, str, str]], records_dir: str, duration_s: float) -> dict:
    by_thread = collections.Counter(tid for tid, _, _ in calls)
    supervisors = sorted({tid for tid, _, line in calls if records_dir in line})
    supervisor_calls = collections.Counter(call for tid, call, _ in calls if tid in supervisors)

    def per_second(count: int) -> float:
        return round(count / duration_s, 1)

    return {
        "frontend_calls_per_s": per_second(len(calls)),
        "supervisor_threads": supervisors,
        "supervisor_calls_per_s": per_second(sum(supervisor_calls.values())),
        "supervisor_by_call_per_s": {
            call: per_second(count) for call, count in supervisor_calls.most_common()
        },
        "by_thread_per_s": {str(tid): per_second(count) for tid, count in by_thread.most_common()},
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from clipper.deployers.python import deploy_python_closure

    with contextlib.ExitStack() as stack:
        started = cluster.start_local_cluster(stack, "supervisor-idle", cache_size_bytes=None)
        connection = started.connection
        connection.register_application(APP, "doubles", "-1.0", 1_000_000)
        deploy_python_closure(
            connection, MODEL, "1", "doubles", lambda xs: ["0"] * len(xs),
            num_replicas=args.replicas,
        )  # fmt: skip
        connection.link_model_to_app(APP, MODEL)
        cluster.wait_for_model_answer(started.url(APP), lambda i: {"input": [float(i)]})
        records_dir = str(started.manager.state_dir / "replicas")
        time.sleep(args.settle)
        with tempfile.TemporaryDirectory(prefix="supervisor-idle-") as work:
            calls = trace_calls(started.frontend_pid, args.duration, Path(work) / "trace.txt")
        replicas = len(started.manager.list_replicas())
    summary = summarize(calls, records_dir, args.duration)
    payload: dict[str, Any] = {
        "replicas": replicas,
        "duration_s": args.duration,
        **summary,
        "source": cluster.source_revision(),
        "machine": common.machine_info(),
    }
    path = common.write_results(args.output.stem, payload, args.output.parent)
    print(
        f"idle frontend, {replicas} replicas, {args.duration:.0f} s traced: "
        f"{summary['frontend_calls_per_s']} system calls/s in all, "
        f"{summary['supervisor_calls_per_s']} by the replica supervisor "
        f"(thread {', '.join(map(str, summary['supervisor_threads'])) or 'not seen'})"
    )
    for call, rate in summary["supervisor_by_call_per_s"].items():
        print(f"  {call:<16} {rate:>8}/s")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
