"""The load generator's own CPU per request: clipper-loadgen in open loop against a server, its user +
system time read from /proc/<pid>/stat over the measured window only (the connects before the arrivals
and the report after them are left out), divided by the requests answered in that window.

Several binaries can be compared in one run (e.g. a build of the previous commit against this one): the
runs alternate, binary by binary, rate by rate, so a machine that gets busier or quieter during the run
tilts every binary alike. The connections follow the overload study's client population (rate x SLO x
safety, spread over loopback source addresses).

    python bench/common.py nginx 18431 &
    python bench/loadgen/cpu_per_request.py --url http://127.0.0.1:18431/predict \
        --binary before=/tmp/loadgen-old --binary after=bench/build/loadgen/clipper-loadgen \
        --rates 40000 70000 --repeats 3 --duration 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import find_loadgen  # bench/ is not a package: its folder is put on the path above

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL_S = 0.05


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of `pid` so far (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # After the ")" of comm: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def run_once(binary: str, args: argparse.Namespace, rate: float) -> dict:
    connections = max(64, math.ceil(rate * args.slo_us / 1e6 * args.safety))
    sources = min(253, math.ceil(connections / args.per_address))
    command = [
        binary, "--url", args.url, "--rate", str(rate), "--connections", str(connections),
        "--source-addresses", str(sources), "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--drain", "1", "--w1", "--seed", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        while process.poll() is None:
            cpu = cpu_seconds(process.pid)
            if cpu is not None:
                samples.append((time.monotonic(), cpu))
            time.sleep(SAMPLE_INTERVAL_S)

    started = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate(timeout=args.duration + args.warmup + 60)
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.strip()}")
    report = json.loads(stdout)
    window_start = started + report["seconds_to_first_arrival"] + args.warmup
    window_end = window_start + args.duration
    inside = [(t, cpu) for t, cpu in samples if window_start <= t <= window_end]
    if len(inside) < 2:
        raise RuntimeError("too few CPU samples inside the measured window")
    (t0, cpu0), (t1, cpu1) = inside[0], inside[-1]
    answered_per_second = report["requests"] / args.duration
    cores = (cpu1 - cpu0) / (t1 - t0)
    return {
        "rate": rate,
        "connections": connections,
        "source_addresses": sources,
        "offered_rps": report["offered_rps"],
        "throughput_rps": report["throughput_rps"],
        "loadgen_cores": round(cores, 3),
        "cpu_us_per_request": round(cores / answered_per_second * 1e6, 3),
        "send_lag_p99_us": report["send_lag_us"]["p99"],
        "latency_p99_us": report["latency_us"]["p99"],
        "waited_for_connection": report["waited_for_connection"],
        "errors": report["errors"]["total"],
        "unfinished": report["unfinished"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="an HTTP server answering POST (e.g. nginx)")
    parser.add_argument(
        "--binary", action="append", default=[], metavar="NAME=PATH",
        help="a clipper-loadgen to measure (repeatable; default: this tree's build)",
    )  # fmt: skip
    parser.add_argument("--rates", type=float, nargs="+", default=[40000, 70000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--slo-us", type=float, default=100_000, help="as overload.py's client population"
    )
    parser.add_argument(
        "--safety", type=float, default=1.5, help="as overload.py's --connection-safety"
    )
    parser.add_argument(
        "--per-address",
        type=int,
        default=None,
        help="connections per source address (default: half the frontend's per-address cap, as overload.py)",
    )
    args = parser.parse_args(argv)
    if args.per_address is None:
        from clipper_native import defaults

        args.per_address = max(1, defaults.MAX_CONNECTIONS_PER_CLIENT_ADDRESS // 2)
    binaries = dict(entry.split("=", 1) for entry in args.binary) or {"this": find_loadgen()}

    runs: dict[str, dict[float, list[dict]]] = {
        name: {r: [] for r in args.rates} for name in binaries
    }
    for _ in range(args.repeats):
        for rate in args.rates:
            for name, binary in binaries.items():
                result = run_once(binary, args, rate)
                runs[name][rate].append(result)
                print(json.dumps({"binary": name, **result}), file=sys.stderr, flush=True)

    summary = {}
    for name in binaries:
        summary[name] = {}
        for rate in args.rates:
            per_request = [run["cpu_us_per_request"] for run in runs[name][rate]]
            cores = [run["loadgen_cores"] for run in runs[name][rate]]
            summary[name][str(int(rate))] = {
                "cpu_us_per_request_median": round(statistics.median(per_request), 3),
                "loadgen_cores_median": round(statistics.median(cores), 3),
                "runs": per_request,
            }
    if len(binaries) >= 2:
        # Each repeat ran the binaries back to back at a rate: their ratio within a repeat shares the
        # machine's load of that moment, so the median of those ratios is steadier than a ratio of medians.
        first, *others = list(binaries)
        for other in others:
            for rate in args.rates:
                pairs = zip(runs[other][rate], runs[first][rate], strict=True)
                ratios = [a["cpu_us_per_request"] / b["cpu_us_per_request"] for a, b in pairs]
                summary[other][str(int(rate))]["ratio_to_" + first] = {
                    "median_of_paired": round(statistics.median(ratios), 3),
                    "paired": [round(ratio, 3) for ratio in ratios],
                }
    print(
        json.dumps(
            {"machine_note": "shared 2-vCPU VM; ratios within one run", "summary": summary},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
