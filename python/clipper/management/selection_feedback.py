"""The feedback worker: learning from `/update` in the frontend process, in Python, off the query path.

Owns the per-user learning step (`apply_feedback`: load the user's state, run the app policy's `observe`,
store the new state, publish the new weights to the engine), the loop that drains feedback records from
the engine (`run`), and, with a shared store, following what other frontends learn (`follow`). It does
not own policies (clipper.selection) or storage (clipper.state.selection_state).

Threads: `run` and `follow` each on a thread of their own; `apply_feedback`, `describe` and `reset` from
any thread (one lock orders them, so feedback for a user is applied in the order it arrives).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from clipper.exceptions import (
    ClipperException,
    ConfigurationError,
    StateStoreError,
    UnknownObjectError,
)
from clipper.selection import SelectionPolicy, make_policy
from clipper.selection.policy import as_model_output, loss
from clipper.state.cluster_state import ClusterState
from clipper.state.selection_state import (
    DEFAULT_CACHE_CAPACITY_USERS,
    SelectionStateStore,
    State,
    UserStateCache,
    encode_state,
)

logger = logging.getLogger(__name__)

# A write that loses a race against another frontend is re-applied on the fresh state this many times.
_MAX_SAVE_ATTEMPTS = 32
# Between compare-and-swap retries: a random pause that grows, so two frontends writing the same user
# stop colliding in lockstep (with a fixed retry loop one could lose 8 times in a row on a busy host).
_RETRY_PAUSE_S = 0.001
# How long `run` waits for the engine's next feedback records before checking for a stop.
FEEDBACK_WAIT_MILLIS = 200
# At start, stored users' weights are published this many at a time, with the feedback that arrived
# meanwhile applied between steps (a million users take about 25 s; an update must not wait that long).
STARTUP_PUBLISH_STEP_USERS = 1000


class SelectionBinding(Protocol):
    """The engine calls the feedback worker needs (clipper_native._core.Engine; docs/interfaces.md).

    A record from `next_feedback` is {"ticket": int, "app": str, "uid": int, "label": number,
    "outputs": {model: {"output": str, "confidence": float or null}}}: one `POST /<app>/update`, with
    every linked model's output for its input (from the cache, or evaluated). The engine answers the
    update only when `finish_feedback` reports on its ticket: 200 when applied, 400 with the message
    otherwise, so nothing is acknowledged that was not applied."""

    def next_feedback(self, timeout_ms: int) -> list[dict[str, Any]]:
        """Records in arrival order (at most a batch); [] after `timeout_ms` without any."""

    def finish_feedback(self, ticket: int, applied: bool, message: str) -> None:
        """Answer the update behind `ticket`."""

    def set_selection_weights(self, app: str, uid: int, weights: dict[str, float]) -> None:
        """Serve (app, uid) from these weights (model -> weight) from now on."""

    def clear_selection_weights(self, app: str, uid: int | None) -> None:
        """Serve (app, uid), or every user of app when uid is None, from the app's default plan."""

    def record_feedback_losses(
        self, app: str, answer_loss: float | None, model_losses: dict[str, float]
    ) -> None:
        """Add one applied round's losses to the app's Prometheus series: the policy's own answer
        (None when it had none) and each model's output (once per round, never per query)."""


def selection_binding(engine: Any) -> SelectionBinding | None:
    """`engine` when it implements SelectionBinding, else None (an engine built before the native
    selection layer: weights are then learned and stored but not served)."""
    needed = (
        "next_feedback",
        "finish_feedback",
        "set_selection_weights",
        "clear_selection_weights",
        "record_feedback_losses",
    )
    return engine if all(callable(getattr(engine, name, None)) for name in needed) else None


class ClusterView(Protocol):
    """What the worker reads of the management service."""

    @property
    def revision(self) -> int: ...

    @property
    def state(self) -> ClusterState: ...


@dataclass(frozen=True)
class AppSelection:
    """An app's policy as configured at one revision."""

    policy_name: str
    params: dict[str, Any]
    linked_models: tuple[str, ...]
    policy: SelectionPolicy


