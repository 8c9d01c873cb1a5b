"""The management REST API over real HTTP on loopback: paths, JSON bodies, status codes, and that the
server keeps serving after every error."""

import http.client
import json

import pytest


def call(server, method, path, body=None, headers=None):
    """One request on a new connection, with the server's token unless `headers` are given."""
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(
            method, path, body=body, headers=server.headers if headers is None else headers
        )
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.getheader("Content-Type"), json.loads(raw) if raw else None
    finally:
        connection.close()


def test_ping_answers_get_and_post(admin_server):
    assert call(admin_server, "GET", "/admin/ping")[::2] == (200, {"status": "PONG"})
    assert call(admin_server, "POST", "/admin/ping", {})[0] == 200
    assert call(admin_server, "GET", "/healthz")[0] == 200


def test_a_full_workflow_with_clipper_bodies(admin_server, engine):
    status, content_type, answer = call(
        admin_server,
        "POST",
        "/admin/add_app",
        {
            "name": "app",
            "input_type": "doubles",
            "default_output": "-1.0",
            "latency_slo_micros": 100000,
        },
    )
    assert (status, content_type) == (200, "application/json")
    assert answer["message"] == "Successfully added application with name 'app'"
    model = {
        "model_name": "m",
        "model_version": "1",
        "labels": ["l"],
        "input_type": "doubles",
        "container_name": "img",
        "model_data_path": "DEPRECATED",
        "batch_size": -1,
    }
    assert call(admin_server, "POST", "/admin/add_model", model)[0] == 200
    assert (
        call(
            admin_server,
            "POST",
            "/admin/add_model_links",
            {"app_name": "app", "model_names": ["m"]},
        )[0]
        == 200
    )
    assert call(admin_server, "POST", "/admin/get_all_applications", {"verbose": False})[2] == [
        "app"
    ]
    assert call(admin_server, "GET", "/admin/get_all_models")[2] == ["m:1"]
    assert call(admin_server, "POST", "/admin/get_linked_models", {"app_name": "app"})[2] == ["m"]
    assert call(admin_server, "POST", "/admin/get_application", {"name": "nope"})[2] == {}
    assert call(admin_server, "POST", "/admin/get_all_containers", {})[2] == []
    assert engine.config["apps"][0]["linked_models"] == ["m"]


def test_a_trailing_slash_is_accepted(admin_server):
    assert call(admin_server, "POST", "/admin/get_all_models/", {})[0] == 200


def test_validation_errors_are_400_with_error_and_cause(admin_server):
    status, _, answer = call(
        admin_server, "POST", "/admin/add_model_links", {"app_name": "x", "model_names": ["m"]}
    )
    assert status == 400
    assert answer == {
        "error": "add_model_links failed",
        "cause": "application 'x' does not exist; register it with register_application first",
        "type": "UnknownObjectError",
    }


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "Error parsing JSON"),
        (b"[1, 2]", "takes a JSON object"),
        (b"\xff\xfe", "Error parsing JSON"),
        (b'{"name": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nest too deeply"),
    ],
    ids=["malformed", "not-an-object", "not-utf8", "nested-30k"],
)
def test_malformed_bodies_are_400_json_errors(admin_server, body, fragment):
    status, _, answer = call(admin_server, "POST", "/admin/add_app", body)
    assert status == 400
    assert answer["error"] == "Json error"
    assert fragment in answer["cause"]
    assert call(admin_server, "GET", "/admin/ping")[0] == 200


def test_unknown_paths_are_404_and_list_the_operations(admin_server):
    status, _, answer = call(admin_server, "POST", "/admin/nope", {})
    assert status == 404
    assert "add_app" in answer["cause"]
    assert call(admin_server, "GET", "/elsewhere")[0] == 404


def test_changes_cannot_be_sent_with_get(admin_server):
    status, _, answer = call(admin_server, "GET", "/admin/add_app")
    assert status == 405
    assert "POST" in answer["cause"]


def test_a_body_over_the_limit_is_413_and_the_server_keeps_serving(admin_server):
    status, _, answer = call(admin_server, "POST", "/admin/add_app", b"x" * (128 * 1024))
    assert status == 413
    assert "at most" in answer["cause"]
    assert call(admin_server, "GET", "/admin/ping")[0] == 200


