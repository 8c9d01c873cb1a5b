"""`clipper k8s render`: print the Kubernetes manifests of a cluster (and of the models named), for review
or `kubectl apply -f -`.

Owns the command's options and output only; the objects come from `clipper.managers.kubernetes`, which is
imported when the command runs, so the CLI starts without the `kubernetes` client installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from clipper.exceptions import ClipperException
from clipper_native import defaults

MODEL_SPEC_HELP = "NAME:VERSION:INPUT_TYPE:IMAGE[:REPLICAS]"


def add_kubernetes_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """The `k8s` group for the CLI's command table: `add(name, help, handler)` declares a command."""
    k8s = add("k8s", "Kubernetes: print the manifests of a cluster", render_command)
    actions = k8s.add_subparsers(dest="k8s_action", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render",
        help="print the manifests KubernetesContainerManager would apply (YAML)",
        description="Print the Deployments, Services and volume claim of the cluster (and of each "
        "--model) as one YAML stream, e.g. for `kubectl apply -f -`. The cluster options (name, "
        "ports, --redis-ip) are the same as for a local cluster.",
    )
    from clipper._cli.parser import add_cluster_options

    add_cluster_options(render, suppress_defaults=True)
    add_render_arguments(render)


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kubernetes")
    group.add_argument("--namespace", default="default", help="namespace of every object (default)")
    group.add_argument(
        "--registry", default=None, help="registry prefixed to images named without one"
    )
    group.add_argument(
        "--image-pull-policy",
        default="IfNotPresent",
        choices=("Always", "IfNotPresent", "Never"),
        help="imagePullPolicy of every container (IfNotPresent)",
    )
    group.add_argument(
        "--service-type",
        default="ClusterIP",
        choices=("ClusterIP", "NodePort", "LoadBalancer"),
        help="type of the query Service (ClusterIP)",
    )
    group.add_argument(
        "--num-frontends", type=int, default=1, help="frontends behind the query Service (1)"
    )
    group.add_argument("--frontend-image", default=None, help="image of the frontends")
    group.add_argument(
        "--supervision-reporter-image",
        default=None,
        help="image of the supervision reporter (the frontend image plus the Kubernetes client)",
    )
    group.add_argument(
        "--cache-size-bytes",
        type=int,
        default=defaults.CACHE_SIZE_BYTES,
        help="prediction cache of each frontend (32 MiB; 0 = off)",
    )
    group.add_argument(
        "--model",
        action="append",
        default=[],
        metavar=MODEL_SPEC_HELP,
        help="also render a model version's Deployments (repeatable), "
        "e.g. sum:1:doubles:registry.example.com/sum:1:2",
    )


def parse_model_spec(text: str) -> tuple[str, str, str, str, int]:
    """NAME:VERSION:INPUT_TYPE:IMAGE[:REPLICAS]; the image may hold ':' itself (a tag, a port)."""
    parts = text.split(":")
    if len(parts) < 4:
        raise ClipperException(f"--model {text!r}: use {MODEL_SPEC_HELP}")
    name, version, input_type, *image_parts = parts
    replicas = 1
    if len(image_parts) > 1 and image_parts[-1].isdigit():
        replicas = int(image_parts.pop())
    return name, version, input_type, ":".join(image_parts), replicas


def render_command(args: argparse.Namespace) -> int:
    print(render_from_arguments(args), end="", file=sys.stdout)
    return 0


def render_from_arguments(args: argparse.Namespace) -> str:
    try:
        from clipper.managers.kubernetes import KubernetesContainerManager, render_manifests
    except ImportError as error:
        raise ClipperException(str(error)) from error
    options: dict[str, Any] = {
        "cluster_name": args.cluster_name,
        "clipper_query_port": args.query_port,
        "clipper_management_port": args.management_port,
        "clipper_rpc_port": args.rpc_port,
        "prometheus_port": args.metrics_port,
        "redis_ip": args.redis_ip,
        "redis_port": args.redis_port,
        "namespace": args.namespace,
        "registry": args.registry,
        "image_pull_policy": args.image_pull_policy,
        "service_type": args.service_type,
        "num_frontends": args.num_frontends,
        "frontend_image": args.frontend_image,
        "supervision_reporter_image": args.supervision_reporter_image,
    }
    manager = KubernetesContainerManager(**options)
    manager.spec = replace(manager.spec, cache_size_bytes=args.cache_size_bytes)
    models = [parse_model_spec(text) for text in args.model]
    return render_manifests(manager, models)
