"""The prediction cache as a user sees it: identical queries are answered without evaluating the
model again, a new model version never serves the old version's answers, and cache_size=0 turns
it off."""

import threading
import urllib.request

import e2e_models
from e2e_support import predict

from clipper.deployers.python import deploy_python_closure


def cache_counter(conn, name):
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_identical_queries_are_answered_from_the_cache(clusters):
    conn = clusters.start("cache-hits")
    conn.register_application("count", "doubles", "-1", 5_000_000)
    deploy_python_closure(conn, "counter", "1", "doubles", e2e_models.count_evaluations)
    conn.link_model_to_app("count", "counter")

    first = predict(conn, "count", {"input": [1.0, 2.0]})[1]
    again = predict(conn, "count", {"input": [1.0, 2.0]})[1]
    other = predict(conn, "count", {"input": [3.0, 4.0]})[1]
    assert not first["default"] and not again["default"]
    assert again["output"] == first["output"], "the second identical query was not evaluated again"
    assert other["output"] == first["output"] + 1
    assert cache_counter(conn, "clipper_cache_hits_total") >= 1


def test_concurrent_identical_queries_share_one_evaluation(clusters):
    conn = clusters.start("cache-coalesce")
    conn.register_application("count", "doubles", "-1", 5_000_000)
    deploy_python_closure(conn, "counter", "1", "doubles", e2e_models.count_evaluations)
    conn.link_model_to_app("count", "counter")

    answers = []
    barrier = threading.Barrier(16)

    def client():
        barrier.wait()
        answers.append(predict(conn, "count", {"input": [7.0, 7.0]})[1])

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 16
    assert len({answer["output"] for answer in answers}) == 1
    assert answers[0]["output"] == 1, "the model evaluated the input exactly once"


def test_a_new_version_never_serves_the_old_versions_answers(clusters):
    conn = clusters.start("cache-versions")
    conn.register_application("count", "doubles", "-1", 5_000_000)
    deploy_python_closure(conn, "counter", "1", "doubles", e2e_models.count_evaluations)
    conn.link_model_to_app("count", "counter")
    for _ in range(3):
        predict(conn, "count", {"input": [float(_), 0.0]})
    cached = predict(conn, "count", {"input": [0.0, 0.0]})[1]
    assert cached["output"] == 1

    deploy_python_closure(conn, "counter", "2", "doubles", e2e_models.count_evaluations)
    fresh = predict(conn, "count", {"input": [0.0, 0.0]})[1]
    assert not fresh["default"]
    assert fresh["output"] == 1 and cache_counter(conn, "clipper_cache_misses_total") >= 4
    assert predict(conn, "count", {"input": [0.0, 0.0], "version": "1"})[1]["output"] == 1


def test_cache_size_zero_turns_it_off(clusters):
    conn = clusters.start("cache-off")
    conn.stop_all()
    conn.start_clipper(cache_size=0)
    conn.register_application("count", "doubles", "-1", 5_000_000)
    deploy_python_closure(conn, "counter", "1", "doubles", e2e_models.count_evaluations)
    conn.link_model_to_app("count", "counter")
    outputs = [predict(conn, "count", {"input": [1.0, 1.0]})[1]["output"] for _ in range(3)]
    assert outputs == [1, 2, 3]
    assert cache_counter(conn, "clipper_cache_hits_total") == 0
