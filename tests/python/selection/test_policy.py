"""The shared rules of clipper.selection.policy: loss, output equality, the weighted combination (the
same rule as the engine's ensemble combiner), state alignment when links change, and the operator view."""

import json

import pytest

from clipper.selection import ModelOutput, combine_weighted, loss, make_policy, outputs_equal
from clipper.selection.policy import as_model_output


@pytest.mark.parametrize(
    ("output", "label", "expected"),
    [("3", 3, 0.0), ("3.0", 3, 0.0), (3, "3", 0.0), ("3", 4, 1.0), ("cat", "cat", 0.0),
     ("cat", 1, 1.0), (True, 1, 1.0)],
)  # fmt: skip
def test_loss_is_zero_only_for_an_equal_output(output, label, expected):
    assert loss(output, label) == expected


def test_numbers_compare_as_numbers_and_text_as_text():
    assert outputs_equal("1e0", 1)
    assert not outputs_equal("01", "1.5")
    assert not outputs_equal("a", "A")


def test_feedback_records_and_bare_outputs_become_model_outputs():
    assert as_model_output({"output": "3", "confidence": 0.5}) == ModelOutput("3", 0.5)
    assert as_model_output("3") == ModelOutput("3", None)
    assert as_model_output({"label": 3}) == ModelOutput({"label": 3}, None)


def test_weighted_vote_pools_equal_labels_and_counts_missing_models_against_confidence():
    weights = {"a": 0.4, "b": 0.35, "c": 0.25}
    output, confidence = combine_weighted({"a": "1", "b": "2", "c": "2.0"}, weights)
    assert (output, confidence) == ("2", pytest.approx(0.6))
    output, confidence = combine_weighted({"a": "1"}, weights)
    assert (output, confidence) == ("1", pytest.approx(0.4))


def test_ties_go_to_the_model_listed_first():
    assert combine_weighted({"a": "x", "b": "y"}, {"a": 0.5, "b": 0.5}) == ("x", 0.5)


def test_numbers_with_a_fraction_are_averaged_by_weight():
    output, confidence = combine_weighted({"a": "1.5", "b": 2.5}, {"a": 0.75, "b": 0.25, "c": 0.0})
    assert output == pytest.approx(1.75)
    assert confidence == pytest.approx(1.0)
    output, confidence = combine_weighted({"a": 1.5}, {"a": 0.5, "b": 0.5})
    assert (output, confidence) == (1.5, 0.5)


def test_no_answer_combines_to_none():
    assert combine_weighted({}, {"a": 1.0}) == (None, 0.0)


def test_align_keeps_statistics_of_models_still_linked_and_starts_new_ones_uniform():
    policy = make_policy("exp4")
    state = policy.init_state(["a", "b"])
    for _ in range(20):
        state = policy.observe(state, {"a": 1, "b": 0}, 1)
    aligned = policy.align(state, ["a", "c"])
    assert aligned["models"] == ["a", "c"]
    assert aligned["observations"] == [20, 0]
    assert sum(aligned["weights"]) == pytest.approx(1.0)
    assert aligned["weights"][0] > aligned["weights"][1]
    assert policy.align(state, ["a", "b"]) is state


def test_observe_returns_a_new_state_and_leaves_the_old_one_unchanged():
    policy = make_policy("exp3")
    state = policy.init_state(["a", "b"])
    before = json.dumps(state)
    new_state = policy.observe(state, {"a": 1, "b": 0}, 0)
    assert json.dumps(state) == before
    assert new_state["feedback"] == 1
    assert new_state["losses"] == [1.0, 0.0]


def test_outputs_of_models_not_linked_are_ignored():
    policy = make_policy("exp4")
    state = policy.observe(policy.init_state(["a"]), {"zzz": 1}, 1)
    assert state["observations"] == [0]
    assert state["feedback"] == 1


def test_describe_is_the_contract_view_with_weights_summing_to_one():
    policy = make_policy("exp3")
    state = policy.observe(policy.init_state(["a", "b"]), {"a": 1, "b": 0}, 1)
    view = policy.describe(state)
    assert view["feedback"] == 1
    assert set(view["models"]) == {"a", "b"}
    assert sum(m["weight"] for m in view["models"].values()) == pytest.approx(1.0)
    assert view["models"]["b"]["mean_loss"] == 1.0


@pytest.mark.parametrize("name", ["single", "exp3", "exp4", "cascade", "epsilon_greedy", "ucb1"])
def test_every_state_is_plain_json_and_survives_a_round_trip(name):
    policy = make_policy(name, seed=1)
    state = policy.init_state(["a", "b"])
    for label in (1, 0, 1):
        state = policy.observe(state, {"a": 1, "b": 0}, label)
    assert json.loads(json.dumps(state)) == state


@pytest.mark.parametrize("name", ["exp3", "exp4", "epsilon_greedy", "ucb1"])
def test_published_weights_sum_to_one_although_stored_ones_are_rounded(name):
    policy = make_policy(name, seed=4)
    models = ["a", "b", "c"]
    state = policy.init_state(models)
    for round_number in range(37):
        state = policy.observe(state, {"a": round_number % 2, "b": 1, "c": round_number % 3}, 1)
    for weights in (policy.weights(state), policy.engine_plan(state)["weights"]):
        assert sum(weights.values()) == pytest.approx(1.0, rel=1e-12, abs=1e-12)
    view = policy.describe(state)["models"]
    assert sum(model["weight"] for model in view.values()) == pytest.approx(1.0, rel=1e-12)
