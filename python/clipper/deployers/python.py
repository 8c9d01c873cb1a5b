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
from clipper.deployers._framework import DeploymentOptions, resolve_options

logger = logging.getLogger(__name__)

# A Python function served as a model: takes the batch's inputs, returns one output per input.
PredictFunction = Callable[[Any], Sequence[Any]]


def deploy_python_closure(
    clipper_conn: ClipperConnection,
    name: str,
    version: str,
    input_type: str,
    func: PredictFunction,
    base_image: str = "default",
    labels: Sequence[str] | None = None,
    registry: str | None = None,
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: Sequence[str] | None = None,
    max_batch_size: int | None = None,
    batch_wait_timeout_micros: int = 0,
    options: DeploymentOptions | None = None,
) -> None:
    """Serve `func` as model `name` at `version`: `func(inputs)` gets a batch of inputs (numeric types
    as numpy arrays, `bytes`, `str`) and returns one output per input. Returns once the replicas are
    connected; the version becomes the model's current one. The batching arguments are
    `ClipperConnection.deploy_model`'s."""
    from clipper.container.closure import save_closure

    resolved = resolve_options(
        options,
        num_replicas=num_replicas,
        batch_size=batch_size,
        max_batch_size=max_batch_size,
        batch_wait_timeout_micros=batch_wait_timeout_micros,
        pkgs_to_install=pkgs_to_install,
        base_image=base_image,
        labels=labels,
        registry=registry,
    )
    with tempfile.TemporaryDirectory(prefix=f"clipper-{name}-") as model_dir:
        save_closure(func, model_dir)
        clipper_conn.build_and_deploy_model(
            name,
            str(version),
            input_type,
            model_dir,
            base_image=resolved.base_image,
            labels=resolved.labels,
            container_registry=resolved.registry,
            num_replicas=resolved.num_replicas,
            batch_size=resolved.batch_size,
            pkgs_to_install=resolved.pkgs_to_install,
            max_batch_size=resolved.max_batch_size,
            batch_wait_timeout_micros=resolved.batch_wait_timeout_micros,
        )
    logger.info("event=python_closure_deployed model=%s version=%s", name, version)


def create_endpoint(
    clipper_conn: ClipperConnection,
    name: str,
    input_type: str,
    func: PredictFunction,
    default_output: str = "None",
    version: str = "1",
    slo_micros: int = 3000000,
    labels: Sequence[str] | None = None,
    registry: str | None = None,
    base_image: str = "default",
    num_replicas: int = 1,
    batch_size: int = -1,
    pkgs_to_install: Sequence[str] | None = None,
    max_batch_size: int | None = None,
    batch_wait_timeout_micros: int = 0,
    options: DeploymentOptions | None = None,
) -> None:
    """Register application `name`, deploy `func` as model `name` and link the two: one call from a
    function to `POST /<name>/predict`."""
    clipper_conn.register_application(name, input_type, default_output, slo_micros)
    deploy_python_closure(
        clipper_conn,
        name,
        version,
        input_type,
        func,
        base_image=base_image,
        labels=labels,
        registry=registry,
        num_replicas=num_replicas,
        batch_size=batch_size,
        pkgs_to_install=pkgs_to_install,
        max_batch_size=max_batch_size,
        batch_wait_timeout_micros=batch_wait_timeout_micros,
        options=options,
    )
    clipper_conn.link_model_to_app(name, name)
