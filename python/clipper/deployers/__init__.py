"""Deployers: one module per kind of model (`python` for closures), each with Clipper's
`deploy_<kind>_...(clipper_conn, name, version, input_type, func, ...)` and `create_endpoint(...)`."""
