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
