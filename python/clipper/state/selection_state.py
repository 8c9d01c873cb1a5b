"""Where selection policies keep what they learn: one small JSON state per (application, user).

Owns the per-user store (`SelectionStateStore`: SQLite beside the embedded state file, or a Redis hash
per application) and `UserStateCache`, the bounded in-memory LRU in front of it. The app's policy and
parameters are configuration and live in `ClusterState`; only learned state lives here, because it
changes on every feedback round and may cover millions of users. Thread-safe; written by the frontend's
feedback worker, read and reset by the management service's request threads.

Writes are compare-and-swap on the stored text (`save(..., expected=...)`), so two frontends sharing a
Redis server never lose each other's updates: the loser reloads and applies its feedback again. Redis
publishes every change as "<app>\\n<uid>" ("<app>\\n*" for a reset of every user) on
`clipper:<cluster>:selection-changes`; each frontend follows the channel (`wait_for_changes`) to drop
stale cached states and republish the new weights to its engine.

Measured cost per user (2 linked models, exp3 after 50 rounds: a 132-byte JSON state), 100,000 users
written and measured: SQLite file 150 bytes, Redis 211 bytes (INFO used_memory), `UserStateCache` 374
bytes of Python heap (tracemalloc). The cache holds at most `capacity_users` states (default 100,000:
about 37 MB); the stores hold every user (1 million users: about 150 MB on disk, or 211 MB in Redis).
Each further linked model adds about 30 bytes of JSON per user.
"""

from __future__ import annotations

import abc
import collections
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clipper.exceptions import StateStoreError

logger = logging.getLogger(__name__)

SELECTION_FILE_NAME = "selection.sqlite3"
DEFAULT_CACHE_CAPACITY_USERS = 100_000

# Reset-every-user marker in change notifications.
ALL_USERS = None

State = dict[str, Any]


