"""Supervision: the back-off policy and restart bookkeeping (pure), and the local supervisor driving real
processes that crash, with the clock passed in so back-off steps are checked without waiting them out."""

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

import pytest

from clipper.exceptions import ConfigurationError
from clipper.management.endpoints import FrontendEndpoints, process_is_alive
from clipper.managers import local_replicas
from clipper.managers.local_replicas import ReplicaProcess, ReplicaRecords, start_replica_process
from clipper.managers.local_supervisor import LocalReplicaSupervisor
from clipper.managers.supervision import (
    BACKING_OFF,
    CRASH_LOOPING,
    RUNNING,
    BackoffPolicy,
    RestartRecord,
    describe_exit,
    returncode_from_wait_status,
    with_supervision,
)

# ---- the policy and the bookkeeping -------------------------------------------------------------


def test_the_delay_doubles_from_one_second_up_to_a_minute():
    policy = BackoffPolicy()
    assert [policy.delay_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay_s(10_000) == 60.0  # no overflow however long it crashed


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"initial_delay_s": -1}, "initial_delay_s"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"initial_delay_s": 10, "max_delay_s": 5}, "max_delay_s"),
        ({"crash_loop_after": 0}, "crash_loop_after"),
    ],
)
def test_a_bad_policy_names_its_field(options, field):
    with pytest.raises(ConfigurationError, match=field):
        BackoffPolicy(**options)


def test_consecutive_failures_back_off_then_report_a_crash_loop():
    policy = BackoffPolicy(initial_delay_s=1, max_delay_s=60, crash_loop_after=3)
    record = RestartRecord()
    now = 1000.0
    states = []
    for _ in range(4):
        record = record.after_exit(policy, "exited with code 1", ran_for_s=0.5, now_unix=now)
        states.append((record.state, record.next_start_unix - now, record.consecutive_failures))
        assert not record.restart_due(record.next_start_unix - 0.01)
        assert record.restart_due(record.next_start_unix)
        record = record.after_restart()
        assert record.state == RUNNING and record.next_start_unix == 0.0
    assert states == [
        (BACKING_OFF, 1.0, 1),
        (BACKING_OFF, 2.0, 2),
        (CRASH_LOOPING, 4.0, 3),
        (CRASH_LOOPING, 8.0, 4),
    ]
    assert record.restarts == 4
    assert record.last_exit_reason == "exited with code 1"


def test_a_replica_that_stayed_up_starts_the_back_off_again():
    policy = BackoffPolicy(stable_after_s=30)
    record = RestartRecord(restarts=5, consecutive_failures=5, state=RUNNING)
    record = record.after_exit(policy, "killed by signal 9 (SIGKILL)", ran_for_s=45, now_unix=0.0)
    assert (record.consecutive_failures, record.state, record.next_start_unix) == (
        1,
        BACKING_OFF,
        1,
    )
    assert record.restarts == 5


def test_exits_are_described_with_their_code_or_signal():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(-15) == "killed by signal 15 (SIGTERM)"
    assert "unknown" in describe_exit(None)
    assert returncode_from_wait_status(3 << 8) == 3
    assert returncode_from_wait_status(9) == -9


def test_connected_replicas_carry_their_supervision_and_waiting_slots_follow():
    connected = [
        {"model_name": "m", "model_version": "1", "model_replica_id": 4, "model_id": "m:1"},
    ]
    report = [
        {"model_name": "m", "model_version": "1", "replica_id": 4, "state": RUNNING,
         "restarts": 2, "last_exit_reason": "exited with code 1", "next_restart_in_s": 0.0},
        {"model_name": "m", "model_version": "1", "replica_id": 2, "state": CRASH_LOOPING,
         "restarts": 7, "last_exit_reason": "exited with code 1", "next_restart_in_s": 12.5},
    ]  # fmt: skip
    first, second = with_supervision(connected, report)
    assert (first["state"], first["restarts"], first["model_id"]) == (RUNNING, 2, "m:1")
    assert second["state"] == CRASH_LOOPING and second["model_replica_id"] == 2
    assert second["next_restart_in_s"] == 12.5
    # A replica the manager does not supervise (registered from elsewhere) reads as never restarted.
    (alone,) = with_supervision(connected, [])
    assert (alone["restarts"], alone["last_exit_reason"]) == (0, "")


