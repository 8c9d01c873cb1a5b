#!/usr/bin/env bash
# Builds the native engine with AddressSanitizer, LeakSanitizer and UBSan, runs the C++ unit tests,
# then drives the sanitized standalone frontend with a real model replica: W1 load, malformed and
# oversized requests, a replica killed mid-run, and a clean shutdown, once with the replica side on the
# I/O loop and once on its own thread; a 1 MiB cache so that eviction and slot reuse run under the
# sanitizers too. Fails on any sanitizer report.
# Needs the package installed (scripts/setup.sh) for the replica and the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
build=build/sanitize
pybind11_dir="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())')"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLIPPER_SANITIZE=ON \
  -DCLIPPER_BUILD_TESTS=ON -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$(command -v "$PYTHON")" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$build" --output-on-failure

# The shared-memory rings under ThreadSanitizer: a producer thread and a consumer thread that sleeps
# on its doorbell (the ring is header-only, so its test builds alone).
tsan_ring="$build/shm_ring_test_tsan"
g++ -std=c++20 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -Icpp tests/cpp/shm_ring_test.cc \
  -o "$tsan_ring" -lgtest -lgtest_main -pthread
TSAN_OPTIONS=halt_on_error=1 "$tsan_ring"

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat >"$work/config.json" <<JSON
{"apps": [{"name": "w1", "input_type": "doubles", "default_output": "-1", "slo_micros": 100000,
           "linked_models": ["noop"]}],
 "models": [{"name": "noop", "version": "1", "input_type": "doubles", "current": true}]}
JSON
printf 'from clipper.container import Model\nclass Noop(Model):\n    def predict_batch(self, inputs):\n        return ["0"] * len(inputs)\n' >"$work/noop_model.py"

# Both ways the replica side runs: on the single I/O thread's loop, and on a thread of its own
# (two I/O threads), so the loop and thread paths of rpc/replica_service both run sanitized.
loadgen="$("$PYTHON" -c 'from clipper_native import loadgen_binary; print(loadgen_binary())')"
drive() {
  local label="$1"; shift
  local query_port rpc_port
  query_port=$(port); rpc_port=$(port)
  ASAN_OPTIONS=detect_leaks=1 "$build/clipper-frontend" --query-port "$query_port" --rpc-port "$rpc_port" \
    --metrics-port 0 --cache-size-bytes 1048576 --config "$work/config.json" "$@" 2>"$work/frontend-$label.log" &
  local frontend=$!
  sleep 1
  clipper-model --model noop_model:Noop --model-dir "$work" --name noop --version 1 --input-type doubles \
    --frontend "tcp://127.0.0.1:$rpc_port" 2>"$work/replica-$label.log" &
  local replica=$!
  sleep 2
  local url="http://127.0.0.1:$query_port/w1/predict"
  "$loadgen" --url "$url" --w1 --connections 64 --duration 3 --warmup 0 >"$work/load-$label.json"
  "$loadgen" --url "$url" --body '{"input": [1, 2' --connections 4 --duration 1 --warmup 0 >/dev/null
  head -c 9000000 /dev/zero | tr '\0' '1' | curl -s -X POST "$url" --data-binary @- >/dev/null || true
  kill "$replica"
  sleep 3
  curl -sf -X POST "$url" -d '{"input": [5.0]}' | grep -q '"default":true'
  kill -TERM "$frontend"
  wait "$frontend"
  if grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$work/frontend-$label.log"; then
    echo "sanitize: the frontend ($label) reported errors (above)"; exit 1
  fi
  echo "sanitize: $label clean ($("$PYTHON" -c "import json; print(json.load(open('$work/load-$label.json'))['status'])"))"
}
drive shared-loop
drive rpc-thread --io-threads 2
# The I/O loop polling the response rings after each batch (shm_response_spin_micros).
drive spinning --shm-response-spin-micros 50
