"""Shared by the framework deployer tests: a real local cluster per test module, started on free ports
with the end-to-end tests' helpers (tests/e2e/e2e_support.py) and stopped afterwards."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """A running cluster (its ClipperConnection) shared by the tests of one module."""
    from e2e_support import start_cluster

    name = request.module.__name__.rpartition(".")[2].replace("_", "-")
    conn = start_cluster(tmp_path_factory.mktemp(name), name)
    try:
        yield conn
    finally:
        conn.cm.stop_all(graceful=True)
