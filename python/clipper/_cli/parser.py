"""The `clipper` command line: global options, and one function per group of subcommands that declares
them and names the function running each. A new group is one more `add_*_commands` function listed in
`COMMAND_GROUPS`; global (cluster) options are accepted before or after the subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any, Protocol

from clipper._cli import commands
from clipper._cli.deploy import deploy_command
from clipper.admin.connection import DEFAULT_CACHE_SIZE_BYTES, UNCHANGED
from clipper.managers.kubernetes_cli import add_kubernetes_commands
from clipper.selection.cli_commands import add_policy_commands
from clipper_native import defaults

Handler = Callable[[argparse.Namespace], int]


class AddCommand(Protocol):
    """Declares subcommand `name`, run by `handler`; returns its parser for the arguments."""

    def __call__(self, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser: ...


def version_text() -> str:
    try:
        version = metadata.version("clipper-serving")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        from clipper import __version__ as version
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"clipper {version} (clipper-serving, Python {python})"


def add_cluster_options(parser: argparse.ArgumentParser, suppress_defaults: bool) -> None:
    """The options naming the cluster. On subcommands their defaults are suppressed, so a value
    given before the subcommand is not overwritten by the subcommand's default."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress_defaults else value

    group = parser.add_argument_group("cluster (before or after the command)")
    group.add_argument(
        "--cluster-name", default=default("default-cluster"), help="cluster to act on"
    )
    group.add_argument(
        "--query-port",
        type=int,
        default=default(defaults.QUERY_PORT),
        help=f"query REST API port ({defaults.QUERY_PORT})",
    )
    group.add_argument(
        "--management-port",
        type=int,
        default=default(defaults.MANAGEMENT_PORT),
        help=f"management API port ({defaults.MANAGEMENT_PORT})",
    )
    group.add_argument(
        "--rpc-port",
        type=int,
        default=default(defaults.RPC_PORT),
        help=f"model replica RPC port ({defaults.RPC_PORT})",
    )
    group.add_argument(
        "--metrics-port",
        type=int,
        default=default(defaults.METRICS_PORT),
        help=f"Prometheus port ({defaults.METRICS_PORT}; 0 = query port only)",
    )
    group.add_argument(
        "--state-dir",
        default=default(None),
        help="cluster state directory (default: $CLIPPER_STATE_DIR/<name> or ~/.clipper/<name>)",
    )
    group.add_argument(
        "--redis-ip",
        default=default(None),
        help="keep the configuration in the Redis server at this address (default: the embedded "
        "store in the state directory)",
    )
    group.add_argument(
        "--redis-port", type=int, default=default(6379), help="port of that Redis server (6379)"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress messages on stderr",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipper",
        description="Run, inspect and change a local Clipper prediction-serving cluster.",
        epilog="Run `clipper COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    add_cluster_options(parser, suppress_defaults=False)
    cluster = argparse.ArgumentParser(add_help=False)
    add_cluster_options(cluster, suppress_defaults=True)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        command = subcommands.add_parser(
            name, parents=[cluster], help=help_text, description=help_text
        )
        command.set_defaults(handler=handler)
        return command

    for add_group in COMMAND_GROUPS:
        add_group(add_command)
    return parser


# ---- the groups of subcommands ------------------------------------------------------------------


def add_lifecycle_commands(add: AddCommand) -> None:
    start = add("start", "start the cluster's frontend in the background", commands.start_command)
    start.add_argument(
        "--cache-size-bytes",
        type=int,
        default=DEFAULT_CACHE_SIZE_BYTES,
        help="prediction cache size (0 = off)",
    )
    start.add_argument("--io-threads", type=int, default=1, help="engine I/O threads")

    stop = add("stop", "stop every replica and the frontend", commands.stop_command)
    stop.add_argument(
        "--force", action="store_true", help="kill at once instead of stopping cleanly"
    )
    stop.add_argument(
        "--clear-state",
        action="store_true",
        help="also forget the configuration (apps, models, links); kept for the next start otherwise",
    )

    add("status", "addresses, apps, models and replicas", commands.status_command)

    logs = add(
        "logs",
        "print the end of the cluster's logs (the frontend's by default)",
        commands.logs_command,
    )
    logs.add_argument(
        "--model", help="the replicas' logs of this model instead (MODEL or MODEL:VERSION)"
    )
    logs.add_argument("-n", "--lines", type=int, default=20, help="lines to print from each log")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until interrupted"
    )
    logs.add_argument(
        "--copy-to", metavar="DIR", help="instead, copy every log under DIR (get_clipper_logs)"
    )


