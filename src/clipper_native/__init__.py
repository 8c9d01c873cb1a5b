"""The native core of Clipper: the C++ serving engine and the standalone frontend binary.

Users normally reach it through ``clipper`` (the admin API starts it for them); ``_core.Engine`` is
the embedding interface described in docs/interfaces.md.
"""

from pathlib import Path

BIN_DIR = Path(__file__).resolve().parent / "bin"


def frontend_binary() -> Path:
    """Path of the standalone ``clipper-frontend`` executable shipped with this package."""
    return BIN_DIR / "clipper-frontend"


def loadgen_binary() -> Path:
    """Path of the ``clipper-loadgen`` benchmark load generator shipped with this package."""
    return BIN_DIR / "clipper-loadgen"
