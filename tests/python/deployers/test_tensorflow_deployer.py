"""deploy_tensorflow_model / create_endpoint end to end: a tiny Keras 3 model trained on generated data
is saved as .keras, served by a real cluster on the CPU, and the served predictions equal its own."""

import sys

import cloudpickle
import numpy as np
import pytest
from deployer_support import SLO_MICROS, served_outputs
from framework_models import keras_points_classifier

from clipper import ClipperException
from clipper.deployers import DeploymentOptions

pytest.importorskip("keras", reason="tensorflow-cpu (the frameworks extra) is not installed")
pytest.importorskip("tensorflow", reason="tensorflow-cpu (the frameworks extra) is not installed")
from clipper.deployers import tensorflow as tensorflow_deployer

pytestmark = pytest.mark.e2e

# Replicas cannot import this module: the functions it deploys travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def trained():
    """A small Keras classifier, its queries and its own outputs (tests/e2e/framework_models.py)."""
    return keras_points_classifier()


def test_create_endpoint_serves_model_predict_by_default(cluster, trained):
    model, queries, expected = trained
    tensorflow_deployer.create_endpoint(
        cluster, "points", "floats", tensorflow_model=model, slo_micros=SLO_MICROS
    )
    served = np.array(served_outputs(cluster, "points", queries))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


def test_a_keras_file_is_served_with_func_and_deployment_options(cluster, trained, tmp_path):
    model, queries, expected = trained
    path = tmp_path / "points.keras"
    model.save(str(path))

    def predicted_class(model, inputs):
        return np.argmax(model.predict(inputs, verbose=0), axis=1).tolist()

    cluster.register_application("classes", "floats", "None", SLO_MICROS)
    tensorflow_deployer.deploy_tensorflow_model(
        cluster,
        "classes",
        1,
        "floats",
        predicted_class,
        path,
        options=DeploymentOptions(max_batch_size=16, batch_wait_timeout_micros=200),
    )
    cluster.link_model_to_app("classes", "classes")
    served = served_outputs(cluster, "classes", queries)
    assert served == np.argmax(expected, axis=1).tolist()


def test_a_file_that_is_not_keras_is_refused_before_anything_is_deployed(cluster, tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"not a model")
    with pytest.raises(ClipperException, match="not a .keras file"):
        tensorflow_deployer.deploy_tensorflow_model(
            cluster, "nothing", 1, "floats", tensorflow_model=path
        )
    assert not [model for model in cluster.get_all_models() if model.startswith("nothing:")]
