"""The supervision reporter: Kubernetes pod statuses (the official client's V1Pod models) read as
replica slots per frontend, and the push loop against a real management API on loopback (reports go
out when they change, again after the resend interval, and are retried after a failure)."""

import datetime
import json
import threading

import pytest

pytest.importorskip("kubernetes", reason="the official Kubernetes client (pip install kubernetes)")
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from clipper.management import ManagementService
from clipper.management.http_api import ManagementHTTPServer
from clipper.managers.supervision_reporter import (
    SupervisionReporter,
    is_alive,
    kubernetes_reports,
    kubernetes_slots,
)
from clipper.state import EmbeddedStateStore

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
TOKEN = "reporter-test-token-" + "t" * 20


def model_pod(name, model, version, frontend=0, created_s=0, status=None, deleting=False):
    return V1Pod(
        metadata=V1ObjectMeta(
            name=name,
            labels={"ai.clipper.role": "model", "ai.clipper.frontend": str(frontend)},
            annotations={"ai.clipper.model": json.dumps({"name": model, "version": version})},
            creation_timestamp=T0 + datetime.timedelta(seconds=created_s),
            deletion_timestamp=T0 if deleting else None,
        ),
        status=V1PodStatus(container_statuses=None if status is None else [status]),
    )


def container(restarts=0, state=None, last=None):
    return V1ContainerStatus(
        name="model", image="i", image_id="", ready=state is not None and state.running is not None,
        restart_count=restarts, state=state, last_state=V1ContainerState(terminated=last),
    )  # fmt: skip


RUNNING = V1ContainerState(running=V1ContainerStateRunning(started_at=T0))
SIGKILLED = V1ContainerStateTerminated(exit_code=137, reason="Error")


def test_pod_statuses_become_slots_in_clippers_vocabulary():
    pods = [
        model_pod("sum-b", "sum", "1", created_s=5, status=container(1, RUNNING, SIGKILLED)),
        model_pod("sum-a", "sum", "1", created_s=1, status=container(0, RUNNING)),
        model_pod("sum-c", "sum", "1", created_s=9, status=container(
            4,
            V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff")),
            V1ContainerStateTerminated(exit_code=137, reason="OOMKilled"),
        )),
        model_pod("sum-d", "sum", "1", created_s=12, status=container(
            2,
            V1ContainerState(waiting=V1ContainerStateWaiting(reason="ContainerCreating")),
            V1ContainerStateTerminated(exit_code=3, reason="Error"),
        )),
        # Scheduled, nothing started yet: fills its slot, no history.
        model_pod("sum-e", "sum", "1", created_s=15),
    ]  # fmt: skip
    slots = kubernetes_slots(pods)
    assert list(slots) == [0]
    assert [(s["replica_id"], s["restarts"], s["state"], s["last_exit_reason"]) for s in slots[0]] == [
        (0, 0, "running", ""),
        (1, 1, "running", "killed by signal 9 (SIGKILL)"),
        (2, 4, "crash-looping",
         "killed by signal 9 (SIGKILL) (out of memory: over its memory limit)"),
        (3, 2, "backing-off", "exited with code 3"),
        (4, 0, "running", ""),
    ]  # fmt: skip
    assert {(s["model_name"], s["model_version"]) for s in slots[0]} == {("sum", "1")}


def test_slots_are_grouped_by_frontend_and_pods_leaving_or_foreign_are_ignored():
    foreign = model_pod("x", "m", "1", status=container(3, RUNNING))
    foreign.metadata.annotations = {}
    pods = [
        model_pod("a0", "a", "1", frontend=0, status=container(0, RUNNING)),
        model_pod("a1", "a", "1", frontend=1, status=container(2, RUNNING, SIGKILLED)),
        model_pod("b1", "b", "v2", frontend=1, status=container(0, RUNNING)),
        model_pod("gone", "a", "1", frontend=1, status=container(7, RUNNING), deleting=True),
        foreign,
    ]
    slots = kubernetes_slots(pods)
    assert {index: [(s["model_name"], s["replica_id"], s["restarts"]) for s in entries]
            for index, entries in slots.items()} == {
        0: [("a", 0, 0)],
        1: [("a", 0, 2), ("b", 0, 0)],
    }  # fmt: skip


def frontend_pod(name, index, ip):
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels={"ai.clipper.frontend": str(index)}),
        status=V1PodStatus(pod_ip=ip),
    )


