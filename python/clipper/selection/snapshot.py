"""The `selection` field of an application in the engine's configuration snapshot.

Owns the projection of an app's policy and parameters onto the native plan that serves every user with
no learned state of their own (docs/interfaces.md, "Configuration snapshot"); learned per-user weights
reach the engine through the feedback worker instead. Pure; the management service's lock holder runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from clipper.exceptions import SelectionPolicyError
from clipper.selection.registry import DEFAULT_POLICY, make_policy

logger = logging.getLogger(__name__)


def snapshot_selection(
    app_name: str, policy_name: str, params: Mapping[str, Any], linked_models: Sequence[str]
) -> dict[str, Any] | None:
    """The app's plan for a new user ({"mode", "weights", ...}); None for the default policy, whose
    plan the engine assumes when the field is absent. A policy that cannot be loaded here (its module
    is missing from this frontend) is logged and leaves the field out, so the app keeps serving from
    its first linked model instead of taking the whole configuration down."""
    if policy_name == DEFAULT_POLICY and not params:
        return None
    try:
        policy = make_policy(policy_name)
        return policy.engine_plan(policy.init_state(list(linked_models), **params))
    except SelectionPolicyError as error:
        logger.error(
            "event=selection_policy_unavailable app=%s policy=%s cause=%r", app_name, policy_name,
            str(error),
        )  # fmt: skip
        return None
