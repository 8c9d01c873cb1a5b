"""Replica authentication on the RPC port (ZeroMQ CURVE), against a real local cluster: processes
without the cluster's keys never register and never see a query; the cluster's own replicas, and one
added by hand with the credentials file, serve every query."""

import contextlib
import stat
import subprocess
import sys
import threading
import time

import e2e_models
import flatbuffers
import pytest
import zmq
from e2e_support import free_ports, model_answer, predict, start_cluster, wait_for

from clipper import ClipperConnection, LocalContainerManager
from clipper.container import ContainerOptions, Model, ModelServer, ReplicaCredentials
from clipper.container.closure import save_closure
from clipper.container.codec import InputType, encode_predict_response, encode_register
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import ClipperException
from clipper.management.frontend import FrontendOptions

pytest.importorskip("clipper_native._core", reason="the native engine clipper_native._core (built by pip install .)")

SLO_MICROS = 20_000_000
QUERIES = 200


class RecordingModel(Model):
    """A rogue's model: remembers every input it is sent and answers 666."""

    def __init__(self):
        self.seen = []

    def predict_batch(self, inputs):
        self.seen.extend(list(row) for row in inputs)
        return ["666.0"] * len(inputs)


class RogueReplica:
    """A replica built with the real SDK, serving on a thread, registering as `model`."""

    def __init__(self, rpc_addr, model, credentials):
        self.model = RecordingModel()
        options = ContainerOptions(
            model_name=model,
            model_version="1",
            input_type="doubles",
            frontend_address=f"tcp://{rpc_addr}",
            credentials=credentials,
        )
        self.server = ModelServer(self.model, options)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.stop()
        self.thread.join(timeout=10)


class RawRogue:
    """A bare DEALER that registers and pushes answers for batch ids it guesses, as fast as it can."""

    def __init__(self, rpc_addr, credentials):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if credentials is not None:
            credentials.apply(self.socket)
        self.socket.connect(f"tcp://{rpc_addr}")
        self.received = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        register = bytes(
            encode_register(flatbuffers.Builder(256), "sum-model", "1", InputType.DOUBLES)
        )
        batch_id = 0
        while not self._stop.is_set():
            for _ in range(20):
                for message in (register, encode_predict_response(batch_id, ["666.0"])):
                    with contextlib.suppress(zmq.Again):  # not connected: queued or dropped
                        self.socket.send(message, zmq.NOBLOCK)
                batch_id += 1
            while self.socket.poll(0, zmq.POLLIN):
                self.socket.recv()
                self.received += 1
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=10)
        self.socket.close(linger=0)
        self.context.term()


def _random_credentials(server_public_key, client_public_key=None):
    public, secret = (key.decode() for key in zmq.curve_keypair())
    return ReplicaCredentials(server_public_key, client_public_key or public, secret)


@pytest.fixture
def conn(tmp_path):
    conn = start_cluster(tmp_path, "replica-auth")
    try:
        yield conn
    finally:
        conn.stop_all()


