"""The supervision reporter: reads how a cluster's replica containers are doing from the platform that
restarts them (Docker, Kubernetes) and pushes it to the frontends' /metrics.

Why a process of its own: Docker's restart policy or the kubelet replaces a crashed replica, and only
they know its restarts and last exit; the frontend, which parses untrusted input, never gets the Docker
socket or the Kubernetes API. The reporter does (Docker: the socket; Kubernetes: a ServiceAccount that
may only get/list/watch pods in its namespace) and holds nothing else: it sends each frontend its
replica slots with `POST /admin/set_replica_supervision` and the supervision token, which opens that
one path (clipper.management.supervision_reports). A report goes out when it changed, and again every
`resend_interval_s` so a frontend that restarted (and lost its snapshot) has it back soon.

Run it as `python -m clipper.managers.supervision_reporter docker|kubernetes ...` (DockerContainerManager
starts it in a container; the Kubernetes manifests in a Deployment). The slot translations are pure
functions, tested with the platforms' own objects.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clipper.management.supervision_reports import (
    ENV_SUPERVISION_TOKEN,
    REPORT_PATH,
    token_from_environment,
)
from clipper.managers.supervision import BACKING_OFF, CRASH_LOOPING, RUNNING, describe_exit

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 1.0
# Touched after every pass that read the platform: the images' health check and the Kubernetes
# liveness probe call the reporter unhealthy when it is older than STALE_AFTER_S.
ALIVE_FILE = "/tmp/clipper-supervision-reporter.alive"
STALE_AFTER_S = 30.0
DEFAULT_RESEND_INTERVAL_S = 15.0
_PUSH_TIMEOUT_S = 5.0
# The keys of a slot, as Engine.set_replica_supervision takes them.
SLOT_KEYS = ("model_name", "model_version", "replica_id", "restarts", "last_exit_reason", "state")

# {frontend management address "host:port": that frontend's slots}
Reports = dict[str, list[dict[str, Any]]]


# ---- Docker -----------------------------------------------------------------------------------------


class DockerSlots:
    """The replica containers of one cluster on a Docker Engine, as slots (replica ids from their
    labels, restarts from Docker's RestartCount, the last exit from Docker's event log)."""

    def __init__(self, client: Any, cluster_name: str) -> None:
        self.client = client
        self.cluster_name = cluster_name
        # container id -> ((RestartCount, FinishedAt), last exit): the event log is read only
        # when a container exited again.
        self._exits: dict[str, tuple[tuple[Any, ...], Mapping[str, Any] | None]] = {}

    def __call__(self) -> list[dict[str, Any]]:
        from clipper.managers.docker import CLIPPER_LABEL, ROLE_LABEL
        from clipper.managers.docker_replicas import last_exit, supervision_entry

        containers = self.client.containers.list(
            all=True,
            filters={"label": [f"{CLIPPER_LABEL}={self.cluster_name}", f"{ROLE_LABEL}=replica"]},
        )
        slots = []
        for container in containers:
            key = (
                container.attrs.get("RestartCount", 0),
                container.attrs["State"].get("FinishedAt"),
            )
            cached = self._exits.get(container.id)
            if cached is None or cached[0] != key:
                cached = (key, last_exit(self.client, container))
                self._exits[container.id] = cached
            entry = supervision_entry(container, cached[1])
            if entry["replica_id"] >= 0 and entry["model_name"] and entry["model_version"]:
                slots.append({key: entry[key] for key in SLOT_KEYS})
        live = {container.id for container in containers}
        for gone in set(self._exits) - live:
            del self._exits[gone]
        return sorted(slots, key=_slot_order)


# ---- Kubernetes -------------------------------------------------------------------------------------


def kubernetes_slots(model_pods: Iterable[Any]) -> dict[int, list[dict[str, Any]]]:
    """Model pods (the official client's V1Pod) as slots per frontend index (each model Deployment
    serves one frontend: its pods' `ai.clipper.frontend` label). A pod is a slot: its model container's
    restartCount, last termination and waiting reason; replica ids number a model version's pods of
    one frontend from 0 in creation order (Kubernetes names pods, Clipper numbers replicas)."""
    from clipper.managers.kubernetes_manifests import FRONTEND_LABEL, MODEL_ANNOTATION

    grouped: dict[tuple[int, str, str], list[Any]] = {}
    for pod in model_pods:
        metadata = pod.metadata
        if metadata is None or metadata.deletion_timestamp is not None:
            continue  # a pod on its way out no longer fills a slot
        try:
            model = json.loads((metadata.annotations or {}).get(MODEL_ANNOTATION, ""))
            frontend = int((metadata.labels or {})[FRONTEND_LABEL])
            name, version = str(model["name"]), str(model["version"])
        except (ValueError, KeyError, TypeError):
            continue  # not a pod of Clipper's manifests
        grouped.setdefault((frontend, name, version), []).append(pod)
    slots: dict[int, list[dict[str, Any]]] = {}
    for (frontend, name, version), pods in sorted(grouped.items()):
        pods.sort(key=lambda pod: (_created(pod), pod.metadata.name or ""))
        for replica_id, pod in enumerate(pods):
            status = _model_container_status(pod)
            slots.setdefault(frontend, []).append(
                {
                    "model_name": name,
                    "model_version": version,
                    "replica_id": replica_id,
                    "restarts": int(status.restart_count or 0) if status else 0,
                    "last_exit_reason": container_exit_reason(status),
                    "state": container_state(status),
                }
            )
    return slots


def container_state(status: Any) -> str:
    """A V1ContainerStatus in Clipper's vocabulary: CrashLoopBackOff is crash-looping; waiting or
    terminated after a restart is backing-off; otherwise (running, or starting for the first time)
    the slot is running."""
    if status is None or status.state is None:
        return RUNNING
    waiting = status.state.waiting
    if waiting is not None and waiting.reason == "CrashLoopBackOff":
        return CRASH_LOOPING
    if (waiting is not None or status.state.terminated is not None) and (status.restart_count or 0):
        return BACKING_OFF
    return RUNNING


def container_exit_reason(status: Any) -> str:
    """How the container's previous run ended, in the words local replicas use ("" when it never
    ended): a code above 128 is the signal the process died of (Kubernetes reports SIGKILL as 137,
    reason "Error"), "OOMKilled" says the memory limit did it."""
    terminated = status.last_state.terminated if status and status.last_state else None
    if terminated is None:
        return ""
    if terminated.signal:
        reason = describe_exit(-int(terminated.signal))
    else:
        code = int(terminated.exit_code or 0)
        reason = describe_exit(-(code - 128) if code > 128 else code)
    if terminated.reason == "OOMKilled":
        reason += " (out of memory: over its memory limit)"
    elif terminated.reason and terminated.reason not in ("Error", "Completed"):
        reason += f" ({terminated.reason})"
    return reason


def _model_container_status(pod: Any) -> Any:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    for status in statuses:
        if status.name == "model":
            return status
    return statuses[0] if statuses else None


def _created(pod: Any) -> float:
    created = pod.metadata.creation_timestamp
    return created.timestamp() if created is not None else float("inf")


class KubernetesReports:
    """Reports for every frontend pod of a cluster: pods listed with the reporter's ServiceAccount
    (get/list/watch on pods of its namespace, nothing else), each ready frontend pod sent the slots
    of the model Deployments that connect to its frontend index, at its pod IP."""

    def __init__(
        self, core_api: Any, namespace: str, cluster_name: str, management_port: int
    ) -> None:
        self.core = core_api
        self.namespace = namespace
        self.cluster_name = cluster_name
        self.management_port = management_port

    def __call__(self) -> Reports:
        from clipper.managers.kubernetes_manifests import CLIPPER_LABEL, ROLE_LABEL

        def pods(role: str) -> list[Any]:
            selector = f"{CLIPPER_LABEL}={self.cluster_name},{ROLE_LABEL}={role}"
            return list(
                self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
            )

        return kubernetes_reports(pods("frontend"), pods("model"), self.management_port)


def kubernetes_reports(
    frontend_pods: Iterable[Any], model_pods: Iterable[Any], management_port: int
) -> Reports:
    """Which report goes to which frontend pod (running, with an IP): its index's slots, or none."""
    from clipper.managers.kubernetes_manifests import FRONTEND_LABEL

    slots = kubernetes_slots(model_pods)
    reports: Reports = {}
    for pod in frontend_pods:
        ip = pod.status.pod_ip if pod.status else None
        if not ip or pod.metadata.deletion_timestamp is not None:
            continue
        try:
            index = int((pod.metadata.labels or {})[FRONTEND_LABEL])
        except (KeyError, ValueError):
            continue
        host = f"[{ip}]" if ":" in ip else ip
        reports[f"{host}:{management_port}"] = slots.get(index, [])
    return reports


