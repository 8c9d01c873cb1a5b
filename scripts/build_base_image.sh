#!/usr/bin/env bash
# Builds (or reuses) what Clipper's Docker images need where no registry can be reached: a local base
# image made from Debian packages (mmdebstrap + docker import) and a wheelhouse of the Python packages
# the images install (pip wheel on this host), so `docker build` needs no network.
#
# Usage: scripts/build_base_image.sh [--frameworks sklearn,xgboost] [--rebuild]
# Environment: CLIPPER_BASE_IMAGE (default clipper-base:bookworm), CLIPPER_WHEELHOUSE (default
# ~/.cache/clipper/wheelhouse). Idempotent: an existing image (docker image inspect) is reused, and pip
# reuses wheels already in the wheelhouse.
set -euo pipefail

BASE_IMAGE="${CLIPPER_BASE_IMAGE:-clipper-base:bookworm}"
WHEELHOUSE="${CLIPPER_WHEELHOUSE:-${HOME}/.cache/clipper/wheelhouse}"
FRAMEWORKS="sklearn,xgboost"
REBUILD=0
SUITE="bookworm"

while [ $# -gt 0 ]; do
  case "$1" in
    --frameworks) FRAMEWORKS="$2"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build_base_image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

for tool in docker mmdebstrap python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build_base_image.sh: '$tool' is missing; install it (apt-get install -y docker.io mmdebstrap)" >&2
    exit 1
  fi
done
if ! docker info >/dev/null 2>&1; then
  echo "build_base_image.sh: the Docker daemon does not answer; start it (see docs/docker.md)" >&2
  exit 1
fi

# ---- the base image: Python, venv support and the frontend's shared libraries ----------------------
# The engine's runtime libraries (libuv, libzmq, b64, xxhash, abseil) are a few MB; model
# images carry them too, but no compiler, header or engine.
PACKAGES="python3,python3-venv,ca-certificates,libstdc++6,libuv1,libzmq5,libb64-0d,libxxhash0,libabsl20220623"

if [ "$REBUILD" = 0 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE: present, reused"
else
  tarball="$(mktemp -d)/base.tar"
  trap 'rm -rf "$(dirname "$tarball")"' EXIT
  echo "base image $BASE_IMAGE: building from Debian $SUITE packages (about a minute)"
  started=$(date +%s)
  mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --customize-hook='chroot "$1" sh -c "rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*"' \
    "$SUITE" "$tarball"
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  echo "base image $BASE_IMAGE: built in $(( $(date +%s) - started )) s"
fi

# ---- the wheelhouse: the versions this host runs, so pickled models load the same in images --------
mkdir -p "$WHEELHOUSE"
installed_version() {
  python3 -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || true
}
pin() {
  # "name==<host version>" when the host has it, else the newest release.
  local version
  version="$(installed_version "$1")"
  version="${version%%+*}"  # local build tags (torch's "+cpu") are not on the index
  if [ -n "$version" ]; then echo "$1==$version"; else echo "$1"; fi
}

requirements=(
  "$(pin numpy)" "$(pin pyzmq)" "$(pin flatbuffers)" "$(pin cloudpickle)" "$(pin redis)"
  "dumb-init==1.2.5.post1"
)
IFS=',' read -r -a chosen <<< "$FRAMEWORKS"
for framework in "${chosen[@]}"; do
  case "$framework" in
    "") ;;
    sklearn) requirements+=("$(pin scikit-learn)" "$(pin scipy)" "$(pin joblib)" "$(pin threadpoolctl)") ;;
    xgboost) requirements+=("$(pin xgboost-cpu)" "$(pin scipy)" "$(pin scikit-learn)") ;;
    onnx) requirements+=("$(pin onnx)" "$(pin onnxruntime)") ;;
    pytorch) requirements+=("$(pin torch)") ;;
    tensorflow) requirements+=("$(pin tensorflow-cpu)") ;;
    pyspark) requirements+=("$(pin pyspark)") ;;
    *) echo "build_base_image.sh: unknown framework '$framework' (sklearn, xgboost, onnx, pytorch, tensorflow, pyspark)" >&2; exit 2 ;;
  esac
done
echo "wheelhouse $WHEELHOUSE: ${requirements[*]}"
# pip wheel takes published wheels as they are and builds the few sdists (pyspark) into wheels.
python3 -m pip wheel --quiet --prefer-binary --progress-bar off --wheel-dir "$WHEELHOUSE" "${requirements[@]}"
echo "wheelhouse $WHEELHOUSE: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
