"""deploy_sklearn_model / create_endpoint end to end: estimators trained on sklearn's own datasets are
served by a real cluster, and the served predictions equal the estimator's own."""

import sys

import cloudpickle
import numpy as np
import pytest
from deployer_support import SLO_MICROS, served_outputs

from clipper import ClipperException

pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clipper.deployers import sklearn as sklearn_deployer

pytestmark = pytest.mark.e2e

# Replicas cannot import this module: the functions it deploys travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_create_endpoint_serves_model_predict_by_default(cluster):
    inputs, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(inputs, labels)

    sklearn_deployer.create_endpoint(
        cluster, "iris", "doubles", sklearn_model=model, slo_micros=SLO_MICROS
    )

    assert served_outputs(cluster, "iris", inputs) == model.predict(inputs).tolist()


def test_deploy_sklearn_model_serves_func_of_a_pipeline(cluster):
    inputs, labels = load_digits(return_X_y=True)
    train, query = slice(200, None), slice(0, 200)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    model.fit(inputs[train], labels[train])

    def probabilities(model, inputs):
        return model.predict_proba(inputs)

    cluster.register_application("digits", "ints", "None", SLO_MICROS)
    sklearn_deployer.deploy_sklearn_model(cluster, "digits", 1, "ints", probabilities, model)
    cluster.link_model_to_app("digits", "digits")

    query_inputs = inputs[query].astype(np.int32)  # the digits' pixels are small integers
    served = np.array(served_outputs(cluster, "digits", query_inputs))
    np.testing.assert_allclose(served, model.predict_proba(query_inputs), rtol=0, atol=1e-5)


def test_a_missing_model_is_refused_before_anything_is_deployed(cluster):
    with pytest.raises(ClipperException, match="sklearn_model"):
        sklearn_deployer.deploy_sklearn_model(cluster, "nothing", 1, "doubles")
    assert not [model for model in cluster.get_all_models() if model.startswith("nothing:")]
