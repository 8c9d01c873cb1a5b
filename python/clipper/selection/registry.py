"""The selection-policy registry: policy names to classes, built-ins and user-written ones alike.

Owns name resolution: a registered name ("exp3"), or "package.module:ClassName" for a policy class the
frontend imports on first use (importing it registers it). Thread-safe; any thread.
"""

from __future__ import annotations

import importlib
import re
import threading

from clipper.exceptions import SelectionPolicyError
from clipper.selection.bandits import EpsilonGreedyPolicy, Exp3Policy, Exp4Policy, Ucb1Policy
from clipper.selection.fixed import AbPolicy, CascadePolicy, SinglePolicy
from clipper.selection.policy import NATIVE_MODES, SelectionPolicy

DEFAULT_POLICY = "single"

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_IMPORT_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

_lock = threading.Lock()
_policies: dict[str, type[SelectionPolicy]] = {}


def register_policy(cls: type[SelectionPolicy]) -> type[SelectionPolicy]:
    """Make `cls` available under `cls.name` (usable as a class decorator). Raises
    SelectionPolicyError for an invalid class or a name another class already holds."""
    if not isinstance(cls, type) or not issubclass(cls, SelectionPolicy):
        raise SelectionPolicyError(f"{cls!r} is not a SelectionPolicy subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise SelectionPolicyError(
            f"{cls.__qualname__}.name must be 1-64 letters, digits, '_', '.' or '-' starting with a "
            f"letter, got {name!r}"
        )
    if getattr(cls, "native_mode", None) not in NATIVE_MODES:
        raise SelectionPolicyError(
            f"{cls.__qualname__}.native_mode must be one of {', '.join(NATIVE_MODES)} (how the engine "
            f"runs it per query), got {getattr(cls, 'native_mode', None)!r}"
        )
    with _lock:
        holder = _policies.get(name)
        if holder is not None and holder is not cls and holder.__qualname__ != cls.__qualname__:
            raise SelectionPolicyError(
                f"selection policy name '{name}' is taken by {holder.__module__}."
                f"{holder.__qualname__}; give {cls.__qualname__} another name"
            )
        _policies[name] = cls
    return cls


def policy_names() -> list[str]:
    """Every registered name, sorted."""
    with _lock:
        return sorted(_policies)


def get_policy(name: str) -> type[SelectionPolicy]:
    """The policy class named `name`, or imported from "package.module:ClassName". Raises
    SelectionPolicyError naming the valid choices."""
    with _lock:
        found = _policies.get(name) if isinstance(name, str) else None
    if found is not None:
        return found
    if isinstance(name, str) and _IMPORT_PATTERN.match(name):
        return _import_policy(name)
    raise SelectionPolicyError(
        f"unknown selection policy {name!r}: use one of {', '.join(policy_names())}, or "
        "'package.module:ClassName' for a SelectionPolicy subclass the frontend can import"
    )


def make_policy(name: str, seed: int | None = None) -> SelectionPolicy:
    """An instance of the policy named `name` (see get_policy)."""
    return get_policy(name)(seed=seed)


def _import_policy(spec: str) -> type[SelectionPolicy]:
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SelectionPolicyError(
            f"selection policy {spec!r}: cannot import {module_name} ({error}); install it, or put "
            "its directory on the frontend's PYTHONPATH"
        ) from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, SelectionPolicy):
        raise SelectionPolicyError(
            f"selection policy {spec!r}: {module_name} has no SelectionPolicy subclass {class_name}"
        )
    return register_policy(cls)


for _builtin in (
    SinglePolicy,
    Exp3Policy,
    Exp4Policy,
    AbPolicy,
    CascadePolicy,
    EpsilonGreedyPolicy,
    Ucb1Policy,
):
    register_policy(_builtin)
