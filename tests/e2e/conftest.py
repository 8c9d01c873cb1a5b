"""End-to-end tests drive real clusters (frontend and replica processes) over loopback, as a user does.
They need the installed package: the native engine and the container SDK's closure runner."""

import resource
from pathlib import Path

import cloudpickle
import e2e_models
import pytest

# Replicas load the test models from their pickles alone.
cloudpickle.register_pickle_by_value(e2e_models)

# 2,000 concurrent connections need as many descriptors here and in the frontend (which inherits this).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < min(_hard, 8192):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 8192), _hard))


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def clusters(tmp_path):
    """Start clusters with `clusters.start(name, **manager_options)`; all are stopped afterwards."""

    class Clusters:
        def __init__(self):
            self.started = []

        def start(self, name, **options):
            from e2e_support import start_cluster

            conn = start_cluster(tmp_path, name, **options)
            self.started.append(conn)
            return conn

    registry = Clusters()
    yield registry
    for conn in registry.started:
        conn.cm.stop_all(graceful=True)
