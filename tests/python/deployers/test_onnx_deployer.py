"""deploy_onnx_model / create_endpoint and Clipper's deploy_pytorch_model (export to ONNX) end to end:
ONNX models built from models trained on sklearn's datasets are served with onnxruntime by a real
cluster, and the served predictions equal onnxruntime's own on the same inputs."""

import sys

import cloudpickle
import numpy as np
import pytest
from deployer_support import SLO_MICROS, digits_split, served_outputs, train_classifier

from clipper import ClipperException

onnx = pytest.importorskip("onnx", reason="onnx (the frameworks extra)")
onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime (the frameworks extra)")
pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from clipper.deployers import onnx as onnx_deployer

pytestmark = pytest.mark.e2e

# Replicas cannot import this module: the functions it deploys travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def logistic_regression_graph(model):
    """The class probabilities of a fitted multinomial LogisticRegression as an ONNX graph."""
    weights = numpy_helper.from_array(model.coef_.T.astype(np.float32), "weights")
    bias = numpy_helper.from_array(model.intercept_.astype(np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "weights", "bias"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
        ],
        "iris_logistic_regression",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weights, bias],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8  # readable by any recent onnxruntime
    onnx.checker.check_model(onnx_model)
    return onnx_model


def test_create_endpoint_serves_the_sessions_first_output_by_default(cluster):
    inputs, labels = load_iris(return_X_y=True)
    onnx_model = logistic_regression_graph(LogisticRegression(max_iter=1000).fit(inputs, labels))

    onnx_deployer.create_endpoint(
        cluster, "iris-onnx", "floats", onnx_model=onnx_model, slo_micros=SLO_MICROS
    )

    query_inputs = inputs.astype(np.float32)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString())
    [expected] = session.run(None, {"features": query_inputs})
    served = np.array(served_outputs(cluster, "iris-onnx", query_inputs))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


def test_deploy_pytorch_model_exports_to_onnx_and_serves_func_of_the_session(cluster):
    torch = pytest.importorskip("torch", reason="torch (the frameworks extra)")
    train_inputs, train_labels, query_inputs = digits_split()
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    train_classifier(module, train_inputs / 16.0, train_labels)

    def classes(session, inputs):
        [logits] = session.run(None, {"input": np.asarray(inputs, dtype=np.float32) / 16.0})
        return logits.argmax(axis=1)

    cluster.register_application("digits-onnx", "floats", "None", SLO_MICROS)
    onnx_deployer.deploy_pytorch_model(
        cluster, "digits-onnx", 1, "floats", torch.zeros(1, 64), classes, module
    )
    cluster.link_model_to_app("digits-onnx", "digits-onnx")

    session = onnxruntime.InferenceSession(
        onnx_deployer.export_pytorch_model(module, torch.zeros(1, 64))
    )
    expected = classes(session, query_inputs)
    with torch.no_grad():
        assert expected.tolist() == module(torch.as_tensor(query_inputs / 16.0)).argmax(1).tolist()
    assert served_outputs(cluster, "digits-onnx", query_inputs) == expected.tolist()


def test_only_the_onnxruntime_backend_is_offered(cluster):
    with pytest.raises(ClipperException, match="onnxruntime"):
        onnx_deployer.deploy_pytorch_model(
            cluster, "caffe", 1, "floats", None, None, object(), onnx_backend="caffe2"
        )