def encode_state(state: State) -> str:
    """The canonical text of a state (compare-and-swap compares these)."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


class SelectionStateStore(abc.ABC):
    """Per-(app, uid) learned states, as canonical JSON text."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the states live, for logs and errors."""

    @property
    def shared(self) -> bool:
        """True when other frontends may write the same states (follow `wait_for_changes`)."""
        return False

    @abc.abstractmethod
    def load(self, app: str, uid: int) -> str | None:
        """The stored text of (app, uid), or None."""

    @abc.abstractmethod
    def save(self, app: str, uid: int, text: str, expected: str | None) -> bool:
        """Store `text` if what is stored now is `expected` (None: nothing stored); False (and no
        change) otherwise."""

    @abc.abstractmethod
    def delete(self, app: str, uid: int | None) -> None:
        """Forget (app, uid), or every user of `app` when `uid` is None."""

    @abc.abstractmethod
    def users(self, app: str) -> Iterator[tuple[int, str]]:
        """Every stored (uid, text) of `app`, in no particular order."""

    def wait_for_changes(self, timeout_s: float) -> list[tuple[str, int | None]]:
        """(app, uid) written by any writer since the last call (uid None: every user of app),
        waiting up to `timeout_s` for the first; stores no one else writes return [] at once."""
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files. Idempotent."""


# `SqliteSelectionStore.users` reads this many rows a query: the primary key's order, from where the
# last page ended (uids are 64-bit integers, so no sentinel below them all: the first page has none).
USERS_PAGE = 1000
_FIRST_PAGE = "SELECT uid, state FROM selection_state WHERE app = ? ORDER BY uid LIMIT ?"
_NEXT_PAGE = (
    "SELECT uid, state FROM selection_state WHERE app = ? AND uid > ? ORDER BY uid LIMIT ?"
)


class SqliteSelectionStore(SelectionStateStore):
    """`<state_dir>/selection.sqlite3`, one row per user; the embedded state store's directory lock
    already guarantees a single frontend writes it. WAL with synchronous=NORMAL: a commit is durable
    against a process crash, and a power loss can lose only the last moments of feedback."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._path = Path(state_dir) / SELECTION_FILE_NAME
        self._mutex = threading.Lock()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS selection_state (app TEXT NOT NULL, uid INTEGER NOT "
                "NULL, state TEXT NOT NULL, PRIMARY KEY (app, uid)) WITHOUT ROWID"
            )
        except (OSError, sqlite3.Error) as error:
            raise StateStoreError(
                f"cannot open the selection state {self._path}: {error}; check that the state "
                "directory is writable, or move a damaged file aside to start every user afresh"
            ) from error

    @property
    def description(self) -> str:
        return f"sqlite:{self._path}"

    def load(self, app: str, uid: int) -> str | None:
        row = self._run(
            "SELECT state FROM selection_state WHERE app = ? AND uid = ?", (app, uid)
        ).fetchone()
        return None if row is None else str(row[0])

    def save(self, app: str, uid: int, text: str, expected: str | None) -> bool:
        with self._mutex:
            db = self._open_db()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute(
                        "SELECT state FROM selection_state WHERE app = ? AND uid = ?", (app, uid)
                    ).fetchone()
                    if (None if row is None else row[0]) != expected:
                        db.execute("ROLLBACK")
                        return False
                    db.execute(
                        "INSERT OR REPLACE INTO selection_state (app, uid, state) VALUES (?, ?, ?)",
                        (app, uid, text),
                    )
                    db.execute("COMMIT")
                    return True
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise StateStoreError(f"cannot write {self.description}: {error}") from error

    def delete(self, app: str, uid: int | None) -> None:
        if uid is None:
            self._run("DELETE FROM selection_state WHERE app = ?", (app,))
        else:
            self._run("DELETE FROM selection_state WHERE app = ? AND uid = ?", (app, uid))

    def users(self, app: str) -> Iterator[tuple[int, str]]:
        """In uid order, USERS_PAGE at a time (a million users held at once took 430 MB); the lock is
        free between pages, so feedback is written meanwhile."""
        after: int | None = None
        while True:
            if after is None:
                sql, parameters = _FIRST_PAGE, (app, USERS_PAGE)
            else:
                sql, parameters = _NEXT_PAGE, (app, after, USERS_PAGE)
            rows = self._run(sql, parameters).fetchall()
            for uid, text in rows:
                yield int(uid), str(text)
            if len(rows) < USERS_PAGE:
                return
            after = int(rows[-1][0])

    def close(self) -> None:
        with self._mutex:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateStoreError(f"{self.description} is closed; open a new SqliteSelectionStore")
        return self._db

    def _run(self, sql: str, parameters: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._mutex:
            try:
                return self._open_db().execute(sql, parameters)
            except sqlite3.Error as error:
                raise StateStoreError(f"cannot use {self.description}: {error}") from error


# KEYS[1] = the app's hash, KEYS[2] = the changes channel; ARGV = uid, expected ('' = absent), new
# text, notification. Returns 1 when stored, 0 when the stored text is not the expected one.
_SAVE_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if (stored or '') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4])
return 1
"""


class RedisSelectionStore(SelectionStateStore):
    """Hash `clipper:<cluster>:selection:<app>`, field = uid, value = the state's JSON text."""

    def __init__(self, host: str, port: int, cluster_name: str, db: int = 0) -> None:
        try:
            import redis
        except ImportError:
            raise StateStoreError(
                "the Redis selection store needs the redis client: `pip install redis`"
            ) from None
        self._redis_module = redis
        self.host, self.port, self.db = host, port, db
        self._prefix = f"clipper:{cluster_name}:selection:"
        self._channel = f"clipper:{cluster_name}:selection-changes"
        self._client = redis.Redis(
            host=host, port=port, db=db, decode_responses=True, socket_connect_timeout=5.0,
            socket_timeout=10.0,
        )  # fmt: skip
        self._save_script = self._client.register_script(_SAVE_SCRIPT)
        self._subscription: Any = None
        self._subscription_lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db} keys {self._prefix}<app>"

    @property
    def shared(self) -> bool:
        return True

    def load(self, app: str, uid: int) -> str | None:
        value = self._call("read", self._client.hget, self._prefix + app, str(uid))
        return None if value is None else str(value)

    def save(self, app: str, uid: int, text: str, expected: str | None) -> bool:
        stored = self._call(
            "write",
            self._save_script,
            keys=[self._prefix + app, self._channel],
            args=[str(uid), expected or "", text, f"{app}\n{uid}"],
        )
        return bool(stored)

    def delete(self, app: str, uid: int | None) -> None:
        if uid is None:
            self._call("reset", self._client.delete, self._prefix + app)
        else:
            self._call("reset", self._client.hdel, self._prefix + app, str(uid))
        self._call(
            "reset", self._client.publish, self._channel, f"{app}\n{'*' if uid is None else uid}"
        )

    def users(self, app: str) -> Iterator[tuple[int, str]]:
        for field, text in self._client.hscan_iter(self._prefix + app, count=1000):
            yield int(field), str(text)

    def wait_for_changes(self, timeout_s: float) -> list[tuple[str, int | None]]:
        with self._subscription_lock:
            if self._subscription is None:
                subscription = self._client.pubsub(ignore_subscribe_messages=True)
                self._call("subscribe", subscription.subscribe, self._channel)
                self._subscription = subscription
            changes: list[tuple[str, int | None]] = []
            message = self._call("wait", self._subscription.get_message, timeout=timeout_s)
            while message is not None:
                app, _, uid = str(message["data"]).rpartition("\n")
                changes.append((app, None if uid == "*" else int(uid)))
                message = self._call("wait", self._subscription.get_message, timeout=0)
            return changes

    def close(self) -> None:
        with self._subscription_lock:
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None
        self._client.close()

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self._redis_module.RedisError as error:
            raise StateStoreError(
                f"cannot {action} the selection state at {self.description}: {error}; check that "
                f"Redis at {self.host}:{self.port} is running"
            ) from error


