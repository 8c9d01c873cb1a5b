"""The state store interface: where one cluster's configuration lives between restarts.

Implementations: `EmbeddedStateStore` (a JSON file under the cluster's state directory, the default) and
`RedisStateStore` (a Redis server, which several frontends may share). The management service is the only
writer; it serialises its own changes and uses `expected_revision` so that a store shared by several
writers never loses an update, and `wait_for_change` to follow the other writers.
"""

from __future__ import annotations

import abc
import time
from types import TracebackType

from clipper.state.cluster_state import ClusterState


class StateStore(abc.ABC):
    """Durable home of a `ClusterState`, versioned by a revision number that grows by one per save.

    Contract every implementation meets (checked by tests/python/state/test_store_conformance.py):
    - `load()` on an empty store returns `ClusterState(revision=0)`.
    - `save(state, expected_revision=r)` stores `state` as revision r + 1 and returns what is stored, or
      raises `StaleStateError` (and stores nothing) when the stored revision is not r.
    - A saved state survives `close()` and a new instance opened on the same location.
    - A save is atomic: a crash leaves either the old or the new state, never a mix.
    - `revision()` is the stored revision; `wait_for_change(r, timeout)` returns as soon as it is not r
      (at the latest after `timeout_s`) with the stored revision.
    - `clear()` forgets everything: the next `load()` returns `ClusterState(revision=0)`.
    """

    # How often the default `wait_for_change` looks at the stored revision.
    _CHANGE_POLL_INTERVAL_S = 0.2

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the state lives, for logs and error messages (e.g. `embedded:/path/state.json`)."""

    @abc.abstractmethod
    def load(self) -> ClusterState:
        """Return the stored state (a fresh copy the caller may change)."""

    @abc.abstractmethod
    def save(self, state: ClusterState, *, expected_revision: int) -> ClusterState:
        """Store `state` as revision `expected_revision + 1`; returns the stored state."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Delete the stored state; only while no frontend serves from it."""

    @property
    def shared(self) -> bool:
        """True when other processes may write the same state (then the frontend follows them)."""
        return False

    def revision(self) -> int:
        """The stored revision (implementations make this cheaper than a full `load()`)."""
        return self.load().revision

    def wait_for_change(self, known_revision: int, timeout_s: float) -> int:
        """Block until the stored revision is not `known_revision`, or `timeout_s` passed; returns the
        stored revision. This default polls; stores with change notifications override it."""
        deadline = time.monotonic() + timeout_s
        while True:
            stored = self.revision()
            remaining = deadline - time.monotonic()
            if stored != known_revision or remaining <= 0:
                return stored
            time.sleep(min(self._CHANGE_POLL_INTERVAL_S, remaining))

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's resources (files, locks, connections). Idempotent."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
