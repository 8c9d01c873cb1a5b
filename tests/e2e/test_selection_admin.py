"""The selection layer's admin API and management REST API against a real frontend process: policies
are validated and stored, links follow the policy, what users learned is read and reset, and policy,
parameters and learned state survive a killed frontend (embedded store and Redis), and the restarted
engine serves each user's learned weights. A policy written in Python (examples/custom_policy.py) is
imported by the frontend, set on an app and run end to end: /update feeds its `observe`, the engine
draws natively from the weights it publishes.

Where a test needs a user's learned state at once, it writes it as the feedback worker does
(the same store, the policy's `observe`)."""

import collections
import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import e2e_models
import pytest
from e2e_support import free_ports, post, predict, wait_for

from clipper import ClipperConnection, ClipperException, LocalContainerManager
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import SelectionPolicyError
from clipper.management.endpoints import process_is_alive
from clipper.selection import make_policy
from clipper.state.selection_state import (
    RedisSelectionStore,
    SqliteSelectionStore,
    encode_state,
)

SLO_MICROS = 20_000_000
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def manager_options(tmp_path, name, redis_address=None):
    query, management, rpc, metrics = free_ports(4)
    options = {
        "cluster_name": name,
        "clipper_query_port": query,
        "clipper_management_port": management,
        "clipper_rpc_port": rpc,
        "prometheus_port": metrics,
        "state_dir": tmp_path / name,
        "heartbeat_timeout_millis": 1000,
    }
    if redis_address:
        host, port = redis_address.split(":")
        options.update(redis_ip=host, redis_port=int(port))
    return options


def admin_rest(conn, operation, body):
    """One raw management REST call with the cluster's token: (status, decoded JSON)."""
    token = (Path(conn.cm.state_dir) / "management_token").read_text().strip()
    connection = http.client.HTTPConnection(
        "127.0.0.1", conn.cm.clipper_management_port, timeout=30
    )
    try:
        connection.request(
            "POST", f"/admin/{operation}", body=json.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )  # fmt: skip
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def teach(store, policy_name, app, uid, models, rounds, right_model, **params):
    """Write (app, uid)'s learned state as the feedback worker does: `rounds` of feedback in which
    `right_model` answers the label and the others do not."""
    policy = make_policy(policy_name)
    state = policy.init_state(models, **params)
    for _ in range(rounds):
        outputs = {name: ("1" if name == right_model else "0") for name in models}
        state = policy.observe(state, outputs, 1)
    assert store.save(app, uid, encode_state(state), expected=store.load(app, uid))
    return policy.describe(state)


@pytest.fixture
def cluster(tmp_path):
    conn = ClipperConnection(
        LocalContainerManager(**manager_options(tmp_path, "selection")), replica_start_timeout_s=60
    )
    conn.start_clipper()
    try:
        yield conn
    finally:
        conn.stop_all()


