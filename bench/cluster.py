"""A local Clipper cluster for a study, and a sampler of its Prometheus /metrics over time.

Owns starting a cluster through the public admin API (`LocalContainerManager` on free ports, a
throw-away state dir, stopped by the caller's ExitStack even when the study fails), waiting until a
model answers, and reading the engine's counters, gauges and histograms between two instants. It
does not deploy anything (each study does). `MetricsSampler` polls /metrics on one background
thread; everything else runs on the caller's thread. Used by w3.py, w4.py, goodput.py, overload.py,
cache_bench.py and shm_transport.py (w1.py has its own, older copy of the start-up); its bare
in-process engine by selection_convergence.py and selection_users_memory.py.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import common

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass
class LocalCluster:
    """A running cluster (local processes or containers): its admin connection and where it
    listens."""

    connection: Any  # clipper.ClipperConnection
    query_addr: str
    metric_addr: str
    frontend_pid: int | None
    start_kwargs: dict[str, Any] = field(default_factory=dict)
    manager: Any = None  # clipper.LocalContainerManager or DockerContainerManager

    def url(self, app: str) -> str:
        return f"http://{self.query_addr}/{app}/predict"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metric_addr}/metrics"

    def server_pids(self) -> list[int]:
        """The frontend and every model replica (this script's descendants running the SDK)."""
        pids = [self.frontend_pid] if self.frontend_pid else []
        replicas = [
            pid
            for pid in common.descendants_of(os.getpid())
            if "clipper.container" in common.process_command_line(pid)
        ]
        return sorted(set(pids + replicas))

    def replica_pids(self) -> list[int]:
        """This cluster's model replicas only (several clusters may run side by side)."""
        return [replica.pid for replica in self.manager.list_replicas()]


def start_local_cluster(
    stack: contextlib.ExitStack,
    label: str,
    cache_size_bytes: int | None,
    io_threads: int = 1,
    replica_transport: str | None = None,
    rpc_thread: str | None = None,
    **manager_options: Any,
) -> LocalCluster:
    """Starts a cluster of local processes (LocalContainerManager); see start_cluster.
    `replica_transport` ("auto" or "zmq") None keeps the default transport; `manager_options` go to
    LocalContainerManager (e.g. frontend_cpus, model_cpus)."""
    from clipper import LocalContainerManager

    return start_cluster(
        stack,
        label,
        LocalContainerManager,
        cache_size_bytes,
        io_threads,
        rpc_thread=rpc_thread,
        **({} if replica_transport is None else {"replica_transport": replica_transport}),
        **manager_options,
    )


def start_cluster(
    stack: contextlib.ExitStack,
    label: str,
    manager_class: Any,
    cache_size_bytes: int | None = None,
    io_threads: int = 1,
    replica_start_timeout_s: float | None = None,
    rpc_thread: str | None = None,
    **manager_options: Any,
) -> LocalCluster:
    """Starts a cluster on free ports with its own state dir, managed by `manager_class`
    (LocalContainerManager or DockerContainerManager, given `manager_options`; the frontend logs
    warnings only unless they name a log_level); `stack` stops it and removes the dir.
    `cache_size_bytes` None keeps the default cache."""
    from clipper import ClipperConnection

    query_port, management_port, rpc_port, metrics_port = common.free_ports(4)
    state_dir = tempfile.mkdtemp(prefix=f"clipper-bench-{label}-")
    stack.callback(shutil.rmtree, state_dir, True)
    manager = manager_class(
        cluster_name=f"bench-{label}-{os.getpid()}",
        clipper_query_port=query_port,
        clipper_management_port=management_port,
        clipper_rpc_port=rpc_port,
        prometheus_port=metrics_port,
        state_dir=state_dir,
        **{"log_level": "WARNING", **manager_options},
    )
    timeout = (
        {}
        if replica_start_timeout_s is None
        else {"replica_start_timeout_s": replica_start_timeout_s}
    )
    connection = ClipperConnection(manager, **timeout)
    start_kwargs: dict[str, Any] = {"qf_http_thread_pool_size": io_threads}
    if cache_size_bytes is not None:
        start_kwargs["cache_size"] = cache_size_bytes
    if rpc_thread is not None:  # "shared" or "dedicated" (start_clipper's); None keeps its default
        start_kwargs["rpc_thread"] = rpc_thread
    # Registered before the start, so a start that fails half-way is cleaned up too.
    stack.callback(_stop_quietly, connection)
    connection.start_clipper(**start_kwargs)
    # A frontend in a container is no process of this machine's to measure.
    local_pid = getattr(manager, "frontend_pid", None)
    pid = (local_pid() or common.pid_listening_on(query_port)) if local_pid else None
    return LocalCluster(
        connection=connection,
        query_addr=connection.get_query_addr(),
        metric_addr=connection.get_metric_addr(),
        frontend_pid=pid,
        start_kwargs=start_kwargs,
        manager=manager,
    )


def start_bare_engine(config: dict[str, Any] | None = None) -> Any:
    """A native engine in this process (the binding), on ephemeral ports, with no replicas and no
    management service: for studies of the engine's own tables. `config` is applied as the
    management service would (apps and models). The caller stops it."""
    import json

    from clipper_native import _core

    options = _core.EngineOptions()
    options.query_port = 0
    options.rpc_port = 0
    options.metrics_port = 0
    engine = _core.Engine(options)
    engine.start()
    if config is not None:
        engine.apply_config(json.dumps(config))
    return engine


def source_revision() -> dict[str, Any]:
    """The repository's commit and whether the working tree differs from it (for results files)."""
    import subprocess

    def git(*arguments: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(common.REPO_ROOT), *arguments],
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def _stop_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):
        connection.stop_all(graceful=False, clear_state=True)


