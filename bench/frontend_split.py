"""Where the frontend's CPU per request goes at a fixed open-loop rate, against nginx in the same run
(issue 13: the frontend's 16.7 us per request at 20,000/s against nginx's 7.0).

One nginx (the W1 reference, bench/w1.py) and one Clipper cluster with a no-op W1 model served over
shared memory (bench/shm_transport.py's Cluster, the defaults), each given the same open-loop W1 load
(clipper-loadgen, Poisson arrivals) in three windows per server:

  1. plain: user and kernel CPU time (/proc/<pid>/stat utime and stime, all threads) and sleeps
     (voluntary context switches, /proc/<pid>/task/*/status) of each process, per answered request;
  2. strace -c -f attached to each process: system calls per request by kind (counts only: strace
     slows every call, so its timings are not read);
  3. perf record -e cpu-clock -g: where the samples fall, by symbol (user space and kernel), as a
     share of the process's samples and as microseconds per request (that share of window 1's CPU
     per request).

Processes: nginx (its workers and master), the frontend, and the replica. Unpinned, as users run it.
Timings from a shared machine are checks, not figures; system-call and sleep counts are steadier.

    python bench/frontend_split.py                       # 20,000/s, 4 s windows (~1.5 min)
    python bench/frontend_split.py --rate 10000 --duration 3

Writes bench/results/frontend_split.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import shm_transport
import w1

TOP_SYMBOLS = 12


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=20_000, help="offered W1 requests per second")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per window")
    parser.add_argument(
        "--output", type=Path, default=common.RESULTS_DIR / "frontend_split.json"
    )
    own = parser.parse_args(argv)
    args = shm_transport.parse_args(
        [
            "--rates", str(own.rate), "--tensor-connections", "--repeat", "1",
            "--duration", str(own.duration), "--warmup", "1",
        ]
    )  # fmt: skip
    args.rate, args.window, args.output = own.rate, own.duration, own.output
    return args


def proc_counts(pids: list[int]) -> tuple[float, float, int]:
    """(user seconds, kernel seconds, voluntary context switches) summed over `pids`."""
    user = kernel = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / common.CLOCK_TICKS_PER_SECOND
            kernel += int(fields[12]) / common.CLOCK_TICKS_PER_SECOND
    switches = sum(shm_transport.voluntary_switches(pid) for pid in pids)
    return user, kernel, switches


def answered(report: dict[str, Any]) -> int:
    """Requests answered in a loadgen window, its warm-up included (the counters cover both)."""
    return (report.get("requests") or 0) + (report.get("warmup_requests") or 0)


def plain_window(loadgen, target, scenario, args, processes) -> dict[str, Any]:
    before = {name: proc_counts(pids) for name, pids in processes.items()}
    report = w1.run_scenario(loadgen, target, scenario, args, sample_rss=False)
    after = {name: proc_counts(pids) for name, pids in processes.items()}
    requests = answered(report)
    split = {}
    for name in processes:
        user, kernel, switches = (a - b for a, b in zip(after[name], before[name]))
        split[name] = {
            "user_us_per_request": round(user / requests * 1e6, 2),
            "kernel_us_per_request": round(kernel / requests * 1e6, 2),
            "sleeps_per_request": round(switches / requests, 3),
        }
    return {
        "requests": requests,
        "throughput_rps": report["throughput_rps"],
        "p50_us": report["latency_us"]["p50"],
        "p99_us": report["latency_us"]["p99"],
        "errors": report.get("non_2xx", 0) + report.get("lost", 0),
        "by_process": split,
    }


def parse_strace_summary(text: str) -> dict[str, int]:
    """strace -c's table: calls by system call (the `total` line left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[3].isdigit() or fields[-1] == "total":
            continue
        calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
    return calls


def strace_window(loadgen, target, scenario, args, processes, work: Path) -> dict[str, Any]:
    tracers = {}
    for name, pids in processes.items():
        output = work / f"strace-{name}.txt"
        command = ["strace", "-c", "-f", "-q", "-o", str(output)]
        for pid in pids:
            command += ["-p", str(pid)]
        tracers[name] = (subprocess.Popen(command, stderr=subprocess.DEVNULL), output)
    time.sleep(0.5)  # attached before the load starts
    report = w1.run_scenario(loadgen, target, scenario, args, sample_rss=False)
    for process, _ in tracers.values():
        process.send_signal(signal.SIGINT)
    requests = answered(report)
    by_process = {}
    for name, (process, output) in tracers.items():
        process.wait(timeout=30)
        calls = parse_strace_summary(output.read_text())
        by_process[name] = {
            "per_request": round(sum(calls.values()) / requests, 3),
            "by_call": {
                call: round(count / requests, 3)
                for call, count in sorted(calls.items(), key=lambda item: -item[1])
                if count / requests >= 0.01
            },
        }
    return {"requests": requests, "by_process": by_process}


