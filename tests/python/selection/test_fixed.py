"""single, ab and cascade: select, combine, observe and engine_plan; their selection never learns."""

import collections

import pytest

from clipper.exceptions import SelectionPolicyError
from clipper.selection import ModelOutput, make_policy


def test_single_selects_the_one_linked_model_and_answers_its_output():
    policy = make_policy("single")
    state = policy.init_state(["m"])
    assert policy.select(state, ["m"]) == ["m"]
    assert policy.combine(state, {"m": "7"}) == ("7", 1.0)
    assert policy.combine(state, {}) == (None, 0.0)
    assert policy.engine_plan(state) == {"mode": "single", "weights": {"m": 1.0}}


def test_single_counts_feedback_without_changing_its_selection():
    policy = make_policy("single")
    state = policy.init_state(["m"])
    for _ in range(5):
        state = policy.observe(state, {"m": "0"}, "1")
    assert state["feedback"] == 5
    assert policy.describe(state)["models"]["m"] == {
        "weight": 1.0, "observations": 5, "mean_loss": 1.0
    }  # fmt: skip


def test_ab_splits_by_the_given_shares_and_never_learns():
    policy = make_policy("ab", seed=3)
    state = policy.init_state(["a", "b"], weights={"a": 3, "b": 1})
    assert policy.engine_plan(state) == {"mode": "sample", "weights": {"a": 0.75, "b": 0.25}}
    for _ in range(50):
        state = policy.observe(state, {"a": "0", "b": "1"}, "1")
    assert policy.weights(state) == {"a": 0.75, "b": 0.25}
    counts = collections.Counter(policy.select(state, ["a", "b"])[0] for _ in range(8000))
    assert counts["a"] / 8000 == pytest.approx(0.75, abs=0.02)


def test_ab_gives_nothing_to_a_linked_model_it_does_not_name():
    policy = make_policy("ab")
    state = policy.init_state(["a", "b", "c"], weights={"a": 1, "b": 1})
    assert policy.weights(state) == {"a": 0.5, "b": 0.5, "c": 0.0}


@pytest.mark.parametrize(
    "params", [{}, {"weights": {}}, {"weights": {"a": -1}}, {"weights": {"a": 0}}, {"weights": [1]}]
)
def test_ab_refuses_missing_or_bad_shares(params):
    with pytest.raises(SelectionPolicyError, match="weights"):
        make_policy("ab").init_state(["a"], **params)


def test_ab_refuses_shares_for_models_the_cluster_does_not_have():
    with pytest.raises(SelectionPolicyError, match="does not have"):
        make_policy("ab").check_links({"weights": {"a": 1, "zz": 1}}, ["a"])


def test_cascade_tries_models_in_order_and_escalates_only_when_unsure():
    policy = make_policy("cascade")
    state = policy.init_state(["slow", "fast"], order=["fast"], confidence_threshold=0.7)
    assert policy.select(state, ["slow", "fast"]) == ["fast", "slow"]
    sure = {"fast": ModelOutput("1", 0.9), "slow": ModelOutput("2", 0.99)}
    assert policy.combine(state, sure) == ("1", 0.9)
    unsure = {"fast": ModelOutput("1", 0.5), "slow": ModelOutput("2", 0.99)}
    assert policy.combine(state, unsure) == ("2", 0.99)
    nobody_sure = {"fast": ModelOutput("1", 0.5), "slow": ModelOutput("2", 0.6)}
    assert policy.combine(state, nobody_sure) == ("2", 0.6)
    assert policy.combine(state, {"slow": {"output": "2", "confidence": None}}) == ("2", 1.0)
    assert policy.engine_plan(state) == {
        "mode": "cascade", "weights": {"slow": 0.0, "fast": 1.0},
        "confidence_threshold": 0.7, "order": ["fast", "slow"],
    }  # fmt: skip


def test_cascade_refuses_orders_naming_unknown_or_repeated_models():
    with pytest.raises(SelectionPolicyError, match="does not have"):
        make_policy("cascade").check_links({"order": ["x"]}, ["a"])
    with pytest.raises(SelectionPolicyError, match="distinct"):
        make_policy("cascade").init_state(["a"], order=["a", "a"])
    with pytest.raises(SelectionPolicyError, match="between 0 and 1"):
        make_policy("cascade").init_state(["a"], confidence_threshold=2)
