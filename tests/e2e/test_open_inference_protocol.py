"""The Open Inference Protocol (KServe v2, REST) on the query port, driven by the unchanged
`tritonclient[http]` from PyPI against a real cluster: server and model metadata and readiness, infer
with JSON tensors and with the binary-data extension, versions, an app with two models (its selection
policy picks), a model reached under its own name, the SLO's default, and errors in the protocol's
format with their status codes (the server keeps serving after each)."""

import http.client
import json
import struct

import e2e_models
import numpy as np
import pytest
import tritonclient.http as triton
from e2e_support import model_answer, start_cluster, wait_for
from tritonclient.utils import InferenceServerException

from clipper.deployers.python import deploy_python_closure

SLO_MICROS = 20_000_000
LATE_SLO_MICROS = 100_000


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(tmp_path_factory.mktemp("oip"), "oip")
    try:
        conn.register_application("sum", "doubles", "-1.0", SLO_MICROS)
        # Version 2 first, so version 1 is the current one the app serves.
        deploy_python_closure(conn, "sum-model", "2", "doubles", e2e_models.label_plus_one)
        deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
        conn.link_model_to_app("sum", "sum-model")
        conn.register_application("shout", "strings", "none", SLO_MICROS)
        deploy_python_closure(conn, "shout-model", "1", "strings", e2e_models.shout)
        conn.link_model_to_app("shout", "shout-model")
        conn.register_application("shout-bytes", "bytes", "none", SLO_MICROS)
        deploy_python_closure(conn, "shout-bytes-model", "1", "bytes", e2e_models.shout)
        conn.link_model_to_app("shout-bytes", "shout-bytes-model")
        # Two models behind one app, picked by the app's policy; "right" is also served by its own
        # name, and an app named "wrong" hides the model of that name.
        deploy_python_closure(conn, "right", "1", "doubles", e2e_models.label_of_first)
        deploy_python_closure(conn, "wrong", "1", "doubles", e2e_models.label_plus_one)
        conn.register_application("pick", "doubles", "-1", SLO_MICROS)
        conn.set_selection_policy("pick", "ab", weights={"wrong": 1.0})
        conn.link_model_to_app("pick", "right")
        conn.link_model_to_app("pick", "wrong")
        conn.register_application("wrong", "doubles", "-1", SLO_MICROS)
        conn.link_model_to_app("wrong", "right")
        # A model that fails on negative inputs, and one slower than its app's SLO.
        conn.register_application("strict", "doubles", "-1.0", SLO_MICROS)
        deploy_python_closure(conn, "strict-model", "1", "doubles", e2e_models.fail_on_negative)
        conn.link_model_to_app("strict", "strict-model")
        # The same failure behind an ensemble and a cascade: two models that both refuse negatives.
        deploy_python_closure(conn, "strict-model-b", "1", "doubles", e2e_models.fail_on_negative)
        for app, policy in (("strict-ensemble", "exp4"), ("strict-cascade", "cascade")):
            conn.register_application(app, "doubles", "-1.0", SLO_MICROS)
            conn.set_selection_policy(app, policy)
            conn.link_model_to_app(app, "strict-model")
            conn.link_model_to_app(app, "strict-model-b")
        conn.register_application("late", "doubles", "-1.0", LATE_SLO_MICROS)
        deploy_python_closure(conn, "sleepy", "1", "doubles", e2e_models.sleep_300_ms)
        conn.link_model_to_app("late", "sleepy")
        for app, body in (("sum", {"input": [0.0]}), ("shout", {"input": "a"}), ("pick", {"input": [0.0]}),
                          ("wrong", {"input": [0.0]}), ("strict", {"input": [0.0]}),
                          ("strict-ensemble", {"input": [0.0]}), ("strict-cascade", {"input": [0.0]})):  # fmt: skip
            model_answer(conn, app, body, timeout_s=60)
        yield conn
    finally:
        conn.stop_all()


@pytest.fixture
def client(conn):
    client = triton.InferenceServerClient(conn.get_query_addr(), network_timeout=30.0)
    yield client
    client.close()


def request(conn, method, path, body=b"", headers=None):
    """Raw HTTP: (status, headers, body bytes)."""
    host, port = conn.get_query_addr().rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def doubles_input(rows, binary):
    tensor = triton.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def assert_refused(call, status, fragment):
    with pytest.raises(InferenceServerException) as refused:
        call()
    assert refused.value.status() == str(status), refused.value
    assert fragment in refused.value.message(), refused.value


