"""Deployers: one module per kind of model, each with Clipper's
`deploy_<kind>_model(clipper_conn, name, version, input_type, func, <model>, ...)` and
`create_endpoint(...)`: `python` (closures), `sklearn`, `xgboost`, `pytorch`, `onnx` (onnxruntime)."""