def open_selection_store(cluster_store: Any) -> SelectionStateStore:
    """The selection store that goes with a cluster's `StateStore`: SQLite beside the embedded store's
    file, or the same Redis server and cluster name as the Redis store."""
    redis_host = getattr(cluster_store, "host", None)
    if redis_host is not None and getattr(cluster_store, "shared", False):
        return RedisSelectionStore(
            redis_host, cluster_store.port, cluster_store.cluster_name, cluster_store.db
        )
    path = getattr(cluster_store, "path", None)
    if path is None:
        raise StateStoreError(
            f"no selection store goes with {cluster_store.description}: use the embedded or the "
            "Redis state store"
        )
    return SqliteSelectionStore(Path(path).parent)


class UserStateCache:
    """A bounded LRU of users' state texts in front of a store: what the feedback worker reads
    instead of the store. Holding text rather than dicts keeps an entry near the JSON's own size.
    Evicting loses nothing: every state is written through to the store before it is cached."""

    def __init__(self, capacity_users: int = DEFAULT_CACHE_CAPACITY_USERS) -> None:
        if capacity_users < 1:
            raise ValueError(f"capacity_users must be at least 1, got {capacity_users}")
        self.capacity_users = capacity_users
        self._entries: collections.OrderedDict[tuple[str, int], str] = collections.OrderedDict()
        self._mutex = threading.Lock()

    def get(self, app: str, uid: int) -> str | None:
        with self._mutex:
            text = self._entries.get((app, uid))
            if text is not None:
                self._entries.move_to_end((app, uid))
            return text

    def put(self, app: str, uid: int, text: str) -> None:
        with self._mutex:
            self._entries[(app, uid)] = text
            self._entries.move_to_end((app, uid))
            while len(self._entries) > self.capacity_users:
                self._entries.popitem(last=False)

    def drop(self, app: str, uid: int | None) -> None:
        with self._mutex:
            if uid is not None:
                self._entries.pop((app, uid), None)
                return
            for key in [key for key in self._entries if key[0] == app]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._mutex:
            return len(self._entries)
