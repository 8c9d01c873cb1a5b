"""The one seam between the control plane and the native engine: configuration snapshots out,
replica listings in.

Owns the engine's configuration format (docs/interfaces.md §1) as a projection of `ClusterState`, and the
`EngineControl` protocol the management service needs (so it can be tested against a double).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from clipper.selection.snapshot import snapshot_selection
from clipper.state.cluster_state import ClusterState, ModelVersion


class EngineControl(Protocol):
    """What the management service calls on `clipper_native._core.Engine`."""

    def apply_config(self, config_json: str) -> None:
        """Replace the engine's whole configuration; raises ValueError when it is invalid."""

    def replicas(self) -> list[dict[str, Any]]:
        """Connected replicas: model_name, model_version, replica_id, input_type, inflight_batches."""

    # Optional (newer engines): `batching_state() -> str`, a JSON report of each model version's
    # batching; the service looks it up with getattr, so a double need not implement it.


def engine_config(state: ClusterState) -> dict[str, Any]:
    """The full configuration snapshot the engine serves from.

    A link to a model that has no version left (all stopped) is kept in the state, as Clipper does, so a
    redeployed model is served again; the engine does not see it until then and answers the app's
    default with "no model linked" meanwhile.
    """
    applications = []
    for app in state.applications.values():
        linked = [name for name in app.linked_models if name in state.models]
        entry: dict[str, Any] = {
            "name": app.name,
            "input_type": app.input_type,
            "default_output": app.default_output,
            "slo_micros": app.slo_micros,
            "linked_models": linked,
            "overload": app.overload,
        }
        selection = snapshot_selection(app.name, app.selection_policy, app.selection_params, linked)
        if selection is not None:  # absent: the default policy, one linked model
            entry["selection"] = selection
        applications.append(entry)
    models = [
        _model_entry(version, version.version == model.current_version)
        for model in state.models.values()
        for version in model.versions.values()
    ]
    return {"apps": applications, "models": models}


def _model_entry(version: ModelVersion, current: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": version.name,
        "version": version.version,
        "input_type": version.input_type,
        "batch_size": version.batch_size,
        "batch_wait_timeout_micros": version.batch_wait_timeout_micros,
        "current": current,
    }
    if version.max_batch_size is not None:  # absent = the engine's own cap
        entry["max_batch_size"] = version.max_batch_size
    return entry


def engine_config_json(state: ClusterState) -> str:
    return json.dumps(engine_config(state), separators=(",", ":"))
