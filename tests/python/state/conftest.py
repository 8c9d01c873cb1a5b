"""Every StateStore implementation, so the conformance suite runs against each (the Redis store joins
the list when it exists)."""

import pytest
from clipper.state import EmbeddedStateStore


def _embedded(tmp_path):
    return lambda: EmbeddedStateStore(tmp_path / "cluster")


STORE_FACTORIES = {"embedded": _embedded}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def open_store(request, tmp_path):
    """A function opening the store under test at one fixed location; every opened store is closed."""
    factory = STORE_FACTORIES[request.param](tmp_path)
    opened = []

    def open_one():
        store = factory()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
