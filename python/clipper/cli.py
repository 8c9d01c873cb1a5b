"""The `clipper` command: start, stop and inspect a local cluster, and send a prediction.

Owns the user-facing output (plain text tables; exit status 1 with a one-line reason on errors). Every
command works on one cluster, named by `--cluster-name` and its ports, through `ClipperConnection` and
`LocalContainerManager` exactly as a Python program would.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from clipper.admin.connection import DEFAULT_CACHE_SIZE_BYTES, ClipperConnection
from clipper.admin.management_client import urlopen_direct
from clipper.exceptions import ClipperException
from clipper.managers.local import LocalContainerManager


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

    parser = argparse.ArgumentParser(
        prog="clipper",
        description="Run and inspect a local Clipper prediction-serving cluster.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = commands.add_parser(
        "start", parents=[cluster], help="start the cluster's frontend in the background"
    )
    start.add_argument(
        "--cache-size-bytes",
        type=int,
        default=DEFAULT_CACHE_SIZE_BYTES,
        help="prediction cache size (0 = off)",
    )
    start.add_argument("--io-threads", type=int, default=1, help="engine I/O threads")

    stop = commands.add_parser(
        "stop", parents=[cluster], help="stop every replica and the frontend"
    )
    stop.add_argument(
        "--force", action="store_true", help="kill at once instead of stopping cleanly"
    )
    stop.add_argument(
        "--clear-state",
        action="store_true",
        help="also forget the configuration (apps, models, links); kept for the next start otherwise",
    )

    commands.add_parser("status", parents=[cluster], help="addresses, apps, models and replicas")

    apps = commands.add_parser("apps", parents=[cluster], help="list applications")
    apps.add_argument("-v", "--verbose", action="store_true", help="show every field")

    models = commands.add_parser("models", parents=[cluster], help="list model versions")
    models.add_argument("-v", "--verbose", action="store_true", help="show every field")

    commands.add_parser("replicas", parents=[cluster], help="list connected model replicas")

    predict = commands.add_parser("predict", parents=[cluster], help="send one query to an app")
    predict.add_argument("app", help="application name")
    predict.add_argument(
        "input", help='the input as JSON, e.g. "[1.0, 2.0]" for doubles or "\\"text\\"" for strings'
    )
    predict.add_argument(
        "--batch", action="store_true", help="INPUT is a JSON list of inputs (sent as input_batch)"
    )
    predict.add_argument("--version", help="query this version of the linked model")
    return parser


def _manager(args: argparse.Namespace) -> LocalContainerManager:
    return LocalContainerManager(
        cluster_name=args.cluster_name,
        clipper_query_port=args.query_port,
        clipper_management_port=args.management_port,
        clipper_rpc_port=args.rpc_port,
        prometheus_port=args.metrics_port,
        state_dir=args.state_dir,
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


def _start(args: argparse.Namespace) -> int:
    connection = ClipperConnection(_manager(args))
    print(f"starting cluster '{args.cluster_name}' ...", flush=True)
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
    kept = "cleared" if args.clear_state else f"kept in {manager.state_dir}"
    print(f"cluster '{args.cluster_name}' stopped (configuration {kept})")
    return 0


def _status(args: argparse.Namespace) -> int:
    connection = _connected(args)
    manager = connection.cm
    pid = manager.frontend_pid() if isinstance(manager, LocalContainerManager) else None
    print(f"cluster '{args.cluster_name}' is running" + (f" (frontend pid {pid})" if pid else ""))
    print(f"  query API       http://{connection.get_query_addr()}")
    print(f"  management API  http://{manager.get_admin_addr()}")
    print(f"  metrics         http://{connection.get_metric_addr()}/metrics")
    print(f"  applications    {len(connection.get_all_apps())}")
    print(f"  model versions  {len(connection.get_all_models())}")
    print(f"  replicas        {len(connection.get_all_model_replicas())}")
    return 0


def _apps(args: argparse.Namespace) -> int:
    apps = _connected(args).get_all_apps(verbose=True)
    columns = ["name", "input_type", "latency_slo_micros", "default_output", "linked_models"]
    if args.verbose:
        print(json.dumps(apps, indent=2))
    else:
        _print_table(apps, columns)
    return 0


def _models(args: argparse.Namespace) -> int:
    models = _connected(args).get_all_models(verbose=True)
    if args.verbose:
        print(json.dumps(models, indent=2))
    else:
        _print_table(
            models,
            ["model_name", "model_version", "input_type", "is_current_version", "batch_size"],
        )
    return 0


def _replicas(args: argparse.Namespace) -> int:
    replicas = _connected(args).get_all_model_replicas(verbose=True)
    _print_table(
        replicas,
        ["model_name", "model_version", "model_replica_id", "input_type", "inflight_batches"],
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.input)
    except ValueError as error:
        raise ClipperException(f"INPUT is not valid JSON ({error}); quote it, e.g. '[1.0, 2.0]'")
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


_COMMANDS = {
    "start": _start,
    "stop": _stop,
    "status": _status,
    "apps": _apps,
    "models": _models,
    "replicas": _replicas,
    "predict": _predict,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ClipperException as error:
        print(f"clipper {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
