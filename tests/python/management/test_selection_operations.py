"""The selection layer's management operations: policies are validated against the app and stored as
configuration, the engine's snapshot carries each app's plan, and links follow the app's policy."""

import pytest

from clipper.exceptions import ConfigurationError, SelectionPolicyError, UnknownObjectError
from clipper.management import ManagementService
from clipper.state import EmbeddedStateStore


def app_with_models(service, models=("a", "b"), policy=None, **params):
    service.add_app(
        {"name": "app", "input_type": "doubles", "default_output": "-1", "latency_slo_micros": 1000}
    )
    for name in models:
        service.add_model({"model_name": name, "model_version": "1", "input_type": "doubles"})
    if policy is not None:
        set_policy(service, policy, **params)
    for name in models:
        service.add_model_links({"app_name": "app", "model_names": [name]})


def set_policy(service, policy, **params):
    return service.operations["set_selection_policy"](
        {"app_name": "app", "policy": policy, "params": params}
    )


def app_entry(engine):
    return engine.config["apps"][0]


def test_single_is_the_default_and_the_snapshot_leaves_the_field_out(service, engine):
    app_with_models(service, models=("a",))
    assert service.operations["get_selection_policy"]({"app_name": "app"}) == {
        "policy": "single", "params": {}
    }  # fmt: skip
    assert "selection" not in app_entry(engine)


def test_a_second_link_under_single_says_to_choose_a_multi_model_policy(service):
    with pytest.raises(
        SelectionPolicyError, match=r"multi-model policy first.*set_selection_policy"
    ):
        app_with_models(service)


def test_multi_model_policies_link_several_models_and_publish_their_plan(service, engine):
    app_with_models(service, models=("a", "b", "c"), policy="exp4", confidence_threshold=0.5)
    assert app_entry(engine)["linked_models"] == ["a", "b", "c"]
    selection = app_entry(engine)["selection"]
    assert selection["mode"] == "ensemble"
    assert selection["confidence_threshold"] == 0.5
    assert sum(selection["weights"].values()) == pytest.approx(1.0, rel=1e-12)
    assert service.operations["get_selection_policy"]({"app_name": "app"}) == {
        "policy": "exp4", "params": {"confidence_threshold": 0.5}
    }  # fmt: skip
    # Several names in one call link together.
    service.add_model({"model_name": "d", "model_version": "1", "input_type": "doubles"})
    service.add_model({"model_name": "e", "model_version": "1", "input_type": "doubles"})
    service.add_model_links({"app_name": "app", "model_names": ["d", "e"]})
    assert list(app_entry(engine)["selection"]["weights"]) == ["a", "b", "c", "d", "e"]


def test_cascade_and_ab_plans_carry_their_order_and_split(service, engine):
    app_with_models(service, policy="cascade")
    set_policy(service, "cascade", order=["b", "a"], confidence_threshold=0.7)
    assert app_entry(engine)["selection"] == {
        "mode": "cascade", "weights": {"a": 0.0, "b": 1.0}, "confidence_threshold": 0.7,
        "order": ["b", "a"],
    }  # fmt: skip
    set_policy(service, "ab", weights={"a": 9, "b": 1})
    assert app_entry(engine)["selection"] == {"mode": "sample", "weights": {"a": 0.9, "b": 0.1}}


def test_unknown_policies_and_bad_parameters_are_refused_naming_the_choices(service, engine):
    app_with_models(service, models=("a",))
    with pytest.raises(SelectionPolicyError, match="exp3, exp4"):
        set_policy(service, "bandit")
    with pytest.raises(SelectionPolicyError, match="confidence_threshold=0.0"):
        set_policy(service, "exp4", threshold=1)
    with pytest.raises(SelectionPolicyError, match="does not have"):
        set_policy(service, "ab", weights={"a": 1, "ghost": 1})
    with pytest.raises(ConfigurationError, match="'params' must be an object"):
        service.operations["set_selection_policy"](
            {"app_name": "app", "policy": "exp3", "params": [1]}
        )
    with pytest.raises(UnknownObjectError):
        service.operations["set_selection_policy"]({"app_name": "nope", "policy": "exp3"})
    assert "selection" not in app_entry(engine)  # nothing refused reached the engine


def test_going_back_to_single_needs_one_linked_model(service):
    app_with_models(service, policy="exp3")
    with pytest.raises(SelectionPolicyError, match="links 2 models"):
        set_policy(service, "single")


def test_the_policy_survives_a_restart(tmp_path, engine):
    with EmbeddedStateStore(tmp_path) as store:
        app_with_models(ManagementService(store, engine), policy="exp3", gamma=0.2)
    with EmbeddedStateStore(tmp_path) as store:
        restarted = ManagementService(store, engine)
        restarted.restore()
        assert restarted.operations["get_selection_policy"]({"app_name": "app"}) == {
            "policy": "exp3", "params": {"gamma": 0.2}
        }  # fmt: skip
        assert app_entry(engine)["selection"]["mode"] == "sample"


def test_setting_a_policy_or_deleting_the_app_forgets_what_users_learned(service):
    app_with_models(service, policy="exp3")
    worker = service.selection_worker
    worker.apply_feedback("app", 4, {"a": 1, "b": 0}, 1)
    assert service.operations["get_selection_state"]({"app_name": "app", "uid": 4})["feedback"] == 1
    set_policy(service, "exp4")
    assert service.operations["get_selection_state"]({"app_name": "app", "uid": 4})["feedback"] == 0
    worker.apply_feedback("app", 4, {"a": 1, "b": 0}, 1)
    service.delete_app({"name": "app"})
    assert list(worker.store.users("app")) == []


def test_reset_one_user_or_all(service):
    app_with_models(service, policy="exp3")
    for uid in (1, 2):
        service.selection_worker.apply_feedback("app", uid, {"a": 1, "b": 0}, 1)
    reset = service.operations["reset_selection_state"]
    assert "user 1" in reset({"app_name": "app", "uid": 1})["message"]
    assert sorted(uid for uid, _ in service.selection_worker.store.users("app")) == [2]
    assert "every user" in reset({"app_name": "app"})["message"]
    assert list(service.selection_worker.store.users("app")) == []
    with pytest.raises(UnknownObjectError):
        reset({"app_name": "ghost"})
