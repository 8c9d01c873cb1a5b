"""The `clipper` command against a real cluster, run as a user runs it (a subprocess)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import e2e_models
import pytest
from e2e_support import free_ports

from clipper import ClipperConnection, LocalContainerManager
from clipper.container.closure import save_closure
from clipper.deployers.python import create_endpoint

# The installed console script, as a user runs it (the module where the script is not installed).
_SCRIPT = Path(sys.executable).with_name("clipper")
COMMAND = [str(_SCRIPT)] if _SCRIPT.is_file() else ([shutil.which("clipper")] if shutil.which(
    "clipper") else [sys.executable, "-m", "clipper.cli"])  # fmt: skip


def clipper(*args):
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def clipper_into_closed_pipe(*args):
    """Runs `clipper ARGS` with stdout a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*COMMAND, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_version_names_the_installed_package():
    result = clipper("--version")
    assert result.returncode == 0 and result.stdout.startswith("clipper 0.")


def test_help_describes_every_command():
    result = clipper("--help")
    assert result.returncode == 0
    commands = (
        "start", "stop", "status", "apps", "models", "replicas", "inspect", "register-app",
        "unregister-app", "deploy", "link", "unlink", "set-version", "scale", "batching",
        "stop-model", "predict", "logs",
    )  # fmt: skip
    for command in commands:
        assert command in result.stdout
    assert "--clear-state" in clipper("stop", "--help").stdout
    assert "--redis-ip" in clipper("start", "--help").stdout
    assert "FILE.py[:ATTRIBUTE]" in clipper("deploy", "--help").stdout


def test_the_cli_starts_reports_and_stops_a_cluster(tmp_path):
    ports = [str(port) for port in free_ports(4)]
    common = [
        "--cluster-name", "cli", "--state-dir", str(tmp_path / "cli"),
        "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--metrics-port", ports[3],
    ]  # fmt: skip

    try:
        started = clipper("start", *common)
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{ports[0]}" in started.stdout
        status = clipper("status", *common)
        assert status.returncode == 0 and "applications    0" in status.stdout
        assert clipper("apps", *common).stdout.strip() == "(none)"
        answer = clipper("predict", *common, "nope", "[1.0]")
        assert answer.returncode == 1 and "HTTP 404" in answer.stderr
        bad = clipper("predict", *common, "nope", "[1.0")
        assert bad.returncode == 1 and "not valid JSON" in bad.stderr

        # A program connects to the cluster the CLI started and deploys; the CLI sees and queries it.
        manager = LocalContainerManager(
            cluster_name="cli",
            clipper_query_port=int(ports[0]),
            clipper_management_port=int(ports[1]),
            clipper_rpc_port=int(ports[2]),
            prometheus_port=int(ports[3]),
            state_dir=tmp_path / "cli",
        )
        conn = ClipperConnection(manager)
        conn.connect()
        create_endpoint(conn, "sum", "doubles", e2e_models.sum_of_each, default_output="-1.0")
        answer = clipper("predict", *common, "sum", "[1.0, 2.5]")
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["output"] == 3.5
        batch = clipper("predict", *common, "--batch", "sum", "[[1.0], [2.0]]")
        outputs = [p["output"] for p in json.loads(batch.stdout)["batch_predictions"]]
        assert outputs == [1.0, 2.0]
        assert "sum" in clipper("apps", *common).stdout
        assert "sum" in clipper("models", *common).stdout
        assert "doubles" in clipper("replicas", *common).stdout
        # Cluster options go before the command as well as after it.
        assert "sum" in clipper(*common, "apps").stdout
        assert (
            json.loads(clipper(*common[:4], "predict", *common[4:], "sum", "[1]").stdout)["output"]
            == 1.0
        )
        # `clipper apps | head -1`: the reader goes away, the command ends quietly.
        piped = clipper_into_closed_pipe("apps", *common)
        assert piped.returncode == 141 and "Traceback" not in piped.stderr, piped.stderr
    finally:
        stopped = clipper("stop", *common)
    assert stopped.returncode == 0, stopped.stderr
    after = clipper("status", *common)
    assert after.returncode == 1 and "no Clipper cluster 'cli' answers" in after.stderr


