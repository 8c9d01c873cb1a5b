"""`LocalContainerManager`: a whole cluster as local processes, the embedded default (no Docker needed).

Owns the cluster's state directory (`~/.clipper/<cluster_name>` unless told otherwise): the frontend process
(`python -m clipper.management`, its own process group), one process per model replica (the container SDK's
closure runner), their pid records and logs. Records live on disk so a manager in another Python process
(`connect()`, the CLI) can find and stop what this one started; the frontend process supervises them
(`clipper.managers.local_supervisor`: a replica that exits is replaced, with back-off), so the cluster
keeps its replica count after this object's process exits. Methods block; not for the query path.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from clipper.admin.management_client import ManagementClient, urlopen_direct
from clipper.container.server import ENV_SHM_SPIN_MICROS, MAX_SHM_SPIN_MICROS
from clipper.cpu_placement import CpuSpec, check_available, format_cpus, parse_cpus
from clipper.exceptions import (
    ClipperException,
    ClusterStartError,
    DeploymentError,
)
from clipper.management.endpoints import (
    FrontendEndpoints,
    process_start_ticks,
)
from clipper.management.frontend import MAX_SHM_RESPONSE_SPIN_MICROS, QUERY_PORT_LIMITS
from clipper.managers.container_manager import ContainerManager, checked_spin_micros
from clipper.managers.local_replicas import (
    CLOSURE_FILE_NAME,
    CLOSURE_RUNNER_MODULE,
    ReplicaProcess,
    ReplicaRecords,
    spawn_process,
    start_replica_process,
    terminate_process_groups,
)
from clipper.managers.supervision import RUNNING
from clipper.state import default_state_dir
from clipper.state.embedded_store import STATE_FILE_NAME
from clipper.state.redis_store import RedisStateStore
from clipper.state.trusted_files import check_trusted_file, make_owner_only
from clipper_native import defaults

logger = logging.getLogger(__name__)

__all__ = ["CLOSURE_FILE_NAME", "CLOSURE_RUNNER_MODULE", "LocalContainerManager", "ReplicaProcess"]

_CLUSTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POLL_INTERVAL_S = 0.05
_LOG_TAIL_LINES = 30


class LocalContainerManager(ContainerManager):
    def __init__(
        self,
        cluster_name: str = "default-cluster",
        clipper_query_port: int = defaults.QUERY_PORT,
        clipper_management_port: int = defaults.MANAGEMENT_PORT,
        clipper_rpc_port: int = defaults.RPC_PORT,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        prometheus_port: int = defaults.METRICS_PORT,
        state_dir: str | os.PathLike[str] | None = None,
        bind_address: str = defaults.BIND_ADDRESS,
        max_body_bytes: int = defaults.MAX_BODY_BYTES,
        heartbeat_timeout_millis: int = defaults.HEARTBEAT_TIMEOUT_MILLIS,
        query_port_limits: Mapping[str, int] | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        log_level: str = "INFO",
        replica_transport: str = defaults.REPLICA_TRANSPORT,
        replica_shm_spin_micros: int = 0,
        shm_response_spin_micros: int = defaults.SHM_RESPONSE_SPIN_MICROS,
        shm_response_spin_cost_micros: int = defaults.SHM_RESPONSE_SPIN_COST_MICROS,
        replica_prefetch_full_batches: bool = defaults.REPLICA_PREFETCH_FULL_BATCHES,
        frontend_cpus: CpuSpec | None = None,
        model_cpus: Mapping[str, CpuSpec] | None = None,
    ) -> None:
        """Ports of 0 let the frontend pick free ones (read back after `start_clipper`).
        `prometheus_port` is where `/metrics` is served besides the query port (0 = query port only).
        `redis_ip`/`redis_port` select a Redis state store instead of the embedded one.
        `query_port_limits` overrides the query port's limits by name (`header_timeout_millis`,
        `body_timeout_millis`, `idle_timeout_millis`, `max_header_bytes`, `max_header_count`,
        `max_connections_per_io_thread`, `max_connections_per_client_address`, and the memory
        bounds of admission control `max_queued_tasks_per_model`, `max_queued_bytes_per_model`,
        `max_pending_queries_per_io_thread`; defaults in `clipper_native/defaults.json`).
        `replica_transport`: "auto" serves the (local) replicas over shared-memory rings, "zmq" over
        ZeroMQ. `replica_shm_spin_micros` (0-10,000; default 0): over shared memory, each replica polls
        its request ring this long before sleeping (CLIPPER_SHM_SPIN_MICROS of the replicas, also of
        the frontend's replica supervisor), which saves a wake-up per batch arriving meanwhile and burns
        a CPU that long after each. `shm_response_spin_micros` (0-10,000; default 0): the frontend's I/O loop
        polls for a shared-memory replica's answer this long after sending it a batch before it
        sleeps (FrontendOptions.shm_response_spin_micros); `shm_response_spin_cost_micros`
        (0-10,000; default 7; 0 = no bound) stops that spin while it costs more than this many
        microseconds spun per answer caught (FrontendOptions.shm_response_spin_cost_micros).
        `replica_prefetch_full_batches`: a replica busy with a batch may be sent one more, to wait in
        it behind that one, when the queue holds a full batch for it
        (FrontendOptions.replica_prefetch_full_batches).
        CPU placement (docs/admission.md: keep CPU-bound replicas off the frontend's CPUs):
        `frontend_cpus` ("0", "0-1", or CPU numbers) pins the frontend process; `model_cpus`
        ({model name: CPUs}, also `set_model_cpus`) pins that model's replicas. With `frontend_cpus`
        set, replicas of models not named get every other CPU this process may use."""
        unknown = sorted(set(query_port_limits or {}) - set(QUERY_PORT_LIMITS))
        if unknown:
            raise ClipperException(
                f"query_port_limits: unknown limit(s) {unknown}; use {list(QUERY_PORT_LIMITS)}"
            )
        if not isinstance(cluster_name, str) or not _CLUSTER_NAME_PATTERN.match(cluster_name):
            raise ClipperException(
                f"cluster_name {cluster_name!r} is not valid: use 1-64 letters, digits, '_', '.' or "
                "'-' (it names the cluster's state directory)"
            )
        self.cluster_name = cluster_name
        self.clipper_query_port = clipper_query_port
        self.clipper_management_port = clipper_management_port
        self.clipper_rpc_port = clipper_rpc_port
        self.redis_ip = redis_ip
        self.redis_port = redis_port
        self.prometheus_port = prometheus_port
        # Absolute, so replica records, model paths and the frontend do not depend on the cwd.
        self.state_dir = (
            Path(state_dir) if state_dir else default_state_dir(cluster_name)
        ).absolute()
        self.bind_address = bind_address
        self.max_body_bytes = max_body_bytes
        self.heartbeat_timeout_millis = heartbeat_timeout_millis
        self.query_port_limits = dict(query_port_limits or {})
        self.replica_transport = replica_transport
        self.replica_shm_spin_micros = checked_spin_micros(
            "replica_shm_spin_micros", replica_shm_spin_micros, MAX_SHM_SPIN_MICROS
        )
        self.shm_response_spin_micros = checked_spin_micros(
            "shm_response_spin_micros", shm_response_spin_micros, MAX_SHM_RESPONSE_SPIN_MICROS
        )
        self.shm_response_spin_cost_micros = checked_spin_micros(
            "shm_response_spin_cost_micros",
            shm_response_spin_cost_micros,
            MAX_SHM_RESPONSE_SPIN_MICROS,
        )
        if not isinstance(replica_prefetch_full_batches, bool):
            raise ClipperException(
                f"replica_prefetch_full_batches={replica_prefetch_full_batches!r}: use True or False"
            )
        self.replica_prefetch_full_batches = replica_prefetch_full_batches
        # Added to the environment of the frontend (its supervisor restarts replicas) and replicas.
        self._replica_environment = (
            {ENV_SHM_SPIN_MICROS: str(replica_shm_spin_micros)} if replica_shm_spin_micros else {}
        )
        self.frontend_cpus = parse_cpus(frontend_cpus) if frontend_cpus is not None else None
        if self.frontend_cpus is not None:
            check_available(self.frontend_cpus, "frontend_cpus")
        self.model_cpus: dict[str, frozenset[int]] = {}
        for model_name, cpus in (model_cpus or {}).items():
            self.set_model_cpus(model_name, cpus)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_level = log_level
        self._endpoints: FrontendEndpoints | None = None
        # Processes this manager started, kept so they can be reaped (no zombies) once stopped.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._records = ReplicaRecords(self.state_dir)

    # ---- paths ----------------------------------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def frontend_log_path(self) -> Path:
        return self.logs_dir / "frontend.log"

    @property
    def _replicas_dir(self) -> Path:
        return self._records.root

    @property
    def _models_dir(self) -> Path:
        return self.state_dir / "models"

    # ---- the frontend -------------------------------------------------------------------------------

    def start_clipper(
        self,
        cache_size_bytes: int = defaults.CACHE_SIZE_BYTES,
        io_threads: int = defaults.IO_THREADS,
        rpc_thread: str = "shared",
        allow_unauthenticated_management: bool = False,
        allow_unauthenticated_replicas: bool = False,
    ) -> None:
        """`allow_unauthenticated_management` serves the management API without a token (refused
        unless bind_address is loopback), for the original clipper_admin client.
        `allow_unauthenticated_replicas` lets any local process register as a replica (refused unless
        bind_address is loopback); by default replicas need the cluster's CURVE keys, which this
        manager hands to the replicas it starts (<state_dir>/replica_credentials.json)."""
        existing = FrontendEndpoints.read(self.state_dir)
        if existing is not None and existing.is_alive():
            raise ClusterStartError(
                f"cluster '{self.cluster_name}' is already running (frontend pid {existing.pid}, "
                f"management port {existing.management_port}); connect() to it, or stop it first "
                "with stop_all()"
            )
        FrontendEndpoints.remove(self.state_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._prune_dead_replicas()
        rpc_port = self.clipper_rpc_port
        if rpc_port == 0 and existing is not None and self.list_replicas():
            # Replicas that outlived a frontend reconnect to the port they know: a frontend that
            # picks its ports keeps the old RPC port, so it adopts them instead of orphaning them.
            rpc_port = existing.rpc_port
        command = [
            sys.executable,
            "-m",
            "clipper.management",
            "--cluster-name", self.cluster_name,
            "--state-dir", str(self.state_dir),
            "--bind-address", self.bind_address,
            "--query-port", str(self.clipper_query_port),
            "--management-port", str(self.clipper_management_port),
            "--rpc-port", str(rpc_port),
            "--metrics-port", str(self.prometheus_port),
            "--cache-size-bytes", str(cache_size_bytes),
            "--io-threads", str(io_threads),
            "--rpc-thread", rpc_thread,
            "--max-body-bytes", str(self.max_body_bytes),
            "--heartbeat-timeout-millis", str(self.heartbeat_timeout_millis),
            "--replica-transport", self.replica_transport,
            "--shm-response-spin-micros", str(self.shm_response_spin_micros),
            "--shm-response-spin-cost-micros", str(self.shm_response_spin_cost_micros),
            "--replica-prefetch-full-batches" if self.replica_prefetch_full_batches
            else "--no-replica-prefetch-full-batches",
            "--log-level", self.log_level,
            "--replica-supervisor", "local",
        ]  # fmt: skip
        if self.frontend_cpus is not None:
            command += ["--cpus", format_cpus(self.frontend_cpus)]
        for name, value in self.query_port_limits.items():
            command += ["--" + name.replace("_", "-"), str(value)]
        if self.redis_ip:
            command += ["--redis-address", f"{self.redis_ip}:{self.redis_port}"]
        if allow_unauthenticated_management:
            command.append("--allow-unauthenticated-management")
        if allow_unauthenticated_replicas:
            command.append("--allow-unauthenticated-replicas")
        process = self._spawn(command, self.frontend_log_path)
        logger.info(
            "event=frontend_starting cluster=%s pid=%d log=%s",
            self.cluster_name,
            process.pid,
            self.frontend_log_path,
        )
        try:
            self._endpoints = self._wait_for_frontend(process)
        except BaseException:
            self._terminate([(process.pid, process_start_ticks(process.pid))], graceful=False)
            raise
        logger.info(
            "event=frontend_started cluster=%s pid=%d query_addr=%s admin_addr=%s",
            self.cluster_name,
            process.pid,
            self.get_query_addr(),
            self.get_admin_addr(),
        )

    def connect(self) -> None:
        endpoints = FrontendEndpoints.read(self.state_dir)
        if endpoints is not None and endpoints.is_alive():
            candidate = endpoints
        else:
            # Started elsewhere (another state directory or machine setup): trust the configured ports.
            candidate = FrontendEndpoints(
                cluster_name=self.cluster_name,
                pid=0,
                process_start_ticks=None,
                bind_address=self.bind_address,
                query_port=self.clipper_query_port,
                management_port=self.clipper_management_port,
                rpc_port=self.clipper_rpc_port,
                metrics_port=self.prometheus_port,
            )
        admin_addr = f"{_connect_host(candidate.bind_address)}:{candidate.management_port}"
        if not ManagementClient(admin_addr, timeout_s=5.0).ping():
            raise ClipperException(
                f"no Clipper cluster '{self.cluster_name}' answers at {admin_addr}; start one with "
                "start_clipper() (or `clipper start`), or pass the ports it runs on"
            )
        self._endpoints = candidate
        logger.info("event=connected cluster=%s admin_addr=%s", self.cluster_name, admin_addr)

    def get_admin_addr(self) -> str:
        endpoints = self._current_endpoints()
        return f"{_connect_host(endpoints.bind_address)}:{endpoints.management_port}"

    def get_query_addr(self) -> str:
        endpoints = self._current_endpoints()
        return f"{_connect_host(endpoints.bind_address)}:{endpoints.query_port}"

    def get_metric_addr(self) -> str:
        endpoints = self._current_endpoints()
        port = endpoints.metrics_port or endpoints.query_port
        return f"{_connect_host(endpoints.bind_address)}:{port}"

    def get_rpc_addr(self) -> str:
        endpoints = self._current_endpoints()
        return f"{_connect_host(endpoints.bind_address)}:{endpoints.rpc_port}"

    def frontend_pid(self) -> int | None:
        """The frontend's pid when it runs on this machine and is known, else None."""
        endpoints = FrontendEndpoints.read(self.state_dir)
        return endpoints.pid if endpoints is not None and endpoints.is_alive() else None

    # ---- model replicas -----------------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str = "default",
        container_registry: str | None = None,
        pkgs_to_install: Sequence[str] | None = None,
    ) -> str:
        """Copy the saved model directory into `<state_dir>/models/<name>/<version>` (the local "image")
        and install `pkgs_to_install` that this interpreter lacks into its `site-packages`."""
        source = Path(model_data_path)
        if not source.is_dir():
            raise DeploymentError(
                f"model_data_path {model_data_path!r} is not a directory; save the model first "
                "(clipper.container.closure.save_closure does this for a Python function)"
            )
        if any(replica.is_alive() for replica in self._replicas(name, version)):
            raise DeploymentError(
                f"model '{name}' version '{version}' has running replicas; stop them first with "
                f"stop_versioned_models({{'{name}': ['{version}']}}) or deploy a new version"
            )
        destination = self._models_dir / name / version
        staging = destination.with_name(f".{version}.staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        make_owner_only(staging)  # only the operator may read or change the model's code
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
        missing = [pkg for pkg in (pkgs_to_install or []) if not _is_installed(pkg)]
        if missing:
            self._install_packages(missing, destination / "site-packages")
        logger.info(
            "event=model_built cluster=%s model=%s version=%s image=%s installed=%s",
            self.cluster_name,
            name,
            version,
            destination,
            ",".join(missing) or "-",
        )
        return str(destination)

    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        if num_replicas < 1:
            raise DeploymentError(f"num_replicas must be at least 1, got {num_replicas}")
        self._closure_path(image)  # fail before starting anything
        for _ in range(num_replicas):
            self._start_replica(name, version, input_type, image)

    def set_model_cpus(self, name: str, cpus: CpuSpec | None) -> None:
        """Pin replicas of model `name` started from now on to `cpus` (None: the default placement).
        Running replicas keep theirs until replaced."""
        if cpus is None:
            self.model_cpus.pop(name, None)
            return
        parsed = parse_cpus(cpus)
        check_available(parsed, f"model_cpus[{name!r}]")
        self.model_cpus[name] = parsed

    def replica_cpus(self, name: str) -> frozenset[int] | None:
        """Where replicas of model `name` run: its own CPUs, else the CPUs the frontend does not use
        (when the frontend is pinned and some are left), else None (wherever their starter runs)."""
        if name in self.model_cpus:
            return self.model_cpus[name]
        if self.frontend_cpus is not None:
            rest = frozenset(os.sched_getaffinity(0)) - self.frontend_cpus
            return rest or None
        return None

    def get_num_replicas(self, name: str, version: str) -> int:
        return sum(1 for replica in self._replicas(name, version) if replica.is_alive())

    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        """Slots waiting out a back-off count as replicas (the supervisor restarts them); scaling
        down removes those first."""
        if num_replicas < 0:
            raise DeploymentError(f"num_replicas must be at least 0, got {num_replicas}")

        def surplus(slots: list[ReplicaProcess]) -> list[ReplicaProcess]:
            # Waiting slots first, then the newest replicas.
            ordered = sorted(slots, key=lambda r: (r.is_alive(), -r.replica_id))
            return ordered[: max(len(slots) - num_replicas, 0)]

        self._stop_replicas(surplus, graceful=True, name=name, version=version)
        missing = num_replicas - len(self._replicas(name, version))
        if missing > 0:
            self._closure_path(image)
            for _ in range(missing):
                self._start_replica(name, version, input_type, image)

    def find_failed_replicas(self, name: str, version: str) -> list[str]:
        """Replicas that exited, even those the supervisor would restart: a version being deployed
        or scaled whose replica exits is reported at once instead of crash-looping unseen."""
        failures = []
        with self._records.locked():
            for replica in self._records.read(name, version):
                if replica.is_alive():
                    continue
                child = self._children.pop(replica.pid, None)
                status = "" if child is None else f" with exit code {child.wait()}"
                if child is None and replica.last_exit_reason and replica.state != RUNNING:
                    status = f" ({replica.last_exit_reason}; {replica.state}, restarted "
                    status += f"{replica.restarts} times)"
                failures.append(
                    f"replica {replica.replica_id} (pid {replica.pid}) exited{status}; last lines "
                    f"of {replica.log_path}:\n{_log_tail(Path(replica.log_path))}"
                )
                self._records.remove(replica)
        return failures

    def supervision_report(self) -> list[dict[str, object]]:
        """Every replica slot with its supervision state, restarts and last exit reason."""
        now = time.time()
        report = []
        for replica in self._replicas():
            state = replica.state
            if state == RUNNING and not replica.is_alive():
                state = "exited"  # noticed by the supervisor within a fraction of a second
            report.append(
                {
                    "model_name": replica.model_name,
                    "model_version": replica.model_version,
                    "replica_id": replica.replica_id,
                    "pid": replica.pid,
                    "state": state,
                    "restarts": replica.restarts,
                    "last_exit_reason": replica.last_exit_reason,
                    "next_restart_in_s": round(max(replica.next_start_unix - now, 0.0), 1)
                    if replica.state != RUNNING
                    else 0.0,
                }
            )
        return report

    def list_replicas(self) -> list[ReplicaProcess]:
        """Every recorded replica process of the cluster that is still running."""
        return [replica for replica in self._replicas() if replica.is_alive()]

    def stop_models(self, models: Mapping[str, Sequence[str]]) -> None:
        def chosen(slots: list[ReplicaProcess]) -> list[ReplicaProcess]:
            return [
                replica
                for replica in slots
                if str(replica.model_version)
                in {str(v) for v in models.get(replica.model_name, ())}
            ]

        self._stop_replicas(chosen, graceful=True)

    def stop_all_model_containers(self) -> None:
        self._stop_replicas(list, graceful=True)

    def stop_all(self, graceful: bool = True, clear_state: bool = False) -> None:
        self._stop_replicas(list, graceful=graceful)
        endpoints = FrontendEndpoints.read(self.state_dir)
        if endpoints is not None and endpoints.is_alive():
            self._terminate([(endpoints.pid, endpoints.process_start_ticks)], graceful=graceful)
            logger.info(
                "event=frontend_stopped cluster=%s pid=%d", self.cluster_name, endpoints.pid
            )
        FrontendEndpoints.remove(self.state_dir)
        self._endpoints = None
        if clear_state:
            # Only once the frontend is gone: it holds the store's lock while it runs.
            (self.state_dir / STATE_FILE_NAME).unlink(missing_ok=True)
            if self.redis_ip:
                with RedisStateStore(
                    self.redis_ip, self.redis_port, cluster_name=self.cluster_name
                ) as store:
                    store.clear()
            shutil.rmtree(self._models_dir, ignore_errors=True)
            shutil.rmtree(self._replicas_dir, ignore_errors=True)
            logger.info(
                "event=state_cleared cluster=%s state_dir=%s", self.cluster_name, self.state_dir
            )

    def get_logs(self, logging_dir: str) -> list[str]:
        destination = (
            Path(logging_dir) / f"{self.cluster_name}-logs-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        written = []
        for log in sorted(self.logs_dir.rglob("*.log")):
            target = destination / log.relative_to(self.logs_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target)
            written.append(str(target))
        return written

    # ---- internals ----------------------------------------------------------------------------------

    def _current_endpoints(self) -> FrontendEndpoints:
        if self._endpoints is not None:
            return self._endpoints
        return FrontendEndpoints(
            cluster_name=self.cluster_name,
            pid=0,
            process_start_ticks=None,
            bind_address=self.bind_address,
            query_port=self.clipper_query_port,
            management_port=self.clipper_management_port,
            rpc_port=self.clipper_rpc_port,
            metrics_port=self.prometheus_port,
        )

    def _spawn(
        self, command: list[str], log_path: Path, extra_paths: Iterable[str] = ()
    ) -> subprocess.Popen[bytes]:
        process = spawn_process(command, log_path, extra_paths, self._replica_environment)
        self._children[process.pid] = process
        return process

    def _wait_for_frontend(self, process: subprocess.Popen[bytes]) -> FrontendEndpoints:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            exit_code = process.poll()
            if exit_code is not None:
                self._children.pop(process.pid, None)
                raise ClusterStartError(
                    f"the frontend of cluster '{self.cluster_name}' exited with code {exit_code} "
                    f"while starting; last lines of {self.frontend_log_path}:\n"
                    f"{_log_tail(self.frontend_log_path)}"
                )
            endpoints = FrontendEndpoints.read(self.state_dir)
            if endpoints is not None and endpoints.pid == process.pid:
                host = _connect_host(endpoints.bind_address)
                if (
                    _http_ok(f"http://{host}:{endpoints.query_port}/healthz")
                    and ManagementClient(
                        f"{host}:{endpoints.management_port}", timeout_s=2.0
                    ).ping()
                ):
                    return endpoints
            time.sleep(_POLL_INTERVAL_S)
        raise ClusterStartError(
            f"the frontend of cluster '{self.cluster_name}' did not answer within "
            f"{self.startup_timeout_s:.0f} s; last lines of {self.frontend_log_path}:\n"
            f"{_log_tail(self.frontend_log_path)}"
        )

    def _closure_path(self, image: str) -> Path:
        path = Path(image)
        if path.is_dir():
            path = path / CLOSURE_FILE_NAME
        if not path.is_file():
            raise DeploymentError(
                f"LocalContainerManager runs models saved as closure directories, and {image!r} "
                f"holds no {CLOSURE_FILE_NAME}; deploy with clipper.deployers.python."
                "deploy_python_closure, or use DockerContainerManager for container images"
            )
        return check_trusted_file(path, self.state_dir)  # unpickling runs code: only our own

    def _start_replica(
        self, name: str, version: str, input_type: str, image: str
    ) -> ReplicaProcess:
        slot = ReplicaProcess(
            model_name=name,
            model_version=version,
            replica_id=-1,
            input_type=input_type,
            image=str(image),
            pid=0,
            process_start_ticks=None,
            log_path="",
            cpus=format_cpus(cpus) if (cpus := self.replica_cpus(name)) else "",
        )
        with self._records.locked():
            replica, process = start_replica_process(
                self._records, self.logs_dir, self.get_rpc_addr(), slot, self._replica_environment
            )
        self._children[process.pid] = process
        logger.info(
            "event=replica_started cluster=%s model=%s version=%s replica=%d pid=%d log=%s",
            self.cluster_name,
            name,
            version,
            replica.replica_id,
            process.pid,
            replica.log_path,
        )
        return replica

    def _replicas(
        self, name: str | None = None, version: str | None = None
    ) -> list[ReplicaProcess]:
        return self._records.read(name, version)

    def _prune_dead_replicas(self) -> None:
        with self._records.locked():
            for replica in self._replicas():
                if not replica.is_alive():
                    self._records.remove(replica)

    def _stop_replicas(
        self,
        choose: Callable[[list[ReplicaProcess]], Sequence[ReplicaProcess]],
        graceful: bool,
        name: str | None = None,
        version: str | None = None,
    ) -> None:
        """Stop the replicas `choose` picks among the recorded ones. Their records go first, under
        the lock, so the supervisor never restarts a replica that is being stopped."""
        with self._records.locked():
            replicas = list(choose(self._records.read(name, version)))
            for replica in replicas:
                self._records.remove(replica)
        self._terminate([(r.pid, r.process_start_ticks) for r in replicas], graceful=graceful)
        for replica in replicas:
            logger.info(
                "event=replica_stopped cluster=%s model=%s version=%s replica=%d pid=%d",
                self.cluster_name,
                replica.model_name,
                replica.model_version,
                replica.replica_id,
                replica.pid,
            )

    def _terminate(self, processes: Sequence[tuple[int, int | None]], graceful: bool) -> None:
        terminate_process_groups(
            processes,
            graceful=graceful,
            grace_s=self.stop_timeout_s if graceful else 2.0,
            reap=self._reap_children,
        )

    def _reap_children(self) -> None:
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

    def _install_packages(self, packages: Sequence[str], target: Path) -> None:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target)]
        command += packages
        logger.info("event=installing_packages packages=%s target=%s", ",".join(packages), target)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DeploymentError(
                f"pip could not install {', '.join(packages)} for the model: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )


# --------------------------------------------------------------------------------------------------


def _connect_host(bind_address: str) -> str:
    """The address a local client uses to reach a listener bound to `bind_address`."""
    return "127.0.0.1" if bind_address in ("", "0.0.0.0", "::") else bind_address


def _http_ok(url: str) -> bool:
    try:
        with urlopen_direct(url, timeout=2.0) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _is_installed(requirement: str) -> bool:
    """True when the distribution a requirement names is installed in this interpreter (the version
    specifier is not checked: locally, the replica shares this environment)."""
    from importlib import metadata

    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True