def add_inspection_commands(add: AddCommand) -> None:
    apps = add("apps", "list applications", commands.apps_command)
    apps.add_argument("-v", "--verbose", action="store_true", help="show every field (JSON)")

    models = add("models", "list model versions", commands.models_command)
    models.add_argument("-v", "--verbose", action="store_true", help="show every field (JSON)")

    add("replicas", "list connected model replicas", commands.replicas_command)

    inspect_command = add(
        "inspect", "show one object (or the cluster's metrics) as JSON", commands.inspect_command
    )
    inspect_command.add_argument(
        "kind", choices=["app", "model", "replica", "batching", "metrics"], help="what to show"
    )
    inspect_command.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="app: APP; model: MODEL [VERSION]; replica: MODEL VERSION REPLICA_ID; "
        "batching: MODEL [VERSION]; metrics: nothing",
    )


def add_application_commands(add: AddCommand) -> None:
    register_app = add(
        "register-app",
        "register an application (POST /<name>/predict)",
        commands.register_app_command,
    )
    register_app.add_argument("name", help="application name")
    register_app.add_argument(
        "--input-type", required=True, help="bytes, ints, floats, doubles or strings"
    )
    register_app.add_argument(
        "--default-output", default="None", help="answer when no model answers in time"
    )
    register_app.add_argument(
        "--slo-micros", type=int, default=100000, help="latency objective in microseconds"
    )
    register_app.add_argument(
        "--overload",
        choices=("reject", "default"),
        default=None,
        help="answer to a query refused under overload: 429/503 with Retry-After (reject, the "
        "default) or the default output (default)",
    )

    unregister_app = add(
        "unregister-app", "unregister an application", commands.unregister_app_command
    )
    unregister_app.add_argument("name", help="application name")

    link = add("link", "link a model to an application", commands.link_command)
    link.add_argument("app", help="application name")
    link.add_argument("model", help="model name")

    unlink = add("unlink", "unlink a model from an application", commands.unlink_command)
    unlink.add_argument("app", help="application name")
    unlink.add_argument("model", help="model name")


def add_model_commands(add: AddCommand) -> None:
    deploy = add(
        "deploy",
        "deploy a model version from a Python file or a saved model directory, and wait until its "
        "replicas serve",
        deploy_command,
    )
    deploy.add_argument("name", help="model name")
    deploy.add_argument("version", help="model version")
    deploy.add_argument(
        "source",
        help="FILE.py[:ATTRIBUTE] (a function taking a batch of inputs, or a clipper.container.Model "
        "subclass or instance; default: the file's only one), or a directory saved by a deployer "
        "or clipper.container.closure.save_closure",
    )
    deploy.add_argument(
        "--input-type", required=True, help="bytes, ints, floats, doubles or strings"
    )
    deploy.add_argument("--replicas", type=int, default=1, help="replicas to start")
    deploy.add_argument("--label", action="append", default=[], help="label (repeatable)")
    deploy.add_argument(
        "--pkg", action="append", default=[], help="package the model needs (repeatable)"
    )
    deploy.add_argument("--link", metavar="APP", help="then link the model to this application")
    _add_batching_arguments(deploy, defaults=True)

    set_version = add(
        "set-version",
        "make a model version current (roll forward or back)",
        commands.set_version_command,
    )
    set_version.add_argument("model", help="model name")
    set_version.add_argument("version", help="version to make current")
    set_version.add_argument(
        "--replicas", type=int, default=None, help="scale that version to this many replicas first"
    )

    scale = add("scale", "start or stop replicas of a model version", commands.scale_command)
    scale.add_argument("model", help="model name")
    scale.add_argument("replicas", type=int, help="number of replicas wanted")
    scale.add_argument("--version", help="model version (default: the current one)")

    batching = add(
        "batching",
        "show a model version's batching, or change it with the options below",
        commands.batching_command,
    )
    batching.add_argument("model", help="model name")
    batching.add_argument("--version", help="model version (default: the current one)")
    _add_batching_arguments(batching, defaults=False)

    stop_model = add(
        "stop-model",
        "stop a model's replicas and unregister its versions",
        commands.stop_model_command,
    )
    stop_model.add_argument("model", help="model name")
    which = stop_model.add_mutually_exclusive_group()
    which.add_argument(
        "--version", action="append", help="only this version (repeatable; default: all)"
    )
    which.add_argument(
        "--inactive", action="store_true", help="only the versions that are not current"
    )


