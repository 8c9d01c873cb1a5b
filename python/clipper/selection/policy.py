"""The selection-policy interface: the paper's four functions, plus the plan the native engine runs.

Owns `SelectionPolicy` (the base class every built-in and user-written policy derives from), the shape of
a policy's state (a small JSON-serialisable dict per application and user) and the loss and combination
rules they share. Pure functions of their arguments; called from the frontend's feedback worker thread
and from the management service's request threads, never on the query path.
"""

from __future__ import annotations

import abc
import copy
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from clipper.exceptions import SelectionPolicyError

# The only modes the engine implements; a policy names one and publishes weights for it.
NATIVE_MODES = ("single", "sample", "ensemble", "cascade")

State = dict[str, Any]


class ModelOutput(NamedTuple):
    """One model's answer to one input: the output, and the confidence the model reported (0..1, None
    when it reported none)."""

    output: Any
    confidence: float | None = None


def as_model_output(value: Any) -> ModelOutput:
    """A `ModelOutput` from what callers pass: a ModelOutput, the engine's feedback record form
    `{"output": ..., "confidence": ...}`, or a bare output."""
    if isinstance(value, ModelOutput):
        return value
    if isinstance(value, Mapping) and "output" in value and set(value) <= {"output", "confidence"}:
        confidence = value.get("confidence")
        return ModelOutput(value["output"], None if confidence is None else float(confidence))
    return ModelOutput(value, None)


