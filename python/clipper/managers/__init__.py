"""Container managers: where a cluster's frontend and model replicas run (local processes for now;
Docker and Kubernetes implement the same `ContainerManager` interface)."""

from clipper.managers.container_manager import ContainerManager
from clipper.managers.local import LocalContainerManager

__all__ = ["ContainerManager", "LocalContainerManager"]
