"""The native engine through its binding: lifecycle, configuration, and the HTTP surface that needs
no model (health, routing errors, body limits). Real HTTP over loopback."""

import http.client
import json
import socket
import threading

import pytest

from clipper_native import _core


def make_engine(**overrides) -> _core.Engine:
    options = _core.EngineOptions()
    options.query_port = 0
    options.rpc_port = 0
    options.metrics_port = 0
    for name, value in overrides.items():
        setattr(options, name, value)
    return _core.Engine(options)


def app_config(name="app", input_type="doubles", slo_micros=100000, linked_models=()):
    return {
        "name": name,
        "input_type": input_type,
        "default_output": "-1.0",
        "slo_micros": slo_micros,
        "linked_models": list(linked_models),
    }


@pytest.fixture
def engine():
    running = make_engine()
    running.start()
    running.apply_config(json.dumps({"apps": [app_config()], "models": []}))
    yield running
    running.stop()


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_options_are_validated_with_the_field_name():
    options = _core.EngineOptions()
    options.io_threads = 0
    with pytest.raises(ValueError, match="io_threads"):
        _core.Engine(options)


def test_a_busy_port_raises_engine_error():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        engine = make_engine(query_port=blocker.getsockname()[1])
        with pytest.raises(_core.EngineError, match="cannot listen"):
            engine.start()
    finally:
        blocker.close()


def test_readyz_waits_for_a_configuration():
    engine = make_engine()
    engine.start()
    try:
        status, _, body = request(engine.query_port, "GET", "/readyz")
        assert status == 503
        assert json.loads(body)["error"] == "Not ready"
        assert request(engine.query_port, "GET", "/healthz")[0] == 200
        engine.apply_config(json.dumps({"apps": []}))
        assert request(engine.query_port, "GET", "/readyz")[0] == 200
    finally:
        engine.stop()


def test_invalid_configuration_is_rejected_and_the_old_one_kept(engine):
    with pytest.raises(ValueError, match="links model"):
        engine.apply_config(json.dumps({"apps": [app_config(linked_models=["ghost"])]}))
    status, _, body = request(engine.query_port, "POST", "/app/predict", b'{"input": [1.0]}')
    assert status == 200
    assert json.loads(body)["default"] is True


