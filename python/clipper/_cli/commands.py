"""The `clipper` commands that drive a running cluster through `ClipperConnection`: lifecycle
(start, stop, status), listing and inspecting, applications and links, versions, scaling, batching,
queries and logs. Each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from clipper._cli.common import (
    cluster_manager,
    connect_cluster,
    print_json,
    print_table,
    say_progress,
)
from clipper.admin.connection import UNCHANGED, ClipperConnection
from clipper.admin.management_client import urlopen_direct
from clipper.exceptions import ClipperException
from clipper.managers.local import LocalContainerManager


def start_command(args: argparse.Namespace) -> int:
    connection = ClipperConnection(cluster_manager(args))
    say_progress(args, f"starting cluster '{args.cluster_name}' ...")
    connection.start_clipper(
        cache_size=args.cache_size_bytes, qf_http_thread_pool_size=args.io_threads
    )
    print(f"cluster '{args.cluster_name}' is running")
    print(f"  query API       http://{connection.get_query_addr()}")
    print(f"  management API  http://{connection.cm.get_admin_addr()}")
    print(f"  metrics         http://{connection.get_metric_addr()}/metrics")
    return 0


def stop_command(args: argparse.Namespace) -> int:
    manager = cluster_manager(args)
    ClipperConnection(manager).stop_all(graceful=not args.force, clear_state=args.clear_state)
    kept = "cleared" if args.clear_state else "kept for the next start"
    print(f"cluster '{args.cluster_name}' stopped (configuration {kept})")
    return 0


def status_command(args: argparse.Namespace) -> int:
    connection = connect_cluster(args)
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


def apps_command(args: argparse.Namespace) -> int:
    apps = connect_cluster(args).get_all_apps(verbose=True)
    columns = ["name", "input_type", "latency_slo_micros", "default_output", "linked_models"]
    if args.verbose:
        print_json(apps)
    else:
        print_table(apps, columns)
    return 0


def models_command(args: argparse.Namespace) -> int:
    models = connect_cluster(args).get_all_models(verbose=True)
    if args.verbose:
        print_json(models)
    else:
        print_table(
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


def replicas_command(args: argparse.Namespace) -> int:
    replicas = connect_cluster(args).get_all_model_replicas(verbose=True)
    print_table(
        replicas,
        ["model_name", "model_version", "model_replica_id", "input_type", "transport",
         "inflight_batches", "state", "restarts", "last_exit_reason"],
    )  # fmt: skip
    return 0


def inspect_command(args: argparse.Namespace) -> int:
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
    connection = connect_cluster(args)
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
    print_json(result)
    return 0


def _replica_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ClipperException(f"REPLICA_ID {text!r} is not a whole number") from None


def register_app_command(args: argparse.Namespace) -> int:
    connect_cluster(args).register_application(
        args.name, args.input_type, args.default_output, args.slo_micros, overload=args.overload
    )
    print(f"registered application '{args.name}'")
    return 0


def unregister_app_command(args: argparse.Namespace) -> int:
    connect_cluster(args).unregister_application(args.name)
    print(f"unregistered application '{args.name}'")
    return 0


def link_command(args: argparse.Namespace) -> int:
    connect_cluster(args).link_model_to_app(args.app, args.model)
    print(f"linked model '{args.model}' to application '{args.app}'")
    return 0


def unlink_command(args: argparse.Namespace) -> int:
    connect_cluster(args).unlink_model_from_app(args.app, args.model)
    print(f"unlinked model '{args.model}' from application '{args.app}'")
    return 0


def set_version_command(args: argparse.Namespace) -> int:
    connect_cluster(args).set_model_version(args.model, args.version, num_replicas=args.replicas)
    print(f"model '{args.model}' now serves version '{args.version}'")
    return 0


def scale_command(args: argparse.Namespace) -> int:
    connection = connect_cluster(args)
    connection.set_num_replicas(args.model, args.replicas, version=args.version)
    version = args.version or connection.get_current_model_version(args.model)
    print(f"model '{args.model}' version '{version}' runs {args.replicas} replicas")
    return 0


def batching_command(args: argparse.Namespace) -> int:
    connection = connect_cluster(args)
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
    print_json(connection.get_model_batching(args.model, args.version))
    return 0


def stop_model_command(args: argparse.Namespace) -> int:
    connection = connect_cluster(args)
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


def predict_command(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.input)
    except ValueError as error:
        raise ClipperException(
            f"INPUT is not valid JSON ({error}); quote it, e.g. '[1.0, 2.0]'"
        ) from None
    body: dict[str, Any] = {"input_batch" if args.batch else "input": value}
    if args.version:
        body["version"] = args.version
    url = f"http://{connect_cluster(args).get_query_addr()}/{args.app}/predict"
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


def logs_command(args: argparse.Namespace) -> int:
    manager = cluster_manager(args)
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
