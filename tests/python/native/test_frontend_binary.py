"""The standalone clipper-frontend binary: flags, a configuration file, a real model replica,
SIGHUP reload and clean shutdown. Real processes, real HTTP over loopback."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from clipper_native import frontend_binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port, path, payload, timeout=5):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(payload).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until(predicate, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_help_describes_every_option():
    result = subprocess.run([str(frontend_binary()), "--help"], capture_output=True, check=False, text=True, timeout=10)
    assert result.returncode == 0
    for flag in ("--query-port", "--rpc-port", "--metrics-port", "--io-threads", "--config",
                 "--max-body-bytes", "--cache-size-bytes", "--heartbeat-timeout-millis"):
        assert flag in result.stdout


def test_bad_flags_exit_with_status_2():
    result = subprocess.run([str(frontend_binary()), "--query-port", "many"], capture_output=True, check=False,
                            text=True, timeout=10)
    assert result.returncode == 2
    assert "--query-port expects a number" in result.stderr


def test_the_console_script_launches_the_binary():
    result = subprocess.run(["clipper-frontend", "--help"], capture_output=True, check=False, text=True, timeout=10)
    assert result.returncode == 0
    assert "usage: clipper-frontend" in result.stdout


@pytest.fixture
def frontend(tmp_path):
    query_port, rpc_port, metrics_port = free_port(), free_port(), free_port()
    config_path = tmp_path / "config.json"
    config = {
        "apps": [{"name": "sum", "input_type": "doubles", "default_output": "-1",
                  "slo_micros": 2000000, "linked_models": ["summer"]}],
        "models": [{"name": "summer", "version": "1", "input_type": "doubles", "current": True}],
    }
    config_path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [str(frontend_binary()), "--query-port", str(query_port), "--rpc-port", str(rpc_port),
         "--metrics-port", str(metrics_port), "--config", str(config_path)],
        stderr=subprocess.PIPE, text=True)
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{query_port}/readyz", timeout=1).status == 200)
    yield process, query_port, rpc_port, metrics_port, config_path, config
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def test_serves_a_real_replica_reloads_on_sighup_and_stops_on_sigterm(frontend, tmp_path):
    process, query_port, rpc_port, metrics_port, config_path, config = frontend
    model_file = tmp_path / "summer_model.py"
    model_file.write_text(
        "from clipper.container import Model\n"
        "class Summer(Model):\n"
        "    def predict_batch(self, inputs):\n"
        "        return [float(row.sum()) for row in inputs]\n")
    replica = subprocess.Popen(
        [sys.executable, "-m", "clipper.container.cli", "--model", "summer_model:Summer",
         "--name", "summer", "--version", "1", "--input-type", "doubles",
         "--frontend", f"tcp://127.0.0.1:{rpc_port}"],
        cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    try:
        wait_until(lambda: post(query_port, "/sum/predict", {"input": [1.0, 2.0]})["default"] is False)
        assert post(query_port, "/sum/predict", {"input": [1.5, 2.5, 3.0]})["output"] == 7.0
        # A 120 KB body nested 120,000 levels deep is a 400, not a crash of the I/O thread.
        nested = urllib.request.Request(
            f"http://127.0.0.1:{query_port}/sum/predict", method="POST",
            data=b'{"input": ' + b"[" * 120_000 + b"]" * 120_000 + b"}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(nested, timeout=10)
        assert refused.value.code == 400
        assert "nest deeper" in json.loads(refused.value.read())["cause"]
        assert process.poll() is None
        assert post(query_port, "/sum/predict", {"input": [1.0, 1.0]})["output"] == 2.0
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'clipper_model_connected_replicas{model="summer",version="1"} 1' in metrics

        config["apps"].append({"name": "added", "input_type": "doubles", "default_output": "0",
                               "slo_micros": 100000, "linked_models": []})
        config_path.write_text(json.dumps(config))
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: post(query_port, "/added/predict", {"input": [1.0]})["default"] is True)
    finally:
        replica.terminate()
        replica.wait(timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert "event=stopped" in process.stderr.read()


def _write_owner_only(path, document):
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def test_rpc_keys_file_admits_only_replicas_with_the_clients_key(tmp_path):
    zmq = pytest.importorskip("zmq", reason="pyzmq (a dependency of this package)")
    server_public, server_secret = (key.decode() for key in zmq.curve_keypair())
    client_public, client_secret = (key.decode() for key in zmq.curve_keypair())
    keys_file = _write_owner_only(tmp_path / "rpc_server_keys.json", {
        "server_secret_key": server_secret, "client_public_keys": [client_public]})
    credentials = _write_owner_only(tmp_path / "replica_credentials.json", {
        "server_public_key": server_public, "client_public_key": client_public,
        "client_secret_key": client_secret})
    query_port, rpc_port, metrics_port = free_port(), free_port(), free_port()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({
        "apps": [{"name": "sum", "input_type": "doubles", "default_output": "-1",
                  "slo_micros": 2000000, "linked_models": ["summer"]}],
        "models": [{"name": "summer", "version": "1", "input_type": "doubles", "current": True}]}))
    (tmp_path / "summer_model.py").write_text(
        "from clipper.container import Model\n"
        "class Summer(Model):\n"
        "    def predict_batch(self, inputs):\n"
        "        return [float(row.sum()) for row in inputs]\n"
        "class Rogue(Model):\n"
        "    def predict_batch(self, inputs):\n"
        "        return [666.0 for row in inputs]\n")
    process = subprocess.Popen(
        [str(frontend_binary()), "--query-port", str(query_port), "--rpc-port", str(rpc_port),
         "--metrics-port", str(metrics_port), "--config", str(config_path),
         "--rpc-keys-file", str(keys_file)],
        stderr=subprocess.PIPE, text=True)
    replica_command = [sys.executable, "-m", "clipper.container.cli", "--name", "summer", "--version", "1",
                       "--input-type", "doubles", "--frontend", f"tcp://127.0.0.1:{rpc_port}"]
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    replicas = []
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{query_port}/readyz", timeout=1).status == 200)
        replicas.append(subprocess.Popen([*replica_command, "--model", "summer_model:Rogue"], cwd=tmp_path,
                                         env=env, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # the rogue (no keys) has tried to register
        replicas.append(subprocess.Popen(
            [*replica_command, "--model", "summer_model:Summer", "--rpc-credentials-file", str(credentials)],
            cwd=tmp_path, env=env, stderr=subprocess.DEVNULL))
        wait_until(lambda: post(query_port, "/sum/predict", {"input": [1.0, 2.0]})["default"] is False)
        assert [post(query_port, "/sum/predict", {"input": [float(i), 1.0]})["output"] for i in range(50)] == [
            float(i) + 1.0 for i in range(50)]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'clipper_model_connected_replicas{model="summer",version="1"} 1' in metrics
    finally:
        for replica in replicas:
            replica.terminate()
            replica.wait(timeout=10)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    log = process.stderr.read()
    assert "event=replica_refused" in log
    assert "event=replica_auth_disabled" not in log


def test_rpc_keys_are_required_off_loopback_and_kept_secret(tmp_path):
    exposed = subprocess.run([str(frontend_binary()), "--bind-address", "0.0.0.0", "--query-port", "0",
                              "--rpc-port", "0", "--metrics-port", "0"],
                             check=False, capture_output=True, text=True, timeout=10)
    assert exposed.returncode == 2
    assert "refusing to bind the RPC port on 0.0.0.0 without replica authentication" in exposed.stderr
    readable = tmp_path / "keys.json"
    readable.write_text("{}")
    readable.chmod(0o644)
    leaked = subprocess.run([str(frontend_binary()), "--rpc-keys-file", str(readable)],
                            check=False, capture_output=True, text=True, timeout=10)
    assert leaked.returncode == 2
    assert "readable or writable by other users" in leaked.stderr
    readable.chmod(0o600)
    malformed = subprocess.run([str(frontend_binary()), "--rpc-keys-file", str(readable)],
                               check=False, capture_output=True, text=True, timeout=10)
    assert malformed.returncode == 2
    assert '"server_secret_key" (a string) is missing' in malformed.stderr
