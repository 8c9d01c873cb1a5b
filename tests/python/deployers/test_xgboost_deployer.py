"""deploy_xgboost_model / create_endpoint end to end: XGBoost models trained on sklearn's datasets are
saved as model.json, served by a real cluster, and the served predictions equal the model's own."""

import sys

import cloudpickle
import numpy as np
import pytest
from deployer_support import SLO_MICROS, served_outputs

from clipper import ClipperException

xgboost = pytest.importorskip("xgboost", reason="xgboost (the frameworks extra)")
pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
from sklearn.datasets import load_diabetes, load_iris

from clipper.deployers import xgboost as xgboost_deployer

pytestmark = pytest.mark.e2e

# Replicas cannot import this module: the functions it deploys travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_create_endpoint_serves_a_classifiers_classes_by_default(cluster):
    inputs, labels = load_iris(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(inputs, labels)

    xgboost_deployer.create_endpoint(
        cluster, "iris-xgb", "doubles", xgboost_model=model, slo_micros=SLO_MICROS
    )

    assert served_outputs(cluster, "iris-xgb", inputs) == model.predict(inputs).tolist()


def test_deploy_xgboost_model_serves_a_booster_through_func(cluster):
    inputs, targets = load_diabetes(return_X_y=True)
    booster = xgboost.train(
        {"max_depth": 3, "nthread": 1}, xgboost.DMatrix(inputs[100:], targets[100:]), 30
    )

    def predict_with_dmatrix(booster, inputs):
        return booster.predict(xgboost.DMatrix(inputs))

    cluster.register_application("diabetes", "doubles", "None", SLO_MICROS)
    xgboost_deployer.deploy_xgboost_model(
        cluster, "diabetes", 1, "doubles", predict_with_dmatrix, booster
    )
    cluster.link_model_to_app("diabetes", "diabetes")

    served = np.array(served_outputs(cluster, "diabetes", inputs[:100]))
    expected = booster.predict(xgboost.DMatrix(inputs[:100]))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


def test_a_model_of_another_kind_is_refused_before_the_app_is_registered(cluster):
    with pytest.raises(ClipperException, match="xgboost.Booster"):
        xgboost_deployer.create_endpoint(cluster, "not-xgb", "doubles", xgboost_model=object())
    assert "not-xgb" not in cluster.get_all_apps()
