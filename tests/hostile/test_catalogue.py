"""Every hostile case of the catalogue against one real cluster: each must pass and leave the frontend
alive (run `python tests/hostile/run_catalogue.py` for the table with figures)."""

import pytest
from catalogue import CASES, HostileCluster, run_case

pytest.importorskip("clipper_native._core", reason="the native engine clipper_native._core (built by pip install .)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = HostileCluster(tmp_path_factory.mktemp("hostile"))
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(cluster, case):
    row = run_case(cluster, case)
    assert row.server_alive, f"{case.name}: the frontend died ({row.observed})"
    assert row.passed, (
        f"{case.name}: expected {case.expected}, observed {row.observed}, "
        f"queries lost {row.queries_lost}"
    )
