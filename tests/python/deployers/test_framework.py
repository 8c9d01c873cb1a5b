"""The framework deployers' shared packaging, without a cluster: what each one leaves in the model
directory it hands to build_and_deploy_model, and how its closure loads the model (once, at load)."""

import pickle
import pydoc
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from clipper import ClipperException
from clipper.container.closure import load_closure
from clipper.deployers._framework import FrameworkClosure


class RecordingConnection:
    """Keeps a listing of the model directory and the closure loaded from it, as a replica would."""

    def __init__(self):
        self.calls = []
        self.files = None
        self.closure = None

    def build_and_deploy_model(self, name, version, input_type, model_data_path, **options):
        self.files = sorted(path.name for path in Path(model_data_path).iterdir())
        self.closure = load_closure(model_data_path)
        self.calls.append(("build_and_deploy_model", name, version, input_type, options))

    def register_application(self, name, input_type, default_output, slo_micros):
        self.calls.append(("register_application", name, input_type, default_output, slo_micros))

    def link_model_to_app(self, app_name, model_name):
        self.calls.append(("link_model_to_app", app_name, model_name))


class CountingLoader:
    def __init__(self):
        self.directories = []

    def __call__(self, directory):
        self.directories.append(directory)
        return {"scale": 3}


def scale(model, inputs):
    return [x * model["scale"] for x in inputs]


def test_the_model_is_loaded_once_by_load_closure_and_never_pickled(tmp_path):
    loaded = FrameworkClosure("test", CountingLoader(), scale)
    loaded.load_model_directory(tmp_path)
    assert loaded.model == {"scale": 3}
    assert pickle.loads(cloudpickle.dumps(loaded)).model is None

    closure = FrameworkClosure("test", CountingLoader(), scale)
    (tmp_path / "func.pkl").write_bytes(cloudpickle.dumps(closure))
    restored = load_closure(tmp_path / "func.pkl")
    assert restored([1, 2]) == [3, 6]
    assert restored([4]) == [12]
    assert len(restored.load_model.directories) == 1  # at load, not per batch
    assert restored.load_model.directories[0] == tmp_path


def test_an_unloaded_closure_says_how_to_load_it():
    with pytest.raises(RuntimeError, match="load_closure"):
        FrameworkClosure("test", CountingLoader(), scale)([1])


def test_sklearn_saves_the_estimator_beside_func_pkl():
    sklearn = pytest.importorskip("clipper.deployers.sklearn", reason="clipper.deployers.sklearn (installed with this package)")
    pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0], [1.0]], [1.0, 3.0])
    conn = RecordingConnection()
    sklearn.create_endpoint(conn, "line", "doubles", sklearn_model=model, num_replicas=2)
    assert conn.files == ["func.pkl", "sklearn_model.pkl"]
    assert [call[0] for call in conn.calls] == [
        "register_application",
        "build_and_deploy_model",
        "link_model_to_app",
    ]
    assert conn.calls[1][1:4] == ("line", "1", "doubles")
    assert conn.calls[1][4]["num_replicas"] == 2
    np.testing.assert_allclose(conn.closure(np.array([[2.0]])), [5.0])


def test_xgboost_saves_model_json():
    xgboost_deployer = pytest.importorskip("clipper.deployers.xgboost", reason="clipper.deployers.xgboost (installed with this package)")
    xgboost = pytest.importorskip("xgboost", reason="xgboost (the frameworks extra)")
    booster = xgboost.train({"nthread": 1}, xgboost.DMatrix([[0.0], [1.0]], [1.0, 3.0]), 2)
    conn = RecordingConnection()
    xgboost_deployer.deploy_xgboost_model(conn, "xgb", 1, "doubles", None, booster)
    assert conn.files == ["func.pkl", "model.json"]
    np.testing.assert_array_equal(conn.closure(np.array([[1.0]])), booster.inplace_predict([[1.0]]))