def test_each_frontend_pod_gets_its_own_frontends_slots_at_its_ip():
    models = [
        model_pod("a0", "a", "1", frontend=0, status=container(1, RUNNING, SIGKILLED)),
        model_pod("a1", "a", "1", frontend=1, status=container(0, RUNNING)),
    ]
    frontends = [
        frontend_pod("f0", 0, "10.0.0.5"),
        frontend_pod("f1", 1, "fd00::7"),
        frontend_pod("f1-new", 1, None),  # not started yet: nowhere to send
        frontend_pod("f2", 2, "10.0.0.9"),  # no models yet: an empty report clears its series
    ]
    reports = kubernetes_reports(frontends, models, 1338)
    assert sorted(reports) == ["10.0.0.5:1338", "10.0.0.9:1338", "[fd00::7]:1338"]
    assert [s["restarts"] for s in reports["10.0.0.5:1338"]] == [1]
    assert [s["restarts"] for s in reports["[fd00::7]:1338"]] == [0]
    assert reports["10.0.0.9:1338"] == []


class RecordingEngine:
    def __init__(self):
        self.supervision = []

    def apply_config(self, config_json):
        pass

    def replicas(self):
        return []

    def set_replica_supervision(self, slots):
        self.supervision.append(slots)


@pytest.fixture
def frontend(tmp_path):
    """A management API on loopback that takes supervision reports with TOKEN."""
    engine = RecordingEngine()
    with EmbeddedStateStore(tmp_path / "state") as store:
        service = ManagementService(store, engine)
        service.restore()
        server = ManagementHTTPServer(
            ("127.0.0.1", 0), service, management_token="admin-token",
            supervision_token=TOKEN, supervision_sink=engine.set_replica_supervision,
        )  # fmt: skip
        server.start()
        yield f"127.0.0.1:{server.port}", engine
        server.stop()


SLOT = {"model_name": "m", "model_version": "1", "replica_id": 0, "restarts": 0,
        "last_exit_reason": "", "state": "running"}  # fmt: skip


def test_reports_are_sent_when_they_change_and_again_after_the_resend_interval(frontend):
    address, engine = frontend
    current = {address: [SLOT]}
    reporter = SupervisionReporter(lambda: dict(current), TOKEN, resend_interval_s=3600)
    reporter.report_once()
    reporter.report_once()
    assert engine.supervision == [[SLOT]]  # unchanged: not sent again
    restarted = {**SLOT, "restarts": 1, "last_exit_reason": "killed by signal 9 (SIGKILL)"}
    current[address] = [restarted]
    reporter.report_once()
    assert engine.supervision == [[SLOT], [restarted]]
    reporter.resend_interval_s = 0  # a frontend that restarted gets it back
    reporter.report_once()
    assert engine.supervision[-1] == [restarted] and len(engine.supervision) == 3


def test_a_refused_or_unreachable_frontend_is_tried_again(frontend, caplog):
    address, engine = frontend
    wrong = SupervisionReporter(lambda: {address: [SLOT]}, "not-the-token-" + "x" * 20)
    wrong.report_once()
    assert engine.supervision == []
    assert "status=401" in caplog.text
    # A frontend not up yet: the next pass sends it.
    targets = {"127.0.0.1:9": [SLOT]}
    reporter = SupervisionReporter(lambda: dict(targets), TOKEN, resend_interval_s=3600)
    reporter.report_once()
    targets.pop("127.0.0.1:9")
    targets[address] = [SLOT]
    reporter.report_once()
    assert engine.supervision == [[SLOT]]


def test_the_loop_survives_a_failing_collection_and_stops_on_request(frontend):
    address, engine = frontend
    calls = []

    def collect():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the API server hiccuped")
        return {address: [SLOT]}

    stop = threading.Event()
    reporter = SupervisionReporter(collect, TOKEN, poll_interval_s=0.01)
    thread = threading.Thread(target=reporter.run, args=(stop,))
    thread.start()
    deadline = threading.Event()
    for _ in range(500):
        if engine.supervision:
            break
        deadline.wait(0.01)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert engine.supervision[0] == [SLOT] and len(calls) >= 2


def test_each_pass_that_read_the_platform_marks_the_reporter_alive(frontend, tmp_path):
    address, _engine = frontend
    alive = tmp_path / "alive"
    assert not is_alive(str(alive))

    def failing():
        raise RuntimeError("the Docker socket is gone")

    SupervisionReporter(failing, TOKEN, alive_file=str(alive)).run(_stopped())
    assert not is_alive(str(alive))  # a pass that could not read the platform proves nothing
    SupervisionReporter(lambda: {address: [SLOT]}, TOKEN, alive_file=str(alive)).report_once()
    assert is_alive(str(alive))
    assert not is_alive(str(alive), stale_after_s=-1)  # stale once older than the bound


def _stopped():
    event = threading.Event()
    event.set()
    return event
