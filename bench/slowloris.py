"""How much a slowloris attack of 2,000 connections delays a normal client of the query port.

One local cluster (default limits: 10 s header timeout, 4,096 connections per client address), the W1
no-op model and app. The normal client is `clipper-loadgen`, closed loop, one keep-alive connection,
a distinct 10-double vector per request; it runs in alternating windows without and with the attack,
so both sides of each ratio come from the same run. The attacker is a separate process (this script
with `--attacker`): 2,000 connections from 40 loopback addresses (127.0.0.2-41), each sending a
request line and one header, then another header line every second and never the end of the headers;
whatever the server closes (408 at the header timeout) is reopened at once, as a real slowloris does.

    python bench/slowloris.py                       # 3 pairs of 5 s windows
    python bench/slowloris.py --pairs 5 --window 10 --connections 2000

Writes bench/results/slowloris.json. Benchmarks assert nothing: the target (no delay beyond noise) is
printed as met / NOT met for the reader. The machine is shared: read `other_cpu_cores`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cluster as cluster_support
import common

APP = "slowloris-w1"
MODEL = "noop"


# ---- the attacker -------------------------------------------------------------------------------------


def attack(port: int, connections: int, addresses: int, trickle_s: float) -> None:
    """Holds `connections` half-sent requests open until SIGTERM; prints `holding N` once all are."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, connections + 256)), hard))
    stop = False

    def on_term(*_args: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    selector = selectors.DefaultSelector()
    counters = {"opened": 0, "closed_by_server": 0}
    head = b"POST /" + APP.encode() + b"/predict HTTP/1.1\r\nHost: x\r\n"
    unsent: set[socket.socket] = set()  # connecting: the request line goes out once connected

    def open_one(index: int) -> None:
        sock = socket.socket()
        sock.bind((f"127.0.0.{2 + index % addresses}", 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_READ, index)
        counters["opened"] += 1
        unsent.add(sock)

    def send_heads() -> None:
        for sock in list(unsent):
            try:
                sock.send(head)
                unsent.discard(sock)
            except (BlockingIOError, OSError):
                pass  # not connected yet

    for index in range(connections):
        open_one(index)
    deadline = time.monotonic() + 30
    while unsent and time.monotonic() < deadline:
        send_heads()
        time.sleep(0.05)
    print(f"holding {connections - len(unsent)}", flush=True)
    next_trickle = time.monotonic() + trickle_s
    while not stop:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            with contextlib.suppress(OSError):
                sock.recv(65536)  # the 408; the server closes next
            selector.unregister(sock)
            unsent.discard(sock)
            sock.close()
            counters["closed_by_server"] += 1
            open_one(key.data)
        send_heads()
        if time.monotonic() >= next_trickle:
            next_trickle += trickle_s
            for key in list(selector.get_map().values()):
                if key.fileobj not in unsent:
                    with contextlib.suppress(OSError):
                        key.fileobj.send(b"X-Slow: 1\r\n")
    print(json.dumps(counters), flush=True)


# ---- the study ------------------------------------------------------------------------------------------


def run_window(loadgen: str, url: str, seconds: float, server_pids: Any) -> dict[str, Any]:
    command = common.loadgen_command(
        loadgen, url, connections=1, duration_seconds=seconds, warmup_seconds=0.5
    )
    with common.CpuMeter(server_pids) as meter:
        run = common.run_loadgen(command, timeout_seconds=seconds + 30)
    report = run.report
    return {
        "requests": report["requests"],
        "throughput_rps": report["throughput_rps"],
        "p50_us": report["latency_us"]["p50"],
        "p99_us": report["latency_us"]["p99"],
        "p999_us": report["latency_us"]["p999"],
        "errors": report["errors"],
        "status": report["status"],
        "default_answers": report["default_answers"],
        "server_cpu_cores": meter.summary()["server"],
        "other_cpu_cores": meter.summary()["other"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="windows without, then with the attack"
    )
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured per window")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--addresses", type=int, default=40, help="attacker source addresses")
    parser.add_argument("--trickle", type=float, default=1.0, help="seconds between header lines")
    parser.add_argument("--loadgen", default=None)
    parser.add_argument("--output", default=str(common.RESULTS_DIR / "slowloris.json"))
    parser.add_argument("--attacker", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.attacker is not None:
        attack(options.attacker, options.connections, options.addresses, options.trickle)
        return 0

    loadgen = common.find_loadgen(options.loadgen)
    windows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        running = cluster_support.start_local_cluster(stack, "slowloris", cache_size_bytes=0)
        conn = running.connection
        from clipper.deployers.python import deploy_python_closure

        conn.register_application(APP, "doubles", "0", 100_000)
        deploy_python_closure(conn, MODEL, "1", "doubles", lambda xs: ["0"] * len(xs))
        conn.link_model_to_app(APP, MODEL)
        url = running.url(APP)
        cluster_support.wait_for_model_answer(url, lambda i: {"input": [float(i)] * 10})
        port = int(running.query_addr.rsplit(":", 1)[1])
        for pair in range(options.pairs):
            for attacked in (False, True):
                attacker = None
                if attacked:
                    attacker = subprocess.Popen(
                        [sys.executable, __file__, "--attacker", str(port),
                         "--connections", str(options.connections),
                         "--addresses", str(options.addresses), "--trickle", str(options.trickle)],
                        stdout=subprocess.PIPE, text=True,
                    )  # fmt: skip
                    assert attacker.stdout is not None
                    attacker.stdout.readline()  # "holding N"
                    time.sleep(1.0)
                rss_before = (
                    common.rss_bytes(running.frontend_pid) if running.frontend_pid else None
                )
                window = run_window(loadgen, url, options.window, running.server_pids)
                window |= {"pair": pair, "attacked": attacked}
                window["frontend_rss_mb"] = common.megabytes(
                    common.rss_bytes(running.frontend_pid) if running.frontend_pid else None
                )
                window["frontend_rss_mb_before"] = common.megabytes(rss_before)
                if attacker is not None:
                    attacker.send_signal(signal.SIGTERM)
                    out, _ = attacker.communicate(timeout=30)
                    window["attacker"] = json.loads(out.strip().splitlines()[-1])
                    time.sleep(1.0)
                windows.append(window)
                print(
                    f"pair {pair} {'attack ' if attacked else 'quiet  '} p50 {window['p50_us']:7.0f} us"
                    f"  p99 {window['p99_us']:7.0f} us  {window['throughput_rps']:8.0f} req/s  "
                    f"errors {window['errors']}  other cpu {window['other_cpu_cores']}",
                    file=sys.stderr,
                )

    def med(attacked: bool, key: str) -> float:
        return statistics.median(w[key] for w in windows if w["attacked"] == attacked)

    summary = {
        key: {
            "quiet": med(False, key),
            "attack": med(True, key),
            "ratio": med(True, key) / med(False, key),
        }
        for key in ("p50_us", "p99_us", "throughput_rps")
    }
    errors = sum(sum(w["errors"].values()) for w in windows)
    result = {
        "study": "slowloris: a normal client (1 connection, closed loop, W1 bodies) without and with "
        f"{options.connections} slow connections",
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "config": vars(options) | {"loadgen": loadgen},
        "revision": cluster_support.source_revision(),
        "summary": summary,
        "client_errors": errors,
        "windows": windows,
    }
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'':10} {'quiet':>10} {'attack':>10} {'ratio':>7}")
    for key, row in summary.items():
        print(f"{key:10} {row['quiet']:10.0f} {row['attack']:10.0f} {row['ratio']:7.2f}")
    met = summary["p50_us"]["ratio"] <= 1.2 and errors == 0
    print(f"client errors: {errors}; target (median not delayed beyond noise, <= 1.2x): "
          f"{'met' if met else 'NOT met'}; results in {options.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
