"""The learning policies: `exp3` and `exp4` (multiplicative weights), `epsilon_greedy` and `ucb1`.

Owns their update rules and parameters; the shared state layout and the combination rule live in
`clipper.selection.policy`. Pure functions of the state; the feedback worker thread runs `observe`.

Exp3/Exp4 rule (exponential weights with fixed share): after each round, for every model whose output
was observed, w_i <- w_i * exp(-eta * loss_i), where loss_i is divided by the model's selection
probability when only some models were observed (Exp3's importance weighting under bandit feedback);
then the weights are normalised and mixed with the uniform vector, w <- (1 - share) * w + share / K, so
no weight falls below share / K and a model that recovers wins its weight back within a few hundred
rounds (the paper's degradation experiment). Exp3 draws with probability (1 - gamma) * w_i + gamma / K.

Exp3's defaults assume full-information feedback, which is what `/update` gives: the engine evaluates
every linked model on the feedback's input, whatever model served the query, so every weight learns on
every round and uniform exploration (`gamma`) would only serve worse models. Its default is therefore
0, and its learning rate is higher than Exp4's (0.3 against 0.1): on the digits study
(bench/selection_digits.py) the served accuracy while the best model is degraded, replayed offline
through this policy over six data splits, rose from 0.9-1.6 points below the best remaining model
(gamma 0.02, eta 0.1) to about 0.3 below. `gamma` stays for bandit feedback (a user policy or an
offline replay that observes only the served model), where Exp3 needs it to keep estimating the
models it rarely draws.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from clipper.exceptions import SelectionPolicyError
from clipper.selection.policy import SelectionPolicy, State, compact, draw, normalized

# Valid ranges of the parameters the policies here share: (low, low inclusive, high, high inclusive).
_RANGES = {
    "eta": (0.0, False, 10.0, True),
    "gamma": (0.0, True, 1.0, False),
    "share": (0.0, True, 1.0, False),
    "confidence_threshold": (0.0, True, 1.0, True),
    "epsilon": (0.0, True, 1.0, True),
    "exploration": (0.0, True, math.inf, False),
}


def _check_range(policy: str, key: str, value: float) -> float:
    low, low_inclusive, high, high_inclusive = _RANGES[key]
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        interval = (
            f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        )
        raise SelectionPolicyError(
            f"selection policy '{policy}': {key}={value!r} is out of range; use a value in {interval}"
        )
    return value


class _NumericParameters(SelectionPolicy, abc.ABC):
    """Checks every parameter against its range in `_RANGES`."""

    @classmethod
    def check_param(cls, key: str, value: Any) -> Any:
        return _check_range(cls.name, key, super().check_param(key, value))


def _multiplicative_update(
    state: State, losses: Mapping[str, float], eta: float, share: float, probabilities: list[float]
) -> None:
    names = state["models"]
    count = len(names)
    full_information = len(losses) == count
    weights = list(state["weights"])
    for name, model_loss in losses.items():
        index = names.index(name)
        estimate = model_loss if full_information else model_loss / max(probabilities[index], 1e-9)
        weights[index] *= math.exp(-eta * estimate)
    total = sum(weights)
    if total <= 0 or not math.isfinite(total):
        weights, total = [1.0] * count, float(count)
    state["weights"] = [compact((1 - share) * w / total + share / count) for w in weights]


class Exp3Policy(_NumericParameters):
    """One model per query, drawn by learned weights (native mode "sample").

    Parameters: `eta` (learning rate, 0.3: two models, one always wrong, reach 90% within 8
    rounds), `gamma` (share of draws spread uniformly for exploration; 0 because feedback is full
    information, see the module's docstring), `share` (fixed share that keeps every weight
    recoverable)."""

    name = "exp3"
    native_mode = "sample"
    defaults: ClassVar[dict[str, Any]] = {"eta": 0.3, "gamma": 0.0, "share": 0.001}

    def weights(self, state: State) -> dict[str, float]:
        names = state["models"]
        if not names:
            return {}
        gamma = self.param(state, "gamma")
        mixed = {
            name: (1 - gamma) * w + gamma / len(names) for name, w in zip(names, state["weights"])
        }
        return normalized(mixed)

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        weights = self.weights(self.align(state, models))
        return [draw(weights, self.random)] if weights else []

    def learn(self, state: State, losses: Mapping[str, float]) -> None:
        probabilities = list(self.weights(state).values())
        _multiplicative_update(
            state, losses, self.param(state, "eta"), self.param(state, "share"), probabilities
        )


class Exp4Policy(_NumericParameters):
    """Every linked model per query, outputs combined by learned weights (native mode "ensemble"):
    weighted vote for labels, weighted mean for numbers, confidence = the weight share behind the
    answer; below `confidence_threshold` the app answers its default output."""

    name = "exp4"
    native_mode = "ensemble"
    defaults: ClassVar[dict[str, Any]] = {
        "eta": 0.1,
        "share": 0.001,
        "confidence_threshold": 0.0,
    }

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        return list(models)

    def learn(self, state: State, losses: Mapping[str, float]) -> None:
        # Every model is asked, so every observed loss is its own estimate (no importance weighting).
        probabilities = [1.0] * len(state["models"])
        _multiplicative_update(
            state, losses, self.param(state, "eta"), self.param(state, "share"), probabilities
        )


def _mean_losses(state: State, untried: float) -> list[float]:
    return [
        total / seen if seen else untried
        for total, seen in zip(state["losses"], state["observations"])
    ]


def _spread_over_best(scores: list[float], base: float) -> list[float]:
    """`base` for every model, plus the rest split among the lowest scores."""
    best = min(scores)
    winners = [index for index, score in enumerate(scores) if score == best]
    rest = 1.0 - base * len(scores)
    return [
        compact(base + (rest / len(winners) if i in winners else 0.0)) for i in range(len(scores))
    ]


class EpsilonGreedyPolicy(_NumericParameters):
    """One model per query: the lowest mean loss so far with probability 1 - epsilon, a uniform draw
    otherwise (native mode "sample"; untried models count as perfect, so each is tried)."""

    name = "epsilon_greedy"
    native_mode = "sample"
    defaults: ClassVar[dict[str, Any]] = {"epsilon": 0.1}

    def refresh_weights(self, state: State) -> None:
        if state["models"]:
            epsilon = self.param(state, "epsilon")
            scores = _mean_losses(state, untried=0.0)
            state["weights"] = _spread_over_best(scores, epsilon / len(scores))

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        weights = self.weights(self.align(state, models))
        return [draw(weights, self.random)] if weights else []


class Ucb1Policy(_NumericParameters):
    """One model per query: the lowest optimistic loss, mean loss - exploration * sqrt(ln N / n_i)
    (N rounds of feedback, n_i of them observed for model i; untried models first). Deterministic
    between feedback rounds, so its plan is a one-hot weight vector (native mode "sample")."""

    name = "ucb1"
    native_mode = "sample"
    defaults: ClassVar[dict[str, Any]] = {"exploration": math.sqrt(2.0)}

    def refresh_weights(self, state: State) -> None:
        if not state["models"]:
            return
        rounds = max(state["feedback"], 1)
        exploration = self.param(state, "exploration")
        scores = [
            total / seen - exploration * math.sqrt(math.log(rounds) / seen) if seen else -math.inf
            for total, seen in zip(state["losses"], state["observations"])
        ]
        state["weights"] = _spread_over_best(scores, 0.0)

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        weights = self.weights(self.align(state, models))
        return [draw(weights, self.random)] if weights else []
