"""The small TensorFlow/Keras and PySpark models the deployer tests serve, locally
(tests/python/deployers) and from the framework images (test_docker_frameworks.py), each trained on
points it generates, with its queries and the framework's own answers to them. Registered with
cloudpickle by value: replicas load the functions deployed from here without a copy of the tests."""

import sys

import cloudpickle
import numpy as np

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def keras_points_classifier():
    """A 2-layer Keras classifier of generated points (the label: is x0 + x1 > 0): (model, 40
    queries as float32, the model's class probabilities for them)."""
    import keras

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(256, 2)).astype(np.float32)
    labels = (inputs.sum(axis=1) > 0).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(2,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(inputs, labels, epochs=3, batch_size=64, verbose=0)
    queries = inputs[:40]
    return model, queries, model.predict(queries, verbose=0)


def spark_predict_labels(spark, model, inputs):
    """Clipper's PySpark func: one predicted label per input row."""
    from pyspark.ml.linalg import Vectors

    frame = spark.createDataFrame([(Vectors.dense(row.tolist()),) for row in inputs], ["features"])
    return [float(row.prediction) for row in model.transform(frame).select("prediction").collect()]


def spark_points_classifier(spark):
    """A pyspark.ml LogisticRegression of generated points (the label: is x0 - x1 > 0): (model, 30
    queries, its predicted labels for them)."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(0)
    points = rng.normal(size=(120, 2))
    labels = (points[:, 0] - points[:, 1] > 0).astype(float)
    frame = spark.createDataFrame(
        [(float(label), Vectors.dense(point.tolist())) for label, point in zip(labels, points)],
        ["label", "features"],
    )
    model = LogisticRegression(maxIter=20).fit(frame)
    queries = points[:30]
    return model, queries, spark_predict_labels(spark, model, queries)


def local_spark_session(app_name):
    """A local SparkSession on one core, without the web UI."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
