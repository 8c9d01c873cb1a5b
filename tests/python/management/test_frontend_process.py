"""The frontend process (`python -m clipper.management`) with the real engine: it serves both APIs,
publishes its ports, stops cleanly on SIGTERM and restores its configuration when restarted."""

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from clipper import ClipperException, LocalContainerManager
from clipper.management.auth import TOKEN_FILE_NAME, read_token
from clipper.management.endpoints import FrontendEndpoints

pytest.importorskip("clipper_native._core", reason="the native engine clipper_native._core (built by pip install .)")


def start_frontend(state_dir, *extra):
    command = [
        sys.executable, "-m", "clipper.management",
        "--state-dir", str(state_dir),
        "--query-port", "0", "--management-port", "0", "--rpc-port", "0", "--metrics-port", "0",
        *extra,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        endpoints = FrontendEndpoints.read(state_dir)
        if endpoints is not None and endpoints.pid == process.pid:
            return process, endpoints
        if process.poll() is not None:
            pytest.fail(f"frontend exited: {process.stdout.read().decode()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("frontend did not publish its endpoints in 30 s")


def stop_frontend(process):
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def call(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers or {}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def call_admin(state_dir, port, method, path, body=None):
    """A management API call with the token the frontend wrote to its state directory."""
    token = read_token(state_dir)
    return call(port, method, path, body, {"Authorization": f"Bearer {token}"})


def test_serves_both_apis_and_restores_its_configuration_after_a_restart(tmp_path):
    process, endpoints = start_frontend(tmp_path)
    try:
        assert endpoints.pid == process.pid and endpoints.query_port > 0
        app = {
            "name": "app",
            "input_type": "doubles",
            "default_output": "-1.0",
            "latency_slo_micros": 100000,
        }
        assert (
            call_admin(tmp_path, endpoints.management_port, "POST", "/admin/add_app", app)[0] == 200
        )
        model = {"model_name": "m", "model_version": "1", "input_type": "doubles", "batch_size": -1}
        assert (
            call_admin(tmp_path, endpoints.management_port, "POST", "/admin/add_model", model)[0]
            == 200
        )
        link = {"app_name": "app", "model_names": ["m"]}
        assert (
            call_admin(tmp_path, endpoints.management_port, "POST", "/admin/add_model_links", link)[
                0
            ]
            == 200
        )
        status, answer = call(endpoints.query_port, "POST", "/app/predict", {"input": [1.0]})
        assert status == 200 and answer["default"] is True and answer["output"] == -1.0
    finally:
        assert stop_frontend(process) == 0
    assert FrontendEndpoints.read(tmp_path) is None  # removed on a clean stop

    process, endpoints = start_frontend(tmp_path)
    try:
        status, apps = call_admin(
            tmp_path,
            endpoints.management_port,
            "POST",
            "/admin/get_all_applications",
            {"verbose": True},
        )
        assert apps[0]["name"] == "app" and apps[0]["linked_models"] == ["m"]
        assert call_admin(tmp_path, endpoints.management_port, "GET", "/admin/get_all_models")[
            1
        ] == ["m:1"]
        # The engine was configured from the store: the app answers (the default, no replica yet).
        status, answer = call(endpoints.query_port, "POST", "/app/predict", {"input": [1.0]})
        assert status == 200 and "m" in answer["default_explanation"]
        status, _ = call(endpoints.query_port, "GET", "/readyz")
        assert status == 200
    finally:
        assert stop_frontend(process) == 0


def test_a_second_frontend_on_the_same_state_directory_fails_fast(tmp_path):
    process, _ = start_frontend(tmp_path)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "clipper.management", "--state-dir", str(tmp_path),
             "--query-port", "0", "--management-port", "0", "--rpc-port", "0"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"in use by another frontend (pid {process.pid})" in second.stderr
    finally:
        stop_frontend(process)


def test_a_busy_port_fails_with_the_reason_in_the_log(tmp_path):
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "clipper.management", "--state-dir", str(tmp_path),
             "--query-port", str(blocker.getsockname()[1]), "--management-port", "0", "--rpc-port", "0"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    finally:
        blocker.close()
    assert result.returncode == 1
    assert "event=frontend_failed" in result.stderr
    assert "cannot listen" in result.stderr
    assert not os.path.exists(tmp_path / "frontend.json")


def test_invalid_options_exit_with_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "clipper.management", "--state-dir", str(tmp_path), "--query-port", "70000"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "query_port=70000" in result.stderr


def test_the_management_api_needs_the_token_written_owner_only_at_start(tmp_path):
    state_dir = tmp_path / "cluster"
    process, endpoints = start_frontend(state_dir)
    try:
        token_file = state_dir / TOKEN_FILE_NAME
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        first_token = read_token(state_dir)
        assert len(first_token) >= 40
        port = endpoints.management_port
        status, answer = call(port, "POST", "/admin/get_all_applications", {})
        assert status == 401 and "Bearer" in answer["cause"]
        wrong = {"Authorization": "Bearer " + "x" * len(first_token)}
        assert call(port, "POST", "/admin/get_all_applications", {}, wrong)[0] == 401
        assert call(port, "GET", "/admin/ping")[0] == 401
        assert call(port, "GET", "/healthz")[0] == 200  # probes stay open: they reveal nothing
        assert call_admin(state_dir, port, "POST", "/admin/get_all_applications", {}) == (200, [])
    finally:
        assert stop_frontend(process) == 0
    process, endpoints = start_frontend(state_dir)
    try:
        assert read_token(state_dir) != first_token  # a new token per start
        stale = {"Authorization": f"Bearer {first_token}"}
        assert call(endpoints.management_port, "GET", "/admin/ping", None, stale)[0] == 401
    finally:
        assert stop_frontend(process) == 0


def test_unauthenticated_management_is_allowed_only_on_loopback(tmp_path):
    process, endpoints = start_frontend(tmp_path, "--allow-unauthenticated-management")
    try:
        assert not (tmp_path / TOKEN_FILE_NAME).exists()
        assert call(endpoints.management_port, "POST", "/admin/get_all_applications", {}) == (
            200,
            [],
        )
    finally:
        assert stop_frontend(process) == 0
    log = process.stdout.read() if not process.stdout.closed else b""
    refused = subprocess.run(
        [sys.executable, "-m", "clipper.management", "--state-dir", str(tmp_path / "open"),
         "--bind-address", "0.0.0.0", "--allow-unauthenticated-management",
         "--query-port", "0", "--management-port", "0", "--rpc-port", "0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 2, log
    assert "refusing to serve the management API on 0.0.0.0 without authentication" in (
        refused.stderr
    )


def test_the_query_ports_limits_are_options_of_the_frontend(tmp_path):
    process, endpoints = start_frontend(
        tmp_path / "state", "--header-timeout-millis", "300", "--max-header-count", "5"
    )
    try:
        with socket.create_connection(("127.0.0.1", endpoints.query_port), timeout=5) as slow:
            started = time.monotonic()
            slow.sendall(b"POST /app/predict HTTP/1.1\r\nHost: x\r\n")  # never finished
            answer = slow.recv(4096)
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ") and elapsed < 3, (answer, elapsed)
        with socket.create_connection(("127.0.0.1", endpoints.query_port), timeout=5) as many:
            many.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-A: 1\r\n" * 6 + b"\r\n")
            assert many.recv(4096).startswith(b"HTTP/1.1 431 ")
    finally:
        stop_frontend(process)


def test_the_local_manager_refuses_an_unknown_query_port_limit(tmp_path):
    with pytest.raises(ClipperException, match="unknown limit.*'header_timeout_seconds'"):
        LocalContainerManager(state_dir=tmp_path, query_port_limits={"header_timeout_seconds": 1})
