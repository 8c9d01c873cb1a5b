"""The hostile catalogue drives real clusters (frontend and replica processes) over loopback, the way an
attacker on the same host or an unlucky operator would; it shares the end-to-end tests' helpers."""

import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

import cloudpickle
import e2e_models
import hostile_models

# Replicas load the test models from their pickles alone.
cloudpickle.register_pickle_by_value(e2e_models)
cloudpickle.register_pickle_by_value(hostile_models)

# 2,000 slow connections need as many descriptors here (the frontend's own are capped well below).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < min(_hard, 8192):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 8192), _hard))


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
