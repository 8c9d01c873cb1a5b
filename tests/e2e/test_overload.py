"""Overload as a client sees it: far above a model's capacity, queries are refused at arrival (429 with
Retry-After, or the app's default when its overload option says so), every admitted query is answered
within its SLO and none is lost; at light load nothing is refused.

The model sleeps 20 ms per batch of at most 4 inputs, so its capacity is about 200 queries/s whatever
else the machine runs; the load comes from clipper-loadgen (installed with the package) in open loop,
so the offered rate does not bend to the server's answers.
"""

import http.client
import json
import os
import re
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import clipper_native
import e2e_models
from clipper.deployers.python import deploy_python_closure
from e2e_support import model_answer, post

SLO_MICROS = 250_000
CAPACITY_PER_S = 200  # 4 inputs per 20 ms batch
# The answer to a query is due by its SLO; the load generator's own scheduling and the loaded machine
# may add a little on top of the server's time.
SLO_WITH_CLIENT_SLACK_US = SLO_MICROS + 60_000


def loadgen():
    for base in clipper_native.__path__:
        candidate = os.path.join(base, "bin", "clipper-loadgen")
        if os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(
        "clipper-loadgen is not installed with clipper_native (pip install builds it)"
    )


def open_loop(url, rate, seconds):
    command = [
        loadgen(),
        "--url",
        url,
        "--w1",
        "--rate",
        str(rate),
        "--arrivals",
        "poisson",
        "--connections",
        "512",
        "--warmup",
        "0.5",
        "--duration",
        str(seconds),
        "--drain",
        "3",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def report_of(process):
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    report = json.loads(out)
    print(
        json.dumps({k: report[k] for k in ("requests", "status", "default_answers", "latency_us")})
    )
    return report


def assert_nothing_lost(report):
    assert report["lost"] == 0 and report["unfinished"] == 0, report
    assert report["errors"]["total"] == 0, report
    assert sum(report["status"].values()) == report["requests"], report


def rejected(conn, app, reason):
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(
        rf'^clipper_app_rejected_total{{app="{app}",reason="{reason}"}} (\d+)$', text, re.MULTILINE
    )
    assert found, f"no rejected series for {app}/{reason}"
    return int(found.group(1))


def first_refusal(query_addr, app, within_s=5.0):
    """Queries `app` until one is refused; returns its status, Retry-After and JSON body."""
    host, port = query_addr.rsplit(":", 1)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("POST", f"/{app}/predict", body=b'{"input": [1.5, 2.5]}')
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                return response.status, response.getheader("Retry-After"), json.loads(body)
        finally:
            connection.close()
        time.sleep(0.01)
    raise AssertionError(f"no query to {app} was refused within {within_s} s of overload")


def test_far_above_capacity_queries_are_refused_at_arrival_and_every_admitted_one_is_on_time(
    clusters,
):
    conn = clusters.start("overload")
    conn.register_application("busy", "doubles", "-1", SLO_MICROS)
    conn.register_application("busy-default", "doubles", "-1", SLO_MICROS, overload="default")
    deploy_python_closure(
        conn, "sleeper", "1", "doubles", e2e_models.sleep_20_ms_per_batch, batch_size=4
    )
    conn.link_model_to_app("busy", "sleeper")
    conn.link_model_to_app("busy-default", "sleeper")
    model_answer(conn, "busy", {"input": [0.5]})
    query_addr = conn.get_query_addr()
    assert {app["name"]: app["overload"] for app in conn.get_all_apps(verbose=True)} == {
        "busy": "reject",
        "busy-default": "default",
    }

    # A tenth of capacity: nothing is refused, nothing is late.
    light = report_of(open_loop(f"http://{query_addr}/busy/predict", CAPACITY_PER_S // 10, 3))
    assert_nothing_lost(light)
    assert light["status"] == {"200": light["requests"]}, light["status"]
    assert light["default_answers"] == 0, light
    assert rejected(conn, "busy", "deadline") == 0

    # Four times capacity: most queries are refused at once; the admitted ones are answered in time.
    overload = open_loop(f"http://{query_addr}/busy/predict", 4 * CAPACITY_PER_S, 4)
    time.sleep(1.0)
    status, retry_after, body = first_refusal(query_addr, "busy")
    report = report_of(overload)
    assert status == 429, body
    assert retry_after is not None and int(retry_after) >= 1
    assert body["error"] == "Overloaded" and "sleeper:1" in body["cause"], body
    assert_nothing_lost(report)
    assert set(report["status"]) == {"200", "429"}, report["status"]
    admitted, refused = report["status"]["200"], report["status"]["429"]
    assert refused > 0.4 * report["requests"], report["status"]
    assert admitted > 0.5 * CAPACITY_PER_S * 4, report["status"]  # the model kept serving
    assert report["default_answers"] <= 0.1 * admitted, report
    assert report["latency_us"]["max"] <= SLO_WITH_CLIENT_SLACK_US, report["latency_us"]
    assert rejected(conn, "busy", "deadline") >= refused

    # The same overload on the app whose overload option is "default": 200 with its default output.
    report = report_of(
        open_loop(f"http://{query_addr}/busy-default/predict", 4 * CAPACITY_PER_S, 3)
    )
    assert_nothing_lost(report)
    assert report["status"] == {"200": report["requests"]}, report["status"]
    assert report["default_answers"] > 0.4 * report["requests"], report
    assert report["latency_us"]["max"] <= SLO_WITH_CLIENT_SLACK_US, report["latency_us"]
    assert rejected(conn, "busy-default", "deadline") >= report["default_answers"] * 0.9


def test_memory_bounds_refuse_queries_beyond_them_with_503(clusters):
    conn = clusters.start(
        "bounds",
        query_port_limits={"max_pending_queries_per_io_thread": 2, "max_queued_tasks_per_model": 4},
    )
    conn.register_application("slow", "doubles", "-1", 10_000_000)
    conn.register_application("lenient", "doubles", "-1", 10_000_000, overload="default")
    deploy_python_closure(conn, "sleeper", "1", "doubles", e2e_models.sleep_300_ms)
    conn.link_model_to_app("slow", "sleeper")
    conn.link_model_to_app("lenient", "sleeper")
    model_answer(conn, "slow", {"input": [0.5]})
    query_addr = conn.get_query_addr()

    # Five inputs would take the model's queue past its bound of four.
    status, body, _ = post(query_addr, "/slow/predict", {"input_batch": [[1.0]] * 5})
    assert status == 503 and "queue of model sleeper:1 is full" in body["cause"], body
    status, body, _ = post(query_addr, "/lenient/predict", {"input_batch": [[1.0]] * 5})
    assert status == 200 and all(answer["default"] for answer in body["batch_predictions"])

    # Two queries wait on the 300 ms model; a third finds the I/O thread at its bound.
    with ThreadPoolExecutor(2) as pool:
        waiting = [
            pool.submit(post, query_addr, "/slow/predict", {"input": [float(i)]}) for i in (2, 3)
        ]
        time.sleep(0.1)
        status, body, elapsed = post(query_addr, "/slow/predict", {"input": [4.0]})
        assert [future.result()[0] for future in waiting] == [200, 200]
    assert status == 503 and "queries are waiting for answers" in body["cause"], body
    assert rejected(conn, "slow", "queue_full") == 1
    assert rejected(conn, "lenient", "queue_full") == 1
    assert rejected(conn, "slow", "pending_limit") == 1
