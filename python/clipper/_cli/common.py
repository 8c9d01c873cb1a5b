"""What every `clipper` command shares: the cluster the global options name, and the plain-text
output of results on stdout (tables, JSON) and of progress notes on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from clipper.admin.connection import ClipperConnection
from clipper.managers.local import LocalContainerManager


def cluster_manager(args: argparse.Namespace) -> LocalContainerManager:
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


def connect_cluster(args: argparse.Namespace) -> ClipperConnection:
    connection = ClipperConnection(cluster_manager(args))
    connection.connect()
    return connection


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[table_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)))
    for row_cells in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row_cells, widths)))


def table_cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value is None or value == "" else str(value)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def say_progress(args: argparse.Namespace, text: str) -> None:
    """A progress line on stderr (stdout carries only results)."""
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)
