"""Clipper's defaults (ports, sizes, timeouts, the input-type table), read from ``defaults.json``.

The same file becomes the engine's generated C++ header at build time, so Python and C++ cannot
drift apart. Importing this module loads nothing native: the container SDK reads it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_SOURCE = Path(__file__).with_name("defaults.json")


def _load() -> dict[str, Any]:
    try:
        return json.loads(_SOURCE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RuntimeError(
            f"cannot read Clipper's defaults from {_SOURCE}: {error}; reinstall the clipper-serving "
            "package"
        ) from error


_DEFAULTS = _load()
_NETWORK: dict[str, Any] = _DEFAULTS["network"]
_ENGINE: dict[str, Any] = _DEFAULTS["engine"]
_REPLICA: dict[str, Any] = _DEFAULTS["replica"]
_APPLICATION: dict[str, Any] = _DEFAULTS["application"]

BIND_ADDRESS: str = _NETWORK["bind_address"]
QUERY_PORT: int = _NETWORK["query_port"]
MANAGEMENT_PORT: int = _NETWORK["management_port"]
RPC_PORT: int = _NETWORK["rpc_port"]
METRICS_PORT: int = _NETWORK["metrics_port"]

IO_THREADS: int = _ENGINE["io_threads"]
MAX_BODY_BYTES: int = _ENGINE["max_body_bytes"]
# The query port's limits (0 turns a timeout off).
MAX_HEADER_BYTES: int = _ENGINE["max_header_bytes"]
MAX_HEADER_COUNT: int = _ENGINE["max_header_count"]
HEADER_TIMEOUT_MILLIS: int = _ENGINE["header_timeout_millis"]
BODY_TIMEOUT_MILLIS: int = _ENGINE["body_timeout_millis"]
IDLE_TIMEOUT_MILLIS: int = _ENGINE["idle_timeout_millis"]
MAX_CONNECTIONS_PER_IO_THREAD: int = _ENGINE["max_connections_per_io_thread"]
MAX_CONNECTIONS_PER_CLIENT_ADDRESS: int = _ENGINE["max_connections_per_client_address"]
CACHE_SIZE_BYTES: int = _ENGINE["cache_size_bytes"]
MAX_BATCH_SIZE: int = _ENGINE["max_batch_size"]
REPLICA_PIPELINE_DEPTH: int = _ENGINE["replica_pipeline_depth"]
REPLICA_PREFETCH_FULL_BATCHES: bool = _ENGINE["replica_prefetch_full_batches"]
REPLICA_TRANSPORT: str = _ENGINE["replica_transport"]
SHM_REQUEST_RING_BYTES: int = _ENGINE["shm_request_ring_bytes"]
SHM_RESPONSE_SPIN_MICROS: int = _ENGINE["shm_response_spin_micros"]
SHM_RESPONSE_SPIN_COST_MICROS: int = _ENGINE["shm_response_spin_cost_micros"]
SHM_RESPONSE_RING_BYTES: int = _ENGINE["shm_response_ring_bytes"]
MAX_QUEUED_TASKS_PER_MODEL: int = _ENGINE["max_queued_tasks_per_model"]
MAX_QUEUED_BYTES_PER_MODEL: int = _ENGINE["max_queued_bytes_per_model"]
MAX_PENDING_QUERIES_PER_IO_THREAD: int = _ENGINE["max_pending_queries_per_io_thread"]
HEARTBEAT_TIMEOUT_MILLIS: int = _ENGINE["heartbeat_timeout_millis"]
BATCH_LATENCY_SLO_FRACTION: float = _ENGINE["batch_latency_slo_fraction"]
AIMD_ADDITIVE_STEP: int = _ENGINE["aimd_additive_step"]
AIMD_BACKOFF_FACTOR: float = _ENGINE["aimd_backoff_factor"]

HEARTBEAT_INTERVAL_MILLIS: int = _REPLICA["heartbeat_interval_millis"]

# How an application answers a query refused at arrival under overload: "reject" (429/503 with
# Retry-After) or "default" (its default output).
APP_OVERLOAD: str = _APPLICATION["overload"]
OVERLOAD_ANSWERS: tuple[str, ...] = ("reject", "default")

# Canonical input type names in wire-code order ("bytes" is 0), and every accepted spelling.
INPUT_TYPE_NAMES: tuple[str, ...] = tuple(entry["name"] for entry in _DEFAULTS["input_types"])
INPUT_TYPE_ALIASES: dict[str, str] = {
    alias: entry["name"] for entry in _DEFAULTS["input_types"] for alias in entry["aliases"]
}
INPUT_TYPE_ELEMENT_BYTES: dict[str, int] = {
    entry["name"]: entry["element_bytes"] for entry in _DEFAULTS["input_types"]
}

# The frontend's RPC address as a replica on this machine dials it.
FRONTEND_RPC_ADDRESS = f"tcp://{BIND_ADDRESS}:{RPC_PORT}"
