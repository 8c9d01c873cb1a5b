"""The selection layer serving real queries: an ensemble (exp4) asks every linked model and answers
with the weight share behind its answer; a bandit (exp3) learns from `POST /<app>/update` which model
is right, per user; feedback is answered only once the policy applied it; bad feedback is a 400.
Everything runs as a user runs it: a local cluster, real replica processes, real HTTP."""

import collections
import re
import time
import urllib.request

import e2e_models
import pytest
from e2e_support import post, start_cluster, wait_for

from clipper.deployers.python import deploy_python_closure

SLO_MICROS = 5_000_000


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(tmp_path_factory.mktemp("selection"), "selection-serving")
    for name, func in (
        ("right", e2e_models.label_of_first),
        ("wrong", e2e_models.label_plus_one),
        ("sleepy", e2e_models.sleep_one_second),
    ):
        deploy_python_closure(conn, name=name, version="1", input_type="doubles", func=func)
    yield conn
    conn.stop_all()


def register(conn, app, policy, **params):
    conn.register_application(app, "doubles", default_output="-1", slo_micros=SLO_MICROS)
    conn.set_selection_policy(app, policy, **params)
    conn.link_model_to_app(app, "right")
    conn.link_model_to_app(app, "wrong")


def query(conn, app, value, uid=0):
    status, answer, _ = post(conn.get_query_addr(), f"/{app}/predict", {"input": [value], "uid": uid})
    assert status == 200, answer
    return answer


def feedback(conn, app, value, uid=0, label=None):
    body = {"uid": uid, "input": [value], "label": int(value) if label is None else label}
    return post(conn.get_query_addr(), f"/{app}/update", body)


def test_an_ensemble_asks_both_models_and_reports_its_confidence(conn):
    register(conn, "vote", "exp4")
    answer = wait_for(lambda: (a := query(conn, "vote", 7.0)) and not a["default"] and a, what="an answer")
    assert answer["output"] in (7, 8)
    assert answer["confidence"] == pytest.approx(0.5, abs=0.01)  # equal weights, one vote each
    assert "partial" not in answer


def test_an_ensemble_answers_partial_at_its_deadline_without_the_late_model(conn):
    """One member answers at once, the other takes 1 s against a 150 ms SLO: at the deadline the
    ensemble combines what arrived, marked partial, its confidence the answering model's share; and
    it goes on doing so once admission control knows the slow member would be late (only an ensemble
    none of whose members could answer in time is refused)."""
    conn.register_application("late-vote", "doubles", default_output="-1", slo_micros=150_000)
    conn.set_selection_policy("late-vote", "exp4")
    conn.link_model_to_app("late-vote", "right")
    conn.link_model_to_app("late-vote", "sleepy")
    answer = wait_for(
        lambda: (a := query(conn, "late-vote", 9.0)) and not a["default"] and a, what="an answer"
    )
    assert answer["output"] == 9 and answer["partial"] is True, answer
    assert answer["confidence"] == pytest.approx(0.5, abs=0.01)
    status, late, seconds = post(conn.get_query_addr(), "/late-vote/predict", {"input": [11.0]})
    assert status == 200 and late["output"] == 11 and late["partial"] is True, late
    assert seconds < 0.9  # at the 150 ms deadline, not after the late model's second
    # Once the slow model's service time is measured (after its first batches), admission control
    # knows it would be late; the ensemble is still answered, partial, since the other member is not.
    time.sleep(2.5)
    for value in range(30, 36):
        status, answer, _ = post(
            conn.get_query_addr(), "/late-vote/predict", {"input": [float(value)]}
        )
        assert status == 200 and answer["output"] == value and answer["partial"] is True, answer
        time.sleep(0.2)
    # Each of them counted as a partial answer of the app (the first wait may have asked more).
    with urllib.request.urlopen(f"http://{conn.get_metric_addr()}/metrics", timeout=10) as page:
        metrics = page.read().decode()
    counted = re.search(
        r'^clipper_app_partial_answers_total\{app="late-vote"\} (\d+)$', metrics, re.MULTILINE
    )
    assert counted is not None and int(counted.group(1)) >= 2 + 6, counted


