"""Model selection: which of an application's linked models answer a query, and what they learn.

The public surface for writing and registering policies: subclass `SelectionPolicy` (the paper's four
functions, `init_state`, `select`, `combine`, `observe`, plus `native_mode`), `register_policy` it, and
set it on an app with `ClipperConnection.set_selection_policy`. Built-ins: single (default), exp3,
exp4, ab, cascade, epsilon_greedy, ucb1. Per query the engine runs the policy natively from the plan
it publishes (`engine_plan`); only learning from feedback runs here, in Python.
"""

from __future__ import annotations

from clipper.selection.bandits import EpsilonGreedyPolicy, Exp3Policy, Exp4Policy, Ucb1Policy
from clipper.selection.fixed import AbPolicy, CascadePolicy, SinglePolicy
from clipper.selection.policy import (
    NATIVE_MODES,
    ModelOutput,
    SelectionPolicy,
    combine_weighted,
    loss,
    outputs_equal,
)
from clipper.selection.registry import (
    DEFAULT_POLICY,
    get_policy,
    make_policy,
    policy_names,
    register_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "NATIVE_MODES",
    "AbPolicy",
    "CascadePolicy",
    "EpsilonGreedyPolicy",
    "Exp3Policy",
    "Exp4Policy",
    "ModelOutput",
    "SelectionPolicy",
    "SinglePolicy",
    "Ucb1Policy",
    "combine_weighted",
    "get_policy",
    "loss",
    "make_policy",
    "outputs_equal",
    "policy_names",
    "register_policy",
]
