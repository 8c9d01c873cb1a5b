"""bench/overload.py's accounting of the model's time: the three factors (busy, inputs per busy
second, useful share) from the engine's counters, that they multiply to the goodput ratio, and the
scheduler times of a process over a window (real /proc of this process)."""

import threading
import time

import pytest

pytest.importorskip("clipper_native", reason="overload.py reads the native engine's defaults")


def sampler_with(overload, start: dict[str, float], end: dict[str, float]):
    """A MetricsSampler holding two scrapes, 10 s apart (never started: no server needed)."""
    sampler = overload.cluster_lib.MetricsSampler("http://127.0.0.1:9/metrics")
    sampler.times = [100.0, 110.0]
    sampler.samples = [start, end]
    return sampler


def counters(overload, inputs: float, busy_seconds: float, good: float) -> dict[str, float]:
    model = overload.cluster_lib.model_labels(overload.MODEL, "1")
    app = overload.cluster_lib.app_labels(overload.APP)
    return {
        f"clipper_model_predictions_total{{{model}}}": inputs,
        f"clipper_model_batch_latency_seconds_sum{{{model}}}": busy_seconds,
        f"clipper_app_slo_attained_total{{{app}}}": good,
    }


def test_accounting_splits_goodput_into_busy_efficiency_and_useful_share(overload):
    processes = {"replica": {"cpu_cores": 0.95, "runqueue_wait_per_s": 0.01}}
    # 10 s: 40,000 inputs evaluated in 9.5 busy seconds, 38,000 of them within the SLO.
    sampler = sampler_with(overload, counters(overload, 0, 0, 0), counters(overload, 40_000, 9.5, 38_000))
    run = overload.model_time_accounting(sampler, overload.APP, (100.0, 110.0), processes)
    assert run["model_inputs_rps"] == 4000.0
    assert run["busy"] == 0.95
    assert run["inputs_per_busy_second"] == pytest.approx(4000 / 0.95, abs=0.1)
    assert run["useful_share"] == 0.95
    assert run["late_inputs_rps"] == 200.0
    assert run["replica_cpu_us_per_input"] == pytest.approx(0.95 / 4000 * 1e6, abs=0.1)
    # The replica ran for all of its busy time here: inputs per busy second is its CPU efficiency.
    assert run["on_cpu_share"] == 1.0
    assert run["inputs_per_cpu_second"] == pytest.approx(4000 / 0.95, abs=0.1)
    assert run["frontend_cpu_cores"] is None  # not measured: reported as missing, not as 0
    assert run["replica_waiting_for_frontend"] == 0.0  # ran or waited for a CPU all its busy time
    # Busy 0.95 s/s, on a CPU 0.8 and runnable 0.05: it slept 0.1 s/s holding a batch.
    waiting = {"replica": {"cpu_cores": 0.8, "runqueue_wait_per_s": 0.05}}
    slept = overload.model_time_accounting(sampler, overload.APP, (100.0, 110.0), waiting)
    assert slept["replica_waiting_for_frontend"] == pytest.approx(0.1, abs=1e-3)

    capacity_sampler = sampler_with(
        overload, counters(overload, 0, 0, 0), counters(overload, 42_000, 10.0, 41_800)
    )
    # The capacity run's replica ran 0.9 of its busy time (it waited for a CPU the rest).
    capacity = overload.model_time_accounting(
        capacity_sampler, overload.APP, (100.0, 110.0), {"replica": {"cpu_cores": 0.9}}
    )
    ratios = overload.accounting_ratios({"accounting": run}, {"accounting": capacity})
    assert ratios["slo_attained_rps"] == pytest.approx(38_000 / 41_800, abs=1e-3)
    product = ratios["busy"] * ratios["inputs_per_busy_second"] * ratios["useful_share"]
    assert product == pytest.approx(ratios["slo_attained_rps"], abs=3e-3)
    split = ratios["on_cpu_share"] * ratios["inputs_per_cpu_second"]
    assert split == pytest.approx(ratios["inputs_per_busy_second"], abs=3e-3)
    assert ratios["on_cpu_share"] == pytest.approx(1.0 / 0.9, abs=1e-3)


def test_accounting_of_an_idle_model_has_no_ratios(overload):
    sampler = sampler_with(overload, counters(overload, 0, 0, 0), counters(overload, 0, 0, 0))
    run = overload.model_time_accounting(sampler, overload.APP, (100.0, 110.0), {})
    assert run["busy"] == 0 and run["inputs_per_busy_second"] is None
    assert run["useful_share"] is None and run["late_inputs_rps"] == 0


def test_window_schedstat_measures_a_busy_thread_only_inside_its_window(overload):
    import os

    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(1000))

    window = overload.WindowSchedstat({"us": [os.getpid()], "nobody": []}, 0.05, 0.4)
    worker = threading.Thread(target=burn)
    worker.start()
    try:
        time.sleep(0.6)
        # Finished while the thread still burns: a thread that has exited takes its schedstat times
        # with it, so an end snapshot delayed past its exit (a loaded CI machine) read 0 CPU.
        window.finish()
    finally:
        stop.set()
        worker.join()
    summary = window.summary()
    assert summary["nobody"] == {"cpu_cores": 0.0, "runqueue_wait_per_s": 0.0}
    # The burning thread ran (or waited for a CPU) for the whole window: time on a CPU and in the
    # run queue together cover most of it however loaded the machine is.
    ours = summary["us"]
    assert 0.0 < ours["cpu_cores"] <= os.cpu_count() + 0.1
    assert ours["cpu_cores"] + ours["runqueue_wait_per_s"] > 0.5


def test_window_schedstat_ends_at_the_finish_when_its_timer_was_late(overload):
    import os

    window = overload.WindowSchedstat({"us": [os.getpid()]}, 0.0, 0.05)
    window._timers[1].cancel()  # as if the end timer had not got a CPU before the run ended
    time.sleep(0.1)
    window.finish()
    assert len(window.snapshots) == 2 and window.summary()["us"]["cpu_cores"] >= 0.0


def test_window_schedstat_of_a_run_that_ended_early_is_empty(overload):
    window = overload.WindowSchedstat({"us": [1]}, 5.0, 5.0)
    window.finish()
    assert window.summary() == {}
