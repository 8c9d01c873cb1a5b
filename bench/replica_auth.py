"""What replica authentication costs: W1 (a no-op model, one distinct 10-double vector per request)
against a cluster whose replicas authenticate with CURVE (the default: every RPC message encrypted and
authenticated) and one started with allow_unauthenticated_replicas=True (ZeroMQ's NULL mechanism), in
the same run.

Both clusters run side by side (servers pinned to the same CPU, the load generator to another, as
bench/w1.py does); windows alternate between them, the order flipping every repeat, and medians over
the repeats are reported with the ratio CURVE/NULL. Results go to bench/results/replica_auth.json.

    python bench/replica_auth.py                   # 5 s windows, 5 repeats, closed 64/1, open 10,000/s
    python bench/replica_auth.py --repeat 9 --rates 5000 20000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import common
import w1

MODES = ("curve", "null")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="windows per scenario and mode")
    parser.add_argument("--rates", type=int, nargs="+", default=[10000], help="open loop req/s")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "replica_auth.json")
    own, rest = parser.parse_known_args(argv)
    defaults = ["--duration", "5", "--warmup", "1", "--hold", "0", "--targets", "clipper"]
    args = w1.parse_args([*defaults, *rest, "--rates", *map(str, own.rates)])
    args.repeat, args.output = own.repeat, own.output
    return args


def summarize(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in keys:
        rows: dict[str, Any] = {}
        for mode in MODES:
            mine = [r for r in runs if r["scenario"] == key and r["replica_auth"] == mode]
            throughput = common.median([r["throughput_rps"] for r in mine])
            cores = common.median([r["cpu_cores"]["server"] for r in mine])
            rows[mode] = {
                "windows": len(mine),
                "throughput_rps": throughput,
                "p50_us": common.median([r["latency_us"]["p50"] for r in mine]),
                "p99_us": common.median([r["latency_us"]["p99"] for r in mine]),
                "server_cores": cores,
                "server_cpu_us_per_request": (
                    None if not throughput or cores is None else cores / throughput * 1e6
                ),
                "errors": sum(r["errors"]["total"] for r in mine),
                "default_answers": sum(r["default_answers"] for r in mine),
                "other_cores_max": max(r["cpu_cores"]["other"] for r in mine),
            }
        rows["ratio_curve_over_null"] = {
            field: common.ratio(rows["curve"][field], rows["null"][field])
            for field in ("throughput_rps", "p50_us", "p99_us", "server_cpu_us_per_request")
        }
        summary[key] = rows
    return summary


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    loadgen = common.find_loadgen(args.loadgen)
    scenario_list = w1.scenarios(args)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        targets = {}
        for mode in MODES:
            args.allow_unauthenticated_replicas = mode == "null"
            print(f"starting a cluster with replica auth {mode} ...", file=sys.stderr)
            with common.pinned(w1.cpus_for(args, "server")):
                targets[mode] = w1.start_clipper(args, stack)
        frontends = {mode: target.info["frontend_command"] for mode, target in targets.items()}
        for repeat in range(args.repeat):
            order = MODES if repeat % 2 == 0 else tuple(reversed(MODES))
            for scenario in scenario_list:
                for mode in order:
                    print(f"[{repeat + 1}/{args.repeat}] {scenario.key} -> {mode}", file=sys.stderr)
                    report = w1.run_scenario(
                        loadgen, targets[mode], scenario, args, sample_rss=False
                    )
                    # After the report, whose own "mode" is the loop's (closed or open).
                    runs.append(
                        {**report, "scenario": scenario.key, "replica_auth": mode, "repeat": repeat}
                    )
    summary = summarize(runs, [s.key for s in scenario_list])
    result = {
        "study": "replica_auth",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "placement": w1.placement_text(args),
        "window_seconds": args.duration,
        "repeats": args.repeat,
        "frontends": frontends,
        "summary": summary,
        "runs": runs,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{'scenario':<22}{'mode':<7}{'req/s':>10}{'p50 us':>9}{'p99 us':>9}{'cpu us/req':>11}{'other':>7}"
    )
    for key, rows in summary.items():
        for mode in MODES:
            row = rows[mode]
            print(
                f"{key:<22}{mode:<7}{common.format_number(row['throughput_rps'], 0):>10}"
                f"{common.format_number(row['p50_us']):>9}{common.format_number(row['p99_us']):>9}"
                f"{common.format_number(row['server_cpu_us_per_request'], 1):>11}"
                f"{common.format_number(row['other_cores_max'], 2):>7}"
            )
        ratio = rows["ratio_curve_over_null"]
        print(
            f"{'':<22}{'ratio':<7}"
            + "".join(
                f"{'-' if ratio[f] is None else f'{ratio[f]:.3f}x':>{w}}"
                for f, w in (
                    ("throughput_rps", 10),
                    ("p50_us", 9),
                    ("p99_us", 9),
                    ("server_cpu_us_per_request", 11),
                )
            )
        )
    print(
        f"results: {args.output} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