def test_pytorch_saves_the_module_and_its_weights():
    pytorch_deployer = pytest.importorskip("clipper.deployers.pytorch", reason="clipper.deployers.pytorch (installed with this package)")
    torch = pytest.importorskip("torch", reason="torch (the frameworks extra)")
    module = torch.nn.Linear(2, 1)
    conn = RecordingConnection()
    pytorch_deployer.deploy_pytorch_model(conn, "linear", 1, "floats", pytorch_model=module)
    assert conn.files == ["func.pkl", "pytorch_model.pkl", "pytorch_weights.pkl"]
    assert not conn.closure.model.training
    inputs = np.array([[1.0, 2.0]], dtype=np.float32)
    with torch.no_grad():
        expected = module(torch.as_tensor(inputs)).numpy()
    np.testing.assert_allclose(conn.closure(inputs), expected, rtol=0, atol=1e-6)


def test_onnx_saves_model_onnx_from_bytes_or_a_file(tmp_path):
    onnx_deployer = pytest.importorskip("clipper.deployers.onnx", reason="clipper.deployers.onnx (installed with this package)")
    pytest.importorskip("onnxruntime", reason="onnxruntime (the frameworks extra)")
    onnx = pytest.importorskip("onnx", reason="onnx (the frameworks extra)")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "negate",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "negate.onnx"
    onnx.save(model, str(path))
    for onnx_model in (model, model.SerializeToString(), path, str(path)):
        conn = RecordingConnection()
        onnx_deployer.deploy_onnx_model(conn, "neg", 1, "doubles", onnx_model=onnx_model)
        assert conn.files == ["func.pkl", "model.onnx"]
        assert conn.closure(np.array([[1.0, -2.0]])).tolist() == [[-1.0, 2.0]]


def test_each_deployer_needs_its_model():
    for module, deployer in [
        ("sklearn", "deploy_sklearn_model"),
        ("xgboost", "deploy_xgboost_model"),
        ("pytorch", "deploy_pytorch_model"),
        ("onnx", "deploy_onnx_model"),
        ("tensorflow", "deploy_tensorflow_model"),
        ("pyspark", "deploy_pyspark_model"),
    ]:
        deploy = getattr(
            pytest.importorskip(f"clipper.deployers.{module}", reason="installed with this package"),
            deployer,
        )
        conn = RecordingConnection()
        with pytest.raises(
            ClipperException, match=f"needs the model to serve: pass {module}_model"
        ):
            deploy(conn, "m", 1, "doubles", lambda model, inputs: inputs)
        assert conn.calls == []


BATCHING = {"max_batch_size": 8, "batch_wait_timeout_micros": 500, "num_replicas": 2}


def test_deployment_options_or_keywords_reach_build_and_deploy_model():
    from clipper.deployers import DeploymentOptions

    sklearn = pytest.importorskip("clipper.deployers.sklearn", reason="clipper.deployers.sklearn (installed with this package)")
    pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0], [1.0]], [1.0, 3.0])
    by_options = RecordingConnection()
    sklearn.create_endpoint(
        by_options,
        "line",
        "doubles",
        sklearn_model=model,
        options=DeploymentOptions(labels=["a"], **BATCHING),
    )
    by_keywords = RecordingConnection()
    sklearn.deploy_sklearn_model(
        by_keywords, "line", 1, "doubles", sklearn_model=model, labels=["a"], **BATCHING
    )
    for conn in (by_options, by_keywords):
        forwarded = next(call for call in conn.calls if call[0] == "build_and_deploy_model")[4]
        assert {key: forwarded[key] for key in BATCHING} == BATCHING
        assert forwarded["labels"] == ["a"]
        assert forwarded["batch_size"] == -1
        assert forwarded["base_image"] == "default"


def test_the_python_deployer_takes_the_same_options():
    from clipper.deployers import DeploymentOptions
    from clipper.deployers.python import deploy_python_closure

    conn = RecordingConnection()
    deploy_python_closure(
        conn, "echo", 1, "strings", lambda inputs: inputs, options=DeploymentOptions(**BATCHING)
    )
    forwarded = conn.calls[0][4]
    assert {key: forwarded[key] for key in BATCHING} == BATCHING
    assert conn.closure(["x"]) == ["x"]


