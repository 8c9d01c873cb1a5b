"""deploy_pytorch_model / create_endpoint end to end: a small module trained on sklearn's digits is
saved in Clipper's format (cloudpickled module + state_dict), served by a real cluster on the CPU, and
the served predictions equal the module's own."""

import sys

import cloudpickle
import numpy as np
import pytest
from deployer_support import SLO_MICROS, digits_split, served_outputs, train_classifier

from clipper import ClipperException

torch = pytest.importorskip("torch", reason="torch (the frameworks extra)")
pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
from clipper.deployers import pytorch as pytorch_deployer

pytestmark = pytest.mark.e2e

# Replicas cannot import this module: the module class and functions it deploys travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class DigitsNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(64, 32)
        self.output = torch.nn.Linear(32, 10)

    def forward(self, pixels):
        return self.output(torch.relu(self.hidden(pixels / 16.0)))


@pytest.fixture(scope="module")
def digits_model():
    train_inputs, train_labels, query_inputs = digits_split()
    model = train_classifier(DigitsNet(), train_inputs, train_labels)
    with torch.no_grad():
        logits = model(torch.as_tensor(query_inputs)).numpy()
    return model, query_inputs, logits


def test_create_endpoint_serves_the_modules_output_by_default(cluster, digits_model):
    model, query_inputs, logits = digits_model

    pytorch_deployer.create_endpoint(
        cluster, "digits-logits", "floats", pytorch_model=model, slo_micros=SLO_MICROS
    )

    served = np.array(served_outputs(cluster, "digits-logits", query_inputs))
    np.testing.assert_allclose(served, logits, rtol=0, atol=1e-5)


def test_deploy_pytorch_model_serves_func_of_the_module(cluster, digits_model):
    model, query_inputs, logits = digits_model

    def classes(model, inputs):
        with torch.no_grad():
            return model(torch.as_tensor(np.asarray(inputs), dtype=torch.float32)).argmax(1)

    cluster.register_application("digits-classes", "doubles", "None", SLO_MICROS)
    pytorch_deployer.deploy_pytorch_model(
        cluster, "digits-classes", 1, "doubles", lambda m, x: classes(m, x).tolist(), model
    )
    cluster.link_model_to_app("digits-classes", "digits-classes")

    served = served_outputs(cluster, "digits-classes", query_inputs.astype(np.float64))
    assert served == logits.argmax(1).tolist()


def test_a_model_that_is_not_a_module_is_refused(cluster):
    with pytest.raises(ClipperException, match="torch.nn.Module"):
        pytorch_deployer.deploy_pytorch_model(cluster, "not-torch", 1, "floats", None, object())
