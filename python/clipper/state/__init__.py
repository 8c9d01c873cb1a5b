"""Where a cluster's configuration lives: the data model and the state stores that persist it.

`open_state_store` picks the implementation from the cluster's settings; the management service is the
only code that writes through it.
"""

from __future__ import annotations

import os

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

__all__ = [
    "INPUT_TYPES",
    "Application",
    "ClusterState",
    "EmbeddedStateStore",
    "Model",
    "ModelVersion",
    "StateStore",
    "canonical_input_type",
    "open_state_store",
]


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
