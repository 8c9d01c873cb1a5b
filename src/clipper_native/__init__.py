"""The native core of Clipper: the C++ serving engine and the standalone frontend binary.

Users normally reach it through ``clipper`` (the admin API starts it for them); ``_core.Engine`` is
the embedding interface described in docs/interfaces.md.
"""

import sys
from pathlib import Path


def _installed_binary(name: str) -> Path:
    # A wheel puts the binaries next to this file; an editable install leaves them in site-packages.
    candidates = [Path(__file__).resolve().parent / "bin" / name]
    candidates += [Path(entry) / "clipper_native" / "bin" / name for entry in sys.path if entry]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def frontend_binary() -> Path:
    """Path of the standalone ``clipper-frontend`` executable shipped with this package."""
    return _installed_binary("clipper-frontend")


def loadgen_binary() -> Path:
    """Path of the ``clipper-loadgen`` benchmark load generator shipped with this package."""
    return _installed_binary("clipper-loadgen")
