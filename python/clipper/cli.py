"""The `clipper` command: run, inspect and change a local cluster from the shell.

Owns the user-facing output: results on stdout (plain text tables, or JSON for `inspect`), progress of
long operations on stderr (rendered from the library's structured log events), and exit status 1 with a
one-line reason on errors. Every command acts on one cluster, named by `--cluster-name` and its ports,
through `ClipperConnection` and `LocalContainerManager` exactly as a Python program would.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TextIO

from clipper.admin.connection import DEFAULT_CACHE_SIZE_BYTES, UNCHANGED, ClipperConnection
from clipper.admin.management_client import urlopen_direct
from clipper.exceptions import ClipperException
from clipper.managers.local import LocalContainerManager

# ---- arguments ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    cluster = argparse.ArgumentParser(add_help=False)
    group = cluster.add_argument_group("cluster")
    group.add_argument("--cluster-name", default="default-cluster", help="cluster to act on")
    group.add_argument("--query-port", type=int, default=1337, help="query REST API port")
    group.add_argument("--management-port", type=int, default=1338, help="management API port")
    group.add_argument("--rpc-port", type=int, default=7000, help="model replica RPC port")
    group.add_argument(
        "--metrics-port", type=int, default=1390, help="Prometheus port (0 = query port only)"
    )
    group.add_argument(
        "--state-dir",
        default=None,
        help="cluster state directory (default: $CLIPPER_STATE_DIR/<name> or ~/.clipper/<name>)",
    )
    group.add_argument(
        "--redis-ip",
        default=None,
        help="keep the configuration in the Redis server at this address (default: the embedded "
        "store in the state directory)",
    )
    group.add_argument("--redis-port", type=int, default=6379, help="port of that Redis server")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")

    parser = argparse.ArgumentParser(
        prog="clipper",
        description="Run, inspect and change a local Clipper prediction-serving cluster.",
        epilog="Run `clipper COMMAND --help` for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[cluster], help=help_text, description=help_text)

    start = command("start", "start the cluster's frontend in the background")
    start.add_argument(
        "--cache-size-bytes",
        type=int,
        default=DEFAULT_CACHE_SIZE_BYTES,
        help="prediction cache size (0 = off)",
    )
    start.add_argument("--io-threads", type=int, default=1, help="engine I/O threads")

    stop = command("stop", "stop every replica and the frontend")
    stop.add_argument(
        "--force", action="store_true", help="kill at once instead of stopping cleanly"
    )
    stop.add_argument(
        "--clear-state",
        action="store_true",
        help="also forget the configuration (apps, models, links); kept for the next start otherwise",
    )

    command("status", "addresses, apps, models and replicas")

    apps = command("apps", "list applications")
    apps.add_argument("-v", "--verbose", action="store_true", help="show every field (JSON)")

    models = command("models", "list model versions")
    models.add_argument("-v", "--verbose", action="store_true", help="show every field (JSON)")

    command("replicas", "list connected model replicas")

    inspect_command = command("inspect", "show one object (or the cluster's metrics) as JSON")
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

    register_app = command("register-app", "register an application (POST /<name>/predict)")
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

    unregister_app = command("unregister-app", "unregister an application")
    unregister_app.add_argument("name", help="application name")

    deploy = command(
        "deploy",
        "deploy a model version from a Python file or a saved model directory, and wait until its "
        "replicas serve",
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

    link = command("link", "link a model to an application")
    link.add_argument("app", help="application name")
    link.add_argument("model", help="model name")

    unlink = command("unlink", "unlink a model from an application")
    unlink.add_argument("app", help="application name")
    unlink.add_argument("model", help="model name")

    set_version = command("set-version", "make a model version current (roll forward or back)")
    set_version.add_argument("model", help="model name")
    set_version.add_argument("version", help="version to make current")
    set_version.add_argument(
        "--replicas", type=int, default=None, help="scale that version to this many replicas first"
    )

    scale = command("scale", "start or stop replicas of a model version")
    scale.add_argument("model", help="model name")
    scale.add_argument("replicas", type=int, help="number of replicas wanted")
    scale.add_argument("--version", help="model version (default: the current one)")

    batching = command(
        "batching", "show a model version's batching, or change it with the options below"
    )
    batching.add_argument("model", help="model name")
    batching.add_argument("--version", help="model version (default: the current one)")
    _add_batching_arguments(batching, defaults=False)

    stop_model = command("stop-model", "stop a model's replicas and unregister its versions")
    stop_model.add_argument("model", help="model name")
    which = stop_model.add_mutually_exclusive_group()
    which.add_argument(
        "--version", action="append", help="only this version (repeatable; default: all)"
    )
    which.add_argument(
        "--inactive", action="store_true", help="only the versions that are not current"
    )

    predict = command("predict", "send one query to an app")
    predict.add_argument("app", help="application name")
    predict.add_argument(
        "input", help='the input as JSON, e.g. "[1.0, 2.0]" for doubles or "\\"text\\"" for strings'
    )
    predict.add_argument(
        "--batch", action="store_true", help="INPUT is a JSON list of inputs (sent as input_batch)"
    )
    predict.add_argument("--version", help="query this version of the linked model")

    logs = command("logs", "print the end of the cluster's logs (the frontend's by default)")
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
    return parser


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


# ---- progress ---------------------------------------------------------------------------------------


class ProgressReporter(logging.Handler):
    """Renders the library's structured log events (`event=... key=value ...`) of long operations
    as short progress lines on stderr, with the time since the command started."""

    _MESSAGES: ClassVar[dict[str, Callable[[dict[str, str]], str]]] = {
        "frontend_starting": lambda f: f"starting the frontend (pid {f['pid']}, log {f['log']})",
        "frontend_started": lambda f: f"frontend ready: queries at http://{f['query_addr']}",
        "frontend_stopped": lambda f: f"stopped the frontend (pid {f['pid']})",
        "model_built": lambda f: f"packaged model {f['model']}:{f['version']} in {f['image']}",
        "installing_packages": lambda f: f"installing {f['packages']} for the model",
        "replica_started": lambda f: (
            f"started replica {f['replica']} of {f['model']}:{f['version']} (pid {f['pid']})"
        ),
        "replicas_connecting": lambda f: (
            f"replicas of {f['model']}:{f['version']} connected: {f['connected']}/{f['wanted']}"
        ),
        "replica_stopped": lambda f: (
            f"stopped replica {f['replica']} of {f['model']}:{f['version']}"
        ),
        "model_version_stopped": lambda f: f"unregistered {f['model']}:{f['version']}",
        "state_cleared": lambda f: "forgot the configuration",
        "replicas_restored": lambda f: (
            f"restarted {f['replicas']} replica(s) of {f['model']}:{f['version']}"
        ),
    }

    def __init__(self, stream: TextIO) -> None:
        super().__init__(level=logging.INFO)
        self.stream = stream
        self.started = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        fields = _event_fields(record.getMessage())
        render = self._MESSAGES.get(fields.get("event", ""))
        if render is None:
            return
        try:
            text = render(fields)
        except KeyError:
            return
        self.stream.write(f"[{time.monotonic() - self.started:5.1f}s] {text}\n")
        self.stream.flush()


def _event_fields(message: str) -> dict[str, str]:
    fields = {}
    for part in message.split():
        key, separator, value = part.partition("=")
        if separator:
            fields[key] = value.strip("'\"")
    return fields


@contextmanager
def _progress(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    logger = logging.getLogger("clipper")
    handler = ProgressReporter(sys.stderr)
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


# ---- helpers --------------------------------------------------------------------------------------


def _manager(args: argparse.Namespace) -> LocalContainerManager:
    return LocalContainerManager(
        cluster_name=args.cluster_name,
        clipper_query_port=args.query_port,
        clipper_management_port=args.management_port,
        clipper_rpc_port=args.rpc_port,
        prometheus_port=args.metrics_port,
        state_dir=args.state_dir,
        redis_ip=args.redis_ip,
        redis_port=args.redis_port,
    )


def _connected(args: argparse.Namespace) -> ClipperConnection:
    connection = ClipperConnection(_manager(args))
    connection.connect()
    return connection


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)))
    for row_cells in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row_cells, widths)))


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None or value == "" else str(value)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _say(args: argparse.Namespace, text: str) -> None:
    """A progress line on stderr (stdout carries only results)."""
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


# ---- commands ---------------------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> int:
    connection = ClipperConnection(_manager(args))
    _say(args, f"starting cluster '{args.cluster_name}' ...")
    connection.start_clipper(
        cache_size=args.cache_size_bytes, qf_http_thread_pool_size=args.io_threads
    )
    print(f"cluster '{args.cluster_name}' is running")
    print(f"  query API       http://{connection.get_query_addr()}")
    print(f"  management API  http://{connection.cm.get_admin_addr()}")
    print(f"  metrics         http://{connection.get_metric_addr()}/metrics")
    return 0


def _stop(args: argparse.Namespace) -> int:
    manager = _manager(args)
    ClipperConnection(manager).stop_all(graceful=not args.force, clear_state=args.clear_state)
    kept = "cleared" if args.clear_state else "kept for the next start"
    print(f"cluster '{args.cluster_name}' stopped (configuration {kept})")
    return 0


def _status(args: argparse.Namespace) -> int:
    connection = _connected(args)
    manager = connection.cm
    pid = manager.frontend_pid() if isinstance(manager, LocalContainerManager) else None
    store = f"redis {args.redis_ip}:{args.redis_port}" if args.redis_ip else "embedded"
    print(f"cluster '{args.cluster_name}' is running" + (f" (frontend pid {pid})" if pid else ""))
    print(f"  query API       http://{connection.get_query_addr()}")
    print(f"  management API  http://{manager.get_admin_addr()}")
    print(f"  metrics         http://{connection.get_metric_addr()}/metrics")
    print(f"  state store     {store}")
    print(f"  applications    {len(connection.get_all_apps())}")
    print(f"  model versions  {len(connection.get_all_models())}")
    print(f"  replicas        {len(connection.get_all_model_replicas())}")
    return 0


def _apps(args: argparse.Namespace) -> int:
    apps = _connected(args).get_all_apps(verbose=True)
    columns = ["name", "input_type", "latency_slo_micros", "default_output", "linked_models"]
    if args.verbose:
        _print_json(apps)
    else:
        _print_table(apps, columns)
    return 0


def _models(args: argparse.Namespace) -> int:
    models = _connected(args).get_all_models(verbose=True)
    if args.verbose:
        _print_json(models)
    else:
        _print_table(
            models,
            [
                "model_name",
                "model_version",
                "input_type",
                "is_current_version",
                "num_replicas",
                "batch_size",
                "max_batch_size",
                "batch_wait_timeout_micros",
            ],
        )
    return 0


def _replicas(args: argparse.Namespace) -> int:
    replicas = _connected(args).get_all_model_replicas(verbose=True)
    _print_table(
        replicas,
        ["model_name", "model_version", "model_replica_id", "input_type", "inflight_batches"],
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    expected = {
        "app": (1, 1),
        "model": (1, 2),
        "replica": (3, 3),
        "batching": (1, 2),
        "metrics": (0, 0),
    }
    usage = {
        "app": "APP",
        "model": "MODEL [VERSION]",
        "replica": "MODEL VERSION REPLICA_ID",
        "batching": "MODEL [VERSION]",
        "metrics": "(no names)",
    }
    least, most = expected[args.kind]
    if not least <= len(args.names) <= most:
        raise ClipperException(
            f"got {len(args.names)} names; use `clipper inspect {args.kind} {usage[args.kind]}`"
        )
    connection = _connected(args)
    names = args.names
    result: Any
    if args.kind == "app":
        result = connection.get_app_info(names[0])
        missing = f"application '{names[0]}'"
    elif args.kind == "model":
        version = names[1] if len(names) > 1 else connection.get_current_model_version(names[0])
        result = connection.get_model_info(names[0], version)
        missing = f"model '{names[0]}' version '{version}'"
        if result is not None:
            result["replicas"] = [
                replica
                for replica in connection.get_all_model_replicas(verbose=True)
                if (replica["model_name"], replica["model_version"]) == (names[0], version)
            ]
    elif args.kind == "replica":
        result = connection.get_model_replica_info(names[0], names[1], _replica_id(names[2]))
        missing = f"replica {names[2]} of model '{names[0]}' version '{names[1]}'"
    elif args.kind == "batching":
        result = connection.get_model_batching(names[0], names[1] if len(names) > 1 else None)
        missing = ""
    else:
        result = connection.inspect_instance()
        missing = ""
    if result is None:
        raise ClipperException(f"{missing} does not exist (or is not connected)")
    _print_json(result)
    return 0


def _replica_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ClipperException(f"REPLICA_ID {text!r} is not a whole number") from None


def _register_app(args: argparse.Namespace) -> int:
    _connected(args).register_application(
        args.name, args.input_type, args.default_output, args.slo_micros
    )
    print(f"registered application '{args.name}'")
    return 0


def _unregister_app(args: argparse.Namespace) -> int:
    _connected(args).unregister_application(args.name)
    print(f"unregistered application '{args.name}'")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    connection = _connected(args)
    options = {
        "labels": args.label,
        "num_replicas": args.replicas,
        "batch_size": args.batch_size,
        "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_micros": args.batch_wait_timeout_micros,
        "pkgs_to_install": args.pkg or None,
    }
    source = Path(args.source.rsplit(":", 1)[0] if _names_attribute(args.source) else args.source)
    if source.is_dir():
        _say(args, f"deploying the saved model in {source} as {args.name}:{args.version} ...")
        connection.build_and_deploy_model(
            args.name, args.version, args.input_type, str(source), **options
        )
    else:
        from clipper.container.closure import save_closure

        function, description = load_predict_function(args.source)
        _say(args, f"deploying {description} as {args.name}:{args.version} ...")
        with tempfile.TemporaryDirectory(prefix=f"clipper-{args.name}-") as model_dir:
            save_closure(function, model_dir)
            connection.build_and_deploy_model(
                args.name, args.version, args.input_type, model_dir, **options
            )
    print(
        f"deployed model '{args.name}' version '{args.version}' "
        f"({args.replicas} replica{'s' if args.replicas != 1 else ''}); current version: "
        f"'{connection.get_current_model_version(args.name)}'"
    )
    if args.link:
        connection.link_model_to_app(args.link, args.name)
        print(f"linked model '{args.name}' to application '{args.link}'")
    return 0


def _names_attribute(source: str) -> bool:
    head, separator, tail = source.rpartition(":")
    return bool(separator) and head.endswith(".py") and tail.isidentifier()


def load_predict_function(source: str) -> tuple[Callable[[Any], Any], str]:
    """The function to serve from `FILE.py[:ATTRIBUTE]`: the attribute (or the file's only candidate)
    when it is a function, `predict_batch` of a `clipper.container.Model` instance, or of an instance
    of a Model subclass (created with no arguments). The module is pickled by value, so replicas do
    not need the file. Returns (function, description); raises ClipperException."""
    import cloudpickle

    from clipper.container.model import Model

    path_text, attribute = source.rsplit(":", 1) if _names_attribute(source) else (source, None)
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise ClipperException(
            f"{source!r} is neither a Python file (FILE.py[:ATTRIBUTE]) nor a saved model directory"
        )
    module = _import_file(path)

    def is_candidate(value: Any) -> bool:
        if isinstance(value, Model):
            return True
        if isinstance(value, type):
            return issubclass(value, Model) and value is not Model and not inspect.isabstract(value)
        return inspect.isfunction(value) and value.__module__ == module.__name__

    if attribute is None:
        public = {name: v for name, v in vars(module).items() if not name.startswith("_")}
        # A model (class or instance) wins over functions, which may be its helpers.
        candidates = [
            name
            for name, value in public.items()
            if is_candidate(value) and not inspect.isfunction(value)
        ] or [name for name, value in public.items() if is_candidate(value)]
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise ClipperException(
                f"{path} must define exactly one function or clipper.container.Model to serve "
                f"(found: {found}); name it as {path}:ATTRIBUTE"
            )
        attribute = candidates[0]
    target = getattr(module, attribute, None)
    if target is None or not (is_candidate(target) or callable(target)):
        raise ClipperException(
            f"{path} has no function or clipper.container.Model named {attribute!r}"
        )
    cloudpickle.register_pickle_by_value(module)
    if isinstance(target, type):
        try:
            target = target()
        except TypeError as error:
            raise ClipperException(
                f"{path}:{attribute} cannot be created without arguments ({error}); define an "
                "instance in the file and deploy that instead"
            ) from error
    if isinstance(target, Model):
        return target.predict_batch, f"{path}:{attribute} (a {type(target).__name__} model)"
    return target, f"{path}:{attribute}"


def _import_file(path: Path) -> ModuleType:
    module_name = f"clipper_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ClipperException(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # cloudpickle pickles by value only registered modules
    sys.path.insert(0, str(path.parent.resolve()))  # the file's own imports of its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ClipperException(f"importing {path} failed: {error!r}") from error
    return module


def _link(args: argparse.Namespace) -> int:
    _connected(args).link_model_to_app(args.app, args.model)
    print(f"linked model '{args.model}' to application '{args.app}'")
    return 0


def _unlink(args: argparse.Namespace) -> int:
    _connected(args).unlink_model_from_app(args.app, args.model)
    print(f"unlinked model '{args.model}' from application '{args.app}'")
    return 0


def _set_version(args: argparse.Namespace) -> int:
    _connected(args).set_model_version(args.model, args.version, num_replicas=args.replicas)
    print(f"model '{args.model}' now serves version '{args.version}'")
    return 0


def _scale(args: argparse.Namespace) -> int:
    connection = _connected(args)
    connection.set_num_replicas(args.model, args.replicas, version=args.version)
    version = args.version or connection.get_current_model_version(args.model)
    print(f"model '{args.model}' version '{version}' runs {args.replicas} replicas")
    return 0


def _batching(args: argparse.Namespace) -> int:
    connection = _connected(args)
    changes = (
        args.batch_size is not None
        or args.max_batch_size is not UNCHANGED
        or args.batch_wait_timeout_micros is not None
    )
    if changes:
        connection.set_model_batching(
            args.model,
            args.version,
            batch_size=args.batch_size,
            max_batch_size=args.max_batch_size,
            batch_wait_timeout_micros=args.batch_wait_timeout_micros,
        )
    _print_json(connection.get_model_batching(args.model, args.version))
    return 0


def _stop_model(args: argparse.Namespace) -> int:
    connection = _connected(args)
    if args.inactive:
        connection.stop_inactive_model_versions([args.model])
        print(f"stopped the inactive versions of model '{args.model}'")
    elif args.version:
        connection.stop_versioned_models({args.model: args.version})
        print(f"stopped model '{args.model}' version(s) {', '.join(args.version)}")
    else:
        connection.stop_models([args.model])
        print(f"stopped every version of model '{args.model}'")
    return 0


def _predict(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.input)
    except ValueError as error:
        raise ClipperException(
            f"INPUT is not valid JSON ({error}); quote it, e.g. '[1.0, 2.0]'"
        ) from None
    body: dict[str, Any] = {"input_batch" if args.batch else "input": value}
    if args.version:
        body["version"] = args.version
    url = f"http://{_connected(args).get_query_addr()}/{args.app}/predict"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urlopen_direct(request, timeout=30) as response:
            print(response.read().decode("utf-8"))
            return 0
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {error.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 1


def _logs(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.copy_to:
        for path in manager.get_logs(args.copy_to):
            print(path)
        return 0
    if args.model:
        name, _, version = args.model.partition(":")
        base = manager.logs_dir / "replicas" / name
        if version:
            base = base / version
        paths = sorted(base.rglob("*.log")) if base.is_dir() else []
        if not paths:
            raise ClipperException(f"no replica logs of {args.model} under {base}")
    else:
        paths = [manager.frontend_log_path]
        if not paths[0].is_file():
            raise ClipperException(
                f"cluster '{args.cluster_name}' has no log at {paths[0]}; start it first (or "
                "pass its --state-dir)"
            )
    positions = {}
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(paths) > 1:
            print(f"==> {path} <==")
        for line in text.splitlines()[-args.lines :] if args.lines > 0 else []:
            print(line)
        positions[path] = len(text.encode("utf-8", errors="replace"))
    sys.stdout.flush()
    while args.follow:
        time.sleep(0.2)
        for path in paths:
            with open(path, "rb") as log:
                log.seek(positions[path])
                new = log.read()
            if new:
                positions[path] += len(new)
                sys.stdout.write(new.decode("utf-8", errors="replace"))
                sys.stdout.flush()
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "start": _start,
    "stop": _stop,
    "status": _status,
    "apps": _apps,
    "models": _models,
    "replicas": _replicas,
    "inspect": _inspect,
    "register-app": _register_app,
    "unregister-app": _unregister_app,
    "deploy": _deploy,
    "link": _link,
    "unlink": _unlink,
    "set-version": _set_version,
    "scale": _scale,
    "batching": _batching,
    "stop-model": _stop_model,
    "predict": _predict,
    "logs": _logs,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _progress(enabled=not args.quiet):
            return _COMMANDS[args.command](args)
    except ClipperException as error:
        print(f"clipper {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
