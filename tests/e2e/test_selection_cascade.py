"""A cascade served by the engine with real replicas: a fast model that reports its confidence and a
slow one that is sure. The fast model answers what it is sure of; an unsure answer, fresh or from the
cache, is handed on to the slow model, which answers instead; when the slow model cannot answer by the
app's deadline, the fast model's unsure answer is given, marked partial, on time. /metrics counts
selections and escalations per model."""

import time
import urllib.request

import e2e_models
import pytest
from e2e_support import post, start_cluster, wait_for
from prometheus_client.parser import text_string_to_metric_families

from clipper.deployers.python import deploy_python_closure

THRESHOLD = 0.8


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(tmp_path_factory.mktemp("cascade"), "selection-cascade")
    deploy_python_closure(conn, "fast", "1", "doubles", e2e_models.unsure_when_told)
    deploy_python_closure(conn, "slow", "1", "doubles", e2e_models.make_slow_and_sure(0.05))
    deploy_python_closure(conn, "sleepy", "1", "doubles", e2e_models.make_slow_and_sure(1.0))
    yield conn
    conn.stop_all()


def register_cascade(conn, app, slow_model, slo_micros=5_000_000):
    conn.register_application(app, "doubles", default_output="-1", slo_micros=slo_micros)
    conn.set_selection_policy(
        app, "cascade", order=["fast", slow_model], confidence_threshold=THRESHOLD
    )
    conn.link_model_to_app(app, slow_model)  # linked first: the order, not the links, decides
    conn.link_model_to_app(app, "fast")


def ask(conn, app, x, confidence):
    status, answer, _ = post(
        conn.get_query_addr(), f"/{app}/predict", {"input": [float(x), float(confidence)]}
    )
    assert status == 200, answer
    return answer


def counters(conn):
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as page:
        text = page.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            values[key] = sample.value
    return values


def counter(values, name, **labels):
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def evaluated(conn, model):
    return counter(counters(conn), "clipper_model_predictions_total", model=model, version="1")


def test_escalates_exactly_when_the_fast_model_is_unsure(conn):
    register_cascade(conn, "triage", "slow")
    wait_for(lambda: not ask(conn, "triage", -1, 0.99)["default"], what="the fast model serving")
    wait_for(lambda: not ask(conn, "triage", -2, 0.1)["default"], what="the slow model serving")
    before = counters(conn)
    slow_before = evaluated(conn, "slow")
    sure = [ask(conn, "triage", x, 0.9 + x / 1000) for x in range(10)]
    unsure = [ask(conn, "triage", x, 0.5) for x in range(10, 16)]
    at_threshold = ask(conn, "triage", 16, THRESHOLD)  # reaching the threshold is sure

    for x, answer in enumerate(sure):
        assert answer == {**answer, "output": x, "model": "fast:1", "default": False}, answer
        assert answer["confidence"] == pytest.approx(0.9 + x / 1000)
        assert "partial" not in answer
    for x, answer in zip(range(10, 16), unsure):
        # The slow model reports no confidence: it counts as sure (1.0).
        assert answer == {**answer, "output": x + 100, "model": "slow:1", "confidence": 1.0}, answer
        assert "partial" not in answer
    assert at_threshold["model"] == "fast:1" and at_threshold["output"] == 16

    # Only the unsure inputs reached the slow model, and /metrics says so per model.
    assert evaluated(conn, "slow") - slow_before == len(unsure)
    after = counters(conn)
    for model, asked, escalated in (("fast", 17, 6), ("slow", 6, 0)):
        labels = {"app": "triage", "model": model}
        assert (
            counter(after, "clipper_app_selections_total", **labels)
            - counter(before, "clipper_app_selections_total", **labels)
            == asked
        ), model
        assert (
            counter(after, "clipper_app_cascade_escalations_total", **labels)
            - counter(before, "clipper_app_cascade_escalations_total", **labels)
            == escalated
        ), model
    confidence = "clipper_app_answer_confidence_count"
    assert (
        counter(after, confidence, app="triage") - counter(before, confidence, app="triage") == 17
    )


