"""The Redis state store: a cluster's configuration in a Redis server, shared by every frontend of it.

Owns the cluster's keys, all under `clipper:<cluster_name>:` so clusters can share one server:
  `...:state`    a hash, `revision` (the integer revision) and `state` (the ClusterState as JSON);
  `...:changes`  a pub/sub channel that carries the new revision after every save.
A save is one Lua script (compare the revision, write both fields, publish), so it is atomic and never
loses a concurrent writer's update. Thread-safe (redis-py's connection pool); `wait_for_change` runs on
the frontend's store-follower thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from clipper.exceptions import StaleStateError, StateStoreError
from clipper.state.cluster_state import ClusterState
from clipper.state.store import StateStore

logger = logging.getLogger(__name__)

DEFAULT_REDIS_PORT = 6379
KEY_PREFIX = "clipper"

# KEYS[1] = state hash, KEYS[2] = changes channel; ARGV = expected revision, new revision, JSON.
# Returns {1, new revision} when stored, {0, stored revision} when the expected revision is stale.
_SAVE_SCRIPT = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'revision') or '0')
if stored ~= tonumber(ARGV[1]) then
  return {0, stored}
end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'state', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return {1, tonumber(ARGV[2])}
"""


def parse_redis_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" (or "host", port 6379); raises StateStoreError."""
    host, separator, port_text = address.rpartition(":")
    if not separator:
        host, port_text = address, str(DEFAULT_REDIS_PORT)
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise StateStoreError(
            f"redis address {address!r} is not valid: give it as host:port, e.g. 127.0.0.1:6379"
        )
    return host, port


class RedisStateStore(StateStore):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_REDIS_PORT,
        cluster_name: str = "default-cluster",
        db: int = 0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Connects at once, retrying for `connect_timeout_s` (a Redis started alongside the
        frontend may still be loading), and raises StateStoreError if the server never answers."""
        # Imported here: the client takes longer to import than the rest of clipper, and only
        # clusters with redis_ip set need it.
        try:
            import redis
        except ImportError:
            raise StateStoreError(
                "the Redis state store needs the redis client: `pip install redis`, or leave "
                "redis_ip unset to keep the configuration in the embedded store"
            ) from None
        self._redis_module = redis
        self.host = host
        self.port = port
        self.db = db
        self.cluster_name = cluster_name
        self._state_key = f"{KEY_PREFIX}:{cluster_name}:state"
        self._changes_channel = f"{KEY_PREFIX}:{cluster_name}:changes"
        from redis.backoff import ConstantBackoff
        from redis.retry import Retry

        self._client = redis.Redis(
            host=host,
            port=port,
            db=db,
            decode_responses=True,
            socket_connect_timeout=5.0,
            socket_timeout=10.0,
            # Two quick retries ride out a dropped connection; the client's default (exponential
            # backoff up to seconds) would stall a management call long after Redis is gone.
            retry=Retry(ConstantBackoff(0.1), 2),
        )
        self._save_script = self._client.register_script(_SAVE_SCRIPT)
        self._subscription: Any = None
        self._subscription_lock = threading.Lock()
        self._closed = False
        self._connect(connect_timeout_s)

    @property
    def description(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db} key {self._state_key}"

    @property
    def shared(self) -> bool:
        return True

    def load(self) -> ClusterState:
        self._check_open()
        revision_text, state_text = self._call("read", self._client.hmget, self._state_key,
                                                ["revision", "state"])  # fmt: skip
        if revision_text is None or state_text is None:
            return ClusterState()
        try:
            state = ClusterState.from_dict(json.loads(state_text))
        except (ValueError, RecursionError) as error:  # StateFormatError is a ValueError
            raise StateStoreError(
                f"{self.description} does not hold a valid clipper state ({error}); restore it, or "
                f"delete the key (redis-cli DEL {self._state_key}) to start empty"
            ) from error
        state.revision = int(revision_text)
        return state

    def save(self, state: ClusterState, *, expected_revision: int) -> ClusterState:
        self._check_open()
        to_store = state.clone()
        to_store.revision = expected_revision + 1
        text = json.dumps(to_store.to_dict(), sort_keys=True)
        stored, revision = self._call(
            "write",
            self._save_script,
            keys=[self._state_key, self._changes_channel],
            args=[expected_revision, to_store.revision, text],
        )
        if not stored:
            raise StaleStateError(
                f"{self.description} is at revision {revision}, not {expected_revision}; reload "
                "the state and apply the change again"
            )
        logger.debug("event=state_saved store=%s revision=%d", self.description, revision)
        return to_store

    def revision(self) -> int:
        self._check_open()
        value = self._call("read", self._client.hget, self._state_key, "revision")
        return 0 if value is None else int(value)

    def wait_for_change(self, known_revision: int, timeout_s: float) -> int:
        """Waits on the change channel; the revision is read after subscribing, so a save between
        the caller's last read and the subscription is never missed."""
        self._check_open()
        deadline = time.monotonic() + timeout_s
        with self._subscription_lock:
            if self._subscription is None:
                subscription = self._client.pubsub(ignore_subscribe_messages=True)
                self._call("subscribe", subscription.subscribe, self._changes_channel)
                self._subscription = subscription
            subscription = self._subscription
            stored = self.revision()
            while stored == known_revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    message = self._call("wait", subscription.get_message, timeout=remaining)
                except StateStoreError:
                    # The subscription's connection broke (Redis restarted): subscribe afresh on
                    # the next call, and let the caller retry.
                    self._subscription = None
                    subscription.close()
                    raise
                if message is not None:
                    stored = self.revision()
            return stored

    def clear(self) -> None:
        self._check_open()
        self._call("clear", self._client.delete, self._state_key)
        self._call("clear", self._client.publish, self._changes_channel, "0")
        logger.info("event=state_cleared store=%s", self.description)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._subscription_lock:
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None
        self._client.close()

    # ---- internals ----------------------------------------------------------------------------------

    def _connect(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._client.ping()
                return
            except (
                self._redis_module.ConnectionError,
                self._redis_module.TimeoutError,
                self._redis_module.BusyLoadingError,
            ) as error:
                if time.monotonic() >= deadline:
                    self._client.close()
                    raise StateStoreError(
                        f"cannot reach Redis at {self.host}:{self.port} ({error}); start "
                        "redis-server there, or pass the redis_ip and redis_port it listens on"
                    ) from error
                time.sleep(0.2)

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self._redis_module.RedisError as error:
            raise StateStoreError(
                f"cannot {action} {self.description}: {error}; check that Redis at "
                f"{self.host}:{self.port} is running"
            ) from error

    def _check_open(self) -> None:
        if self._closed:
            raise StateStoreError(f"{self.description} is closed; open a new RedisStateStore")
