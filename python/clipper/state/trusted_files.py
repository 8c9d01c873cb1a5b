"""Which files of a cluster may be trusted to run as its operator: its state directory's own.

Owns the rule that protects the operator from planted pickles: a model's closure (`func.pkl`, which a
replica unpickles, i.e. runs) is loaded only from inside the cluster's state directory, and only when the
file and every directory from the state directory down to it belong to the operator and nobody else may
write them. Pure functions over the file system; any thread.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from clipper.exceptions import DeploymentError

logger = logging.getLogger(__name__)


def check_trusted_file(path: str | os.PathLike[str], state_dir: str | os.PathLike[str]) -> Path:
    """Return `path` resolved when the operator alone controls it inside `state_dir`; otherwise log
    the refusal and raise DeploymentError naming the path and why."""
    root = Path(state_dir).resolve()
    resolved = Path(path).resolve()
    problem = _untrusted_reason(resolved, root)
    if problem is None:
        return resolved
    logger.error("event=closure_refused path=%s state_dir=%s reason=%r", resolved, root, problem)
    raise DeploymentError(
        f"refusing to load the model closure {resolved}: {problem}. Clipper only runs pickled models "
        f"from the cluster's own state directory ({root}), where build_model (or "
        "deploy_python_closure) copies them; deploy the model again that way"
    )


def make_owner_only(directory: str | os.PathLike[str]) -> None:
    """Take group and other permissions off a copied model directory (directories 0700, files keep
    only their owner bits): a umask of 002, common for users with a private group, would otherwise
    leave it group-writable, and so untrusted."""
    root = Path(directory)
    for entry in [root, *root.rglob("*")]:
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        os.chmod(entry, stat.S_IMODE(info.st_mode) & stat.S_IRWXU)


def _untrusted_reason(resolved: Path, root: Path) -> str | None:
    if resolved != root and root not in resolved.parents:
        return f"it is outside the state directory {root}"
    owner = os.getuid()
    # The state directory itself, then every directory below it, then the file.
    relative_parts = resolved.relative_to(root).parts
    chain = [root, *(root.joinpath(*relative_parts[: i + 1]) for i in range(len(relative_parts)))]
    for entry in chain:
        try:
            info = entry.lstat()
        except OSError as error:
            return f"{entry} cannot be examined ({error.strerror})"
        if stat.S_ISLNK(info.st_mode):
            return f"{entry} is a symbolic link"
        if info.st_uid != owner:
            return f"{entry} belongs to uid {info.st_uid}, not to this user (uid {owner})"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return (
                f"{entry} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}), so "
                "anyone could replace the model's code"
            )
    return None
