"""Batching settings end to end: set at deployment, changed on a running model, and seen by the model
itself (it answers the size of the batch each input came in)."""

import itertools

import e2e_models
import pytest
from e2e_support import predict, wait_for

from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import ConfigurationError, UnknownObjectError

SLO_MICROS = 20_000_000
_fresh_inputs = itertools.count()  # never the same input twice: the cache would answer it


def batch_sizes(conn, count=24):
    inputs = [[float(next(_fresh_inputs))] for _ in range(count)]
    status, answer, _ = predict(conn, "sizes", {"input_batch": inputs})
    assert status == 200
    assert not any(p["default"] for p in answer["batch_predictions"]), answer
    return [p["output"] for p in answer["batch_predictions"]]


def test_batching_settings_are_applied_and_changed_live(clusters):
    conn = clusters.start("batching")
    conn.register_application("sizes", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(
        conn, "sizes", "1", "doubles", e2e_models.size_of_its_batch,
        batch_size=2, batch_wait_timeout_micros=0,
    )  # fmt: skip
    conn.link_model_to_app("sizes", "sizes")
    assert max(batch_sizes(conn)) <= 2
    assert conn.get_model_batching("sizes")["configured"] == {
        "batch_size": 2,
        "max_batch_size": None,
        "batch_wait_timeout_micros": 0,
    }
    info = conn.get_model_info("sizes", "1")
    assert (info["batch_size"], info["max_batch_size"]) == (2, None)

    conn.set_model_batching("sizes", batch_size=1)  # no restart, no redeploy
    assert set(batch_sizes(conn)) == {1}
    conn.set_model_batching("sizes", "1", batch_size=-1, max_batch_size=4)
    assert conn.get_model_batching("sizes", "1")["configured"]["max_batch_size"] == 4
    conn.set_model_batching("sizes", max_batch_size=None)
    assert conn.get_model_batching("sizes")["configured"] == {
        "batch_size": -1,
        "max_batch_size": None,
        "batch_wait_timeout_micros": 0,
    }

    with pytest.raises(ConfigurationError, match="larger than max_batch_size 2"):
        conn.set_model_batching("sizes", batch_size=8, max_batch_size=2)
    with pytest.raises(UnknownObjectError, match="model 'nope' does not exist"):
        conn.get_model_batching("nope")
    with pytest.raises(ConfigurationError, match="batch_wait_timeout_micros -5"):
        deploy_python_closure(
            conn,
            "sizes",
            "2",
            "doubles",
            e2e_models.size_of_its_batch,
            batch_wait_timeout_micros=-5,
        )


def test_the_engine_caps_batches_and_reports_its_batching_state(clusters):
    conn = clusters.start("batching-engine")
    conn.register_application("sizes", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(
        conn, "sizes", "1", "doubles", e2e_models.size_of_its_batch, max_batch_size=3
    )
    conn.link_model_to_app("sizes", "sizes")
    assert max(batch_sizes(conn, 60)) <= 3
    report = conn.get_model_batching("sizes")
    assert (report["engine"]["model_name"], report["engine"]["max_batch_size"]) == ("sizes", 3)

    conn.set_model_batching("sizes", batch_size=2, batch_wait_timeout_micros=50)

    def engine_view_after_the_change():
        view = conn.get_model_batching("sizes")["engine"]
        return view if view["batch_size"] == 2 else None

    engine_view = wait_for(
        engine_view_after_the_change, what="the engine to report the new batch size"
    )
    assert engine_view["batch_wait_timeout_micros"] == 50
    assert max(batch_sizes(conn, 30)) <= 2
