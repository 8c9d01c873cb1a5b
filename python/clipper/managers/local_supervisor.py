"""The local replica supervisor: a thread of the frontend process that replaces replica processes that
exit, with back-off, so a cluster of local processes keeps its replica count.

Why in the frontend: the manager object lives in the user's process, which may exit at any time while
the cluster keeps serving; the frontend lives exactly as long as the cluster, already owns the state
directory, and is the process replicas connect to. Desired state is the replica records on disk (one
per slot, written and removed by `LocalContainerManager` under the records' lock), so a restarted
frontend adopts running replicas instead of starting duplicates, and a slot removed by a stop is never
restarted. Runs on its own thread ("replica-supervisor"); every change happens under the records' lock.

Idle costs next to nothing: a pass over the records runs only when something happened. Each running
replica is watched through a pidfd (pidfd_open(2): readable once the process exits, whoever its
parent), so an exit wakes the thread at once; a slot backing off wakes it when its restart is due;
records written or removed by the manager change the records' change stamp, a single stat checked
every `poll_interval_s`. Where pidfds are missing (not Linux 5.3+), every tick is a full pass.

What it knows (restarts, last exit reason, state per slot) goes to `publish` whenever it changes: the
frontend passes the engine's `set_replica_supervision`, which exports it on /metrics.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from clipper.exceptions import DeploymentError
from clipper.management.endpoints import FrontendEndpoints
from clipper.managers.local_replicas import (
    ReplicaProcess,
    ReplicaRecords,
    start_replica_process,
)
from clipper.managers.supervision import (
    BACKING_OFF,
    RUNNING,
    BackoffPolicy,
    describe_exit,
    returncode_from_wait_status,
)

logger = logging.getLogger(__name__)

# How often the records' change stamp is checked: a replica recorded by the manager is watched within
# this (and its exit noticed from then on at once; before, at the next check).
DEFAULT_POLL_INTERVAL_S = 0.25

# Receives every slot's supervision (the entries of `supervision_entries`) when it changed.
SupervisionPublisher = Callable[[list[dict[str, Any]]], None]


class LocalReplicaSupervisor:
    """Watches `<state_dir>/replicas` and restarts the slots whose process exited."""

    def __init__(
        self,
        state_dir: Path,
        rpc_addr: str,
        cluster_name: str,
        policy: BackoffPolicy | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        publish: SupervisionPublisher | None = None,
    ) -> None:
        self.records = ReplicaRecords(Path(state_dir))
        self.logs_dir = Path(state_dir) / "logs"
        self.rpc_addr = rpc_addr
        self.cluster_name = cluster_name
        self.policy = policy or BackoffPolicy()
        self.poll_interval_s = poll_interval_s
        self.publish = publish
        self._published: list[dict[str, Any]] | None = None
        # Replicas this supervisor started: only a parent learns how its child ended.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The thread waits on its read end; stop() writes to it.
        self._wake: tuple[int, int] | None = None

    @classmethod
    def for_frontend(
        cls,
        state_dir: Path,
        endpoints: FrontendEndpoints,
        publish: SupervisionPublisher | None = None,
    ) -> LocalReplicaSupervisor:
        """The supervisor of the frontend that wrote `endpoints`: replacements connect to its RPC port,
        and what it knows goes to `publish`."""
        host = endpoints.bind_address
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return cls(
            state_dir, f"{host}:{endpoints.rpc_port}", endpoints.cluster_name, publish=publish
        )

    def start(self) -> None:
        self._publish_if_changed(self.records.read())  # adopted replicas keep their history
        self._wake = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(self._wake[0],), name="replica-supervisor", daemon=True
        )
        self._thread.start()
        logger.info(
            "event=replica_supervisor_started cluster=%s adopted=%d",
            self.cluster_name,
            sum(1 for replica in self.records.read() if replica.is_alive()),
        )

    def stop(self) -> None:
        self._stop.set()
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._wake is not None and not (self._thread and self._thread.is_alive()):
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def check_once(self, now_unix: float | None = None) -> None:
        """One pass over the records: note exits, start the slots whose back-off has passed."""
        self._pass(now_unix)

    def _pass(
        self, now_unix: float | None = None
    ) -> tuple[list[ReplicaProcess], tuple[int, int] | None]:
        """check_once, returning the slots after it and the records' change stamp they go with."""
        with self.records.locked():
            for replica in self.records.read():
                if replica.is_alive():
                    continue
                now = time.time() if now_unix is None else now_unix
                if replica.state == RUNNING:
                    self._note_exit(replica, now)
                elif replica.restart_record.restart_due(now):
                    self._restart(replica, now)
            slots = self.records.read()
            # Read under the lock: any later change (which takes it) changes the stamp.
            stamp = self.records.change_stamp()
        self._reap(slots)
        self._publish_if_changed(slots)
        return slots, stamp

    @staticmethod
    def supervision_entries(slots: list[ReplicaProcess]) -> list[dict[str, Any]]:
        """Each slot as `set_replica_supervision` takes it (a manager's supervision_report keys)."""
        return [
            {
                "model_name": slot.model_name,
                "model_version": slot.model_version,
                "replica_id": slot.replica_id,
                "restarts": slot.restarts,
                "last_exit_reason": slot.last_exit_reason,
                "state": slot.state,
            }
            for slot in slots
        ]

    def _publish_if_changed(self, slots: list[ReplicaProcess]) -> None:
        if self.publish is None:
            return
        entries = self.supervision_entries(slots)
        if entries == self._published:
            return
        self.publish(entries)
        self._published = entries

    def _run(self, wake_fd: int) -> None:
        exits = _ExitWatch(wake_fd)
        # A pass is due at once: `seen` never equals a real stamp or None.
        seen: object = _NEVER
        pass_due_unix: float | None = None
        try:
            while not self._stop.is_set():
                try:
                    if (
                        exits.fired
                        or not exits.supported
                        or exits.unwatched
                        or (pass_due_unix is not None and time.time() >= pass_due_unix)
                        or self.records.change_stamp() != seen
                    ):
                        slots, seen = self._pass()
                        exits.watch(slot for slot in slots if slot.state == RUNNING)
                        pass_due_unix = min(
                            (s.next_start_unix for s in slots if s.state != RUNNING), default=None
                        )
                except Exception:
                    # A full disk or a vanished state directory must not end supervision for good.
                    logger.exception(
                        "event=replica_supervisor_pass_failed cluster=%s", self.cluster_name
                    )
                    # Tried again after a tick, not at once (an exit stays signalled).
                    self._stop.wait(self.poll_interval_s)
                    seen = _NEVER
                    continue
                timeout_s = self.poll_interval_s
                if pass_due_unix is not None:
                    timeout_s = min(timeout_s, max(pass_due_unix - time.time(), 0.0))
                exits.wait(timeout_s)
        finally:
            exits.close()

    def _note_exit(self, replica: ReplicaProcess, now: float) -> None:
        reason = describe_exit(self._exit_code(replica.pid))
        ran_for_s = now - replica.started_unix if replica.started_unix else 0.0
        record = replica.restart_record.after_exit(self.policy, reason, ran_for_s, now)
        self.records.write(replica.with_restart_record(record))
        log = logger.error if record.state != BACKING_OFF else logger.warning
        log(
            "event=replica_exited cluster=%s model=%s version=%s replica=%d pid=%d reason=%r "
            "ran_for_s=%.1f state=%s restart_in_s=%.1f restarts=%d",
            self.cluster_name,
            replica.model_name,
            replica.model_version,
            replica.replica_id,
            replica.pid,
            reason,
            ran_for_s,
            record.state,
            record.next_start_unix - now,
            record.restarts,
        )

    def _restart(self, slot: ReplicaProcess, now: float) -> None:
        try:
            replica, process = start_replica_process(
                self.records,
                self.logs_dir,
                self.rpc_addr,
                slot.with_restart_record(slot.restart_record.after_restart()),
            )
        except (OSError, DeploymentError) as error:
            # Counted as a failure, so it is retried after the back-off, not on every pass (a
            # refused closure is logged by the check).
            record = slot.restart_record.after_exit(
                self.policy, f"could not be started: {error}", 0.0, now
            )
            self.records.write(slot.with_restart_record(record))
            logger.error(
                "event=replica_restart_failed cluster=%s model=%s version=%s cause=%r",
                self.cluster_name,
                slot.model_name,
                slot.model_version,
                str(error),
            )
            return
        self._children[process.pid] = process
        self.records.remove(slot)
        logger.info(
            "event=replica_restarted cluster=%s model=%s version=%s replica=%d replaces=%d pid=%d "
            "restarts=%d",
            self.cluster_name,
            replica.model_name,
            replica.model_version,
            replica.replica_id,
            slot.replica_id,
            replica.pid,
            replica.restarts,
        )

    def _exit_code(self, pid: int) -> int | None:
        """How `pid` ended: from the child handle when this supervisor started it, else from the
        kernel while it is a zombie of another parent (the user's process that started it)."""
        child = self._children.pop(pid, None)
        if child is not None:
            return child.wait()
        return _zombie_returncode(pid)

    def _reap(self, slots: list[ReplicaProcess]) -> None:
        # Keep a child that ended until its record is handled: its exit code is read there.
        live = {replica.pid for replica in slots}
        for pid, child in list(self._children.items()):
            if pid not in live and child.poll() is not None:
                del self._children[pid]


