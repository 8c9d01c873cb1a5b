"""The per-user selection stores (SQLite and Redis, one conformance suite run against both), the change
notifications that let two frontends on one Redis converge, and the bounded user-state cache."""

import threading
import tracemalloc

import pytest

from clipper.exceptions import StateStoreError
from clipper.state import EmbeddedStateStore, RedisStateStore
from clipper.state.redis_store import parse_redis_address
from clipper.state.selection_state import (
    USERS_PAGE,
    RedisSelectionStore,
    SqliteSelectionStore,
    UserStateCache,
    encode_state,
    open_selection_store,
)


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request, tmp_path):
    opened = []

    def open_one():
        if request.param == "sqlite":
            store = SqliteSelectionStore(tmp_path)
        else:
            host, port = parse_redis_address(request.getfixturevalue("redis_address"))
            store = RedisSelectionStore(host, port, "test-cluster")
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def test_save_is_compare_and_swap_on_the_stored_text(open_store):
    store = open_store()
    assert store.load("app", 7) is None
    assert store.save("app", 7, '{"v":1}', expected=None)
    assert not store.save("app", 7, '{"v":2}', expected=None)
    assert not store.save("app", 7, '{"v":2}', expected='{"v":0}')
    assert store.load("app", 7) == '{"v":1}'
    assert store.save("app", 7, '{"v":2}', expected='{"v":1}')
    assert store.load("app", 7) == '{"v":2}'


def test_states_survive_a_new_store_on_the_same_location(open_store):
    open_store().save("app", 1, "{}", expected=None)
    assert open_store().load("app", 1) == "{}"


def test_delete_one_user_or_every_user_of_an_app(open_store):
    store = open_store()
    for uid in (1, 2, 3):
        store.save("app", uid, f'{{"u":{uid}}}', expected=None)
    store.save("other", 1, "{}", expected=None)
    store.delete("app", 2)
    assert sorted(store.users("app")) == [(1, '{"u":1}'), (3, '{"u":3}')]
    store.delete("app", None)
    assert list(store.users("app")) == []
    assert store.load("other", 1) == "{}"


@pytest.mark.parametrize("count", [USERS_PAGE, 2 * USERS_PAGE + 7])
def test_every_user_is_listed_once_across_pages_while_others_are_written(open_store, count):
    store = open_store()
    uids = [-(2**63), -1, *range(count - 3), 2**63 - 1]
    for uid in uids:
        store.save("app", uid, f'{{"u":{uid}}}', expected=None)
    store.save("other", 5, "{}", expected=None)
    listed = []
    for uid, text in store.users("app"):
        if len(listed) == USERS_PAGE // 2:  # the store stays writable between reads of the list
            assert store.save("other", 6, "{}", expected=None)
        listed.append((uid, text))
    assert sorted(listed) == sorted((uid, f'{{"u":{uid}}}') for uid in uids)
    assert len(listed) == len(uids)


def test_listing_users_holds_a_page_at_a_time(tmp_path):
    """A million users listed at once held 430 MB in the frontend at its start: the SQLite store
    reads them a page at a time, so listing 8 pages holds at most about 2 (the next one is read
    while the last is still referenced)."""
    store = SqliteSelectionStore(tmp_path)
    text = encode_state({"pad": "x" * 4000})
    for uid in range(8 * USERS_PAGE):
        store.save("app", uid, text, expected=None)
    tracemalloc.start()
    try:
        listed = sum(1 for _ in store.users("app"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()
    assert listed == 8 * USERS_PAGE
    assert peak < 3 * USERS_PAGE * len(text), peak


def test_concurrent_writers_never_lose_an_update(open_store):
    """Each writer increments a counter by read -> compare-and-swap -> retry; no increment is lost."""
    stores = [open_store(), open_store()]

    def increment(store, times):
        for _ in range(times):
            while True:
                stored = store.load("app", 0)
                count = 0 if stored is None else int(stored)
                if store.save("app", 0, str(count + 1), expected=stored):
                    break

    threads = [threading.Thread(target=increment, args=(store, 100)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert stores[0].load("app", 0) == "200"


def test_a_closed_store_says_so(tmp_path):
    store = SqliteSelectionStore(tmp_path)
    store.close()
    with pytest.raises(StateStoreError, match="closed"):
        store.load("app", 0)


def test_redis_writes_notify_every_follower(redis_address):
    host, port = parse_redis_address(redis_address)
    writer = RedisSelectionStore(host, port, "c")
    follower = RedisSelectionStore(host, port, "c")
    try:
        assert follower.wait_for_changes(0.05) == []  # subscribes
        writer.save("app", 5, "{}", expected=None)
        writer.delete("app", None)
        changes = follower.wait_for_changes(2.0)
        while len(changes) < 2:
            more = follower.wait_for_changes(2.0)
            assert more, changes
            changes += more
        assert changes == [("app", 5), ("app", None)]
    finally:
        writer.close()
        follower.close()


def test_the_selection_store_follows_the_cluster_store(tmp_path, redis_address):
    with EmbeddedStateStore(tmp_path / "embedded") as embedded:
        store = open_selection_store(embedded)
        assert isinstance(store, SqliteSelectionStore)
        assert str(tmp_path / "embedded") in store.description
        store.close()
    host, port = parse_redis_address(redis_address)
    with RedisStateStore(host, port, cluster_name="shared") as redis_store:
        store = open_selection_store(redis_store)
        assert isinstance(store, RedisSelectionStore) and store.shared
        store.close()


def test_the_cache_is_bounded_and_evicts_the_least_recently_used():
    cache = UserStateCache(capacity_users=3)
    for uid in range(3):
        cache.put("app", uid, str(uid))
    assert cache.get("app", 0) == "0"  # now the most recently used
    cache.put("app", 3, "3")
    assert len(cache) == 3
    assert cache.get("app", 1) is None
    assert [cache.get("app", uid) for uid in (0, 2, 3)] == ["0", "2", "3"]
    cache.drop("app", None)
    assert len(cache) == 0


def test_encoded_states_are_canonical():
    assert (
        encode_state({"b": [1.0], "a": 1})
        == encode_state({"a": 1, "b": [1.0]})
        == ('{"a":1,"b":[1.0]}')
    )
