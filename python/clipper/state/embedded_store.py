"""The embedded state store: the cluster's configuration as one JSON file in its state directory.

Owns `<state_dir>/state.json` (replaced atomically: temp file, fsync, rename) and `<state_dir>/state.lock`,
an exclusive lock held while the store is open so two frontends can never write the same cluster's state.
Thread-safe; called from the management service's request threads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TextIO

from clipper.exceptions import StaleStateError, StateStoreError
from clipper.state.cluster_state import ClusterState
from clipper.state.store import StateStore

logger = logging.getLogger(__name__)

STATE_FILE_NAME = "state.json"
LOCK_FILE_NAME = "state.lock"


class EmbeddedStateStore(StateStore):
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._state_dir = Path(state_dir)
        self._state_path = self._state_dir / STATE_FILE_NAME
        self._mutex = threading.Lock()
        try:
            # Owner-only when created here: the directory holds the cluster's token and models.
            self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise StateStoreError(
                f"cannot create the state directory {self._state_dir}: {error}; choose a writable "
                "state_dir"
            ) from error
        self._lock_file = self._acquire_directory_lock()
        self._closed = False

    @property
    def description(self) -> str:
        return f"embedded:{self._state_path}"

    @property
    def path(self) -> Path:
        return self._state_path

    def load(self) -> ClusterState:
        with self._mutex:
            self._check_open()
            return self._read()

    def save(self, state: ClusterState, *, expected_revision: int) -> ClusterState:
        with self._mutex:
            self._check_open()
            stored_revision = self._read().revision
            if stored_revision != expected_revision:
                raise StaleStateError(
                    f"{self.description} is at revision {stored_revision}, not {expected_revision}; "
                    "reload the state and apply the change again"
                )
            to_store = state.clone()
            to_store.revision = expected_revision + 1
            self._write_atomically(json.dumps(to_store.to_dict(), indent=2, sort_keys=True))
            logger.debug(
                "event=state_saved store=%s revision=%d", self.description, to_store.revision
            )
            return to_store

    def clear(self) -> None:
        with self._mutex:
            self._check_open()
            try:
                self._state_path.unlink(missing_ok=True)
            except OSError as error:
                raise StateStoreError(f"cannot delete {self._state_path}: {error}") from error

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            finally:
                self._lock_file.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StateStoreError(f"{self.description} is closed; open a new EmbeddedStateStore")

    def _acquire_directory_lock(self) -> TextIO:
        lock_path = self._state_dir / LOCK_FILE_NAME
        lock_file = open(lock_path, "a+")  # noqa: SIM115 - held open for the store's lifetime
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StateStoreError(
                f"the state directory {self._state_dir} is in use by another frontend (pid {owner}); "
                "stop that cluster first, or give this one another cluster_name or state_dir"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        return lock_file

    def _read(self) -> ClusterState:
        try:
            data = self._state_path.read_bytes()
        except FileNotFoundError:
            return ClusterState()
        except OSError as error:
            raise StateStoreError(f"cannot read {self._state_path}: {error}") from error
        try:
            return ClusterState.from_dict(json.loads(data.decode("utf-8")))
        # StateFormatError, JSONDecodeError and UnicodeDecodeError are all ValueErrors.
        except (ValueError, RecursionError) as error:
            backup = self._keep_corrupt_copy()
            raise StateStoreError(
                f"{self._state_path} is not a valid clipper state file ({error}); a copy is kept at "
                f"{backup}. Fix the file, or move it aside to start with an empty configuration"
            ) from error

    def _keep_corrupt_copy(self) -> Path:
        """Copy the unreadable state file beside it (once per distinct content), so that whatever the
        operator does next (moving it aside, a new save) never loses what it held."""
        data = self._state_path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:12]
        backup = self._state_path.with_name(f"{STATE_FILE_NAME}.corrupt-{digest}")
        if not backup.exists():
            temp_path = backup.with_name(f".{backup.name}.tmp-{os.getpid()}")
            temp_path.write_bytes(data)
            os.chmod(temp_path, 0o600)
            os.replace(temp_path, backup)
            logger.error(
                "event=state_file_corrupt path=%s backup=%s bytes=%d",
                self._state_path,
                backup,
                len(data),
            )
        return backup

    def _write_atomically(self, text: str) -> None:
        temp_path = self._state_path.with_name(f".{STATE_FILE_NAME}.tmp-{os.getpid()}")
        try:
            with open(temp_path, "w", encoding="utf-8") as temp_file:
                temp_file.write(text)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            os.replace(temp_path, self._state_path)
            directory_fd = os.open(self._state_dir, os.O_RDONLY)
            try:
                os.fsync(directory_fd)  # makes the rename itself durable
            finally:
                os.close(directory_fd)
        except OSError as error:
            temp_path.unlink(missing_ok=True)
            raise StateStoreError(f"cannot write {self._state_path}: {error}") from error