def test_processes_without_the_clusters_keys_never_register_nor_receive_a_query(conn, caplog):
    conn.register_application("sum", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("sum", "sum-model")
    state_dir = conn.cm.state_dir
    for name in ("replica_credentials.json", "rpc_server_keys.json"):
        assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600
    genuine = ReplicaCredentials.from_file(state_dir / "replica_credentials.json")
    server_key = genuine.server_public_key
    rpc_addr = conn.cm.get_rpc_addr()
    rogues = [
        RogueReplica(rpc_addr, "sum-model", None),  # no keys at all
        RogueReplica(rpc_addr, "sum-model", _random_credentials(server_key)),  # its own keys
        # The admitted public key without its secret: the handshake cannot complete.
        RogueReplica(
            rpc_addr, "sum-model", _random_credentials(server_key, genuine.client_public_key)
        ),
    ]
    raw_rogues = [RawRogue(rpc_addr, None), RawRogue(rpc_addr, _random_credentials(server_key))]
    try:
        time.sleep(1.0)  # every rogue has had time to connect and register
        answers = []
        for i in range(QUERIES):
            status, answer, _ = predict(conn, "sum", {"input": [float(i), 1.0]})
            answers.append((status, answer))
        replicas = conn.get_all_model_replicas(verbose=True)
    finally:
        for rogue in rogues + raw_rogues:
            rogue.stop()
    assert all(status == 200 for status, _ in answers)
    assert [answer["output"] for _, answer in answers] == [float(i) + 1.0 for i in range(QUERIES)]
    assert not any(answer["default"] for _, answer in answers)
    assert [rogue.model.seen for rogue in rogues] == [[], [], []]
    assert [rogue.received for rogue in raw_rogues] == [0, 0]
    assert len([r for r in replicas if r["model_name"] == "sum-model"]) == 1  # only the genuine one
    log = conn.cm.frontend_log_path.read_text()
    assert "event=replica_refused" in log
    # Each rogue SDK replica says why it is not serving, and what to do.
    refusals = [
        r.getMessage() for r in caplog.records if "event=frontend_refused_replica" in r.getMessage()
    ]
    assert any("requires replica credentials" in message for message in refusals)
    assert any("did not admit this replica's key" in message for message in refusals)


def test_a_replica_added_by_hand_registers_with_the_credentials_file(conn, tmp_path):
    conn.register_application("external", "doubles", "-1.0", SLO_MICROS)
    conn.register_model("external-model", "1", "doubles")
    conn.link_model_to_app("external", "external-model")
    save_closure(e2e_models.sum_of_each, tmp_path / "external")
    command = [
        sys.executable, "-m", "clipper.container.closure_runner",
        "--func-path", str(tmp_path / "external"),
        "--name", "external-model", "--version", "1", "--input-type", "doubles",
        "--frontend", f"tcp://{conn.cm.get_rpc_addr()}",
    ]  # fmt: skip
    credentials = conn.cm.state_dir / "replica_credentials.json"
    replica = subprocess.Popen(
        [*command, "--rpc-credentials-file", str(credentials)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        assert model_answer(conn, "external", {"input": [2.0, 2.0]})["output"] == 4.0
    finally:
        replica.terminate()
        replica.wait(timeout=15)
    # The same file in the environment works too; a copy others may read is refused.
    leaked = tmp_path / "leaked.json"
    leaked.write_text(credentials.read_text())
    leaked.chmod(0o644)
    refused = subprocess.run(
        [*command, "--rpc-credentials-file", str(leaked)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "readable or writable by other users" in refused.stderr


def test_unauthenticated_replicas_only_when_asked_for(tmp_path):
    query, management, rpc, metrics = free_ports(4)
    manager = LocalContainerManager(
        cluster_name="open-replicas",
        clipper_query_port=query,
        clipper_management_port=management,
        clipper_rpc_port=rpc,
        prometheus_port=metrics,
        state_dir=tmp_path / "open-replicas",
        heartbeat_timeout_millis=1000,
    )
    conn = ClipperConnection(manager, replica_start_timeout_s=60)
    conn.start_clipper(allow_unauthenticated_replicas=True)
    try:
        conn.register_application("plain", "doubles", "-1.0", SLO_MICROS)
        conn.register_model("plain-model", "1", "doubles")
        conn.link_model_to_app("plain", "plain-model")
        old = RogueReplica(conn.cm.get_rpc_addr(), "plain-model", None)  # built without keys
        try:
            wait_for(lambda: predict(conn, "plain", {"input": [1.0]})[1]["default"] is False)
            assert old.model.seen  # served: that is what the option is for
        finally:
            old.stop()
        assert "event=replica_auth_disabled" in conn.cm.frontend_log_path.read_text()
        # The cluster's own replicas start without keys then, and serve.
        conn.register_application("sum", "doubles", "-1.0", SLO_MICROS)
        deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
        conn.link_model_to_app("sum", "sum-model")
        assert model_answer(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0
    finally:
        conn.stop_all()


def test_unauthenticated_replicas_are_refused_off_loopback():
    with pytest.raises(ClipperException, match="refusing to accept unauthenticated replicas on"):
        FrontendOptions(bind_address="0.0.0.0", allow_unauthenticated_replicas=True).validate()
    FrontendOptions(bind_address="127.0.0.1", allow_unauthenticated_replicas=True).validate()