# ---- the local supervisor with real processes ------------------------------------------------


def _replica_runner(tmp_path, monkeypatch, module, source):
    """Replica processes run `source` as module `module` (started like real replicas); returns the
    model's image directory, inside the cluster's state directory as closures must be."""
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.setattr(local_replicas, "CLOSURE_RUNNER_MODULE", module)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    image = tmp_path / "state" / "models" / "m" / "1"
    image.mkdir(parents=True)
    (image / "func.pkl").write_bytes(b"")
    return image


@pytest.fixture
def crashing_runner(tmp_path, monkeypatch):
    """Replica processes are a script that exits with code 3 at once."""
    return _replica_runner(tmp_path, monkeypatch, "crashing_replica", "import sys\nsys.exit(3)\n")


def _start(records, state_dir, image):
    slot = ReplicaProcess("m", "1", -1, "doubles", str(image), 0, None, "")
    with records.locked():
        replica, process = start_replica_process(records, state_dir / "logs", "127.0.0.1:9", slot)
    return replica, process


def _wait_dead(replica):
    deadline = time.monotonic() + 15
    while process_is_alive(replica.pid, replica.process_start_ticks):
        assert time.monotonic() < deadline, "the crashing replica did not exit"
        time.sleep(0.02)


def test_the_supervisor_restarts_a_crashing_replica_with_back_off(tmp_path, crashing_runner):
    state_dir = tmp_path / "state"
    records = ReplicaRecords(state_dir)
    first, process = _start(records, state_dir, crashing_runner)
    published = []  # what reaches the engine's set_replica_supervision
    supervisor = LocalReplicaSupervisor(state_dir, "127.0.0.1:9", "test", publish=published.append)
    _wait_dead(first)

    now = time.time()
    supervisor.check_once(now)
    (noted,) = records.read()
    # A zombie of another parent (this test started it): its status comes from the kernel.
    assert (noted.replica_id, noted.state, noted.last_exit_reason) == (
        0,
        BACKING_OFF,
        "exited with code 3",
    )
    assert noted.next_start_unix == pytest.approx(now + 1.0)
    assert published == [
        [
            {
                "model_name": "m",
                "model_version": "1",
                "replica_id": 0,
                "restarts": 0,
                "last_exit_reason": "exited with code 3",
                "state": BACKING_OFF,
            }
        ]
    ]
    process.wait()

    supervisor.check_once(now + 0.5)
    assert records.read() == [noted]  # still backing off
    assert len(published) == 1  # nothing changed, nothing sent

    for step, (delay_s, state) in enumerate([(2.0, BACKING_OFF), (4.0, CRASH_LOOPING)], start=1):
        supervisor.check_once(noted.next_start_unix)
        (restarted,) = records.read()
        assert (restarted.replica_id, restarted.restarts, restarted.state) == (step, step, RUNNING)
        _wait_dead(restarted)
        now = time.time()
        supervisor.check_once(now)
        (noted,) = records.read()
        # Started by the supervisor: the status comes from its own child handle.
        assert (noted.state, noted.last_exit_reason) == (state, "exited with code 3")
        assert noted.next_start_unix == pytest.approx(now + delay_s)
        last = published[-1][0]
        assert (last["replica_id"], last["restarts"], last["state"]) == (step, step, state)

    # A slot removed (a stop, under the lock) is never started again.
    with records.locked():
        records.remove(noted)
    supervisor.check_once(noted.next_start_unix + 100)
    assert records.read() == []
    assert published[-1] == []  # its series leave /metrics


