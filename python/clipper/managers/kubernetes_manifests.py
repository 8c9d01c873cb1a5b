"""The Kubernetes objects of a Clipper cluster, built as the official client's models (`V1Deployment`,
`V1Service`, ...) by pure functions, and rendered to YAML for review or `kubectl apply`.

Owns names, labels, probes, resources and the frontend's and replicas' command lines on Kubernetes; talks
to no API server (`clipper.managers.kubernetes` applies these objects). Layout, as Clipper's: Redis
(`redis-at-<cluster>`, unless an external one is given), per frontend `i` a Deployment and an RPC
Service `query-frontend-<i>-at-<cluster>`, one query Service `query-frontend-at-<cluster>` over all
frontends, one management Service `mgmt-frontend-at-<cluster>`, and per model version and frontend a
Deployment whose replicas connect to that frontend (each frontend runs its own batching queues). The
RPC port's CURVE keys live in a Secret `rpc-keys-at-<cluster>`: the frontends read the server half
(CLIPPER_RPC_SERVER_KEYS), the replicas their credentials (CLIPPER_RPC_CREDENTIALS), both by reference.
Replica restarts reach the frontends' /metrics from the supervision reporter (`supervision-reporter-at-
<cluster>`: a Deployment whose ServiceAccount may only get/list/watch pods in the namespace), which
sends them with the token of the Secret `supervision-token-at-<cluster>`; the frontends read that token
too (clipper.managers.supervision_reporter).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clipper.container.credentials import ENV_RPC_CREDENTIALS
from clipper.exceptions import ConfigurationError
from clipper.management.replica_keys import ENV_RPC_SERVER_KEYS, ClusterKeys
from clipper.management.supervision_reports import ENV_SUPERVISION_TOKEN
from clipper.managers.docker_images import IMAGES
from clipper_native import defaults

try:
    import yaml
    from kubernetes import client
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"Clipper's Kubernetes support needs the official client: pip install 'kubernetes>=30' "
        f"({_error})"
    ) from _error

CLIPPER_LABEL = "ai.clipper.container.label"
MODEL_LABEL = "ai.clipper.model_container.label"
ROLE_LABEL = "ai.clipper.role"
FRONTEND_LABEL = "ai.clipper.frontend"
MODEL_ANNOTATION = "ai.clipper.model"
# The keys of the RPC keys Secret's data.
SERVER_KEYS_SECRET_KEY = "server-keys"
REPLICA_CREDENTIALS_SECRET_KEY = "replica-credentials"
# The key of the supervision token Secret's data.
SUPERVISION_TOKEN_SECRET_KEY = "token"
DEFAULT_FRONTEND_IMAGE = IMAGES["frontend"].name
DEFAULT_REPORTER_IMAGE = IMAGES["supervision-reporter"].name
DEFAULT_REDIS_IMAGE = "redis:7-alpine"
# The frontend's emptyDir is mounted here, root-owned and writable by all (kubelet makes it so); the
# state directory is a directory of the frontend's own user below it, which it keeps owner-only.
STATE_VOLUME_IN_CONTAINER = "/var/lib/clipper"
STATE_DIR_IN_CONTAINER = f"{STATE_VOLUME_IN_CONTAINER}/state"
MODEL_DIR_IN_CONTAINER = "/model"
# The user id Clipper's images run as (containers/*/Dockerfile).
IMAGE_USER_ID = 10001
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_CLUSTER_NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_DNS_LABEL_MAX = 63


@dataclass(frozen=True)
class PodResources:
    """What one container requests (and is limited to). Empty fields are left to the cluster."""

    # CPU cores requested, e.g. 0.5; no CPU limit is set (throttling adds latency).
    cpus: float | None = None
    # Memory requested and limited to, as a Kubernetes quantity ("512Mi", "2Gi").
    memory: str | None = None
    # GPUs requested (and limited to) as `nvidia.com/gpu`; the node needs NVIDIA's device plugin.
    gpus: int = 0
    # CPUs of its own: the CPU limit equals the (whole) request and memory is limited, so the pod is
    # Guaranteed and a kubelet with the static CPU manager policy gives it exclusive cores (CPU
    # isolation of CPU-bound replicas from the frontend, docs/operations.md).
    exclusive_cpus: bool = False

    def __post_init__(self) -> None:
        if self.cpus is not None and (isinstance(self.cpus, bool) or self.cpus <= 0):
            raise ConfigurationError(f"PodResources.cpus={self.cpus!r}: use a number of cores > 0")
        if self.memory is not None and not re.fullmatch(
            r"[0-9]+(\.[0-9]+)?([KMGTPE]i?|[mk])?", self.memory
        ):
            raise ConfigurationError(
                f"PodResources.memory={self.memory!r}: use a Kubernetes quantity such as '512Mi'"
            )
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ConfigurationError(f"PodResources.gpus={self.gpus!r}: use an int >= 0")
        if self.exclusive_cpus and (
            self.cpus is None or float(self.cpus) != int(self.cpus) or self.memory is None
        ):
            raise ConfigurationError(
                "PodResources.exclusive_cpus needs a whole number of cpus and a memory limit (the "
                "static CPU manager policy gives exclusive cores to Guaranteed pods only)"
            )

    def requirements(self) -> client.V1ResourceRequirements | None:
        requests: dict[str, str] = {}
        limits: dict[str, str] = {}
        if self.cpus is not None:
            requests["cpu"] = f"{round(self.cpus * 1000)}m"
            if self.exclusive_cpus:
                limits["cpu"] = requests["cpu"]
        if self.memory is not None:
            requests["memory"] = limits["memory"] = self.memory
        if self.gpus:
            requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(self.gpus)
        if not requests:
            return None
        return client.V1ResourceRequirements(requests=requests, limits=limits or None)


@dataclass(frozen=True)
class ClusterSpec:
    """Everything the manifests of one cluster depend on; validated at construction."""

    cluster_name: str = "default-cluster"
    namespace: str = "default"
    query_port: int = defaults.QUERY_PORT
    management_port: int = defaults.MANAGEMENT_PORT
    rpc_port: int = defaults.RPC_PORT
    # Prometheus /metrics; 0 serves it on the query port only.
    metrics_port: int = defaults.METRICS_PORT
    # An external Redis ("host"); None runs one in the cluster (`redis-at-<cluster>`).
    redis_ip: str | None = None
    redis_port: int = 6379
    # Size of the in-cluster Redis's volume (a Kubernetes quantity).
    redis_storage: str = "1Gi"
    # Prefix for images named without a registry ("registry.example.com/team").
    registry: str | None = None
    image_pull_policy: str = "IfNotPresent"
    # Type of the query Service (the one clients reach); the others are ClusterIP.
    service_type: str = "ClusterIP"
    num_frontends: int = 1
    frontend_image: str = DEFAULT_FRONTEND_IMAGE
    # The supervision reporter's (the frontend image plus the Kubernetes client).
    supervision_reporter_image: str = DEFAULT_REPORTER_IMAGE
    redis_image: str = DEFAULT_REDIS_IMAGE
    frontend_resources: PodResources = field(
        default_factory=lambda: PodResources(cpus=1.0, memory="1Gi")
    )
    # Per model name; models not named here get `default_model_resources`.
    model_resources: Mapping[str, PodResources] = field(default_factory=dict)
    default_model_resources: PodResources = field(
        default_factory=lambda: PodResources(cpus=0.5, memory="512Mi")
    )
    # Engine settings the frontends start with (ClipperConnection.start_clipper passes them).
    cache_size_bytes: int = defaults.CACHE_SIZE_BYTES
    io_threads: int = defaults.IO_THREADS
    rpc_thread: str = "shared"
    # A replica busy with a batch may be sent a full one to wait behind it (the frontend's option).
    replica_prefetch_full_batches: bool = defaults.REPLICA_PREFETCH_FULL_BATCHES

    def __post_init__(self) -> None:
        if not isinstance(self.cluster_name, str) or not _CLUSTER_NAME_PATTERN.match(
            self.cluster_name
        ):
            raise ConfigurationError(
                f"cluster_name {self.cluster_name!r} is not valid on Kubernetes: use 1-40 lowercase "
                "letters, digits and '-', starting and ending with a letter or digit"
            )
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.namespace or ""):
            raise ConfigurationError(f"namespace {self.namespace!r} is not a valid DNS label")
        for name in ("query_port", "management_port", "rpc_port", "redis_port"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                raise ConfigurationError(
                    f"{name}={value!r}: use a port 1-65535 (fixed on Kubernetes)"
                )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(f"metrics_port={self.metrics_port!r}: use 0-65535")
        if self.service_type not in SERVICE_TYPES:
            raise ConfigurationError(
                f"service_type={self.service_type!r}: use one of {', '.join(SERVICE_TYPES)}"
            )
        if self.image_pull_policy not in PULL_POLICIES:
            raise ConfigurationError(
                f"image_pull_policy={self.image_pull_policy!r}: use one of {', '.join(PULL_POLICIES)}"
            )
        if isinstance(self.num_frontends, bool) or not 1 <= self.num_frontends <= 32:
            raise ConfigurationError(f"num_frontends={self.num_frontends!r}: use 1-32")
        if not isinstance(self.replica_prefetch_full_batches, bool):
            raise ConfigurationError(
                f"replica_prefetch_full_batches={self.replica_prefetch_full_batches!r}: use True or "
                "False"
            )

    # ---- names ----------------------------------------------------------------------------------------

    @property
    def redis_name(self) -> str:
        return f"redis-at-{self.cluster_name}"

    @property
    def rpc_keys_secret_name(self) -> str:
        return f"rpc-keys-at-{self.cluster_name}"

    @property
    def supervision_token_secret_name(self) -> str:
        return f"supervision-token-at-{self.cluster_name}"

    @property
    def supervision_reporter_name(self) -> str:
        """The reporter's Deployment, ServiceAccount, Role and RoleBinding."""
        return f"supervision-reporter-at-{self.cluster_name}"

    @property
    def query_service_name(self) -> str:
        return f"query-frontend-at-{self.cluster_name}"

    @property
    def management_service_name(self) -> str:
        return f"mgmt-frontend-at-{self.cluster_name}"

    def frontend_name(self, index: int) -> str:
        return f"query-frontend-{index}-at-{self.cluster_name}"

    def model_deployment_name(self, name: str, version: str, frontend: int) -> str:
        return dns_label(f"{name}-{version}-deployment-at-{frontend}-at-{self.cluster_name}")

    @property
    def redis_address(self) -> str:
        host = self.redis_ip or f"{self.redis_name}.{self.namespace}.svc"
        return f"{host}:{self.redis_port}"

    def image(self, image: str) -> str:
        """`image` with the registry prefixed when it names none."""
        first = image.split("/", 1)[0]
        has_registry = "/" in image and ("." in first or ":" in first or first == "localhost")
        if self.registry and not has_registry:
            return f"{self.registry.rstrip('/')}/{image}"
        return image

    def labels(self, role: str, **extra: str) -> dict[str, str]:
        return {CLIPPER_LABEL: self.cluster_name, ROLE_LABEL: role, **extra}

    def model_labels(self, name: str, version: str, frontend: int) -> dict[str, str]:
        return self.labels(
            "model",
            **{MODEL_LABEL: label_value(f"{name}_{version}"), FRONTEND_LABEL: str(frontend)},
        )


