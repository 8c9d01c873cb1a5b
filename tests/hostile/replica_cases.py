"""Replica faults, under load: replicas killed, stopped, slow or raising, and a hand-written replica
that answers garbage or floods the RPC port. Every query must be answered by its deadline (the app's
default answers when no model can), the frontend must stay up and keep its memory."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable

import e2e_models
import flatbuffers
import hostile_models
import zmq
from e2e_support import wait_for
from hostile_cluster import (
    SLO_MICROS,
    Case,
    HostileCluster,
    Outcome,
    QueryLoad,
)
from rogue_replica import RogueReplica, response_with_outputs

from clipper.container import ContainerOptions, Model, ModelServer, ReplicaCredentials
from clipper.container.codec import (
    InputType,
    encode_heartbeat,
    encode_predict_response,
    encode_register,
)
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import ClipperException
from clipper.management.endpoints import process_is_alive

FAULT_SLO_S = 0.3


def _deployed_app(cluster: HostileCluster, app: str, func, slo_s: float = FAULT_SLO_S) -> str:
    """An app linked to a model `<app>-model` running `func`, answering before it is returned."""
    conn = cluster.conn
    if app not in conn.get_all_apps():
        conn.register_application(app, "doubles", "-1.0", int(slo_s * 1_000_000))
        deploy_python_closure(conn, f"{app}-model", "1", "doubles", func)
        conn.link_model_to_app(app, f"{app}-model")
    return f"{app}-model"


def _rogue_app(cluster: HostileCluster, app: str) -> str:
    """An app linked to a model no process of the cluster serves: the rogue replica will."""
    conn = cluster.conn
    if app not in conn.get_all_apps():
        conn.register_application(app, "doubles", "-1.0", int(FAULT_SLO_S * 1_000_000))
        conn.register_model(f"{app}-model", "1", "doubles")
        conn.link_model_to_app(app, f"{app}-model")
    return f"{app}-model"


def _replica_pids(cluster: HostileCluster, model: str) -> list[int]:
    return [r.pid for r in cluster.conn.cm.list_replicas() if r.model_name == model]


def _passed(load: QueryLoad) -> bool:
    report = load.report
    return report.sent > 0 and report.lost == 0 and report.late == 0


def _replica_disturbed_under_load(
    cluster: HostileCluster, app: str, disturb: Callable[[int], None]
) -> tuple[QueryLoad, float]:
    """Queries `app` (its own model, one replica) while `disturb(replica pid)` runs; returns the load
    and the seconds, after it, until the model answered again."""
    model = _deployed_app(cluster, app, e2e_models.sum_of_each)
    cluster.wait_until_answering(app)
    [victim] = _replica_pids(cluster, model)
    with QueryLoad(cluster, app, FAULT_SLO_S) as load:
        time.sleep(0.5)
        disturb(victim)
    started = time.monotonic()
    cluster.wait_until_answering(app)
    return load, time.monotonic() - started


def replica_killed(cluster: HostileCluster) -> Outcome:
    def kill(victim: int) -> None:
        os.kill(victim, signal.SIGKILL)
        time.sleep(2.5)

    load, back_s = _replica_disturbed_under_load(cluster, "kill-app", kill)
    return Outcome(
        f"{load.report.describe()}; the model answered again {back_s:.1f} s after the load stopped",
        _passed(load),
        load.report,
    )


def replica_stopped(cluster: HostileCluster) -> Outcome:
    def stop_for_three_seconds(victim: int) -> None:
        os.kill(victim, signal.SIGSTOP)
        time.sleep(3.0)
        os.kill(victim, signal.SIGCONT)
        time.sleep(0.5)

    load, back_s = _replica_disturbed_under_load(cluster, "stop-app", stop_for_three_seconds)
    return Outcome(
        f"SIGSTOP for 3 s: {load.report.describe()}; answering again {back_s:.1f} s after",
        _passed(load),
        load.report,
    )


def replica_slow(cluster: HostileCluster) -> Outcome:
    _deployed_app(cluster, "slow-app", hostile_models.sleep_ten_seconds)
    wait_for(lambda: cluster.conn.get_all_model_replicas(), what="a replica")
    with QueryLoad(cluster, "slow-app", FAULT_SLO_S) as load:
        time.sleep(2.0)
    report = load.report
    return Outcome(
        f"model takes 10 s, SLO {FAULT_SLO_S * 1000:.0f} ms: {report.describe()}",
        _passed(load) and report.defaults == report.answered,
        report,
    )


def model_raises_with_a_secret(cluster: HostileCluster) -> Outcome:
    _deployed_app(cluster, "leaky-app", hostile_models.leak_a_secret, slo_s=20.0)
    wait_for(
        lambda: "leaky-app-model:1:" in "".join(cluster.conn.get_all_model_replicas()),
        what="the leaky replica",
    )
    status, answer, _ = cluster.query("leaky-app", {"input": [1.0]})
    explanation = answer.get("default_explanation", "")
    leaked = any(
        secret in json.dumps(answer) for secret in ("hunter2", "/srv/secrets", "Permission")
    )
    error_id = explanation.rsplit("error_id=", 1)[-1] if "error_id=" in explanation else None
    logged = error_id is not None and any(
        f"event=model_error error_id={error_id} " in line and "hunter2" in line
        for line in cluster.log_text().splitlines()
    )
    return Outcome(
        f"{status}, default {answer.get('default')}, text leaked to the client: {leaked}, "
        f"explanation names error_id={error_id}, found in the frontend log: {logged}",
        status == 200 and answer.get("default") is True and not leaked and logged,
    )


def _garbage_case(cluster: HostileCluster, app: str, answer, what: str) -> Outcome:
    model = _rogue_app(cluster, app)
    rss_before = cluster.rss_kib()
    with RogueReplica(
        cluster.endpoints.rpc_port, model, "1", answer, cluster.replica_credentials()
    ) as rogue:
        wait_for(
            lambda: f"{model}:1:" in "".join(cluster.conn.get_all_model_replicas()),
            what="the rogue replica's registration",
        )
        with QueryLoad(cluster, app, FAULT_SLO_S) as load:
            time.sleep(2.0)
    grown = (cluster.rss_kib() - rss_before) / 1024
    return Outcome(
        f"{what}: {rogue.batches} batches answered so; {load.report.describe()}; "
        f"RSS +{grown:.1f} MiB",
        _passed(load) and rogue.batches > 0 and grown < 50,
        load.report,
    )


def wrong_output_count(cluster: HostileCluster) -> Outcome:
    return _garbage_case(
        cluster,
        "count-app",
        lambda batch, n: encode_predict_response(batch, ["1.0"] * (n + 1)),
        "one output too many",
    )


def corrupt_flatbuffer(cluster: HostileCluster) -> Outcome:
    def corrupt(batch: int, n: int) -> bytes:
        valid = encode_predict_response(batch, ["1.0"] * n)
        return valid[: len(valid) // 2] if batch % 2 else os.urandom(len(valid))

    return _garbage_case(cluster, "corrupt-app", corrupt, "truncated or random bytes")


def wrong_types(cluster: HostileCluster) -> Outcome:
    """Outputs that are not UTF-8, and answers of a payload type a replica never sends."""
    outcome = _garbage_case(
        cluster,
        "types-app",
        lambda batch, n: response_with_outputs(batch, [b"\xff\xfe\x00bad"] * n),
        "outputs of invalid UTF-8",
    )
    status, raw = None, b""
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.query_port}/types-app/predict",
        data=b'{"input": [1.0]}',
        method="POST",
    )
    with RogueReplica(
        cluster.endpoints.rpc_port, "types-app-model", "1",
        lambda batch, n: response_with_outputs(batch, [b"\xff\xfe\x00bad"] * n),
        cluster.replica_credentials(),
    ):  # fmt: skip
        wait_for(
            lambda: "types-app-model:1:" in "".join(cluster.conn.get_all_model_replicas()),
            what="the rogue replica's registration",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    try:
        json.loads(raw.decode("utf-8"))
        valid = True
    except ValueError:
        valid = False
    return Outcome(
        f"{outcome.observed}; an answer's body is valid JSON: {valid} ({status})",
        outcome.passed and valid,
        outcome.load,
    )


def _metrics_bytes(cluster: HostileCluster) -> int:
    url = f"http://127.0.0.1:{cluster.query_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        return len(response.read())


def _admitted_socket(cluster: HostileCluster, context: zmq.Context) -> zmq.Socket:
    """A DEALER on the RPC port with the cluster's replica keys, as a replica it started has."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    cluster.replica_credentials().apply(sock)
    sock.connect(f"tcp://127.0.0.1:{cluster.endpoints.rpc_port}")
    return sock


