"""The management API's published OpenAPI description matches what the server serves: the same paths,
valid OpenAPI 3, request bodies whose required fields the server really requires, and real answers that
match the documented response schemas."""

import http.client
import json

import pytest

from clipper.management.http_api import openapi_document, served_paths
from conftest import SUPERVISION_TOKEN


def call(server, method, path, body=None):
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request(
            method, path, body=None if body is None else json.dumps(body), headers=server.headers
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_document_is_served_and_is_valid_openapi_3(admin_server):
    status, document = call(admin_server, "GET", "/admin/openapi.json")
    assert status == 200
    assert document == openapi_document()
    assert document["openapi"].startswith("3.")
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator (the test extra)")
    validator.validate(document)


def test_every_served_path_is_documented_and_every_documented_path_is_served(service, admin_server):
    documented = set(openapi_document()["paths"])
    served = set(served_paths(service))
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    for path in sorted(served):
        method = "GET" if path in ("/healthz", "/readyz", "/admin/openapi.json") else "POST"
        status, _ = call(admin_server, method, path, {} if method == "POST" else None)
        assert status != 404, path


def test_documented_get_operations_answer_get(admin_server):
    for path, item in openapi_document()["paths"].items():
        if "get" in item:
            assert call(admin_server, "GET", path)[0] == 200, path


def test_each_required_field_is_required_by_the_server(admin_server):
    for path, item in openapi_document()["paths"].items():
        if path == "/admin/set_replica_supervision":
            continue  # the reporter's token only (test_supervision_reports checks its fields)
        schema = item.get("post", {}).get("requestBody", {}).get("content", {})
        required = schema.get("application/json", {}).get("schema", {}).get("required", [])
        if required:
            status, answer = call(admin_server, "POST", path, {})
            assert status == 400, path
            assert required[0] in answer["cause"], (path, answer)


def test_real_answers_match_the_documented_schemas(admin_server, engine):
    schema_validator = pytest.importorskip("openapi_schema_validator", reason="openapi-schema-validator (the test extra)")
    document = openapi_document()
    engine.connected_replicas = [
        {"model_name": "m", "model_version": "1", "replica_id": 0, "input_type": "doubles",
         "inflight_batches": 0},
    ]  # fmt: skip
    calls = [
        ("add_app", {"name": "a", "input_type": "doubles", "default_output": "0",
                     "latency_slo_micros": 1000}),
        ("add_model", {"model_name": "m", "model_version": "1", "input_type": "doubles",
                       "max_batch_size": 8}),
        ("add_model_links", {"app_name": "a", "model_names": ["m"]}),
        ("set_model_batching", {"model_name": "m", "batch_wait_timeout_micros": 10}),
        ("get_all_applications", {"verbose": True}), ("get_all_applications", {}),
        ("get_application", {"name": "a"}), ("get_application", {"name": "nope"}),
        ("get_linked_models", {"app_name": "a"}),
        ("get_all_models", {"verbose": True}), ("get_model", {"model_name": "m", "model_version": "1"}),
        ("get_all_containers", {"verbose": True}),
        ("get_container", {"model_name": "m", "model_version": "1", "replica_id": 0}),
        ("get_state", {"app_name": "a", "uid": 0}), ("get_config", {}),
        ("get_batching_state", {"model_name": "m"}), ("ping", {}),
        ("set_model_version", {"model_name": "m", "model_version": "1"}),
        ("delete_model_links", {"app_name": "a", "model_names": ["m"]}),
        ("delete_versioned_model", {"model_name": "m", "model_version": "1"}),
        ("delete_app", {"name": "a"}),
        ("delete_app", {"name": "a"}),  # an error answer, checked against the Error schema
    ]  # fmt: skip
    for operation, body in calls:
        status, answer = call(admin_server, "POST", f"/admin/{operation}", body)
        responses = document["paths"][f"/admin/{operation}"]["post"]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        schema_validator.validate(
            answer, {**schema, "components": document["components"]},
            cls=schema_validator.OAS30Validator,
        )  # fmt: skip


def test_the_token_is_documented_and_a_401_is_what_the_server_answers(admin_server):
    document = openapi_document()
    assert document["components"]["securitySchemes"]["managementToken"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path in ("/healthz", "/readyz"):
                assert operation["security"] == []
                continue
            assert "401" in operation["responses"], (path, method)
    connection = http.client.HTTPConnection(*admin_server, timeout=10)
    try:
        connection.request("POST", "/admin/get_all_models", body="{}")
        response = connection.getresponse()
        assert response.status == 401 and "error" in json.loads(response.read())
    finally:
        connection.close()


def test_fuzzed_bodies_from_the_documented_schemas_never_answer_500(admin_server):
    """Hypothesis builds bodies from each operation's documented fields (right and wrong types, extra
    keys, missing ones): every answer is a documented 200 or 400, never a 500."""
    hypothesis = pytest.importorskip("hypothesis", reason="hypothesis (the test extra)")
    strategies = hypothesis.strategies
    document = openapi_document()
    scalars = (
        strategies.none()
        | strategies.booleans()
        | strategies.integers()
        | strategies.floats(allow_nan=False)
        | strategies.text(max_size=20)
    )
    values = strategies.recursive(
        scalars,
        lambda inner: (
            strategies.lists(inner, max_size=3)
            | strategies.dictionaries(strategies.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )
    operations = []
    for path, item in sorted(document["paths"].items()):
        schema = item.get("post", {}).get("requestBody", {}).get("content", {})
        properties = schema.get("application/json", {}).get("schema", {}).get("properties", {})
        if path.startswith("/admin/") and "post" in item:
            operations.append((path, sorted(properties) or ["name"]))
    connection = http.client.HTTPConnection(*admin_server, timeout=10)

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(
        strategies.sampled_from(operations).flatmap(
            lambda operation: strategies.tuples(
                strategies.just(operation[0]),
                strategies.dictionaries(
                    strategies.sampled_from(operation[1]) | strategies.text(max_size=8),
                    values,
                    max_size=len(operation[1]) + 1,
                ),
            )
        )
    )
    def call_once(path_and_body):
        path, body = path_and_body
        # The reporter's path takes its own token (the document says so in its `security`).
        headers = admin_server.headers
        if document["paths"][path]["post"].get("security") == [{"supervisionToken": []}]:
            headers = {"Authorization": f"Bearer {SUPERVISION_TOKEN}"}
        connection.request("POST", path, body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status in (200, 400), (path, body, response.status, answer)

    try:
        call_once()
    finally:
        connection.close()