def test_policies_links_and_the_rest_api(cluster):
    conn = cluster
    conn.register_application("digits", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(conn, "first", "1", "doubles", e2e_models.tagged_sum("first"))
    conn.register_model("second", "1", "doubles")
    conn.link_model_to_app("digits", "first")
    assert conn.get_selection_policy("digits") == {"policy": "single", "params": {}}
    with pytest.raises(SelectionPolicyError, match="choose a multi-model policy first"):
        conn.link_model_to_app("digits", "second")

    with pytest.raises(ClipperException, match="exp3, exp4") as unknown:
        conn.set_selection_policy("digits", "bandit")
    assert isinstance(unknown.value, SelectionPolicyError)
    with pytest.raises(SelectionPolicyError, match="confidence_threshold=0.0"):
        conn.set_selection_policy("digits", "exp4", threshold=0.5)

    conn.set_selection_policy("digits", "exp4", confidence_threshold=0.4)
    conn.link_model_to_app("digits", "second")
    assert conn.get_linked_models("digits") == ["first", "second"]
    assert conn.get_selection_policy("digits") == {
        "policy": "exp4", "params": {"confidence_threshold": 0.4}
    }  # fmt: skip
    state = conn.get_selection_state("digits")
    assert state["feedback"] == 0
    assert {name: model["weight"] for name, model in state["models"].items()} == {
        "first": 0.5, "second": 0.5
    }  # fmt: skip

    # The engine takes the snapshot with the app's plan and keeps answering queries.
    status, answer, _ = predict(conn, "digits", {"input": [1.0, 2.0]})
    assert status == 200 and answer["output"]["version"] == "first"

    # The same operations over the management REST API.
    assert admin_rest(conn, "get_selection_policy", {"app_name": "digits"}) == (
        200, {"policy": "exp4", "params": {"confidence_threshold": 0.4}}
    )  # fmt: skip
    status, body = admin_rest(
        conn, "set_selection_policy", {"app_name": "digits", "policy": "nope"}
    )
    assert status == 400 and body["type"] == "SelectionPolicyError" and "ucb1" in body["cause"]
    status, body = admin_rest(conn, "get_selection_state", {"app_name": "digits", "uid": 7})
    assert status == 200 and body["feedback"] == 0 and set(body["models"]) == {"first", "second"}
    status, body = admin_rest(conn, "reset_selection_state", {"app_name": "digits"})
    assert status == 200 and "every user" in body["message"]
    status, body = admin_rest(conn, "get_selection_state", {"app_name": "ghost"})
    assert status == 400 and body["type"] == "UnknownObjectError"

    conn.set_selection_policy("digits", "ab", weights={"first": 3, "second": 1})
    weights = conn.get_selection_state("digits", uid=3)["models"]
    assert (weights["first"]["weight"], weights["second"]["weight"]) == (0.75, 0.25)
    with pytest.raises(SelectionPolicyError, match="links 2 models"):
        conn.set_selection_policy("digits", "single")


@pytest.mark.parametrize("store_kind", ["embedded", "redis"])
def test_policy_and_learned_state_survive_a_killed_frontend(tmp_path, request, store_kind):
    redis_address = request.getfixturevalue("redis_address") if store_kind == "redis" else None
    options = manager_options(tmp_path, "survivor", redis_address)
    conn = ClipperConnection(LocalContainerManager(**options), replica_start_timeout_s=60)
    conn.start_clipper()
    if redis_address:
        host, port = redis_address.split(":")
        store = RedisSelectionStore(host, int(port), "survivor")
    else:
        store = SqliteSelectionStore(options["state_dir"])
    try:
        conn.register_application("bandit", "doubles", "-1.0", SLO_MICROS)
        # Real replicas, so the restarted frontend's answers show which model it draws: "a" answers
        # the input's first element, "b" that plus one.
        deploy_python_closure(conn, "a", "1", "doubles", e2e_models.label_of_first)
        deploy_python_closure(conn, "b", "1", "doubles", e2e_models.label_plus_one)
        conn.set_selection_policy("bandit", "exp3", gamma=0.05)
        for name in ("a", "b"):
            conn.link_model_to_app("bandit", name)
        learned = {
            uid: teach(store, "exp3", "bandit", uid, ["a", "b"], 200, right, gamma=0.05)
            for uid, right in ((0, "a"), (42, "b"))
        }
        assert conn.get_selection_state("bandit", uid=0) == learned[0]
        assert learned[0]["models"]["a"]["weight"] >= 0.9

        frontend = conn.cm.frontend_pid()
        os.kill(frontend, signal.SIGKILL)  # no clean shutdown: what was stored is all there is
        wait_for(lambda: not process_is_alive(frontend), what="the frontend to die")
        conn.start_clipper()

        assert conn.get_selection_policy("bandit") == {"policy": "exp3", "params": {"gamma": 0.05}}
        assert conn.get_selection_state("bandit", uid=0) == learned[0]
        assert conn.get_selection_state("bandit", uid=42) == learned[42]
        assert learned[42]["models"]["b"]["weight"] >= 0.9
        # The restarted engine serves what each user learned (published from the store at start).
        # Both replicas reconnected: 20 even draws (uid 7 learned nothing) without a default.
        wait_for(
            lambda: not any(
                predict(conn, "bandit", {"input": [0.5 + i], "uid": 7})[1]["default"]
                for i in range(20)
            ),
            timeout_s=60, what="both replicas serving the restarted frontend",
        )  # fmt: skip
        for uid, right, offset in ((0, "a", 0), (42, "b", 1)):
            answers = [
                predict(conn, "bandit", {"input": [1000.0 * (uid + 1) + v], "uid": uid})[1]
                for v in range(100)
            ]
            from_right = sum(
                a["output"] == 1000 * (uid + 1) + v + offset for v, a in enumerate(answers)
            )
            assert from_right >= 85, (uid, right, from_right)  # weight >= 0.9 (gamma 0.05)

        conn.reset_selection_state("bandit", uid=42)
        assert conn.get_selection_state("bandit", uid=42)["feedback"] == 0
        assert conn.get_selection_state("bandit", uid=0) == learned[0]
        conn.reset_selection_state("bandit")
        assert conn.get_selection_state("bandit", uid=0)["feedback"] == 0
    finally:
        store.close()
        conn.stop_all(clear_state=True)


def test_the_python_policy_example_runs_and_is_set_on_an_app(tmp_path, monkeypatch):
    demo = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_policy.py")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "after 200 rounds" in demo.stdout
    # The frontend imports the policy: its directory goes on the PYTHONPATH it inherits.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])
    )
    conn = ClipperConnection(
        LocalContainerManager(**manager_options(tmp_path, "custom")), replica_start_timeout_s=60
    )
    conn.start_clipper()
    try:
        conn.register_application("custom-app", "doubles", "-1.0", SLO_MICROS)
        # Real replicas: "x" always answers the label, "y" never does.
        deploy_python_closure(conn, "x", "1", "doubles", e2e_models.label_of_first)
        deploy_python_closure(conn, "y", "1", "doubles", e2e_models.label_plus_one)
        conn.set_selection_policy("custom-app", "custom_policy:AccuracyPowerPolicy", sharpness=8)
        for name in ("x", "y"):
            conn.link_model_to_app("custom-app", name)
        assert conn.get_selection_policy("custom-app") == {
            "policy": "custom_policy:AccuracyPowerPolicy", "params": {"sharpness": 8.0}
        }  # fmt: skip
        state = conn.get_selection_state("custom-app", uid=1)
        assert {name: m["weight"] for name, m in state["models"].items()} == {"x": 0.5, "y": 0.5}

        # End to end: /update feeds the policy's Python observe in the frontend, the weights it
        # publishes are what the engine draws from natively for that user, and no one else's.
        wait_for(
            lambda: not predict(conn, "custom-app", {"input": [0.0], "uid": 1})[1]["default"],
            timeout_s=60, what="both replicas serving",
        )  # fmt: skip
        for round_number in range(40):
            body = {"uid": 1, "input": [float(round_number)], "label": round_number}
            status, ack, _ = post(conn.get_query_addr(), "/custom-app/update", body)
            assert status == 200 and ack["feedback_applied"] is True, ack
        learned = conn.get_selection_state("custom-app", uid=1)
        assert learned["feedback"] == 40
        # ((40 + 1) / 42) ** 8 against (1 / 42) ** 8: x takes all but ~1e-13 of the draws.
        assert learned["models"]["x"]["weight"] > 0.999
        answers = [
            predict(conn, "custom-app", {"input": [100.0 + v], "uid": 1})[1]["output"]
            for v in range(60)
        ]
        assert answers == [100 + v for v in range(60)]  # every one drawn from "x"
        others = collections.Counter(
            predict(conn, "custom-app", {"input": [200.0 + v], "uid": 2})[1]["output"] == 200 + v
            for v in range(100)
        )
        assert 20 <= others[True] <= 80, others  # user 2 sent no feedback: still an even draw
        with pytest.raises(SelectionPolicyError, match="sharpness must be positive"):
            conn.set_selection_policy(
                "custom-app", "custom_policy:AccuracyPowerPolicy", sharpness=0
            )
        with pytest.raises(SelectionPolicyError, match="PYTHONPATH"):
            conn.set_selection_policy("custom-app", "not_installed_anywhere:Policy")
    finally:
        conn.stop_all()


