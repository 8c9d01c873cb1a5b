"""Replica supervision's shared vocabulary: the back-off policy, a replica slot's restart bookkeeping, and
how an exit is described. Every manager (local processes, Docker, Kubernetes) speaks it.

Owns no process and no thread: a supervisor (for local replicas, `clipper.managers.local_supervisor`,
running inside the frontend process) calls these pure functions with the clock it reads.

Rule: a slot whose replica exits waits `initial_delay_s * multiplier**(n-1)` (at most `max_delay_s`)
before its n-th consecutive restart; a replica that stayed up `stable_after_s` resets n to 1. From
`crash_loop_after` consecutive failures on, the slot is reported as crash-looping instead of backing off.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from typing import Any

from clipper.exceptions import ConfigurationError

# States of a replica slot, as `get_all_model_replicas(verbose=True)` and the CLI report them.
RUNNING = "running"
BACKING_OFF = "backing-off"
CRASH_LOOPING = "crash-looping"
REPLICA_STATES = (RUNNING, BACKING_OFF, CRASH_LOOPING)


@dataclass(frozen=True)
class BackoffPolicy:
    """When a replica that exited is started again. Every field is validated at construction."""

    # Wait before the first restart after a replica exits.
    initial_delay_s: float = 1.0
    # Each further consecutive failure multiplies the wait by this.
    multiplier: float = 2.0
    # The wait never exceeds this (Kubernetes' CrashLoopBackOff caps at 300 s; a minute suits a
    # single machine, where a fixed model comes back sooner).
    max_delay_s: float = 60.0
    # A replica that ran at least this long before exiting counts as healthy: its next failure is
    # treated as the first again.
    stable_after_s: float = 60.0
    # Consecutive failures from which the slot is reported as crash-looping.
    crash_loop_after: int = 3

    def __post_init__(self) -> None:
        for name in ("initial_delay_s", "max_delay_s", "stable_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(
                    f"BackoffPolicy.{name}={value!r}: use a number of seconds >= 0"
                )
        if self.multiplier < 1:
            raise ConfigurationError(
                f"BackoffPolicy.multiplier={self.multiplier!r}: use 1 or more (the wait never shrinks)"
            )
        if self.max_delay_s < self.initial_delay_s:
            raise ConfigurationError(
                f"BackoffPolicy.max_delay_s={self.max_delay_s} is below initial_delay_s="
                f"{self.initial_delay_s}; raise max_delay_s"
            )
        if isinstance(self.crash_loop_after, bool) or self.crash_loop_after < 1:
            raise ConfigurationError(
                f"BackoffPolicy.crash_loop_after={self.crash_loop_after!r}: use an int >= 1"
            )

    def delay_s(self, consecutive_failures: int) -> float:
        """The wait before restarting a slot that has failed `consecutive_failures` (>= 1) times in a
        row."""
        exponent = max(consecutive_failures, 1) - 1
        # Bounded exponent: 2**1000 overflows a float long after the cap applies.
        return float(
            min(self.initial_delay_s * self.multiplier ** min(exponent, 64), self.max_delay_s)
        )


@dataclass(frozen=True)
class RestartRecord:
    """A replica slot's restart history; the slot outlives each replica that fills it."""

    # Replicas started in this slot after the first one.
    restarts: int = 0
    # Failures since the slot last ran a replica for `stable_after_s`.
    consecutive_failures: int = 0
    # How the last replica of the slot ended ("" while none has).
    last_exit_reason: str = ""
    state: str = RUNNING
    # Wall-clock time (seconds since the epoch) at which the slot may start its next replica; 0 when
    # a replica runs. Wall-clock, because the supervisor that reads it may be another process.
    next_start_unix: float = 0.0

    def after_exit(
        self, policy: BackoffPolicy, exit_reason: str, ran_for_s: float, now_unix: float
    ) -> RestartRecord:
        """The record once the slot's replica has exited after running `ran_for_s` seconds."""
        failures = 1 if ran_for_s >= policy.stable_after_s else self.consecutive_failures + 1
        state = CRASH_LOOPING if failures >= policy.crash_loop_after else BACKING_OFF
        return replace(
            self,
            consecutive_failures=failures,
            last_exit_reason=exit_reason,
            state=state,
            next_start_unix=now_unix + policy.delay_s(failures),
        )

    def after_restart(self) -> RestartRecord:
        """The record once a new replica runs in the slot."""
        return replace(self, restarts=self.restarts + 1, state=RUNNING, next_start_unix=0.0)

    def restart_due(self, now_unix: float) -> bool:
        return self.state != RUNNING and now_unix >= self.next_start_unix


def describe_exit(wait_status_code: int | None) -> str:
    """A process's end in words, from a `Popen.returncode`-style code (negative: killed by that
    signal) or None when the status is not known to the caller."""
    if wait_status_code is None:
        return "exited (status unknown: the supervisor is not its parent)"
    if wait_status_code < 0:
        return f"killed by signal {-wait_status_code} ({_signal_name(-wait_status_code)})"
    return f"exited with code {wait_status_code}"


def returncode_from_wait_status(status: int) -> int:
    """A raw waitpid(2) status as `Popen.returncode` reports it (negative for a signal)."""
    if status & 0x7F:
        return -(status & 0x7F)
    return (status >> 8) & 0xFF


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def with_supervision(
    connected: list[dict[str, Any]], report: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The frontend's connected replicas (verbose entries) annotated with their slot's supervision
    ("state", "restarts", "last_exit_reason"), followed by the slots that wait for a restart (not
    connected: "state" is not "running"). `report` is a manager's `supervision_report()`."""
    by_replica = {
        (str(entry["model_name"]), str(entry["model_version"]), int(entry["replica_id"])): entry
        for entry in report
    }
    annotated = []
    for replica in connected:
        key = (
            str(replica["model_name"]),
            str(replica["model_version"]),
            int(replica["model_replica_id"]),
        )
        slot = by_replica.get(key, {})
        annotated.append(
            {
                **replica,
                "state": RUNNING,
                "restarts": int(slot.get("restarts", 0)),
                "last_exit_reason": str(slot.get("last_exit_reason", "")),
            }
        )
    for entry in report:
        if entry.get("state", RUNNING) == RUNNING:
            continue
        name, version = str(entry["model_name"]), str(entry["model_version"])
        annotated.append(
            {
                "model_id": f"{name}:{version}",
                "model_name": name,
                "model_version": version,
                "model_replica_id": int(entry["replica_id"]),
                "input_type": "",
                "inflight_batches": 0,
                "transport": "",
                "state": str(entry["state"]),
                "restarts": int(entry.get("restarts", 0)),
                "last_exit_reason": str(entry.get("last_exit_reason", "")),
                "next_restart_in_s": float(entry.get("next_restart_in_s", 0.0)),
            }
        )
    return annotated
