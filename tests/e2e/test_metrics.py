"""/metrics of a real running frontend, read as Prometheus reads it: prometheus_client's parser accepts
the whole exposition, names follow Prometheus conventions (base units, `_total` counters, `_seconds`
histograms), the build and process metrics are there, per-replica series appear, and every metric the
Grafana dashboard in dashboards/ queries is exported."""

import json
import re
import time
import urllib.request
from pathlib import Path

import e2e_models
from e2e_support import predict, wait_for
from prometheus_client.parser import text_string_to_metric_families

from clipper.deployers.python import deploy_python_closure

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "clipper.json"
UNITLESS_HISTOGRAMS = {"clipper_model_batch_size", "clipper_app_answer_confidence"}

# PromQL words that are not metric names.
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def scrape(conn):
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as answer:
        assert answer.headers.get("Content-Type", "").startswith("text/plain"), answer.headers
        return answer.read().decode()


def serve_a_few_queries(clusters):
    conn = clusters.start("metrics")
    conn.register_application("sum", "doubles", "-1", 5_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("sum", "summer")
    for value in range(5):
        status, answer, _ = predict(conn, "sum", {"input": [float(value), 1.0]})
        assert status == 200 and not answer["default"], answer
    predict(conn, "sum", {"input": [1.0, 1.0]})  # a cache hit
    return conn


def metric_names_in(expression):
    """The metric names a PromQL expression reads (label matchers, label lists, ranges, strings,
    functions and numbers left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    # Numbers and durations (0.99, 5m) are matched whole so that their letters are not read as names.
    for match in re.finditer(r"[0-9][0-9.]*[A-Za-z]*|[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if word[0].isdigit() or following.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue  # a number, a function or an aggregation
        names.add(word)
    return names


def dashboard_expressions():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = []

    def walk(panels):
        for panel in panels:
            expressions.extend(
                target["expr"] for target in panel.get("targets", []) if "expr" in target
            )
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            expressions.append(re.fullmatch(r"label_values\((\w+),\s*\w+\)", query).group(1))
    return expressions


def test_the_exposition_parses_and_follows_prometheus_conventions(clusters):
    conn = serve_a_few_queries(clusters)
    families = {family.name: family for family in text_string_to_metric_families(scrape(conn))}

    for family in families.values():
        assert family.documentation, f"{family.name} has no HELP"
        assert "micros" not in family.name, f"{family.name}: export base units (seconds)"
        if family.type == "counter":
            assert all(
                s.name.endswith("_total") for s in family.samples if s.name.startswith(family.name)
            ), family
        # Latencies are in seconds; the other histograms count things without a unit.
        if family.type == "histogram" and family.name not in UNITLESS_HISTOGRAMS:
            assert family.name.endswith("_seconds"), (
                f"{family.name}: a latency histogram is in seconds"
            )

    # The parser strips `_total` from counter family names.
    expected = {
        "clipper_app_requests": "counter",
        "clipper_app_slo_attained": "counter",
        "clipper_app_latency_seconds": "histogram",
        "clipper_model_batch_latency_seconds": "histogram",
        "clipper_model_batch_size": "histogram",
        "clipper_model_batch_cuts": "counter",
        "clipper_cache_hits": "counter",
        "clipper_cache_misses": "counter",
        "clipper_replica_batches": "counter",
        "clipper_replica_failed_batches": "counter",
        "clipper_replica_inflight_batches": "gauge",
        "clipper_replica_connected": "gauge",
        "clipper_replica_slow": "gauge",
        "clipper_replica_batch_latency_seconds": "histogram",
        "clipper_build_info": "gauge",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
        "process_max_fds": "gauge",
        "process_start_time_seconds": "gauge",
    }
    for name, kind in expected.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind, (name, families[name].type)

    latency = families["clipper_app_latency_seconds"]
    bounds = [float(s.labels["le"]) for s in latency.samples if s.name.endswith("_bucket")]
    assert 0 < min(bounds) < 0.001 and max(b for b in bounds if b != float("inf")) <= 60, bounds
    [latency_sum] = [s.value for s in latency.samples if s.name.endswith("_sum")]
    assert 0 < latency_sum < 60, "the latency sum is in seconds"

    [build] = families["clipper_build_info"].samples
    assert build.value == 1 and build.labels["version"] and build.labels["commit"], build.labels

    process = {
        family: families[family].samples[0].value
        for family in expected
        if family.startswith("process_")
    }
    assert process["process_resident_memory_bytes"] > 1 << 20
    assert 0 < process["process_open_fds"] <= process["process_max_fds"]
    assert abs(process["process_start_time_seconds"] - time.time()) < 3600
    assert process["process_cpu_seconds"] > 0

    replica_batches = [
        s for s in families["clipper_replica_batches"].samples if s.name.endswith("_total")
    ]
    assert replica_batches and sum(s.value for s in replica_batches) >= 5
    assert {"model", "version", "replica"} <= set(replica_batches[0].labels)
    assert replica_batches[0].labels["model"] == "summer"
    [connected] = families["clipper_replica_connected"].samples
    assert connected.value == 1

    cuts = families["clipper_model_batch_cuts"].samples
    assert {s.labels["reason"] for s in cuts} >= {"full", "deadline", "wait_expired", "queue_empty"}
    assert sum(s.value for s in cuts if s.name.endswith("_total")) >= 5
    hits = families["clipper_cache_hits"].samples[0].value
    assert hits >= 1


def test_every_dashboard_query_reads_metrics_the_frontend_exports(clusters):
    conn = serve_a_few_queries(clusters)
    # The replica supervisor publishes its slots on its next pass after the replica started, which
    # can come after the queries were answered.
    def supervised_scrape():
        text = scrape(conn)
        return text if 'clipper_replica_restarts_total{model="summer"' in text else None

    text = wait_for(supervised_scrape, what="the supervisor's first report on /metrics")
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    used = set().union(*(metric_names_in(expression) for expression in expressions))
    assert {"clipper_app_latency_seconds_bucket", "clipper_app_slo_attained_total"} <= used
    missing = {
        name: [e for e in expressions if name in metric_names_in(e)] for name in used - exported
    }
    assert not missing, f"the dashboard queries metrics the frontend does not export: {missing}"


def test_the_expression_reader_finds_metric_names_only():
    expression = (
        'histogram_quantile(0.99, sum by (app, le) (rate(clipper_app_latency_seconds_bucket{job=~"$job"}'
        "[$__rate_interval]))) / on (app) group_left () clipper_x_total offset 5m"
    )
    assert metric_names_in(expression) == {"clipper_app_latency_seconds_bucket", "clipper_x_total"}
