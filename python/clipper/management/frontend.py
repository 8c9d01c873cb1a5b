"""The frontend process (`python -m clipper.management`): hosts the native engine and the management API.

Owns the process's lifecycle: open the state store (locking the state directory), start the engine, restore
the stored configuration into it, serve the management REST API, publish the bound ports in the endpoints
file, and stop cleanly on SIGTERM or SIGINT. The engine runs its own threads; the main thread only waits.
With a shared store (Redis), a store-follower thread applies other frontends' changes as they are saved.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import Any

from clipper.cpu_placement import apply_cpus, parse_cpus
from clipper.exceptions import ClipperException
from clipper.management.auth import (
    check_unauthenticated_bind,
    remove_token,
    restrict_state_dir,
    write_new_token,
)
from clipper.management.endpoints import FrontendEndpoints, process_start_ticks
from clipper.management.http_api import ManagementHTTPServer
from clipper.management.http_server import HTTPServerLimits
from clipper.management.replica_keys import (
    check_unauthenticated_replicas,
    ensure_cluster_keys,
    server_keys_from_environment,
)
from clipper.management.service import ManagementService
from clipper.management.supervision_reports import ENV_SUPERVISION_TOKEN, token_from_environment
from clipper.state import default_state_dir, open_state_store
from clipper_native import defaults

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
_LIMITS = HTTPServerLimits()
# The engine's bound of shm_response_spin_micros (EngineOptions::validate).
MAX_SHM_RESPONSE_SPIN_MICROS = 10_000
# FrontendOptions fields that are the query port's limits, named as in the engine's options.
QUERY_PORT_LIMITS = (
    "max_header_bytes",
    "max_header_count",
    "header_timeout_millis",
    "body_timeout_millis",
    "idle_timeout_millis",
    "max_connections_per_io_thread",
    "max_connections_per_client_address",
    "max_queued_tasks_per_model",
    "max_queued_bytes_per_model",
    "max_pending_queries_per_io_thread",
)


@dataclass
class FrontendOptions:
    """Everything the frontend process is configured with; each field is a command-line flag."""

    cluster_name: str = "default-cluster"
    # Where the embedded state store and the endpoints file live; empty = $CLIPPER_STATE_DIR/<cluster>
    # or ~/.clipper/<cluster>.
    state_dir: str = ""
    # Address every listener binds; 127.0.0.1 keeps the cluster on this machine.
    bind_address: str = defaults.BIND_ADDRESS
    # Query REST API; 0 picks a free port (read it back from the endpoints file).
    query_port: int = defaults.QUERY_PORT
    # Management REST API; 0 picks a free port.
    management_port: int = defaults.MANAGEMENT_PORT
    # Model-replica RPC (ZeroMQ); 0 picks a free port.
    rpc_port: int = defaults.RPC_PORT
    # Prometheus metrics; 0 serves /metrics on the query port only.
    metrics_port: int = defaults.METRICS_PORT
    # Prediction cache size; 0 turns the cache off. Clipper's default is 32 MiB.
    cache_size_bytes: int = defaults.CACHE_SIZE_BYTES
    # Threads running the engine's HTTP event loops.
    io_threads: int = defaults.IO_THREADS
    # "shared": with one I/O thread the model RPC runs on its loop (fewer thread hand-offs, lower
    # latency); "dedicated": the RPC gets a thread of its own (more parallelism).
    rpc_thread: str = "shared"
    # Query bodies larger than this answer 413.
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    # The query port's limits. Request line plus headers larger than this answer 431; so do more
    # header fields than the next.
    max_header_bytes: int = defaults.MAX_HEADER_BYTES
    max_header_count: int = defaults.MAX_HEADER_COUNT
    # A query's headers must arrive within this from its first byte, its body within the next (else
    # 408); a keep-alive connection without a request in progress is closed after the third. 0 = none.
    header_timeout_millis: int = defaults.HEADER_TIMEOUT_MILLIS
    body_timeout_millis: int = defaults.BODY_TIMEOUT_MILLIS
    idle_timeout_millis: int = defaults.IDLE_TIMEOUT_MILLIS
    # Open query connections per I/O thread, and per client address; beyond either, 503 + Retry-After.
    max_connections_per_io_thread: int = defaults.MAX_CONNECTIONS_PER_IO_THREAD
    max_connections_per_client_address: int = defaults.MAX_CONNECTIONS_PER_CLIENT_ADDRESS
    # Memory bounds under overload (admission control): inputs and input bytes queued per model
    # version, queries waiting for answers per I/O thread; a query beyond one answers 503.
    max_queued_tasks_per_model: int = defaults.MAX_QUEUED_TASKS_PER_MODEL
    max_queued_bytes_per_model: int = defaults.MAX_QUEUED_BYTES_PER_MODEL
    max_pending_queries_per_io_thread: int = defaults.MAX_PENDING_QUERIES_PER_IO_THREAD
    # Off (the default), every /admin/ call needs the token written to <state_dir>/management_token
    # at start; on, none does (only with a loopback bind_address), for the original clipper_admin client.
    allow_unauthenticated_management: bool = False
    # Off (the default), a replica registers only with the cluster's CURVE keys (created once in
    # <state_dir>, clipper.management.replica_keys); on, any local process may (loopback only), for
    # replicas built without them.
    allow_unauthenticated_replicas: bool = False
    # Management API limits (clipper.management.http_server.HTTPServerLimits documents each).
    # Bodies larger than this answer 413.
    management_max_body_bytes: int = _LIMITS.max_body_bytes
    # Request line plus headers larger than this answer 431; so do more header fields than the next.
    management_max_header_bytes: int = _LIMITS.max_header_bytes
    management_max_headers: int = _LIMITS.max_headers
    # A request's headers must arrive within this (else 408), its body within the next.
    management_header_timeout_millis: int = _LIMITS.header_timeout_millis
    management_body_timeout_millis: int = _LIMITS.body_timeout_millis
    # A connection without a request in progress is closed after this long.
    management_idle_timeout_millis: int = _LIMITS.idle_timeout_millis
    # At a cap (overall, or of one client address) the connection waiting longest without a complete
    # request (of that address) is closed with a 503 to make room; when every one is mid-request,
    # the new connection gets the 503 instead.
    management_max_connections: int = _LIMITS.max_connections
    management_max_connections_per_client: int = _LIMITS.max_connections_per_client
    # Threads running management operations (state store writes, engine updates).
    management_worker_threads: int = _LIMITS.worker_threads
    # A replica silent this long is dropped and its in-flight batch re-queued.
    heartbeat_timeout_millis: int = defaults.HEARTBEAT_TIMEOUT_MILLIS
    # "auto": replicas on this host that ask get shared-memory rings, the rest ZeroMQ; "zmq": ZeroMQ
    # for every replica.
    replica_transport: str = defaults.REPLICA_TRANSPORT
    # After sending a batch to a shared-memory replica, the I/O loop polls for its answer up to this
    # many microseconds before it sleeps (0: never): no doorbell, no wake-up when the answer comes
    # meanwhile; the loop's sockets wait that long.
    shm_response_spin_micros: int = defaults.SHM_RESPONSE_SPIN_MICROS
    # That spin stops while it costs more than this many microseconds spun per answer it caught
    # (a recent average; probes every 16-256 sleeps notice when answers come quickly again).
    # 0: no bound.
    shm_response_spin_cost_micros: int = defaults.SHM_RESPONSE_SPIN_COST_MICROS
    # A replica busy with a batch may be sent one more, to wait in it behind that one, when the
    # queue holds a full batch for it: at saturation it finds its next batch the moment it answers.
    replica_prefetch_full_batches: bool = defaults.REPLICA_PREFETCH_FULL_BATCHES
    # "host:port" of a Redis server holding the configuration; empty = the embedded store.
    redis_address: str = ""
    log_level: str = "INFO"
    # "local": a thread restarts the local manager's replica processes that exit, with back-off
    # (clipper.managers.local_supervisor); "none": replicas are supervised elsewhere (Docker, Kubernetes).
    replica_supervisor: str = "none"
    # CPUs the frontend process runs on ("0", "0-1,3"; empty: every CPU it may use), applied before
    # its threads start: with CPU-bound replicas on CPUs of their own, the I/O threads keep theirs.
    cpus: str = ""

    def validate(self) -> None:
        for name in ("query_port", "management_port", "rpc_port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ClipperException(f"{name}={value} is not a port: use 0-65535 (0 = pick one)")
        for name in (
            "cache_size_bytes",
            "io_threads",
            "max_body_bytes",
            "heartbeat_timeout_millis",
            *QUERY_PORT_LIMITS,
        ):
            minimum = 0 if name == "cache_size_bytes" or name.endswith("_timeout_millis") else 1
            if getattr(self, name) < minimum:
                raise ClipperException(f"{name}={getattr(self, name)} must be at least {minimum}")
        if self.rpc_thread not in ("shared", "dedicated"):
            raise ClipperException(f"rpc_thread={self.rpc_thread!r}: use 'shared' or 'dedicated'")
        if self.replica_transport not in ("auto", "zmq"):
            raise ClipperException(
                f"replica_transport={self.replica_transport!r}: use 'auto' (shared memory for "
                "replicas on this host) or 'zmq'"
            )
        for name in ("shm_response_spin_micros", "shm_response_spin_cost_micros"):
            if not 0 <= getattr(self, name) <= MAX_SHM_RESPONSE_SPIN_MICROS:
                raise ClipperException(
                    f"{name}={getattr(self, name)} must be from 0 to {MAX_SHM_RESPONSE_SPIN_MICROS}"
                )
        if self.replica_supervisor not in ("none", "local"):
            raise ClipperException(
                f"replica_supervisor={self.replica_supervisor!r}: use 'local' or 'none'"
            )
        self.management_limits().validate()
        if self.cpus:
            parse_cpus(self.cpus)  # the syntax; the CPUs are checked when applied
        if self.allow_unauthenticated_management:
            check_unauthenticated_bind(self.bind_address)
        if self.allow_unauthenticated_replicas:
            check_unauthenticated_replicas(self.bind_address)

    def management_limits(self) -> HTTPServerLimits:
        prefix = "management_"
        return HTTPServerLimits(
            **{
                option.name: getattr(self, prefix + option.name)
                for option in fields(HTTPServerLimits)
            }
        )


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clipper.management",
        description="Run a Clipper frontend: the native query engine plus the management REST API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = FrontendOptions()
    helps = {
        "cluster_name": "name of the cluster (used in logs and the endpoints file)",
        "state_dir": "directory of the state store and endpoints file "
        "(default: $CLIPPER_STATE_DIR/<cluster> or ~/.clipper/<cluster>)",
        "bind_address": "address every listener binds",
        "query_port": "query REST API port (0 = pick a free one)",
        "management_port": "management REST API port (0 = pick a free one)",
        "rpc_port": "model-replica RPC port (0 = pick a free one)",
        "metrics_port": "Prometheus /metrics port (0 = only on the query port)",
        "cache_size_bytes": "prediction cache size in bytes (0 = off)",
        "io_threads": "engine I/O threads",
        "rpc_thread": "'shared': model RPC on the single I/O thread's loop; 'dedicated': its own thread",
        "max_body_bytes": "largest query body accepted (larger answers 413)",
        "max_header_bytes": "largest query request line plus headers (else 431)",
        "max_header_count": "most header fields in a query request (else 431)",
        "header_timeout_millis": "time for a query's headers from its first byte (else 408; 0 = none)",
        "body_timeout_millis": "time for a query's body after its headers (else 408; 0 = none)",
        "idle_timeout_millis": "close a query connection idle this long (0 = never)",
        "max_connections_per_io_thread": "open query connections per I/O thread (beyond: 503)",
        "max_connections_per_client_address": "open query connections per client address "
        "(beyond: 503)",
        "max_queued_tasks_per_model": "inputs queued per model version (beyond: 503)",
        "max_queued_bytes_per_model": "input bytes queued per model version (beyond: 503)",
        "max_pending_queries_per_io_thread": "queries waiting for answers per I/O thread "
        "(beyond: 503)",
        "allow_unauthenticated_management": "serve the management API without a token "
        "(loopback only; for the original clipper_admin client)",
        "allow_unauthenticated_replicas": "let replicas register without the cluster's CURVE keys "
        "(loopback only; for replicas built without them)",
        "management_max_body_bytes": "largest management API body accepted",
        "management_max_header_bytes": "largest management request line plus headers (else 431)",
        "management_max_headers": "most header fields in a management request (else 431)",
        "management_header_timeout_millis": "time for a management request's headers (else 408)",
        "management_body_timeout_millis": "time for a management request's body (else 408)",
        "management_idle_timeout_millis": "close a management connection idle this long",
        "management_max_connections": "open management connections (at the cap the one idle "
        "longest is closed to make room; 503 when all are mid-request)",
        "management_max_connections_per_client": "open management connections per client address "
        "(the same rule among that address's connections)",
        "management_worker_threads": "threads running management operations",
        "heartbeat_timeout_millis": "drop a replica silent for this long",
        "replica_transport": "'auto': shared-memory rings for replicas on this host that ask, "
        "ZeroMQ for the rest; 'zmq': ZeroMQ for every replica",
        "shm_response_spin_micros": "after a batch to a shared-memory replica, poll for its answer "
        "this many microseconds before sleeping (0 = never)",
        "shm_response_spin_cost_micros": "stop that spin while it costs more than this many "
        "microseconds spun per answer caught, recently (probes every 16-256 sleeps; 0 = no bound)",
        "replica_prefetch_full_batches": "send a replica busy with a batch one more when the queue "
        "holds a full batch for it, to wait in the replica behind the one it holds",
        "redis_address": "host:port of a Redis state store (empty = embedded store)",
        "log_level": "logging level",
        "replica_supervisor": "'local': restart replica processes of the state directory that exit; "
        "'none': no supervision here",
        "cpus": "CPUs the frontend runs on, like '0' or '0-1,3' (empty: every CPU it may use)",
    }
    for option in fields(FrontendOptions):
        default = getattr(defaults, option.name)
        if isinstance(default, bool):
            parser.add_argument(
                "--" + option.name.replace("_", "-"),
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=helps[option.name],
            )
            continue
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            dest=option.name,
            type=type(default),
            default=default,
            help=helps[option.name],
        )
    return parser


def _replica_keys(state_dir: Path) -> tuple[str, tuple[str, ...]]:
    """The RPC port's secret key and admitted client keys: from CLIPPER_RPC_SERVER_KEYS (Kubernetes
    puts a Secret there), else the state directory's, created on first use."""
    from_environment = server_keys_from_environment()
    if from_environment is not None:
        return from_environment
    keys = ensure_cluster_keys(state_dir)
    return keys.server_secret_key, keys.client_public_keys


