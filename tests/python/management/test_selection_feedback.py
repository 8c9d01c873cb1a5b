"""The feedback worker's learning step, driven through `apply_feedback` and `handle_record` (what the
engine-driven loop calls): per-user learning that persists, the published weights, the bounded cache,
and two frontends on one Redis converging on the same weights.

`PublishedWeights` records what the worker hands the engine's selection binding; it stands in for
the binding calls until the native engine implements them (docs/interfaces.md)."""

import threading
import time

import pytest

from clipper.exceptions import ConfigurationError, UnknownObjectError
from clipper.management import ManagementService
from clipper.management.selection_feedback import SelectionFeedbackWorker, selection_binding
from clipper.state import RedisStateStore
from clipper.state.redis_store import parse_redis_address
from clipper.state.selection_state import open_selection_store

RIGHT = {"right": "1", "wrong": "0"}


class PublishedWeights:
    def __init__(self):
        self.weights = {}
        self.cleared = []
        self.losses = []

    def next_feedback(self, timeout_ms):
        return []

    def finish_feedback(self, ticket, applied, message):
        pass

    def set_selection_weights(self, app, uid, weights):
        self.weights[(app, uid)] = dict(weights)

    def record_feedback_losses(self, app, answer_loss, model_losses):
        self.losses.append((app, answer_loss, dict(model_losses)))

    def clear_selection_weights(self, app, uid):
        self.cleared.append((app, uid))
        self.weights = {
            k: v for k, v in self.weights.items() if k[0] != app or uid not in (None, k[1])
        }


def configure(service, policy="exp3", models=("right", "wrong"), **params):
    service.add_app(
        {"name": "app", "input_type": "ints", "default_output": "-1", "latency_slo_micros": 1000}
    )
    for name in models:
        service.add_model({"model_name": name, "model_version": "1", "input_type": "ints"})
    service.operations["set_selection_policy"](
        {"app_name": "app", "policy": policy, "params": params}
    )
    service.add_model_links({"app_name": "app", "model_names": list(models)})


def worker_for(service, binding=None, capacity_users=1000):
    return SelectionFeedbackWorker(
        service, service.selection_worker.store, binding, capacity_users=capacity_users
    )


@pytest.mark.parametrize("policy", ["exp3", "exp4"])
def test_two_hundred_rounds_teach_the_right_model_and_publish_it(service, policy):
    configure(service, policy)
    binding = PublishedWeights()
    worker = worker_for(service, binding)
    for _ in range(200):
        result = worker.apply_feedback("app", 0, RIGHT, 1)
    assert result["feedback"] == 200
    assert binding.weights[("app", 0)]["right"] >= 0.9
    view = worker.describe("app", 0)
    assert view["feedback"] == 200
    assert view["models"]["right"]["weight"] >= 0.9
    assert view["models"]["wrong"]["mean_loss"] == 1.0


def test_learned_state_outlives_the_worker_and_is_published_again_at_start(service):
    configure(service)
    worker_for(service).apply_feedback("app", 3, RIGHT, 1)
    binding = PublishedWeights()
    fresh = worker_for(service, binding)
    assert fresh.describe("app", 3)["feedback"] == 1
    assert fresh.publish_stored_weights() == 1
    assert set(binding.weights) == {("app", 3)}


def test_a_round_on_a_state_another_frontend_wrote_publishes_even_unchanged_weights(service):
    """Two workers on one store, no follower: the second one's engine never saw the first one's
    weights, so its first round publishes them although learning no longer moves them."""
    configure(service)
    first, second = PublishedWeights(), PublishedWeights()
    for _ in range(200):  # to the fixed point: a round changes no weight
        worker_for(service, first).apply_feedback("app", 4, RIGHT, 1)
    settled = first.weights[("app", 4)]
    worker = worker_for(service, second)
    assert worker.apply_feedback("app", 4, RIGHT, 1)["weights"] == settled
    assert second.weights[("app", 4)] == settled
    second.weights.clear()
    worker.apply_feedback("app", 4, RIGHT, 1)  # its own write now: nothing new to publish
    assert second.weights == {}


