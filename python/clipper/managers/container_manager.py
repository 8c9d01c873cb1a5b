"""The container manager interface: where a cluster's processes run and how they are started and stopped.

Implementations: `LocalContainerManager` (local processes, the embedded default); Docker and Kubernetes
managers implement the same methods, and every manager supervises its replicas (the vocabulary:
`clipper.managers.supervision`). A manager never changes the configuration itself: `ClipperConnection`
does that through the management API and asks the manager only to run or stop processes.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from clipper.exceptions import ClipperException

MIB = 1024 * 1024


def checked_spin_micros(name: str, value: Any, maximum: int) -> int:
    """A manager's spin option (replicas' or the frontend's, in microseconds): an int from 0 to
    `maximum`, else ClipperException naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ClipperException(f"{name} must be an int from 0 to {maximum}, got {value!r}")
    return value


class ContainerManager(abc.ABC):
    """Clipper's `ContainerManager` surface, with the same keyword arguments in every implementation:
    `cluster_name`, `clipper_query_port`, `clipper_management_port`, `clipper_rpc_port`, `redis_ip`,
    `redis_port`, `prometheus_port`."""

    cluster_name: str

    # ---- the frontend -------------------------------------------------------------------------------

    @abc.abstractmethod
    def start_clipper(
        self, cache_size_bytes: int = 32 * MIB, io_threads: int = 1, rpc_thread: str = "shared"
    ) -> None:
        """Start the cluster's frontend and return once it answers; raises ClusterStartError."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Find the running frontend of this cluster (its actual ports); raises ClipperException."""

    @abc.abstractmethod
    def get_admin_addr(self) -> str:
        """ "host:port" of the management REST API."""

    @abc.abstractmethod
    def get_query_addr(self) -> str:
        """ "host:port" of the query REST API."""

    @abc.abstractmethod
    def get_metric_addr(self) -> str:
        """ "host:port" serving Prometheus `/metrics`."""

    # ---- model replicas -----------------------------------------------------------------------------

    @abc.abstractmethod
    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str = "default",
        container_registry: str | None = None,
        pkgs_to_install: Sequence[str] | None = None,
    ) -> str:
        """Package a saved model directory into something `deploy_model` can run; returns its image
        (an image name, or for local processes a directory)."""

    @abc.abstractmethod
    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        """Start `num_replicas` more replicas of a model version; they connect to the frontend."""

    @abc.abstractmethod
    def get_num_replicas(self, name: str, version: str) -> int:
        """Replicas of the model version that are running (whether or not connected yet)."""

    @abc.abstractmethod
    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        """Start or stop replicas until exactly `num_replicas` run."""

    @abc.abstractmethod
    def find_failed_replicas(self, name: str, version: str) -> list[str]:
        """Replicas of the model version that exited, each described with its exit status and the end
        of its log, so a failed deployment can say why instead of hanging."""

    def supervision_report(self) -> list[dict[str, Any]]:
        """Every replica slot the manager supervises: {"model_name", "model_version", "replica_id",
        "state" (clipper.managers.supervision.REPLICA_STATES), "restarts", "last_exit_reason",
        "next_restart_in_s"}. Managers whose platform supervises for them report what it reports;
        the default reports nothing."""
        return []

    @abc.abstractmethod
    def stop_models(self, models: Mapping[str, Sequence[str]]) -> None:
        """Stop every replica of the given {model name: [versions]}."""

    @abc.abstractmethod
    def stop_all_model_containers(self) -> None:
        """Stop every model replica of the cluster; the frontend keeps running."""

    @abc.abstractmethod
    def stop_all(self, graceful: bool = True, clear_state: bool = False) -> None:
        """Stop every replica and the frontend (`graceful=False` kills without waiting). The cluster's
        configuration is kept for the next start unless `clear_state`."""

    @abc.abstractmethod
    def get_logs(self, logging_dir: str) -> list[str]:
        """Copy the cluster's logs under `logging_dir`; returns the paths written."""