def parse_perf_report(text: str) -> list[tuple[float, str, str]]:
    """`perf report --stdio --sort dso,symbol` lines: (percent, dso, symbol)."""
    rows = []
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 3 or not fields[0].endswith("%") or line.lstrip().startswith("#"):
            continue
        try:
            percent = float(fields[0].rstrip("%"))
        except ValueError:
            continue
        # The symbol, without the empty columns perf prints after it.
        rows.append((percent, fields[1], re.split(r"\s{2,}", fields[2].strip())[0]))
    return rows


def perf_window(loadgen, target, scenario, args, processes, cpu_us, work: Path) -> dict[str, Any]:
    recorders = {}
    for name, pids in processes.items():
        data = work / f"perf-{name}.data"
        command = ["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", str(data)]
        command += ["-p", ",".join(map(str, pids))]
        recorders[name] = (subprocess.Popen(command, stderr=subprocess.DEVNULL), data)
    time.sleep(0.5)
    w1.run_scenario(loadgen, target, scenario, args, sample_rss=False)
    for process, _ in recorders.values():
        process.send_signal(signal.SIGINT)
    by_process = {}
    for name, (process, data) in recorders.items():
        process.wait(timeout=60)
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
             "--sort", "dso,symbol", "--percent-limit", "0.5"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        rows = parse_perf_report(report.stdout)
        kernel = sum(percent for percent, dso, _ in rows if dso == "[kernel.kallsyms]")
        by_process[name] = {
            "kernel_share_of_samples": round(kernel / 100, 3),
            "top": [
                {
                    "percent": percent,
                    "dso": dso,
                    "symbol": symbol,
                    "us_per_request": round(percent / 100 * cpu_us[name], 2),
                }
                for percent, dso, symbol in rows[:TOP_SYMBOLS]
            ],
        }
    return by_process


def measure(loadgen, name, target, processes, scenario, args, work) -> dict[str, Any]:
    print(f"{name}: plain window", file=sys.stderr)
    plain = plain_window(loadgen, target, scenario, args, processes)
    cpu_us = {
        process: split["user_us_per_request"] + split["kernel_us_per_request"]
        for process, split in plain["by_process"].items()
    }
    print(f"{name}: strace window", file=sys.stderr)
    traced = strace_window(loadgen, target, scenario, args, processes, work)
    print(f"{name}: perf window", file=sys.stderr)
    profiled = perf_window(loadgen, target, scenario, args, processes, cpu_us, work)
    return {"plain": plain, "syscalls": traced, "profile": profiled}


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{'process':<10}{'user us':>9}{'kernel us':>10}{'sleeps':>8}{'syscalls':>10}  "
        "per request; top system calls"
    )
    for server in results.values():
        for name, split in server["plain"]["by_process"].items():
            calls = server["syscalls"]["by_process"][name]
            top = ", ".join(f"{call} {count}" for call, count in list(calls["by_call"].items())[:5])
            print(
                f"{name:<10}{split['user_us_per_request']:>9}{split['kernel_us_per_request']:>10}"
                f"{split['sleeps_per_request']:>8}{calls['per_request']:>10}  {top}"
            )
    for server in results.values():
        for name, profile in server["profile"].items():
            print(f"\n{name}: top symbols (cpu-clock samples), us per request")
            for row in profile["top"]:
                print(f"  {row['percent']:5.1f}% {row['us_per_request']:6.2f}  {row['dso']} {row['symbol']}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loadgen = common.find_loadgen(args.loadgen)
    scenario = next(s for s in w1.scenarios(args) if s.key == f"open_{args.rate}")
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as work:
        nginx = w1.start_nginx(args.nginx_workers, stack)
        clipper = shm_transport.Cluster("auto", args, stack)
        servers = {
            "nginx": (nginx, {"nginx": nginx.server_pids()}),
            "clipper": (
                clipper.target(),
                {"frontend": [clipper.frontend_pid], "replica": clipper.replica_pids},
            ),
        }
        for name, (target, processes) in servers.items():
            results[name] = measure(loadgen, name, target, processes, scenario, args, Path(work))
    document = {
        "study": "frontend_split",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rate": args.rate,
        "window_seconds": args.window,
        "placement": "unpinned",
        "host": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print_table(results)
    print(f"\nresults: {args.output}; load average before {load_before[0]:.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
