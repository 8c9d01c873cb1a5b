"""The policies that do not learn: `single` (Clipper's default), `ab` (a fixed split) and `cascade`.

Owns their parameters and how their weights derive from them. Feedback still counts rounds and each
model's losses (the operator sees online loss), but never changes what is selected. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from clipper.exceptions import SelectionPolicyError
from clipper.selection.policy import (
    SelectionPolicy,
    State,
    as_model_output,
    compact,
    draw,
)


class SinglePolicy(SelectionPolicy):
    """Exactly one linked model answers every query (native mode "single"): Clipper's behaviour."""

    name = "single"
    native_mode = "single"

    def refresh_weights(self, state: State) -> None:
        state["weights"] = [1.0 if index == 0 else 0.0 for index in range(len(state["models"]))]

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        return list(models[:1])


class AbPolicy(SelectionPolicy):
    """A fixed split (native mode "sample"): parameter `weights={model: share}`; shares need not sum
    to 1 (they are normalised over the linked models); a linked model not named gets no traffic."""

    name = "ab"
    native_mode = "sample"
    defaults: ClassVar[dict[str, Any]] = {"weights": {}}

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if "weights" not in params:
            raise SelectionPolicyError(
                "selection policy 'ab' needs weights={model: share}, e.g. weights={'a': 0.9, 'b': 0.1}"
            )
        return super().check_params(params)

    @classmethod
    def check_param(cls, key: str, value: Any) -> Any:
        valid = (
            isinstance(value, Mapping)
            and value
            and all(
                isinstance(name, str)
                and not isinstance(share, bool)
                and isinstance(share, (int, float))
                and share >= 0
                for name, share in value.items()
            )
            and sum(value.values()) > 0
        )
        if not valid:
            raise SelectionPolicyError(
                f"selection policy 'ab': weights must map model names to shares >= 0 with a "
                f"positive sum, e.g. {{'a': 0.9, 'b': 0.1}}; got {value!r}"
            )
        return {name: float(share) for name, share in value.items()}

    @classmethod
    def check_links(cls, params: Mapping[str, Any], models: Sequence[str]) -> None:
        unknown = sorted(set(params.get("weights", {})) - set(models))
        if unknown:
            raise SelectionPolicyError(
                f"selection policy 'ab' gives weights to {', '.join(unknown)}, which the cluster "
                f"does not have (models: {', '.join(models) or 'none'}); deploy them first"
            )

    def refresh_weights(self, state: State) -> None:
        names = state["models"]
        shares = self.param(state, "weights")
        raw = [float(shares.get(name, 0.0)) for name in names]
        total = sum(raw)
        if total <= 0:  # none of the named models is linked any more: split evenly
            raw, total = [1.0] * len(names), float(len(names) or 1)
        state["weights"] = [compact(share / total) for share in raw]

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        weights = self.weights(self.align(state, models))
        return [draw(weights, self.random)] if weights else []


class CascadePolicy(SelectionPolicy):
    """Models in a given `order` (linked models not named follow in link order): the first answers,
    and the query escalates to the next while the answer's reported confidence is below
    `confidence_threshold` (native mode "cascade"). A model that reports no confidence counts as sure;
    when none is sure, the last model that answered does."""

    name = "cascade"
    native_mode = "cascade"
    defaults: ClassVar[dict[str, Any]] = {"order": [], "confidence_threshold": 0.8}

    @classmethod
    def check_param(cls, key: str, value: Any) -> Any:
        if key == "order":
            if (
                not isinstance(value, (list, tuple))
                or not all(isinstance(name, str) for name in value)
                or len(set(value)) != len(value)
            ):
                raise SelectionPolicyError(
                    f"selection policy 'cascade': order must be a list of distinct model names, "
                    f"fastest first; got {value!r}"
                )
            return list(value)
        value = super().check_param(key, value)
        if not 0 <= value <= 1:
            raise SelectionPolicyError(
                f"selection policy 'cascade': confidence_threshold={value!r} must be between 0 and 1"
            )
        return value

    @classmethod
    def check_links(cls, params: Mapping[str, Any], models: Sequence[str]) -> None:
        unknown = [name for name in params.get("order", []) if name not in models]
        if unknown:
            raise SelectionPolicyError(
                f"selection policy 'cascade' orders {', '.join(unknown)}, which the cluster does "
                f"not have (models: {', '.join(models) or 'none'}); deploy them first"
            )

    def order(self, state: State) -> list[str]:
        names = state["models"]
        named = [name for name in self.param(state, "order") if name in names]
        return named + [name for name in names if name not in named]

    def refresh_weights(self, state: State) -> None:
        # The first model in the order answers every query it is sure of: its weight is 1.
        first = self.order(state)[:1]
        state["weights"] = [1.0 if name in first else 0.0 for name in state["models"]]

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        return self.order(self.align(state, models))

    def combine(self, state: State, outputs: Mapping[str, Any]) -> tuple[Any, float]:
        threshold = self.param(state, "confidence_threshold")
        last: tuple[Any, float] = (None, 0.0)
        for name in self.order(state):
            if name not in outputs:
                continue
            answer = as_model_output(outputs[name])
            confidence = 1.0 if answer.confidence is None else answer.confidence
            if confidence >= threshold:
                return answer.output, confidence
            last = (answer.output, confidence)
        return last

    def engine_plan(self, state: State) -> dict[str, Any]:
        return {**super().engine_plan(state), "order": self.order(state)}
