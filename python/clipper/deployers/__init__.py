"""Deployers: one module per kind of model, each with Clipper's
`deploy_<kind>_model(clipper_conn, name, version, input_type, func, <model>, ...)` and
`create_endpoint(...)`: `python` (closures), `sklearn`, `xgboost`, `pytorch`, `onnx` (onnxruntime),
`tensorflow` (Keras 3), `pyspark`.
Every entry point takes the same DeploymentOptions (`options=`, or the same names as keywords)."""

from clipper.deployers._framework import DeploymentOptions

__all__ = ["DeploymentOptions"]
