"""The shared-memory transport end to end (cpp/rpc/shm_transport.h, clipper.container.shm_client): local
replicas are served over rings and say so, ZeroMQ when forced or when a batch does not fit, faults
(a replica killed, stopped, a frontend restart, a hostile ring) handled as over ZeroMQ. Real frontend
and replica processes over loopback."""

import json
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import e2e_models
import flatbuffers
import numpy as np
import pytest
import zmq
from e2e_support import free_ports, model_answer, post, predict, wait_for

from clipper.container import shm_client
from clipper.container.codec import InputType, Payload, encode_register, read_message
from clipper.deployers.python import deploy_python_closure
from clipper.management.endpoints import FrontendEndpoints, process_is_alive
from clipper_native import frontend_binary


def transports(conn):
    return [
        replica["transport"]
        for replica in conn.get_all_model_replicas(verbose=True)
        if replica.get("state", "running") == "running"
    ]


def shm_copy_counters(conn):
    """The engine's counts of what it wrote into shared-memory request rings (/metrics)."""
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as response:
        text = response.read().decode()
    names = ("batches", "input_bytes", "frame_bytes", "copied_bytes")
    values = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(f"clipper_shm_request_{name}_total "):
                values[name] = float(line.split()[1])
    assert set(values) == set(names), text
    return values


def metric_values(conn, prefix):
    """Every /metrics sample whose name starts with `prefix`, by name."""
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def deploy_sum(conn, num_replicas=1, slo_micros=5_000_000):
    conn.register_application("sum", "doubles", "-1.0", slo_micros)
    deploy_python_closure(
        conn, "sum-model", "1", "doubles", e2e_models.sum_of_each, num_replicas=num_replicas
    )
    conn.link_model_to_app("sum", "sum-model")
    model_answer(conn, "sum", {"input": [1.0]})


def test_the_extension_is_built_with_the_package():
    assert shm_client.available(), "clipper.container._shm_ring is missing: build with Cython"