def _create_engine(options: FrontendOptions, keys: tuple[str, tuple[str, ...]] | None) -> Any:
    try:
        from clipper_native import _core
    except ImportError as error:
        raise ClipperException(
            f"the native engine (clipper_native._core) cannot be imported: {error}; install the "
            "package with `pip install .` at the repository root"
        ) from error
    engine_options = _core.EngineOptions()
    engine_options.bind_address = options.bind_address
    engine_options.query_port = options.query_port
    engine_options.rpc_port = options.rpc_port
    if keys is not None:
        engine_options.rpc_curve_secret_key, admitted = keys
        engine_options.rpc_curve_client_keys = list(admitted)
    engine_options.metrics_port = options.metrics_port
    engine_options.io_threads = options.io_threads
    engine_options.dedicated_rpc_thread = options.rpc_thread == "dedicated"
    engine_options.max_body_bytes = options.max_body_bytes
    for name in QUERY_PORT_LIMITS:
        setattr(engine_options, name, getattr(options, name))
    engine_options.cache_size_bytes = options.cache_size_bytes
    engine_options.heartbeat_timeout_millis = options.heartbeat_timeout_millis
    engine_options.replica_transport = options.replica_transport
    engine_options.shm_response_spin_micros = options.shm_response_spin_micros
    engine_options.shm_response_spin_cost_micros = options.shm_response_spin_cost_micros
    engine_options.replica_prefetch_full_batches = options.replica_prefetch_full_batches
    return _core.Engine(engine_options)