def test_no_linked_model_answers_the_default_with_an_explanation(engine):
    status, content_type, body = request(engine.query_port, "POST", "/app/predict", b'{"input": [1, 2]}')
    assert status == 200
    assert content_type == "application/json"
    answer = json.loads(body)
    assert answer["output"] == -1.0
    assert answer["default"] is True
    assert "No model is linked" in answer["default_explanation"]
    assert isinstance(answer["query_id"], int)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"input": [1, 2', "Error parsing JSON"),
        (b'{"input": "text"}', "JSON array of numbers"),
        (b'{"input": [1, "x"]}', "every element must be a number"),
        (b'{"nothing": 1}', 'missing "input"'),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_bodies_get_400_with_the_schema(engine, body, fragment):
    status, content_type, raw = request(engine.query_port, "POST", "/app/predict", body)
    assert status == 400
    assert content_type == "application/json"
    answer = json.loads(raw)
    assert answer["error"] == "Json error"
    assert fragment in answer["cause"]
    assert "Expected JSON schema" in answer["cause"]
    assert request(engine.query_port, "GET", "/healthz")[0] == 200


def test_unknown_app_and_unknown_paths_get_404(engine):
    status, _, raw = request(engine.query_port, "POST", "/nope/predict", b'{"input": [1.0]}')
    assert status == 404
    assert "nope" in json.loads(raw)["cause"]
    status, _, raw = request(engine.query_port, "GET", "/what/ever/else")
    assert status == 404


def test_wrong_method_gets_405(engine):
    status, _, raw = request(engine.query_port, "GET", "/app/predict")
    assert status == 405
    assert "POST" in json.loads(raw)["cause"]


def test_a_10_mb_body_gets_413_and_the_server_keeps_serving(engine):
    body = b'{"input": [' + b"1.0," * (10 * 1024 * 1024 // 4) + b"1.0]}"
    try:
        status, _, raw = request(engine.query_port, "POST", "/app/predict", body)
        assert status == 413
        assert "exceeds the limit" in json.loads(raw)["cause"]
    except (BrokenPipeError, ConnectionResetError):
        # The server may close while the client is still sending; it answered 413 first.
        pass
    assert request(engine.query_port, "POST", "/app/predict", b'{"input": [1.0]}')[0] == 200


def test_update_is_answered_only_once_the_feedback_consumer_applied_it(engine):
    feedback = b'{"uid": 1, "input": [1.0], "label": 2}'
    engine.apply_config(json.dumps({
        "apps": [app_config(linked_models=["m"])],
        "models": [{"name": "m", "version": "1", "input_type": "doubles", "current": True}],
    }))
    # Nothing in this process learns from feedback yet: it is refused, never acknowledged.
    status, _, raw = request(engine.query_port, "POST", "/app/update", feedback)
    assert status == 503
    assert "selection worker" in json.loads(raw)["cause"]

    assert engine.next_feedback(0) == []  # a consumer is attached from now on
    rounds = []

    def consume():
        while len(rounds) < 2:
            for record in engine.next_feedback(100):
                rounds.append(record)
                engine.finish_feedback(record["ticket"], record["label"] == 2, "label 3 is refused here")

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        status, _, raw = request(engine.query_port, "POST", "/app/update", feedback)
        assert status == 200
        assert json.loads(raw)["feedback_applied"] is True
        status, _, raw = request(engine.query_port, "POST", "/app/update", feedback.replace(b"2}", b"3}"))
        assert status == 400
        assert json.loads(raw)["cause"] == "label 3 is refused here"
    finally:
        consumer.join(timeout=10)
    assert [(r["app"], r["uid"], r["label"]) for r in rounds] == [("app", 1, 2.0), ("app", 1, 3.0)]
    assert rounds[0]["outputs"] == {}  # the linked model has no replica, so it gave no output

    status, _, raw = request(engine.query_port, "POST", "/app/update", b'{"uid": "u", "input": [1.0], "label": 2}')
    assert status == 400
    assert "uid" in json.loads(raw)["cause"]


def test_selection_weights_are_published_per_user_and_checked_against_the_links(engine):
    engine.apply_config(json.dumps({
        "apps": [app_config(linked_models=["a", "b"]) | {"selection": {"mode": "sample"}}],
        "models": [{"name": n, "version": "1", "input_type": "doubles", "current": True} for n in "ab"],
    }))
    engine.set_selection_weights("app", 7, {"a": 0.25, "b": 0.75})
    with pytest.raises(ValueError, match="not linked"):
        engine.set_selection_weights("app", 7, {"c": 1.0})
    with pytest.raises(ValueError, match="no application"):
        engine.set_selection_weights("nope", 7, {"a": 1.0})
    engine.clear_selection_weights("app", 7)
    engine.clear_selection_weights("app")
    # A round's losses land in the app's series; models and apps no longer routed are skipped.
    engine.record_feedback_losses("app", 1.0, {"a": 0.0, "b": 1.0, "gone": 1.0})
    engine.record_feedback_losses("app", None, {"b": 1.0})
    engine.record_feedback_losses("nope", 1.0, {"a": 1.0})
    metrics = engine.metrics_text()
    assert 'clipper_app_online_loss_total{app="app"} 1\n' in metrics
    assert 'clipper_app_online_loss_rounds_total{app="app"} 1\n' in metrics
    assert 'clipper_app_model_loss_total{app="app",model="b"} 2\n' in metrics
    assert 'clipper_app_model_loss_rounds_total{app="app",model="a"} 1\n' in metrics
    assert 'model="gone"' not in metrics and 'app="nope"' not in metrics


def test_a_cascade_plan_is_served_and_a_repeated_stage_refused(engine):
    engine.apply_config(json.dumps({
        "apps": [app_config(linked_models=["a", "b"])
                 | {"selection": {"mode": "cascade", "order": ["b"], "confidence_threshold": 0.5}}],
        "models": [{"name": n, "version": "1", "input_type": "doubles", "current": True} for n in "ab"],
    }))
    with pytest.raises(ValueError, match="twice"):
        engine.apply_config(json.dumps({
            "apps": [app_config(linked_models=["a"])
                     | {"selection": {"mode": "cascade", "order": ["a", "a"]}}],
            "models": [{"name": "a", "version": "1", "input_type": "doubles", "current": True}],
        }))


def test_keep_alive_serves_many_requests_on_one_connection(engine):
    connection = http.client.HTTPConnection("127.0.0.1", engine.query_port, timeout=10)
    try:
        for index in range(50):
            connection.request("POST", "/app/predict", body=json.dumps({"input": [float(index)]}))
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["default"] is True
    finally:
        connection.close()


def test_metrics_are_prometheus_text_on_both_ports():
    engine = make_engine(metrics_port=0)
    engine.start()
    try:
        engine.apply_config(json.dumps({"apps": [app_config(name="counted")]}))
        request(engine.query_port, "POST", "/counted/predict", b'{"input": [1.0]}')
        status, content_type, raw = request(engine.query_port, "GET", "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert 'clipper_app_requests_total{app="counted"} 1' in raw.decode()
        assert 'clipper_app_default_answers_total{app="counted"} 1' in raw.decode()
    finally:
        engine.stop()


def test_a_separate_metrics_port_serves_metrics_only():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    engine = make_engine(metrics_port=port)
    engine.start()
    try:
        assert engine.metrics_port == port
        status, _, raw = request(port, "GET", "/metrics")
        assert status == 200
        assert b"clipper_app_requests_total" in raw
        assert request(port, "POST", "/app/predict", b"{}")[0] == 404
    finally:
        engine.stop()


def test_replica_supervision_reaches_metrics_and_bad_slots_are_value_errors(engine):
    slot = {
        "model_name": "m",
        "model_version": "1",
        "replica_id": 4,
        "restarts": 2,
        "last_exit_reason": "killed by signal 9 (SIGKILL)",
        "state": "running",
        "pid": 123,  # the rest of a supervision_report() entry is ignored
    }
    engine.set_replica_supervision([slot])
    text = request(engine.query_port, "GET", "/metrics")[2].decode()
    labels = 'model="m",version="1",replica="4"'
    assert f"clipper_replica_restarts_total{{{labels}}} 2\n" in text
    reason = 'reason="killed by signal 9 (SIGKILL)"'
    assert f"clipper_replica_last_exit_info{{{labels},{reason}}} 1" in text
    assert f'clipper_replica_supervision_state{{{labels},state="running"}} 1' in text
    for bad, message in [
        ([{**slot, "state": "asleep"}], "unknown state 'asleep'"),
        ([{**slot, "restarts": -1}], "restarts must be >= 0"),
        ([{k: v for k, v in slot.items() if k != "replica_id"}], "lacks 'replica_id'"),
        (["m:1"], "each slot is a dict"),
    ]:
        with pytest.raises(ValueError, match=message):
            engine.set_replica_supervision(bad)
    # A refused snapshot leaves the last one; an empty one clears the series.
    assert f"clipper_replica_restarts_total{{{labels}}} 2\n" in engine.metrics_text()
    engine.set_replica_supervision([])
    assert "clipper_replica_restarts_total{" not in engine.metrics_text()
