"""`python -m clipper.container.closure_runner`: serve a cloudpickled function (deploy_python_closure).

Owns the command line the deployers launch: it loads the function save_closure wrote and serves it
through ClosureModel with the same serving options as `clipper-model`. Runs on the main thread.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clipper.container.cli import add_serving_arguments, configure_logging, options_from_arguments
from clipper.container.closure import ClosureModel, load_closure
from clipper.container.server import serve_until_signalled
from clipper.exceptions import ClipperException

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clipper.container.closure_runner",
        description="Serve a Python function saved with clipper.container.closure.save_closure "
        "(what deploy_python_closure deploys). The function receives a batch of inputs and returns "
        "one output per input, like Model.predict_batch.",
    )
    parser.add_argument(
        "--func-path",
        required=True,
        metavar="PATH",
        help="the cloudpickle file written by save_closure (DIR/func.pkl), or its directory",
    )
    parser.add_argument(
        "--cpus",
        default="",
        metavar="LIST",
        help="CPUs to run on, like '1' or '2-3' (default: every CPU it may use); applied before the "
        "function is loaded, so every thread it starts inherits it",
    )
    add_serving_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    configure_logging(arguments.log_level)
    try:
        options = options_from_arguments(arguments)
        if arguments.cpus:
            # Imported here: only local replicas get --cpus, and the container SDK the Docker images
            # install ships no clipper.cpu_placement (Docker confines containers with --cpuset-cpus).
            from clipper.cpu_placement import apply_cpus

            apply_cpus(arguments.cpus, "--cpus")
    except (ValueError, ClipperException) as exc:
        parser.error(str(exc))
    try:
        func = load_closure(arguments.func_path)
    except Exception:
        logger.exception("event=closure_load_failed path=%s", arguments.func_path)
        return 1
    serve_until_signalled(ClosureModel(func), options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
