"""Local replica processes on disk: one record per replica slot (`<state_dir>/replicas/<model>/<version>/
<id>.json`), the lock that orders every change to them, and how replica processes start and stop.

Shared by `LocalContainerManager` (in the user's process) and the replica supervisor (in the frontend
process): both change records only while holding the lock, so neither starts a replica the other just
stopped. Blocking file and process calls; never on the query path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from clipper.management.endpoints import (
    FrontendEndpoints,
    process_is_alive,
    process_start_ticks,
)
from clipper.management.replica_keys import replica_credentials_path
from clipper.managers.supervision import RestartRecord
from clipper.state.trusted_files import check_trusted_file

logger = logging.getLogger(__name__)

CLOSURE_FILE_NAME = "func.pkl"
CLOSURE_RUNNER_MODULE = "clipper.container.closure_runner"
_LOCK_FILE_NAME = ".lock"
# One byte is appended per change to the records; its (inode, size) tells a watcher that something
# changed without reading the records (see ReplicaRecords.change_stamp).
_CHANGES_FILE_NAME = ".changes"
# The changes file starts over (a new file, so a new inode) when it reaches this size.
_CHANGES_FILE_LIMIT = 4096
_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class ReplicaProcess:
    """One model replica slot and the process that fills it now. Records written before supervision
    existed lack the later fields (restart bookkeeping, `cpus`); they read with the defaults."""

    model_name: str
    model_version: str
    replica_id: int
    input_type: str
    image: str
    pid: int
    process_start_ticks: int | None
    log_path: str
    # When the process started (seconds since the epoch); 0 when unknown.
    started_unix: float = 0.0
    restarts: int = 0
    consecutive_failures: int = 0
    last_exit_reason: str = ""
    state: str = "running"
    next_start_unix: float = 0.0
    # The CPUs the replica runs on ("1", "2-3"; empty: those of whoever starts it), kept across restarts.
    cpus: str = ""

    def is_alive(self) -> bool:
        return process_is_alive(self.pid, self.process_start_ticks)

    @property
    def restart_record(self) -> RestartRecord:
        return RestartRecord(
            restarts=self.restarts,
            consecutive_failures=self.consecutive_failures,
            last_exit_reason=self.last_exit_reason,
            state=self.state,
            next_start_unix=self.next_start_unix,
        )

    def with_restart_record(self, record: RestartRecord) -> ReplicaProcess:
        values = asdict(self)
        values.update(asdict(record))
        return ReplicaProcess(**values)


class ReplicaRecords:
    """The replica records of one cluster's state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "replicas"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cluster's replica lock (across processes) for a read-then-change sequence."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK_FILE_NAME, "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def change_stamp(self) -> tuple[int, int] | None:
        """A value that differs after every `write` and `remove` (one stat, no reads): a watcher
        that saw the same stamp before and after has missed no change. None while no record was
        ever written (or the records were deleted)."""
        try:
            stat = os.stat(self.root / _CHANGES_FILE_NAME)
        except OSError:
            return None
        return stat.st_ino, stat.st_size

    def path(self, replica: ReplicaProcess) -> Path:
        return self.root / replica.model_name / replica.model_version / f"{replica.replica_id}.json"

    def read(self, name: str | None = None, version: str | None = None) -> list[ReplicaProcess]:
        base = self.root
        if name is not None:
            base = base / name
            if version is not None:
                base = base / str(version)
        known = {field.name for field in fields(ReplicaProcess)}
        replicas = []
        for record in sorted(base.rglob("*.json")) if base.is_dir() else []:
            try:
                data = json.loads(record.read_text(encoding="utf-8"))
                replicas.append(ReplicaProcess(**{k: v for k, v in data.items() if k in known}))
            except (OSError, ValueError, TypeError):
                logger.warning("event=replica_record_unreadable path=%s", record)
        return replicas

    def write(self, replica: ReplicaProcess) -> None:
        record = self.path(replica)
        record.parent.mkdir(parents=True, exist_ok=True)
        temp = record.with_name(f".{record.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(asdict(replica), indent=2), encoding="utf-8")
        temp.replace(record)
        self._note_change()

    def remove(self, replica: ReplicaProcess) -> None:
        self.path(replica).unlink(missing_ok=True)
        self._note_change()

    def _note_change(self) -> None:
        """Grow the changes file by a byte (callers hold the lock). The size alone would repeat once
        it starts over; the new file's inode differs from the old one's, which still exists when
        the new one is created."""
        changes = self.root / _CHANGES_FILE_NAME
        try:
            full = changes.stat().st_size >= _CHANGES_FILE_LIMIT
        except FileNotFoundError:
            full = False
        if full:
            temp = changes.with_name(f"{_CHANGES_FILE_NAME}.tmp-{os.getpid()}")
            temp.write_bytes(b".")
            temp.replace(changes)
            return
        with open(changes, "ab") as log:
            log.write(b".")

    def next_replica_id(self, name: str, version: str) -> int:
        """Replica ids grow per model version and are never reused, so the frontend can never confuse
        a new replica with a dropped one. Call with the lock held."""
        counter = self.root / name / version / "next_replica_id"
        counter.parent.mkdir(parents=True, exist_ok=True)
        try:
            replica_id = int(counter.read_text())
        except (OSError, ValueError):
            replica_id = 0
        recorded = [r.replica_id for r in self.read(name, version)]
        replica_id = max([replica_id, *(i + 1 for i in recorded)])
        counter.write_text(str(replica_id + 1))
        return replica_id


def spawn_process(
    command: list[str],
    log_path: Path,
    extra_paths: Iterable[str] = (),
    environment: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` with its output appended to `log_path`, detached from the caller, in this
    process's environment plus `environment`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        # Its own session (and process group): a Ctrl-C in the user's terminal does not reach it,
        # it outlives the process that started it, and killpg stops it with any children it started.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**child_environment(extra_paths), **(environment or {})},
            start_new_session=True,
            close_fds=True,
        )


def start_replica_process(
    records: ReplicaRecords,
    logs_dir: Path,
    rpc_addr: str,
    slot: ReplicaProcess,
    environment: Mapping[str, str] | None = None,
) -> tuple[ReplicaProcess, subprocess.Popen[bytes]]:
    """Start a replica for `slot`'s model version under a fresh replica id and record it (restart
    bookkeeping carried over from `slot`), `environment` added to its own. Call with the lock held."""
    name, version = slot.model_name, slot.model_version
    replica_id = records.next_replica_id(name, version)
    log_path = logs_dir / "replicas" / name / version / f"{replica_id}.log"
    closure_path = Path(slot.image)
    if closure_path.is_dir():
        closure_path = closure_path / CLOSURE_FILE_NAME
    # The replica unpickles (runs) the closure as this user: only one the operator alone controls,
    # inside the state directory, is ever loaded (raises DeploymentError, logged, otherwise).
    closure_path = check_trusted_file(closure_path, records.root.parent)
    command = [
        sys.executable,
        "-m",
        CLOSURE_RUNNER_MODULE,
        "--func-path", str(closure_path.resolve()),
        "--name", name,
        "--version", version,
        "--input-type", slot.input_type,
        "--frontend", f"tcp://{rpc_addr}",
        "--replica-id", str(replica_id),
    ]  # fmt: skip
    if slot.cpus:
        command += ["--cpus", slot.cpus]
    credentials = replica_credentials_file(records.root.parent)
    if credentials is not None:
        command += ["--rpc-credentials-file", str(credentials)]
    site_packages = Path(slot.image) / "site-packages"
    extra_paths = [str(site_packages)] if site_packages.is_dir() else []
    process = spawn_process(command, log_path, extra_paths, environment)
    values = asdict(slot)
    values.update(
        replica_id=replica_id,
        pid=process.pid,
        process_start_ticks=process_start_ticks(process.pid),
        log_path=str(log_path),
        started_unix=time.time(),
    )
    replica = ReplicaProcess(**values)
    records.write(replica)
    return replica, process


def replica_credentials_file(state_dir: Path) -> Path | None:
    """The credentials file a replica of the cluster in `state_dir` authenticates with, or None when
    its frontend admits replicas without keys (allow_unauthenticated_replicas)."""
    endpoints = FrontendEndpoints.read(state_dir)
    if endpoints is not None and endpoints.replica_auth == "none":
        return None
    path = replica_credentials_path(state_dir)
    return path if path.exists() else None


def child_environment(extra_paths: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment, with the directory holding the `clipper` package (and any
    model-specific packages) on PYTHONPATH so children import the same code as their parent."""
    environment = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the directory holding clipper/
    inherited = [
        str(Path(entry).resolve())
        for entry in environment.get("PYTHONPATH", "").split(os.pathsep)
        if entry
    ]
    paths = [*extra_paths, package_root, *inherited]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment.setdefault("PYTHONUNBUFFERED", "1")
    return environment


def terminate_process_groups(
    processes: Sequence[tuple[int, int | None]],
    graceful: bool,
    grace_s: float,
    reap: Callable[[], None] = lambda: None,
) -> None:
    """Signal every (pid, start ticks) process group at once (SIGTERM, or SIGKILL when not
    `graceful`), then wait for all; SIGKILL what outlives `grace_s`. `reap` collects the caller's
    children while waiting, so they do not linger as zombies."""
    targets = [(pid, ticks) for pid, ticks in processes if process_is_alive(pid, ticks)]
    first_signal = signal.SIGTERM if graceful else signal.SIGKILL
    for pid, _ in targets:
        signal_group(pid, first_signal)
    deadline = time.monotonic() + grace_s
    remaining = list(targets)
    while remaining and time.monotonic() < deadline:
        reap()
        remaining = [(pid, ticks) for pid, ticks in remaining if process_is_alive(pid, ticks)]
        if remaining:
            time.sleep(_POLL_INTERVAL_S)
    for pid, _ in remaining:
        logger.warning("event=process_kill pid=%d reason=did_not_stop_in_time", pid)
        signal_group(pid, signal.SIGKILL)
    if remaining:
        time.sleep(_POLL_INTERVAL_S)
    reap()


def signal_group(pid: int, signum: int) -> None:
    """Signal the process group `pid` leads, or the process alone when it leads none."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        # Not a process-group leader (started by hand, not by a manager): signal the process alone.
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    except PermissionError:
        logger.warning("event=signal_denied pid=%d signal=%d", pid, signum)
