"""A recording stand-in for the native engine, and an in-process management service and HTTP server
on loopback built on it."""

import json
import threading

import pytest
from clipper.management import ManagementService
from clipper.management.http_api import ManagementHTTPServer
from clipper.state import EmbeddedStateStore


class RecordingEngine:
    """Implements EngineControl: keeps every applied snapshot; can be told to refuse the next ones."""

    def __init__(self):
        self.applied = []
        self.connected_replicas = []
        self.refuse_with = None

    @property
    def config(self):
        return self.applied[-1]

    def apply_config(self, config_json):
        if self.refuse_with is not None:
            raise ValueError(self.refuse_with)
        self.applied.append(json.loads(config_json))

    def replicas(self):
        return list(self.connected_replicas)


@pytest.fixture
def engine():
    return RecordingEngine()


@pytest.fixture
def store(tmp_path):
    with EmbeddedStateStore(tmp_path / "state") as opened:
        yield opened


@pytest.fixture
def service(store, engine):
    management = ManagementService(store, engine)
    management.restore()
    return management


@pytest.fixture
def admin_server(service):
    """(host, port) of a management REST API served on loopback from a background thread."""
    server = ManagementHTTPServer(("127.0.0.1", 0), service, max_body_bytes=64 * 1024)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield "127.0.0.1", server.port
    server.shutdown()
    server.server_close()
