"""A model that fails inside an ensemble or a cascade is reported as failed, not only as missing: the
answer names it in `failed_models`, an ensemble none of whose members answered explains every member's
failure, a cascade escalates past it, and /metrics counts the failure against the app's linked model
(clipper_app_model_failures_total). Real replicas whose predict_batch raises, real HTTP."""

import urllib.request

import e2e_models
import pytest
from e2e_support import post, start_cluster, wait_for
from prometheus_client.parser import text_string_to_metric_families

from clipper.deployers.python import deploy_python_closure

SLO_MICROS = 5_000_000


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(tmp_path_factory.mktemp("failures"), "selection-failures")
    # `fragile` and `brittle` raise for a negative first element; `right` always answers.
    for name, func in (
        ("right", e2e_models.label_of_first),
        ("fragile", e2e_models.fail_on_negative),
        ("brittle", e2e_models.fail_on_negative),
    ):
        deploy_python_closure(conn, name=name, version="1", input_type="doubles", func=func)
    yield conn
    conn.stop_all()


def register(conn, app, policy, models, **params):
    conn.register_application(app, "doubles", default_output="-1", slo_micros=SLO_MICROS)
    conn.set_selection_policy(app, policy, **params)
    for model in models:
        conn.link_model_to_app(app, model)


def ask(conn, app, value):
    status, answer, _ = post(conn.get_query_addr(), f"/{app}/predict", {"input": [value]})
    assert status == 200, answer
    return answer


def failures(conn, app, model):
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as page:
        text = page.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "clipper_app_model_failures_total" and sample.labels == {
                "app": app,
                "model": model,
            }:
                return sample.value
    return 0.0


def test_an_ensemble_member_that_failed_is_named_in_the_answer_and_counted(conn):
    register(conn, "vote", "exp4", ["right", "fragile"])
    wait_for(lambda: not ask(conn, "vote", 2.0)["default"], what="both members serving")
    before = {model: failures(conn, "vote", model) for model in ("right", "fragile")}

    answer = ask(conn, "vote", -3.0)
    assert answer["default"] is False and answer["output"] == -3, answer
    assert answer["partial"] is True and answer["failed_models"] == ["fragile:1"], answer
    assert answer["confidence"] == pytest.approx(0.5, abs=0.01)  # right's share only

    healthy = ask(conn, "vote", 4.0)
    assert "failed_models" not in healthy and "partial" not in healthy, healthy
    assert failures(conn, "vote", "fragile") - before["fragile"] == 1
    assert failures(conn, "vote", "right") - before["right"] == 0


def test_an_ensemble_whose_members_all_failed_explains_each_failure(conn):
    register(conn, "all-fail", "exp4", ["fragile", "brittle"])
    wait_for(lambda: not ask(conn, "all-fail", 1.0)["default"], what="both members serving")
    answer = ask(conn, "all-fail", -5.0)
    assert answer["default"] is True and answer["output"] == -1, answer
    assert answer["failed_models"] == ["fragile:1", "brittle:1"], answer
    explanation = answer["default_explanation"]
    assert explanation.startswith("No model of the ensemble answered"), explanation
    assert "Model fragile:1 failed" in explanation and "Model brittle:1 failed" in explanation


def test_a_cascade_escalates_past_a_failed_stage_and_says_so(conn):
    register(conn, "chain", "cascade", ["right", "fragile"], order=["fragile", "right"])
    sure = wait_for(lambda: (a := ask(conn, "chain", 6.0)) and not a["default"] and a, what="an answer")
    assert sure["model"] == "fragile:1" and "failed_models" not in sure, sure
    before = failures(conn, "chain", "fragile")

    answer = ask(conn, "chain", -7.0)
    assert answer["default"] is False and answer["output"] == -7 and answer["model"] == "right:1", answer
    assert answer["failed_models"] == ["fragile:1"], answer
    assert failures(conn, "chain", "fragile") - before == 1
