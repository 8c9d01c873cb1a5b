"""The configuration snapshot sent to the engine (docs/interfaces.md §1)."""

import json

from clipper.management.engine_link import engine_config, engine_config_json
from clipper.state import Application, ClusterState, Model, ModelVersion


def test_exactly_one_current_version_per_model_and_links_only_to_existing_models():
    state = ClusterState(
        applications={
            "a": Application("a", "doubles", "-1", 1000, ["m"]),
            "b": Application("b", "doubles", "-1", 1000, ["gone"]),
        },
        models={
            "m": Model(
                "m",
                "2",
                {
                    "1": ModelVersion("m", "1", "doubles"),
                    "2": ModelVersion("m", "2", "doubles", 16),
                },
            )
        },
    )
    config = engine_config(state)
    assert [app["linked_models"] for app in config["apps"]] == [["m"], []]
    assert [(m["version"], m["current"], m["batch_size"]) for m in config["models"]] == [
        ("1", False, -1),
        ("2", True, 16),
    ]
    assert json.loads(engine_config_json(state)) == config


def test_an_empty_state_is_an_empty_configuration():
    assert engine_config(ClusterState()) == {"apps": [], "models": []}
