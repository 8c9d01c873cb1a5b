"""Where a cluster's configuration lives: the data model and the state stores that persist it.

`open_state_store` picks the implementation from the cluster's settings (the embedded JSON file, or Redis
when an address is given); the management service is the only code that writes through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from clipper.state.cluster_state import (
    INPUT_TYPES,
    Application,
    ClusterState,
    Model,
    ModelVersion,
    canonical_input_type,
)
from clipper.state.embedded_store import EmbeddedStateStore
from clipper.state.redis_store import RedisStateStore, parse_redis_address
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
    "RedisStateStore",
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
    state_dir: str | os.PathLike[str],
    redis_address: str | None = None,
    cluster_name: str = "default-cluster",
) -> StateStore:
    """Open the cluster's store: Redis when `redis_address` ("host:port") is given (the cluster's
    keys are named after `cluster_name`), else the embedded store in `state_dir`."""
    if redis_address:
        host, port = parse_redis_address(redis_address)
        return RedisStateStore(host, port, cluster_name=cluster_name)
    return EmbeddedStateStore(state_dir)
