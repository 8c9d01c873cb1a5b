"""Every StateStore implementation, so the conformance suite runs against each of them: the embedded
store in a temporary directory and the Redis store on the session's real redis-server."""

import pytest

from clipper.state import EmbeddedStateStore


def _embedded(request, tmp_path):
    return lambda: EmbeddedStateStore(tmp_path / "cluster")


def _redis(request, tmp_path):
    from clipper.state import RedisStateStore

    host, port = request.getfixturevalue("redis_address").split(":")
    return lambda: RedisStateStore(host, int(port), cluster_name="conformance")


STORE_FACTORIES = {"embedded": _embedded, "redis": _redis}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def open_store(request, tmp_path):
    """A function opening the store under test at one fixed location; every opened store is closed."""
    factory = STORE_FACTORIES[request.param](request, tmp_path)
    opened = []

    def open_one():
        store = factory()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
