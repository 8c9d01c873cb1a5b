"""The state store interface: where one cluster's configuration lives between restarts.

Implementations: `EmbeddedStateStore` (a JSON file under the cluster's state directory, the default) and,
later, a Redis store. The management service is the only writer; it serialises its own changes and uses
`expected_revision` so that a store shared by several writers never loses an update.
"""

from __future__ import annotations

import abc
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
    """

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
    def close(self) -> None:
        """Release the store's resources (files, locks, connections). Idempotent."""

    def __enter__(self) -> StateStore:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