class Frontend:
    """One running frontend; `run()` blocks until `request_stop()` (or a signal) and then cleans up."""

    def __init__(self, options: FrontendOptions) -> None:
        options.validate()
        self.options = options
        self._stop_requested = threading.Event()
        self._state_dir = (
            Path(options.state_dir)
            if options.state_dir
            else default_state_dir(options.cluster_name)
        )

        self._supervision_token = token_from_environment()
        if self._supervision_token is not None and options.replica_supervisor == "local":
            raise ClipperException(
                f"{ENV_SUPERVISION_TOKEN} is set but replica_supervisor='local': supervision "
                "reports come from a reporter only where this frontend supervises nothing; unset one"
            )

    def request_stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        options = self.options
        # Owner-only: the directory holds the management token and the models' pickled code.
        restrict_state_dir(self._state_dir)
        if options.cpus:
            apply_cpus(options.cpus, "cpus")  # before any thread starts: they inherit it
        store = open_state_store(
            self._state_dir, options.redis_address or None, cluster_name=options.cluster_name
        )
        engine = None
        http_server = None
        follower_stop = threading.Event()
        follower = None
        supervisor = None
        selection_worker = None
        try:
            keys = (
                None if options.allow_unauthenticated_replicas else _replica_keys(self._state_dir)
            )
            engine = _create_engine(options, keys)
            engine.start()
            service = ManagementService(store, engine)
            service.restore()
            selection_worker = service.selection_worker  # learns from /update; see its module
            selection_worker.start(follower_stop)
            if options.allow_unauthenticated_management:
                remove_token(self._state_dir)
                token = None
            else:
                token = write_new_token(self._state_dir)
            http_server = ManagementHTTPServer(
                (options.bind_address, options.management_port),
                service,
                management_token=token,
                limits=options.management_limits(),
                # Docker and Kubernetes replicas: their reporter pushes restarts to /metrics.
                supervision_token=self._supervision_token,
                supervision_sink=engine.set_replica_supervision,
            )
            http_server.start()
            if store.shared:
                follower = threading.Thread(
                    target=service.follow_store,
                    args=(follower_stop,),
                    name="state-follower",
                    daemon=True,
                )
                follower.start()
            endpoints = FrontendEndpoints(
                cluster_name=options.cluster_name,
                pid=os.getpid(),
                process_start_ticks=process_start_ticks(os.getpid()),
                bind_address=options.bind_address,
                query_port=int(getattr(engine, "query_port", options.query_port)),
                management_port=http_server.port,
                rpc_port=int(getattr(engine, "rpc_port", options.rpc_port)),
                metrics_port=int(getattr(engine, "metrics_port", options.metrics_port)),
                replica_auth="none" if keys is None else "curve",
            )
            endpoints.write(self._state_dir)
            if options.replica_supervisor == "local":
                from clipper.managers.local_supervisor import LocalReplicaSupervisor

                # Restarts and exits reach /metrics through the engine (never per request).
                supervisor = LocalReplicaSupervisor.for_frontend(
                    self._state_dir, endpoints, publish=engine.set_replica_supervision
                )
                supervisor.start()
            logger.info(
                "event=frontend_ready cluster=%s pid=%d query_port=%d management_port=%d "
                "rpc_port=%d metrics_port=%d store=%s replica_auth=%s",
                options.cluster_name,
                endpoints.pid,
                endpoints.query_port,
                endpoints.management_port,
                endpoints.rpc_port,
                endpoints.metrics_port,
                store.description,
                "none" if keys is None else "curve",
            )
            # A timed wait keeps the main thread responsive to signals on every platform.
            while not self._stop_requested.wait(0.5):
                pass
            logger.info("event=frontend_stopping cluster=%s", options.cluster_name)
        finally:
            if supervisor is not None:
                supervisor.stop()
            FrontendEndpoints.remove(self._state_dir, owner_pid=os.getpid())
            follower_stop.set()
            if follower is not None:
                follower.join(timeout=5)
            if selection_worker is not None:
                selection_worker.close()
            if http_server is not None:
                http_server.stop()
            if engine is not None:
                engine.stop()
            store.close()
            logger.info("event=frontend_stopped cluster=%s", options.cluster_name)


def main(argv: list[str] | None = None) -> int:
    options = FrontendOptions(**vars(build_argument_parser().parse_args(argv)))
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        frontend = Frontend(options)
    except ClipperException as error:
        logger.error("event=frontend_invalid_options cause=%r", str(error))
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("event=signal_received signal=%s", signal.Signals(signum).name)
        frontend.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        frontend.run()
    except ClipperException as error:
        logger.error("event=frontend_failed cause=%r", str(error))
        return 1
    except Exception:
        logger.exception("event=frontend_failed")
        return 1
    return 0
