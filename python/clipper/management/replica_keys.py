"""Which replicas may register on the RPC port: the cluster's CURVE keys and where they live.

Owns two owner-only files (0600) in the state directory, created once per cluster and kept across
restarts (replicas that outlive a frontend restart reconnect with the keys they have):
- `rpc_server_keys.json`: the frontend's keypair and the client public keys it admits
  (`client_public_keys`; an operator may append keys of replicas made by hand). The standalone
  `clipper-frontend --rpc-keys-file` reads the same file. On Kubernetes the same JSON comes from a
  Secret, in the variable CLIPPER_RPC_SERVER_KEYS.
- `replica_credentials.json`: what a replica needs (clipper.container.credentials): the server's public
  key and the cluster's client keypair. The managers hand it to the replicas they start; a replica
  started by hand gets it with `--rpc-credentials-file` (or the file's text in CLIPPER_RPC_CREDENTIALS).
Pure functions; any thread.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq

from clipper.container.credentials import ReplicaCredentials
from clipper.exceptions import ClipperException
from clipper.management.auth import refuse_unauthenticated_off_loopback, write_owner_only

logger = logging.getLogger(__name__)

SERVER_KEYS_FILE_NAME = "rpc_server_keys.json"
REPLICA_CREDENTIALS_FILE_NAME = "replica_credentials.json"
ENV_RPC_SERVER_KEYS = "CLIPPER_RPC_SERVER_KEYS"


@dataclass(frozen=True)
class ClusterKeys:
    """The RPC port's keys: the frontend's secret and admitted keys, and the replicas' credentials."""

    server_secret_key: str
    client_public_keys: tuple[str, ...]
    replica: ReplicaCredentials

    def __repr__(self) -> str:  # never the secrets
        return f"ClusterKeys(server_public_key={self.replica.server_public_key!r})"

    def server_keys_json(self) -> str:
        """The frontend's half, as rpc_server_keys.json holds it."""
        return json.dumps(
            {
                "server_public_key": self.replica.server_public_key,
                "server_secret_key": self.server_secret_key,
                "client_public_keys": list(self.client_public_keys),
            },
            indent=2,
        )


def new_cluster_keys() -> ClusterKeys:
    """Fresh keys: a server keypair and one client keypair, admitted."""
    server_public, server_secret = (key.decode("ascii") for key in zmq.curve_keypair())
    client_public, client_secret = (key.decode("ascii") for key in zmq.curve_keypair())
    return ClusterKeys(
        server_secret_key=server_secret,
        client_public_keys=(client_public,),
        replica=ReplicaCredentials(server_public, client_public, client_secret),
    )


def server_keys_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / SERVER_KEYS_FILE_NAME


def replica_credentials_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / REPLICA_CREDENTIALS_FILE_NAME


def ensure_cluster_keys(state_dir: str | os.PathLike[str]) -> ClusterKeys:
    """The cluster's keys, generated on first use. Raises ClipperException for unreadable files or
    files others may read."""
    if not server_keys_path(state_dir).exists():
        _generate(Path(state_dir))
    return read_cluster_keys(state_dir)


def read_cluster_keys(state_dir: str | os.PathLike[str]) -> ClusterKeys:
    server_path = server_keys_path(state_dir)
    secret, admitted = _server_half(_read_json(server_path), str(server_path))
    return ClusterKeys(
        server_secret_key=secret,
        client_public_keys=admitted,
        replica=read_replica_credentials(state_dir),
    )


def server_keys_from_environment(
    env: Mapping[str, str] | None = None,
) -> tuple[str, tuple[str, ...]] | None:
    """(server secret key, admitted client keys) from CLIPPER_RPC_SERVER_KEYS, or None when unset."""
    text = (os.environ if env is None else env).get(ENV_RPC_SERVER_KEYS, "").strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        raise ClipperException(f"{ENV_RPC_SERVER_KEYS} is not JSON") from None
    if not isinstance(document, dict):
        raise ClipperException(f"{ENV_RPC_SERVER_KEYS} must hold a JSON object")
    return _server_half(document, ENV_RPC_SERVER_KEYS)


def _server_half(document: Mapping[str, object], source: str) -> tuple[str, tuple[str, ...]]:
    secret = document.get("server_secret_key")
    keys = document.get("client_public_keys")
    if not isinstance(secret, str) or not (
        isinstance(keys, list) and keys and all(isinstance(key, str) for key in keys)
    ):
        raise ClipperException(
            f'{source} must hold "server_secret_key" and a non-empty list '
            '"client_public_keys"; move it aside to generate new keys (replicas then need the new '
            f"{REPLICA_CREDENTIALS_FILE_NAME})"
        )
    return secret, tuple(keys)


def read_replica_credentials(state_dir: str | os.PathLike[str]) -> ReplicaCredentials:
    path = replica_credentials_path(state_dir)
    _check_owner_only(path)
    try:
        return ReplicaCredentials.from_file(path)
    except ValueError as error:
        raise ClipperException(str(error)) from None


def check_unauthenticated_replicas(bind_address: str) -> None:
    """Refuse replicas without keys anywhere but loopback: they receive users' queries."""
    refuse_unauthenticated_off_loopback(
        bind_address,
        f"refusing to accept unauthenticated replicas on {bind_address}: any host that reaches "
        "the RPC port could register as a model and receive users' queries; bind it to "
        "127.0.0.1, or leave allow_unauthenticated_replicas off so replicas need the "
        "cluster's keys",
        event="replica_auth_disabled",
        advice="any local process can register as a model's replica and receive its queries",
        log=logger,
    )


def _generate(state_dir: Path) -> None:
    keys = new_cluster_keys()
    # The replicas' file first: a server file never exists without it.
    # Another process generating keys at the same time: the first file written wins.
    write_owner_only(replica_credentials_path(state_dir), keys.replica.to_json(), replace=False)
    write_owner_only(server_keys_path(state_dir), keys.server_keys_json(), replace=False)
    logger.info(
        "event=replica_keys_created state_dir=%s server_public_key=%s",
        state_dir,
        keys.replica.server_public_key,
    )


def _check_owner_only(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as error:
        raise ClipperException(f"cannot read {path}: {error}") from error
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClipperException(
            f"{path} is readable or writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "it holds a secret key: chmod 600 it, or move it aside to generate new keys"
        )


def _read_json(path: Path) -> dict[str, object]:
    _check_owner_only(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ClipperException(f"cannot read {path}: {error}") from error
    if not isinstance(document, dict):
        raise ClipperException(f"{path} must hold a JSON object")
    return document
