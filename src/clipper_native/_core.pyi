from typing import Any, TypedDict

class EngineError(RuntimeError): ...

class EngineOptions:
    bind_address: str
    query_port: int
    rpc_port: int
    # Replica authentication (ZeroMQ CURVE, Z85 keys): the server's secret key and the admitted
    # replicas' public keys; empty = none (accepted only on a loopback bind_address).
    rpc_curve_secret_key: str
    rpc_curve_client_keys: list[str]
    metrics_port: int
    io_threads: int
    dedicated_rpc_thread: bool
    max_body_bytes: int
    cache_size_bytes: int
    max_batch_size: int
    replica_pipeline_depth: int
    replica_prefetch_full_batches: bool
    replica_transport: str
    shm_request_ring_bytes: int
    shm_response_ring_bytes: int
    max_queued_tasks_per_model: int
    max_queued_bytes_per_model: int
    max_pending_queries_per_io_thread: int
    heartbeat_timeout_millis: int
    batch_latency_slo_fraction: float
    aimd_additive_step: int
    aimd_backoff_factor: float
    # The query port's limits (0 turns a timeout off); defaults in clipper_native/defaults.json.
    max_header_bytes: int
    max_header_count: int
    header_timeout_millis: int
    body_timeout_millis: int
    idle_timeout_millis: int
    max_connections_per_io_thread: int
    max_connections_per_client_address: int
    def __init__(self) -> None: ...
    def validate(self) -> None: ...

class ReplicaEntry(TypedDict):
    model_name: str
    model_version: str
    replica_id: int
    input_type: str
    inflight_batches: int
    transport: str  # "zmq" or "shm"

class CacheStatistics(TypedDict):
    hits: int
    misses: int
    coalesced: int
    evictions: int
    entries: int
    bytes: int

class Engine:
    def __init__(self, options: EngineOptions) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def wait(self) -> None: ...
    def apply_config(self, config_json: str) -> None: ...
    def replicas(self) -> list[ReplicaEntry]: ...
    def batching_state(self) -> str: ...
    def cache_statistics(self) -> CacheStatistics: ...
    def metrics_text(self) -> str: ...
    # Replica slots as a manager's supervision_report() lists them (model_name, model_version,
    # replica_id, restarts, last_exit_reason, state); replaces the exported snapshot.
    def set_replica_supervision(self, slots: list[dict[str, Any]]) -> None: ...
    # The model-selection layer (docs/interfaces.md §5).
    def set_selection_weights(self, app: str, uid: int, weights: dict[str, float]) -> None: ...
    def clear_selection_weights(self, app: str, uid: int | None = None) -> None: ...
    def next_feedback(self, timeout_ms: int) -> list[dict[str, Any]]: ...
    def finish_feedback(self, ticket: int, applied: bool, message: str = "") -> None: ...
    def record_feedback_losses(
        self, app: str, answer_loss: float | None, model_losses: dict[str, float]
    ) -> None: ...
    @property
    def query_port(self) -> int: ...
    @property
    def rpc_port(self) -> int: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def running(self) -> bool: ...
    @property
    def configured(self) -> bool: ...