def test_a_running_replica_is_adopted_and_left_alone(tmp_path, monkeypatch):
    (tmp_path / "sleeping_replica.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(local_replicas, "CLOSURE_RUNNER_MODULE", "sleeping_replica")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    state_dir = tmp_path / "state"
    records = ReplicaRecords(state_dir)
    image = state_dir / "models" / "m" / "1"
    image.mkdir(parents=True)
    (image / "func.pkl").write_bytes(b"")
    replica, process = _start(records, state_dir, image)
    try:
        endpoints = FrontendEndpoints("test", os.getpid(), None, "0.0.0.0", 1, 2, 3, 0)
        published = []
        supervisor = LocalReplicaSupervisor.for_frontend(
            state_dir, endpoints, publish=published.append
        )
        assert supervisor.rpc_addr == "127.0.0.1:3"
        supervisor.start()
        time.sleep(3 * supervisor.poll_interval_s)
        supervisor.stop()
        assert records.read() == [replica]
        # Published once at start (an adopted replica keeps its history), not on every pass.
        assert published == [LocalReplicaSupervisor.supervision_entries([replica])]
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def sleeping_runner(tmp_path, monkeypatch):
    """Replica processes are a script that sleeps a minute."""
    return _replica_runner(tmp_path, monkeypatch, "sleeping_replica", "import time\ntime.sleep(60)\n")


def _thread_reads(thread):
    """Read system calls `thread` (of this process) has made: syscr of /proc/self/task/<tid>/io."""
    io = Path(f"/proc/self/task/{thread.native_id}/io").read_text()
    return int(next(line.split()[1] for line in io.splitlines() if line.startswith("syscr:")))


def _reads_per_idle_second(supervisor, timeout_s):
    """Read calls of the supervisor's thread in windows of four ticks (a second), until one has none
    or `timeout_s` passes; the windows measured, the last one the verdict."""
    windows = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = _thread_reads(supervisor._thread)
        time.sleep(4 * supervisor.poll_interval_s)
        windows.append(_thread_reads(supervisor._thread) - before)
        if windows[-1] == 0:
            break
    return windows


@contextlib.contextmanager
def _supervising_a_sleeper(tmp_path, runner):
    """A started supervisor over one recorded sleeping replica: (records, replica, supervisor); the
    supervisor stopped and the replica killed afterwards."""
    state_dir = tmp_path / "state"
    records = ReplicaRecords(state_dir)
    replica, process = _start(records, state_dir, runner)
    supervisor = LocalReplicaSupervisor(state_dir, "127.0.0.1:9", "test")
    supervisor.start()
    try:
        yield records, replica, supervisor
    finally:
        supervisor.stop()
        process.kill()
        process.wait()


def test_an_idle_supervisor_reads_nothing_between_changes(tmp_path, sleeping_runner):
    with _supervising_a_sleeper(tmp_path, sleeping_runner) as (records, replica, supervisor):
        # Once its first pass is over, a whole second (four ticks) goes by without a read: the
        # records are read again only when their change stamp moves or a replica exits.
        windows = _reads_per_idle_second(supervisor, timeout_s=15)
        assert windows[-1] == 0, f"reads per second while idle: {windows}"
        # A change to the records is still seen: the next tick reads them.
        with records.locked():
            records.write(replica)
        before = _thread_reads(supervisor._thread)
        time.sleep(4 * supervisor.poll_interval_s)
        assert _thread_reads(supervisor._thread) > before
    assert not supervisor._thread.is_alive()


def test_a_replica_refused_a_pidfd_once_is_watched_from_a_later_pass(
    tmp_path, sleeping_runner, monkeypatch
):
    """A pidfd refused for a passing reason (out of descriptors) leaves that replica to the next
    pass; it does not turn the supervisor into one pass per tick for good, as on a kernel without
    pidfds."""
    pidfd_open = os.pidfd_open
    refused = []

    def refusing_once(pid, *args):
        if not refused:
            refused.append(pid)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return pidfd_open(pid, *args)

    monkeypatch.setattr(os, "pidfd_open", refusing_once)
    with _supervising_a_sleeper(tmp_path, sleeping_runner) as (_, replica, supervisor):
        windows = _reads_per_idle_second(supervisor, timeout_s=10)
        assert refused == [replica.pid]
        assert windows[-1] == 0, f"reads per second while idle: {windows}"


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfds", "without-pidfds"])
def test_a_replica_recorded_while_the_supervisor_runs_is_replaced_when_killed(
    tmp_path, sleeping_runner, monkeypatch, pidfds
):
    if not pidfds:  # as on a kernel before 5.3 (or Python without os.pidfd_open): a pass every tick
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    state_dir = tmp_path / "state"
    records = ReplicaRecords(state_dir)
    policy = BackoffPolicy(initial_delay_s=0.5)
    supervisor = LocalReplicaSupervisor(state_dir, "127.0.0.1:9", "test", policy=policy)
    supervisor.start()
    replacement = None
    try:
        time.sleep(2 * supervisor.poll_interval_s)  # idle, with nothing recorded yet
        victim, process = _start(records, state_dir, sleeping_runner)
        time.sleep(2 * supervisor.poll_interval_s)  # seen through the change stamp, then watched
        process.kill()  # a zombie of this test until waited for: the kernel still has its status
        deadline = time.monotonic() + 15
        while replacement is None:
            assert time.monotonic() < deadline, f"not replaced: {records.read()}"
            time.sleep(0.05)
            replacement = next(iter(r for r in records.read() if r.restarts == 1), None)
        assert replacement.replica_id == victim.replica_id + 1
        assert replacement.last_exit_reason == "killed by signal 9 (SIGKILL)"
        assert replacement.is_alive() and replacement.state == RUNNING
        process.wait()
    finally:
        supervisor.stop()
        if replacement is not None:
            os.killpg(replacement.pid, signal.SIGKILL)


def test_the_change_stamp_moves_with_every_write_and_remove(tmp_path):
    records = ReplicaRecords(tmp_path / "state")
    assert records.change_stamp() is None  # nothing recorded yet
    slot = ReplicaProcess("m", "1", 0, "doubles", "image", 2**22 + 1, None, "")
    seen = [records.change_stamp()]
    for _ in range(3):
        records.write(slot)
        seen.append(records.change_stamp())
        assert records.change_stamp() == seen[-1]  # reading changes nothing
        records.remove(slot)
        seen.append(records.change_stamp())
    assert len(set(seen)) == len(seen)
    # The changes file starts over past its limit: still a stamp not seen just before.
    for _ in range(local_replicas._CHANGES_FILE_LIMIT):
        before = records.change_stamp()
        records.write(slot)
        assert records.change_stamp() != before


def test_a_replica_that_cannot_be_started_backs_off_instead_of_retrying_every_pass(tmp_path):
    state_dir = tmp_path / "state"
    records = ReplicaRecords(state_dir)
    outside = tmp_path / "elsewhere"  # a closure outside the state directory is never loaded
    outside.mkdir()
    (outside / "func.pkl").write_bytes(b"")
    slot = ReplicaProcess("m", "1", 0, "doubles", str(outside), 2**22 + 1, None, "",
                          state=BACKING_OFF, consecutive_failures=1, next_start_unix=1.0)  # fmt: skip
    records.write(slot)
    supervisor = LocalReplicaSupervisor(state_dir, "127.0.0.1:9", "test")
    supervisor.check_once(now_unix=100.0)
    (after,) = records.read()
    assert after.last_exit_reason.startswith("could not be started: refusing to load")
    assert (after.consecutive_failures, after.next_start_unix) == (2, 102.0)
    supervisor.check_once(now_unix=101.0)
    assert records.read() == [after]  # nothing tried before the back-off ends
