"""The serving loop against a real ZeroMQ ROUTER peer on loopback (tests play the frontend)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from clipper.container import ContainerOptions, Model, ModelServer, Prediction
from clipper.container import server as server_module
from clipper.container.codec import InputType

from .wire_frontend import RouterFrontend


class RowSums(Model):
    """Sums each row; raises when a row starts with -1; returns one output too few when it starts
    with -2; records whether it was handed a view of the received ZeroMQ frame."""

    def __init__(self) -> None:
        self.saw_frame_view: list[bool] = []

    def predict_batch(self, inputs: Any) -> list[Any]:
        self.saw_frame_view.append(_views_a_zmq_frame(inputs))
        if inputs[0][0] == -1:
            raise ValueError("row starts with -1")
        sums = [float(np.sum(row)) for row in inputs]
        return sums[:-1] if inputs[0][0] == -2 else sums


def _views_a_zmq_frame(array: Any) -> bool:
    owner = array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    # numpy keeps the frame itself as the base of an ndarray made over its memoryview.
    if isinstance(owner, memoryview):
        owner = owner.obj
    return isinstance(owner, zmq.Frame)


class Running:
    """A ModelServer serving on its own thread."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert server.wait_until_serving(10), "the server did not start"

    def _serve(self) -> None:
        try:
            self.server.serve_forever()
        except Exception as exc:  # noqa: BLE001  (surfaced by stop())
            self.errors.append(exc)

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "serve_forever did not return within 5 s of stop()"
        assert not self.errors, self.errors


