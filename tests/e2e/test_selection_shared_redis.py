"""Two real frontend processes of one cluster on one real redis-server, each with replicas of its own:
what users teach through one frontend's /update is served by the other's engine (its follower adopts
each change as Redis publishes it), and a frontend killed and restarted serves every user's learned
weights again, those learned while it was down included (published from the store at its start).

Which model answered shows in the answer: "a" answers an input's whole part, "b" that plus one; so the
share of a user's draws that came from a model is what the frontend's engine serves as its weight."""

import os
import signal

import e2e_models
from e2e_support import post, predict, start_cluster, wait_for

from clipper.container.closure import save_closure
from clipper.deployers.python import deploy_python_closure
from clipper.management.endpoints import process_is_alive

SLO_MICROS = 20_000_000
DRAWS = 60
# exp3's defaults (eta 0.3, gamma 0): after 20 rounds in which one model is right, its weight is
# 1 / (1 + e^-6), 0.9975; an even user's draws split about half and half.
ROUNDS = 20
SERVED_FROM_LEARNED = 0.9 * DRAWS


def draws_from(conn, uid, model, base):
    """How many of DRAWS queries of `uid` (inputs base, base + 1, ...) model `model` answered."""
    offset = {"a": 0, "b": 1}[model]
    served = 0
    for value in range(base, base + DRAWS):
        status, body, _ = predict(conn, "bandit", {"input": [float(value)], "uid": uid})
        assert status == 200 and not body["default"], body
        served += body["output"] == value + offset
    return served


def teach(conn, uid, right_model, base):
    """ROUNDS rounds of feedback for `uid` through `conn`'s query port, `right_model` right in each."""
    offset = {"a": 0, "b": 1}[right_model]
    for value in range(base, base + ROUNDS):
        status, body, _ = post(
            conn.get_query_addr(),
            "/bandit/update",
            {"uid": uid, "input": [float(value)], "label": value + offset},
        )
        assert status == 200 and body["feedback_applied"] is True, body


def start_own_replica(conn, tmp_path, name, func):
    """A replica of `name` version 1 for `conn`'s frontend, its closure saved in that frontend's own
    state directory (a frontend runs closures from nowhere else): the model is already registered
    through the other frontend, so only the manager's build and start steps are needed."""
    source = tmp_path / f"{name}-closure"
    save_closure(func, source)
    conn.cm.deploy_model(name, "1", "doubles", conn.cm.build_model(name, "1", str(source)))


def wait_until_served(conn, uid, model, base, what):
    """Polls until `model` answers at least SERVED_FROM_LEARNED of `uid`'s draws on `conn`."""
    wait_for(
        lambda: draws_from(conn, uid, model, base) >= SERVED_FROM_LEARNED,
        timeout_s=30,
        interval_s=0.2,
        what=what,
    )


def serves_both_models(conn):
    """True once `conn`'s replicas of both models answer (an untaught user's draws are even)."""
    answers = [predict(conn, "bandit", {"input": [0.5 + i], "uid": 999})[1] for i in range(20)]
    return not any(answer["default"] for answer in answers)


def test_two_frontends_on_one_redis_serve_what_users_teach_through_either(tmp_path, redis_address):
    host, port = redis_address.split(":")
    # One cluster name, one Redis; each frontend with its own ports and state directory.
    first = start_cluster(tmp_path / "first", "pair", redis_ip=host, redis_port=int(port))
    second = None
    try:
        second = start_cluster(tmp_path / "second", "pair", redis_ip=host, redis_port=int(port))
        first.register_application("bandit", "doubles", "-1.0", SLO_MICROS)
        deploy_python_closure(first, "a", "1", "doubles", e2e_models.label_of_first)
        deploy_python_closure(first, "b", "1", "doubles", e2e_models.label_plus_one)
        first.set_selection_policy("bandit", "exp3")
        for name in ("a", "b"):
            first.link_model_to_app("bandit", name)
        # The second frontend follows the configuration; its replicas are its own.
        wait_for(
            lambda: second.get_linked_models("bandit") == ["a", "b"],
            what="the second frontend to follow the links",
        )
        start_own_replica(second, tmp_path, "a", e2e_models.label_of_first)
        start_own_replica(second, tmp_path, "b", e2e_models.label_plus_one)
        for conn in (first, second):
            wait_for(lambda c=conn: serves_both_models(c), timeout_s=60, what="both models")

        # Untaught, a user's draws on the second frontend come from both models.
        assert 0 < draws_from(second, 5, "b", 1000) < DRAWS

        # Taught through the first frontend, served by the second.
        teach(first, 5, "b", 2000)
        wait_until_served(second, 5, "b", 3000, "the second frontend to serve the first's lesson")
        assert second.get_selection_state("bandit", uid=5) == first.get_selection_state(
            "bandit", uid=5
        )

        # And the other way: taught through the second, served by the first.
        teach(second, 6, "a", 4000)
        wait_until_served(first, 6, "a", 5000, "the first frontend to serve the second's lesson")

        # The second frontend killed; a user taught meanwhile (no notification reaches it) and one
        # taught before are both served once it is back: published from Redis at its start.
        killed = second.cm.frontend_pid()
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: not process_is_alive(killed), what="the second frontend to die")
        teach(first, 7, "a", 6000)
        second.start_clipper()
        wait_for(lambda: serves_both_models(second), timeout_s=60, what="the restarted frontend")
        wait_until_served(second, 7, "a", 7000, "the restarted frontend to serve what it missed")
        wait_until_served(second, 5, "b", 8000, "the restarted frontend to serve what it knew")
    finally:
        if second is not None:
            second.stop_all()
        first.stop_all(clear_state=True)