def registration_flood(cluster: HostileCluster) -> Outcome:
    """20,000 registrations on the RPC port, each for another model name."""
    rss_before, metrics_before = cluster.rss_kib(), _metrics_bytes(cluster)
    builder = flatbuffers.Builder(256)
    context = zmq.Context()
    try:
        sock = _admitted_socket(cluster, context)
        started = time.monotonic()
        for index in range(20_000):
            sock.send(bytes(encode_register(builder, f"flood-{index}", "1", InputType.DOUBLES)))
        sent_s = time.monotonic() - started
        time.sleep(1.0)
        health = cluster.query("bystander", {"input": [1.0]})[0]
        sock.close()
    finally:
        context.term()
    time.sleep(3.0)  # past the heartbeat timeout: the flood's replicas are dropped
    grown = (cluster.rss_kib() - rss_before) / 1024
    metrics_after = _metrics_bytes(cluster)
    return Outcome(
        f"sent in {sent_s:.1f} s; a query meanwhile: {health}; RSS +{grown:.0f} MiB; /metrics "
        f"{metrics_before / 1024:.0f} -> {metrics_after / 1024:.0f} KiB",
        # At most ModelRegistry::kMaxUnconfiguredVersions (256) invented models get created.
        health == 200 and grown < 64 and metrics_after < metrics_before + 2 * 1024 * 1024,
    )


