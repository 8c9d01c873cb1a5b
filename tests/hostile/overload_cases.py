"""Overload: open-loop load far beyond a model's capacity. Admission control must refuse the excess at
arrival (429 with Retry-After), answer every admitted query within the SLO, lose nothing (every request
gets an HTTP answer) and keep the frontend's memory bounded.

The model sleeps 20 ms per batch of at most 4 inputs: about 200 queries/s whatever else the machine
runs, so 4x is offered with little CPU. The load comes from clipper-loadgen (open loop: the offered
rate does not bend to the server's answers), from 127.0.0.1 like the bystander, with fewer
connections than the catalogue's per-address cap.
"""

from __future__ import annotations

import http.client
import itertools
import time

import e2e_models
from e2e_support import open_loop, report_of
from hostile_cluster import Case, HostileCluster, LoadReport, Outcome

from clipper.deployers.python import deploy_python_closure

APP = "overload-app"
SLO_MICROS = 250_000
CAPACITY_PER_S = 200  # 4 inputs per 20 ms batch
OFFERED_MULTIPLE = 4
LOAD_SECONDS = 6
CONNECTIONS = 192  # below QUERY_PORT_LIMITS' 256 per address, shared with the bystander
# The load generator's clock and the loaded machine add a little on top of the server's time.
CLIENT_SLACK_US = 60_000
RSS_GROWTH_BOUND_KIB = 64 * 1024

_fresh_values = itertools.count(2_000_000)


def _refusal_headers(cluster: HostileCluster, within_s: float = 5.0) -> tuple[int, str | None]:
    """Queries with new inputs until one is refused: its status and Retry-After."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", cluster.query_port, timeout=10)
        try:
            body = f'{{"input": [0.5, {next(_fresh_values)}]}}'
            connection.request("POST", f"/{APP}/predict", body=body.encode())
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                return response.status, response.getheader("Retry-After")
        finally:
            connection.close()
        time.sleep(0.01)
    return 200, None


def overload_4x(cluster: HostileCluster) -> Outcome:
    conn = cluster.conn
    if APP not in conn.get_all_apps():
        conn.register_application(APP, "doubles", "-1.0", SLO_MICROS)
        deploy_python_closure(
            conn, f"{APP}-model", "1", "doubles", e2e_models.sleep_20_ms_per_batch, batch_size=4
        )
        conn.link_model_to_app(APP, f"{APP}-model")
    cluster.wait_until_answering(APP)
    rss_before = cluster.rss_kib()
    load = open_loop(
        f"http://127.0.0.1:{cluster.query_port}/{APP}/predict",
        OFFERED_MULTIPLE * CAPACITY_PER_S,
        LOAD_SECONDS,
        connections=CONNECTIONS,
        slo_us=SLO_MICROS + CLIENT_SLACK_US,
    )
    time.sleep(2.0)
    status, retry_after = _refusal_headers(cluster)
    report = report_of(load)
    rss_growth = cluster.rss_kib() - rss_before

    statuses = report["status"]
    requests = report["requests"]
    refused = statuses.get("429", 0)
    outcomes = report["latency_by_outcome_us"]
    admitted = outcomes.get("200", {"count": 0, "max": 0.0})  # the model's answers
    defaults = outcomes.get("200-default", {"count": 0, "max": 0.0})
    lost = (
        report["lost"]
        + report["unfinished"]
        + report["errors"]["total"]
        + (requests - sum(statuses.values()))
        + sum(count for code, count in statuses.items() if code not in ("200", "429"))
    )
    late = admitted["count"] - report["answers_within_slo"]
    if defaults["max"] > SLO_MICROS + CLIENT_SLACK_US:
        late += 1  # a default answered past the deadline (the report counts no more than that)
    observed = (
        f"{requests} queries at {OFFERED_MULTIPLE}x: {refused} refused 429 "
        f"(Retry-After {retry_after}), {admitted['count']} answered by the model (max "
        f"{admitted['max'] / 1e3:.0f} ms), {defaults['count']} defaults, {late} late, {lost} lost; "
        f"RSS {rss_growth / 1024:+.1f} MiB"
    )
    passed = (
        status == 429
        and retry_after is not None
        and int(retry_after) >= 1
        and refused > 0.4 * requests
        and admitted["count"] > 0.5 * CAPACITY_PER_S * LOAD_SECONDS
        and defaults["count"] <= 0.1 * admitted["count"]
        and late == 0
        and lost == 0
        and rss_growth < RSS_GROWTH_BOUND_KIB
    )
    return Outcome(
        observed,
        passed,
        LoadReport(
            sent=requests,
            answered=refused + admitted["count"] + defaults["count"] - late,
            defaults=defaults["count"],
            late=late,
            lost=lost,
        ),
    )


CASES = [
    Case(
        "overload: open loop at 4x a 200/s model, 250 ms SLO",
        "429 + Retry-After for the excess; admitted answers within the SLO; 0 lost; RSS bounded",
        overload_4x,
    ),
]
