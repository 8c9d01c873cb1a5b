"""Deploy a PyTorch module (CPU) as a model: `deploy_pytorch_model` and `create_endpoint`.

Owns the PyTorch model format, Clipper's: the module is pickled with cloudpickle to `pytorch_model.pkl`
(so module classes defined in `__main__` travel too) and its `state_dict()` is written with
`torch.save` to `pytorch_weights.pkl`, both beside func.pkl. Each replica unpickles the module once at
start-up, loads the weights into it on the CPU (the weights file is what is served) and puts it in eval
mode. PyTorch is imported only when a model is saved or loaded.
"""

from __future__ import annotations

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

MODEL_FILE_NAME = "pytorch_model.pkl"
WEIGHTS_FILE_NAME = "pytorch_weights.pkl"


def _predict(model: Any, inputs: Any) -> Any:
    """The default `func`: the module's output for the batch as one tensor, one row per input.

    Numeric inputs become one tensor (integers as int64, others in the dtype of the module's
    parameters, float32 by default) and the module runs in inference mode.
    """
    import numpy as np
    import torch

    # np.array copies: the inputs view the request's buffer, which is read-only.
    array = np.array(inputs)
    if array.dtype.kind in "iu":
        batch = torch.as_tensor(array, dtype=torch.int64)
    else:
        parameter = next(model.parameters(), None)
        floating = parameter is not None and parameter.is_floating_point()
        batch = torch.as_tensor(array, dtype=parameter.dtype if floating else torch.float32)
    with torch.inference_mode():
        return model(batch).numpy()


def _check_module(model: Any) -> None:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise DeployerArgumentError(
            f"pytorch_model must be a torch.nn.Module, got {type(model).__name__}"
        )


def _save_model(model: Any, directory: Path) -> None:
    import cloudpickle
    import torch

    with (directory / MODEL_FILE_NAME).open("wb") as file:
        cloudpickle.dump(model, file)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE_NAME)


def _load_model(directory: Path) -> Any:
    import cloudpickle
    import torch

    with (directory / MODEL_FILE_NAME).open("rb") as file:
        model = cloudpickle.load(file)
    weights = torch.load(directory / WEIGHTS_FILE_NAME, map_location="cpu", weights_only=True)
    model.load_state_dict(weights)
    return model.eval()


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_pytorch_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: ModelFunction | None = None,
    pytorch_model: Any = None,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve the `torch.nn.Module` `pytorch_model` (on the CPU, in eval mode) as model `name` at
    `version`.

    Each batch is answered by `func(model, inputs)` (one output per input; numeric inputs arrive as one
    2-D numpy array); without `func`, the module's output on the batch as one tensor (see _predict).
    Returns once the replicas are connected; the version becomes the model's current one.
    """
    require_model(pytorch_model, "pytorch_model", "deploy_pytorch_model")
    _check_module(pytorch_model)
    deploy_framework_model(
        clipper_conn,
        name,
        version,
        input_type,
        FrameworkClosure("pytorch", _load_model, func if func is not None else _predict),
        lambda directory: _save_model(pytorch_model, directory),
        options=options,
    )


create_endpoint = endpoint_for(deploy_pytorch_model, "pytorch_model", _check_module)
