"""replica_prefetch_full_batches end to end (cpp/rpc/dispatcher.cc): a replica busy with a batch is
sent a full one to wait behind it. Under a saturating closed loop every query is answered correctly,
over shared memory and over ZeroMQ; a replica killed holding two batches loses none of their queries.
Real frontend and replica processes over loopback."""

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import e2e_models
import pytest
from e2e_support import model_answer, predict, wait_for

from clipper.deployers.python import deploy_python_closure
from clipper.management.endpoints import FrontendEndpoints

BATCH = 4  # a fixed batch size: the closed loop below keeps several full batches queued


def prefetched_batches(conn):
    """clipper_model_prefetched_batches_total of sum-model:1 (/metrics)."""
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = [
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("clipper_model_prefetched_batches_total{") and "sum-model" in line
    ]
    assert len(values) == 1, text
    return values[0]


def deploy(conn, func, num_replicas, transport):
    conn.register_application("sum", "doubles", "-1.0", 10_000_000)
    deploy_python_closure(
        conn, "sum-model", "1", "doubles", func, num_replicas=num_replicas, batch_size=BATCH
    )
    conn.link_model_to_app("sum", "sum-model")
    model_answer(conn, "sum", {"input": [1.0]})
    expected = "shm" if transport == "auto" else "zmq"
    wait_for(
        lambda: (
            [r["transport"] for r in conn.get_all_model_replicas(verbose=True)]
            == [expected] * num_replicas
        ),
        what=f"{num_replicas} replica(s) over {expected}",
    )


def closed_loop(conn, clients, seconds, during=None):
    """`clients` threads sending sums back to back for `seconds`; `during()` runs meanwhile.
    Returns (results, failures): results are (status, answer, expected output)."""
    results, failures = [], []
    started = time.monotonic()

    def client(worker):
        index = 0
        while time.monotonic() - started < seconds:
            value = float(worker * 100_000 + index)
            index += 1
            try:
                status, answer, _ = predict(conn, "sum", {"input": [value, 1.0]}, timeout_s=20)
            except Exception as error:  # noqa: BLE001 - every failure is reported below
                failures.append(repr(error))
                continue
            results.append((status, answer, value + 1.0))

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(clients)]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a client is still waiting"
    return results, failures


def assert_every_answer_is_the_models(results, failures):
    assert failures == []
    assert all(status == 200 for status, _, _ in results)
    defaults = [answer for _, answer, _ in results if answer["default"]]
    assert defaults == [], defaults[:3]
    wrong = [
        (answer["output"], expected)
        for _, answer, expected in results
        if answer["output"] != expected
    ]
    assert wrong == [], wrong[:3]


@pytest.mark.parametrize("transport", ["auto", "zmq"])
def test_a_saturated_replica_gets_full_batches_ahead_and_answers_every_query(clusters, transport):
    conn = clusters.start(
        f"prefetch-{transport}", replica_transport=transport, replica_prefetch_full_batches=True
    )
    frontend_pid = FrontendEndpoints.read(conn.cm.state_dir).pid
    assert b"--replica-prefetch-full-batches" in Path(
        f"/proc/{frontend_pid}/cmdline"
    ).read_bytes().split(b"\0")
    deploy(conn, e2e_models.sum_of_each_after_20_ms, 1, transport)
    before = prefetched_batches(conn)
    # 24 clients, batches of 4 taking 20 ms: about 5 full batches queued at any time.
    results, failures = closed_loop(conn, clients=24, seconds=3.0)
    assert len(results) > 100
    assert_every_answer_is_the_models(results, failures)
    assert prefetched_batches(conn) - before > 10


def test_with_the_option_off_no_batch_is_prefetched(clusters):
    conn = clusters.start("prefetch-off", replica_prefetch_full_batches=False)
    deploy(conn, e2e_models.sum_of_each_after_20_ms, 1, "auto")
    results, failures = closed_loop(conn, clients=24, seconds=1.5)
    assert_every_answer_is_the_models(results, failures)
    assert prefetched_batches(conn) == 0


@pytest.mark.parametrize("transport", ["auto", "zmq"])
def test_a_replica_killed_with_two_batches_in_flight_loses_no_query(clusters, transport):
    # Over ZeroMQ the dead replica is dropped at the heartbeat timeout (1 s here), over shared
    # memory when its connection closes; either way its batches go back to the queue for its peer,
    # well within the 10 s SLO: every query gets the model's answer, none the default.
    conn = clusters.start(
        f"prefetch-kill-{transport}",
        replica_transport=transport,
        replica_prefetch_full_batches=True,
    )
    deploy(conn, e2e_models.sum_of_each_after_100_ms, 2, transport)
    victim = conn.cm.list_replicas()[0]
    held = {}

    def kill_when_it_holds_two():
        def inflight():
            for replica in conn.get_all_model_replicas(verbose=True):
                if replica["model_replica_id"] == victim.replica_id:
                    return replica["inflight_batches"]
            return 0

        held["batches"] = wait_for(
            lambda: inflight() == 2 and 2, what="the victim holding 2 batches"
        )
        os.kill(victim.pid, signal.SIGKILL)

    results, failures = closed_loop(conn, clients=24, seconds=4.0, during=kill_when_it_holds_two)
    assert held["batches"] == 2
    assert len(results) > 50
    assert_every_answer_is_the_models(results, failures)
    assert victim.replica_id not in [
        r["model_replica_id"] for r in conn.get_all_model_replicas(verbose=True)
    ]