def dns_label(text: str) -> str:
    """`text` as a DNS-1123 label (lowercase alphanumerics and '-', at most 63); a name that had to
    change keeps a short hash of the original so two names never collide."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if cleaned == text and len(cleaned) <= _DNS_LABEL_MAX:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[: _DNS_LABEL_MAX - 9].rstrip('-')}-{digest}"


def label_value(text: str) -> str:
    """`text` as a label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    if re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:54].strip("-_.")
    return f"{cleaned}-{digest}" if cleaned else digest


# ---- objects --------------------------------------------------------------------------------------


def _meta(spec: ClusterSpec, name: str, labels: Mapping[str, str], **kwargs: Any) -> Any:
    return client.V1ObjectMeta(name=name, namespace=spec.namespace, labels=dict(labels), **kwargs)


def _deployment(
    spec: ClusterSpec,
    name: str,
    labels: Mapping[str, str],
    replicas: int,
    pod: client.V1PodSpec,
    annotations: Mapping[str, str] | None = None,
    strategy: client.V1DeploymentStrategy | None = None,
) -> client.V1Deployment:
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(spec, name, labels, annotations=dict(annotations) if annotations else None),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=dict(labels)),
            # A version change or a new frontend image never drops below the wanted count.
            strategy=strategy
            or client.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=client.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(
                    labels=dict(labels), annotations=dict(annotations) if annotations else None
                ),
                spec=pod,
            ),
        ),
    )