MODEL_FILE = textwrap.dedent(
    """
    import numpy as np

    from clipper.container import Model


    def total(row):
        return float(np.sum(row))


    class Summer(Model):
        def predict_batch(self, inputs):
            return [repr(total(row)) for row in inputs]
    """
)

FUNCTION_FILE = textwrap.dedent(
    """
    def doubled(inputs):
        return [repr(2 * float(sum(row))) for row in inputs]


    def unrelated(inputs):
        return ["unused" for _ in inputs]
    """
)


@pytest.fixture
def cluster_args(tmp_path):
    ports = [str(port) for port in free_ports(4)]
    common = [
        "--cluster-name", "cli-ops", "--state-dir", str(tmp_path / "cli-ops"),
        "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--metrics-port", ports[3],
    ]  # fmt: skip
    started = clipper("start", *common)
    assert started.returncode == 0, started.stderr
    # Long operations report progress on stderr; stdout carries only the result.
    assert "frontend ready" in started.stderr
    try:
        yield common
    finally:
        stopped = clipper("stop", *common)
        assert stopped.returncode == 0, stopped.stderr


def run_ok(*args):
    result = clipper(*args)
    assert result.returncode == 0, (args, result.stderr)
    return result


def output_of(*args):
    return json.loads(run_ok(*args).stdout)["output"]


def test_operate_a_cluster_from_the_command_line(cluster_args, tmp_path):
    common = cluster_args
    (tmp_path / "summer.py").write_text(MODEL_FILE)
    (tmp_path / "doubler.py").write_text(FUNCTION_FILE)
    save_closure(e2e_models.cluster_b, tmp_path / "saved")

    run_ok("register-app", *common, "sum", "--input-type", "doubles", "--default-output", "-1",
           "--slo-micros", "20000000")  # fmt: skip
    # A Model subclass from a file, linked at once; progress shows the replica connecting.
    deployed = run_ok(
        "deploy", *common, "summer", "1", str(tmp_path / "summer.py"),
        "--input-type", "doubles", "--link", "sum", "--max-batch-size", "8",
    )  # fmt: skip
    assert "current version: '1'" in deployed.stdout
    assert "connected: 1/1" in deployed.stderr
    assert output_of("predict", *common, "sum", "[1.0, 2.5]") == 3.5

    # A function named in the file (the file has two), as version 2 with two replicas.
    run_ok(
        "deploy", *common, "summer", "2", f"{tmp_path / 'doubler.py'}:doubled",
        "--input-type", "doubles", "--replicas", "2", "--batch-size", "4",
    )  # fmt: skip
    assert output_of("predict", *common, "sum", "[1.0, 2.0]") == 6.0
    models = run_ok("models", *common).stdout
    assert "summer" in models and "8" in models

    run_ok("set-version", *common, "summer", "1")  # roll back
    assert output_of("predict", *common, "sum", "[1.0, 2.0]") == 3.0
    run_ok("scale", *common, "summer", "2")  # version 1, now current
    replicas = run_ok("replicas", *common).stdout.splitlines()
    assert len([line for line in replicas if line.startswith("summer")]) == 4

    app = json.loads(run_ok("inspect", *common, "app", "sum").stdout)
    assert app["linked_models"] == ["summer"]
    model = json.loads(run_ok("inspect", *common, "model", "summer").stdout)
    assert (model["model_version"], model["is_current_version"]) == ("1", True)
    assert len(model["replicas"]) == 2
    replica = json.loads(run_ok("inspect", *common, "replica", "summer", "2", "1").stdout)
    assert replica["model_id"] == "summer:2"
    metrics = json.loads(run_ok("inspect", *common, "metrics").stdout)
    assert metrics['clipper_app_requests_total{app="sum"}'] >= 3
    missing = clipper("inspect", *common, "app", "ghost")
    assert missing.returncode == 1 and "application 'ghost' does not exist" in missing.stderr

    batching = json.loads(run_ok("batching", *common, "summer", "--version", "2").stdout)
    assert batching["configured"]["batch_size"] == 4
    changed = json.loads(
        run_ok(
            "batching", *common, "summer", "--batch-wait-timeout-micros", "100",
            "--max-batch-size", "none",
        ).stdout
    )  # fmt: skip
    assert changed["configured"] == {
        "batch_size": -1, "max_batch_size": None, "batch_wait_timeout_micros": 100,
    }  # fmt: skip

    run_ok("stop-model", *common, "summer", "--inactive")
    assert run_ok("models", *common, "-v").stdout.count('"model_version"') == 1

    # A saved model directory, in an app of its own.
    run_ok("register-app", *common, "named", "--input-type", "doubles", "--slo-micros", "20000000")
    run_ok("deploy", *common, "saved", "1", str(tmp_path / "saved"), "--input-type", "doubles",
           "--link", "named")  # fmt: skip
    assert output_of("predict", *common, "named", "[0.0]") == "cluster-b"

    logs = run_ok("logs", *common, "-n", "200").stdout
    assert "event=frontend_ready" in logs
    replica_logs = run_ok("logs", *common, "--model", "saved").stdout
    assert "event=registering model=saved version=1" in replica_logs

    run_ok("unlink", *common, "sum", "summer")
    assert json.loads(run_ok("predict", *common, "sum", "[1.0]").stdout)["default"] is True
    run_ok("unregister-app", *common, "sum")
    assert "sum" not in run_ok("apps", *common).stdout.split()


