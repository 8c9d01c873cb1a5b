"""The shared-memory transport against ZeroMQ and nginx, in the same run (issue 13).

Three servers side by side: nginx (the W1 reference), a Clipper cluster whose local replica is served
over shared-memory rings (replica_transport="auto", the default) and one forced to ZeroMQ
(replica_transport="zmq"). W1 windows (a no-op model, one distinct 10-double vector per request)
alternate between them, the order rotating every repeat; medians over the repeats are reported with
ratios to nginx. Scenarios:

  closed_64 / closed_1  closed loop, 64 connections / 1 connection
  open_<R>              open loop, Poisson arrivals at R req/s (latency from the intended send time)
  tensor_<C>            a 1 MiB float32 tensor per query (262,144 floats as JSON), C connections, a
                        model that sums it: Clipper shm against ZeroMQ (nginx has no model)

CPU per request is each server's CPU time (frontend and replica separately, from /proc) over the
requests answered in the window. Unpinned by default (as users run it); --pin puts the servers on
--server-cpus and the load generator on --loadgen-cpus like bench/w1.py. Writes
bench/results/shm_transport.json and, with matplotlib, two plots (latency and CPU per request against
offered load).

    python bench/shm_transport.py                          # 5 s windows, 3 repeats
    python bench/shm_transport.py --pin --output bench/results/shm_transport_pinned.json

The runs of record (about 4.5 min unpinned, then 1 min pinned, on a quiet machine):

    python bench/shm_transport.py --repeat 3 --duration 3 --warmup 1 && \
    python bench/shm_transport.py --pin --repeat 1 --duration 3 --warmup 1 --rates 20000 \
        --tensor-connections 1 --output bench/results/shm_transport_pinned.json

A/B of the replicas' spin before sleeping (--shm-spin-micros N [M ...], off by default): one more
shared-memory cluster per value, `shm_spin<N>`, whose replicas poll their request ring N us before
they sleep (LocalContainerManager(replica_shm_spin_micros=N)), in the same windows and rotation as the
others, with ratios to nginx and to `shm` (no spin). Its cost shows as the replica's CPU per request.
The A/B of record (about 4 min, quiet machine; unpinned, as users run it):

    python bench/shm_transport.py --repeat 3 --duration 3 --warmup 1 --rates 20000 \
        --tensor-connections --shm-spin-micros 50 200 --output bench/results/shm_spin.json

--spins REPLICA:FRONTEND [...] does the same for both sides' spins: `shm_spin<R>_f<F>` (`shm_nospin` for
0:0) has replicas spinning R us (adaptive: shm::SpinPolicy backs off after spins that ran out) and
the frontend's I/O loop polling for an answer up to F us after each batch it sends
(LocalContainerManager(shm_response_spin_micros=F)); `shm` has the defaults
(clipper_native/defaults.json: both 0 today); `--shm-spin-micros N` is `--spins N:0`. A third
field, R:F:C, sets the frontend spin's cost bound (LocalContainerManager(
shm_response_spin_cost_micros=C), 0 = ungated; without it the frontend's default, 7 us spun per
answer caught) and names the cluster `shm_spin<R>_f<F>_c<C>`. Each shared-memory row carries
`frontend_spin` from the engine's clipper_shm_response_spin* counters: spins and gated sleeps per
request, the share of spins that caught an answer, microseconds spun per request and per answer caught.
The gated spin's A/B of record (issue 13, about 4 min, quiet machine): `shm_spin0_f20` is the
candidate default (the rule is in bench/README.md), `_c0` the ungated spin, `_c8` a looser bound:

    python bench/shm_transport.py --repeat 3 --duration 2 --warmup 1 --rates 20000 \
        --tensor-connections --spins 0:20 0:20:0 0:20:8 --output bench/results/shm_spin_gate.json

--batch-waits N [M ...] adds one shared-memory cluster per value, `shm_wait<N>`, whose W1 model waits up
to N us for more inputs before it sends a batch (delayed batching, deploy_python_closure(
batch_wait_timeout_micros=N)), with ratios to nginx and to `shm`: fewer, fuller batches trade latency
for CPU per request (each batch costs a wake-up on both sides). The trade-off's A/B (about 3 min):

    python bench/shm_transport.py --repeat 3 --duration 2 --warmup 1 --rates 20000 \
        --tensor-connections --batch-waits 50 200 --output bench/results/shm_batch_wait.json

--prefetch adds a shared-memory cluster with `replica_prefetch_full_batches` set against its default
(on since 2 December: `shm_prefetch_off`; `shm_prefetch_on` where it is off), with ratios to nginx and
to `shm` (the default): whether the option costs anything on W1. Each shared-memory row reports
`prefetched_batches_per_request` (the engine's clipper_model_prefetched_batches_total): W1's batches
are rarely full, as its controller sits above the connection count, so there the option seldom acts;
the overload study (bench/overload.py --replica-prefetch-full-batches) measures what it gives at 2x
capacity. The A/B (about 4 min):

    python bench/shm_transport.py --repeat 3 --duration 3 --warmup 1 --rates 20000 \
        --tensor-connections --prefetch --output bench/results/shm_prefetch.json

Also written: each issue-13 target as a ratio to nginx with met / NOT met, and the bytes copied per
1 MiB query: measured for shared memory (the engine's clipper_shm_request_*_bytes_total counters over
each tensor window: `shm_bytes_per_query`), described for both paths (`copies_per_tensor_query`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:
    from typing_extensions import Self

# bench/ is a folder of scripts, not a package: its helpers are imported by path.
import cluster
import common
import w1

MODES = ("nginx", "shm", "zmq")  # without --shm-spin-micros; see modes()
# The engine's counters of what it wrote into shared-memory request rings (docs/operations.md).
SHM_COPY_METRICS = {
    "inputs_written_once": "clipper_shm_request_input_bytes_total",
    "frame_copied": "clipper_shm_request_frame_bytes_total",
    "whole_messages_copied": "clipper_shm_request_copied_bytes_total",
}
TENSOR_FLOATS = 262_144  # 1 MiB of float32


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="windows per scenario and server")
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[5000, 10000, 20000, 30000], help="open loop req/s"
    )
    parser.add_argument(
        "--tensor-connections",
        type=int,
        nargs="*",
        default=[1, 4],
        help="1 MiB tensor scenario (none: skip it)",
    )
    parser.add_argument(
        "--shm-spin-micros",
        type=int,
        nargs="*",
        default=[],
        metavar="MICROS",
        help="also a shared-memory cluster per value whose replicas spin that long before sleeping",
    )
    parser.add_argument(
        "--spins",
        nargs="*",
        default=[],
        metavar="REPLICA:FRONTEND[:COST]",
        help="also a shared-memory cluster per pair: replicas spin REPLICA us before sleeping, the "
        "frontend polls for answers up to FRONTEND us after sending a batch, its spin gated at COST "
        "us spun per answer caught (shm_response_spin_cost_micros; default: the frontend's)",
    )
    parser.add_argument(
        "--batch-waits",
        type=int,
        nargs="*",
        default=[],
        metavar="MICROS",
        help="also a shared-memory cluster per value whose W1 model waits up to that long for more "
        "inputs before it sends a batch (delayed batching: batch_wait_timeout_micros)",
    )
    parser.add_argument(
        "--prefetch",
        action="store_true",
        help="also a shared-memory cluster with replica_prefetch_full_batches set against its "
        "default (on since 2 December): shm_prefetch_off; shm_prefetch_on where the default is off",
    )
    parser.add_argument("--pin", action="store_true", help="pin servers and load generator")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR / "shm_transport.json")
    own, rest = parser.parse_known_args(argv)
    defaults = ["--duration", "5", "--warmup", "1", "--hold", "0"]
    if not own.pin:
        defaults.append("--no-pin")
    args = w1.parse_args([*defaults, *rest, "--rates", *map(str, own.rates)])
    args.repeat, args.output, args.pin = own.repeat, own.output, own.pin
    args.tensor_connections = own.tensor_connections
    if any(not 0 < micros <= 10_000 for micros in own.shm_spin_micros):
        parser.error("--shm-spin-micros values must be from 1 to 10000")
    args.shm_spin_micros = list(dict.fromkeys(own.shm_spin_micros))
    spins: list[tuple[int, int, int | None]] = [
        (micros, 0, None) for micros in args.shm_spin_micros
    ]
    for pair in own.spins:
        try:
            parts = [int(part) for part in pair.split(":")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3):
            parser.error(f"--spins takes REPLICA:FRONTEND[:COST] microseconds, got {pair!r}")
        if not all(0 <= part <= 10_000 for part in parts):
            parser.error(f"--spins {pair}: each from 0 to 10000")
        spins.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    args.spins = list(dict.fromkeys(spins))
    if any(not 0 < micros <= 100_000 for micros in own.batch_waits):
        parser.error("--batch-waits values must be from 1 to 100000")
    args.batch_waits = list(dict.fromkeys(own.batch_waits))
    args.prefetch = own.prefetch
    return args


def spin_mode(replica: int, frontend: int, cost: int | None = None) -> str:
    """The name of a shared-memory cluster with set spins: shm_spin<R>_f<F> (shm_nospin for 0:0),
    with _c<C> when the frontend's spin cost bound is set."""
    name = "shm_nospin" if replica == frontend == 0 else f"shm_spin{replica}_f{frontend}"
    return name if cost is None else f"{name}_c{cost}"


