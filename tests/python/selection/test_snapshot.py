"""The `selection` field of an app in the engine's configuration snapshot."""

import logging

from clipper.management.engine_link import engine_config
from clipper.selection.snapshot import snapshot_selection
from clipper.state import Application, ClusterState, Model, ModelVersion


def test_the_default_policy_leaves_the_field_out():
    assert snapshot_selection("app", "single", {}, ["m"]) is None


def test_a_multi_model_policy_gives_the_plan_of_a_new_user():
    assert snapshot_selection("app", "exp3", {"gamma": 0.1}, ["a", "b"]) == {
        "mode": "sample", "weights": {"a": 0.5, "b": 0.5}
    }  # fmt: skip


def test_a_policy_this_frontend_cannot_load_is_logged_and_left_out(caplog):
    state = ClusterState(
        applications={
            "app": Application("app", "ints", "0", 1000, ["m", "gone"], "nowhere_module:Policy")
        },
        models={"m": Model("m", "1", {"1": ModelVersion("m", "1", "ints")})},
    )
    with caplog.at_level(logging.ERROR):
        entry = engine_config(state)["apps"][0]
    assert entry["linked_models"] == ["m"] and "selection" not in entry
    assert "event=selection_policy_unavailable app=app" in caplog.text
