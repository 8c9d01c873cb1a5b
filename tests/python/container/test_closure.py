"""save_closure / load_closure, and the closure runner command the deployers launch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from clipper.container import Prediction
from clipper.container.closure import ClosureModel, load_closure, save_closure

from .wire_frontend import RouterFrontend


def make_closure():
    offset = 100  # captured by value: the runner process has no access to this test module

    def add_offset(inputs):
        return [float(row.sum()) + offset for row in inputs]

    return add_offset


def test_save_closure_writes_func_pkl_and_load_closure_restores_it(tmp_path):
    path = save_closure(make_closure(), tmp_path / "nested" / "dir")
    assert path == tmp_path / "nested" / "dir" / "func.pkl" and path.is_file()
    for location in (path, path.parent):  # the file or its directory
        restored = load_closure(location)
        assert restored([np.array([1.0, 2.0])]) == [103.0]


def test_closure_model_serves_the_function_as_predict_batch():
    model = ClosureModel(lambda inputs: [len(item) for item in inputs])
    assert model.predict_batch(["ab", "c"]) == [2, 1]


def test_save_closure_refuses_non_callables(tmp_path):
    with pytest.raises(TypeError, match="needs a callable"):
        save_closure(42, tmp_path)  # type: ignore[arg-type]


def test_load_closure_refuses_a_pickle_that_is_not_a_function(tmp_path):
    import cloudpickle

    (tmp_path / "func.pkl").write_bytes(cloudpickle.dumps({"not": "callable"}))
    with pytest.raises(TypeError, match="not a function"):
        load_closure(tmp_path)


@pytest.fixture
def frontend() -> Iterator[RouterFrontend]:
    peer = RouterFrontend()
    yield peer
    peer.close()


def test_closure_runner_serves_a_saved_closure_until_sigterm(frontend, tmp_path):
    path = save_closure(make_closure(), tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clipper.container.closure_runner",
            "--func-path",
            str(path),
            "--name",
            "adder",
            "--version",
            "1",
            "--input-type",
            "doubles",
            "--frontend",
            frontend.address,
            "--replica-id",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        register = frontend.wait_for("register", timeout_s=20)
        response = frontend.predict(
            register.routing_id, 1, "doubles", np.array([[1.0, 2.0], [3.0, 0.0]])
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert register.fields["model_name"] == "adder" and register.fields["replica_id"] == 0
    assert response == {
        "batch_id": 1,
        "outputs": ["103.0", "103.0"],
        "error": None,
        "confidences": [],
    }
    assert process.returncode == 0, stderr


def test_a_closure_reports_confidences_through_the_runner(frontend, tmp_path):
    def sure_of_small_sums(inputs):
        # A Prediction for each row, bare output for empty ones: both pass through unchanged.
        return [
            Prediction(float(row.sum()), 1.0 / (1.0 + abs(float(row.sum()))))
            if row.size
            else "empty"
            for row in inputs
        ]

    path = save_closure(sure_of_small_sums, tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clipper.container.closure_runner",
            "--func-path",
            str(path),
            "--name",
            "sure",
            "--version",
            "1",
            "--input-type",
            "doubles",
            "--frontend",
            frontend.address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        register = frontend.wait_for("register", timeout_s=20)
        rows = [np.array([1.0, 2.0]), np.array([]), np.array([0.0])]
        response = frontend.predict(register.routing_id, 1, "doubles", rows)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert response == {
        "batch_id": 1,
        "outputs": ["3.0", "empty", "0.0"],
        "error": None,
        "confidences": [0.25, 1.0, 1.0],
    }
    assert process.returncode == 0, stderr


def test_closure_runner_reports_a_missing_file(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipper.container.closure_runner",
            "--func-path",
            str(tmp_path / "absent.pkl"),
            "--name",
            "m",
            "--version",
            "1",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "event=closure_load_failed" in result.stderr and "absent.pkl" in result.stderr