def prefetch_mode() -> str:
    """The cluster --prefetch adds: replica_prefetch_full_batches set against its default."""
    from clipper_native import defaults

    return "shm_prefetch_off" if defaults.REPLICA_PREFETCH_FULL_BATCHES else "shm_prefetch_on"


def wait_mode(micros: int) -> str:
    """The name of a shared-memory cluster whose W1 model delays its batches: shm_wait<micros>."""
    return f"shm_wait{micros}"


def modes(args: argparse.Namespace) -> tuple[str, ...]:
    """The servers compared: nginx, shm, zmq, then one spinning shm cluster per --spins pair and
    one delayed-batching shm cluster per --batch-waits value."""
    return (
        MODES
        + tuple(spin_mode(*pair) for pair in args.spins)
        + tuple(wait_mode(micros) for micros in args.batch_waits)
        + ((prefetch_mode(),) if args.prefetch else ())
    )


class Cluster:
    """A local Clipper cluster (bench/cluster.py) with one no-op W1 replica and one 1 MiB-tensor
    replica, its replicas served over `transport` ("auto": shared memory; "zmq"), spinning
    `spin_micros` before they sleep on their request ring, the frontend polling for answers
    `response_spin_micros` after each batch, the W1 model's batches waiting up to
    `batch_wait_micros` for more inputs (0: sent at once)."""

    def __init__(
        self,
        transport: str,
        args: argparse.Namespace,
        stack: contextlib.ExitStack,
        spin_micros: int = 0,
        response_spin_micros: int | None = None,
        response_spin_cost_micros: int | None = None,
        batch_wait_micros: int = 0,
        prefetch: bool | None = None,
    ):
        from clipper.deployers.python import deploy_python_closure

        started = cluster.start_local_cluster(
            stack,
            f"shm-{transport}"
            + (f"-spin{spin_micros}" if spin_micros else "")
            + ("" if response_spin_micros is None else f"-f{response_spin_micros}")
            + ("" if response_spin_cost_micros is None else f"-c{response_spin_cost_micros}")
            + (f"-wait{batch_wait_micros}" if batch_wait_micros else "")
            + ("" if prefetch is None else f"-prefetch{'on' if prefetch else 'off'}"),
            cache_size_bytes=None,
            replica_transport=transport,
            replica_shm_spin_micros=spin_micros,
            # None: the frontend's default (clipper_native/defaults.json).
            **(
                {}
                if response_spin_micros is None
                else {"shm_response_spin_micros": response_spin_micros}
            ),
            **(
                {}
                if response_spin_cost_micros is None
                else {"shm_response_spin_cost_micros": response_spin_cost_micros}
            ),
            # None: the frontend's default (clipper_native/defaults.json).
            **({} if prefetch is None else {"replica_prefetch_full_batches": prefetch}),
        )
        self.connection = started.connection
        self.connection.register_application(w1.NO_OP_APP, "doubles", "-1.0", args.slo_micros)
        deploy_python_closure(
            self.connection,
            w1.NO_OP_MODEL,
            "1",
            "doubles",
            lambda xs: ["0"] * len(xs),
            batch_wait_timeout_micros=batch_wait_micros,
        )
        self.connection.link_model_to_app(w1.NO_OP_APP, w1.NO_OP_MODEL)
        self.connection.register_application("tensor", "floats", "-1.0", 10_000_000)
        deploy_python_closure(
            self.connection, "tensor-sum", "1", "floats", lambda xs: [float(x.sum()) for x in xs]
        )
        self.connection.link_model_to_app("tensor", "tensor-sum")
        self.url = started.url(w1.NO_OP_APP)
        self.tensor_address = started.query_addr
        self._wait_for_models()
        replicas = self.connection.get_all_model_replicas(verbose=True)
        self.transports = sorted({replica["transport"] for replica in replicas})
        if self.transports != [transport if transport != "auto" else "shm"]:
            raise RuntimeError(f"the {transport} cluster's replicas use {self.transports}")
        self.metrics_url = started.metrics_url
        self.frontend_pid = started.frontend_pid
        self.replica_pids = started.replica_pids()

    def _wait_for_models(self) -> None:
        cluster.wait_for_model_answer(self.url, lambda i: {"input": [float(i)] * 10})
        cluster.wait_for_model_answer(
            self.url.replace(w1.NO_OP_APP, "tensor"), lambda i: {"input": [float(i), 2.0]}
        )

    def target(self) -> w1.Target:
        return w1.Target(
            name="clipper",
            url=self.url,
            pid=self.frontend_pid,
            rss=lambda: common.rss_bytes(self.frontend_pid),
            server_pids=lambda: [self.frontend_pid, *self.replica_pids],
        )


