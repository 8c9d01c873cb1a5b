"""The models the batching and cache studies deploy: W3's calibrated CPU burner, W4's digits classifier.

Owns what a replica runs for each workload; no cluster code. Deployed with the closure deployer,
which pickles with cloudpickle: `register_by_value()` makes this module travel by value, so a
replica does not need bench/ on its path. Model code runs on the replica's serving thread.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def register_by_value() -> None:
    """Pickle this module's functions and classes by value (a replica cannot import bench/)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def noop(inputs: Sequence[Any]) -> list[str]:
    """W1's model: answers "0" to every input at no cost."""
    return ["0"] * len(inputs)


# --------------------------------------------------------------------------------------------------
# W3: a fixed cost per call plus a cost per input, in real CPU work
# --------------------------------------------------------------------------------------------------


def burn(units: int) -> int:
    """`units` steps of real CPU work in the interpreter (holds the GIL, one core, no sleeping).

    `sum(range(n))` is a tight C loop over Python ints: linear in n, no allocation per step, and
    no threads (unlike a BLAS call, which could spread over both cores of this machine).
    """
    return sum(range(units))


class CalibratedBurner:
    """A model costing `fixed_micros` per call plus `per_input_micros` per input of CPU work.

    The cost is calibrated where the model runs, when the replica loads it (unpickling calls
    `__setstate__`): the speed of `burn` is measured in the thread's CPU time (the fastest of several
    trials, so time spent waiting for a CPU does not count) and turned into step counts. Under load the work takes longer, as real model code would, since
    the replica shares the machine's cores with the frontend and the load generator. When
    `report_path` is set, each replica appends its calibration there as one JSON line.
    """

    def __init__(
        self, fixed_micros: float = 1000.0, per_input_micros: float = 20.0, report_path: str = ""
    ) -> None:
        self.fixed_micros = fixed_micros
        self.per_input_micros = per_input_micros
        self.report_path = report_path
        self.nanos_per_unit = 0.0
        self.fixed_units = 0
        self.per_input_units = 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            "fixed_micros": self.fixed_micros,
            "per_input_micros": self.per_input_micros,
            "report_path": self.report_path,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.calibrate()

    def calibrate(self, trials: int = 30, units_per_trial: int = 40_000) -> dict[str, Any]:
        burn(units_per_trial)  # warm the interpreter's caches
        best = min(_time_burn(units_per_trial) for _ in range(trials))
        self.nanos_per_unit = best * 1e9 / units_per_trial
        self.fixed_units = max(1, round(self.fixed_micros * 1000 / self.nanos_per_unit))
        self.per_input_units = max(1, round(self.per_input_micros * 1000 / self.nanos_per_unit))
        # Check the calibration on the shapes that will be served (best of 5, idle core).
        check = {
            str(size): round(min(_time_burn(self.units_for(size)) for _ in range(5)) * 1e6, 1)
            for size in (1, 16, 128)
        }
        report = {
            "pid": os.getpid(),
            "nanos_per_unit": round(self.nanos_per_unit, 3),
            "fixed_units": self.fixed_units,
            "per_input_units": self.per_input_units,
            "measured_micros_by_batch_size": check,
            "nominal_micros_by_batch_size": {
                str(size): self.fixed_micros + self.per_input_micros * size for size in (1, 16, 128)
            },
        }
        if self.report_path:
            with open(self.report_path, "a", encoding="ascii") as file:
                file.write(json.dumps(report) + "\n")
        return report

    def units_for(self, batch_size: int) -> int:
        return self.fixed_units + self.per_input_units * batch_size

    def __call__(self, inputs: Sequence[Any]) -> list[str]:
        count = len(inputs)
        checksum = burn(self.units_for(count)) % 10
        return [str(checksum)] * count


class FixedBatchTime:
    """An accelerator-like model: each call (a batch of any size up to the deployment's batch size)
    takes `micros_per_batch`, sleeping, so it costs the machine no CPU and its capacity is set by the
    model (batch size / batch time per replica), not by the cores the frontend and the load generator
    share with it."""

    def __init__(self, micros_per_batch: float = 20_000.0) -> None:
        self.micros_per_batch = micros_per_batch

    def __call__(self, inputs: Sequence[Any]) -> list[str]:
        time.sleep(self.micros_per_batch / 1e6)
        return ["1"] * len(inputs)


def _time_burn(units: int) -> float:
    # The thread's CPU time, not the wall clock: a replica calibrates as it starts, often while the
    # frontend and other replicas start beside it, and a trial it spent waiting for a CPU made the
    # step look slow, the model lighter than asked (a light burner's capacity then ranged 27-53k/s
    # from one study to the next on the same machine).
    start = time.thread_time()
    burn(units)
    return time.thread_time() - start


def read_calibration_reports(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="ascii") as file:
            return [json.loads(line) for line in file if line.strip()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------------------------------
# W4: scikit-learn's digits dataset and a fitted classifier
# --------------------------------------------------------------------------------------------------


def digits_classifier(kind: str = "svc", seed: int = 0) -> tuple[Any, dict[str, Any], np.ndarray]:
    """A classifier fitted on half of the digits (8x8 images, 64 features), its description, and
    the held-out images (float64, one per row)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    images, labels = load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.5, random_state=seed, stratify=labels
    )
    if kind == "svc":
        # The scikit-learn digits example's classifier: RBF kernel, cost grows with support vectors.
        classifier: Any = SVC(gamma=0.001)
    elif kind == "logreg":
        classifier = LogisticRegression(max_iter=5000)
    else:
        raise ValueError(f"classifier kind must be 'svc' or 'logreg', got {kind!r}")
    classifier.fit(train_x, train_y)
    info = {
        "dataset": "sklearn.datasets.load_digits (1797 8x8 images, 10 classes)",
        "classifier": repr(classifier),
        "train_size": len(train_x),
        "test_size": len(test_x),
        "test_accuracy": round(float(classifier.score(test_x, test_y)), 4),
        "support_vectors": int(np.sum(getattr(classifier, "n_support_", [0]))),
    }
    return classifier, info, np.asarray(test_x, dtype=np.float64)


def predict_function(classifier: Any) -> Callable[[Any], list[str]]:
    """The function to deploy: a batch of 64-double rows in, one class label (a string) per row."""

    def predict(inputs: Any) -> list[str]:
        return [str(int(label)) for label in classifier.predict(np.asarray(inputs))]

    return predict
