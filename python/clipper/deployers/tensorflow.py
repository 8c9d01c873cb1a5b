"""Deploy a TensorFlow/Keras model as a model: `deploy_tensorflow_model` and `create_endpoint`.

Owns the Keras format: the model (a `keras.Model`, or the path of a `.keras` file) is saved as
`keras_model.keras` beside func.pkl (Keras 3's native format); each replica loads it once at start-up
with `keras.models.load_model`. TensorFlow is imported only when a model is saved or loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper.deployers._framework import (
    DEPLOY_KEYWORDS,
    DeployerArgumentError,
    DeploymentOptions,
    FrameworkClosure,
    ModelFunction,
    deploy_framework_model,
    endpoint_for,
    require_model,
    takes_deployment_options,
)

if TYPE_CHECKING:
    from clipper.admin.connection import ClipperConnection

MODEL_FILE_NAME = "keras_model.keras"


def _predict(model: Any, inputs: Any) -> Any:
    """The default `func`: `model.predict(inputs)` over the batch (one output row per input)."""
    return model.predict(inputs, verbose=0)


def _save_model(model: Any, directory: Path) -> None:
    target = directory / MODEL_FILE_NAME
    if isinstance(model, (str, Path)):
        source = Path(model)
        if source.suffix != ".keras" or not source.is_file():
            raise DeployerArgumentError(
                f"tensorflow_model {source} is not a .keras file: pass a keras.Model or the path "
                "of a model saved with model.save('<name>.keras')"
            )
        shutil.copyfile(source, target)
        return
    if not hasattr(model, "save"):
        raise DeployerArgumentError(
            f"tensorflow_model must be a keras.Model or the path of a .keras file, got "
            f"{type(model).__name__}"
        )
    model.save(str(target))


def _load_model(directory: Path) -> Any:
    import keras

    return keras.models.load_model(str(directory / MODEL_FILE_NAME))


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_tensorflow_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: ModelFunction | None = None,
    tensorflow_model: Any = None,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve the Keras `tensorflow_model` (a `keras.Model` or a `.keras` file) as model `name` at
    `version`.

    Each batch is answered by `func(model, inputs)` (one output per input); without `func`,
    `model.predict(inputs)`. The replicas' image needs tensorflow-cpu: use the tensorflow image as
    `base_image`, or `pkgs_to_install=["tensorflow-cpu"]`. Returns once the replicas are connected.
    """
    require_model(tensorflow_model, "tensorflow_model", "deploy_tensorflow_model")
    closure = FrameworkClosure("tensorflow", _load_model, func if func is not None else _predict)
    deploy_framework_model(
        clipper_conn,
        name,
        version,
        input_type,
        closure,
        lambda directory: _save_model(tensorflow_model, directory),
        options=options,
    )


create_endpoint = endpoint_for(deploy_tensorflow_model, "tensorflow_model")
