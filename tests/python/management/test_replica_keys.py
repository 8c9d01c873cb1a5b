"""The cluster's CURVE keys: generated once per state directory in owner-only files, kept across
calls (replicas reconnect with the keys they have), and refused once others may read them."""

import stat

import pytest

from clipper.exceptions import ClipperException
from clipper.management.replica_keys import (
    check_unauthenticated_replicas,
    ensure_cluster_keys,
    read_replica_credentials,
    replica_credentials_path,
    server_keys_path,
)


def test_keys_are_generated_once_owner_only_and_kept(tmp_path):
    first = ensure_cluster_keys(tmp_path)
    for path in (server_keys_path(tmp_path), replica_credentials_path(tmp_path)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ensure_cluster_keys(tmp_path)
    assert again.server_secret_key == first.server_secret_key
    assert again.replica == first.replica
    assert first.replica.client_public_key in first.client_public_keys
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(
        [server_keys_path(tmp_path).name, replica_credentials_path(tmp_path).name]
    )  # no temporary left


def test_credentials_others_can_read_are_refused(tmp_path):
    ensure_cluster_keys(tmp_path)
    replica_credentials_path(tmp_path).chmod(0o644)
    with pytest.raises(ClipperException, match="readable or writable by other users"):
        read_replica_credentials(tmp_path)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost"])
def test_unauthenticated_replicas_are_allowed_on_loopback_with_a_warning(address, caplog):
    check_unauthenticated_replicas(address)
    assert "event=replica_auth_disabled" in caplog.text
    assert caplog.records[-1].name == "clipper.management.replica_keys"


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3", ""])
def test_unauthenticated_replicas_elsewhere_are_refused(address, caplog):
    with pytest.raises(ClipperException, match=f"unauthenticated replicas on {address}:"):
        check_unauthenticated_replicas(address)
    assert "replica_auth_disabled" not in caplog.text
