"""deploy_python_closure and create_endpoint: what they hand to ClipperConnection, in Clipper's shape.
(Serving the deployed closure end to end is covered in tests/e2e.)"""

from pathlib import Path

import pytest

from clipper.deployers.python import create_endpoint, deploy_python_closure

closure = pytest.importorskip("clipper.container.closure", reason="the container SDK's clipper.container.closure (installed with this package)")


class RecordingConnection:
    def __init__(self):
        self.calls = []

    def build_and_deploy_model(self, name, version, input_type, model_data_path, **options):
        func = closure.load_closure(Path(model_data_path) / "func.pkl")
        self.calls.append(("build_and_deploy_model", name, version, input_type, func, options))

    def register_application(self, name, input_type, default_output, slo_micros):
        self.calls.append(("register_application", name, input_type, default_output, slo_micros))

    def link_model_to_app(self, app_name, model_name):
        self.calls.append(("link_model_to_app", app_name, model_name))


def test_the_closure_is_saved_with_cloudpickle_and_deployed():
    offset = 10
    conn = RecordingConnection()
    deploy_python_closure(
        conn, "adder", 2, "doubles", lambda inputs: [x + offset for x in inputs],
        labels=["l"], num_replicas=3, batch_size=16, pkgs_to_install=["six"],
    )  # fmt: skip
    [(_, name, version, input_type, func, options)] = conn.calls
    assert (name, version, input_type) == ("adder", "2", "doubles")
    assert func([1, 2]) == [11, 12]  # a lambda with a captured variable, restored by value
    assert options == {
        "base_image": "default",
        "labels": ["l"],
        "container_registry": None,
        "num_replicas": 3,
        "batch_size": 16,
        "pkgs_to_install": ["six"],
        "max_batch_size": None,
        "batch_wait_timeout_micros": 0,
    }


def test_batching_settings_are_passed_on():
    conn = RecordingConnection()
    deploy_python_closure(
        conn, "m", 1, "doubles", len, max_batch_size=32, batch_wait_timeout_micros=200
    )
    options = conn.calls[0][-1]
    assert (options["max_batch_size"], options["batch_wait_timeout_micros"]) == (32, 200)
    create_endpoint(conn, "e", "doubles", len, batch_size=4, max_batch_size=8)
    options = conn.calls[-2][-1]
    assert (options["batch_size"], options["max_batch_size"]) == (4, 8)


def test_create_endpoint_registers_deploys_and_links_under_one_name():
    conn = RecordingConnection()
    create_endpoint(conn, "echo", "strings", lambda inputs: list(inputs))
    assert [call[0] for call in conn.calls] == [
        "register_application",
        "build_and_deploy_model",
        "link_model_to_app",
    ]
    assert conn.calls[0] == ("register_application", "echo", "strings", "None", 3000000)
    assert conn.calls[1][1:4] == ("echo", "1", "strings")
    assert conn.calls[2] == ("link_model_to_app", "echo", "echo")
