"""`DockerContainerManager`: a cluster on the local Docker Engine (the `docker` Python SDK).

Owns the cluster's containers: the frontend (image built from containers/frontend; its state directory, with
the embedded store and the management token, bind-mounted from the host, or the store in Redis) and one container per model replica, all labelled with Clipper's labels so
`connect()`, `stop_all()` and another Python process find them; per-model resources and GPU requests;
model images built from containers/. Docker's restart policy replaces a replica that crashes (with its
own exponential back-off); restarts and the last exit show in `supervision_report()` and, pushed by the
cluster's supervision reporter container (the only one with the Docker socket), on the frontend's
/metrics. Methods block.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clipper.admin.management_client import ManagementClient, urlopen_direct
from clipper.container.credentials import ENV_RPC_CREDENTIALS
from clipper.container.server import ENV_SHM_SPIN_MICROS, ENV_TRANSPORT, MAX_SHM_SPIN_MICROS
from clipper.cpu_placement import format_cpus, parse_cpus
from clipper.exceptions import ClipperException, ClusterStartError, DeploymentError
from clipper.management.endpoints import FrontendEndpoints
from clipper.management.frontend import MAX_SHM_RESPONSE_SPIN_MICROS
from clipper.management.replica_keys import (
    ensure_cluster_keys,
    read_replica_credentials,
    replica_credentials_path,
)
from clipper.management.supervision_reports import ENV_SUPERVISION_TOKEN
from clipper.managers import docker_images
from clipper.managers.container_manager import ContainerManager, checked_spin_micros
from clipper.managers.docker_replicas import (
    CLOSURE_FILE_NAME,
    CRASH_LOOP_RESTARTS,
    REPLICA_LABEL,
    ModelResources,
    exit_reason,
    last_exit,
    log_tail,
    model_image_kind,
    replica_info,
    supervision_entry,
)
from clipper.state import default_state_dir
from clipper_native import defaults

logger = logging.getLogger(__name__)

CLIPPER_LABEL = "ai.clipper.container.label"
MODEL_LABEL = "ai.clipper.model_container.label"
ROLE_LABEL = "ai.clipper.role"
PORTS_LABEL = "ai.clipper.ports"
STATE_DIR_IN_CONTAINER = "/var/lib/clipper"
MODEL_DIR_IN_CONTAINER = "/model"
# With shm_transport: where the frontend makes its shared-memory socket directory (XDG_RUNTIME_DIR)
# and where replicas see the same host directory (<state_dir>/shm), so the offered path resolves.
SHM_DIR_IN_CONTAINER = "/run/clipper-shm"
_CLUSTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POLL_INTERVAL_S = 0.1
# The unprivileged user of Clipper's images (containers/*/Dockerfile: USER 10001:10001).
_IMAGE_UID = 10001
# The role of the container that pushes replica restarts to the frontend's /metrics.
REPORTER_ROLE = "supervision-reporter"
_DOCKER_SOCKET = "/var/run/docker.sock"


class DockerContainerManager(ContainerManager):
    def __init__(
        self,
        cluster_name: str = "default-cluster",
        clipper_query_port: int = defaults.QUERY_PORT,
        clipper_management_port: int = defaults.MANAGEMENT_PORT,
        clipper_rpc_port: int = defaults.RPC_PORT,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        prometheus_port: int = defaults.METRICS_PORT,
        docker_network: str = "host",
        extra_container_kwargs: Mapping[str, Any] | None = None,
        base_image: str | None = None,
        wheelhouse: str | Path | None = None,
        model_resources: Mapping[str, ModelResources] | None = None,
        restart_max_retries: int = 10,
        state_dir: str | os.PathLike[str] | None = None,
        heartbeat_timeout_millis: int = defaults.HEARTBEAT_TIMEOUT_MILLIS,
        log_level: str = "INFO",
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        docker_client: Any = None,
        supervision_reporter: bool = True,
        shm_transport: bool = False,
        replica_shm_spin_micros: int = 0,
        shm_response_spin_micros: int = defaults.SHM_RESPONSE_SPIN_MICROS,
        shm_response_spin_cost_micros: int = defaults.SHM_RESPONSE_SPIN_COST_MICROS,
        frontend_cpuset: str | None = None,
        replica_prefetch_full_batches: bool = defaults.REPLICA_PREFETCH_FULL_BATCHES,
    ) -> None:
        """`docker_network`: "host" (the default; containers share the host's network and bind
        127.0.0.1) or a user-defined network (the frontend's ports are then published on the host's
        loopback). `extra_container_kwargs` go to every `containers.run` (e.g. `{"dns": [...]}`).
        `base_image`: what Clipper's images are built FROM (default: $CLIPPER_BASE_IMAGE, the local
        Debian-built clipper-base:bookworm when present, else python:3.11-slim). `model_resources`:
        {model name: ModelResources}, also settable with `set_model_resources` (`cpuset` there, and
        `frontend_cpuset` here, give each its own CPUs: docs/admission.md).
        `restart_max_retries`: crashes of one replica container Docker restarts (with back-off).
        `state_dir` (default ~/.clipper/<cluster_name>) is mounted into the frontend container: its
        configuration and management token outlive the container. `supervision_reporter`: start
        the container that reads the replicas' restarts from Docker (it alone gets the Docker socket)
        and pushes them to the frontend's /metrics.
        `shm_transport`: replicas exchange batches with the frontend over shared-memory rings instead
        of ZeroMQ when their image has the SDK's compiled extensions (docs/docker.md: the frontend's
        socket directory <state_dir>/shm is mounted into every replica, which then runs as the
        frontend's user). Off by default: replicas serve over ZeroMQ and share nothing with it.
        With it, `replica_shm_spin_micros` (0-10,000; default 0) has each replica poll its request
        ring this long before sleeping (CLIPPER_SHM_SPIN_MICROS in its container) and
        `shm_response_spin_micros` (default 0) the frontend's I/O loop poll for an answer this long
        after sending a batch, and `shm_response_spin_cost_micros` (0-10,000; default 7; 0 = no
        bound) stop that spin while it costs more than this many microseconds spun per answer caught
        (LocalContainerManager's options of the same names).
        `replica_prefetch_full_batches`: a replica busy with a batch may be sent a full one to wait
        behind it (FrontendOptions.replica_prefetch_full_batches)."""
        if not isinstance(cluster_name, str) or not _CLUSTER_NAME_PATTERN.match(cluster_name):
            raise ClipperException(
                f"cluster_name {cluster_name!r} is not valid: use 1-64 letters, digits, '_', '.' or "
                "'-' (it names the cluster's containers and volume)"
            )
        for port_name, port in (
            ("clipper_query_port", clipper_query_port),
            ("clipper_management_port", clipper_management_port),
            ("clipper_rpc_port", clipper_rpc_port),
        ):
            if not 1 <= int(port) <= 65535:
                raise ClipperException(
                    f"{port_name}={port}: DockerContainerManager needs a fixed port (1-65535)"
                )
        self.cluster_name = cluster_name
        self.clipper_query_port = int(clipper_query_port)
        self.clipper_management_port = int(clipper_management_port)
        self.clipper_rpc_port = int(clipper_rpc_port)
        self.redis_ip = redis_ip
        self.redis_port = redis_port
        self.prometheus_port = int(prometheus_port)
        self.docker_network = docker_network
        self.extra_container_kwargs = dict(extra_container_kwargs or {})
        self.base_image = base_image
        self.wheelhouse = Path(wheelhouse) if wheelhouse else None
        self.model_resources: dict[str, ModelResources] = dict(model_resources or {})
        self.restart_max_retries = restart_max_retries
        self.log_level = log_level
        self.heartbeat_timeout_millis = heartbeat_timeout_millis
        self.state_dir = (
            Path(state_dir) if state_dir else default_state_dir(cluster_name)
        ).absolute()
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._client = docker_client
        self.supervision_reporter = supervision_reporter
        self.shm_transport = bool(shm_transport)
        self.replica_shm_spin_micros = checked_spin_micros(
            "replica_shm_spin_micros", replica_shm_spin_micros, MAX_SHM_SPIN_MICROS
        )
        if not isinstance(replica_prefetch_full_batches, bool):
            raise ClipperException(
                f"replica_prefetch_full_batches={replica_prefetch_full_batches!r}: use True or False"
            )
        self.replica_prefetch_full_batches = replica_prefetch_full_batches
        self.shm_response_spin_micros = checked_spin_micros(
            "shm_response_spin_micros", shm_response_spin_micros, MAX_SHM_RESPONSE_SPIN_MICROS
        )
        self.shm_response_spin_cost_micros = checked_spin_micros(
            "shm_response_spin_cost_micros",
            shm_response_spin_cost_micros,
            MAX_SHM_RESPONSE_SPIN_MICROS,
        )
        # The frontend container's CPUs (Docker's --cpuset-cpus); models get theirs in ModelResources.
        self.frontend_cpuset = format_cpus(parse_cpus(frontend_cpuset)) if frontend_cpuset else None
        # Clipper images this manager made sure of (kind -> name): staged and checked once per manager.
        self._images: dict[str, str] = {}

    # ---- Docker --------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import docker
            except ImportError as error:
                raise ClipperException(
                    "DockerContainerManager needs the Docker SDK for Python: pip install docker"
                ) from error
            try:
                self._client = docker.from_env()
                self._client.ping()
            except docker.errors.DockerException as error:
                raise ClipperException(
                    f"the Docker Engine does not answer ({error}); start it (see docs/docker.md) "
                    "or use LocalContainerManager"
                ) from error
        return self._client

    @property
    def _host_network(self) -> bool:
        return self.docker_network == "host"

    def _containers(self, role: str | None = None, model: str | None = None) -> list[Any]:
        labels = [f"{CLIPPER_LABEL}={self.cluster_name}"]
        if role:
            labels.append(f"{ROLE_LABEL}={role}")
        if model:
            labels.append(f"{MODEL_LABEL}={model}")
        return list(self.client.containers.list(all=True, filters={"label": labels}))

    def _container_name(self, *parts: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "-", "-".join(["clipper", self.cluster_name, *parts]))

    def _with_extras(self, options: dict[str, Any]) -> dict[str, Any]:
        """`options` with `extra_container_kwargs` applied: labels and environment are merged (Clipper's
        own entries win: they are how the cluster finds its containers), other keys replaced."""
        merged = {**options, **self.extra_container_kwargs}
        for key in ("labels", "environment"):
            extra = self.extra_container_kwargs.get(key) or {}
            if isinstance(extra, (list, tuple)):  # Docker also takes ["NAME=value", ...]
                extra = dict(str(item).split("=", 1) for item in extra)
            merged[key] = {**extra, **(options.get(key) or {})}
        return merged

    def _run(self, **kwargs: Any) -> Any:
        options = self._with_extras({"network": self.docker_network, **kwargs})
        return self.client.containers.run(detach=True, **options)

    # ---- the frontend -------------------------------------------------------------------------------

    def _frontend_command(
        self,
        cache_size_bytes: int = defaults.CACHE_SIZE_BYTES,
        io_threads: int = defaults.IO_THREADS,
        rpc_thread: str = "shared",
        allow_unauthenticated_replicas: bool = False,
    ) -> list[str]:
        """The frontend container's command (`python -m clipper.management.frontend`'s arguments),
        as start_clipper runs it."""
        command = [
            "--cluster-name", self.cluster_name,
            "--state-dir", STATE_DIR_IN_CONTAINER,
            "--bind-address", "127.0.0.1" if self._host_network else "0.0.0.0",
            "--query-port", str(self.clipper_query_port),
            "--management-port", str(self.clipper_management_port),
            "--rpc-port", str(self.clipper_rpc_port),
            "--metrics-port", str(self.prometheus_port),
            "--cache-size-bytes", str(cache_size_bytes),
            "--io-threads", str(io_threads),
            "--rpc-thread", rpc_thread,
            "--log-level", self.log_level,
            "--heartbeat-timeout-millis", str(self.heartbeat_timeout_millis),
        ]  # fmt: skip
        if self.redis_ip:
            command += ["--redis-address", f"{self.redis_ip}:{self.redis_port}"]
        if allow_unauthenticated_replicas:
            command.append("--allow-unauthenticated-replicas")
        # Only when not the default, so a frontend image older than the option still starts.
        if self.shm_response_spin_micros != defaults.SHM_RESPONSE_SPIN_MICROS:
            command += ["--shm-response-spin-micros", str(self.shm_response_spin_micros)]
        if self.shm_response_spin_cost_micros != defaults.SHM_RESPONSE_SPIN_COST_MICROS:
            command += ["--shm-response-spin-cost-micros", str(self.shm_response_spin_cost_micros)]
        if self.replica_prefetch_full_batches != defaults.REPLICA_PREFETCH_FULL_BATCHES:
            command.append(
                "--replica-prefetch-full-batches"
                if self.replica_prefetch_full_batches
                else "--no-replica-prefetch-full-batches"
            )
        return command

    def start_clipper(
        self,
        cache_size_bytes: int = defaults.CACHE_SIZE_BYTES,
        io_threads: int = defaults.IO_THREADS,
        rpc_thread: str = "shared",
        allow_unauthenticated_replicas: bool = False,
    ) -> None:
        """`allow_unauthenticated_replicas` lets replicas register without the cluster's CURVE keys
        (only with docker_network="host", where the RPC port is on loopback); by default the keys
        are created in the state directory and handed to each replica container in
        CLIPPER_RPC_CREDENTIALS."""
        import docker.errors

        for container in self._containers(role="frontend"):
            if container.status in ("running", "restarting"):
                raise ClusterStartError(
                    f"cluster '{self.cluster_name}' is already running (container "
                    f"{container.name}); connect() to it, or stop it first with stop_all()"
                )
            container.remove(force=True)
        # A reporter left from the last start holds that start's token: replaced below.
        self._remove(self._containers(role=REPORTER_ROLE), graceful=False)
        # One per start, shared by the frontend and its reporter only.
        supervision_token = secrets.token_urlsafe(32) if self.supervision_reporter else None
        if not allow_unauthenticated_replicas:
            # Here, before the directory is handed to the container's user: the frontend then
            # finds them, and they outlive its container.
            self.state_dir.mkdir(parents=True, exist_ok=True)
            ensure_cluster_keys(self.state_dir)
        if self.shm_transport:
            self._shm_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        user = self._prepare_state_dir()
        image = self._clipper_image("frontend")
        # Built (or found) before anything starts, so a build failure leaves no frontend running.
        reporter_image = self._clipper_image("supervision-reporter") if supervision_token else None
        command = self._frontend_command(
            cache_size_bytes, io_threads, rpc_thread, allow_unauthenticated_replicas
        )
        ports = {
            "query": self.clipper_query_port,
            "management": self.clipper_management_port,
            "rpc": self.clipper_rpc_port,
            "metrics": self.prometheus_port,
        }
        published = {}
        if not self._host_network:
            published = {f"{p}/tcp": ("127.0.0.1", p) for p in ports.values() if p}
        try:
            container = self._run(
                image=image,
                command=command,
                name=self._container_name("frontend"),
                labels={
                    CLIPPER_LABEL: self.cluster_name,
                    ROLE_LABEL: "frontend",
                    PORTS_LABEL: json.dumps(ports),
                },
                environment={
                    "CLIPPER_QUERY_PORT": str(self.clipper_query_port),
                    **({ENV_SUPERVISION_TOKEN: supervision_token} if supervision_token else {}),
                    **({"XDG_RUNTIME_DIR": SHM_DIR_IN_CONTAINER} if self.shm_transport else {}),
                },
                volumes={
                    str(self.state_dir): {"bind": STATE_DIR_IN_CONTAINER, "mode": "rw"},
                    **self._shm_volume(),
                },
                user=user,
                ports=published or None,
                restart_policy={"Name": "unless-stopped"},
                **({"cpuset_cpus": self.frontend_cpuset} if self.frontend_cpuset else {}),
            )
        except docker.errors.APIError as error:
            raise ClusterStartError(
                f"Docker could not start the frontend of cluster '{self.cluster_name}': {error}"
            ) from error
        logger.info(
            "event=frontend_starting cluster=%s container=%s image=%s",
            self.cluster_name,
            container.name,
            image,
        )
        self._wait_for_frontend(container)
        if supervision_token and reporter_image:
            self._start_supervision_reporter(reporter_image, supervision_token)
        logger.info(
            "event=frontend_started cluster=%s container=%s query_addr=%s admin_addr=%s",
            self.cluster_name,
            container.name,
            self.get_query_addr(),
            self.get_admin_addr(),
        )

    def _start_supervision_reporter(self, image: str, token: str) -> None:
        """The container that reads the replica containers' restarts from the Docker socket and
        pushes them to the frontend (clipper.managers.supervision_reporter); the frontend itself
        never gets the socket. It runs as the image's unprivileged user with the socket's group."""
        import docker.errors

        socket_path = _docker_socket_path()
        try:
            socket_group = os.stat(socket_path).st_gid
        except OSError as error:
            raise ClusterStartError(
                f"the Docker socket {socket_path} is not on this host ({error}); the supervision "
                "reporter needs it (or pass supervision_reporter=False: no restarts on /metrics)"
            ) from error
        try:
            container = self._run(
                image=image,
                command=["--log-level", self.log_level, "docker",
                         "--cluster-name", self.cluster_name,
                         "--frontend", f"{self._frontend_host()}:{self.clipper_management_port}"],
                name=self._container_name(REPORTER_ROLE),
                labels={CLIPPER_LABEL: self.cluster_name, ROLE_LABEL: REPORTER_ROLE},
                environment={ENV_SUPERVISION_TOKEN: token},
                volumes={socket_path: {"bind": _DOCKER_SOCKET, "mode": "rw"}},
                user=f"{_IMAGE_UID}:{_IMAGE_UID}",
                group_add=[str(socket_group)],
                restart_policy={"Name": "unless-stopped"},
            )  # fmt: skip
        except docker.errors.APIError as error:
            raise ClusterStartError(
                f"Docker could not start the supervision reporter of cluster "
                f"'{self.cluster_name}': {error}"
            ) from error
        logger.info("event=supervision_reporter_started cluster=%s container=%s",
                    self.cluster_name, container.name)  # fmt: skip

    def _prepare_state_dir(self) -> str:
        """Creates the state directory and returns the user the frontend container runs as: this
        user's ids, or when that is root the image's unprivileged user (10001), which then owns the
        directory. Either way the container's files are readable here."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.getuid() != 0:
            return self._frontend_user()
        for path in [self.state_dir, *self.state_dir.rglob("*")]:
            os.chown(path, _IMAGE_UID, _IMAGE_UID, follow_symlinks=False)
        return self._frontend_user()

    @staticmethod
    def _frontend_user() -> str:
        return f"{_IMAGE_UID}:{_IMAGE_UID}" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"

    @property
    def _shm_dir(self) -> Path:
        return self.state_dir / "shm"

    def _shm_volume(self) -> dict[str, dict[str, str]]:
        """The shared-memory socket directory's mount (same path in the frontend and replicas)."""
        if not self.shm_transport:
            return {}
        return {str(self._shm_dir): {"bind": SHM_DIR_IN_CONTAINER, "mode": "rw"}}

    def _replica_transport_options(self) -> dict[str, Any]:
        """What a replica container needs for shared memory: the socket directory and the frontend's
        user (the directory is 0700, the socket 0600). Without shm_transport the replica is told to
        use ZeroMQ, so it does not ask for an offer it could not take up."""
        if not self.shm_transport:
            return {"environment": {ENV_TRANSPORT: "zmq"}}
        environment = {ENV_TRANSPORT: "auto"}
        if self.replica_shm_spin_micros:
            environment[ENV_SHM_SPIN_MICROS] = str(self.replica_shm_spin_micros)
        return {
            "environment": environment,
            "volumes": self._shm_volume(),
            "user": self._frontend_user(),
        }

    def _wait_for_frontend(self, container: Any) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead") or (container.attrs["RestartCount"] > 0):
                logs = log_tail(container)
                container.remove(force=True)
                raise ClusterStartError(
                    f"the frontend container of cluster '{self.cluster_name}' exited while "
                    f"starting; its last log lines:\n{logs}"
                )
            if (
                _http_ok(f"http://{self.get_query_addr()}/healthz")
                and ManagementClient(self.get_admin_addr(), timeout_s=2.0).ping()
            ):
                return
            time.sleep(_POLL_INTERVAL_S)
        logs = log_tail(container)
        raise ClusterStartError(
            f"the frontend container of cluster '{self.cluster_name}' did not answer within "
            f"{self.startup_timeout_s:.0f} s; its last log lines:\n{logs}"
        )

    def connect(self) -> None:
        running = [c for c in self._containers(role="frontend") if c.status == "running"]
        if not running:
            raise ClipperException(
                f"no running Docker container of Clipper cluster '{self.cluster_name}' (label "
                f"{CLIPPER_LABEL}={self.cluster_name}); start it with start_clipper()"
            )
        ports = json.loads(running[0].labels.get(PORTS_LABEL, "{}"))
        self.clipper_query_port = int(ports.get("query", self.clipper_query_port))
        self.clipper_management_port = int(ports.get("management", self.clipper_management_port))
        self.clipper_rpc_port = int(ports.get("rpc", self.clipper_rpc_port))
        self.prometheus_port = int(ports.get("metrics", self.prometheus_port))
        for mount in running[0].attrs.get("Mounts", []):
            if mount.get("Destination") == STATE_DIR_IN_CONTAINER and mount.get("Type") == "bind":
                self.state_dir = Path(mount["Source"])  # where the management token is
        if not ManagementClient(self.get_admin_addr(), timeout_s=5.0).ping():
            raise ClipperException(
                f"the frontend container {running[0].name} runs but its management API does not "
                f"answer at {self.get_admin_addr()}; see its logs with get_clipper_logs()"
            )
        logger.info("event=connected cluster=%s container=%s", self.cluster_name, running[0].name)

    def get_admin_addr(self) -> str:
        return f"127.0.0.1:{self.clipper_management_port}"

    def get_query_addr(self) -> str:
        return f"127.0.0.1:{self.clipper_query_port}"

    def get_metric_addr(self) -> str:
        return f"127.0.0.1:{self.prometheus_port or self.clipper_query_port}"

    # ---- model images -------------------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str = "default",
        container_registry: str | None = None,
        pkgs_to_install: Sequence[str] | None = None,
    ) -> str:
        """Builds the model version's image: a Clipper model image (`base_image="default"` picks the
        framework's own from the saved closure; "python-closure", "sklearn", ... name one; anything
        else is an image of yours that has the container SDK) plus the saved model directory and
        `pkgs_to_install` (from the wheelhouse). Pushed to `container_registry` when given."""
        source = Path(model_data_path)
        if not (source / CLOSURE_FILE_NAME).is_file():
            raise DeploymentError(
                f"model_data_path {model_data_path!r} holds no {CLOSURE_FILE_NAME}; save the model "
                "first (clipper.container.closure.save_closure does this for a Python function)"
            )
        kind = model_image_kind(source) if base_image == "default" else base_image
        if kind in docker_images.IMAGES and kind not in docker_images.CONTROL_PLANE_IMAGES:
            parent = self._clipper_image(kind)
        else:
            parent = base_image
        repository = re.sub(
            r"[^a-z0-9_.-]", "-", f"clipper-model/{self.cluster_name}-{name}".lower()
        )
        repository = repository.replace("clipper-model-", "clipper-model/", 1)
        if container_registry:
            repository = f"{container_registry.rstrip('/')}/{repository}"
        tag = f"{repository}:{re.sub(r'[^A-Za-z0-9_.-]', '-', str(version))}"
        docker_images.build_model_image(
            self.client,
            source,
            tag,
            parent,
            pkgs_to_install or (),
            {CLIPPER_LABEL: self.cluster_name, MODEL_LABEL: f"{name}_{version}"},
            self.wheelhouse,
        )
        if container_registry:
            for line in self.client.images.push(repository, tag=tag.rsplit(":", 1)[1], stream=True,
                                                decode=True):  # fmt: skip
                if "error" in line:
                    raise DeploymentError(f"pushing {tag} to {container_registry} failed: {line}")
        logger.info("event=model_built cluster=%s model=%s version=%s image=%s", self.cluster_name,
                    name, version, tag)  # fmt: skip
        return tag

    def _clipper_image(self, kind: str) -> str:
        if kind not in self._images:
            self._images[kind] = docker_images.ensure_image(
                self.client, kind, self.base_image, self.wheelhouse
            )
        return self._images[kind]

    def set_model_resources(
        self,
        name: str,
        cpus: float | None = None,
        memory: str | int | None = None,
        gpus: str | int | Sequence[str] | None = None,
        cpuset: str | None = None,
    ) -> None:
        """Resources of model `name`'s replicas started from now on (every version)."""
        self.model_resources[name] = ModelResources(
            cpus=cpus, memory=memory, gpus=gpus, cpuset=cpuset
        )

    # ---- model replicas -----------------------------------------------------------------------------

    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        if num_replicas < 1:
            raise DeploymentError(f"num_replicas must be at least 1, got {num_replicas}")
        for _ in range(num_replicas):
            self._start_replica(name, str(version), input_type, image)

    def create_replica_container(self, name: str, version: str, input_type: str, image: str) -> Any:
        """Creates (does not start) the next replica container of a model version: labels, command,
        resources and restart policy as `deploy_model` would run it. Start it with `.start()`."""
        replica_id = self._next_replica_id(name, str(version))
        resources = self.model_resources.get(name, ModelResources())
        options = {
            "image": image,
            "command": [
                "--func-path",
                f"{MODEL_DIR_IN_CONTAINER}/{CLOSURE_FILE_NAME}",
                "--name",
                name,
                "--version",
                str(version),
                "--input-type",
                input_type,
                "--frontend",
                f"tcp://{self._frontend_host()}:{self.clipper_rpc_port}",
                "--replica-id",
                str(replica_id),
            ],
            "name": self._container_name(name, str(version), str(replica_id)),
            "labels": {
                CLIPPER_LABEL: self.cluster_name,
                MODEL_LABEL: f"{name}_{version}",
                ROLE_LABEL: "replica",
                REPLICA_LABEL: json.dumps(
                    {
                        "model_name": name,
                        "model_version": str(version),
                        "replica_id": replica_id,
                        "input_type": input_type,
                        "resources": json.loads(resources.to_label()),
                    }
                ),
            },
            "environment": {
                "CLIPPER_RPC_PORT": str(self.clipper_rpc_port),
                **self._replica_credentials_environment(),
            },
            "restart_policy": {"Name": "on-failure", "MaximumRetryCount": self.restart_max_retries},
            "network": self.docker_network,
            **resources.container_kwargs(),
        }
        transport = self._replica_transport_options()
        options["environment"].update(transport.pop("environment"))
        options.update(transport)
        return self.client.containers.create(**self._with_extras(options))

    def _start_replica(self, name: str, version: str, input_type: str, image: str) -> Any:
        import docker.errors

        try:
            container = self.create_replica_container(name, version, input_type, image)
        except docker.errors.ImageNotFound as error:
            if not _names_a_registry(image):
                raise DeploymentError(
                    f"image {image!r} of model '{name}' version '{version}' is not on this Docker "
                    "host; build it with build_model (or build_and_deploy_model)"
                ) from error
            # An image pushed by build_model(container_registry=...) from another host.
            try:
                self.client.images.pull(image)
            except docker.errors.APIError as pull_error:
                raise DeploymentError(
                    f"image {image!r} of model '{name}' version '{version}' is not on this Docker "
                    f"host and could not be pulled from its registry: {pull_error}"
                ) from pull_error
            logger.info("event=image_pulled cluster=%s image=%s", self.cluster_name, image)
            container = self.create_replica_container(name, version, input_type, image)
        try:
            container.start()
        except docker.errors.APIError as error:
            container.remove(force=True)
            hint = ""
            if "device driver" in str(error) or "gpu" in str(error).lower():
                hint = (
                    "; GPU replicas need the NVIDIA driver and the NVIDIA Container Toolkit on "
                    "the Docker host (see docs/docker.md)"
                )
            raise DeploymentError(
                f"Docker could not start a replica of model '{name}' version '{version}': "
                f"{error}{hint}"
            ) from error
        logger.info("event=replica_started cluster=%s model=%s version=%s container=%s",
                    self.cluster_name, name, version, container.name)  # fmt: skip
        return container

    def _replica_credentials_environment(self) -> dict[str, str]:
        """The replica's CURVE keys for its environment; none when the frontend admits replicas
        without keys (its endpoints file says so)."""
        endpoints = FrontendEndpoints.read(self.state_dir)
        if endpoints is not None and endpoints.replica_auth == "none":
            return {}
        if not replica_credentials_path(self.state_dir).exists():
            raise DeploymentError(
                f"cluster '{self.cluster_name}' has no replica credentials in {self.state_dir}; "
                "start it with start_clipper() on this host (or pass its state_dir)"
            )
        return {ENV_RPC_CREDENTIALS: read_replica_credentials(self.state_dir).to_json()}

    def _frontend_host(self) -> str:
        return "127.0.0.1" if self._host_network else self._container_name("frontend")

    def _next_replica_id(self, name: str, version: str) -> int:
        """One more than any replica id the model version's containers carry (ids are not reused
        while a container of the version exists)."""
        ids = [replica_info(c)["replica_id"] for c in self._containers(model=f"{name}_{version}")]
        return max(ids, default=-1) + 1

    def _replicas(self, name: str, version: str) -> list[Any]:
        return sorted(
            self._containers(role="replica", model=f"{name}_{version}"),
            key=lambda c: replica_info(c)["replica_id"],
        )

    def get_num_replicas(self, name: str, version: str) -> int:
        return sum(
            1 for c in self._replicas(name, str(version)) if c.status in ("running", "restarting")
        )

    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        if num_replicas < 0:
            raise DeploymentError(f"num_replicas must be at least 0, got {num_replicas}")
        alive = [
            c for c in self._replicas(name, str(version)) if c.status in ("running", "restarting")
        ]
        for _ in range(num_replicas - len(alive)):
            self._start_replica(name, str(version), input_type, image)
        self._remove(alive[num_replicas:], graceful=True)

    def find_failed_replicas(self, name: str, version: str) -> list[str]:
        """Replica containers that exited for good (restarts used up) or keep crashing; each is
        described and removed."""
        failures = []
        for container in self._replicas(name, str(version)):
            state = container.attrs["State"]
            looping = container.attrs.get("RestartCount", 0) >= CRASH_LOOP_RESTARTS
            if container.status in ("exited", "dead") or looping:
                failures.append(
                    f"replica container {container.name} {exit_reason(state)} after "
                    f"{container.attrs.get('RestartCount', 0)} restarts; its last log lines:\n"
                    f"{log_tail(container)}"
                )
                container.remove(force=True)
        return failures

    def supervision_report(self) -> list[dict[str, Any]]:
        """Every replica container: Docker's restart count and the last exit (from the container's
        state), "running" or, while Docker waits to restart it, "backing-off"/"crash-looping"."""
        return [
            supervision_entry(c, last_exit(self.client, c))
            for c in self._containers(role="replica")
        ]

    def stop_models(self, models: Mapping[str, Sequence[str]]) -> None:
        chosen = []
        for name, versions in models.items():
            for version in versions:
                chosen += self._containers(role="replica", model=f"{name}_{version}")
        self._remove(chosen, graceful=True)

    def stop_all_model_containers(self) -> None:
        self._remove(self._containers(role="replica"), graceful=True)

    def stop_all(self, graceful: bool = True, clear_state: bool = False) -> None:
        self._remove(self._containers(role="replica"), graceful=graceful)
        self._remove(self._containers(), graceful=graceful)
        if clear_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if self.redis_ip:
                from clipper.state.redis_store import RedisStateStore

                with RedisStateStore(
                    self.redis_ip, self.redis_port, cluster_name=self.cluster_name
                ) as store:
                    store.clear()
            for image in self.client.images.list(
                filters={"label": f"{CLIPPER_LABEL}={self.cluster_name}"}
            ):
                self.client.images.remove(image.id, force=True)
            logger.info("event=state_cleared cluster=%s", self.cluster_name)
        logger.info("event=cluster_stopped cluster=%s", self.cluster_name)

    def _remove(self, containers: Sequence[Any], graceful: bool) -> None:
        """Stops every container at once (SIGTERM, then SIGKILL after the grace) and removes it."""
        for container in containers:
            try:
                if graceful and container.status == "running":
                    container.stop(timeout=int(self.stop_timeout_s))
                container.remove(force=True)
            except Exception as error:  # noqa: BLE001 - already gone is fine; others are logged
                if "No such container" not in str(error) and "already in progress" not in str(
                    error
                ):
                    logger.warning("event=container_remove_failed container=%s error=%s",
                                   container.name, error)  # fmt: skip
                continue
            logger.info("event=container_removed cluster=%s container=%s", self.cluster_name,
                        container.name)  # fmt: skip

    def get_logs(self, logging_dir: str) -> list[str]:
        """Writes every container's log (stdout and stderr) to
        `<logging_dir>/<cluster>-logs-<time>/<container name>.log`; returns the paths."""
        destination = (
            Path(logging_dir) / f"{self.cluster_name}-logs-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        destination.mkdir(parents=True, exist_ok=True)
        written = []
        for container in self._containers():
            path = destination / f"{container.name}.log"
            path.write_bytes(container.logs(stdout=True, stderr=True, timestamps=True))
            written.append(str(path))
        return written


# --------------------------------------------------------------------------------------------------


def _names_a_registry(image: str) -> bool:
    """Whether `image` starts with a registry host ("registry.example.com/...", "127.0.0.1:5000/...",
    "localhost/..."), as Docker tells a registry from a Docker Hub namespace."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _docker_socket_path() -> str:
    """The Engine's unix socket on this host ($DOCKER_HOST when it names one)."""
    configured = os.environ.get("DOCKER_HOST", "")
    path = configured[len("unix://") :] if configured.startswith("unix://") else _DOCKER_SOCKET
    if os.path.exists(path) and not stat.S_ISSOCK(os.stat(path).st_mode):
        raise ClusterStartError(f"{path} is not a socket; set DOCKER_HOST=unix://<the socket>")
    return path


def _http_ok(url: str) -> bool:
    try:
        with urlopen_direct(url, timeout=2.0) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False