def wait_for_model_answer(
    url: str, payload: Callable[[int], Any], timeout_seconds: float = 60.0
) -> dict[str, Any]:
    """POSTs `payload(i)` until an answer comes from the model (not the default); returns it."""
    deadline = time.monotonic() + timeout_seconds
    status, body, attempt = 0, None, 0
    while time.monotonic() < deadline:
        attempt += 1
        status, body = common.post_json(url, payload(attempt))
        if status == 200 and isinstance(body, dict) and body.get("default") is False:
            return body
        time.sleep(0.1)
    raise RuntimeError(
        f"{url} never answered from the model within {timeout_seconds:.0f} s; "
        f"last answer {status} {body!r}"
    )


# --------------------------------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """{'name{labels}': value} for every sample of a Prometheus text exposition (no timestamps)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            samples[key] = float(value)
    return samples


def fetch_metrics(metrics_url: str, timeout_seconds: float = 2.0) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=timeout_seconds) as response:
        return parse_metrics(response.read().decode())


def model_labels(model: str, version: str) -> str:
    return f'model="{model}",version="{version}"'


def app_labels(app: str) -> str:
    return f'app="{app}"'


class MetricsSampler:
    """Polls /metrics every `interval_seconds` on a background thread (context manager).

    Times are `time.monotonic()`; `value(key, t)` interpolates between the samples around t, so
    counter deltas between two instants are exact to within a fraction of an interval.
    """

    def __init__(self, metrics_url: str, interval_seconds: float = 0.1) -> None:
        self.metrics_url = metrics_url
        self.interval_seconds = interval_seconds
        self.times: list[float] = []
        self.samples: list[dict[str, float]] = []
        self.failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_now()
            next_at += self.interval_seconds
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def sample_now(self) -> None:
        try:
            sample = fetch_metrics(self.metrics_url)
        except OSError:
            self.failures += 1
            return
        now = time.monotonic()
        with self._lock:
            self.times.append(now)
            self.samples.append(sample)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _index_at(self, when: float) -> int | None:
        with self._lock:
            index = bisect.bisect_right(self.times, when) - 1
        return index if index >= 0 else None

    def value(self, key: str, when: float) -> float:
        """The value at `when`, interpolated between the samples either side (so that counter
        deltas over short windows do not jump by a whole sampling interval)."""
        with self._lock:
            index = bisect.bisect_right(self.times, when) - 1
            if index < 0:
                return 0.0
            before = self.samples[index].get(key, 0.0)
            if index + 1 >= len(self.times):
                return before
            after = self.samples[index + 1].get(key, 0.0)
            span = self.times[index + 1] - self.times[index]
            share = (when - self.times[index]) / span if span > 0 else 0.0
        return before + (after - before) * share

    def delta(self, key: str, start: float, end: float) -> float:
        return self.value(key, end) - self.value(key, start)

    def rate(self, key: str, start: float, end: float) -> float:
        """A counter's increase per second between two instants (one decimal)."""
        return round(self.delta(key, start, end) / (end - start), 1)

    def series(self, key: str, start: float | None = None) -> tuple[list[float], list[float]]:
        """(seconds since `start` (default: the first sample), values) of one key, over the
        samples that have it."""
        with self._lock:
            pairs = [(t, s[key]) for t, s in zip(self.times, self.samples) if key in s]
        origin = start if start is not None else (pairs[0][0] if pairs else 0.0)
        return [t - origin for t, _ in pairs], [value for _, value in pairs]

    def histogram_mean(self, name: str, labels: str, start: float, end: float) -> float | None:
        """Mean of a histogram's observations between two instants (None when there were none)."""
        count = self.delta(f"{name}_count{{{labels}}}", start, end)
        total = self.delta(f"{name}_sum{{{labels}}}", start, end)
        return total / count if count > 0 else None

    def histogram_quantile(
        self, name: str, labels: str, quantile: float, start: float, end: float
    ) -> float | None:
        """Upper bound of the bucket holding `quantile` of the observations between two instants."""
        index_start, index_end = self._index_at(start), self._index_at(end)
        if index_end is None:
            return None
        prefix = f"{name}_bucket{{{labels},le="
        buckets: list[tuple[float, float]] = []
        for key, value in self.samples[index_end].items():
            if key.startswith(prefix):
                bound_text = key[len(prefix) :].rstrip("}").strip('"')
                bound = float("inf") if bound_text == "+Inf" else float(bound_text)
                before = 0.0 if index_start is None else self.samples[index_start].get(key, 0.0)
                buckets.append((bound, value - before))
        buckets.sort()
        if not buckets or buckets[-1][1] <= 0:
            return None
        needed = quantile * buckets[-1][1]
        for bound, cumulative in buckets:
            if cumulative >= needed:
                return bound
        return None
