"""`KubernetesContainerManager`: a Clipper cluster on Kubernetes, through the official `kubernetes` client.

Owns the API calls: create the objects `clipper.managers.kubernetes_manifests` builds, scale a model
version by patching its Deployments' scale, roll versions by creating and deleting Deployments, read pod
statuses and logs. Supervision is Kubernetes' own (a Deployment keeps `replicas` pods; the kubelet
restarts a crashed container with CrashLoopBackOff); `supervision_report` reads restarts and the last
termination from pod statuses in Clipper's vocabulary. Methods block on the API server; never on the
query path. `render_manifests` and `clipper k8s render` print what would be applied.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubernetes import client as kube
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from clipper.exceptions import ClipperException, ClusterStartError, DeploymentError
from clipper.management.replica_keys import new_cluster_keys
from clipper.managers.container_manager import ContainerManager
from clipper.managers.kubernetes_manifests import (
    CLIPPER_LABEL,
    MODEL_ANNOTATION,
    MODEL_LABEL,
    ROLE_LABEL,
    ClusterSpec,
    PodResources,
    cluster_objects,
    frontend_objects,
    label_value,
    model_objects,
    redis_objects,
    render_yaml,
    rpc_keys_secret,
    supervision_reporter_objects,
    supervision_token_secret,
)
from clipper.managers.supervision_reporter import container_exit_reason, container_state
from clipper_native import defaults

logger = logging.getLogger(__name__)

__all__ = ["KubernetesContainerManager", "PodResources", "render_manifests"]

_POLL_INTERVAL_S = 1.0


def _refuse_shared_memory(
    shm_transport: Any,
    replica_shm_spin_micros: Any,
    shm_response_spin_micros: Any,
    shm_response_spin_cost_micros: Any,
) -> None:
    """Replicas in other pods cannot reach the frontend's shared-memory socket (they are told to use
    ZeroMQ: kubernetes_manifests), so the options that tune that transport have nothing to act on."""
    asked = (
        ("shm_transport", shm_transport, not shm_transport, False),
        (
            "replica_shm_spin_micros",
            replica_shm_spin_micros,
            _is_int(replica_shm_spin_micros, 0),
            0,
        ),
        (
            "shm_response_spin_micros",
            shm_response_spin_micros,
            _is_int(shm_response_spin_micros, defaults.SHM_RESPONSE_SPIN_MICROS),
            defaults.SHM_RESPONSE_SPIN_MICROS,
        ),
        (
            "shm_response_spin_cost_micros",
            shm_response_spin_cost_micros,
            _is_int(shm_response_spin_cost_micros, defaults.SHM_RESPONSE_SPIN_COST_MICROS),
            defaults.SHM_RESPONSE_SPIN_COST_MICROS,
        ),
    )
    for name, value, at_default, default in asked:
        if not at_default:
            raise ClipperException(
                f"{name}={value!r}: KubernetesContainerManager has no shared-memory transport "
                "(replicas run in pods of their own and serve over ZeroMQ); leave it at "
                f"{default!r}, or use the Local or Docker manager for replicas on the frontend's host"
            )


def _is_int(value: Any, expected: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == expected


class KubernetesContainerManager(ContainerManager):
    def __init__(
        self,
        cluster_name: str = "default-cluster",
        clipper_query_port: int = defaults.QUERY_PORT,
        clipper_management_port: int = defaults.MANAGEMENT_PORT,
        clipper_rpc_port: int = defaults.RPC_PORT,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        prometheus_port: int = defaults.METRICS_PORT,
        namespace: str = "default",
        registry: str | None = None,
        image_pull_policy: str = "IfNotPresent",
        service_type: str = "ClusterIP",
        num_frontends: int = 1,
        frontend_image: str | None = None,
        supervision_reporter_image: str | None = None,
        frontend_resources: PodResources | None = None,
        model_resources: Mapping[str, PodResources] | None = None,
        query_addr: str | None = None,
        management_addr: str | None = None,
        api_client: Any = None,
        startup_timeout_s: float = 300.0,
        shm_transport: bool = False,
        replica_shm_spin_micros: int = 0,
        shm_response_spin_micros: int = defaults.SHM_RESPONSE_SPIN_MICROS,
        shm_response_spin_cost_micros: int = defaults.SHM_RESPONSE_SPIN_COST_MICROS,
        replica_prefetch_full_batches: bool = defaults.REPLICA_PREFETCH_FULL_BATCHES,
    ) -> None:
        """The port kwargs are the ports inside the cluster (Services and containers). `registry`
        prefixes images named without one; `service_type` is the query Service's type. `query_addr`
        and `management_addr` ("host:port") are where this process reaches the query and management
        Services (a LoadBalancer address, a NodePort, or `kubectl port-forward`); by default their
        in-cluster DNS names, which work from a pod. `api_client`: a `kubernetes.client.ApiClient`;
        by default the kubeconfig (or the pod's service account) is loaded on first use.
        `shm_transport`, `replica_shm_spin_micros`, `shm_response_spin_micros` and
        `shm_response_spin_cost_micros` (the Local and Docker managers' shared-memory options) are
        accepted only at their defaults (off, no spin): replicas run in pods of their own, which
        cannot map the frontend's rings, and serve over ZeroMQ; anything else is refused rather than
        silently ignored. `replica_prefetch_full_batches` (an engine option, valid over ZeroMQ): a
        replica busy with a batch may be sent a full one to wait behind it
        (FrontendOptions.replica_prefetch_full_batches)."""
        _refuse_shared_memory(
            shm_transport,
            replica_shm_spin_micros,
            shm_response_spin_micros,
            shm_response_spin_cost_micros,
        )
        defaults = ClusterSpec()
        self.spec = ClusterSpec(
            cluster_name=cluster_name,
            namespace=namespace,
            query_port=clipper_query_port,
            management_port=clipper_management_port,
            rpc_port=clipper_rpc_port,
            metrics_port=prometheus_port,
            redis_ip=redis_ip,
            redis_port=redis_port,
            registry=registry,
            image_pull_policy=image_pull_policy,
            service_type=service_type,
            num_frontends=num_frontends,
            frontend_image=frontend_image or defaults.frontend_image,
            supervision_reporter_image=(
                supervision_reporter_image or defaults.supervision_reporter_image
            ),
            frontend_resources=frontend_resources or defaults.frontend_resources,
            model_resources=dict(model_resources or {}),
            replica_prefetch_full_batches=replica_prefetch_full_batches,
        )
        self.cluster_name = cluster_name
        self.redis_ip = redis_ip
        self.redis_port = redis_port
        self.query_addr = query_addr
        self.management_addr = management_addr
        self.startup_timeout_s = startup_timeout_s
        self._api_client = api_client

    # ---- API access -----------------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._api_client is None:
            try:
                kube_config.load_kube_config()
            except kube_config.ConfigException:
                try:
                    kube_config.load_incluster_config()
                except kube_config.ConfigException as error:
                    raise ClipperException(
                        "no Kubernetes cluster configured: set up ~/.kube/config (kubectl works) "
                        "or run inside a pod with a service account, or pass api_client="
                    ) from error
            self._api_client = kube.ApiClient()
        return self._api_client

    @property
    def _apps(self) -> Any:
        return kube.AppsV1Api(self._client())

    @property
    def _core(self) -> Any:
        return kube.CoreV1Api(self._client())

    @property
    def _rbac(self) -> Any:
        return kube.RbacAuthorizationV1Api(self._client())

    def _create(self, obj: Any) -> None:
        """Create `obj`; one that exists already is updated (Deployments, Services) or kept."""
        kind, name, namespace = obj.kind, obj.metadata.name, self.spec.namespace
        create = {
            "Deployment": self._apps.create_namespaced_deployment,
            "Service": self._core.create_namespaced_service,
            "PersistentVolumeClaim": self._core.create_namespaced_persistent_volume_claim,
            "Secret": self._core.create_namespaced_secret,
            "ServiceAccount": self._core.create_namespaced_service_account,
            "Role": self._rbac.create_namespaced_role,
            "RoleBinding": self._rbac.create_namespaced_role_binding,
        }[kind]
        try:
            create(namespace, obj)
            logger.info("event=k8s_created kind=%s name=%s namespace=%s", kind, name, namespace)
        except ApiException as error:
            if error.status != 409:
                raise _api_error(f"create {kind} {name}", error) from error
            # A claim is kept as it is (its data matters more than its spec); so are the RPC keys,
            # which running replicas hold.
            patch = {
                "Deployment": self._apps.patch_namespaced_deployment,
                "Service": self._core.patch_namespaced_service,
                "Role": self._rbac.patch_namespaced_role,
            }.get(kind)
            if patch is not None:
                patch(name, namespace, obj)
                logger.info("event=k8s_updated kind=%s name=%s", kind, name)

    # ---- the frontend ---------------------------------------------------------------------------------

    def start_clipper(
        self,
        cache_size_bytes: int = defaults.CACHE_SIZE_BYTES,
        io_threads: int = defaults.IO_THREADS,
        rpc_thread: str = "shared",
    ) -> None:
        self.spec = replace(
            self.spec,
            cache_size_bytes=cache_size_bytes,
            io_threads=io_threads,
            rpc_thread=rpc_thread,
        )
        # Keys made here are used only when the cluster has none yet (the Secret outlives stop_all).
        secret = rpc_keys_secret(self.spec, new_cluster_keys())
        # Likewise the supervision token: kept when the cluster has one (its frontends read it).
        token = supervision_token_secret(self.spec, secrets.token_urlsafe(32))
        for obj in [
            secret,
            token,
            *redis_objects(self.spec),
            *frontend_objects(self.spec),
            *supervision_reporter_objects(self.spec),
        ]:
            self._create(obj)
        deadline = time.monotonic() + self.startup_timeout_s
        names = [self.spec.frontend_name(i) for i in range(self.spec.num_frontends)]
        while True:
            waiting = [name for name in names if not self._deployment_ready(name)]
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"frontends {', '.join(waiting)} were not ready within "
                    f"{self.startup_timeout_s:.0f} s; see `kubectl -n {self.spec.namespace} "
                    f"describe deployment {waiting[0]}` (image pulls, probes, resources)"
                )
            time.sleep(_POLL_INTERVAL_S)
        logger.info("event=frontend_started cluster=%s frontends=%d", self.cluster_name, len(names))

    def connect(self) -> None:
        deployments = self._list_deployments(role="frontend")
        if not deployments:
            raise ClipperException(
                f"no Clipper cluster '{self.cluster_name}' runs in namespace "
                f"'{self.spec.namespace}'; start one with start_clipper()"
            )

    def get_admin_addr(self) -> str:
        return self.management_addr or (
            f"{self.spec.management_service_name}.{self.spec.namespace}.svc:"
            f"{self.spec.management_port}"
        )

    def get_query_addr(self) -> str:
        return self.query_addr or (
            f"{self.spec.query_service_name}.{self.spec.namespace}.svc:{self.spec.query_port}"
        )

    def get_metric_addr(self) -> str:
        host = self.get_query_addr().rsplit(":", 1)[0]
        return f"{host}:{self.spec.metrics_port or self.spec.query_port}"

    # ---- model replicas ---------------------------------------------------------------------------

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str = "default",
        container_registry: str | None = None,
        pkgs_to_install: Sequence[str] | None = None,
    ) -> str:
        """Build the model version's image with the local Docker Engine (as DockerContainerManager
        does) and push it to `container_registry` (default: this manager's `registry`), where the
        cluster's nodes pull it from. Without a registry only `image_pull_policy="Never"` works
        (nodes that already hold the image, e.g. kind or minikube after an image load)."""
        registry = container_registry or self.spec.registry
        if not registry and self.spec.image_pull_policy != "Never":
            raise DeploymentError(
                "the cluster's nodes pull model images from a registry: pass registry= to "
                "KubernetesContainerManager (or container_registry= here), or use "
                'image_pull_policy="Never" with images loaded onto the nodes'
            )
        from clipper.managers.docker import DockerContainerManager

        builder = DockerContainerManager(cluster_name=self.cluster_name)
        return builder.build_model(
            name, version, model_data_path, base_image, registry, pkgs_to_install
        )

    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        if num_replicas < 1:
            raise DeploymentError(f"num_replicas must be at least 1, got {num_replicas}")
        for deployment in model_objects(
            self.spec, name, str(version), input_type, image, num_replicas
        ):
            self._create(deployment)

    def get_num_replicas(self, name: str, version: str) -> int:
        deployments = self._model_deployments(name, str(version))
        return min((int(d.spec.replicas or 0) for d in deployments), default=0)

    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        """Patch each frontend's Deployment of the version to `num_replicas` (its scale
        subresource); a version without Deployments gets them."""
        if num_replicas < 0:
            raise DeploymentError(f"num_replicas must be at least 0, got {num_replicas}")
        existing = {d.metadata.name for d in self._model_deployments(name, str(version))}
        for index in range(self.spec.num_frontends):
            deployment_name = self.spec.model_deployment_name(name, str(version), index)
            if deployment_name in existing:
                self._apps.patch_namespaced_deployment_scale(
                    deployment_name, self.spec.namespace, {"spec": {"replicas": num_replicas}}
                )
                logger.info("event=k8s_scaled name=%s replicas=%d", deployment_name, num_replicas)
            elif num_replicas > 0:
                self.deploy_model(name, str(version), input_type, image, num_replicas)
                return

    def find_failed_replicas(self, name: str, version: str) -> list[str]:
        """Pods of the version that cannot run: crash-looping, image not pullable, or failed."""
        failures = []
        for pod in self._pods(model=(name, str(version))):
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                if waiting is not None and waiting.reason in _FAILED_WAITING_REASONS:
                    failures.append(
                        f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message or ''} "
                        f"(restarted {status.restart_count} times; see kubectl -n "
                        f"{self.spec.namespace} logs {pod.metadata.name} --previous)"
                    )
        return failures

    def supervision_report(self) -> list[dict[str, Any]]:
        """Each model pod, in Clipper's vocabulary: CrashLoopBackOff reads as crash-looping, other
        waiting after a restart as backing-off; the last termination's exit code or signal."""
        report = []
        for pod in self._pods(role="model"):
            model = json.loads((pod.metadata.annotations or {}).get(MODEL_ANNOTATION, "{}"))
            for status in pod.status.container_statuses or []:
                report.append(
                    {
                        "model_name": model.get("name", ""),
                        "model_version": model.get("version", ""),
                        "replica_id": -1,  # the frontend numbers replicas of a Deployment
                        "pod": pod.metadata.name,
                        "state": container_state(status),
                        "restarts": int(status.restart_count or 0),
                        "last_exit_reason": container_exit_reason(status),
                        "next_restart_in_s": 0.0,
                    }
                )
        return report

    def stop_models(self, models: Mapping[str, Sequence[str]]) -> None:
        for name, versions in models.items():
            for version in versions:
                for deployment in self._model_deployments(name, str(version)):
                    self._delete_deployment(deployment.metadata.name)

    def stop_all_model_containers(self) -> None:
        for deployment in self._list_deployments(role="model"):
            self._delete_deployment(deployment.metadata.name)

    def stop_all(self, graceful: bool = True, clear_state: bool = False) -> None:
        """Delete every Deployment and Service of the cluster. The in-cluster Redis's volume claim
        stays (the next start restores the configuration) unless `clear_state`."""
        grace = None if graceful else 0
        for deployment in self._list_deployments():
            self._delete_deployment(deployment.metadata.name, grace)
        selector = f"{CLIPPER_LABEL}={self.cluster_name}"
        for service in self._core.list_namespaced_service(
            self.spec.namespace, label_selector=selector
        ).items:
            self._core.delete_namespaced_service(service.metadata.name, self.spec.namespace)
        if clear_state:
            for secret in self._core.list_namespaced_secret(
                self.spec.namespace, label_selector=selector
            ).items:
                self._core.delete_namespaced_secret(secret.metadata.name, self.spec.namespace)
            # The supervision reporter's account and its permission to read pods.
            for kind, listing, delete in (
                ("RoleBinding", self._rbac.list_namespaced_role_binding,
                 self._rbac.delete_namespaced_role_binding),
                ("Role", self._rbac.list_namespaced_role, self._rbac.delete_namespaced_role),
                ("ServiceAccount", self._core.list_namespaced_service_account,
                 self._core.delete_namespaced_service_account),
            ):  # fmt: skip
                for obj in listing(self.spec.namespace, label_selector=selector).items:
                    delete(obj.metadata.name, self.spec.namespace)
                    logger.info("event=k8s_deleted kind=%s name=%s", kind, obj.metadata.name)
            for claim in self._core.list_namespaced_persistent_volume_claim(
                self.spec.namespace, label_selector=selector
            ).items:
                self._core.delete_namespaced_persistent_volume_claim(
                    claim.metadata.name, self.spec.namespace
                )
            if self.redis_ip:
                from clipper.state.redis_store import RedisStateStore

                with RedisStateStore(
                    self.redis_ip, self.redis_port, cluster_name=self.cluster_name
                ) as store:
                    store.clear()

    def get_logs(self, logging_dir: str) -> list[str]:
        destination = (
            Path(logging_dir) / f"{self.cluster_name}-logs-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        destination.mkdir(parents=True, exist_ok=True)
        written = []
        for pod in self._pods():
            path = destination / f"{pod.metadata.name}.log"
            path.write_text(
                self._core.read_namespaced_pod_log(pod.metadata.name, self.spec.namespace),
                encoding="utf-8",
            )
            written.append(str(path))
        return written

    # ---- internals ------------------------------------------------------------------------------------

    def _selector(self, role: str | None = None, model: tuple[str, str] | None = None) -> str:
        parts = [f"{CLIPPER_LABEL}={self.cluster_name}"]
        if role:
            parts.append(f"{ROLE_LABEL}={role}")
        if model:
            parts.append(f"{MODEL_LABEL}={label_value(f'{model[0]}_{model[1]}')}")
        return ",".join(parts)

    def _list_deployments(self, role: str | None = None) -> list[Any]:
        return list(
            self._apps.list_namespaced_deployment(
                self.spec.namespace, label_selector=self._selector(role)
            ).items
        )

    def _model_deployments(self, name: str, version: str) -> list[Any]:
        return list(
            self._apps.list_namespaced_deployment(
                self.spec.namespace, label_selector=self._selector("model", (name, version))
            ).items
        )

    def _pods(self, role: str | None = None, model: tuple[str, str] | None = None) -> list[Any]:
        return list(
            self._core.list_namespaced_pod(
                self.spec.namespace,
                label_selector=self._selector("model" if model else role, model),
            ).items
        )

    def _deployment_ready(self, name: str) -> bool:
        status = self._apps.read_namespaced_deployment_status(name, self.spec.namespace).status
        return bool(status and (status.ready_replicas or 0) >= 1)

    def _delete_deployment(self, name: str, grace_period_seconds: int | None = None) -> None:
        try:
            self._apps.delete_namespaced_deployment(
                name,
                self.spec.namespace,
                grace_period_seconds=grace_period_seconds,
                propagation_policy="Foreground",
            )
        except ApiException as error:
            if error.status != 404:
                raise _api_error(f"delete Deployment {name}", error) from error
        logger.info("event=k8s_deleted kind=Deployment name=%s", name)


_FAILED_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
     "CreateContainerConfigError", "CreateContainerError"}
)  # fmt: skip


def _api_error(action: str, error: Any) -> ClipperException:
    return ClipperException(
        f"Kubernetes refused to {action}: {error.status} {error.reason}: {str(error.body)[:500]}"
    )


def render_manifests(
    manager: KubernetesContainerManager,
    models: Sequence[tuple[str, str, str, str, int]] = (),
) -> str:
    """Everything `manager.start_clipper()` and `deploy_model` of each (name, version, input_type,
    image, num_replicas) would apply, as one YAML stream (`kubectl apply -f -`). The RPC keys Secret
    (and the supervision token Secret) hold keys made for this rendering: apply them once (applying another rendering's Secret replaces
    the keys, and replicas started before then can no longer register)."""
    return render_yaml(
        cluster_objects(
            manager.spec,
            models,
            keys=new_cluster_keys(),
            supervision_token=secrets.token_urlsafe(32),
        )
    )