def test_keep_alive_serves_several_calls_on_one_connection(admin_server):
    connection = http.client.HTTPConnection(*admin_server, timeout=10)
    try:
        for _ in range(5):
            connection.request(
                "POST", "/admin/get_all_applications", body="{}", headers=admin_server.headers
            )
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read()) == []
    finally:
        connection.close()


def test_an_unexpected_failure_is_500_and_the_server_keeps_serving(admin_server, engine):
    engine.connected_replicas = [{"broken": True}]
    status, _, answer = call(admin_server, "POST", "/admin/get_all_containers", {})
    assert status == 500
    assert answer["error"] == "Internal error"
    assert call(admin_server, "GET", "/admin/ping")[0] == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
    ids=["none", "wrong-token", "other-scheme", "empty"],
)
def test_every_admin_path_needs_the_token(admin_server, engine, headers):
    for method, path in [
        ("POST", "/admin/add_app"),
        ("GET", "/admin/ping"),
        ("GET", "/admin/openapi.json"),
        ("POST", "/admin/no_such_operation"),
    ]:
        body = {
            "name": "x",
            "input_type": "doubles",
            "default_output": "0",
            "latency_slo_micros": 1,
        }
        status, content_type, answer = call(admin_server, method, path, body, headers)
        assert (status, content_type) == (401, "application/json"), path
        assert answer["error"] == "Unauthorized" and "Bearer" in answer["cause"]
    assert engine.applied[-1]["apps"] == []  # nothing was changed
    assert call(admin_server, "GET", "/healthz", headers=headers)[0] == 200


def test_the_token_scheme_is_case_insensitive(admin_server):
    headers = {"Authorization": f"bearer {admin_server.token}"}
    assert call(admin_server, "GET", "/admin/ping", headers=headers)[0] == 200


@pytest.mark.parametrize(
    "method, status", [("PUT", 405), ("DELETE", 405), ("OPTIONS", 405), ("BREW", 501)]
)
def test_other_methods_get_json_errors(admin_server, method, status):
    answered, content_type, answer = call(admin_server, method, "/admin/add_app", b"{}")
    if method == "OPTIONS":
        connection = http.client.HTTPConnection(*admin_server, timeout=10)
        connection.request("HEAD", "/admin/ping")
        head = connection.getresponse()
        assert (head.status, head.read()) == (405, b"")  # headers alone, as HEAD requires
        connection.close()
    assert (answered, content_type) == (status, "application/json")
    assert "GET" in answer["cause"] and "POST" in answer["cause"]
    assert call(admin_server, "GET", "/admin/ping")[0] == 200


def allow_header(server, method, path):
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request(method, path, body=b"{}", headers=server.headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Allow")
    finally:
        connection.close()


def test_allow_names_the_methods_the_document_declares_for_the_path(admin_server):
    # Schemathesis found Allow: GET, POST on paths documented (and served) with POST only.
    assert allow_header(admin_server, "OPTIONS", "/admin/add_app") == (405, "POST")
    assert allow_header(admin_server, "PUT", "/admin/get_all_models") == (405, "GET, POST")
    assert allow_header(admin_server, "GET", "/admin/get_application") == (405, "POST")
    assert allow_header(admin_server, "DELETE", "/admin/openapi.json") == (405, "GET")


def test_health_probes_answer_get_only(admin_server):
    # Schemathesis found POST /healthz answered 200 though the document declares GET alone.
    for path in ("/healthz", "/readyz"):
        assert allow_header(admin_server, "POST", path) == (405, "GET")
        assert call(admin_server, "GET", path)[0] == 200


@pytest.mark.parametrize("verbose", [{}, "yes", 1, None, []])
def test_verbose_must_be_a_boolean(admin_server, verbose):
    # Schemathesis found {"verbose": {}} accepted and read for its truth value.
    for operation in ("get_all_applications", "get_all_models", "get_all_containers"):
        status, _, answer = call(admin_server, "POST", f"/admin/{operation}", {"verbose": verbose})
        assert status == 400, (operation, answer)
        assert "'verbose' must be true or false" in answer["cause"]
    assert call(admin_server, "POST", "/admin/get_all_models", {"verbose": True})[0] == 200
    assert call(admin_server, "POST", "/admin/get_all_models", {})[0] == 200