def _service(
    spec: ClusterSpec,
    name: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    ports: Sequence[tuple[str, int]],
    service_type: str = "ClusterIP",
) -> client.V1Service:
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(spec, name, labels),
        spec=client.V1ServiceSpec(
            type=service_type,
            selector=dict(selector),
            ports=[
                client.V1ServicePort(name=port_name, port=port, target_port=port, protocol="TCP")
                for port_name, port in ports
            ],
        ),
    )


def _restricted_security() -> client.V1SecurityContext:
    return client.V1SecurityContext(
        allow_privilege_escalation=False,
        run_as_non_root=True,
        capabilities=client.V1Capabilities(drop=["ALL"]),
    )


def _secret_env(name: str, secret: str, key: str, optional: bool | None = None) -> client.V1EnvVar:
    selector = client.V1SecretKeySelector(name=secret, key=key, optional=optional)
    return client.V1EnvVar(name=name, value_from=client.V1EnvVarSource(secret_key_ref=selector))


def rpc_keys_secret(spec: ClusterSpec, keys: ClusterKeys) -> client.V1Secret:
    """The Secret holding the RPC port's keys (created once per cluster; see the module's doc)."""
    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=_meta(spec, spec.rpc_keys_secret_name, spec.labels("rpc-keys")),
        type="Opaque",
        string_data={
            SERVER_KEYS_SECRET_KEY: keys.server_keys_json(),
            REPLICA_CREDENTIALS_SECRET_KEY: keys.replica.to_json(),
        },
    )


