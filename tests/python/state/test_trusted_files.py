"""Which closures may be unpickled: only files the operator alone controls, inside the state directory."""

import os

import pytest

from clipper.exceptions import DeploymentError
from clipper.state.trusted_files import check_trusted_file, make_owner_only


@pytest.fixture
def state_dir(tmp_path):
    root = tmp_path / "cluster"
    (root / "models" / "m" / "1").mkdir(parents=True)
    for directory in (root, root / "models", root / "models" / "m", root / "models" / "m" / "1"):
        directory.chmod(0o700)
    closure = root / "models" / "m" / "1" / "func.pkl"
    closure.write_bytes(b"pickle")
    closure.chmod(0o600)
    return root


def test_a_closure_built_into_the_state_directory_is_trusted(state_dir):
    closure = state_dir / "models" / "m" / "1" / "func.pkl"
    assert check_trusted_file(closure, state_dir) == closure.resolve()


def test_a_closure_outside_the_state_directory_is_refused_and_logged(state_dir, tmp_path, caplog):
    elsewhere = tmp_path / "attacker" / "func.pkl"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"pickle")
    with pytest.raises(DeploymentError, match="outside the state directory") as error:
        check_trusted_file(elsewhere, state_dir)
    assert str(elsewhere) in str(error.value)
    assert f"event=closure_refused path={elsewhere}" in caplog.text


def test_a_symbolic_link_out_of_the_state_directory_is_refused(state_dir, tmp_path):
    target = tmp_path / "attacker"
    target.mkdir()
    (target / "func.pkl").write_bytes(b"pickle")
    link = state_dir / "models" / "m" / "2"
    link.symlink_to(target)
    with pytest.raises(DeploymentError, match="outside the state directory"):
        check_trusted_file(link / "func.pkl", state_dir)


@pytest.mark.parametrize("writable", ["file", "directory", "state_dir"])
def test_anything_on_the_way_writable_by_others_is_refused(state_dir, writable):
    closure = state_dir / "models" / "m" / "1" / "func.pkl"
    target = {"file": closure, "directory": closure.parent, "state_dir": state_dir}[writable]
    target.chmod(0o777 if target.is_dir() else 0o666)
    with pytest.raises(DeploymentError, match="writable by other users") as error:
        check_trusted_file(closure, state_dir)
    assert str(target) in str(error.value)


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root (CI runs as root)")
def test_a_file_owned_by_another_user_is_refused(state_dir):
    closure = state_dir / "models" / "m" / "1" / "func.pkl"
    os.chown(closure, 12345, 12345)
    with pytest.raises(DeploymentError, match="belongs to uid 12345"):
        check_trusted_file(closure, state_dir)


def test_a_copy_made_owner_only_is_trusted_whatever_the_umask_left(state_dir):
    version_dir = state_dir / "models" / "m" / "1"
    (version_dir / "site-packages").mkdir(mode=0o775)
    (version_dir / "site-packages").chmod(0o775)
    (version_dir / "func.pkl").chmod(0o664)
    with pytest.raises(DeploymentError):
        check_trusted_file(version_dir / "func.pkl", state_dir)
    make_owner_only(version_dir)
    assert check_trusted_file(version_dir / "func.pkl", state_dir)
    assert oct((version_dir / "site-packages").stat().st_mode & 0o777) == oct(0o700)
    assert oct((version_dir / "func.pkl").stat().st_mode & 0o777) == oct(0o600)