def voluntary_switches(pid: int) -> int:
    """Times the threads of `pid` went to sleep so far (voluntary context switches, summed over
    /proc/<pid>/task/*/status; 0 once it is gone): each is a wake-up to pay later."""
    total = 0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError, ProcessLookupError),
                open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as status,
            ):
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
    return total


class ProcessCpu:
    """CPU seconds and sleeps (voluntary context switches) of named processes over a block."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids

    def _read(self) -> dict[str, tuple[float, int]]:
        return {
            name: (
                sum(common.process_cpu_seconds(pid) or 0.0 for pid in pids),
                sum(voluntary_switches(pid) for pid in pids),
            )
            for name, pids in self.pids.items()
        }

    def __enter__(self) -> Self:
        self._start, self._when = self._read(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end, elapsed = self._read(), time.monotonic() - self._when
        self.cores = {
            name: round((end[name][0] - self._start[name][0]) / elapsed, 3) for name in end
        }
        self.sleeps_per_second = {
            name: (end[name][1] - self._start[name][1]) / elapsed for name in end
        }


def run_w1(loadgen, mode, servers, scenario, args) -> dict[str, Any]:
    target = servers[mode]
    if mode == "nginx":
        pids = {"nginx": target.server_pids()}
        target_for_run = target
    else:
        pids = {"frontend": [target.frontend_pid], "replicas": target.replica_pids}
        target_for_run = target.target()
    before = None if mode == "nginx" else cluster.fetch_metrics(target.metrics_url)
    with ProcessCpu(pids) as cpu:
        report = w1.run_scenario(loadgen, target_for_run, scenario, args, sample_rss=False)
    if before is not None:
        after = cluster.fetch_metrics(target.metrics_url)
        report["frontend_spin"] = spin_report(before, after, report)
        report["prefetched_batches_per_request"] = prefetched_per_request(before, after, report)
    report["cores_by_process"] = cpu.cores
    report.update(cpu_per_request(cpu.cores, report["throughput_rps"]))
    report["sleeps_per_request_by_process"] = sleeps_per_request(
        cpu.sleeps_per_second, report["throughput_rps"]
    )
    return report


def prefetched_per_request(before: dict[str, float], after: dict[str, float], report) -> float | None:
    """Full batches sent to a replica at its pipeline depth (replica_prefetch_full_batches) per
    answered request over the window, all models: W1's batches are rarely full (its controller sits
    above the connection count), so there the option seldom acts."""
    key = "clipper_model_prefetched_batches_total"
    delta = sum(v for k, v in after.items() if k.startswith(key)) - sum(
        v for k, v in before.items() if k.startswith(key)
    )
    requests = (report.get("requests") or 0) + (report.get("warmup_requests") or 0)
    return round(delta / requests, 4) if requests else None


SPIN_METRICS = {
    "spins": "clipper_shm_response_spins_total",
    "caught": "clipper_shm_response_spins_caught_total",
    "spun_seconds": "clipper_shm_response_spin_seconds_total",
    "gated": "clipper_shm_response_spins_gated_total",
}


def spin_report(before: dict[str, float], after: dict[str, float], report: dict[str, Any]) -> dict:
    """The frontend's spin for answers over a window (warm-up included, like its requests here),
    per answered request: spins run, sleeps the cost gate kept from spinning, the share of spins
    that caught an answer, and microseconds spun per request and per answer caught (what the gate
    bounds)."""
    delta = {name: after.get(key, 0.0) - before.get(key, 0.0) for name, key in SPIN_METRICS.items()}
    requests = (report.get("requests") or 0) + (report.get("warmup_requests") or 0)
    return {
        "spins_per_request": round(delta["spins"] / requests, 3) if requests else None,
        "gated_per_request": round(delta["gated"] / requests, 3) if requests else None,
        "caught_share": round(delta["caught"] / delta["spins"], 3) if delta["spins"] else None,
        "spun_us_per_request": round(delta["spun_seconds"] * 1e6 / requests, 2) if requests else None,
        "spun_us_per_caught": (
            round(delta["spun_seconds"] * 1e6 / delta["caught"], 2) if delta["caught"] else None
        ),
    }


def sleeps_per_request(
    per_second: dict[str, float], throughput: float | None
) -> dict[str, float] | None:
    """Each process's sleeps (so wake-ups) per answered request, like CPU per request: the rate
    over the whole window (warm-up included) over the measured throughput."""
    if not throughput:
        return None
    return {name: round(rate / throughput, 3) for name, rate in per_second.items()}


def cpu_per_request(cores: dict[str, float], throughput: float | None) -> dict[str, Any]:
    """Server CPU microseconds per answered request, in all and by process."""
    if not throughput:
        return {"cpu_us_per_request": None, "cpu_us_per_request_by_process": None}
    return {
        "cpu_us_per_request": round(sum(cores.values()) / throughput * 1e6, 2),
        "cpu_us_per_request_by_process": {
            name: round(used / throughput * 1e6, 2) for name, used in cores.items()
        },
    }


def tensor_body() -> bytes:
    values = (i % 1000 / 8 for i in range(TENSOR_FLOATS))  # exact in float32, short in JSON
    return json.dumps({"input": list(values)}, separators=(",", ":")).encode()


# Every tensor query differs (its first value is a serial number, exact in float32), so that the
# prediction cache never answers one: the same body each time would measure the cache, not the
# transport.
_TENSOR_SERIAL = itertools.count(1)


def distinct_tensor(body: bytes) -> bytes:
    head, rest = body.split(b",", 1)
    return head[: head.index(b"[") + 1] + str(next(_TENSOR_SERIAL)).encode() + b"," + rest


def run_tensor(server: Cluster, connections: int, seconds: float, body: bytes) -> dict[str, Any]:
    """Closed loop over `connections` keep-alive connections (Python threads; the client's cost is
    the same for both transports), each posting a 1 MiB tensor no query sent before."""
    host, port = server.tensor_address.rsplit(":", 1)
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        try:
            while time.monotonic() < stop:
                query = distinct_tensor(body)
                started = time.perf_counter()
                connection.request("POST", "/tensor/predict", body=query)
                response = connection.getresponse()
                answer = json.loads(response.read())
                mine.append(time.perf_counter() - started)
                if response.status != 200 or answer.get("default"):
                    errors[0] += 1
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    pids = {"frontend": [server.frontend_pid], "replicas": server.replica_pids}
    threads = [threading.Thread(target=client) for _ in range(connections)]
    copies_before = cluster.fetch_metrics(server.metrics_url)
    with ProcessCpu(pids) as cpu:
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
    copies_after = cluster.fetch_metrics(server.metrics_url)
    latencies.sort()
    count = len(latencies)
    throughput = count / elapsed if elapsed else 0.0
    return {
        "connections": connections,
        "requests": count,
        "errors_or_defaults": errors[0],
        "throughput_rps": round(throughput, 1),
        "latency_us": {
            "p50": round(latencies[count // 2] * 1e6, 1) if count else None,
            "p99": round(latencies[min(count - 1, int(count * 0.99))] * 1e6, 1) if count else None,
        },
        "cores_by_process": cpu.cores,
        **cpu_per_request(cpu.cores, throughput),
        "shm_bytes_per_query": {
            name: round((copies_after.get(key, 0.0) - copies_before.get(key, 0.0)) / count, 1)
            if count
            else None
            for name, key in SHM_COPY_METRICS.items()
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    all_modes = tuple(dict.fromkeys([*MODES, *(run["mode"] for run in runs)]))
    for key in dict.fromkeys(run["scenario"] for run in runs):
        rows: dict[str, Any] = {}
        for mode in all_modes:
            mine = [r for r in runs if r["scenario"] == key and r["mode"] == mode]
            if not mine:
                continue
            rows[mode] = {
                "windows": len(mine),
                "throughput_rps": common.median([r["throughput_rps"] for r in mine]),
                "p50_us": common.median([r["latency_us"]["p50"] for r in mine]),
                "p99_us": common.median([r["latency_us"]["p99"] for r in mine]),
                "cpu_us_per_request": common.median([r["cpu_us_per_request"] for r in mine]),
                "cores_by_process": {
                    name: common.median([r["cores_by_process"][name] for r in mine])
                    for name in mine[0]["cores_by_process"]
                },
                "cpu_us_per_request_by_process": {
                    name: common.median(
                        [(r["cpu_us_per_request_by_process"] or {}).get(name) for r in mine]
                    )
                    for name in mine[0]["cores_by_process"]
                },
                "sleeps_per_request_by_process": {
                    name: common.median(
                        [(r.get("sleeps_per_request_by_process") or {}).get(name) for r in mine]
                    )
                    for name in mine[0]["cores_by_process"]
                }
                if "sleeps_per_request_by_process" in mine[0]
                else None,
                "prefetched_batches_per_request": common.median(
                    [r.get("prefetched_batches_per_request") for r in mine]
                )
                if mine[0].get("prefetched_batches_per_request") is not None
                else None,
                "frontend_spin": {
                    name: common.median([(r.get("frontend_spin") or {}).get(name) for r in mine])
                    for name in mine[0]["frontend_spin"]
                }
                if mine[0].get("frontend_spin")
                else None,
                "shm_bytes_per_query": {
                    name: common.median([r["shm_bytes_per_query"][name] for r in mine])
                    for name in SHM_COPY_METRICS
                }
                if "shm_bytes_per_query" in mine[0]
                else None,
                "errors": sum(r.get("errors", {}).get("total", 0) for r in mine)
                + sum(r.get("errors_or_defaults", 0) for r in mine),
                "default_answers": sum(r.get("default_answers", 0) for r in mine),
                "other_cores_max": max(
                    (r["cpu_cores"]["other"] for r in mine if "cpu_cores" in r), default=None
                ),
            }
        reference = "nginx" if "nginx" in rows else "zmq"
        pairs = [(mode, reference) for mode in all_modes if mode != "nginx"]
        # The spin's A/B: each spinning cluster against the same transport without it.
        pairs += [
            (mode, "shm")
            for mode in all_modes
            if mode.startswith(("shm_spin", "shm_nospin", "shm_wait", "shm_prefetch"))
        ]
        for mode, against in pairs:
            if mode in rows and against in rows and mode != against:
                rows[f"ratio_{mode}_over_{against}"] = {
                    field: common.ratio(rows[mode][field], rows[against][field])
                    for field in ("throughput_rps", "p50_us", "p99_us", "cpu_us_per_request")
                }
        summary[key] = rows
    return summary


# Issue 13's targets, as ratios to nginx in the same run: (scenario, field, bound, "max" or "min").
TARGETS = (
    ("closed_64", "throughput_rps", 0.8, "min"),
    ("closed_1", "p50_us", 2.0, "max"),
    ("open_20000", "p99_us", 2.0, "max"),
    ("open_20000", "cpu_us_per_request", 1.5, "max"),
)


def target_checks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target for each Clipper server: the ratio to nginx and whether it is met (None when the
    scenario did not run); open_20000 also needs 0 errors and 0 default answers."""
    checks = []
    for scenario, field, bound, kind in TARGETS:
        rows = summary.get(scenario, {})
        for mode in [name for name in rows_modes(rows) if name != "nginx"] or ["shm", "zmq"]:
            value = rows.get(f"ratio_{mode}_over_nginx", {}).get(field)
            met = None if value is None else (value >= bound if kind == "min" else value <= bound)
            if met and scenario.startswith("open_"):
                met = rows[mode]["errors"] == 0 and rows[mode]["default_answers"] == 0
            checks.append(
                {
                    "scenario": scenario,
                    "field": field,
                    "mode": mode,
                    "ratio": value,
                    "bound": f"{'>=' if kind == 'min' else '<='} {bound}x nginx",
                    "met": met,
                }
            )
    return checks