def test_stored_weights_are_published_in_steps_without_overwriting_newer_feedback(service):
    """At start the worker publishes stored users a step at a time and applies feedback between
    steps; a user taught meanwhile keeps the weights of that feedback, not the older stored ones."""
    configure(service)
    for uid in range(6):
        worker_for(service).apply_feedback("app", uid, RIGHT, 1)
    binding = PublishedWeights()
    worker = worker_for(service, binding)
    steps = worker.publish_stored_weights_in_steps(step_users=2)
    assert next(steps) == 2
    waiting = [uid for uid in range(6) if ("app", uid) not in binding.weights]
    assert len(waiting) == 4
    taught = waiting[0]
    for _ in range(30):  # now "wrong" is right for this user
        worker.apply_feedback("app", taught, {"right": "0", "wrong": "1"}, 1)
    newer = dict(binding.weights[("app", taught)])
    assert newer["wrong"] > 0.9
    assert sum(steps) == 3  # the other three waiting users; the taught one is skipped
    assert binding.weights[("app", taught)] == newer
    assert set(binding.weights) == {("app", uid) for uid in range(6)}
    assert worker.publish_stored_weights() == 6  # later calls publish everyone again


def test_users_learn_apart(service):
    configure(service)
    worker = worker_for(service)
    for _ in range(100):
        worker.apply_feedback("app", 1, RIGHT, 1)
        worker.apply_feedback("app", 2, RIGHT, 0)
    assert worker.describe("app", 1)["models"]["right"]["weight"] >= 0.9
    assert worker.describe("app", 2)["models"]["wrong"]["weight"] >= 0.9


def test_a_fixed_split_publishes_nothing_per_user(service):
    configure(service, "ab", weights={"right": 1, "wrong": 1})
    binding = PublishedWeights()
    worker_for(service, binding).apply_feedback("app", 0, RIGHT, 1)
    assert binding.weights == {}


def test_bad_feedback_is_refused_and_changes_nothing(service):
    configure(service)
    worker = worker_for(service)
    with pytest.raises(UnknownObjectError, match="'nope' does not exist"):
        worker.apply_feedback("nope", 0, RIGHT, 1)
    for label in ("1", None, True, float("nan")):
        with pytest.raises(ConfigurationError, match="numeric label"):
            worker.apply_feedback("app", 0, RIGHT, label)
    with pytest.raises(ConfigurationError, match="uid"):
        worker.apply_feedback("app", True, RIGHT, 1)
    assert worker.describe("app", 0)["feedback"] == 0


def test_engine_records_are_applied_in_order_or_answered_with_the_reason(service):
    configure(service)
    worker = worker_for(service)
    record = {"ticket": 1, "app": "app", "uid": 9, "label": 1,
              "outputs": {"right": {"output": "1", "confidence": 0.9}, "wrong": {"output": "0"}}}  # fmt: skip
    assert worker.handle_record(record) == (True, "feedback applied (1 rounds for this user)")
    applied, message = worker.handle_record({**record, "label": "one"})
    assert not applied and "numeric label" in message
    applied, message = worker.handle_record({"ticket": 2, "app": "app"})
    assert not applied and "without 'uid'" in message
    assert worker.describe("app", 9)["feedback"] == 1


def test_the_cache_stays_bounded_and_evicted_users_lose_nothing(service):
    configure(service)
    worker = worker_for(service, capacity_users=10)
    for round_number in range(3):
        for uid in range(50):
            worker.apply_feedback("app", uid, RIGHT, 1)
            assert len(worker.cache) <= 10
    assert all(worker.describe("app", uid)["feedback"] == 3 for uid in range(50))


def test_reset_forgets_and_tells_the_engine(service):
    configure(service)
    binding = PublishedWeights()
    worker = worker_for(service, binding)
    worker.apply_feedback("app", 1, RIGHT, 1)
    worker.reset("app", 1)
    assert binding.cleared == [("app", 1)]
    assert worker.describe("app", 1)["feedback"] == 0


@pytest.mark.parametrize(
    ("policy", "answer_loss"),
    [
        ("exp4", 0.0),  # equal weights, a tie: the first linked model's answer ("1") is served
        ("exp3", 0.5),  # one model drawn per query: the expected loss of the draw
        ("single", 0.0),  # the first linked model answers
    ],
)
def test_each_round_reports_what_the_policy_served_and_each_models_loss(
    service, policy, answer_loss
):
    models = ("right",) if policy == "single" else ("right", "wrong")
    configure(service, policy=policy, models=models)
    binding = PublishedWeights()
    worker = worker_for(service, binding)
    outputs = {name: RIGHT[name] for name in models}
    worker.apply_feedback("app", 3, outputs, 1)
    app, served_loss, model_losses = binding.losses[-1]
    assert app == "app" and served_loss == answer_loss
    assert model_losses == {name: float(name == "wrong") for name in models}
    with pytest.raises(ConfigurationError):
        worker.apply_feedback("app", 3, outputs, "x")
    assert len(binding.losses) == 1  # a refused round reports nothing