def test_deploy_errors_say_what_to_do(cluster_args, tmp_path):
    common = cluster_args
    (tmp_path / "two.py").write_text(FUNCTION_FILE)
    ambiguous = clipper("deploy", *common, "m", "1", str(tmp_path / "two.py"), "--input-type", "d")
    assert ambiguous.returncode == 1
    assert "exactly one function" in ambiguous.stderr and "two.py:ATTRIBUTE" in ambiguous.stderr
    missing = clipper("deploy", *common, "m", "1", str(tmp_path / "nope"), "--input-type", "d")
    assert missing.returncode == 1 and "neither a Python file" in missing.stderr
    unknown = clipper("link", *common, "nowhere", "m")
    assert unknown.returncode == 1 and "application 'nowhere' does not exist" in unknown.stderr
    scaled = clipper("scale", *common, "ghost", "2")
    assert scaled.returncode == 1 and "deploy it first" in scaled.stderr


def test_logs_follow_prints_new_lines(cluster_args):
    common = cluster_args
    follower = subprocess.Popen(
        [*COMMAND, "logs", *common, "-n", "0", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(0.5)  # let it reach the end of the log
        run_ok("register-app", *common, "followed", "--input-type", "strings")
        deadline = time.monotonic() + 15
        seen = ""
        while "followed" not in seen and time.monotonic() < deadline:
            seen += follower.stdout.readline()
        assert "event=config_changed operation=add_app" in seen
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_a_cluster_kept_in_redis_from_the_command_line(tmp_path, redis_address):
    host, port = redis_address.split(":")
    ports = [str(p) for p in free_ports(4)]
    common = [
        "--cluster-name", "cli-redis", "--state-dir", str(tmp_path / "cli-redis"),
        "--query-port", ports[0], "--management-port", ports[1], "--rpc-port", ports[2],
        "--metrics-port", ports[3], "--redis-ip", host, "--redis-port", port,
    ]  # fmt: skip
    try:
        run_ok("start", *common)
        assert f"redis {host}:{port}" in run_ok("status", *common).stdout
        run_ok("register-app", *common, "kept", "--input-type", "bytes")
        run_ok("stop", *common)
        assert not (tmp_path / "cli-redis" / "state.json").exists()  # it lives in Redis
        run_ok("start", *common)
        assert "kept" in run_ok("apps", *common).stdout
    finally:
        run_ok("stop", *common, "--clear-state")
    run_ok("start", *common)
    try:
        assert run_ok("apps", *common).stdout.strip() == "(none)"
    finally:
        run_ok("stop", *common)
