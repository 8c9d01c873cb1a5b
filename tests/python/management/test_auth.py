"""The management token: generated owner-only, read back only while it is still a secret, compared in
constant time, and required wherever the management port is reachable from other machines."""

import stat

import pytest

from clipper.exceptions import ClipperException
from clipper.management.auth import (
    TOKEN_FILE_NAME,
    check_unauthenticated_bind,
    is_authorized,
    read_token,
    remove_token,
    write_new_token,
    write_owner_only,
)


def test_a_new_token_per_call_written_owner_only_in_an_owner_only_directory(tmp_path):
    state_dir = tmp_path / "cluster"
    first = write_new_token(state_dir)
    second = write_new_token(state_dir)
    assert first != second and len(second) >= 40
    assert read_token(state_dir) == second
    assert stat.S_IMODE((state_dir / TOKEN_FILE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert [path.name for path in state_dir.iterdir()] == [TOKEN_FILE_NAME]  # no temporary left
    remove_token(state_dir)
    assert read_token(state_dir) is None


def test_owner_only_files_replace_or_keep_what_is_there(tmp_path):
    path = tmp_path / "secret"
    write_owner_only(path, "first", replace=False)
    write_owner_only(path, "second", replace=False)  # a concurrent writer came first: kept
    assert path.read_text() == "first"
    write_owner_only(path, "third", replace=True)
    assert path.read_text() == "third"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["secret"]  # no temporary left


def test_no_state_directory_or_no_file_means_no_token(tmp_path):
    assert read_token(None) is None
    assert read_token(tmp_path / "absent") is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_others_can_read_or_write_is_refused(tmp_path, mode):
    write_new_token(tmp_path)
    (tmp_path / TOKEN_FILE_NAME).chmod(mode)
    with pytest.raises(ClipperException, match=f"mode {mode:o}.*restart the cluster"):
        read_token(tmp_path)


@pytest.mark.parametrize(
    "header, accepted",
    [
        ("Bearer secret-token", True),
        ("bearer secret-token", True),
        ("BEARER  secret-token ", True),
        (b"Bearer secret-token", True),
        ("Bearer secret-tokeN", False),
        ("Bearer secret-token-and-more", False),
        ("Bearer ", False),
        ("Basic secret-token", False),
        ("secret-token", False),
        ("", False),
        (None, False),
        ("Bearer s\u00e9cret", False),
    ],
)
def test_the_header_must_carry_exactly_the_token(header, accepted):
    assert is_authorized(header, "secret-token") is accepted


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_unauthenticated_management_is_allowed_on_loopback_with_a_warning(address, caplog):
    check_unauthenticated_bind(address)
    assert "event=management_auth_disabled" in caplog.text


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3", "example.org", ""])
def test_unauthenticated_management_elsewhere_is_refused(address):
    with pytest.raises(ClipperException, match="refusing to serve the management API"):
        check_unauthenticated_bind(address)


def test_a_shared_directory_is_refused_as_the_state_directory_and_left_as_it_is(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with pytest.raises(ClipperException, match="shared directory"):
        write_new_token(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert not (shared / TOKEN_FILE_NAME).exists()
