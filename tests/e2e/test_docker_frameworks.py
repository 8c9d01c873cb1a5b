"""TensorFlow/Keras and PySpark models served from their framework images on the real Docker Engine
(DockerContainerManager), queried over HTTP on loopback: the served predictions equal the framework's
own, and the replica runs in the framework's image (the framework inside, no engine).

The two images are big (tensorflow about 2.1 GB, pyspark about 1.7 GB): built from nothing they took
129 s and 84 s on a loaded 2-core machine, together over the 3 minutes a default run may spend on them;
brought up to date after a source change, under a minute for both (Docker reuses the framework layer).
So these tests are opt-in (marker `big_images`): each runs where its image was built before (in any
version: the manager brings it up to date), or with CLIPPER_TEST_BIG_IMAGES=1, which builds it from
nothing; otherwise it is skipped, saying how to build it."""

import numpy as np
import pytest
from docker_support import (
    docker_client,
    docker_cluster,
    image_or_skip,
    replica_container,
    served_outputs,
)
from e2e_support import model_answer
from framework_models import (
    keras_points_classifier,
    local_spark_session,
    spark_points_classifier,
    spark_predict_labels,
)

pytestmark = [pytest.mark.e2e, pytest.mark.big_images]

_CLIENT = docker_client()

SLO_MICROS = 20_000_000  # a replica's first batch on a loaded machine must not be a default answer


def test_a_keras_model_answers_as_keras_does(tmp_path):
    image_or_skip(_CLIENT, "tensorflow")
    pytest.importorskip("keras", reason="tensorflow-cpu (the frameworks extra)")
    from clipper.deployers import tensorflow as tensorflow_deployer

    model, queries, expected = keras_points_classifier()
    # Both classes appear, so equal answers are not trivial.
    assert len(set(np.argmax(expected, axis=1))) == 2

    with docker_cluster(_CLIENT, tmp_path, replica_start_timeout_s=180) as conn:
        tensorflow_deployer.create_endpoint(
            conn, "points", "floats", tensorflow_model=model, slo_micros=SLO_MICROS
        )
        probe = replica_container(_CLIENT, "points").exec_run(
            [
                "python3",
                "-c",
                "import keras, importlib.util as u; print(u.find_spec('clipper_native'))",
            ]
        )
        assert probe.exit_code == 0 and probe.output.decode().split()[-1] == "None", probe.output
        served = np.array(served_outputs(conn, "points", queries), dtype=np.float32)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


def test_a_pyspark_model_answers_as_spark_does(tmp_path):
    image_or_skip(_CLIENT, "pyspark")
    pytest.importorskip("pyspark", reason="pyspark (the frameworks extra)")
    from clipper.deployers import pyspark as pyspark_deployer

    spark = local_spark_session("clipper-docker-pyspark-test")
    try:
        model, queries, expected = spark_points_classifier(spark)
        assert len(set(expected)) == 2  # both classes appear: equality is not trivial

        with docker_cluster(_CLIENT, tmp_path, replica_start_timeout_s=180) as conn:
            pyspark_deployer.create_endpoint(
                conn,
                "spark-points",
                "doubles",
                spark_predict_labels,
                model,
                spark.sparkContext,
                slo_micros=SLO_MICROS,
                # Each batch is a Spark job (a second or more in the replica): one batch, not the
                # adaptive controller's small first ones.
                batch_size=64,
            )
            probe = replica_container(_CLIENT, "spark-points").exec_run(["java", "-version"])
            assert probe.exit_code == 0, probe.output  # Spark's Java is in the image
            # The replica's first Spark job starts the JVM's compilers: answered before the batch.
            assert model_answer(conn, "spark-points", {"input": queries[0].tolist()}, timeout_s=120)
            assert served_outputs(conn, "spark-points", queries) == expected
    finally:
        spark.stop()
