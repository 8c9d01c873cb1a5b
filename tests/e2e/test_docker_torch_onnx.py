"""PyTorch and ONNX models served from their framework images (clipper/pytorch-container,
clipper/onnx-container) on the real Docker Engine (DockerContainerManager), deployed with
clipper.deployers.pytorch / clipper.deployers.onnx and queried over HTTP on loopback: the served
answers equal the framework's own on the host, and each replica runs in its framework's image (the
host's torch / onnxruntime version inside, no engine; no torch in the ONNX image).

The images install the framework versions installed here (docker_images.matching_host), from the
host's wheels, without the network. Image sizes and build times: docs/docker.md."""

import importlib.metadata
import sys

import cloudpickle
import numpy as np
import pytest
from docker_support import (
    docker_client,
    docker_cluster,
    image_or_skip,
    replica_container,
    served_outputs,
)

torch = pytest.importorskip("torch", reason="torch (the frameworks extra)")

pytestmark = [pytest.mark.e2e, pytest.mark.big_images]

_CLIENT = docker_client()

# The module class below travels to the replicas by value (they cannot import this file).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SLO_MICROS = 20_000_000  # a replica's first batch on a loaded machine must not be a default answer


class PointsNet(torch.nn.Module):
    """Two classes of points in the plane (is x0 + 2 * x1 > 0), as logits."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(2, 16)
        self.output = torch.nn.Linear(16, 2)

    def forward(self, points):
        return self.output(torch.tanh(self.hidden(points)))


@pytest.fixture(scope="module")
def points_model():
    """(the trained module in eval mode, 40 float32 queries, its logits for them)."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(256, 2)).astype(np.float32)
    labels = torch.as_tensor((inputs[:, 0] + 2 * inputs[:, 1] > 0).astype(np.int64))
    torch.manual_seed(0)
    model = PointsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.as_tensor(inputs)), labels).backward()
        optimizer.step()
    model.eval()
    queries = inputs[:40]
    with torch.inference_mode():
        logits = model(torch.as_tensor(queries)).numpy()
    # Both classes appear, so equal answers are not trivial.
    assert len(set(logits.argmax(axis=1))) == 2
    return model, queries, logits


def replica_python(model_name, code):
    """What `python3 -c code` prints in the model's (only) replica container."""
    probe = replica_container(_CLIENT, model_name).exec_run(["python3", "-c", code])
    assert probe.exit_code == 0, probe.output
    return probe.output.decode().split()


def test_a_pytorch_model_answers_as_pytorch_does(tmp_path, points_model):
    image_or_skip(_CLIENT, "pytorch")
    from clipper.deployers import pytorch as pytorch_deployer

    model, queries, logits = points_model
    with docker_cluster(_CLIENT, tmp_path, replica_start_timeout_s=180) as conn:
        pytorch_deployer.create_endpoint(
            conn, "torch-points", "floats", pytorch_model=model, slo_micros=SLO_MICROS
        )
        # The replica runs the host's torch (the version that pickled the module), without the engine.
        torch_version, has_engine = replica_python(
            "torch-points",
            "import torch, importlib.util as u; "
            "print(torch.__version__, u.find_spec('clipper_native') is not None)",
        )
        assert (torch_version, has_engine) == (torch.__version__, "False")
        served = np.array(served_outputs(conn, "torch-points", queries), dtype=np.float32)
    np.testing.assert_allclose(served, logits, rtol=0, atol=1e-5)


def test_an_onnx_model_answers_as_onnxruntime_does(tmp_path, points_model):
    image_or_skip(_CLIENT, "onnx")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime (the frameworks extra)")
    from clipper.deployers import onnx as onnx_deployer

    model, queries, logits = points_model
    onnx_bytes = onnx_deployer.export_pytorch_model(model, torch.as_tensor(queries[:2]))
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": queries})
    np.testing.assert_allclose(expected, logits, rtol=0, atol=1e-5)  # the export is faithful

    with docker_cluster(_CLIENT, tmp_path, replica_start_timeout_s=180) as conn:
        onnx_deployer.create_endpoint(
            conn, "onnx-points", "floats", onnx_model=onnx_bytes, slo_micros=SLO_MICROS
        )
        # onnxruntime (the host's version) is there; torch and the engine are not.
        version, has_torch, has_engine = replica_python(
            "onnx-points",
            "import onnxruntime, importlib.util as u; print(onnxruntime.__version__, "
            "*(u.find_spec(m) is not None for m in ('torch', 'clipper_native')))",
        )
        host_version = importlib.metadata.version("onnxruntime")
        assert (version, has_torch, has_engine) == (host_version, "False", "False")
        served = np.array(served_outputs(conn, "onnx-points", queries), dtype=np.float32)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
