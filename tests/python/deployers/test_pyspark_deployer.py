"""deploy_pyspark_model / create_endpoint end to end: a pyspark.ml LogisticRegression fitted on a small
generated DataFrame is saved with Spark's writer, served by a real cluster (each replica in a local
SparkSession), and the served predictions equal the model's own."""

import pytest
from deployer_support import SLO_MICROS, served_outputs
from e2e_support import model_answer
from framework_models import local_spark_session, spark_points_classifier, spark_predict_labels

from clipper import ClipperException

pytest.importorskip("pyspark", reason="pyspark (the frameworks extra) is not installed")
from clipper.deployers import DeploymentOptions
from clipper.deployers import pyspark as pyspark_deployer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def spark():
    session = local_spark_session("clipper-pyspark-deployer-test")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def trained(spark):
    """A LogisticRegression, its queries and its own labels (tests/e2e/framework_models.py)."""
    return spark_points_classifier(spark)


def test_create_endpoint_serves_func_of_a_logistic_regression(cluster, spark, trained):
    model, queries, expected = trained
    assert len(set(expected)) == 2  # both classes appear, so equality is not trivial
    # A replica starts a JVM and loads the model with a Spark job: slow on a loaded 2-core machine.
    cluster.replica_start_timeout_s = 180
    pyspark_deployer.create_endpoint(
        cluster,
        "spark-points",
        "doubles",
        spark_predict_labels,
        model,
        spark.sparkContext,
        slo_micros=SLO_MICROS,
        # Each batch is a Spark job (a second or more on a loaded machine): one batch, not the
        # adaptive controller's small first ones.
        options=DeploymentOptions(batch_size=64),
    )
    # The replica's first Spark job warms the JVM up: answered before the batch is timed by the SLO.
    model_answer(cluster, "spark-points", {"input": queries[0].tolist()}, timeout_s=120)
    assert served_outputs(cluster, "spark-points", queries) == expected


def test_a_missing_func_is_refused_before_anything_is_deployed(cluster, trained):
    model, _, _ = trained
    with pytest.raises(ClipperException, match="needs func"):
        pyspark_deployer.deploy_pyspark_model(cluster, "nothing", 1, "doubles", pyspark_model=model)
    assert not [name for name in cluster.get_all_models() if name.startswith("nothing:")]