def supervision_token_secret(spec: ClusterSpec, token: str) -> client.V1Secret:
    """The Secret holding the token the supervision reporter sends and the frontends accept."""
    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=_meta(spec, spec.supervision_token_secret_name, spec.labels("supervision-token")),
        type="Opaque",
        string_data={SUPERVISION_TOKEN_SECRET_KEY: token},
    )


def supervision_reporter_objects(spec: ClusterSpec) -> list[Any]:
    """The supervision reporter: a ServiceAccount, a Role that allows reading pods of the namespace
    and nothing else, their RoleBinding, and a one-replica Deployment running
    `python -m clipper.managers.supervision_reporter kubernetes` (the supervision-reporter image)."""
    name = spec.supervision_reporter_name
    labels = spec.labels("supervision-reporter")
    account = client.V1ServiceAccount(
        api_version="v1", kind="ServiceAccount", metadata=_meta(spec, name, labels)
    )
    role = client.V1Role(
        api_version="rbac.authorization.k8s.io/v1",
        kind="Role",
        metadata=_meta(spec, name, labels),
        rules=[
            client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"])
        ],
    )
    binding = client.V1RoleBinding(
        api_version="rbac.authorization.k8s.io/v1",
        kind="RoleBinding",
        metadata=_meta(spec, name, labels),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=spec.namespace)],
    )
    container = client.V1Container(
        name="reporter",
        image=spec.image(spec.supervision_reporter_image),
        image_pull_policy=spec.image_pull_policy,
        args=[
            "kubernetes",
            f"--cluster-name={spec.cluster_name}",
            f"--namespace={spec.namespace}",
            f"--management-port={spec.management_port}",
        ],
        env=[
            _secret_env(
                ENV_SUPERVISION_TOKEN,
                spec.supervision_token_secret_name,
                SUPERVISION_TOKEN_SECRET_KEY,
            )
        ],
        resources=PodResources(cpus=0.05, memory="128Mi").requirements(),
        security_context=_restricted_security(),
        # Restarted when it has not read the pods for 30 s (API server unreachable, RBAC changed).
        liveness_probe=client.V1Probe(
            _exec=client.V1ExecAction(
                command=["python3", "-m", "clipper.managers.supervision_reporter", "healthcheck"]
            ),
            initial_delay_seconds=20,
            period_seconds=10,
            failure_threshold=3,
        ),
    )
    pod = client.V1PodSpec(
        containers=[container],
        service_account_name=name,
        automount_service_account_token=True,  # its only credential: read pods
        security_context=client.V1PodSecurityContext(run_as_user=IMAGE_USER_ID),
        termination_grace_period_seconds=5,
    )
    recreate = client.V1DeploymentStrategy(type="Recreate")  # one reporter at a time
    deployment = _deployment(spec, name, labels, 1, pod, strategy=recreate)
    return [account, role, binding, deployment]