@pytest.fixture(autouse=True, params=["native", "python"])
def codec_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the native receive/reply path and with the pure-Python codec."""
    if request.param == "native":
        if server_module.native is None:
            pytest.skip("the SDK's Cython extension is not built")
    else:
        monkeypatch.setattr(server_module, "native", None)
    return request.param


@pytest.fixture
def frontend() -> Iterator[RouterFrontend]:
    peer = RouterFrontend()
    yield peer
    peer.close()


def start(frontend: RouterFrontend, model: Model, **options: Any) -> Running:
    settings: dict[str, Any] = {
        "model_name": "sums",
        "model_version": "3",
        "input_type": "doubles",
        "frontend_address": frontend.address,
        "heartbeat_interval_s": 0.05,
        "receive_timeout_s": 0.02,
    }
    settings.update(options)
    return Running(ModelServer(model, ContainerOptions(**settings)))


@pytest.fixture
def served(frontend: RouterFrontend) -> Iterator[tuple[Running, RowSums, bytes]]:
    model = RowSums()
    running = start(frontend, model, replica_id=2)
    register = frontend.wait_for("register")
    yield running, model, register.routing_id
    running.stop()


def test_registers_then_heartbeats_name_the_data_socket(frontend, served):
    running, _, data_routing_id = served
    register = frontend.received[0]
    assert register.kind == "register"
    assert register.fields == {
        "model_name": "sums",
        "model_version": "3",
        "input_type": int(InputType.DOUBLES),
        "replica_id": 2,
        "protocol_version": 1,
    }
    assert data_routing_id == running.server.replica_key.encode()
    first = frontend.wait_for("heartbeat", replica_key=running.server.replica_key)
    second = frontend.wait_for("heartbeat", replica_key=running.server.replica_key)
    # Heartbeats come from their own socket, not the data socket.
    assert first.routing_id == second.routing_id != data_routing_id


def test_answers_a_uniform_batch_in_order(frontend, served):
    _, _, replica = served
    batch = np.array([[1.0, 2.0], [3.5, 4.0], [-1.5, 0.0]]) + 10
    response = frontend.predict(replica, 41, "doubles", batch)
    assert response == {
        "batch_id": 41,
        "outputs": ["23.0", "27.5", "18.5"],
        "error": None,
        "confidences": [],
    }


def test_answers_a_ragged_batch(frontend, served):
    _, _, replica = served
    response = frontend.predict(
        replica, 42, "doubles", [np.array([1.0]), np.array([2.0, 3.0, 4.0])]
    )
    assert response["outputs"] == ["1.0", "9.0"]


def test_a_large_batch_reaches_the_model_as_a_view_of_the_received_frame(frontend, served):
    _, model, replica = served
    batch = np.random.default_rng(1).random((4096, 8)) + 1  # 256 KiB: its own libzmq allocation
    response = frontend.predict(replica, 43, "doubles", batch)
    assert model.saw_frame_view == [True]
    np.testing.assert_allclose([float(x) for x in response["outputs"]], batch.sum(axis=1))


def test_an_exception_fails_its_batch_only(frontend, served, caplog):
    _, _, replica = served
    caplog.set_level(logging.ERROR, logger="clipper.container.server")

    failed = frontend.predict(replica, 50, "doubles", np.array([[-1.0, 5.0], [2.0, 2.0]]))
    answered = frontend.predict(replica, 51, "doubles", np.array([[2.0, 5.0]]))

    assert failed == {
        "batch_id": 50,
        "outputs": [],
        "error": "ValueError: row starts with -1",
        "confidences": [],
    }
    assert answered == {"batch_id": 51, "outputs": ["7.0"], "error": None, "confidences": []}
    [record] = [r for r in caplog.records if "event=predict_failed" in r.getMessage()]
    assert "model=sums version=3 batch=50 inputs=2" in record.getMessage()
    assert '"ValueError: row starts with -1"' in record.getMessage()
    assert record.exc_info is not None  # the traceback is logged too


def test_the_wrong_number_of_outputs_is_an_error_response(frontend, served):
    _, _, replica = served
    response = frontend.predict(replica, 60, "doubles", np.array([[-2.0], [1.0], [1.0]]))
    assert response["outputs"] == []
    assert response["error"] == (
        "OutputConversionError: predict_batch returned 2 outputs for a batch of 3 inputs"
    )
    assert frontend.predict(replica, 61, "doubles", np.array([[1.0]]))["outputs"] == ["1.0"]


class SignLabeller(Model):
    """Labels each row by the sign of its sum, as a Prediction whose confidence is the row's first
    value; a row starting with 0 gets a bare output."""

    def predict_batch(self, inputs: Any) -> list[Any]:
        return [
            Prediction("positive" if row.sum() > 0 else "negative", row[0]) if row[0] else "zero"
            for row in inputs
        ]


def test_confidences_reach_the_frontend_and_a_bad_one_fails_its_batch_only(frontend):
    running = start(frontend, SignLabeller())
    try:
        replica = frontend.wait_for("register").routing_id
        reported = frontend.predict(
            replica, 70, "doubles", np.array([[0.25, 1.0], [0.0, -1.0], [0.75, -5.0]])
        )
        refused = frontend.predict(replica, 71, "doubles", np.array([[0.5, 1.0], [1.5, 0.0]]))
        unreported = frontend.predict(replica, 72, "doubles", np.array([[0.0, 1.0]]))
    finally:
        running.stop()
    assert reported == {
        "batch_id": 70,
        "outputs": ["positive", "zero", "negative"],
        "error": None,
        "confidences": [0.25, 1.0, 0.75],
    }
    assert refused["outputs"] == [] and refused["confidences"] == []
    assert refused["error"] == (
        "OutputConversionError: output 1 reports the confidence 1.5; "
        "a confidence must be a finite number from 0 to 1"
    )
    assert unreported == {"batch_id": 72, "outputs": ["zero"], "error": None, "confidences": []}


def test_a_batch_of_another_input_type_is_an_error_response(frontend, served):
    _, model, replica = served
    response = frontend.predict(replica, 70, "strings", ["not", "doubles"])
    assert response["error"] == (
        "WireFormatError: the batch holds input type strings but this replica serves doubles"
    )
    assert model.saw_frame_view == []  # the model never saw it


def test_registers_again_when_the_frontend_forgets_the_replica(frontend, served):
    _, _, replica = served
    frontend.registered = False  # as after a frontend restart
    again = frontend.wait_for("register", timeout_s=5)
    frontend.registered = True
    assert again.routing_id == replica
    assert again.fields["model_name"] == "sums" and again.fields["replica_id"] == 2
    assert frontend.predict(replica, 80, "doubles", np.array([[4.0]]))["outputs"] == ["4.0"]


def test_heartbeats_continue_while_a_batch_runs(frontend):
    release = threading.Event()

    class Slow(Model):
        def predict_batch(self, inputs):
            release.wait(5)
            return ["done"] * len(inputs)

    running = start(frontend, Slow())
    try:
        replica = frontend.wait_for("register").routing_id
        frontend.send_batch(replica, 90, "doubles", np.array([[1.0]]))
        time.sleep(0.05)  # let the batch start
        for _ in range(3):
            frontend.wait_for("heartbeat", timeout_s=2)
        release.set()
        assert frontend.wait_for("response", batch_id=90).fields["outputs"] == ["done"]
    finally:
        release.set()
        running.stop()


@pytest.mark.parametrize(
    ("input_type", "inputs", "expected"),
    [
        ("strings", ["héllo", "", "abc"], ["5", "0", "3"]),
        ("bytes", [b"\x00\x01", b"xyz"], ["2", "3"]),
        ("ints", np.array([[1, 2], [3, 4]], dtype=np.int32), ["2", "2"]),
    ],
)
def test_serves_every_input_type(frontend, input_type, inputs, expected):
    class Lengths(Model):
        def predict_batch(self, batch):
            return [len(item) for item in batch]

    running = start(frontend, Lengths(), input_type=input_type)
    try:
        replica = frontend.wait_for("register").routing_id
        assert frontend.predict(replica, 7, input_type, inputs)["outputs"] == expected
    finally:
        running.stop()


def test_stop_returns_promptly_while_the_frontend_is_gone():
    # Nothing listens on this port: the replica must still start and stop cleanly.
    with zmq.Context() as context, context.socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    running = Running(
        ModelServer(
            RowSums(),
            ContainerOptions("m", "1", frontend_address=f"tcp://127.0.0.1:{port}"),
        )
    )
    time.sleep(0.1)
    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model_name": ""}, "model_name must be a non-empty string"),
        ({"model_version": None}, "model_version must be a non-empty string"),
        ({"input_type": "tensor"}, "input_type: unknown input type 'tensor'"),
        ({"frontend_address": "localhost:7000"}, "frontend_address must be a ZeroMQ endpoint"),
        ({"replica_id": -5}, "replica_id must be -1"),
        ({"heartbeat_interval_s": 0}, "heartbeat_interval_s must be a positive number"),
        ({"shm_spin_micros": -1}, "shm_spin_micros must be an int from 0 to 10000"),
        ({"shm_spin_micros": 10_001}, "shm_spin_micros must be an int from 0 to 10000"),
        ({"shm_spin_micros": 5.0}, "shm_spin_micros must be an int"),
    ],
)
def test_invalid_options_name_the_field(options, message):
    settings = {"model_name": "m", "model_version": "1", **options}
    with pytest.raises(ValueError, match=message):
        ContainerOptions(**settings)


def test_options_fall_back_to_clippers_environment_variables():
    environ = {
        "CLIPPER_MODEL_NAME": "env-model",
        "CLIPPER_MODEL_VERSION": "12",
        "CLIPPER_INPUT_TYPE": "strings",
        "CLIPPER_IP": "10.0.0.5",
        "CLIPPER_PORT": "7100",
        "CLIPPER_REPLICA_ID": "4",
    }
    options = ContainerOptions.from_environment(environ=environ)
    assert (options.model_name, options.model_version, options.input_type) == (
        "env-model",
        "12",
        InputType.STRINGS,
    )
    assert options.frontend_address == "tcp://10.0.0.5:7100"
    assert options.replica_id == 4
    # Arguments win over the environment; unset variables take the defaults.
    explicit = ContainerOptions.from_environment(model_name="arg", environ=environ)
    assert explicit.model_name == "arg" and explicit.model_version == "12"
    defaults = ContainerOptions.from_environment(model_name="m", model_version=1, environ={})
    assert defaults.frontend_address == "tcp://127.0.0.1:7000"
    assert (defaults.input_type, defaults.replica_id, defaults.model_version) == (
        InputType.DOUBLES,
        -1,
        "1",
    )
    assert (
        ContainerOptions.from_environment(
            model_name="m", model_version="1", environ={"CLIPPER_IP": "::1"}
        ).frontend_address
        == "tcp://[::1]:7000"
    )


def test_the_shm_spin_comes_from_its_argument_else_the_environment_else_zero():
    named = {"model_name": "m", "model_version": "1"}
    assert ContainerOptions.from_environment(**named, environ={}).shm_spin_micros == 0
    environ = {"CLIPPER_SHM_SPIN_MICROS": "50"}
    assert ContainerOptions.from_environment(**named, environ=environ).shm_spin_micros == 50
    explicit = ContainerOptions.from_environment(**named, shm_spin_micros=7, environ=environ)
    assert explicit.shm_spin_micros == 7
    with pytest.raises(ValueError, match="CLIPPER_SHM_SPIN_MICROS must be an integer"):
        ContainerOptions.from_environment(**named, environ={"CLIPPER_SHM_SPIN_MICROS": "5us"})


def test_missing_name_and_version_are_reported_together():
    with pytest.raises(ValueError, match=r"model_name \(or CLIPPER_MODEL_NAME\) and model_version"):
        ContainerOptions.from_environment(environ={})


def test_a_model_without_predict_batch_is_refused():
    with pytest.raises(TypeError, match="implement predict_batch"):
        ModelServer(object(), ContainerOptions("m", "1"))  # type: ignore[arg-type]


def test_a_server_serves_once(frontend):
    running = start(frontend, RowSums())
    running.stop()
    with pytest.raises(RuntimeError, match="already served"):
        running.server.serve_forever()