def test_options_and_changed_keywords_together_are_refused():
    from clipper.deployers import DeploymentOptions
    from clipper.deployers.python import deploy_python_closure

    conn = RecordingConnection()
    with pytest.raises(ClipperException, match="max_batch_size, num_replicas either in options="):
        deploy_python_closure(
            conn,
            "echo",
            1,
            "strings",
            lambda inputs: inputs,
            num_replicas=3,
            max_batch_size=4,
            options=DeploymentOptions(),
        )
    with pytest.raises(ClipperException, match="must be a clipper.deployers.DeploymentOptions"):
        deploy_python_closure(conn, "echo", 1, "strings", lambda inputs: inputs, options={})
    assert conn.calls == []


def test_signatures_show_every_option_at_clippers_positions():
    import inspect

    from clipper.deployers import python as python_deployer
    from clipper.deployers._framework import DEPLOY_KEYWORDS, ENDPOINT_KEYWORDS

    deploy = inspect.signature(python_deployer.deploy_python_closure)
    assert list(deploy.parameters) == [
        "clipper_conn", "name", "version", "input_type", "func", *DEPLOY_KEYWORDS, "options"
    ]  # fmt: skip
    assert deploy.parameters["num_replicas"].default == 1
    assert deploy.parameters["options"].kind is inspect.Parameter.KEYWORD_ONLY
    endpoint = inspect.signature(python_deployer.create_endpoint)
    assert list(endpoint.parameters)[4:8] == ["default_output", "version", "slo_micros", "labels"]
    assert list(endpoint.parameters)[7:-1] == list(ENDPOINT_KEYWORDS)
    onnx = pytest.importorskip("clipper.deployers.onnx", reason="clipper.deployers.onnx (installed with this package)")
    pytorch = list(inspect.signature(onnx.deploy_pytorch_model).parameters)
    assert pytorch[7:13] == [
        "base_image", "labels", "registry", "num_replicas", "onnx_backend", "batch_size"
    ]  # fmt: skip
    # help() prints the same signature.
    assert "batch_wait_timeout_micros: 'int' = 0" in pydoc.render_doc(
        python_deployer.create_endpoint
    )


def test_options_passed_at_clippers_positions_reach_build_and_deploy_model():
    from clipper.deployers.python import create_endpoint, deploy_python_closure

    conn = RecordingConnection()
    # clipper_admin's order: base_image, labels, registry, num_replicas, batch_size, pkgs_to_install.
    deploy_python_closure(conn, "echo", 1, "strings", lambda xs: xs, "img", ["l"], "reg", 2, 16)
    forwarded = conn.calls[0][4]
    assert forwarded["base_image"] == "img" and forwarded["labels"] == ["l"]
    assert forwarded["container_registry"] == "reg"
    assert forwarded["num_replicas"] == 2 and forwarded["batch_size"] == 16
    conn = RecordingConnection()
    # create_endpoint's: default_output, version, slo_micros, labels, registry, base_image, ...
    create_endpoint(conn, "echo", "strings", lambda xs: xs, "x", "3", 1000, ["l"], "reg", "img", 2)
    assert conn.calls[0] == ("register_application", "echo", "strings", "x", 1000)
    forwarded = conn.calls[1][4]
    assert (forwarded["labels"], forwarded["container_registry"], forwarded["base_image"]) == (
        ["l"],
        "reg",
        "img",
    )
    assert conn.calls[1][2] == "3" and forwarded["num_replicas"] == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'replicas'"):
        deploy_python_closure(conn, "echo", 1, "strings", lambda xs: xs, replicas=2)


def test_a_deployer_without_options_is_refused_by_the_decorator():
    from clipper.deployers._framework import takes_deployment_options

    def deploy(clipper_conn, name):
        pass

    with pytest.raises(TypeError, match="must end with an `options` parameter"):
        takes_deployment_options()(deploy)