def test_an_engine_without_the_binding_is_detected(engine):
    assert selection_binding(engine) is None
    assert selection_binding(PublishedWeights()) is not None


def test_two_frontends_on_one_redis_converge(redis_address, engine):
    """Both apply feedback for the same user; compare-and-swap loses no round, and each follows the
    other's writes to serve the same weights."""
    host, port = parse_redis_address(redis_address)
    stores = [RedisStateStore(host, port, cluster_name="shared") for _ in range(2)]
    services = [ManagementService(store, engine) for store in stores]
    services[0].restore()
    configure(services[0])
    services[1].restore()
    bindings = [PublishedWeights(), PublishedWeights()]
    workers = [
        SelectionFeedbackWorker(service, open_selection_store(store), binding)
        for service, store, binding in zip(services, stores, bindings)
    ]
    stop = threading.Event()
    followers = [threading.Thread(target=w.follow, args=(stop, 0.1), daemon=True) for w in workers]
    for follower in followers:
        follower.start()
    try:

        def teach(worker):
            for _ in range(60):
                worker.apply_feedback("app", 5, RIGHT, 1)

        teachers = [threading.Thread(target=teach, args=(worker,)) for worker in workers]
        for teacher in teachers:
            teacher.start()
        for teacher in teachers:
            teacher.join(timeout=60)
        views = [worker.describe("app", 5) for worker in workers]
        assert views[0] == views[1]
        assert views[0]["feedback"] == 120
        deadline = time.monotonic() + 5
        while bindings[0].weights.get(("app", 5)) != bindings[1].weights.get(("app", 5)):
            assert time.monotonic() < deadline, "the frontends did not converge within 5 s"
            time.sleep(0.02)
        assert bindings[0].weights[("app", 5)] == pytest.approx(
            {name: model["weight"] for name, model in views[0]["models"].items()}
        )
    finally:
        stop.set()
        for follower in followers:
            follower.join(timeout=5)
        for worker in workers:
            worker.store.close()
        for service in services:
            service.selection_worker.store.close()
        for store in stores:
            store.close()


class FeedbackQueue(PublishedWeights):
    """Hands out records as the engine's `next_feedback` does and keeps every answer."""

    def __init__(self, records):
        super().__init__()
        self.records = list(records)
        self.answers = []
        self.drained = threading.Event()

    def next_feedback(self, timeout_ms):
        if not self.records:
            self.drained.set()
            time.sleep(timeout_ms / 1000)
            return []
        batch, self.records = self.records[:2], self.records[2:]
        return batch

    def finish_feedback(self, ticket, applied, message):
        self.answers.append((ticket, applied, message))


def test_the_engine_driven_loop_answers_every_update_in_order(service):
    configure(service)
    outputs = {"right": {"output": "1"}, "wrong": {"output": "0", "confidence": 0.2}}
    good = {"app": "app", "uid": 1, "label": 1, "outputs": outputs}
    records = [
        {**good, "ticket": 1},
        {**good, "ticket": 2, "label": "x"},
        {**good, "ticket": 3, "app": "ghost"},
        {**good, "ticket": 4, "uid": 2},
        {**good, "ticket": 5},
    ]
    queue = FeedbackQueue(records)
    worker = worker_for(service, queue)
    stop = threading.Event()
    loop = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    loop.start()
    try:
        assert queue.drained.wait(10)
    finally:
        stop.set()
        loop.join(timeout=5)
    assert [(ticket, applied) for ticket, applied, _ in queue.answers] == [
        (1, True), (2, False), (3, False), (4, True), (5, True)
    ]  # fmt: skip
    assert "numeric label" in queue.answers[1][2] and "'ghost'" in queue.answers[2][2]
    assert worker.describe("app", 1)["feedback"] == 2
    assert set(queue.weights) == {("app", 1), ("app", 2)}
