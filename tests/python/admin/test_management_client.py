"""The management API client against a real server on loopback: the token it sends, reading it again
after a 401 (a restarted cluster has a new one), and errors that say what to do."""

import socket

import pytest

from clipper.admin.management_client import ManagementClient
from clipper.exceptions import ClipperException, ManagementAPIError
from clipper.management import ManagementService
from clipper.management.http_api import ManagementHTTPServer
from clipper.state import EmbeddedStateStore


class NoEngine:
    def apply_config(self, config_json):
        pass

    def replicas(self):
        return []


@pytest.fixture
def admin_addr(tmp_path):
    with EmbeddedStateStore(tmp_path / "state") as store:
        service = ManagementService(store, NoEngine())
        service.restore()
        server = ManagementHTTPServer(("127.0.0.1", 0), service, management_token="current")
        server.start()
        yield f"127.0.0.1:{server.port}"
        server.stop()


def test_the_token_is_sent(admin_addr):
    assert ManagementClient(admin_addr, token="current").call("get_all_applications") == []


def test_a_token_source_is_read_again_once_after_a_401(admin_addr):
    tokens = iter(["from-the-last-run", "current"])
    reads = []

    def source():
        reads.append(next(tokens, "current"))
        return reads[-1]

    assert ManagementClient(admin_addr, token=source).call("get_all_applications") == []
    assert reads == ["from-the-last-run", "current"]


def test_a_refused_token_says_where_the_token_comes_from(admin_addr):
    with pytest.raises(ManagementAPIError) as refused:
        ManagementClient(admin_addr, token="wrong").call("get_all_applications")
    assert refused.value.status_code == 401
    assert "does not accept" in str(refused.value) and "management_token" in str(refused.value)
    with pytest.raises(ManagementAPIError, match="sent no token"):
        ManagementClient(admin_addr).call("get_all_applications")


def test_ping_is_true_for_a_server_that_refuses_the_token_and_false_for_none(admin_addr):
    assert ManagementClient(admin_addr, token="wrong").ping()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    assert not ManagementClient(closed, timeout_s=1.0).ping()
    with pytest.raises(ClipperException, match="cannot reach the management API"):
        ManagementClient(closed, timeout_s=1.0).call("ping")
