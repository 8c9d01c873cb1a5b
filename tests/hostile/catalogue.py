"""The hostile catalogue: every case of issue 12, each run against one real cluster (frontend and
replica processes over loopback) while a bystander client keeps querying, and the table that shows
them: case, expected, observed, server alive, queries lost, RSS before and after.

`run_catalogue.py` prints the table (one command); `test_catalogue.py` runs the same cases under pytest.
A row is a `Case(name, expected, function)` in one of the sections below; the function gets the
`HostileCluster` and returns an `Outcome(observed, passed)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import management_cases
import overload_cases
import query_port_cases
import replica_cases
import standalone_cases
import state_cases
from hostile_cluster import BYSTANDER_APP, Bystander, Case, HostileCluster, Outcome

CASES: list[Case] = [
    *management_cases.CASES,
    *query_port_cases.CASES,
    *replica_cases.CASES,
    *overload_cases.CASES,
    *state_cases.CASES,
    *standalone_cases.CASES,
]


@dataclass
class Row:
    case: str
    expected: str
    observed: str
    passed: bool
    server_alive: bool
    queries_lost: str  # "lost/sent" of the bystander and the case's own load; "n/a" if none ran
    rss_before_kib: int
    rss_after_kib: int
    seconds: float


def run_case(cluster: HostileCluster, case: Case) -> Row:
    started = time.monotonic()
    alive_before = cluster.alive()
    rss_before = cluster.rss_kib() if alive_before else 0
    bystander = None
    if case.restarts_frontend or not alive_before:
        outcome = _run(cluster, case)
    else:
        with Bystander(cluster) as bystander:
            outcome = _run(cluster, case)
    alive = cluster.alive()
    rss_after = cluster.rss_kib() if alive else 0
    lost, sent = 0, 0
    if bystander is not None:
        lost, sent = bystander.report.lost, bystander.report.sent
    if outcome.load is not None:
        lost, sent = lost + outcome.load.lost, sent + outcome.load.sent
    queries = f"{lost}/{sent}" if sent else "n/a (restarts the frontend)"
    return Row(
        case.name, case.expected, outcome.observed, outcome.passed and alive and lost == 0, alive,
        queries, rss_before, rss_after, time.monotonic() - started,
    )  # fmt: skip


def _run(cluster: HostileCluster, case: Case) -> Outcome:
    try:
        outcome = case.run(cluster)
    except Exception as error:  # noqa: BLE001 - a case that blows up is a failed row, not a crash
        outcome = Outcome(f"raised {type(error).__name__}: {error}"[:300], False)
    if case.restarts_frontend and cluster.alive():
        cluster.wait_until_answering(
            BYSTANDER_APP
        )  # the next case's bystander starts on a served app
    return outcome


HEADER = (
    "case",
    "expected",
    "observed",
    "alive",
    "queries lost",
    "RSS before/after (MiB)",
    "result",
)


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = (
            row.case,
            row.expected,
            row.observed,
            "yes" if row.server_alive else "NO",
            row.queries_lost,
            f"{row.rss_before_kib / 1024:.1f} / {row.rss_after_kib / 1024:.1f}",
            "pass" if row.passed else "FAIL",
        )
        lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)
