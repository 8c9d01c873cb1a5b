"""A selection policy written in Python: draw a model by its smoothed accuracy raised to a power.

Subclass `SelectionPolicy`, name it, say which native mode the engine runs it in ("sample": one model
per query, drawn by the weights the policy publishes), and implement what differs from the base class:
here `select` and `refresh_weights` (the base class already counts each model's losses per user).
`register_policy` makes the name known in this process; the frontend imports the class itself from
"custom_policy:AccuracyPowerPolicy" when this file's directory is on its PYTHONPATH.

Run it (`python examples/custom_policy.py`) to watch it learn offline, then, on a cluster:
    conn.set_selection_policy("my-app", "custom_policy:AccuracyPowerPolicy", sharpness=8.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from clipper.selection import SelectionPolicy, register_policy
from clipper.selection.policy import State, compact, draw


@register_policy
class AccuracyPowerPolicy(SelectionPolicy):
    """weight_i proportional to ((right_i + 1) / (seen_i + 2)) ** sharpness: every model starts at
    an even chance, and a larger `sharpness` concentrates traffic on the most accurate one sooner."""

    name = "accuracy_power"
    native_mode = "sample"
    defaults: ClassVar[dict[str, Any]] = {"sharpness": 4.0}

    @classmethod
    def check_param(cls, key: str, value: Any) -> Any:
        value = super().check_param(key, value)  # a number, for a float default
        if value <= 0:
            raise ValueError(f"sharpness must be positive, got {value}")
        return value

    def refresh_weights(self, state: State) -> None:
        sharpness = self.param(state, "sharpness")
        scores = [
            ((seen - wrong + 1.0) / (seen + 2.0)) ** sharpness
            for wrong, seen in zip(state["losses"], state["observations"])
        ]
        total = sum(scores)
        state["weights"] = [compact(score / total) for score in scores] if total else []

    def select(self, state: State, models: Sequence[str]) -> list[str]:
        weights = self.weights(self.align(state, models))
        return [draw(weights, self.random)] if weights else []


def main() -> None:
    policy = AccuracyPowerPolicy(seed=0)
    models = ["mostly-right", "coin-flip"]
    state = policy.init_state(models, sharpness=8.0)
    for round_number in range(1, 201):
        # Full-information feedback, as the engine's /update gives: every model's output is known.
        outputs = {"mostly-right": 1 if round_number % 10 else 0, "coin-flip": round_number % 2}
        state = policy.observe(state, outputs, label=1)
        if round_number in (1, 10, 50, 200):
            print(f"after {round_number:3d} rounds: {policy.engine_plan(state)}")


if __name__ == "__main__":
    main()
