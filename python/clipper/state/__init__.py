"""Where a cluster's configuration lives: the data model and the state stores that persist it.

`open_state_store` picks the implementation from the cluster's settings; the management service is the
only code that writes through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from clipper.exceptions import StateStoreError
from clipper.state.cluster_state import (
    INPUT_TYPES,
    Application,
    ClusterState,
    Model,
    ModelVersion,
    canonical_input_type,
)
from clipper.state.embedded_store import EmbeddedStateStore
from clipper.state.store import StateStore

STATE_DIR_ENV = "CLIPPER_STATE_DIR"

__all__ = [
    "INPUT_TYPES",
    "STATE_DIR_ENV",
    "Application",
    "ClusterState",
    "EmbeddedStateStore",
    "Model",
    "ModelVersion",
    "StateStore",
    "canonical_input_type",
    "default_state_dir",
    "open_state_store",
]


def default_state_dir(cluster_name: str) -> Path:
    """`$CLIPPER_STATE_DIR/<cluster_name>` when the variable is set, else `~/.clipper/<cluster_name>`."""
    root = os.environ.get(STATE_DIR_ENV)
    return (Path(root) if root else Path.home() / ".clipper") / cluster_name


def open_state_store(
    state_dir: str | os.PathLike[str], redis_address: str | None = None
) -> StateStore:
    """Open the cluster's store: Redis when `redis_address` ("host:port") is given, else embedded."""
    if redis_address:
        raise StateStoreError(
            f"a Redis state store ({redis_address}) is not available in this build; leave redis_ip "
            "unset to keep the configuration in the embedded store under the state directory"
        )
    return EmbeddedStateStore(state_dir)
