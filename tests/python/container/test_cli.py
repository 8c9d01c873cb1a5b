"""`clipper-model` (python -m clipper.container) in a real subprocess, served to a real ROUTER peer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clipper.container.cli import build_parser, load_model

from .wire_frontend import RouterFrontend

REPOSITORY = Path(__file__).resolve().parents[3]

MODEL_SOURCE = textwrap.dedent(
    """
    import numpy as np
    from clipper.container import Model

    class Scaler(Model):
        def __init__(self):
            self.factor = 3

        def predict_batch(self, inputs):
            if inputs[0][0] < 0:
                raise ArithmeticError("negative input")
            return (inputs * self.factor).sum(axis=1)

    not_a_model = 42
    """
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "scaler_models.py").write_text(MODEL_SOURCE)
    return tmp_path


@pytest.fixture
def frontend() -> Iterator[RouterFrontend]:
    peer = RouterFrontend()
    yield peer
    peer.close()


def launch(arguments: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.Popen(
        [sys.executable, "-m", "clipper.container", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def stop(process: subprocess.Popen) -> tuple[int, str]:
    """SIGTERM, then the exit status and stderr; kills the process if it outlives 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"the container ignored SIGTERM for 10 s; stderr:\n{stderr}") from None
    return process.returncode, stderr


def test_serves_a_model_class_until_sigterm(frontend, model_dir):
    process = launch(
        [
            "--model",
            "scaler_models:Scaler",
            "--model-dir",
            str(model_dir),
            "--name",
            "scaler",
            "--version",
            "2",
            "--input-type",
            "doubles",
            "--frontend",
            frontend.address,
            "--replica-id",
            "5",
            "--heartbeat-interval",
            "0.05",
        ]
    )
    try:
        register = frontend.wait_for("register", timeout_s=20)
        assert register.fields["model_name"] == "scaler"
        assert register.fields["model_version"] == "2"
        assert register.fields["replica_id"] == 5
        frontend.wait_for("heartbeat")
        replica = register.routing_id
        answered = frontend.predict(replica, 1, "doubles", np.array([[1.0, 2.0], [0.5, 0.5]]))
        failed = frontend.predict(replica, 2, "doubles", np.array([[-1.0, 0.0]]))
        again = frontend.predict(replica, 3, "doubles", np.array([[2.0, 0.0]]))
    finally:
        status, stderr = stop(process)
    assert answered == {"batch_id": 1, "outputs": ["9.0", "3.0"], "error": None, "confidences": []}
    assert failed["error"] == "ArithmeticError: negative input"
    assert again["outputs"] == ["6.0"]
    assert status == 0, stderr
    assert "event=predict_failed model=scaler version=2 batch=2" in stderr
    assert "event=stopped model=scaler version=2" in stderr


def test_takes_its_identity_from_clippers_environment_variables(frontend, model_dir):
    process = launch(
        ["--model", "scaler_models:Scaler"],
        env={
            "CLIPPER_MODEL_NAME": "from-env",
            "CLIPPER_MODEL_VERSION": "9",
            "CLIPPER_INPUT_TYPE": "floats",
            "CLIPPER_IP": "127.0.0.1",
            "CLIPPER_PORT": str(frontend.port),
        },
        cwd=model_dir,  # the current directory is searched for the model's module by default
    )
    try:
        register = frontend.wait_for("register", timeout_s=20)
        response = frontend.predict(
            register.routing_id, 4, "floats", np.array([[0.5, 0.25]], dtype=np.float32)
        )
    finally:
        status, stderr = stop(process)
    assert register.fields["model_name"] == "from-env"
    assert register.fields["model_version"] == "9"
    assert register.fields["input_type"] == 2  # floats
    assert register.fields["replica_id"] == -1
    assert response["outputs"] == ["2.25"]
    assert status == 0, stderr


def test_serves_the_confident_model_example_with_its_confidences(frontend):
    # examples/confident_model.py, as its docstring says to serve it.
    process = launch(
        [
            "--model",
            "confident_model:NearestCentroid",
            "--model-dir",
            str(REPOSITORY / "examples"),
            "--name",
            "pets",
            "--version",
            "1",
            "--input-type",
            "doubles",
            "--frontend",
            frontend.address,
        ]
    )
    try:
        replica = frontend.wait_for("register", timeout_s=20).routing_id
        # On the cat centroid, halfway between cat and dog, on the bird centroid.
        points = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
        answered = frontend.predict(replica, 1, "doubles", points)
        failed = frontend.predict(replica, 2, "doubles", np.array([[1.0, 2.0, 3.0]]))
    finally:
        status, stderr = stop(process)
    assert answered["error"] is None
    assert answered["outputs"] == ["cat", "cat", "bird"]
    sure_cat, unsure, sure_bird = answered["confidences"]
    assert sure_cat > 0.9 and sure_bird > 0.9
    assert 0.4 < unsure < 0.55  # cat and dog tie; bird is further away
    assert failed["error"].startswith("ValueError: each input must be 2 numbers (x, y)")
    assert status == 0, stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--model", "scaler_models:Scaler", "--version", "1"],
            "model_name (or CLIPPER_MODEL_NAME)",
        ),
        (["--model", "scaler_models", "--name", "m", "--version", "1"], "module.path:ClassName"),
        (
            ["--model", "scaler_models:not_a_model", "--name", "m", "--version", "1"],
            "is not a model",
        ),
        (["--model", "scaler_models:Missing", "--name", "m", "--version", "1"], "no attribute"),
        (
            [
                "--model",
                "scaler_models:Scaler",
                "--name",
                "m",
                "--version",
                "1",
                "--input-type",
                "x",
            ],
            "unknown input type 'x'",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_message(model_dir, arguments, message):
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLIPPER_")}
    result = subprocess.run(
        [sys.executable, "-m", "clipper.container", "--model-dir", str(model_dir), *arguments],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_help_describes_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "clipper.container", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for option in (
        "--model MODULE:CLASS",
        "--model-dir",
        "--name",
        "--version",
        "--input-type",
        "--frontend",
        "--replica-id",
        "--heartbeat-interval",
        "--log-level",
        "CLIPPER_MODEL_NAME",
        "CLIPPER_IP",
    ):
        assert option in result.stdout, option


def test_load_model_instantiates_classes_and_accepts_instances(model_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(model_dir))
    model = load_model("scaler_models:Scaler")
    assert type(model).__name__ == "Scaler" and model.factor == 3
    with pytest.raises(ModuleNotFoundError):
        load_model("no_such_module_anywhere:Model")


def test_the_parser_requires_a_model():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--name", "m"])


def test_the_shm_spin_flag_reaches_the_options_and_beats_the_environment(monkeypatch):
    from clipper.container.cli import options_from_arguments

    monkeypatch.setenv("CLIPPER_SHM_SPIN_MICROS", "5")
    base = ["--model", "m:M", "--name", "m", "--version", "1"]
    assert options_from_arguments(build_parser().parse_args(base)).shm_spin_micros == 5
    flagged = build_parser().parse_args([*base, "--shm-spin-micros", "40"])
    assert options_from_arguments(flagged).shm_spin_micros == 40
    with pytest.raises(ValueError, match="shm_spin_micros"):
        options_from_arguments(build_parser().parse_args([*base, "--shm-spin-micros", "-3"]))