def _replica_series(cluster: HostileCluster, model: str) -> int:
    """Replicas of `model` that /metrics shows (one clipper_replica_connected line each)."""
    url = f"http://127.0.0.1:{cluster.query_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    prefix = f'clipper_replica_connected{{model="{model}",'
    return sum(line.startswith(prefix) for line in text.splitlines())


def replica_churn(cluster: HostileCluster) -> Outcome:
    """500 replicas of one model, 100 at a time, each with its own connection and replica id:
    they register, show on /metrics, and disconnect without a word (the frontend drops them)."""
    model = _rogue_app(cluster, "churn-app")
    metrics_before = _metrics_bytes(cluster)
    builder = flatbuffers.Builder(256)
    shown = []
    context = zmq.Context()
    try:
        for first_id in range(0, 500, 100):
            sockets = [_admitted_socket(cluster, context) for _ in range(100)]
            for offset, sock in enumerate(sockets):
                register = encode_register(
                    builder, model, "1", InputType.DOUBLES, replica_id=first_id + offset
                )
                sock.send(bytes(register))
            wait_for(
                lambda: _replica_series(cluster, model) >= 100, timeout_s=30, what="100 replicas"
            )
            shown.append(_replica_series(cluster, model))
            for sock in sockets:
                sock.close()
            wait_for(lambda: _replica_series(cluster, model) == 0, timeout_s=30, what="the drops")
    finally:
        context.term()
    metrics_after = _metrics_bytes(cluster)
    return Outcome(
        f"replica series while connected: {shown}; after they left: "
        f"{_replica_series(cluster, model)}; /metrics {metrics_before / 1024:.0f} -> "
        f"{metrics_after / 1024:.0f} KiB",
        shown == [100] * 5 and metrics_after < metrics_before + 16 * 1024,
    )


def heartbeat_flood(cluster: HostileCluster) -> Outcome:
    """50,000 heartbeats naming keys no replica has."""
    builder = flatbuffers.Builder(256)
    rss_before = cluster.rss_kib()
    context = zmq.Context()
    try:
        sock = _admitted_socket(cluster, context)
        started = time.monotonic()
        for index in range(50_000):
            sock.send(bytes(encode_heartbeat(builder, f"nobody-{index}")))
            while sock.poll(0):
                sock.recv()
        sent_s = time.monotonic() - started
        health = cluster.query("bystander", {"input": [1.0]})[0]
        sock.close()
    finally:
        context.term()
    grown = (cluster.rss_kib() - rss_before) / 1024
    return Outcome(
        f"sent in {sent_s:.1f} s; a query meanwhile: {health}; RSS +{grown:.0f} MiB",
        health == 200 and grown < 32,
    )


