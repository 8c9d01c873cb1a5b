"""deploy_pyspark_model / create_endpoint end to end: a pyspark.ml LogisticRegression fitted on a small
generated DataFrame is saved with Spark's writer, served by a real cluster (each replica in a local
SparkSession), and the served predictions equal the model's own."""

import sys

import cloudpickle
import numpy as np
import pytest
from deployer_support import SLO_MICROS, served_outputs

from clipper import ClipperException

pytest.importorskip("pyspark", reason="pyspark (the frameworks extra) is not installed")
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.linalg import Vectors
from pyspark.sql import SparkSession

from clipper.deployers import DeploymentOptions
from clipper.deployers import pyspark as pyspark_deployer

pytestmark = pytest.mark.e2e

# Replicas cannot import this module: the functions it deploys travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def predict_labels(spark, model, inputs):
    frame = spark.createDataFrame([(Vectors.dense(row.tolist()),) for row in inputs], ["features"])
    return [float(row.prediction) for row in model.transform(frame).select("prediction").collect()]


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[1]")
        .appName("clipper-pyspark-deployer-test")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def trained(spark):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(120, 2))
    labels = (points[:, 0] - points[:, 1] > 0).astype(float)
    frame = spark.createDataFrame(
        [(float(label), Vectors.dense(point.tolist())) for label, point in zip(labels, points)],
        ["label", "features"],
    )
    model = LogisticRegression(maxIter=20).fit(frame)
    queries = points[:30]
    return model, queries, predict_labels(spark, model, queries)


def test_create_endpoint_serves_func_of_a_logistic_regression(cluster, spark, trained):
    model, queries, expected = trained
    assert len(set(expected)) == 2  # both classes appear, so equality is not trivial
    pyspark_deployer.create_endpoint(
        cluster,
        "spark-points",
        "doubles",
        predict_labels,
        model,
        spark.sparkContext,
        slo_micros=SLO_MICROS,
        options=DeploymentOptions(max_batch_size=64),
    )
    assert served_outputs(cluster, "spark-points", queries) == expected


def test_a_missing_func_is_refused_before_anything_is_deployed(cluster, trained):
    model, _, _ = trained
    with pytest.raises(ClipperException, match="needs func"):
        pyspark_deployer.deploy_pyspark_model(cluster, "nothing", 1, "doubles", pyspark_model=model)
    assert not [name for name in cluster.get_all_models() if name.startswith("nothing:")]
