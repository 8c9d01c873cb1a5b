"""Deploy a PySpark model as a model: Clipper's `deploy_pyspark_model` and `create_endpoint`.

Owns the Spark model format: the model is saved with Spark's own writer to `pyspark_model/` (ML models:
`model.save(path)`; MLlib models: `model.save(sc, path)`) and its class is recorded in
`pyspark_metadata.json`; each replica starts one local SparkSession and loads the model once at
start-up. `func(spark, model, inputs)` answers each batch. PySpark is imported only in the replica.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper.deployers._framework import (
    DEPLOY_KEYWORDS,
    DeployerArgumentError,
    DeploymentOptions,
    FrameworkClosure,
    deploy_framework_model,
    endpoint_for,
    require_model,
    takes_deployment_options,
)

if TYPE_CHECKING:
    from clipper.admin.connection import ClipperConnection

MODEL_DIRECTORY_NAME = "pyspark_model"
METADATA_FILE_NAME = "pyspark_metadata.json"

# Clipper's PySpark closure: `func(spark, model, inputs)` returns one output per input.
SparkFunction = Callable[[Any, Any, Any], Sequence[Any]]


class _LoadedSparkModel:
    """What a replica holds: its local SparkSession and the loaded model."""

    def __init__(self, spark: Any, model: Any) -> None:
        self.spark = spark
        self.model = model


class _SparkPredict:
    """Adapts Clipper's `func(spark, model, inputs)` to the framework closure's `func(model, inputs)`."""

    def __init__(self, func: SparkFunction) -> None:
        if not callable(func):
            raise DeployerArgumentError(
                f"func must be a function func(spark, model, inputs), got {type(func).__name__}"
            )
        self.func = func

    def __call__(self, loaded: _LoadedSparkModel, inputs: Any) -> Sequence[Any]:
        return self.func(loaded.spark, loaded.model, inputs)


def _is_mllib(model: Any) -> bool:
    return type(model).__module__.startswith("pyspark.mllib")


def _save_model(model: Any, sc: Any, directory: Path) -> None:
    path = str(directory / MODEL_DIRECTORY_NAME)
    if _is_mllib(model):
        if sc is None:
            raise DeployerArgumentError(
                "an MLlib (pyspark.mllib) model is saved with model.save(sc, path): pass sc=<the "
                "SparkContext>"
            )
        model.save(sc, path)
    elif hasattr(model, "save"):
        model.save(path)
    else:
        raise DeployerArgumentError(
            f"pyspark_model must be a pyspark.ml or pyspark.mllib model, got {type(model).__name__}"
        )
    metadata = {"module": type(model).__module__, "class": type(model).__name__}
    (directory / METADATA_FILE_NAME).write_text(json.dumps(metadata))


def _load_model(directory: Path) -> _LoadedSparkModel:
    from pyspark.sql import SparkSession

    metadata = json.loads((directory / METADATA_FILE_NAME).read_text())
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("clipper-replica")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    model_class = getattr(importlib.import_module(metadata["module"]), metadata["class"])
    path = str(directory / MODEL_DIRECTORY_NAME)
    if metadata["module"].startswith("pyspark.mllib"):
        model = model_class.load(spark.sparkContext, path)
    else:
        model = model_class.load(path)
    return _LoadedSparkModel(spark, model)


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_pyspark_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: SparkFunction | None = None,
    pyspark_model: Any = None,
    sc: Any = None,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve `pyspark_model` (a fitted pyspark.ml model, or a pyspark.mllib model with its `sc`) as
    model `name` at `version`: each batch is answered by `func(spark, model, inputs)`, one output per
    input, in the replica's local SparkSession. The replicas need Java and pyspark (the pyspark image
    as `base_image`). Returns once the replicas are connected.
    """
    require_model(pyspark_model, "pyspark_model", "deploy_pyspark_model")
    if func is None:
        raise DeployerArgumentError(
            "deploy_pyspark_model() needs func(spark, model, inputs): Spark models predict on "
            "DataFrames, so func builds one from the inputs and returns one output per input"
        )
    closure = FrameworkClosure("pyspark", _load_model, _SparkPredict(func))
    deploy_framework_model(
        clipper_conn,
        name,
        version,
        input_type,
        closure,
        lambda directory: _save_model(pyspark_model, sc, directory),
        options=options,
    )


create_endpoint = endpoint_for(deploy_pyspark_model, "pyspark_model")
