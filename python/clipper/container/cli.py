"""The `clipper-model` command: import a Model class and serve it (also `python -m clipper.container`).

Owns argument parsing, logging set-up and loading the user's model; server.py does the serving. Runs
on the process's main thread. closure_runner.py reuses the serving arguments defined here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from clipper.container.credentials import (
    ENV_RPC_CREDENTIALS,
    ENV_RPC_CREDENTIALS_FILE,
    ReplicaCredentials,
)
from clipper.container.model import Model
from clipper.container.server import (
    DEFAULT_FRONTEND_ADDRESS,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_INPUT_TYPE,
    ENV_FRONTEND_HOST,
    ENV_FRONTEND_PORT,
    ENV_INPUT_TYPE,
    ENV_MODEL_NAME,
    ENV_MODEL_VERSION,
    ENV_REPLICA_ID,
    ContainerOptions,
    serve_until_signalled,
)

logger = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every model container takes: who it is and where the frontend is."""
    group = parser.add_argument_group("serving")
    group.add_argument(
        "--name",
        "--model-name",
        dest="model_name",
        metavar="NAME",
        help=f"model name to register (default: ${ENV_MODEL_NAME}; required)",
    )
    group.add_argument(
        "--version",
        "--model-version",
        dest="model_version",
        metavar="VERSION",
        help=f"model version to register (default: ${ENV_MODEL_VERSION}; required)",
    )
    group.add_argument(
        "--input-type",
        metavar="TYPE",
        help="what predict_batch receives: bytes, ints, floats, doubles or strings "
        f"(default: ${ENV_INPUT_TYPE}, else {DEFAULT_INPUT_TYPE})",
    )
    group.add_argument(
        "--frontend",
        dest="frontend_address",
        metavar="ADDRESS",
        help="ZeroMQ address of the frontend's model RPC port (default: "
        f"tcp://${ENV_FRONTEND_HOST}:${ENV_FRONTEND_PORT} when either is set, else "
        f"{DEFAULT_FRONTEND_ADDRESS})",
    )
    group.add_argument(
        "--replica-id",
        type=int,
        metavar="N",
        help=f"replica number reported by the frontend (default: ${ENV_REPLICA_ID}, else -1: "
        "the frontend numbers replicas itself)",
    )
    group.add_argument(
        "--rpc-credentials-file",
        metavar="FILE",
        help="owner-only JSON file with the replica's CURVE keys, as the cluster writes it to "
        f"<state_dir>/replica_credentials.json (default: ${ENV_RPC_CREDENTIALS} or "
        f"${ENV_RPC_CREDENTIALS_FILE}; without any, the frontend must allow unauthenticated "
        "replicas)",
    )
    group.add_argument(
        "--heartbeat-interval",
        dest="heartbeat_interval_s",
        type=float,
        default=DEFAULT_HEARTBEAT_INTERVAL_S,
        metavar="SECONDS",
        help="time between two heartbeats (default: %(default)s)",
    )
    group.add_argument(
        "--transport",
        choices=["auto", "zmq"],
        help="auto: ask the frontend for shared-memory rings (granted on its host); zmq: ZeroMQ only "
        "(default: $CLIPPER_TRANSPORT, else auto)",
    )
    group.add_argument(
        "--shm-spin-micros",
        dest="shm_spin_micros",
        type=int,
        metavar="MICROS",
        help="over shared memory, poll for a request this long before sleeping: saves a wake-up "
        "per batch arriving meanwhile, burns a CPU that long after each (default: "
        "$CLIPPER_SHM_SPIN_MICROS, else 0)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="logging threshold; logs go to stderr (default: %(default)s)",
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=_LOG_FORMAT, stream=sys.stderr)


def options_from_arguments(arguments: argparse.Namespace) -> ContainerOptions:
    """The serving arguments, with the environment filling what they leave out; raises ValueError."""
    return ContainerOptions.from_environment(
        model_name=arguments.model_name,
        model_version=arguments.model_version,
        input_type=arguments.input_type,
        frontend_address=arguments.frontend_address,
        replica_id=arguments.replica_id,
        heartbeat_interval_s=arguments.heartbeat_interval_s,
        credentials=(
            ReplicaCredentials.from_file(arguments.rpc_credentials_file)
            if getattr(arguments, "rpc_credentials_file", None)
            else None
        ),
        transport=arguments.transport,
        shm_spin_micros=getattr(arguments, "shm_spin_micros", None),
    )


def load_model(spec: str) -> Model:
    """Imports `module.path:ClassName` and returns an instance (a class is called with no arguments;
    an attribute that already is a model instance is used as is).

    Raises ValueError for a malformed spec or a missing attribute, TypeError when the attribute is not
    a model, and whatever importing the module raises."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--model {spec!r} must look like module.path:ClassName")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    model = target() if isinstance(target, type) else target
    if not callable(getattr(model, "predict_batch", None)):
        raise TypeError(
            f"{spec} is not a model: subclass clipper.container.Model and implement predict_batch"
        )
    return model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipper-model",
        description="Serve a Python model to a Clipper frontend. The model is a subclass of "
        "clipper.container.Model whose predict_batch(inputs) returns one output per input. The "
        "container registers with the frontend, answers batches until SIGTERM or SIGINT, and keeps "
        "serving when predict_batch raises (that batch is answered with the error).",
        epilog="example: clipper-model --model my_models:Doubler --name doubler --version 1 "
        f"--input-type doubles --frontend {DEFAULT_FRONTEND_ADDRESS}",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODULE:CLASS",
        help="the model to serve, as module.path:ClassName (instantiated with no arguments)",
    )
    parser.add_argument(
        "--model-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="directory searched first when importing --model; repeatable (default: the current "
        "directory)",
    )
    add_serving_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    configure_logging(arguments.log_level)
    try:
        options = options_from_arguments(arguments)
    except ValueError as exc:
        parser.error(str(exc))
    for directory in reversed(arguments.model_dir or [os.getcwd()]):
        sys.path.insert(0, os.path.abspath(directory))
    try:
        model = load_model(arguments.model)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    except Exception:
        logger.exception("event=model_load_failed model_spec=%s", arguments.model)
        return 1
    serve_until_signalled(model, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
