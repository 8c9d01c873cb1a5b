"""Deploy an XGBoost model (a `Booster` or a scikit-learn style `XGBClassifier`/`XGBRegressor`/...) as a
model: `deploy_xgboost_model` and `create_endpoint`.

Owns the XGBoost model format: the model is written with its own `save_model` to `model.json` beside
func.pkl; each replica builds an empty model of the same class and `load_model`s it once at start-up
(for the scikit-learn wrappers the JSON keeps their attributes, e.g. `classes_`). XGBoost is imported
only when a model is saved or loaded.
"""

from __future__ import annotations

import functools
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

MODEL_FILE_NAME = "model.json"


def _predict(model: Any, inputs: Any) -> Any:
    """The default `func`: `model.predict(inputs)` for the scikit-learn wrappers (classes for a
    classifier), `model.inplace_predict(inputs)` for a Booster (its raw prediction per input)."""
    import numpy as np
    import xgboost

    if isinstance(model, xgboost.Booster):
        return model.inplace_predict(np.asarray(inputs))
    return model.predict(np.asarray(inputs))


def _model_class(model: Any) -> type:
    import xgboost

    if not isinstance(model, (xgboost.Booster, xgboost.XGBModel)):
        raise DeployerArgumentError(
            "xgboost_model must be an xgboost.Booster or a fitted xgboost.XGBModel (XGBClassifier, "
            f"XGBRegressor, ...), got {type(model).__name__}"
        )
    return type(model)


def _save_model(model: Any, directory: Path) -> None:
    model.save_model(str(directory / MODEL_FILE_NAME))


def _load_model(model_class: type, directory: Path) -> Any:
    model = model_class()
    model.load_model(str(directory / MODEL_FILE_NAME))
    return model


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_xgboost_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: ModelFunction | None = None,
    xgboost_model: Any = None,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve the trained `xgboost_model` as model `name` at `version`.

    Each batch is answered by `func(model, inputs)` (one output per input; numeric inputs arrive as one
    2-D array); without `func`, `model.predict(inputs)` for the scikit-learn wrappers and
    `model.inplace_predict(inputs)` for a Booster. Returns once the replicas are connected; the
    version becomes the model's current one.
    """
    require_model(xgboost_model, "xgboost_model", "deploy_xgboost_model")
    load_model = functools.partial(_load_model, _model_class(xgboost_model))
    deploy_framework_model(
        clipper_conn,
        name,
        version,
        input_type,
        FrameworkClosure("xgboost", load_model, func if func is not None else _predict),
        lambda directory: _save_model(xgboost_model, directory),
        options=options,
    )


create_endpoint = endpoint_for(deploy_xgboost_model, "xgboost_model", _model_class)
