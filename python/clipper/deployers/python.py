"""Deploy a Python function (closure) as a model: Clipper's `deploy_python_closure` and `create_endpoint`.

Owns only the packaging step: the function is captured with cloudpickle by the container SDK's
`save_closure`, then handed to `ClipperConnection.build_and_deploy_model`; replicas run it with the SDK's
closure runner. Runs in the user's thread.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.deployers._framework import (
    DEPLOY_KEYWORDS,
    DeploymentOptions,
    build_and_deploy,
    endpoint_for,
    takes_deployment_options,
)

logger = logging.getLogger(__name__)

# A Python function served as a model: takes the batch's inputs, returns one output per input.
PredictFunction = Callable[[Any], Sequence[Any]]


@takes_deployment_options(DEPLOY_KEYWORDS)
def deploy_python_closure(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: PredictFunction,
    *,
    options: DeploymentOptions,
) -> None:
    """Serve `func` as model `name` at `version`: `func(inputs)` gets a batch of inputs (numeric types
    as numpy arrays, `bytes`, `str`) and returns one output per input. Returns once the replicas are
    connected; the version becomes the model's current one. The batching arguments are
    `ClipperConnection.deploy_model`'s."""
    from clipper.container.closure import save_closure

    with tempfile.TemporaryDirectory(prefix=f"clipper-{name}-") as model_dir:
        save_closure(func, model_dir)
        build_and_deploy(clipper_conn, name, version, input_type, model_dir, options)
    logger.info("event=python_closure_deployed model=%s version=%s", name, version)


create_endpoint = endpoint_for(deploy_python_closure)
