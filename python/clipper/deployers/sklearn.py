"""Deploy a scikit-learn estimator (or Pipeline) as a model: `deploy_sklearn_model` and `create_endpoint`.

Owns the scikit-learn model format: the fitted estimator is pickled with cloudpickle (so estimators and
transformers defined in `__main__` travel too) to `sklearn_model.pkl` beside func.pkl; each replica
unpickles it once at start-up. scikit-learn is imported only when a model is saved or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper.deployers._framework import (
    DEPLOY_KEYWORDS,
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

MODEL_FILE_NAME = "sklearn_model.pkl"


def _predict(model: Any, inputs: Any) -> Any:
    """The default `func`: `model.predict(inputs)`, one prediction per input (numeric inputs arrive as
    one 2-D array; a text Pipeline gets the list of strings)."""
    return model.predict(inputs)


def _save_model(model: Any, directory: Path) -> None:
    import cloudpickle

    with (directory / MODEL_FILE_NAME).open("wb") as file:
        cloudpickle.dump(model, file)


def _load_model(directory: Path) -> Any:
    import cloudpickle

    with (directory / MODEL_FILE_NAME).open("rb") as file:
        return cloudpickle.load(file)


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_sklearn_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: ModelFunction | None = None,
    sklearn_model: Any = None,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve the fitted `sklearn_model` as model `name` at `version`.

    Each batch is answered by `func(model, inputs)` (one output per input); without `func`,
    `model.predict(inputs)`. Returns once the replicas are connected; the version becomes the model's
    current one.
    """
    require_model(sklearn_model, "sklearn_model", "deploy_sklearn_model")
    closure = FrameworkClosure("sklearn", _load_model, func if func is not None else _predict)
    deploy_framework_model(
        clipper_conn,
        name,
        version,
        input_type,
        closure,
        lambda directory: _save_model(sklearn_model, directory),
        options=options,
    )


create_endpoint = endpoint_for(deploy_sklearn_model, "sklearn_model")
