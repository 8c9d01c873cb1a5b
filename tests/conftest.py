"""Fixtures shared by every test folder: a real `redis-server` for the Redis state store.

One server per test session, on a free loopback port, with persistence off and its files in a temporary
directory; every test that asks for `redis_address` starts from an empty server. Tests that need it skip
(with the reason) where `redis-server` or the `redis` client is missing.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

REDIS_START_TIMEOUT_S = 10.0


class RedisServer:
    def __init__(self, directory):
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--bind", self.host,
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                "--protected-mode", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        self.client = redis.Redis(self.host, self.port, socket_timeout=5)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def stop(self):
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A running redis-server for the whole session (see `redis_address` for a clean one)."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (Debian: apt-get install redis-server)")
    pytest.importorskip("redis", reason="needs the redis client (pip install redis)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_address(redis_server):
    """ "host:port" of the session's redis-server, emptied for this test."""
    redis_server.client.flushall()
    return redis_server.address


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI every real component (Redis, the frameworks, the native engine) is installed by .ci/run,
    so a test that would skip for lack of one fails instead: a missing install step must not pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every component must be present: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for whole modules skipped at import (pytest.importorskip at module level)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every component must be present: {report.longrepr}"