def redis_objects(spec: ClusterSpec) -> list[Any]:
    """Redis for the cluster's configuration, when no external one is given."""
    if spec.redis_ip:
        return []
    labels = spec.labels("redis")
    probe = client.V1Probe(
        tcp_socket=client.V1TCPSocketAction(port=spec.redis_port), period_seconds=5
    )
    container = client.V1Container(
        name="redis",
        image=spec.image(spec.redis_image),
        image_pull_policy=spec.image_pull_policy,
        args=["--port", str(spec.redis_port), "--appendonly", "yes"],
        ports=[client.V1ContainerPort(name="redis", container_port=spec.redis_port)],
        readiness_probe=probe,
        liveness_probe=probe,
        resources=PodResources(cpus=0.25, memory="256Mi").requirements(),
        volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")],
    )
    pod = client.V1PodSpec(
        containers=[container],
        volumes=[
            client.V1Volume(
                name="data",
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=spec.redis_name
                ),
            )
        ],
    )
    # The configuration outlives the Redis pod: append-only file on a claim of its own.
    claim = client.V1PersistentVolumeClaim(
        api_version="v1",
        kind="PersistentVolumeClaim",
        metadata=_meta(spec, spec.redis_name, labels),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": spec.redis_storage}),
        ),
    )
    # Never two Redis pods on one claim: the old one stops before the new one starts.
    recreate = client.V1DeploymentStrategy(type="Recreate")
    return [
        claim,
        _deployment(spec, spec.redis_name, labels, 1, pod, strategy=recreate),
        _service(spec, spec.redis_name, labels, labels, [("redis", spec.redis_port)]),
    ]