# ---- the loop ---------------------------------------------------------------------------------------


class SupervisionReporter:
    """Collects reports every `poll_interval_s` and sends each frontend its own when it changed or
    `resend_interval_s` passed; a frontend that does not answer is tried again at the next pass."""

    def __init__(
        self,
        collect: Callable[[], Reports],
        token: str,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        resend_interval_s: float = DEFAULT_RESEND_INTERVAL_S,
        alive_file: str | None = None,
    ) -> None:
        self.collect = collect
        self.alive_file = alive_file
        self.token = token
        self.poll_interval_s = poll_interval_s
        self.resend_interval_s = resend_interval_s
        # address -> (report sent, monotonic time it was accepted)
        self._sent: dict[str, tuple[list[dict[str, Any]], float]] = {}

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.report_once()
            except Exception:
                logger.exception("event=supervision_report_pass_failed")
            if stop.wait(self.poll_interval_s):
                return

    def report_once(self) -> None:
        now = time.monotonic()
        reports = self.collect()
        if self.alive_file:
            with open(self.alive_file, "a"):
                os.utime(self.alive_file)
        for address in set(self._sent) - set(reports):
            del self._sent[address]
        for address, slots in reports.items():
            previous = self._sent.get(address)
            unchanged = previous is not None and previous[0] == slots
            if unchanged and now - previous[1] < self.resend_interval_s:
                continue
            if self._push(address, slots):
                self._sent[address] = (slots, now)
                if previous is None or previous[0] != slots:
                    logger.info(
                        "event=supervision_reported frontend=%s slots=%d restarts=%d",
                        address,
                        len(slots),
                        sum(slot["restarts"] for slot in slots),
                    )

    def _push(self, address: str, slots: list[dict[str, Any]]) -> bool:
        request = urllib.request.Request(
            f"http://{address}{REPORT_PATH}",
            data=json.dumps({"slots": slots}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        # Straight to the frontend: an HTTP proxy of the environment must not see the token.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=_PUSH_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as error:
            logger.warning(
                "event=supervision_report_refused frontend=%s status=%d body=%r",
                address,
                error.code,
                error.read(500).decode("utf-8", "replace"),
            )
        except (urllib.error.URLError, OSError) as error:
            logger.warning("event=supervision_report_failed frontend=%s error=%s", address, error)
        return False


def _slot_order(slot: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(slot["model_name"]), str(slot["model_version"]), int(slot["replica_id"]))


def is_alive(alive_file: str = ALIVE_FILE, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether the reporter read the platform within `stale_after_s` (its health check)."""
    try:
        return time.time() - os.path.getmtime(alive_file) < stale_after_s
    except OSError:
        return False


# ---- command line -----------------------------------------------------------------------------------


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clipper.managers.supervision_reporter",
        description="Push a cluster's replica restarts, read from Docker or Kubernetes, to its "
        f"frontends' /metrics. The token comes from ${ENV_SUPERVISION_TOKEN}.",
    )
    parser.add_argument("--poll-interval-s", type=float, default=DEFAULT_POLL_INTERVAL_S)
    parser.add_argument("--resend-interval-s", type=float, default=DEFAULT_RESEND_INTERVAL_S)
    parser.add_argument("--log-level", default="INFO")
    platforms = parser.add_subparsers(dest="platform", required=True)
    platforms.add_parser("healthcheck", help="exit 0 when the running reporter read the platform "
                         f"within {STALE_AFTER_S:.0f} s (the images' health check)")  # fmt: skip
    docker = platforms.add_parser("docker", help="replica containers on this Docker Engine")
    docker.add_argument("--cluster-name", required=True)
    docker.add_argument("--frontend", required=True, help="host:port of the management API")
    kubernetes = platforms.add_parser("kubernetes", help="model pods in this pod's namespace")
    kubernetes.add_argument("--cluster-name", required=True)
    kubernetes.add_argument("--namespace", required=True)
    kubernetes.add_argument("--management-port", type=int, required=True)
    return parser


def collector(arguments: argparse.Namespace) -> Callable[[], Reports]:
    if arguments.platform == "docker":
        import docker

        slots = DockerSlots(docker.from_env(), arguments.cluster_name)
        return lambda: {arguments.frontend: slots()}
    from kubernetes import client, config

    config.load_incluster_config()
    return KubernetesReports(
        client.CoreV1Api(), arguments.namespace, arguments.cluster_name, arguments.management_port
    )


def main(argv: list[str] | None = None) -> int:
    arguments = build_argument_parser().parse_args(argv)
    if arguments.platform == "healthcheck":
        return 0 if is_alive() else 1
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    token = token_from_environment()
    if token is None:
        logger.error(
            "event=supervision_reporter_invalid cause='%s is not set'", ENV_SUPERVISION_TOKEN
        )
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    reporter = SupervisionReporter(
        collector(arguments),
        token,
        arguments.poll_interval_s,
        arguments.resend_interval_s,
        alive_file=ALIVE_FILE,
    )
    logger.info("event=supervision_reporter_started platform=%s", arguments.platform)
    reporter.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