def test_a_local_replica_is_served_over_shared_memory_and_says_so(clusters):
    conn = clusters.start("shm")
    deploy_sum(conn)
    assert transports(conn) == ["shm"]
    assert predict(conn, "sum", {"input": [1.0, 2.0, 3.5]})[1]["output"] == 6.5
    status, answer, _ = predict(conn, "sum", {"input_batch": [[1.0], [2.0, 3.0], [4.0, 5.0, 6.0]]})
    assert status == 200
    assert [entry["output"] for entry in answer["batch_predictions"]] == [1.0, 5.0, 15.0]
    # A 1 MiB float tensor per query (131,072 doubles) arrives whole, its bytes written into the
    # ring once (the engine's counters), and nothing else copied but its ~100-byte frame.
    before = shm_copy_counters(conn)
    tensor = np.random.default_rng(1).random(131_072)
    status, answer, _ = predict(conn, "sum", {"input": tensor.tolist()})
    assert status == 200 and answer["default"] is False
    assert answer["output"] == pytest.approx(float(tensor.sum()), rel=1e-12)
    after = shm_copy_counters(conn)
    copied = {name: after[name] - before[name] for name in after}
    assert copied["batches"] == 1
    assert copied["input_bytes"] == tensor.nbytes
    assert 0 < copied["frame_bytes"] < 200
    assert copied["copied_bytes"] == 0

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipper.cli",
            "replicas",
            "--cluster-name",
            "shm",
            "--state-dir",
            str(conn.cm.state_dir),
            "--management-port",
            str(conn.cm.clipper_management_port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "TRANSPORT" in result.stdout and " shm " in result.stdout


def test_spinning_replicas_and_frontend_answer_and_still_wake_after_the_window(clusters):
    # No cost bound: every batch gets its spin (the gate is tested in tests/cpp/spin_cost_gate_test.cc
    # and shm_transport_test.cc).
    conn = clusters.start(
        "spin",
        replica_shm_spin_micros=300,
        shm_response_spin_micros=300,
        shm_response_spin_cost_micros=0,
    )
    deploy_sum(conn)
    assert transports(conn) == ["shm"]
    (replica,) = conn.cm.list_replicas()
    assert "spin_micros=300" in Path(replica.log_path).read_text()
    frontend_pid = FrontendEndpoints.read(conn.cm.state_dir).pid
    command = Path(f"/proc/{frontend_pid}/cmdline").read_bytes().split(b"\0")
    assert command[command.index(b"--shm-response-spin-micros") + 1] == b"300"
    assert command[command.index(b"--shm-response-spin-cost-micros") + 1] == b"0"
    spins_before = metric_values(conn, "clipper_shm_response_spin")
    for round_number in range(20):
        values = [float(round_number), 0.5]
        assert predict(conn, "sum", {"input": values})[1]["output"] == sum(values)
        # Past the 300 us window the replica sleeps, and the next request rings it awake (the
        # doorbell itself is checked in tests/python/container/test_shm_ring.py).
        time.sleep(0.02 if round_number % 2 else 0)
    status, answer, _ = predict(conn, "sum", {"input_batch": [[1.0], [2.0, 3.0]]})
    assert status == 200
    assert [entry["output"] for entry in answer["batch_predictions"]] == [1.0, 5.0]
    spins = metric_values(conn, "clipper_shm_response_spin")
    ran = spins["clipper_shm_response_spins_total"] - spins_before["clipper_shm_response_spins_total"]
    assert ran >= 1, spins
    assert spins["clipper_shm_response_spins_gated_total"] == 0, "no bound: no spin held back"
    assert spins["clipper_shm_response_spins_caught_total"] <= spins["clipper_shm_response_spins_total"]


def test_a_frontend_forced_to_zeromq_serves_every_replica_over_it(clusters):
    conn = clusters.start("zmq-only", replica_transport="zmq")
    deploy_sum(conn)
    assert transports(conn) == ["zmq"]
    assert predict(conn, "sum", {"input": [2.0, 2.0]})[1]["output"] == 4.0


def test_a_killed_replica_is_dropped_at_once_and_its_peer_answers(clusters):
    conn = clusters.start("shm-kill", heartbeat_timeout_millis=5000)
    deploy_sum(conn, num_replicas=2)
    wait_for(lambda: transports(conn) == ["shm", "shm"], what="two shared-memory replicas")
    victim = conn.cm.list_replicas()[0]
    os.kill(victim.pid, signal.SIGKILL)
    # Well before the 5 s heartbeat timeout: the handshake connection's close drops it.
    started = time.monotonic()
    wait_for(
        lambda: len(conn.get_all_model_replicas()) <= 1,
        timeout_s=3.0,
        what="the killed replica to be dropped",
    )
    assert time.monotonic() - started < 3.0
    for value in range(20):
        status, answer, _ = predict(conn, "sum", {"input": [float(value), 1.0]})
        assert status == 200 and answer["default"] is False and answer["output"] == value + 1.0


def test_a_stopped_replica_is_dropped_by_its_deadline_and_rejoins_over_shared_memory(clusters):
    conn = clusters.start("shm-stop", heartbeat_timeout_millis=500)
    deploy_sum(conn, slo_micros=300_000)
    replica = conn.cm.list_replicas()[0]
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, answer, elapsed = predict(conn, "sum", {"input": [7.0]})
        assert status == 200 and answer["default"] is True
        assert elapsed < 0.3 + 0.3, elapsed  # answered by its deadline, not after the replica
        wait_for(
            lambda: conn.get_all_model_replicas() == [],
            timeout_s=5.0,
            what="the stopped replica to be dropped",
        )
        assert time.monotonic() - started < 5.0
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    # It learns from its heartbeat that the frontend forgot it, and registers again over shm.
    wait_for(lambda: transports(conn) == ["shm"], timeout_s=10.0, what="the replica to rejoin")
    assert model_answer(conn, "sum", {"input": [7.0, 1.0]})["output"] == 8.0


def test_after_a_frontend_restart_replicas_attach_to_new_rings(clusters):
    conn = clusters.start("shm-restart")
    deploy_sum(conn)
    assert transports(conn) == ["shm"]
    frontend = conn.cm.frontend_pid()
    os.kill(frontend, signal.SIGKILL)  # no clean-up at all: the rings die with it
    wait_for(lambda: not process_is_alive(frontend), what="the frontend to die")
    conn.start_clipper()
    assert model_answer(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0
    assert transports(conn) == ["shm"]


# ---- the standalone binary: a small ring, and a hostile replica --------------------------------------


@pytest.fixture(params=["loop", "rpc-thread"])
def binary_frontend(tmp_path, request):
    """The standalone frontend with 64 KiB rings; the replica side on the I/O loop, or (two I/O
    threads) on a thread of its own, where the transport's wait replaces the loop's poll."""
    extra = ["--io-threads", "2"] if request.param == "rpc-thread" else []
    with open(tmp_path / "frontend.log", "w+") as log:  # the frontend's and its replicas' logs
        yield from _binary_frontend(tmp_path, log, extra)


def _binary_frontend(tmp_path, log, extra):
    query_port, rpc_port = free_ports(2)
    config = {
        "apps": [
            {
                "name": "sum",
                "input_type": "doubles",
                "default_output": "-1",
                "slo_micros": 2_000_000,
                "linked_models": ["sum"],
            }
        ],
        "models": [{"name": "sum", "version": "1", "input_type": "doubles", "current": True}],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "sum_model.py").write_text(
        "from clipper.container import Model\n"
        "class Sum(Model):\n"
        "    def predict_batch(self, inputs):\n"
        "        return [float(row.sum()) for row in inputs]\n"
    )
    frontend = subprocess.Popen(
        [
            str(frontend_binary()),
            "--query-port",
            str(query_port),
            "--rpc-port",
            str(rpc_port),
            "--metrics-port",
            "0",
            "--config",
            str(tmp_path / "config.json"),
            "--shm-request-ring-bytes",
            "65536",
            "--shm-response-ring-bytes",
            "65536",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started = []

    def start_replica():
        replica = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clipper.container",
                "--model",
                "sum_model:Sum",
                "--model-dir",
                str(tmp_path),
                "--name",
                "sum",
                "--version",
                "1",
                "--input-type",
                "doubles",
                "--frontend",
                f"tcp://127.0.0.1:{rpc_port}",
            ],
            stderr=log,
        )
        started.append(replica)
        return replica

    def log_text():
        log.flush()
        return (tmp_path / "frontend.log").read_text()

    yield {
        "query": f"127.0.0.1:{query_port}",
        "rpc": rpc_port,
        "process": frontend,
        "start_replica": start_replica,
        "log": log_text,
    }
    for process in [*started, frontend]:
        process.kill()
        process.wait()


def sum_answer(address, values):
    def answered():
        try:
            status, answer, _ = post(address, "/sum/predict", {"input": values})
        except OSError:  # the frontend is still starting
            return None
        return answer if status == 200 and not answer["default"] else None

    return wait_for(answered, what="an answer from the model")["output"]


def test_a_batch_larger_than_the_ring_travels_over_zeromq(binary_frontend):
    binary_frontend["start_replica"]()
    assert sum_answer(binary_frontend["query"], [1.0, 2.0]) == 3.0
    assert "transport=shm" in binary_frontend["log"]()
    # 100,000 doubles (800 KB) cannot fit a 64 KiB ring: the batch goes over the socket, whole.
    values = np.arange(100_000, dtype=np.float64)
    assert sum_answer(binary_frontend["query"], values.tolist()) == float(values.sum())
    assert sum_answer(binary_frontend["query"], [4.0, 5.0]) == 9.0  # and the ring still serves


class HostileReplica:
    """Registers over ZeroMQ asking for shared memory, attaches like the SDK, then writes what it likes
    into the mapping."""

    def __init__(self, rpc_port):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.ROUTING_ID, b"hostile-replica")
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(f"tcp://127.0.0.1:{rpc_port}")
        self.register()

    def register(self):
        """Sends the registration and attaches to the channel the frontend offers."""
        self.socket.send(
            bytes(
                encode_register(
                    flatbuffers.Builder(256), "sum", "1", InputType.DOUBLES, 9, shared_memory=True
                )
            )
        )
        assert self.socket.poll(5000), "no offer"
        message = self.socket.recv()
        payload_type, table = read_message(message)
        assert payload_type == Payload.SharedMemoryOffer
        path, token = shm_client.decode_offer(message, table)
        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.connection.connect(path)
        self.connection.sendall(token)
        data, fds, _, _ = socket.recv_fds(self.connection, 32, 3)
        self.memfd = fds[0]
        _magic, _version, _reserved, self.request_bytes, self.response_bytes = struct.unpack(
            "<QIIQQ", data
        )
        self.mapping = mmap.mmap(self.memfd, os.fstat(self.memfd).st_size)

    # Offsets of rpc/shm_ring.h's ChannelHeader: RingControl request at 64, response at 256, each
    # tail, head and consumer_sleeping on their own 64-byte line.
    REQUEST_TAIL = 64
    RESPONSE_TAIL = 256

    def requests_sent(self):
        """Whether the frontend wrote anything into the request ring (its tail moved)."""
        return struct.unpack_from("<Q", self.mapping, self.REQUEST_TAIL)[0] > 0

    def register_again(self):
        """Registers again on the same address and attaches to the new channel; leaves the old one
        only then, so that its close reaches the frontend after the registration."""
        old = (self.connection, self.mapping)
        self.register()
        for leaving in old:
            leaving.close()

    def close(self):
        self.mapping.close()
        self.connection.close()
        self.socket.close()
        self.context.term()


def test_a_hostile_ring_cannot_crash_the_frontend(binary_frontend):
    binary_frontend["start_replica"]()
    assert sum_answer(binary_frontend["query"], [1.0, 2.0]) == 3.0
    hostile = HostileReplica(binary_frontend["rpc"])
    try:
        with pytest.raises(OSError):
            os.ftruncate(hostile.memfd, 4096)  # sealed: shrinking would SIGBUS the frontend
        wait_for(
            lambda: "replica=9 transport=shm" in binary_frontend["log"](),
            what="the hostile replica to be registered",
        )
        # Garbage records, then a tail promising them: every record length points past the ring.
        rings = 4096 + hostile.request_bytes
        hostile.mapping[rings : rings + 4096] = os.urandom(4096)
        hostile.mapping[rings : rings + 4] = struct.pack("<I", 0x7FFFFFF0)
        hostile.mapping[hostile.RESPONSE_TAIL : hostile.RESPONSE_TAIL + 8] = struct.pack("<Q", 4096)
        wait_for(
            lambda: 'replica=9 reason="connection closed"' in binary_frontend["log"](),
            what="the hostile replica to be dropped",
        )
        assert "shm_channel_closed" in binary_frontend["log"]()
        assert binary_frontend["process"].poll() is None
        for value in range(10):
            assert sum_answer(binary_frontend["query"], [float(value)]) == float(value)
    finally:
        hostile.close()
    assert binary_frontend["process"].poll() is None, "the frontend died"


@pytest.fixture(params=["loop", "rpc-thread"])
def patient_frontend(tmp_path, request):
    """binary_frontend, keeping a silent replica for 30 s (the test's replica sends no heartbeats)."""
    extra = ["--heartbeat-timeout-millis", "30000"]
    if request.param == "rpc-thread":
        extra += ["--io-threads", "2"]
    with open(tmp_path / "frontend.log", "w+") as log:
        yield from _binary_frontend(tmp_path, log, extra)


def test_a_replica_registering_again_gets_the_batch_its_old_ring_held(patient_frontend):
    """A replica attached over shared memory that registers again has left its channel with the
    batch waiting in it (the SDK detaches first; the frontend releases the channel anyway): it is
    dropped and registered afresh, and the batch goes back to the queue and into its new ring. Kept
    as it was, it held that batch in flight for good and was never sent another."""
    log = patient_frontend["log"]
    replica = HostileReplica(patient_frontend["rpc"])
    asking = threading.Thread(
        target=post, args=(patient_frontend["query"], "/sum/predict", {"input": [1.0, 2.0]})
    )
    try:
        wait_for(lambda: "replica=9 transport=shm" in log(), what="the replica to be registered")
        asking.start()
        wait_for(replica.requests_sent, what="the batch in the replica's ring")
        replica.register_again()
        # Well inside the query's 2 s SLO.
        wait_for(replica.requests_sent, timeout_s=1.5, what="the batch sent again, into the new ring")
        assert 'replica=9 reason="registered again' in log()
    finally:
        if asking.ident is not None:
            asking.join()
        replica.close()
    assert patient_frontend["process"].poll() is None, "the frontend died"