def frontend_objects(spec: ClusterSpec) -> list[Any]:
    """Each frontend's Deployment and RPC Service, the query Service over all of them, and the
    management Service."""
    objects: list[Any] = []
    for index in range(spec.num_frontends):
        labels = spec.labels("frontend", **{FRONTEND_LABEL: str(index)})
        objects.append(_deployment(spec, spec.frontend_name(index), labels, 1, _frontend_pod(spec)))
        objects.append(
            _service(spec, spec.frontend_name(index), labels, labels, [("rpc", spec.rpc_port)])
        )
    every_frontend = spec.labels("frontend")
    query_ports = [("query", spec.query_port)]
    if spec.metrics_port and spec.metrics_port != spec.query_port:
        query_ports.append(("metrics", spec.metrics_port))
    objects.append(
        _service(
            spec,
            spec.query_service_name,
            every_frontend,
            every_frontend,
            query_ports,
            spec.service_type,
        )
    )
    objects.append(
        _service(
            spec,
            spec.management_service_name,
            every_frontend,
            every_frontend,
            [("management", spec.management_port)],
        )
    )
    return objects


def _frontend_pod(spec: ClusterSpec) -> client.V1PodSpec:
    args = [
        "--cluster-name", spec.cluster_name,
        "--state-dir", STATE_DIR_IN_CONTAINER,
        "--bind-address", "0.0.0.0",
        "--query-port", str(spec.query_port),
        "--management-port", str(spec.management_port),
        "--rpc-port", str(spec.rpc_port),
        "--metrics-port", str(spec.metrics_port),
        "--cache-size-bytes", str(spec.cache_size_bytes),
        "--io-threads", str(spec.io_threads),
        "--rpc-thread", spec.rpc_thread,
        "--redis-address", spec.redis_address,
        "--replica-supervisor", "none",
    ]  # fmt: skip
    # Only when not the default, so a frontend image older than the option still starts.
    if spec.replica_prefetch_full_batches != defaults.REPLICA_PREFETCH_FULL_BATCHES:
        args.append(
            "--replica-prefetch-full-batches"
            if spec.replica_prefetch_full_batches
            else "--no-replica-prefetch-full-batches"
        )
    ports = [
        client.V1ContainerPort(name="query", container_port=spec.query_port),
        client.V1ContainerPort(name="management", container_port=spec.management_port),
        client.V1ContainerPort(name="rpc", container_port=spec.rpc_port),
    ]
    if spec.metrics_port and spec.metrics_port != spec.query_port:
        ports.append(client.V1ContainerPort(name="metrics", container_port=spec.metrics_port))
    container = client.V1Container(
        name="frontend",
        image=spec.image(spec.frontend_image),
        image_pull_policy=spec.image_pull_policy,
        args=args,
        ports=ports,
        env=[
            client.V1EnvVar(name="CLIPPER_QUERY_PORT", value=str(spec.query_port)),
            _secret_env(ENV_RPC_SERVER_KEYS, spec.rpc_keys_secret_name, SERVER_KEYS_SECRET_KEY),
            # Optional: a frontend without it takes no supervision reports (the path answers 404).
            _secret_env(
                ENV_SUPERVISION_TOKEN,
                spec.supervision_token_secret_name,
                SUPERVISION_TOKEN_SECRET_KEY,
                optional=True,
            ),
        ],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/readyz", port=spec.query_port),
            period_seconds=2,
            failure_threshold=2,
        ),
        liveness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/healthz", port=spec.query_port),
            initial_delay_seconds=5,
            period_seconds=5,
            failure_threshold=3,
        ),
        resources=spec.frontend_resources.requirements(),
        volume_mounts=[client.V1VolumeMount(name="state", mount_path=STATE_VOLUME_IN_CONTAINER)],
        security_context=_restricted_security(),
    )
    return client.V1PodSpec(
        containers=[container],
        volumes=[client.V1Volume(name="state", empty_dir=client.V1EmptyDirVolumeSource())],
        security_context=client.V1PodSecurityContext(
            run_as_user=IMAGE_USER_ID, fs_group=IMAGE_USER_ID
        ),
    )


def model_objects(
    spec: ClusterSpec, name: str, version: str, input_type: str, image: str, num_replicas: int
) -> list[client.V1Deployment]:
    """One Deployment per frontend for a model version, `num_replicas` replicas each."""
    return [
        model_deployment(spec, name, version, input_type, image, num_replicas, index)
        for index in range(spec.num_frontends)
    ]


