"""Fixtures of the benchmark scripts' tests: bench/overload.py loaded as a module."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def overload():
    """bench/overload.py as a module (it is a script, not a package: loaded by path)."""
    sys.path.insert(0, str(BENCH))  # overload.py imports its sibling helpers by path
    try:
        spec = importlib.util.spec_from_file_location("overload_under_test", BENCH / "overload.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("overload_under_test", None)
        sys.path.remove(str(BENCH))
