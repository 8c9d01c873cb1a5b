"""The policy registry: built-in names, registering a user policy, importing one by
"module:Class", and errors that name the valid choices."""

import sys
import textwrap

import pytest

from clipper.exceptions import ClipperException, SelectionPolicyError
from clipper.selection import SelectionPolicy, get_policy, policy_names, register_policy


def test_the_contract_policies_are_built_in():
    assert {"single", "exp3", "exp4", "ab", "cascade", "epsilon_greedy", "ucb1"} <= set(
        policy_names()
    )


def test_an_unknown_name_is_a_clipper_exception_listing_the_choices():
    with pytest.raises(ClipperException) as raised:
        get_policy("exp5")
    assert "exp3" in str(raised.value) and "module:ClassName" in str(raised.value)


def test_unknown_parameters_are_refused_with_the_valid_ones():
    with pytest.raises(SelectionPolicyError) as raised:
        get_policy("exp4")().init_state(["a"], threshold=0.5)
    assert "confidence_threshold=0.0" in str(raised.value)


def test_a_user_policy_registers_and_resolves():
    class EveryOther(SelectionPolicy):
        name = "test_every_other"
        native_mode = "sample"

        def select(self, state, models):
            return [models[state["feedback"] % len(models)]]

    assert register_policy(EveryOther) is EveryOther
    assert get_policy("test_every_other") is EveryOther
    assert "test_every_other" in policy_names()


def test_a_name_held_by_another_class_is_refused():
    class Impostor(SelectionPolicy):
        name = "exp3"
        native_mode = "sample"

        def select(self, state, models):
            return []

    with pytest.raises(SelectionPolicyError, match="taken"):
        register_policy(Impostor)


def test_a_policy_must_name_a_native_mode():
    class Unrunnable(SelectionPolicy):
        name = "test_unrunnable"
        native_mode = "python"

        def select(self, state, models):
            return []

    with pytest.raises(SelectionPolicyError, match="native_mode"):
        register_policy(Unrunnable)


def test_module_colon_class_imports_and_registers(tmp_path, monkeypatch):
    (tmp_path / "my_selection_policy.py").write_text(
        textwrap.dedent("""
        from clipper.selection import SelectionPolicy

        class FirstAlways(SelectionPolicy):
            name = "test_first_always"
            native_mode = "single"

            def select(self, state, models):
                return list(models[:1])
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cls = get_policy("my_selection_policy:FirstAlways")
        assert cls.name == "test_first_always"
        assert get_policy("test_first_always") is cls
    finally:
        sys.modules.pop("my_selection_policy", None)


def test_an_import_that_fails_says_what_to_do():
    with pytest.raises(SelectionPolicyError, match="PYTHONPATH"):
        get_policy("no_such_module_here:Policy")
    with pytest.raises(SelectionPolicyError, match="no SelectionPolicy subclass"):
        get_policy("json:JSONDecoder")


def test_the_example_policy_learns_and_refuses_bad_parameters_as_a_selection_error(monkeypatch):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[3] / "examples"
    monkeypatch.syspath_prepend(str(examples))
    cls = get_policy("custom_policy:AccuracyPowerPolicy")
    policy = cls(seed=1)
    state = policy.init_state(["good", "bad"])
    for _ in range(20):
        state = policy.observe(state, {"good": 1, "bad": 0}, 1)
    assert policy.engine_plan(state)["weights"]["good"] >= 0.9
    with pytest.raises(SelectionPolicyError, match="sharpness must be positive"):
        policy.init_state(["good"], sharpness=-1)
