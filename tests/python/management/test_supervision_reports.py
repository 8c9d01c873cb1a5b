"""POST /admin/set_replica_supervision over real HTTP on loopback: only the supervision reporter's token
opens it (never the management token, and that token opens nothing else), every field of a report is
checked before the engine sees it, and a frontend without a reporter answers 401 whatever the token."""

import http.client
import json

import pytest

from clipper.exceptions import ConfigurationError
from clipper.management.http_api import ManagementHTTPServer
from clipper.management.supervision_reports import (
    ENV_SUPERVISION_TOKEN,
    MAX_SLOTS,
    parse_report,
    token_from_environment,
)
from conftest import ADMIN_TOKEN, SUPERVISION_TOKEN

PATH = "/admin/set_replica_supervision"
SLOT = {"model_name": "m", "model_version": "1", "replica_id": 0, "restarts": 1,
        "state": "running", "last_exit_reason": "killed by signal 9 (SIGKILL)"}  # fmt: skip


def post(server, path, body, token, method="POST"):
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_report_with_the_reporters_token_reaches_the_engine(admin_server, engine):
    status, answer = post(admin_server, PATH, {"slots": [SLOT]}, SUPERVISION_TOKEN)
    assert (status, answer) == (200, {"slots": 1})
    assert engine.supervision == [[SLOT]]
    # An empty report clears the series (every replica gone).
    assert post(admin_server, PATH, {"slots": []}, SUPERVISION_TOKEN)[0] == 200
    assert engine.supervision[-1] == []


def test_the_tokens_do_not_open_each_others_paths(admin_server, engine):
    for token in (ADMIN_TOKEN, None, SUPERVISION_TOKEN + "x"):
        status, answer = post(admin_server, PATH, {"slots": [SLOT]}, token)
        assert status == 401, token
        assert "supervision reporter's token" in answer["cause"]
    status, _ = post(admin_server, "/admin/add_app", {"name": "a"}, SUPERVISION_TOKEN)
    assert status == 401
    assert engine.supervision == []


@pytest.mark.parametrize(
    "body, cause",
    [
        ({}, '{"slots": [...]}'),
        ({"slots": {}}, '{"slots": [...]}'),
        ({"slots": [1]}, "slots[0] is not an object"),
        ({"slots": [{**SLOT, "model_name": ""}]}, "slots[0].model_name"),
        ({"slots": [{**SLOT, "model_version": 1}]}, "slots[0].model_version"),
        ({"slots": [{**SLOT, "replica_id": -1}]}, "slots[0].replica_id"),
        ({"slots": [{**SLOT, "restarts": True}]}, "slots[0].restarts"),
        ({"slots": [{**SLOT, "restarts": 1.5}]}, "slots[0].restarts"),
        ({"slots": [{**SLOT, "state": "dead"}]}, "slots[0].state must be one of running"),
        ({"slots": [{**SLOT, "last_exit_reason": "x" * 1025}]}, "last_exit_reason"),
    ],
)
def test_a_bad_report_is_refused_with_the_field_named(admin_server, engine, body, cause):
    status, answer = post(admin_server, PATH, body, SUPERVISION_TOKEN)
    assert status == 400
    assert cause in answer["cause"]
    assert engine.supervision == []


def test_bad_json_and_other_methods_are_refused(admin_server, engine):
    assert post(admin_server, PATH, b"{not json", SUPERVISION_TOKEN)[0] == 400
    assert post(admin_server, PATH, b"[" * 100_000, SUPERVISION_TOKEN)[0] in (400, 413)
    assert post(admin_server, PATH, b"", SUPERVISION_TOKEN, method="GET")[0] == 405
    assert engine.supervision == []


def test_a_frontend_without_a_reporter_token_takes_no_reports(service, engine):
    server = ManagementHTTPServer(("127.0.0.1", 0), service, management_token=ADMIN_TOKEN)
    server.start()
    try:
        for token in (SUPERVISION_TOKEN, ADMIN_TOKEN):
            status, answer = post(("127.0.0.1", server.port), PATH, {"slots": []}, token)
            assert status == 401 and ENV_SUPERVISION_TOKEN in answer["cause"]
    finally:
        server.stop()


def test_the_token_comes_from_the_environment_and_must_be_long(monkeypatch):
    monkeypatch.delenv(ENV_SUPERVISION_TOKEN, raising=False)
    assert token_from_environment() is None
    monkeypatch.setenv(ENV_SUPERVISION_TOKEN, "short")
    with pytest.raises(ConfigurationError, match="at least 32"):
        token_from_environment()
    monkeypatch.setenv(ENV_SUPERVISION_TOKEN, SUPERVISION_TOKEN)
    assert token_from_environment() == SUPERVISION_TOKEN


def test_a_report_holds_at_most_max_slots():
    assert len(parse_report({"slots": [SLOT] * MAX_SLOTS})) == MAX_SLOTS
    with pytest.raises(ConfigurationError, match=f"at most {MAX_SLOTS}"):
        parse_report({"slots": [SLOT] * (MAX_SLOTS + 1)})


def test_integral_floats_are_taken_as_integers():
    (slot,) = parse_report({"slots": [{**SLOT, "replica_id": 2.0, "restarts": 3.0}]})
    assert (slot["replica_id"], slot["restarts"]) == (2, 3)
    assert isinstance(slot["restarts"], int)