class SelectionFeedbackWorker:
    def __init__(
        self,
        cluster: ClusterView,
        store: SelectionStateStore,
        binding: SelectionBinding | None = None,
        capacity_users: int = DEFAULT_CACHE_CAPACITY_USERS,
    ) -> None:
        self._cluster = cluster
        self.store = store
        self.binding = binding
        self.cache = UserStateCache(capacity_users)
        self._lock = threading.RLock()
        self._apps_revision = -1
        self._apps: dict[str, AppSelection] = {}
        self._threads: list[threading.Thread] = []
        # While the stored weights are published at start: the users this frontend wrote, adopted or
        # reset since (uid None: all of the app's), whose newer weights the engine has already.
        self._touched: set[tuple[str, int | None]] | None = None

    # ---- the learning step -----------------------------------------------------------------------

    def apply_feedback(
        self, app: str, uid: int, outputs: Mapping[str, Any], label: Any
    ) -> dict[str, Any]:
        """Teach (app, uid) that `label` is right for an input the models answered with `outputs`
        ({model: output, or {"output", "confidence"}}). Returns {"feedback": rounds so far, "weights":
        {model: weight}}. Raises ConfigurationError (unknown app, bad uid or label) or StateStoreError."""
        uid = _check_uid(uid)
        if (
            isinstance(label, bool)
            or not isinstance(label, (int, float))
            or not math.isfinite(label)
        ):
            raise ConfigurationError(
                f"feedback for application '{app}' needs a numeric label, got {label!r}"
            )
        if not isinstance(outputs, Mapping):
            raise ConfigurationError(
                f"feedback outputs must map model names to outputs, got {outputs!r}"
            )
        with self._lock:
            selection = self.app_selection(app)
            expected = self.cache.get(app, uid)
            # The cache holds only this frontend's own writes, whose weights it published; a state
            # another frontend wrote may not have reached this engine yet (the follower lags).
            served_here = expected is not None
            if expected is None:
                expected = self.store.load(app, uid)
            for attempt in range(_MAX_SAVE_ATTEMPTS):
                if attempt > 0:
                    time.sleep(random.uniform(0, _RETRY_PAUSE_S * min(attempt, 8)))
                state = self._decode(selection, expected)
                new_state = selection.policy.observe(state, outputs, label)
                text = encode_state(new_state)
                if self.store.save(app, uid, text, expected):
                    self.cache.put(app, uid, text)
                    weights = selection.policy.engine_plan(new_state)["weights"]
                    # Unchanged weights need no publishing only when this engine serves them already:
                    # the state was ours, or there was none (the app's default plan is served).
                    stale = not served_here and expected is not None
                    if stale or weights != selection.policy.engine_plan(state)["weights"]:
                        self._publish(app, uid, weights)
                    self._touch(app, uid)
                    self._record_losses(app, selection.policy, state, outputs, label)
                    return {"feedback": new_state["feedback"], "weights": weights}
                # Another frontend wrote this user meanwhile: learn on top of what it stored.
                self.cache.drop(app, uid)
                expected = self.store.load(app, uid)
                served_here = False
        raise StateStoreError(
            f"the selection state of application '{app}' user {uid} in {self.store.description} kept "
            "changing underneath; send the feedback again"
        )

    def describe(self, app: str, uid: int) -> dict[str, Any]:
        """The contract's view of (app, uid): {"models": {name: {"weight", ...}}, "feedback": n}."""
        uid = _check_uid(uid)
        with self._lock:
            selection = self.app_selection(app)
            state = self._decode(selection, self._stored_text(app, uid))
            return selection.policy.describe(state)

    def reset(self, app: str, uid: int | None) -> None:
        """Forget what (app, uid) learned, or every user of `app` when uid is None."""
        if uid is not None:
            uid = _check_uid(uid)
        with self._lock:
            self.store.delete(app, uid)
            self.cache.drop(app, uid)
            if self.binding is not None:
                self.binding.clear_selection_weights(app, uid)
            self._touch(app, uid)
        logger.info("event=selection_state_reset app=%s uid=%s", app, "*" if uid is None else uid)

    def app_selection(self, app: str) -> AppSelection:
        """The app's policy at the served configuration revision (rebuilt when it changes)."""
        with self._lock:
            revision = self._cluster.revision
            if revision != self._apps_revision:
                self._apps = {}
                self._apps_revision = revision
                for application in self._cluster.state.applications.values():
                    try:
                        policy = make_policy(application.selection_policy)
                    except ConfigurationError as error:
                        logger.error(
                            "event=selection_policy_unavailable app=%s cause=%r",
                            application.name,
                            str(error),
                        )
                        continue
                    self._apps[application.name] = AppSelection(
                        application.selection_policy,
                        dict(application.selection_params),
                        tuple(application.linked_models),
                        policy,
                    )
            found = self._apps.get(app)
            if found is None:
                raise UnknownObjectError(
                    f"application '{app}' does not exist (or its selection policy cannot be loaded "
                    "in this frontend: see its log); register it with register_application first"
                )
            return found

    # ---- driven by the engine ------------------------------------------------------------------------

    def handle_record(self, record: Mapping[str, Any]) -> tuple[bool, str]:
        """Apply one engine feedback record; (applied, message for the update's answer)."""
        try:
            result = self.apply_feedback(
                str(record["app"]), record["uid"], record.get("outputs") or {}, record["label"]
            )
        except KeyError as error:
            return False, f"feedback record without {error}"
        except ClipperException as error:
            return False, str(error)
        return True, f"feedback applied ({result['feedback']} rounds for this user)"

    def run(self, stop: threading.Event) -> None:
        """Publish the stored users' weights, then drain the engine's feedback until `stop` is set,
        answering every record's update. Feedback that arrives while publishing is applied between
        its steps."""
        if self.binding is None:
            return
        for _ in self.publish_stored_weights_in_steps():
            if stop.is_set():
                return
            self._drain_feedback(stop, 0)
        while not stop.is_set():
            self._drain_feedback(stop, FEEDBACK_WAIT_MILLIS)

    def _drain_feedback(self, stop: threading.Event, wait_ms: int) -> None:
        assert self.binding is not None
        try:
            records = self.binding.next_feedback(wait_ms)
        except (RuntimeError, OSError) as error:  # the engine stopping: retry shortly
            logger.warning("event=feedback_wait_failed cause=%r", str(error))
            stop.wait(0.5)
            return
        for record in records:
            try:
                applied, message = self.handle_record(record)
            except Exception as error:
                logger.exception("event=feedback_failed app=%s", record.get("app"))
                applied, message = False, f"feedback failed unexpectedly: {error!r}"
            self.binding.finish_feedback(int(record["ticket"]), applied, message)

    def publish_stored_weights(self) -> int:
        """Publish every stored user's weights to the engine (at start); returns how many."""
        return sum(self.publish_stored_weights_in_steps())

    def publish_stored_weights_in_steps(
        self, step_users: int = STARTUP_PUBLISH_STEP_USERS
    ) -> Iterator[int]:
        """`publish_stored_weights` in steps of at most `step_users` users, yielding how many each
        step published, so the caller can apply feedback between steps. A user this frontend wrote,
        adopted or reset since the first step is skipped: the engine has its newer weights, and the
        stored text read at the start may be older."""
        if self.binding is None:
            return
        with self._lock:
            self._touched = set()
        published = 0
        try:
            for app in list(self._cluster.state.applications):
                try:
                    selection = self.app_selection(app)
                except UnknownObjectError:
                    continue
                if selection.policy.native_mode not in ("sample", "ensemble"):
                    continue
                step = 0
                for uid, text in self.store.users(app):
                    with self._lock:
                        if (app, uid) in self._touched or (app, None) in self._touched:
                            continue
                        state = self._decode(selection, text)
                        self.binding.set_selection_weights(
                            app, uid, selection.policy.engine_plan(state)["weights"]
                        )
                    published += 1
                    step += 1
                    if step == step_users:
                        yield step
                        step = 0
                if step:
                    yield step
        finally:
            with self._lock:
                self._touched = None
        logger.info("event=selection_weights_published users=%d", published)

    def follow(self, stop: threading.Event, wait_s: float = 0.5) -> None:
        """With a shared store: adopt what other frontends learn, until `stop` is set. A change is
        served here within one notification (milliseconds on a local network) of its write."""
        while not stop.is_set():
            try:
                changes = self.store.wait_for_changes(wait_s)
                for app, uid in changes:
                    self.adopt_change(app, uid)
            except (StateStoreError, ConfigurationError) as error:
                logger.warning("event=selection_follow_failed cause=%r", str(error))
                stop.wait(wait_s)

    def adopt_change(self, app: str, uid: int | None) -> None:
        """Another writer changed (app, uid) (uid None: reset every user): drop what is cached and
        serve the stored weights."""
        with self._lock:
            if uid is None:
                self.cache.drop(app, None)
                if self.binding is not None:
                    self.binding.clear_selection_weights(app, None)
                self._touch(app, None)
                return
            stored = self.store.load(app, uid)
            if stored is not None and stored == self.cache.get(app, uid):
                return  # our own write
            self.cache.drop(app, uid)
            self._touch(app, uid)
            if self.binding is None:
                return
            if stored is None:
                self.binding.clear_selection_weights(app, uid)
                return
            try:
                selection = self.app_selection(app)
            except UnknownObjectError:
                return
            weights = selection.policy.engine_plan(self._decode(selection, stored))["weights"]
            self.binding.set_selection_weights(app, uid, weights)

    # ---- lifecycle (the frontend process) ----------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        """Start the threads this frontend needs: `run` when the engine has the selection binding,
        `follow` when the store is shared. They end when `stop` is set; then call `close`."""
        self._threads = []
        if self.binding is not None:
            self._threads.append(
                threading.Thread(
                    target=self.run, args=(stop,), name="selection-feedback", daemon=True
                )
            )
        if self.store.shared:
            self._threads.append(
                threading.Thread(
                    target=self.follow, args=(stop,), name="selection-follower", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Wait for the threads (after their stop event is set) and close the store."""
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self.store.close()

    # ---- internals ----------------------------------------------------------------------------------

    def _stored_text(self, app: str, uid: int) -> str | None:
        text = self.cache.get(app, uid)
        return text if text is not None else self.store.load(app, uid)

    def _decode(self, selection: AppSelection, text: str | None) -> State:
        linked = list(selection.linked_models)
        if text is None:
            return selection.policy.init_state(linked, **selection.params)
        try:
            state = json.loads(text)
        except ValueError as error:
            raise StateStoreError(
                f"a stored selection state in {self.store.description} is not JSON ({error}); reset "
                "it with reset_selection_state"
            ) from error
        return selection.policy.align(state, linked)

    def _record_losses(
        self,
        app: str,
        policy: SelectionPolicy,
        state: State,
        outputs: Mapping[str, Any],
        label: Any,
    ) -> None:
        """The round's online loss (what the policy served, scored before it learned) and each
        model's loss, into the engine's per-app series."""
        if self.binding is None:
            return
        model_losses = {
            name: loss(as_model_output(value).output, label)
            for name, value in outputs.items()
            if name in state["models"]
        }
        answer_loss = policy.online_loss(state, outputs, label)
        self.binding.record_feedback_losses(app, answer_loss, model_losses)

    def _touch(self, app: str, uid: int | None) -> None:
        """(app, uid)'s weights were just set here (call with the lock held)."""
        if self._touched is not None:
            self._touched.add((app, uid))

    def _publish(self, app: str, uid: int, weights: dict[str, float]) -> None:
        if self.binding is not None:
            self.binding.set_selection_weights(app, uid, weights)


def _check_uid(uid: Any) -> int:
    if isinstance(uid, bool) or not isinstance(uid, int) or not -(2**63) <= uid < 2**63:
        raise ConfigurationError(f"uid must be a whole number (a 64-bit user id), got {uid!r}")
    return uid
