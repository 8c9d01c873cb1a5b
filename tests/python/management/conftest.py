"""A recording stand-in for the native engine, and an in-process management service and HTTP server
on loopback built on it."""

import json

import pytest

from clipper.management import ManagementService
from clipper.management.http_api import ManagementHTTPServer
from clipper.management.http_server import HTTPServerLimits
from clipper.state import EmbeddedStateStore


class RecordingEngine:
    """Implements EngineControl: keeps every applied snapshot; can be told to refuse the next ones."""

    def __init__(self):
        self.applied = []
        self.connected_replicas = []
        self.refuse_with = None
        self.supervision = []  # every report set_replica_supervision received

    def set_replica_supervision(self, slots):
        self.supervision.append(slots)

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


class AdminServer(tuple):
    """(host, port) of a running management API, plus the `token` it requires."""

    token: str

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}


ADMIN_TOKEN = "management-test-token"
# The supervision reporter's token (the path it opens takes no other).
SUPERVISION_TOKEN = "supervision-test-token-" + "s" * 16


@pytest.fixture
def admin_server(service, engine):
    """(host, port) of a management REST API served on loopback from a background thread; every
    /admin/ path needs `admin_server.token` (see `admin_server.headers`)."""
    server = ManagementHTTPServer(
        ("127.0.0.1", 0),
        service,
        management_token=ADMIN_TOKEN,
        limits=HTTPServerLimits(max_body_bytes=64 * 1024),
        supervision_token=SUPERVISION_TOKEN,
        supervision_sink=engine.set_replica_supervision,
    )
    server.start()
    address = AdminServer(("127.0.0.1", server.port))
    address.token = ADMIN_TOKEN
    yield address
    server.stop()