def test_the_policy_commands_of_the_cli(cluster):
    conn = cluster
    conn.register_application("shell-app", "doubles", "-1.0", SLO_MICROS)
    for name in ("p", "q"):
        conn.register_model(name, "1", "doubles")
    manager = conn.cm
    common = [
        "--cluster-name", manager.cluster_name, "--state-dir", str(manager.state_dir),
        "--query-port", str(manager.clipper_query_port),
        "--management-port", str(manager.clipper_management_port),
        "--rpc-port", str(manager.clipper_rpc_port), "--metrics-port", str(manager.prometheus_port),
    ]  # fmt: skip

    def clipper(*args):
        return subprocess.run(
            [sys.executable, "-m", "clipper.cli", *args, *common],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    done = clipper("policy", "set", "shell-app", "exp4", "--param", "confidence_threshold=0.6")
    assert done.returncode == 0, done.stderr
    assert "policy 'exp4'" in done.stdout
    for name in ("p", "q"):
        conn.link_model_to_app("shell-app", name)
    shown = clipper("policy", "get", "shell-app")
    assert shown.returncode == 0 and "policy: exp4" in shown.stdout
    assert '"confidence_threshold": 0.6' in shown.stdout
    state = clipper("policy", "state", "shell-app", "--uid", "3", "--json")
    assert state.returncode == 0 and json.loads(state.stdout)["feedback"] == 0
    table = clipper("policy", "state", "shell-app")
    assert "WEIGHT" in table.stdout and "0.5000" in table.stdout
    assert clipper("policy", "reset", "shell-app", "--uid", "3").returncode == 0
    refused = clipper("policy", "set", "shell-app", "exp5")
    assert refused.returncode == 1 and "ucb1" in refused.stderr