def test_feedback_teaches_exp4_and_exp3_which_model_is_right(conn):
    for app, policy in (("learn-exp4", "exp4"), ("learn-exp3", "exp3")):
        register(conn, app, policy)
        wait_for(lambda app=app: not query(conn, app, 1.0)["default"], what=f"replicas serving {app}")
        for round_number in range(200):
            status, ack, _ = feedback(conn, app, float(round_number % 50))
            assert status == 200, ack
            assert ack["feedback_applied"] is True
        answers = [query(conn, app, float(v) + 0.5) for v in range(100)]
        right_share = sum(a["output"] == int(float(v) + 0.5) for v, a in zip(range(100), answers)) / 100
        assert right_share >= 0.9, (app, right_share)
        state = conn.get_selection_state(app, uid=0)
        assert state["feedback"] == 200
        assert state["models"]["right"]["weight"] > 0.9


def test_users_learn_separately(conn):
    register(conn, "per-user", "exp3")
    wait_for(lambda: not query(conn, "per-user", 1.0)["default"], what="replicas serving")
    for round_number in range(200):
        value = float(round_number % 50)
        assert feedback(conn, "per-user", value, uid=1, label=int(value))[0] == 200
        assert feedback(conn, "per-user", value, uid=2, label=int(value) + 1)[0] == 200
    served = collections.Counter()
    for v in range(60):
        served["uid1-right"] += query(conn, "per-user", float(v), uid=1)["output"] == v
        served["uid2-wrong"] += query(conn, "per-user", float(v), uid=2)["output"] == v + 1
    assert served["uid1-right"] >= 54 and served["uid2-wrong"] >= 54, served


def test_bad_feedback_is_a_400_that_names_the_problem(conn):
    register(conn, "strict", "exp3")
    for body, fragment in (
        ({"uid": 0, "input": [1.0], "label": "cat"}, "label"),
        ({"uid": 0, "input": [1.0], "label": True}, "label"),
        ({"uid": 0, "input": [1.0]}, "label"),
        ({"uid": 0, "input": "x", "label": 1}, "Expected JSON schema"),
        ({"uid": 0, "input": ["a", "b"], "label": 1}, "Expected JSON schema"),
        ({"uid": "me", "input": [1.0], "label": 1}, "uid"),
        ({"input": [1.0], "label": 1}, "uid"),
    ):
        status, error, _ = post(conn.get_query_addr(), "/strict/update", body)
        assert status == 400 and fragment in error["cause"], (body, error)
    # An unknown application is the contract's 404 (as for /predict), naming it.
    status, error, _ = post(conn.get_query_addr(), "/nobody/update", {"uid": 0, "input": [1.0], "label": 1})
    assert status == 404 and "nobody" in error["cause"], error
    assert conn.get_selection_state("strict", uid=0)["feedback"] == 0


def test_an_ensemble_answers_from_what_its_user_learned(conn):
    """The wrong model is linked first, so a tie (equal weights) goes to it: only the weights this user
    learned from feedback make the right model's answer win, and only for this user."""
    conn.register_application("learned-vote", "doubles", default_output="-1", slo_micros=SLO_MICROS)
    conn.set_selection_policy("learned-vote", "exp4")
    conn.link_model_to_app("learned-vote", "wrong")
    conn.link_model_to_app("learned-vote", "right")
    wait_for(lambda: not query(conn, "learned-vote", 1.0)["default"], what="replicas serving")
    assert query(conn, "learned-vote", 3.0, uid=5)["output"] == 4  # untrained: the tie's winner
    for round_number in range(60):
        value = float(round_number % 30)
        assert feedback(conn, "learned-vote", value, uid=5)[0] == 200
    right_weight = conn.get_selection_state("learned-vote", uid=5)["models"]["right"]["weight"]
    answers = [query(conn, "learned-vote", float(v) + 0.5, uid=5) for v in range(20)]
    assert all(a["output"] == v for v, a in zip(range(20), answers)), answers
    assert answers[0]["confidence"] == pytest.approx(right_weight, abs=0.01)
    assert query(conn, "learned-vote", 3.0, uid=6)["output"] == 4  # another user learned nothing
