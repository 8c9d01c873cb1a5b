"""Model functions the end-to-end tests deploy. conftest.py registers this module with cloudpickle
by value, so replicas need no copy of the tests to load them."""

import time

import numpy as np


def sum_of_each(inputs):
    """One output per input: the sum of its elements (a JSON number)."""
    return [repr(float(np.sum(row))) for row in inputs]


def shout(inputs):
    """Strings in, strings out (outputs that are not JSON are answered as JSON strings)."""
    return [
        text.upper() if isinstance(text, str) else bytes(text).decode().upper() for text in inputs
    ]


def fail_on_negative(inputs):
    if any(float(row[0]) < 0 for row in inputs):
        raise ValueError("negative input refused")
    return [repr(float(np.sum(row))) for row in inputs]


def sleep_one_second(inputs):
    time.sleep(1.0)
    return ["1.0" for _ in inputs]


def cluster_b(inputs):
    return ['"cluster-b"' for _ in inputs]


def size_of_its_batch(inputs):
    """Each output is the size of the batch its input arrived in."""
    return [str(len(inputs))] * len(inputs)


def count_evaluations(inputs):
    """Each output is how many inputs this replica has evaluated so far (so a cached answer repeats)."""
    state = count_evaluations.__dict__.setdefault("state", {"evaluated": 0})
    outputs = []
    for _ in inputs:
        state["evaluated"] += 1
        outputs.append(str(state["evaluated"]))
    return outputs


def make_straggler(flag_path, delay_s):
    """The first replica to start claims `flag_path` and sleeps `delay_s` in every batch; the others
    answer at once with the sum of each input."""

    def predict(inputs):
        import os

        state = predict.__dict__.setdefault("state", {})
        if "slow" not in state:
            try:
                os.close(os.open(flag_path, os.O_CREAT | os.O_EXCL))
                state["slow"] = True
            except FileExistsError:
                state["slow"] = False
        if state["slow"]:
            time.sleep(delay_s)
        return [repr(float(np.sum(row))) for row in inputs]

    return predict


def tagged_sum(tag):
    """Answers {"version": tag, "sum": sum of the input} (JSON), to tell versions apart."""
    import json

    def predict(inputs):
        return [json.dumps({"version": tag, "sum": float(np.sum(row))}) for row in inputs]

    return predict


def sleep_300_ms(inputs):
    time.sleep(0.3)
    return ["1.0" for _ in inputs]


def label_of_first(inputs):
    """The label of an input is the whole part of its first element: this model always knows it."""
    return [str(int(row[0])) for row in inputs]


def label_plus_one(inputs):
    """Always wrong by one (for the selection tests)."""
    return [str(int(row[0]) + 1) for row in inputs]


def unsure_when_told(inputs):
    """A fast model that reports how sure it is: input [x, c] answers the label int(x) with confidence c
    (so a test decides which inputs it is unsure of)."""
    from clipper.container import Prediction

    return [Prediction(str(int(row[0])), float(row[1])) for row in inputs]


def make_slow_and_sure(delay_s):
    """A slow model that reports no confidence (it counts as sure): sleeps `delay_s` per batch and
    answers int(x) + 100 for input [x, ...], so its answers are told apart from the fast model's."""

    def predict(inputs):
        time.sleep(delay_s)
        return [str(int(row[0]) + 100) for row in inputs]

    return predict


def sleep_20_ms_per_batch(inputs):
    """A fixed service time per batch (sleeping, so it costs the shared machine no CPU)."""
    time.sleep(0.02)
    return ["1.0" for _ in inputs]


def sum_of_each_after_20_ms(inputs):
    """sum_of_each, after a fixed 20 ms per batch (sleeping: no CPU of the shared machine)."""
    time.sleep(0.02)
    return [repr(float(np.sum(row))) for row in inputs]


def sum_of_each_after_100_ms(inputs):
    """sum_of_each, after a fixed 100 ms per batch."""
    time.sleep(0.1)
    return [repr(float(np.sum(row))) for row in inputs]
