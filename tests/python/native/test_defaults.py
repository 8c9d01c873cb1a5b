"""clipper_native.defaults: the one source of defaults is what the engine, its binding and the
standalone binary actually use, and reading it loads nothing native."""

import json
import subprocess
import sys

import pytest

from clipper_native import _core, defaults, frontend_binary


def test_the_binding_defaults_are_the_shared_defaults():
    options = _core.EngineOptions()
    assert options.bind_address == defaults.BIND_ADDRESS
    assert options.query_port == defaults.QUERY_PORT
    assert options.rpc_port == defaults.RPC_PORT
    assert options.metrics_port == defaults.METRICS_PORT
    assert options.io_threads == defaults.IO_THREADS
    assert options.max_body_bytes == defaults.MAX_BODY_BYTES
    assert options.cache_size_bytes == defaults.CACHE_SIZE_BYTES
    assert options.max_batch_size == defaults.MAX_BATCH_SIZE
    assert options.replica_pipeline_depth == defaults.REPLICA_PIPELINE_DEPTH
    assert options.max_queued_tasks_per_model == defaults.MAX_QUEUED_TASKS_PER_MODEL
    assert options.heartbeat_timeout_millis == defaults.HEARTBEAT_TIMEOUT_MILLIS
    assert options.batch_latency_slo_fraction == pytest.approx(defaults.BATCH_LATENCY_SLO_FRACTION)
    assert options.aimd_additive_step == defaults.AIMD_ADDITIVE_STEP
    assert options.shm_response_spin_micros == defaults.SHM_RESPONSE_SPIN_MICROS
    assert options.shm_response_spin_cost_micros == defaults.SHM_RESPONSE_SPIN_COST_MICROS
    assert options.replica_prefetch_full_batches is defaults.REPLICA_PREFETCH_FULL_BATCHES is True
    assert options.aimd_backoff_factor == pytest.approx(defaults.AIMD_BACKOFF_FACTOR)


def test_the_binary_help_shows_the_shared_defaults():
    result = subprocess.run([str(frontend_binary()), "--help"], capture_output=True, check=False, text=True, timeout=10)
    assert result.returncode == 0
    assert f"(default {defaults.QUERY_PORT})" in result.stdout
    assert f"(default {defaults.RPC_PORT})" in result.stdout
    assert f"(default {defaults.CACHE_SIZE_BYTES})" in result.stdout
    assert f"(default {defaults.MAX_BODY_BYTES})" in result.stdout


def test_every_input_type_alias_is_accepted_by_the_engine():
    engine = _core.Engine(_core.EngineOptions())
    for alias, name in defaults.INPUT_TYPE_ALIASES.items():
        app = {"name": "a", "input_type": alias, "default_output": "0", "slo_micros": 1000,
               "linked_models": []}
        engine.apply_config(json.dumps({"apps": [app], "models": []}))
        assert name in defaults.INPUT_TYPE_NAMES
    bad = {"name": "a", "input_type": "complex", "default_output": "0", "slo_micros": 1000,
           "linked_models": []}
    with pytest.raises(ValueError, match="complex"):
        engine.apply_config(json.dumps({"apps": [bad], "models": []}))


def test_reading_the_defaults_loads_no_native_module():
    code = (
        "import sys, clipper_native.defaults as d; "
        "assert d.RPC_PORT > 0; "
        "print(sorted(m for m in sys.modules if m.startswith('clipper_native')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "_core" not in result.stdout and "_wire" not in result.stdout


def test_the_container_sdk_uses_defaults_generated_from_the_same_source():
    # The SDK ships without clipper_native: its copy is generated from defaults.json at build time.
    from clipper.wire import container_defaults

    from clipper.container.codec import InputType, parse_input_type
    from clipper.container.server import DEFAULT_FRONTEND_ADDRESS, ContainerOptions

    assert container_defaults.BIND_ADDRESS == defaults.BIND_ADDRESS
    assert container_defaults.RPC_PORT == defaults.RPC_PORT
    assert container_defaults.HEARTBEAT_INTERVAL_MILLIS == defaults.HEARTBEAT_INTERVAL_MILLIS
    assert container_defaults.INPUT_TYPE_NAMES == defaults.INPUT_TYPE_NAMES
    assert container_defaults.INPUT_TYPE_ALIASES == defaults.INPUT_TYPE_ALIASES
    assert DEFAULT_FRONTEND_ADDRESS == defaults.FRONTEND_RPC_ADDRESS
    options = ContainerOptions(model_name="m", model_version="1")
    assert options.heartbeat_interval_s * 1000 == defaults.HEARTBEAT_INTERVAL_MILLIS
    assert tuple(member.wire_name for member in InputType) == defaults.INPUT_TYPE_NAMES
    for alias, name in defaults.INPUT_TYPE_ALIASES.items():
        assert parse_input_type(alias).wire_name == name
