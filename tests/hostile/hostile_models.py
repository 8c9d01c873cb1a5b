"""Models the hostile cases deploy (pickled by value: replicas load them from their pickles alone)."""

import time


def twelve_megabytes(inputs):
    return ["x" * 12_000_000 for _ in inputs]


def sleep_ten_seconds(inputs):
    time.sleep(10.0)
    return ["1.0" for _ in inputs]


def leak_a_secret(inputs):
    raise PermissionError("cannot read /srv/secrets/api-key.pem: token=hunter2")
