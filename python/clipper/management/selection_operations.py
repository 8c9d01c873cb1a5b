"""The management operations of the selection layer: `/admin/set_selection_policy`,
`get_selection_policy`, `get_selection_state` and `reset_selection_state`, and the link rule that
depends on the app's policy.

Owns validation of a policy change against the app (known policy, valid parameters, parameters that
name linked models, one linked model for "single"); the change itself is committed through the
management service like any other. Per-user state goes through the feedback worker. Called from the
management API's request threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from clipper.exceptions import ConfigurationError, SelectionPolicyError, UnknownObjectError
from clipper.management.selection_feedback import SelectionFeedbackWorker
from clipper.selection import get_policy
from clipper.state.cluster_state import Application, ClusterState

Body = dict[str, Any]
# Policies the refusal of a second link suggests (every built-in that serves several models).
MULTI_MODEL_POLICIES = ("exp3", "exp4", "ab", "cascade", "epsilon_greedy", "ucb1")


class ChangeCommitter(Protocol):
    """What the operations need of the management service."""

    @property
    def state(self) -> ClusterState: ...

    def commit(self, operation: str, change: Callable[[ClusterState], str]) -> dict[str, Any]: ...


def check_link_allowed(app: Application, new_models: Sequence[str]) -> None:
    """Refuse links that would give an app more models than its policy serves (SelectionPolicyError
    saying to choose a multi-model policy first)."""
    policy = get_policy(app.selection_policy) if app.selection_policy != "single" else None
    if policy is not None and policy.native_mode != "single":
        return
    if len(app.linked_models) + len(new_models) <= 1:
        return
    current = (
        f"is already linked to model '{app.linked_models[0]}'"
        if app.linked_models
        else f"would be linked to {len(new_models)} models"
    )
    unlink = (
        f", or unlink_model_from_app('{app.name}', '{app.linked_models[0]}') first"
        if app.linked_models
        else ", or pass one name"
    )
    raise SelectionPolicyError(
        f"application '{app.name}' {current}, and its selection policy '{app.selection_policy}' "
        f"serves exactly one model: choose a multi-model policy first with "
        f"set_selection_policy('{app.name}', 'exp4') (or one of {', '.join(MULTI_MODEL_POLICIES)})"
        f"{unlink}"
    )


class SelectionOperations:
    def __init__(self, service: ChangeCommitter, worker: SelectionFeedbackWorker) -> None:
        self._service = service
        self.worker = worker
        self.operations: dict[str, Callable[[Body], Any]] = {
            "set_selection_policy": self.set_selection_policy,
            "get_selection_policy": self.get_selection_policy,
            "get_selection_state": self.get_selection_state,
            "reset_selection_state": self.reset_selection_state,
        }

    def set_selection_policy(self, body: Body) -> Any:
        """Set the app's policy and parameters; every user of the app starts afresh."""
        app_name = _app_name(body, "set_selection_policy")
        policy_name = body.get("policy")
        if not isinstance(policy_name, str):
            raise ConfigurationError(
                f"set_selection_policy needs 'policy' (str), got {policy_name!r}"
            )
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigurationError(
                f"set_selection_policy: 'params' must be an object, got {params!r}"
            )
        policy = get_policy(policy_name)
        checked = policy.check_params(params)

        def change(state: ClusterState) -> str:
            app = _existing_app(state, app_name)
            if policy.native_mode == "single" and len(app.linked_models) > 1:
                raise SelectionPolicyError(
                    f"application '{app_name}' links {len(app.linked_models)} models "
                    f"({', '.join(app.linked_models)}) and policy '{policy_name}' serves exactly "
                    "one: unlink the others first with unlink_model_from_app"
                )
            policy.check_links(checked, list(state.models))
            app.selection_policy = policy_name
            app.selection_params = checked
            return f"Successfully set the selection policy of application '{app_name}' to '{policy_name}'"

        result = self._service.commit("set_selection_policy", change)
        self.worker.reset(app_name, None)
        return result

    def get_selection_policy(self, body: Body) -> Any:
        app = _existing_app(self._service.state, _app_name(body, "get_selection_policy"))
        return {"policy": app.selection_policy, "params": dict(app.selection_params)}

    def get_selection_state(self, body: Body) -> Any:
        app_name = _app_name(body, "get_selection_state")
        return self.worker.describe(app_name, body.get("uid", 0))

    def reset_selection_state(self, body: Body) -> Any:
        app_name = _app_name(body, "reset_selection_state")
        _existing_app(self._service.state, app_name)
        uid = body.get("uid")
        self.worker.reset(app_name, uid)
        who = "every user" if uid is None else f"user {uid}"
        return {"message": f"Successfully reset the selection state of {who} of '{app_name}'"}

    def forget_app(self, app_name: str) -> None:
        """Drop every user's state of a deleted app (so a new app of that name starts afresh)."""
        self.worker.reset(app_name, None)


def _app_name(body: Body, operation: str) -> str:
    value = body.get("app_name")
    if not isinstance(value, str):
        raise ConfigurationError(f"{operation} needs 'app_name' (str), got {value!r}")
    return value


def _existing_app(state: ClusterState, name: str) -> Application:
    app = state.applications.get(name)
    if app is None:
        raise UnknownObjectError(
            f"application '{name}' does not exist; register it with register_application first"
        )
    return app