def test_server_metadata_liveness_and_readiness(conn, client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "clipper"
    assert "binary_tensor_data" in metadata["extensions"]
    status, _, body = request(conn, "GET", "/v2/health/live")
    assert (status, json.loads(body)) == (200, {"live": True})


def test_model_metadata_follows_the_input_type_and_versions(client):
    metadata = client.get_model_metadata("sum")
    assert metadata["name"] == "sum"
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, -1]}]
    assert [output["name"] for output in metadata["outputs"]] == ["output", "default"]
    assert client.get_model_metadata("sum", "2")["versions"] == ["2"]
    assert client.get_model_metadata("shout")["inputs"][0] == {
        "name": "input",
        "datatype": "BYTES",
        "shape": [-1],
    }
    assert client.get_model_metadata("pick")["versions"] == []  # two models: no version to name
    assert client.get_model_metadata("right")["versions"] == ["1"]  # a model under its own name
    assert (
        client.is_model_ready("sum")
        and client.is_model_ready("sum", "2")
        and client.is_model_ready("right")
    )
    assert not client.is_model_ready("nobody")
    assert_refused(lambda: client.get_model_metadata("nobody"), 404, "unknown model 'nobody'")
    assert_refused(lambda: client.get_model_metadata("sum", "9"), 404, "no version '9'")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_answers_each_row_of_the_batch(client, binary):
    rows = np.array([[1.0, 2.0, 3.5], [4.0, 5.0, 6.0]])
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary) for name in ("output", "default")
    ]
    result = client.infer("sum", [doubles_input(rows, binary)], outputs=outputs, request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("output"), [6.5, 15.0])
    np.testing.assert_array_equal(result.as_numpy("default"), [False, False])
    response = result.get_response()
    assert (response["model_name"], response["id"]) == ("sum", "r-1")
    assert response["parameters"]["clipper_model"] == "sum-model:1"
    output = result.get_output("output")
    assert ("binary_data_size" in output.get("parameters", {})) is binary
    assert ("data" in output) is not binary


def test_infer_without_named_outputs_answers_both_in_binary(client):
    result = client.infer("sum", [doubles_input(np.array([[2.0, 2.0]]), binary=True)])
    np.testing.assert_array_equal(result.as_numpy("output"), [4.0])
    np.testing.assert_array_equal(result.as_numpy("default"), [False])
    assert result.get_output("output")["parameters"]["binary_data_size"] == 8


def test_a_named_version_answers_from_that_version(client):
    result = client.infer(
        "sum", [doubles_input(np.array([[7.0, 1.0]]), binary=True)], model_version="2"
    )
    np.testing.assert_array_equal(result.as_numpy("output"), [8.0])  # version 2 answers first + 1
    assert result.get_response()["model_version"] == "2"
    assert_refused(
        lambda: client.infer("sum", [doubles_input(np.array([[1.0]]), True)], model_version="9"),
        404,
        "no version '9'",
    )


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_strings_and_bytes_travel_as_bytes_tensors(client, binary):
    texts = triton.InferInput("input", [2], "BYTES")
    texts.set_data_from_numpy(np.array(["hi", "héllo"], dtype=np.object_), binary_data=binary)
    result = client.infer(
        "shout", [texts], outputs=[triton.InferRequestedOutput("output", binary_data=binary)]
    )
    # tritonclient gives JSON BYTES as str and binary BYTES as bytes.
    texts_out = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("output")]
    assert texts_out == ["HI", "HÉLLO"]
    assert result.get_output("output")["datatype"] == "BYTES"

    raw = triton.InferInput("input", [2, 3], "UINT8")
    raw.set_data_from_numpy(
        np.frombuffer(b"abcxyz", dtype=np.uint8).reshape(2, 3), binary_data=binary
    )
    result = client.infer("shout-bytes", [raw])
    assert list(result.as_numpy("output")) == [b"ABC", b"XYZ"]


def test_the_apps_selection_policy_picks_the_model(conn, client):
    rows = np.array([[3.0], [10.0]])
    result = client.infer("pick", [doubles_input(rows, binary=True)])
    np.testing.assert_array_equal(result.as_numpy("output"), [4.0, 11.0])  # "wrong": first + 1
    assert result.get_response()["parameters"]["clipper_model"] == "wrong:1"
    conn.set_selection_policy("pick", "ab", weights={"right": 1.0})

    def answered_by_right():
        answer = client.infer("pick", [doubles_input(rows, binary=True)])
        return answer if answer.get_response()["parameters"]["clipper_model"] == "right:1" else None

    result = wait_for(answered_by_right, what="the new split reaching the engine")
    np.testing.assert_array_equal(result.as_numpy("output"), [3.0, 10.0])
    assert_refused(
        lambda: client.infer("pick", [doubles_input(rows, True)], model_version="1"),
        400,
        "links 2 models",
    )


def test_a_model_is_reachable_by_its_name_unless_an_app_has_it(client):
    result = client.infer("right", [doubles_input(np.array([[5.0]]), binary=False)])
    np.testing.assert_array_equal(result.as_numpy("output"), [5.0])
    assert result.get_response()["model_version"] == "1"
    # The app named "wrong" links the model "right": the app answers, not the model "wrong".
    result = client.infer("wrong", [doubles_input(np.array([[5.0]]), binary=False)])
    np.testing.assert_array_equal(result.as_numpy("output"), [5.0])