def add_query_commands(add: AddCommand) -> None:
    predict = add("predict", "send one query to an app", commands.predict_command)
    predict.add_argument("app", help="application name")
    predict.add_argument(
        "input", help='the input as JSON, e.g. "[1.0, 2.0]" for doubles or "\\"text\\"" for strings'
    )
    predict.add_argument(
        "--batch", action="store_true", help="INPUT is a JSON list of inputs (sent as input_batch)"
    )
    predict.add_argument("--version", help="query this version of the linked model")


def add_image_commands(add: AddCommand) -> None:
    images = add("images", "Docker images: build Clipper's images from containers/", images_command)
    actions = images.add_subparsers(dest="images_action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build the images DockerContainerManager runs (reused when up to date; offline with a "
        "local base image and wheelhouse, see scripts/build_base_image.sh)",
    )
    build.add_argument("images", nargs="*", help="which images (default: frontend python-closure "
                       "sklearn xgboost)")  # fmt: skip
    build.add_argument("--base-image", help="image to build FROM")
    build.add_argument("--wheelhouse", help="wheels to install from")
    build.add_argument("--rebuild", action="store_true", help="build even when up to date")


def images_command(args: argparse.Namespace) -> int:
    # Imported here: the docker client is needed only by this command.
    from clipper.managers.docker_images import main as build_images

    argv = list(args.images)
    if args.base_image:
        argv += ["--base-image", args.base_image]
    if args.wheelhouse:
        argv += ["--wheelhouse", args.wheelhouse]
    if args.rebuild:
        argv.append("--rebuild")
    return build_images(argv)


COMMAND_GROUPS: tuple[Callable[[AddCommand], None], ...] = (
    add_lifecycle_commands,
    add_inspection_commands,
    add_application_commands,
    add_model_commands,
    add_query_commands,
    add_kubernetes_commands,
    add_policy_commands,
    add_image_commands,
)


def _add_batching_arguments(parser: argparse.ArgumentParser, defaults: bool) -> None:
    group = parser.add_argument_group("batching")
    group.add_argument(
        "--batch-size",
        type=int,
        default=-1 if defaults else None,
        help="-1 = adaptive (AIMD), k > 0 = at most k inputs per batch"
        + (" (default: -1)" if defaults else ""),
    )
    group.add_argument(
        "--max-batch-size",
        type=_optional_positive_int,
        default=None if defaults else UNCHANGED,
        help="hard cap on a batch's inputs" + ("" if defaults else "; 'none' removes the cap"),
    )
    group.add_argument(
        "--batch-wait-timeout-micros",
        type=int,
        default=0 if defaults else None,
        help="delayed batching: how long a batch may wait for more inputs"
        + (" (default: 0)" if defaults else ""),
    )


def _optional_positive_int(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (or 'none')") from None