_NEVER = object()
# pidfd_open's errors that mean no pidfds here at all (no such system call, or a sandbox refusing it).
_PIDFDS_UNAVAILABLE = (errno.ENOSYS, errno.EPERM, errno.EACCES)


class _ExitWatch:
    """A pidfd per running replica and the supervisor's wake-up pipe, waited on together."""

    def __init__(self, wake_fd: int) -> None:
        self.supported = hasattr(os, "pidfd_open")
        # A watched process exited (or could not be watched): a pass is due.
        self.fired = False
        # A running replica got no pidfd this time (out of descriptors, say): a pass every tick
        # until one does.
        self.unwatched = False
        self._wake_fd = wake_fd
        self._pidfds: dict[tuple[int, int | None], int] = {}
        self._poller = select.poll()
        self._poller.register(wake_fd, select.POLLIN)

    def watch(self, running: Iterable[ReplicaProcess]) -> None:
        """Watch exactly the processes of `running` (the slots of a pass that had a live replica)."""
        self.fired = False
        self.unwatched = False
        wanted = {(slot.pid, slot.process_start_ticks): slot for slot in running}
        for key in set(self._pidfds) - set(wanted):
            self._forget(key)
        for key, slot in wanted.items():
            if key in self._pidfds or not self.supported:
                continue
            try:
                pidfd = os.pidfd_open(slot.pid)
            except ProcessLookupError:
                self.fired = True  # exited since the pass
                continue
            except OSError as error:
                if error.errno not in _PIDFDS_UNAVAILABLE:
                    # Passing (EMFILE, ...): this replica is watched from a later pass.
                    logger.warning(
                        "event=replica_supervisor_pidfd_failed pid=%d cause=%r", slot.pid, str(error)
                    )
                    self.unwatched = True
                    continue
                # ENOSYS (a kernel before 5.3) or a sandbox refusing it: every tick is a pass.
                logger.warning("event=replica_supervisor_pidfd_unavailable cause=%r", str(error))
                self.supported = False
                self.close()
                return
            self._pidfds[key] = pidfd
            self._poller.register(pidfd, select.POLLIN)
            # The pid may have been reused between the pass and pidfd_open: the pidfd is the right
            # process only if it still matches the record.
            if not slot.is_alive():
                self.fired = True

    def wait(self, timeout_s: float) -> None:
        """Until a watched process exits, stop() is called, or `timeout_s` passes."""
        for fd, _ in self._poller.poll(timeout_s * 1000):
            if fd != self._wake_fd:
                self.fired = True

    def close(self) -> None:
        for key in list(self._pidfds):
            self._forget(key)

    def _forget(self, key: tuple[int, int | None]) -> None:
        pidfd = self._pidfds.pop(key)
        self._poller.unregister(pidfd)
        os.close(pidfd)


def _zombie_returncode(pid: int) -> int | None:
    """The exit status of a zombie process (field 52 of /proc/<pid>/stat, Linux 3.5+), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if not fields or fields[0] != "Z" or len(fields) < 50:
        return None
    return returncode_from_wait_status(int(fields[49]))
