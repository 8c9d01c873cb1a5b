#!/usr/bin/env bash
# Sets the machine up, then runs the quickstart: start a local cluster on the embedded default,
# deploy a Python function as a model, answer a query over HTTP, print it, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd examples && "${PYTHON:-python3}" quickstart.py
