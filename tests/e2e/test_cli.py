"""The `clipper` command against a real cluster, run as a user runs it (a subprocess)."""

import json
import subprocess
import sys

import e2e_models
from clipper import ClipperConnection, LocalContainerManager
from clipper.deployers.python import create_endpoint
from e2e_support import free_ports


def clipper(*args):
    return subprocess.run(
        [sys.executable, "-m", "clipper.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_describes_every_command():
    result = clipper("--help")
    assert result.returncode == 0
    for command in ("start", "stop", "status", "apps", "models", "replicas", "predict"):
        assert command in result.stdout
    assert "--clear-state" in clipper("stop", "--help").stdout


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
    finally:
        stopped = clipper("stop", *common)
    assert stopped.returncode == 0, stopped.stderr
    after = clipper("status", *common)
    assert after.returncode == 1 and "no Clipper cluster 'cli' answers" in after.stderr
