"""bench/models.py's calibrated CPU burner: its calibration counts the CPU time its trials ran, not time
spent waiting for a CPU (a replica calibrates while the cluster starts beside it)."""

import importlib.util
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_models():
    spec = importlib.util.spec_from_file_location("models_under_test", BENCH / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_trial_that_waits_is_not_timed_as_work(monkeypatch):
    models = load_models()
    # A "burn" that only waits: with the wall clock it would time as 50 ms of work.
    monkeypatch.setattr(models, "burn", lambda units: time.sleep(0.05))
    assert models._time_burn(1000) < 0.01


def test_calibration_turns_the_measured_speed_into_steps():
    models = load_models()
    burner = models.CalibratedBurner(fixed_micros=1000.0, per_input_micros=20.0)
    report = burner.calibrate(trials=5, units_per_trial=20_000)
    assert report["nanos_per_unit"] > 0
    # 1 ms and 20 us of steps at the measured speed (rounded to whole steps).
    assert abs(burner.fixed_units * burner.nanos_per_unit - 1_000_000) <= burner.nanos_per_unit
    assert abs(burner.per_input_units * burner.nanos_per_unit - 20_000) <= burner.nanos_per_unit
    assert burner.units_for(128) == burner.fixed_units + 128 * burner.per_input_units
    assert burner([0.0] * 3) == [burner([0.0] * 3)[0]] * 3