def rows_modes(rows: dict[str, Any]) -> list[str]:
    """The servers of one scenario's summary rows (not its ratios)."""
    return [name for name in rows if not name.startswith("ratio_")]


def copies_per_query(tensor_bytes: int) -> dict[str, Any]:
    """How a 1 MiB query's tensor travels from the frontend's decoded input to the model's numpy view
    on each path (cpp/rpc/shm_transport.h). The shared-memory figures are measured per window
    (`shm_bytes_per_query` in the tensor rows); the ZeroMQ ones follow from its path."""
    return {
        "tensor_bytes": tensor_bytes,
        "shm": {
            "copies_of_the_tensor": 1,
            "bytes_copied": tensor_bytes,
            "path": "query payload -> request ring (written in place; the frame around it, about "
            "100 bytes, is copied from the encoder); the replica's numpy array views the ring",
        },
        "zmq": {
            "copies_of_the_tensor": 4,
            "bytes_copied": 4 * tensor_bytes,
            "path": "query payload -> flatbuffers builder -> ZeroMQ message (zmq_send copies) -> "
            "kernel socket buffer -> the replica's ZeroMQ message (TCP loopback: the kernel's two "
            "copies); the replica views that message (recv copy=False)",
        },
    }


def plot(summary: dict[str, Any], rates: list[int], output: Path, placement: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plots (pip install '.[bench]')", file=sys.stderr)
        return []
    written = []
    all_modes = tuple(dict.fromkeys(mode for rows in summary.values() for mode in rows_modes(rows)))
    for fields, label, suffix in (
        (("p99_us", "p50_us"), "latency (us, from the intended send time)", "latency"),
        (("cpu_us_per_request",), "server CPU per request (us)", "cpu"),
    ):
        figure, axes = plt.subplots(figsize=(6, 4))
        for mode_index, mode in enumerate(all_modes):
            for field, style in zip(fields, ("-", "--")):
                points = [
                    (rate, summary[f"open_{rate}"][mode][field])
                    for rate in rates
                    if summary.get(f"open_{rate}", {}).get(mode, {}).get(field) is not None
                ]
                if points:
                    name = mode if len(fields) == 1 else f"{mode} {field.split('_')[0]}"
                    axes.plot(*zip(*points), style, marker="o", color=f"C{mode_index}", label=name)
        axes.set_xlabel("offered load (req/s, Poisson)")
        axes.set_ylabel(label)
        if suffix == "latency":
            axes.set_yscale("log")
        axes.set_title(f"W1 open loop: {suffix} vs load ({placement})", fontsize=9)
        axes.legend()
        axes.grid(True, alpha=0.3)
        path = output.with_name(output.stem + f"_{suffix}.png")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(str(path))
    return written


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    loadgen = common.find_loadgen(args.loadgen)
    scenario_list = w1.scenarios(args)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    load_before = os.getloadavg()
    body = tensor_body()
    with contextlib.ExitStack() as stack:
        servers: dict[str, Any] = {}
        with common.pinned(w1.cpus_for(args, "server")):
            servers["nginx"] = w1.start_nginx(args.nginx_workers, stack)
            servers["shm"] = Cluster("auto", args, stack)
            servers["zmq"] = Cluster("zmq", args, stack)
            for replica, frontend, cost in args.spins:
                servers[spin_mode(replica, frontend, cost)] = Cluster(
                    "auto",
                    args,
                    stack,
                    spin_micros=replica,
                    response_spin_micros=frontend,
                    response_spin_cost_micros=cost,
                )
            for micros in args.batch_waits:
                servers[wait_mode(micros)] = Cluster("auto", args, stack, batch_wait_micros=micros)
            if args.prefetch:
                from clipper_native import defaults

                servers[prefetch_mode()] = Cluster(
                    "auto", args, stack, prefetch=not defaults.REPLICA_PREFETCH_FULL_BATCHES
                )
        compared = modes(args)
        for repeat in range(args.repeat):
            turn = repeat % len(compared)
            order = compared[turn:] + compared[:turn]
            for scenario in scenario_list:
                for mode in order:
                    print(f"[{repeat + 1}/{args.repeat}] {scenario.key} -> {mode}", file=sys.stderr)
                    report = run_w1(loadgen, mode, servers, scenario, args)
                    runs.append(
                        {**report, "scenario": scenario.key, "mode": mode, "repeat": repeat}
                    )
            for connections in args.tensor_connections:
                for mode in [m for m in order if m != "nginx"]:
                    print(
                        f"[{repeat + 1}/{args.repeat}] tensor_{connections} -> {mode}",
                        file=sys.stderr,
                    )
                    report = run_tensor(servers[mode], connections, args.duration, body)
                    runs.append(
                        {
                            **report,
                            "scenario": f"tensor_{connections}",
                            "mode": mode,
                            "repeat": repeat,
                        }
                    )
    summary = summarize(runs)
    result = {
        "study": "shm_transport",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "placement": w1.placement_text(args),
        "shm_spin_micros": args.shm_spin_micros,
        "spins": [
            {"replica_micros": r, "frontend_micros": f, "frontend_cost_micros": c}
            for r, f, c in args.spins
        ],
        "batch_waits_micros": args.batch_waits,
        "prefetch": args.prefetch,
        "window_seconds": args.duration,
        "repeats": args.repeat,
        "tensor_body_bytes": len(body),
        "copies_per_tensor_query": copies_per_query(TENSOR_FLOATS * 4),
        "targets": target_checks(summary),
        "summary": summary,
        "runs": runs,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result["plots"] = plot(
        summary,
        args.rates,
        args.output,
        f"{'pinned' if args.pin else 'unpinned'}, load average {load_before[0]:.1f} on "
        f"{os.cpu_count()} CPUs",
    )
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{'scenario':<12}{'server':<12}{'req/s':>10}{'p50 us':>12}{'p99 us':>12}{'cpu us/req':>11}"
        f"  by process"
    )
    for key, rows in summary.items():
        for mode in rows_modes(rows):
            row = rows[mode]
            print(
                f"{key:<12}{mode:<12}{common.format_number(row['throughput_rps'], 0):>10}"
                f"{common.format_number(row['p50_us']):>10}{common.format_number(row['p99_us']):>10}"
                f"{common.format_number(row['cpu_us_per_request'], 1):>11}  cores {row['cores_by_process']}"
                f" cpu us/req {row['cpu_us_per_request_by_process']}"
                f" errors={row['errors']} defaults={row['default_answers']}"
            )
            if row.get("shm_bytes_per_query") and mode.startswith("shm"):
                print(f"{'':<12}shm bytes per query: {row['shm_bytes_per_query']}")
        for name, ratio in rows.items():
            if name.startswith("ratio_"):
                print(
                    f"{'':<12}{name}: "
                    + ", ".join(
                        f"{field} {'-' if value is None else f'{value:.2f}x'}"
                        for field, value in ratio.items()
                    )
                )
    for check in result["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not run"}[check["met"]]
        ratio = "-" if check["ratio"] is None else f"{check['ratio']:.2f}x"
        print(
            f"target {check['scenario']} {check['field']} {check['mode']}: {ratio} "
            f"(want {check['bound']}): {verdict}"
        )
    print(
        f"results: {args.output}; load average before {load_before[0]:.1f}, after "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