def as_number(value: Any) -> float | None:
    """`value` as a finite number (numbers and numeric strings such as "3" or "3.0"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def outputs_equal(first: Any, second: Any) -> bool:
    """Numbers compare as numbers ("3" == 3.0); anything else compares as text."""
    first_number, second_number = as_number(first), as_number(second)
    if first_number is not None and second_number is not None:
        return first_number == second_number
    return str(first) == str(second)


def loss(output: Any, label: Any) -> float:
    """The contract's loss: 0 when the model's output equals the label, else 1."""
    return 0.0 if outputs_equal(output, label) else 1.0


def combine_weighted(outputs: Mapping[str, Any], weights: Mapping[str, float]) -> tuple[Any, float]:
    """The ensemble rule the engine implements natively (cpp/selection/ensemble_combiner.h): when every
    answer is a number and one is not a whole number, the weighted mean (confidence: the answering
    models' weight share); otherwise a weighted vote where equal outputs pool their weight (confidence:
    the winner's weight share; ties go to the model listed first). Shares are out of every model in
    `weights`, so models that did not answer lower the confidence. (None, 0.0) when none answered."""
    total = sum(weights.values())
    answered = [
        (name, as_model_output(outputs[name]).output) for name in weights if name in outputs
    ]
    if not answered or total <= 0:
        return None, 0.0
    numbers = [as_number(output) for _, output in answered]
    if all(n is not None for n in numbers) and any(n != int(n) for n in numbers if n is not None):
        answered_weight = sum(weights[name] for name, _ in answered)
        if answered_weight <= 0:
            return None, 0.0
        mean = sum(weights[name] * n for (name, _), n in zip(answered, numbers) if n is not None)
        return mean / answered_weight, answered_weight / total
    groups: list[tuple[Any, float]] = []  # (representative output, pooled weight), first seen first
    for name, output in answered:
        for index, (representative, pooled) in enumerate(groups):
            if outputs_equal(representative, output):
                groups[index] = (representative, pooled + weights[name])
                break
        else:
            groups.append((output, weights[name]))
    best_output, best_weight = groups[0]
    for output, pooled in groups[1:]:
        if pooled > best_weight:
            best_output, best_weight = output, pooled
    return best_output, best_weight / total


def draw(weights: Mapping[str, float], rng: random.Random) -> str:
    """One name drawn with probability proportional to its weight (the engine's weighted draw)."""
    names = list(weights)
    return rng.choices(names, weights=[weights[name] for name in names], k=1)[0]


def normalized(weights: dict[str, float]) -> dict[str, float]:
    """`weights` scaled to sum to 1 (stored weights are rounded, so their sum may be 0.999999)."""
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()} if total > 0 else weights


def compact(number: float) -> float:
    """Six significant digits: states stay small in the store, and learning never needs more."""
    return float(f"{number:.6g}")


class SelectionPolicy(abc.ABC):
    """A selection policy: which linked models answer a query, how their outputs combine, and how
    feedback changes that, per application and user.

    Subclasses set `name` (the registry name), `native_mode` (one of NATIVE_MODES: how the engine runs
    the policy per query without Python) and `defaults` (every parameter and its default), and implement
    `select`. The base class keeps the state every built-in shares:

        {"models": [names, in link order], "weights": [probabilities, same order],
         "losses": [summed loss per model], "observations": [feedback rounds seen per model],
         "feedback": rounds observed, "params": {only the parameters set away from their default}}

    and implements `init_state`, `combine` (weighted vote/mean), `observe` (loss bookkeeping, then the
    `learn` and `refresh_weights` hooks) and `engine_plan`. A state is plain JSON: lists and numbers, no
    objects, so it crosses the store and the wire unchanged.

    The engine samples and combines natively from the plan's weights; `select` and `combine` here are the
    reference semantics (what the engine does, used by tests, simulations and the feedback worker).
    """

    name: ClassVar[str]
    native_mode: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, seed: int | None = None) -> None:
        """`seed` makes `select`'s draws reproducible (tests, benchmarks)."""
        self.random = random.Random(seed)

    # ---- parameters ---------------------------------------------------------------------------------

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `params`; returns those that differ from their default (what a state stores).
        Raises SelectionPolicyError naming the valid parameters."""
        checked: dict[str, Any] = {}
        for key, value in params.items():
            if key not in cls.defaults:
                valid = ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()) or "none"
                raise SelectionPolicyError(
                    f"selection policy '{cls.name}' has no parameter '{key}'; its parameters "
                    f"(with defaults) are: {valid}"
                )
            try:
                value = cls.check_param(key, value)
            except (ValueError, TypeError) as error:  # how a user policy may refuse a value
                raise SelectionPolicyError(
                    f"selection policy '{cls.name}': {key}={value!r} is not valid: {error}"
                ) from error
            if value != cls.defaults[key]:
                checked[key] = value
        return checked

    @classmethod
    def check_param(cls, key: str, value: Any) -> Any:
        """Validate one parameter; returns it normalised. Numeric defaults take numbers of the same
        range kind by default; subclasses override for anything more specific."""
        default = cls.defaults[key]
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SelectionPolicyError(
                    f"selection policy '{cls.name}': {key} must be a number, got {value!r}"
                )
            return float(value)
        return value

    @classmethod
    def check_links(cls, params: Mapping[str, Any], models: Sequence[str]) -> None:
        """Refuse parameters that name models the cluster does not have (`models`: every model
        name); the management service calls this when a policy is set, so an app can be given its
        split or order before its models are linked. Raises SelectionPolicyError."""

    def param(self, state: State, key: str) -> Any:
        return state.get("params", {}).get(key, self.defaults[key])

    # ---- the paper's four functions ------------------------------------------------------------------

    def init_state(self, models: Sequence[str], **params: Any) -> State:
        """The state of a user with no feedback yet, over the linked `models`."""
        state: State = {
            "models": list(models),
            "weights": [],
            "losses": [0.0] * len(models),
            "observations": [0] * len(models),
            "feedback": 0,
            "params": self.check_params(params),
        }
        state["weights"] = self.initial_weights(state)
        self.refresh_weights(state)
        return state

    @abc.abstractmethod
    def select(self, state: State, models: Sequence[str]) -> list[str]:
        """The models to query for one input, in the order to query them (`models`: linked now)."""

    def combine(self, state: State, outputs: Mapping[str, Any]) -> tuple[Any, float]:
        """One answer and its confidence (0..1) from the models' outputs ({name: output or
        ModelOutput}); (None, 0.0) when no model answered."""
        return combine_weighted(outputs, self.weights(state))

    def observe(self, state: State, outputs: Mapping[str, Any], label: Any) -> State:
        """The new state after feedback `label` for an input the models in `outputs` answered.
        `outputs` holds every linked model's output when the engine evaluated them all (full
        information), or only the model that served the query (bandit feedback)."""
        new_state = copy.deepcopy(state)
        names = new_state["models"]
        losses: dict[str, float] = {}
        for name, value in outputs.items():
            if name in names:
                losses[name] = loss(as_model_output(value).output, label)
        for name, model_loss in losses.items():
            index = names.index(name)
            new_state["losses"][index] = compact(new_state["losses"][index] + model_loss)
            new_state["observations"][index] += 1
        new_state["feedback"] += 1
        if losses:
            self.learn(new_state, losses)
        self.refresh_weights(new_state)
        return new_state

    def online_loss(self, state: State, outputs: Mapping[str, Any], label: Any) -> float | None:
        """The loss of what this policy served (before learning from `label`) for an input the models
        in `outputs` answered: for a policy that draws one model per query ("sample"), the expected
        loss of the draw over the models that answered; otherwise the loss of `combine`'s answer.
        None when no model answered. The frontend exports it per app (`clipper_app_online_loss_total`)."""
        if self.native_mode == "sample":
            weights = self.weights(state)
            answered = {name: weights.get(name, 0.0) for name in outputs if name in weights}
            total = sum(answered.values())
            if not answered:
                return None
            if total <= 0:
                answered, total = {name: 1.0 for name in answered}, float(len(answered))
            return (
                sum(
                    share * loss(as_model_output(outputs[name]).output, label)
                    for name, share in answered.items()
                )
                / total
            )
        answer, _ = self.combine(state, outputs)
        return None if answer is None else loss(answer, label)

    # ---- hooks for subclasses -------------------------------------------------------------------------

    def initial_weights(self, state: State) -> list[float]:
        """Weights of a new user: uniform."""
        count = len(state["models"])
        return [compact(1.0 / count)] * count if count else []

    def learn(self, state: State, losses: Mapping[str, float]) -> None:
        """Change `state["weights"]` in place from this round's losses ({model: 0 or 1}); the base
        class learns nothing (fixed splits)."""

    def refresh_weights(self, state: State) -> None:
        """Recompute `state["weights"]` in place where they derive from statistics or parameters."""

    # ---- what the engine runs --------------------------------------------------------------------------

    def weights(self, state: State) -> dict[str, float]:
        """{model: probability} over the state's models (sums to 1; empty with no model)."""
        return normalized(dict(zip(state["models"], state["weights"])))

    def engine_plan(self, state: State) -> dict[str, Any]:
        """What the engine needs to run this policy natively for the state's user:
        {"mode": one of NATIVE_MODES, "weights": {model: weight}} plus, for "ensemble" and "cascade",
        "confidence_threshold", and for "cascade" the "order" in which models are tried."""
        plan: dict[str, Any] = {"mode": self.native_mode, "weights": self.weights(state)}
        if self.native_mode in ("ensemble", "cascade"):
            plan["confidence_threshold"] = float(self.param(state, "confidence_threshold"))
        return plan

    def align(self, state: State, models: Sequence[str]) -> State:
        """`state` over the currently linked `models`: models linked since keep their statistics, new
        ones start at the uniform weight, unlinked ones are dropped. Returns `state` itself when the
        models did not change."""
        models = list(models)
        if state["models"] == models:
            return state
        old = {name: index for index, name in enumerate(state["models"])}
        prior = 1.0 / len(models) if models else 0.0
        aligned: State = {
            **copy.deepcopy(state),
            "models": models,
            "weights": [state["weights"][old[m]] if m in old else prior for m in models],
            "losses": [state["losses"][old[m]] if m in old else 0.0 for m in models],
            "observations": [state["observations"][old[m]] if m in old else 0 for m in models],
        }
        total = sum(aligned["weights"])
        aligned["weights"] = [
            compact(w / total) if total > 0 else compact(prior) for w in aligned["weights"]
        ]
        self.refresh_weights(aligned)
        return aligned

    def describe(self, state: State) -> dict[str, Any]:
        """The operator's view (`get_selection_state`): per model its weight, observations and mean
        loss, and the number of feedback rounds."""
        weights = self.weights(state)
        models = {}
        for index, name in enumerate(state["models"]):
            observations = state["observations"][index]
            models[name] = {
                "weight": weights[name],
                "observations": observations,
                "mean_loss": state["losses"][index] / observations if observations else None,
            }
        return {"models": models, "feedback": state["feedback"]}
