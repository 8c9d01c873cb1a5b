"""Batching as a user sees it: fixed batch sizes honoured under saturation, adaptive batching
reported through metrics, and a straggling replica never holding answers past the SLO."""

import json
import threading
import time
import urllib.request

import e2e_models
from e2e_support import predict

from clipper.deployers.python import deploy_python_closure


def metrics_text(conn):
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as response:
        return response.read().decode()


def test_a_fixed_batch_size_of_9_is_what_the_model_sees_under_saturation(clusters):
    conn = clusters.start("fixed-batch")
    conn.register_application("sizes", "doubles", "-1", 10_000_000)
    deploy_python_closure(conn, "sizer", "1", "doubles", e2e_models.size_of_its_batch, batch_size=9)
    conn.link_model_to_app("sizes", "sizer")

    status, answer, _ = predict(conn, "sizes", {"input_batch": [[float(i), 1.0] for i in range(450)]})
    assert status == 200
    results = answer["batch_predictions"]
    assert len(results) == 450
    assert all(not result["default"] for result in results)
    sizes = [result["output"] for result in results]
    assert max(sizes) <= 9
    assert sum(1 for size in sizes if size == 9) >= 0.7 * 450
    assert 'clipper_model_batch_cuts_total{model="sizer",version="1",reason="full"}' in metrics_text(conn)


def test_adaptive_batching_grows_batches_under_concurrent_load(clusters):
    conn = clusters.start("adaptive")
    conn.register_application("sizes", "doubles", "-1", 1_000_000)
    deploy_python_closure(conn, "sizer", "1", "doubles", e2e_models.size_of_its_batch)
    conn.link_model_to_app("sizes", "sizer")

    largest = []
    # Several rounds of a large input_batch: the controller grows from 1 as full batches come back fast.
    for round_index in range(5):
        status, answer, _ = predict(
            conn, "sizes", {"input_batch": [[float(round_index), float(i)] for i in range(400)]}
        )
        assert status == 200
        outputs = [result["output"] for result in answer["batch_predictions"]]
        assert all(not result["default"] for result in answer["batch_predictions"])
        largest.append(max(outputs))
    assert largest[-1] > 8, largest
    text = metrics_text(conn)
    learned = [line for line in text.splitlines() if line.startswith("clipper_model_learned_batch_size{")]
    assert learned and int(learned[0].rsplit(" ", 1)[1]) > 8


def test_a_straggling_replica_never_pushes_an_answer_past_the_slo(clusters, tmp_path):
    conn = clusters.start("straggler")
    slo_seconds = 0.3
    conn.register_application("sum", "doubles", "-1.0", int(slo_seconds * 1_000_000))
    straggler = e2e_models.make_straggler(str(tmp_path / "slow-replica.flag"), delay_s=5.0)
    deploy_python_closure(conn, "sum-model", "1", "doubles", straggler, num_replicas=2)
    conn.link_model_to_app("sum", "sum-model")

    results, failures = [], []
    started = time.monotonic()

    def client(worker):
        index = 0
        while time.monotonic() - started < 4.0:
            value = float(worker * 10000 + index)
            index += 1
            try:
                status, answer, elapsed = predict(conn, "sum", {"input": [value, 1.0]}, timeout_s=10)
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(repr(error))
                continue
            results.append((time.monotonic() - started, status, answer, elapsed, value + 1.0))

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert len(results) > 40
    assert all(status == 200 for _, status, *_ in results)
    # The correctness bound: the deadline answers every query, whatever the slow replica does.
    assert max(elapsed for *_, elapsed, _ in results) < slo_seconds + 0.25
    for _, _, answer, _, expected in results:
        assert answer["output"] == (-1.0 if answer["default"] else expected)
    # After the first second the slow replica is avoided and the fast one answers nearly everything.
    late = [answer for at, _, answer, _, _ in results if at > 1.0]
    assert late and sum(not answer["default"] for answer in late) >= 0.9 * len(late)
    state = json.loads(conn.cm.engine_batching_state()) if hasattr(conn.cm, "engine_batching_state") else None
    text = metrics_text(conn)
    assert "clipper_model_hedged_batches_total" in text
    assert state is None or any(replica["slow"] for model in state for replica in model["replicas"])


def test_queries_a_model_cannot_answer_in_time_are_refused_at_once_and_it_is_probed_again(clusters):
    conn = clusters.start("shedding")
    conn.register_application("slow", "doubles", "-1.0", 150_000)
    conn.register_application("lenient", "doubles", "-1.0", 150_000, overload="default")
    deploy_python_closure(conn, "sleeper", "1", "doubles", e2e_models.sleep_300_ms)
    conn.link_model_to_app("slow", "sleeper")
    conn.link_model_to_app("lenient", "sleeper")

    # The first query teaches the engine that a batch takes ~300 ms, longer than the 150 ms SLO.
    first = predict(conn, "slow", {"input": [1.0]})[1]
    assert first["default"] is True
    time.sleep(0.35)  # the first batch finishes and is measured
    # Admission control refuses what cannot be answered in time, at once: 429, or the default.
    status, answer, elapsed = predict(conn, "slow", {"input": [2.0, 2.0]})
    assert status == 429 and elapsed < 0.1, (status, answer)
    assert "sleeper:1 would answer in about" in answer["cause"]
    status, answer, elapsed = predict(conn, "lenient", {"input": [3.0, 2.0]})
    assert status == 200 and answer["default"] is True and elapsed < 0.1, answer
    assert answer["default_explanation"].startswith("Overloaded: model sleeper:1 would answer")
    # With no batch answered for a while, one query is admitted again to measure the model anew:
    # it is evaluated and answered by its deadline, with the default since the model is too slow.
    time.sleep(0.6)
    status, answer, elapsed = predict(conn, "slow", {"input": [4.0, 2.0]})
    assert status == 200 and answer["default"] is True, answer
    assert "within the latency SLO" in answer["default_explanation"]
    text = metrics_text(conn)
    assert 'clipper_app_rejected_total{app="slow",reason="deadline"} 1' in text
    assert 'clipper_app_rejected_total{app="lenient",reason="deadline"} 1' in text
