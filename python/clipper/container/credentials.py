"""A replica's credentials for the frontend's RPC port (ZeroMQ CURVE): what they are and where they come from.

The cluster's manager hands each replica it starts the same three Z85 keys, as JSON
(`{"server_public_key": ..., "client_public_key": ..., "client_secret_key": ...}`): in the variable
CLIPPER_RPC_CREDENTIALS (Docker, Kubernetes) or in an owner-only file named by
CLIPPER_RPC_CREDENTIALS_FILE (local processes; `<state_dir>/replica_credentials.json` by hand).
The frontend admits only client public keys it holds, so a replica without them never registers.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.utils.z85

ENV_RPC_CREDENTIALS = "CLIPPER_RPC_CREDENTIALS"
ENV_RPC_CREDENTIALS_FILE = "CLIPPER_RPC_CREDENTIALS_FILE"
_KEY_FIELDS = ("server_public_key", "client_public_key", "client_secret_key")
_Z85_KEY_LENGTH = 40


@dataclass(frozen=True)
class ReplicaCredentials:
    """The keys a replica authenticates with. The secret never shows in repr() or logs."""

    server_public_key: str
    client_public_key: str
    client_secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in _KEY_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not _is_z85_key(value):
                raise ValueError(f"{name} must be a CURVE key: 40 characters of Z85")

    @classmethod
    def parse(cls, text: str, source: str) -> ReplicaCredentials:
        """Credentials from their JSON text; ValueError naming `source` and what is wrong."""
        try:
            document = json.loads(text)
        except ValueError:
            raise ValueError(f"replica credentials in {source} are not JSON") from None
        fields = document if isinstance(document, dict) else {}
        missing = [name for name in _KEY_FIELDS if not isinstance(fields.get(name), str)]
        if missing:
            raise ValueError(f"replica credentials in {source} lack {', '.join(missing)}")
        try:
            return cls(**{name: fields[name] for name in _KEY_FIELDS})
        except ValueError as error:
            raise ValueError(f"replica credentials in {source}: {error}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ReplicaCredentials:
        """Credentials from an owner-only file; a file others may read is refused (it holds a secret)."""
        path = Path(path)
        try:
            info = path.stat()
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ValueError(
                    f"replica credentials file {path} is readable or writable by other users (mode "
                    f"{stat.S_IMODE(info.st_mode):o}): chmod 600 it"
                )
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"cannot read replica credentials file {path}: {error}") from None
        return cls.parse(text, str(path))

    @classmethod
    def from_environment(cls, env: Any = None) -> ReplicaCredentials | None:
        """Credentials from CLIPPER_RPC_CREDENTIALS (JSON) or CLIPPER_RPC_CREDENTIALS_FILE (a path),
        or None when neither is set (the frontend must then accept unauthenticated replicas)."""
        env = os.environ if env is None else env
        text = env.get(ENV_RPC_CREDENTIALS, "").strip()
        path = env.get(ENV_RPC_CREDENTIALS_FILE, "").strip()
        if text and path:
            raise ValueError(f"set {ENV_RPC_CREDENTIALS} or {ENV_RPC_CREDENTIALS_FILE}, not both")
        if text:
            return cls.parse(text, ENV_RPC_CREDENTIALS)
        if path:
            return cls.from_file(path)
        return None

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in _KEY_FIELDS})

    def apply(self, socket: zmq.Socket) -> None:
        """Make `socket` (before it connects) a CURVE client with these keys."""
        socket.curve_serverkey = self.server_public_key.encode("ascii")
        socket.curve_publickey = self.client_public_key.encode("ascii")
        socket.curve_secretkey = self.client_secret_key.encode("ascii")


def _is_z85_key(text: str) -> bool:
    if len(text) != _Z85_KEY_LENGTH:
        return False
    try:
        return len(zmq.utils.z85.decode(text.encode("ascii"))) == 32
    except (ValueError, KeyError, UnicodeEncodeError):
        return False
