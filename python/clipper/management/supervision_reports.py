"""Supervision reports pushed to a frontend by a supervision reporter (Docker, Kubernetes).

The frontend in a container or pod cannot see how its replicas are doing: Docker or the kubelet restarts
them. A reporter that may read the platform's state (`clipper.managers.supervision_reporter`) sends each
replica slot's restarts, last exit and state to `POST /admin/set_replica_supervision`; this module owns
that operation's token (`CLIPPER_SUPERVISION_TOKEN`, separate from the management token: it opens this
one path and nothing else, and the management token does not open it) and the validation of the
report before it reaches the engine's `set_replica_supervision`, which exports it on /metrics.
Pure functions; any thread.
"""

from __future__ import annotations

import math
import os
from typing import Any

from clipper.exceptions import ConfigurationError

# The environment variable that hands the reporter's token to the frontend and to the reporter.
ENV_SUPERVISION_TOKEN = "CLIPPER_SUPERVISION_TOKEN"
REPORT_OPERATION = "set_replica_supervision"
REPORT_PATH = f"/admin/{REPORT_OPERATION}"
# Bounds on one report: a cluster far larger than any one frontend serves still fits.
MAX_SLOTS = 10_000
MAX_NAME_CHARS = 256
MAX_EXIT_REASON_CHARS = 1024
# A shorter token is refused at start: it is the only thing guarding the path.
MIN_TOKEN_CHARS = 32


def token_from_environment() -> str | None:
    """The reporter's token the frontend accepts, or None (no reporter: the path answers 401 to every request)."""
    token = os.environ.get(ENV_SUPERVISION_TOKEN, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigurationError(
            f"{ENV_SUPERVISION_TOKEN} holds {len(token)} characters: use a random token of at "
            f"least {MIN_TOKEN_CHARS} (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def parse_report(body: Any) -> list[dict[str, Any]]:
    """The slots of a report `{"slots": [{model_name, model_version, replica_id, restarts, state,
    last_exit_reason}, ...]}` as `Engine.set_replica_supervision` takes them; ConfigurationError
    naming the first thing wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("slots"), list):
        raise ConfigurationError(f'{REPORT_OPERATION} takes {{"slots": [...]}}')
    slots = body["slots"]
    if len(slots) > MAX_SLOTS:
        raise ConfigurationError(f"{REPORT_OPERATION}: {len(slots)} slots, at most {MAX_SLOTS}")
    return [_parse_slot(index, slot) for index, slot in enumerate(slots)]


def _parse_slot(index: int, slot: Any) -> dict[str, Any]:
    # Here, not at the top: clipper.managers imports the frontend, which imports this module.
    from clipper.managers.supervision import REPLICA_STATES

    where = f"{REPORT_OPERATION}: slots[{index}]"
    if not isinstance(slot, dict):
        raise ConfigurationError(f"{where} is not an object")
    parsed: dict[str, Any] = {}
    for key in ("model_name", "model_version"):
        value = slot.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
            raise ConfigurationError(f"{where}.{key} must be a string of 1-{MAX_NAME_CHARS} chars")
        parsed[key] = value
    for key in ("replica_id", "restarts"):
        value = slot.get(key)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
            raise ConfigurationError(f"{where}.{key} must be an integer >= 0")
        parsed[key] = value
    state = slot.get("state")
    if state not in REPLICA_STATES:
        raise ConfigurationError(f"{where}.state must be one of {', '.join(REPLICA_STATES)}")
    parsed["state"] = state
    reason = slot.get("last_exit_reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_EXIT_REASON_CHARS:
        raise ConfigurationError(
            f"{where}.last_exit_reason must be a string of at most {MAX_EXIT_REASON_CHARS} chars"
        )
    parsed["last_exit_reason"] = reason
    return parsed
