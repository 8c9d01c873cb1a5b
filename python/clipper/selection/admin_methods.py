"""The admin API's selection methods, mixed into `ClipperConnection`: set and read an application's
selection policy, read and reset what it learned per user.

Owns only the mapping of each method onto its management operation (`/admin/set_selection_policy`,
...); validation happens once, in the management service. Blocking calls from the user's thread.
"""

from __future__ import annotations

from typing import Any


class SelectionAdminMethods:
    """Needs `_call(operation, body)` from the class it is mixed into (ClipperConnection)."""

    def _call(self, operation: str, body: dict[str, Any]) -> Any:  # pragma: no cover - overridden
        raise TypeError("SelectionAdminMethods is mixed into ClipperConnection, not used alone")

    def set_selection_policy(self, app_name: str, policy: str, **params: Any) -> None:
        """Choose how `app_name` picks among its linked models: "single" (the default: one model),
        "exp3" (one model per query, drawn by learned weights), "exp4" (every model, combined by
        learned weights; `confidence_threshold`), "ab" (`weights={model: share}`), "cascade"
        (`order`, `confidence_threshold`), "epsilon_greedy" (`epsilon`), "ucb1" (`exploration`),
        or a user policy ("package.module:ClassName", importable by the frontend). Every user of
        the app starts afresh. Raises SelectionPolicyError (a ClipperException) naming the valid
        choices for an unknown policy or bad parameters."""
        self._call(
            "set_selection_policy", {"app_name": app_name, "policy": policy, "params": params}
        )

    def get_selection_policy(self, app_name: str) -> dict[str, Any]:
        """{"policy": name, "params": the parameters set away from their defaults}."""
        result: dict[str, Any] = self._call("get_selection_policy", {"app_name": app_name})
        return result

    def get_selection_state(self, app_name: str, uid: int = 0) -> dict[str, Any]:
        """What the policy learned for user `uid`: {"models": {name: {"weight", "observations",
        "mean_loss"}}, "feedback": rounds}; the weights sum to 1 over the linked models."""
        result: dict[str, Any] = self._call(
            "get_selection_state", {"app_name": app_name, "uid": uid}
        )
        return result

    def reset_selection_state(self, app_name: str, uid: int | None = None) -> None:
        """Forget what the policy learned for user `uid`, or for every user when uid is None."""
        self._call("reset_selection_state", {"app_name": app_name, "uid": uid})
