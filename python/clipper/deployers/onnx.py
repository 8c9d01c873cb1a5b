"""Deploy an ONNX model, served by onnxruntime: `deploy_onnx_model` and `create_endpoint`, and Clipper's
`deploy_pytorch_model` / `create_pytorch_endpoint`, which export a PyTorch module to ONNX first.

Owns the ONNX model format: the model is written as `model.onnx` beside func.pkl; each replica opens
it once at start-up as an `onnxruntime.InferenceSession` on the CPU, and `func(session, inputs)` runs
each batch. onnxruntime (and, for the export, PyTorch) is imported only when a model is saved or loaded.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipper.deployers._framework import (
    DEPLOY_KEYWORDS,
    ENDPOINT_KEYWORDS,
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

MODEL_FILE_NAME = "model.onnx"
ONNX_BACKEND = "onnxruntime"

# ONNX tensor element types -> the numpy dtype the default func converts the inputs to.
_NUMPY_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def _predict(session: Any, inputs: Any) -> Any:
    """The default `func`: runs the session on the batch (converted to the dtype of the model's one
    input) and returns its first output, one row per input."""
    import numpy as np

    model_inputs = session.get_inputs()
    if len(model_inputs) != 1:
        raise ValueError(
            f"the ONNX model has {len(model_inputs)} inputs "
            f"({', '.join(model_input.name for model_input in model_inputs)}); deploy it with a "
            "func(session, inputs) that builds the input feed for session.run"
        )
    model_input = model_inputs[0]
    array = np.asarray(inputs, dtype=_NUMPY_DTYPES.get(model_input.type))
    return session.run(None, {model_input.name: array})[0]


def _save_model(onnx_model: Any, directory: Path) -> None:
    """Writes an `onnx.ModelProto`, the bytes of one, or a copy of a self-contained .onnx file."""
    destination = directory / MODEL_FILE_NAME
    if isinstance(onnx_model, (bytes, bytearray, memoryview)):
        destination.write_bytes(bytes(onnx_model))
    elif isinstance(onnx_model, (str, os.PathLike)):
        shutil.copyfile(onnx_model, destination)
    else:
        destination.write_bytes(onnx_model.SerializeToString())


def _check_model(onnx_model: Any) -> None:
    if isinstance(onnx_model, (str, os.PathLike)):
        if not Path(onnx_model).is_file():
            raise DeployerArgumentError(f"onnx_model {str(onnx_model)!r} is not a file")
    elif not isinstance(onnx_model, (bytes, bytearray, memoryview)) and not hasattr(
        onnx_model, "SerializeToString"
    ):
        raise DeployerArgumentError(
            "onnx_model must be an onnx.ModelProto, its serialized bytes, or the path of a .onnx "
            f"file, got {type(onnx_model).__name__}"
        )


def _load_model(directory: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(directory / MODEL_FILE_NAME), providers=["CPUExecutionProvider"]
    )


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_onnx_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: ModelFunction | None = None,
    onnx_model: Any = None,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve `onnx_model` (an `onnx.ModelProto`, its serialized bytes, or the path of a self-contained
    .onnx file) with onnxruntime as model `name` at `version`.

    Each batch is answered by `func(session, inputs)` with the replica's `onnxruntime.InferenceSession`
    (one output per input; numeric inputs arrive as one 2-D array); without `func`, the session's first
    output for the batch fed to the model's only input (see _predict). Returns once the replicas are
    connected; the version becomes the model's current one.
    """
    require_model(onnx_model, "onnx_model", "deploy_onnx_model")
    _check_model(onnx_model)
    deploy_framework_model(
        clipper_conn,
        name,
        version,
        input_type,
        FrameworkClosure("onnx", _load_model, func if func is not None else _predict),
        lambda directory: _save_model(onnx_model, directory),
        options=options,
    )


create_endpoint = endpoint_for(deploy_onnx_model, "onnx_model", _check_model)


# ---- Clipper's names: a PyTorch module exported to ONNX ------------------------------------------------


def export_pytorch_model(pytorch_model: Any, inputs: Any) -> bytes:
    """Exports `pytorch_model` (in eval mode) to ONNX with `inputs` as the example (a tensor or a
    tuple of tensors), the first dimension of every input and of the output left free (any batch
    size); returns the model's bytes. The inputs are named `input` (`input_0`, `input_1`, ... for
    several), the first output `output`."""
    import io

    import torch

    example = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    example = tuple(torch.as_tensor(value) for value in example)
    input_names = ["input"] if len(example) == 1 else [f"input_{i}" for i in range(len(example))]
    dynamic_axes = {tensor_name: {0: "batch"} for tensor_name in [*input_names, "output"]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the torch.export-based one, which
        # needs onnxscript; this one needs nothing beyond PyTorch.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            pytorch_model,
            example,
            buffer,
            export_params=True,
            input_names=input_names,
            output_names=["output"],
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )
    return buffer.getvalue()


def _check_backend(onnx_backend: str) -> None:
    if onnx_backend != ONNX_BACKEND:
        raise DeployerArgumentError(
            f"onnx_backend {onnx_backend!r} is not available: ONNX models are served with "
            f"onnxruntime; pass onnx_backend={ONNX_BACKEND!r} (the default)"
        )


# Clipper's positions: onnx_backend sits between num_replicas and batch_size.
_PYTORCH_DEPLOY_KEYWORDS = (*DEPLOY_KEYWORDS[:4], "onnx_backend", *DEPLOY_KEYWORDS[4:])
_PYTORCH_ENDPOINT_KEYWORDS = (*ENDPOINT_KEYWORDS[:4], "onnx_backend", *ENDPOINT_KEYWORDS[4:])


@takes_deployment_options(_PYTORCH_DEPLOY_KEYWORDS)
def deploy_pytorch_model(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    inputs: Any,
    func: ModelFunction | None,
    pytorch_model: Any,
    onnx_backend: str = ONNX_BACKEND,
    *,
    options: DeploymentOptions,
) -> None:
    """Clipper's ONNX deployer: exports `pytorch_model` to ONNX with the example `inputs`
    (export_pytorch_model) and serves it with onnxruntime as deploy_onnx_model does; `func(session,
    inputs)` gets the replica's InferenceSession. Only the onnxruntime backend exists (Clipper's
    caffe2 is gone)."""
    _check_backend(onnx_backend)
    require_model(pytorch_model, "pytorch_model", "deploy_pytorch_model")
    deploy_onnx_model(
        clipper_conn,
        name,
        version,
        input_type,
        func,
        export_pytorch_model(pytorch_model, inputs),
        options=options,
    )


@takes_deployment_options(_PYTORCH_ENDPOINT_KEYWORDS)
def create_pytorch_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    inputs: Any,
    func: ModelFunction | None,
    pytorch_model: Any,
    default_output: str = "None",
    version: str = "1",
    slo_micros: int = 3000000,
    onnx_backend: str = ONNX_BACKEND,
    *,
    options: DeploymentOptions,
) -> None:
    """Register application `name`, export `pytorch_model` to ONNX and serve it as model `name`
    (deploy_pytorch_model), and link the two."""
    _check_backend(onnx_backend)
    require_model(pytorch_model, "pytorch_model", "create_pytorch_endpoint")
    onnx_model = export_pytorch_model(pytorch_model, inputs)
    create_endpoint(
        clipper_conn,
        name,
        input_type,
        func,
        onnx_model,
        default_output=default_output,
        version=version,
        slo_micros=slo_micros,
        options=options,
    )
