"""Who may call the management API: the cluster's bearer token and where it lives.

Owns `<state_dir>/management_token` (written by the frontend at start, owner-only: file 0600, directory
0700), the constant-time check of an `Authorization: Bearer <token>` header, and the rule that a
management port reachable from other machines needs the token. Pure functions; any thread.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import stat
from pathlib import Path

from clipper.exceptions import ClipperException

logger = logging.getLogger(__name__)

TOKEN_FILE_NAME = "management_token"
# 32 random bytes, URL-safe base64: 43 characters.
TOKEN_BYTES = 32
BEARER_PREFIX = "bearer "


def token_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / TOKEN_FILE_NAME


def restrict_state_dir(state_dir: str | os.PathLike[str]) -> None:
    """Make the state directory owner-only (0700): it holds the token and the pickled models. A shared
    directory (sticky, like /tmp) or one that others may write is refused, never re-permissioned."""
    directory = Path(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_mode & stat.S_ISVTX:
        raise ClipperException(
            f"the state directory {directory} is a shared directory (like /tmp); give the cluster "
            f"a directory of its own, e.g. {directory / 'clipper'}"
        )
    if info.st_uid == os.getuid():
        os.chmod(directory, 0o700)
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ClipperException(
            f"the state directory {directory} belongs to another user and others may write it; "
            "use a directory of your own for the cluster's token and models"
        )


def write_new_token(state_dir: str | os.PathLike[str]) -> str:
    """Generate a token, store it in `<state_dir>/management_token` (0600) and return it. A new token
    per start: one read from an old run's file no longer works."""
    restrict_state_dir(state_dir)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_owner_only(token_path(state_dir), token, replace=True)
    return token


def write_owner_only(path: Path, text: str, *, replace: bool) -> None:
    """Write `text` (ASCII) to `path`, mode 0600 from creation (O_EXCL on a temporary file, then a
    rename), so that the secret is never readable by others, even briefly. `replace`: an existing file
    is replaced; otherwise it is kept (the first of several concurrent writers wins)."""
    temp_path = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp_path.unlink(missing_ok=True)
    descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, text.encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if replace:
        os.replace(temp_path, path)
        return
    try:
        os.link(temp_path, path)  # fails if it exists
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()


def remove_token(state_dir: str | os.PathLike[str]) -> None:
    token_path(state_dir).unlink(missing_ok=True)


def read_token(state_dir: str | os.PathLike[str] | None) -> str | None:
    """The token of the cluster whose state directory is `state_dir`, or None when there is no token
    file (a cluster started with allow_unauthenticated_management, or not on this host). Refuses a
    file that others could read or write: such a token is not a secret any more."""
    if state_dir is None:
        return None
    path = token_path(state_dir)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ClipperException(f"cannot read the management token {path}: {error}") from error
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClipperException(
            f"the management token {path} is readable or writable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); restart the cluster to get a new one (start_clipper "
            "writes it with mode 600)"
        )
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError) as error:
        raise ClipperException(f"cannot read the management token {path}: {error}") from error


def authorization_header(token: str) -> str:
    return f"Bearer {token}"


def is_authorized(header_value: str | bytes | None, token: str) -> bool:
    """True when an Authorization header carries `token` (constant-time comparison)."""
    if header_value is None:
        return False
    if isinstance(header_value, str):
        header_value = header_value.encode("latin-1", "replace")
    if header_value[: len(BEARER_PREFIX)].lower() != BEARER_PREFIX.encode("ascii"):
        return False
    return hmac.compare_digest(header_value[len(BEARER_PREFIX) :].strip(), token.encode("ascii"))


def is_loopback(bind_address: str) -> bool:
    if bind_address == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_address).is_loopback
    except ValueError:
        return False


def refuse_unauthenticated_off_loopback(
    bind_address: str, refusal: str, event: str, advice: str, log: logging.Logger = logger
) -> None:
    """An unauthenticated listener is allowed on loopback only: elsewhere raise `refusal`; on
    loopback log `event` with `advice` (what any local user or process can then do)."""
    if not is_loopback(bind_address):
        raise ClipperException(refusal)
    log.warning("event=%s bind_address=%s advice=%r", event, bind_address, advice)


def check_unauthenticated_bind(bind_address: str) -> None:
    """Refuse to serve the management API without a token anywhere but loopback: it deploys code."""
    refuse_unauthenticated_off_loopback(
        bind_address,
        f"refusing to serve the management API on {bind_address} without authentication: "
        "anyone who reaches it could deploy code; bind it to 127.0.0.1, or leave "
        "allow_unauthenticated_management off so calls need the cluster's token",
        event="management_auth_disabled",
        advice="any local user can change this cluster and deploy code as its owner",
    )