def killed_replica_then_scale(cluster: HostileCluster) -> Outcome:
    conn = cluster.conn
    model = _deployed_app(cluster, "scale-app", e2e_models.sum_of_each, slo_s=SLO_MICROS / 1e6)
    victims = _replica_pids(cluster, model)
    os.kill(victims[0], signal.SIGKILL)
    wait_for(lambda: not process_is_alive(victims[0]), what="the replica's death")
    try:
        conn.set_num_replicas(model, 2)
        result = "returned"
    except ClipperException as error:
        result = f"raised {type(error).__name__}"
    connected = [r for r in conn.get_all_model_replicas() if r.startswith(f"{model}:1:")]
    conn.set_num_replicas(model, 1)
    return Outcome(
        f"set_num_replicas {result}; {len(connected)} replicas connected",
        result == "returned" and len(connected) == 2,
    )


def unadmitted_replicas(cluster: HostileCluster) -> Outcome:
    """Replicas built with the real SDK, one without keys and one with a keypair of its own, register
    as the model and wait for queries while 100 are sent."""
    conn = cluster.conn
    model = _deployed_app(cluster, "auth-app", e2e_models.sum_of_each, slo_s=SLO_MICROS / 1e6)
    cluster.wait_until_answering("auth-app")
    genuine = cluster.replica_credentials()

    class Recording(Model):
        def __init__(self) -> None:
            self.seen = 0

        def predict_batch(self, inputs):  # type: ignore[no-untyped-def]
            self.seen += len(inputs)
            return ["666.0"] * len(inputs)

    public, secret = (key.decode() for key in zmq.curve_keypair())
    servers = []
    for credentials in (None, ReplicaCredentials(genuine.server_public_key, public, secret)):
        options = ContainerOptions(
            model, "1", "doubles", f"tcp://{conn.cm.get_rpc_addr()}", credentials=credentials
        )
        server = ModelServer(Recording(), options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        time.sleep(1.0)
        answers = [cluster.query("auth-app", {"input": [float(i), 1.0]}) for i in range(100)]
        right = sum(
            status == 200 and body["output"] == i + 1.0
            for i, (status, body, _) in enumerate(answers)
        )
        connected = [r for r in conn.get_all_model_replicas() if r.startswith(f"{model}:1:")]
    finally:
        for server in servers:
            server.stop()
    seen = [server.model.seen for server in servers]
    return Outcome(
        f"{right}/100 answered by the genuine replica; inputs seen by the rogues: {seen}; "
        f"{len(connected)} replica registered",
        right == 100 and seen == [0, 0] and len(connected) == 1,
    )


CASES = [
    Case("replica: SIGKILL under load", "every query answered by its deadline", replica_killed),
    Case("replica: SIGSTOP for 3 s under load", "every query answered by its deadline",
         replica_stopped),
    Case("replica: 10 s per batch, 300 ms SLO", "defaults at the deadline, none lost",
         replica_slow),
    Case("replica: model raises with a secret in its message",
         "default; text only in the frontend log, under the error id given",
         model_raises_with_a_secret),
    Case("rogue replica: wrong output count", "every query answered by its deadline",
         wrong_output_count),
    Case("rogue replica: corrupt flatbuffers", "dropped; every query answered by its deadline",
         corrupt_flatbuffer),
    Case("rogue replica: outputs not UTF-8", "valid JSON answers by the deadline", wrong_types),
    Case("RPC port: 20,000 registrations for new models", "query port serves; memory bounded",
         registration_flood),
    Case("RPC port: 500 replicas of one model come and go",
         "each shows on /metrics while connected; its series leave with it", replica_churn),
    Case("RPC port: 50,000 heartbeats for unknown replicas", "query port serves; memory bounded", heartbeat_flood),
    Case("replica: SIGKILLed, then set_num_replicas", "returns; 2 connected",
         killed_replica_then_scale),
    Case("RPC port: replicas without the cluster's keys (none; their own)",
         "never register; no query reaches them", unadmitted_replicas),
]  # fmt: skip