def model_deployment(
    spec: ClusterSpec,
    name: str,
    version: str,
    input_type: str,
    image: str,
    num_replicas: int,
    frontend: int,
) -> client.V1Deployment:
    labels = spec.model_labels(name, version, frontend)
    frontend_host = f"{spec.frontend_name(frontend)}.{spec.namespace}.svc"
    healthcheck = client.V1ExecAction(command=["python3", "/opt/clipper/healthcheck.py", "replica"])
    container = client.V1Container(
        name="model",
        image=spec.image(image),
        image_pull_policy=spec.image_pull_policy,
        args=[
            "--func-path",
            f"{MODEL_DIR_IN_CONTAINER}/func.pkl",
            "--name",
            name,
            "--version",
            str(version),
            "--input-type",
            input_type,
            "--frontend",
            f"tcp://{frontend_host}:{spec.rpc_port}",
        ],
        env=[
            client.V1EnvVar(name="CLIPPER_RPC_PORT", value=str(spec.rpc_port)),
            # Another pod cannot reach the frontend's shared-memory socket: do not ask for rings.
            client.V1EnvVar(name="CLIPPER_TRANSPORT", value="zmq"),
            _secret_env(
                ENV_RPC_CREDENTIALS, spec.rpc_keys_secret_name, REPLICA_CREDENTIALS_SECRET_KEY
            ),
        ],
        # Ready once connected to its frontend; restarted after a minute without a connection.
        readiness_probe=client.V1Probe(_exec=healthcheck, period_seconds=3, failure_threshold=2),
        liveness_probe=client.V1Probe(
            _exec=healthcheck, initial_delay_seconds=30, period_seconds=10, failure_threshold=6
        ),
        resources=spec.model_resources.get(name, spec.default_model_resources).requirements(),
        security_context=_restricted_security(),
    )
    pod = client.V1PodSpec(
        containers=[container],
        security_context=client.V1PodSecurityContext(run_as_user=IMAGE_USER_ID),
        # The runner stops within a second of SIGTERM; a short grace keeps rollouts quick.
        termination_grace_period_seconds=10,
    )
    annotations = {MODEL_ANNOTATION: json.dumps({"name": name, "version": str(version)})}
    return _deployment(
        spec,
        spec.model_deployment_name(name, version, frontend),
        labels,
        num_replicas,
        pod,
        annotations,
    )


def cluster_objects(
    spec: ClusterSpec,
    models: Iterable[tuple[str, str, str, str, int]] = (),
    keys: ClusterKeys | None = None,
    supervision_token: str | None = None,
) -> list[Any]:
    """Every object of the cluster: the RPC keys Secret (when `keys` are given), the supervision token
    Secret (when `supervision_token` is), Redis, frontends, the supervision reporter, and each
    (name, version, input_type, image, num_replicas) of `models`."""
    objects = [rpc_keys_secret(spec, keys)] if keys is not None else []
    if supervision_token is not None:
        objects.append(supervision_token_secret(spec, supervision_token))
    objects += [*redis_objects(spec), *frontend_objects(spec), *supervision_reporter_objects(spec)]
    for name, version, input_type, image, num_replicas in models:
        objects += model_objects(spec, name, version, input_type, image, num_replicas)
    return objects


def to_dict(obj: Any) -> dict[str, Any]:
    """An object as the API server takes it (camelCase keys, no empty fields)."""
    result: dict[str, Any] = client.ApiClient().sanitize_for_serialization(obj)
    return result


def render_yaml(objects: Iterable[Any]) -> str:
    """The objects as one multi-document YAML stream, ready for `kubectl apply -f -`."""
    return yaml.safe_dump_all(
        [to_dict(obj) for obj in objects], sort_keys=False, default_flow_style=False
    )