def test_a_cached_answer_escalates_as_a_fresh_one_does(conn):
    register_cascade(conn, "cached", "slow")
    # Another app puts the fast model's answers in the prediction cache first.
    conn.register_application("fast-only", "doubles", default_output="-1", slo_micros=5_000_000)
    conn.link_model_to_app("fast-only", "fast")
    wait_for(lambda: not ask(conn, "fast-only", -3, 1.0)["default"], what="fast-only serving")
    wait_for(lambda: not ask(conn, "cached", -3, 1.0)["default"], what="the cascade serving")
    for x, confidence in ((20, 0.3), (21, 0.95)):
        assert ask(conn, "fast-only", x, confidence)["output"] == x
    fast_before, slow_before = evaluated(conn, "fast"), evaluated(conn, "slow")

    unsure = ask(conn, "cached", 20, 0.3)
    sure = ask(conn, "cached", 21, 0.95)
    assert evaluated(conn, "fast") == fast_before  # both fast answers came from the cache
    assert unsure["model"] == "slow:1" and unsure["output"] == 120, unsure
    assert sure["model"] == "fast:1" and sure["output"] == 21 and sure["confidence"] == 0.95, sure
    assert evaluated(conn, "slow") == slow_before + 1  # only the unsure one escalated

    # Asked again, both stages answer from the cache, and the outcome is the same.
    again = ask(conn, "cached", 20, 0.3)
    assert again == {**unsure, "query_id": again["query_id"]}
    assert evaluated(conn, "slow") == slow_before + 1


def test_the_deadline_is_kept_with_the_unsure_answer_when_the_slow_model_is_late(conn):
    slo_s = 0.3
    register_cascade(conn, "hurry", "sleepy", slo_micros=int(slo_s * 1e6))
    wait_for(lambda: not ask(conn, "hurry", -4, 1.0)["default"], what="the fast model serving")
    timings = []
    for x in range(30, 34):
        started = time.perf_counter()
        answer = ask(conn, "hurry", x, 0.2)
        timings.append(time.perf_counter() - started)
        # The sleepy model (1 s per batch) cannot answer in 0.3 s: the fast model's answer is given.
        assert answer["output"] == x and answer["model"] == "fast:1", answer
        assert answer["partial"] is True and answer["default"] is False, answer
        assert answer["confidence"] == pytest.approx(0.2)
    # Answered by the deadline, not after the sleepy model (generous for a busy machine).
    assert max(timings) < slo_s + 0.5, timings
    # A sure answer never waits for the sleepy model.
    assert ask(conn, "hurry", 40, 0.99)["model"] == "fast:1"


def test_feedback_reaches_the_cascade_policy_and_its_online_loss_is_exported(conn):
    register_cascade(conn, "learned", "slow")
    wait_for(lambda: not ask(conn, "learned", -5, 1.0)["default"], what="the cascade serving")
    before = counters(conn)
    for x in range(50, 54):
        # The label is the slow model's answer: the fast model is wrong, the cascade's answer (sure
        # fast for even x, escalated to slow for odd x) is right half the time.
        confidence = 0.9 if x % 2 == 0 else 0.1
        status, ack, _ = post(
            conn.get_query_addr(),
            "/learned/update",
            {"uid": 0, "input": [float(x), confidence], "label": x + 100},
        )
        assert status == 200 and ack["feedback_applied"] is True, ack
    after = counters(conn)

    def delta(name, **labels):
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert delta("clipper_app_feedback_rounds_total", app="learned", outcome="applied") == 4
    assert delta("clipper_app_online_loss_rounds_total", app="learned") == 4
    assert delta("clipper_app_online_loss_total", app="learned") == 2
    assert delta("clipper_app_model_loss_total", app="learned", model="fast") == 4
    assert delta("clipper_app_model_loss_total", app="learned", model="slow") == 0
    assert delta("clipper_app_model_loss_rounds_total", app="learned", model="slow") == 4
    state = conn.get_selection_state("learned")
    assert state["feedback"] == 4