def test_a_failing_or_late_model_answers_the_apps_default_and_fails_a_model_request(client):
    negative = doubles_input(np.array([[-1.0], [2.0]]), binary=True)
    result = client.infer("strict", [negative])
    np.testing.assert_array_equal(result.as_numpy("default"), [True, True])
    np.testing.assert_array_equal(result.as_numpy("output"), [-1.0, -1.0])
    assert "strict-model:1" in result.get_response()["parameters"]["default_explanation"]
    # The model under its own name has no default: the request fails.
    assert_refused(lambda: client.infer("strict-model", [negative]), 500, "strict-model:1")

    late = doubles_input(np.array([[1.0]]), binary=False)
    result = client.infer("late", [late])
    assert result.as_numpy("default").tolist() == [True]
    assert "100000 microseconds" in result.get_response()["parameters"]["default_explanation"]


@pytest.mark.parametrize(
    ("app", "explanation"),
    [("strict", "Model strict-model:1 failed"),
     ("strict-ensemble", "No model of the ensemble answered: Model strict-model:1 failed"),
     ("strict-cascade", "No model of the cascade answered: Model strict-model:1 failed")],
)  # fmt: skip
def test_an_app_answers_its_default_where_its_models_failed_whatever_its_policy(client, app, explanation):
    # One rule for every application, one model or several: a row no model answered gets the app's
    # default (marked in the `default` output, explained in `default_explanation`); only a model
    # served under its own name, which has no default, fails the request. (The models fail a whole
    # batch with a negative input in it, so both rows fail.)
    rows = doubles_input(np.array([[-1.0], [2.0]]), binary=True)
    result = client.infer(app, [rows])
    np.testing.assert_array_equal(result.as_numpy("default"), [True, True])
    np.testing.assert_array_equal(result.as_numpy("output"), [-1.0, -1.0])
    healthy = client.infer(app, [doubles_input(np.array([[4.0]]), binary=False)])
    assert healthy.as_numpy("default").tolist() == [False]
    assert healthy.as_numpy("output").tolist() == [4.0]
    text = result.get_response()["parameters"]["default_explanation"]
    assert text.startswith(explanation), text
    assert "error_id=" in text  # the model's own message stays in the frontend's log
    assert_refused(lambda: client.infer("strict-model-b", [rows]), 500, "strict-model-b:1")


def test_errors_use_the_protocols_format_and_status_codes(conn, client):
    wrong_type = triton.InferInput("input", [1, 2], "FP32")
    wrong_type.set_data_from_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
    assert_refused(
        lambda: client.infer("sum", [wrong_type]), 400, "takes FP64 tensors of shape [batch, n]"
    )
    flat = triton.InferInput("input", [3], "FP64")
    flat.set_data_from_numpy(np.array([1.0, 2.0, 3.0]))
    assert_refused(lambda: client.infer("sum", [flat]), 400, "has shape [3]")
    assert_refused(lambda: client.infer("nobody", [flat]), 404, "unknown model 'nobody'")
    unknown_output = [triton.InferRequestedOutput("probabilities")]
    assert_refused(
        lambda: client.infer(
            "sum", [doubles_input(np.array([[1.0]]), False)], outputs=unknown_output
        ),
        400,
        "unknown output 'probabilities'",
    )

    infer = "/v2/models/sum/infer"

    def tensor_body(shape, **fields):
        return json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": "FP64", **fields}]})

    header = tensor_body([1, 2], parameters={"binary_data_size": 1000}).encode()
    overrun = {"Inference-Header-Content-Length": str(len(header))}
    cases = [
        ("POST", infer, b'{"inputs": [', {}, 400, "invalid"),
        ("POST", infer, b"[" * 100_000, {}, 400, "nest deeper than 128"),
        ("POST", infer, tensor_body([2, 2], data=[1, 2, 3]), {}, 400, "but its shape holds 4"),
        ("POST", infer, tensor_body([2**40, 2**40], data=[1]), {}, 400, "more elements"),
        ("POST", infer, header + struct.pack("<2d", 1, 2), overrun, 400, "only 16 bytes follow"),
        (
            "POST",
            infer,
            b"{}",
            {"Inference-Header-Content-Length": "99"},
            400,
            "more than the body",
        ),
        ("GET", infer, b"", {}, 405, "POST"),
        ("POST", "/v2/models/sum", b"", {}, 405, "GET"),
        ("GET", "/v2/models/sum/config", b"", {}, 404, "unknown Open Inference Protocol path"),
        ("GET", "/v2/models/pick/ready", b"", {}, 200, "ready"),
    ]
    for method, path, body, headers, status, fragment in cases:
        answer_status, answer_headers, answer = request(conn, method, path, body, headers)
        assert answer_status == status, (path, body[:80], answer)
        assert answer_headers["Content-Type"] == "application/json"
        assert fragment in json.loads(answer).get("error", json.dumps(json.loads(answer))), (
            path,
            answer,
        )
    # Still serving, both APIs.
    result = client.infer("sum", [doubles_input(np.array([[1.0, 1.0]]), binary=True)])
    np.testing.assert_array_equal(result.as_numpy("output"), [2.0])
    assert model_answer(conn, "sum", {"input": [1.0, 1.0]})["output"] == 2.0
