"""What is specific to the embedded store: the file on disk, atomic replacement, the directory lock."""

import json
import os

import pytest

from clipper.exceptions import StateStoreError
from clipper.state import ClusterState, EmbeddedStateStore, open_state_store
from clipper.state.cluster_state import Application


def test_the_state_is_one_json_file_in_the_state_directory(tmp_path):
    with EmbeddedStateStore(tmp_path) as store:
        state = ClusterState(applications={"a": Application("a", "ints", "0", 1000)})
        store.save(state, expected_revision=0)
        data = json.loads((tmp_path / "state.json").read_text())
    assert data["revision"] == 1
    assert data["format_version"] == 1
    assert data["applications"][0]["name"] == "a"


def test_saves_leave_no_temporary_files(tmp_path):
    with EmbeddedStateStore(tmp_path) as store:
        for revision in range(5):
            store.save(ClusterState(), expected_revision=revision)
    assert sorted(os.listdir(tmp_path)) == ["state.json", "state.lock"]


def test_a_second_store_on_the_same_directory_is_refused_while_the_first_is_open(tmp_path):
    first = EmbeddedStateStore(tmp_path)
    try:
        with pytest.raises(
            StateStoreError, match=f"in use by another frontend \\(pid {os.getpid()}\\)"
        ):
            EmbeddedStateStore(tmp_path)
    finally:
        first.close()
    EmbeddedStateStore(tmp_path).close()  # free again once closed


def test_a_corrupt_file_is_reported_not_silently_replaced(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with (
        EmbeddedStateStore(tmp_path) as store,
        pytest.raises(StateStoreError, match="move it aside"),
    ):
        store.load()
    assert (tmp_path / "state.json").read_text() == "{not json"


VALID_APP = {
    "name": "a",
    "input_type": "ints",
    "default_output": "0",
    "slo_micros": 1000,
    "linked_models": [],
}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"format_version": 1, "revision": 3, "applications": [{"name": "a", "input_ty',
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"applications": 5}',
        b'{"applications": [7]}',
        b'{"applications": [{"name": "a"}]}',
        b'{"format_version": "one"}',
        b'{"revision": "x"}',
        b'{"models": [{"name": "m", "current_version": "1", "versions": {"1": 2}}]}',
        b"[" * 50_000 + b"]" * 50_000,
        json.dumps({"applications": [VALID_APP, VALID_APP]}).encode(),
        json.dumps(
            {
                "models": [
                    {"name": "m", "current_version": "1", "versions": []},
                    {"name": "m", "current_version": "2", "versions": []},
                ]
            }
        ).encode(),
    ],
    ids=[
        "empty",
        "truncated",
        "not-utf8",
        "a-list",
        "a-string",
        "apps-not-a-list",
        "app-not-an-object",
        "app-missing-fields",
        "bad-format-version",
        "bad-revision",
        "versions-not-a-list",
        "nested-50k",
        "duplicate-app",
        "duplicate-model",
    ],
)
def test_a_corrupt_file_is_a_clear_error_naming_it_and_a_copy_is_kept(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with EmbeddedStateStore(tmp_path) as store:
        for _ in range(2):  # refused every time, never replaced; one copy per distinct content
            with pytest.raises(StateStoreError) as error:
                store.load()
            with pytest.raises(StateStoreError):
                store.save(ClusterState(), expected_revision=0)
    message = str(error.value)
    assert f"{path} is not a valid clipper state file" in message
    backups = sorted(tmp_path.glob("state.json.corrupt-*"))
    assert len(backups) == 1 and str(backups[0]) in message
    assert backups[0].read_bytes() == content and path.read_bytes() == content
    assert oct(backups[0].stat().st_mode & 0o777) == oct(0o600)


def test_duplicate_entries_name_the_duplicate(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"applications": [VALID_APP, VALID_APP]}))
    with EmbeddedStateStore(tmp_path) as store, pytest.raises(StateStoreError) as error:
        store.load()
    assert "application 'a' appears more than once" in str(error.value)


def test_a_new_state_directory_is_owner_only(tmp_path):
    with EmbeddedStateStore(tmp_path / "fresh"):
        pass
    assert oct((tmp_path / "fresh").stat().st_mode & 0o777) == oct(0o700)


def test_a_newer_format_is_refused(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"format_version": 99, "revision": 1}))
    with EmbeddedStateStore(tmp_path) as store, pytest.raises(StateStoreError, match="upgrade"):
        store.load()


def test_the_state_directory_is_created(tmp_path):
    with EmbeddedStateStore(tmp_path / "a" / "b") as store:
        store.save(ClusterState(), expected_revision=0)
    assert (tmp_path / "a" / "b" / "state.json").is_file()


def test_a_closed_store_refuses_calls(tmp_path):
    store = EmbeddedStateStore(tmp_path)
    store.close()
    with pytest.raises(StateStoreError, match="closed"):
        store.load()


def test_open_state_store_defaults_to_embedded(tmp_path):
    with open_state_store(tmp_path) as store:
        assert store.description == f"embedded:{tmp_path / 'state.json'}"
        assert not store.shared
