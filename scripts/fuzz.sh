#!/usr/bin/env bash
# Builds the libFuzzer targets (cpp/fuzz/, clang, AddressSanitizer + UndefinedBehaviorSanitizer) and
# runs each for SECONDS (default 25: the CI-sized run), starting from its corpus in the repository.
# Fails on any crash, leak, timeout or sanitizer report, leaving the input that caused it in
# build/fuzz/artifacts/. New inputs found go to build/fuzz/found/<target>/, never into the repository.
# Longer runs, and adding what they find to the corpus: docs/fuzzing.md.
#
# Usage: scripts/fuzz.sh [SECONDS [TARGET...]]
#        (targets: request_parser query_codec replica_messages oip_codec)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
seconds="${1:-25}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(request_parser query_codec replica_messages oip_codec); fi

command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (Debian: clang libclang-rt-14-dev)" >&2; exit 1; }
build=build/fuzz
pybind11_dir="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())')"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCLIPPER_BUILD_FUZZERS=ON -DCLIPPER_BUILD_TESTS=OFF \
  -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$(command -v "$PYTHON")" >/dev/null
cmake --build "$build" --target clipper_fuzzers >/dev/null

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$PWD/cpp/fuzz/ubsan.supp"
mkdir -p "$build/artifacts"
failed=()
printf '%-18s %12s %8s %8s %8s  %s\n' target executions cov ft corpus result
for target in "${targets[@]}"; do
  fuzzer="$build/cpp/fuzz/${target}_fuzzer"
  [ -x "$fuzzer" ] || { echo "fuzz: no target $target" >&2; exit 2; }
  found="$build/found/$target"
  mkdir -p "$found"
  dict=()
  case "$target" in
    request_parser) dict=(-dict=cpp/fuzz/http.dict) ;;
    query_codec | oip_codec) dict=(-dict=cpp/fuzz/json.dict) ;;
  esac
  log="$build/$target.log"
  # The first corpus folder receives new inputs; the repository's seeds and regression inputs are read.
  status=0
  "$fuzzer" "$found" "cpp/fuzz/corpus/$target" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" \
    >"$log" 2>&1 || status=$?
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$status" -eq 0 ]; then result=ok; else result="FAILED (exit $status, log $log)"; failed+=("$target"); fi
  printf '%-18s %12s %8s %8s %8s  %s\n' "$target" "${executions:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "---- $target: the end of $build/$target.log"
    tail -40 "$build/$target.log"
  done
  echo "fuzz: ${failed[*]} failed; the inputs are in $build/artifacts/ (replay: $build/cpp/fuzz/<target>_fuzzer FILE)" >&2
  exit 1
fi
