#!/usr/bin/env bash
# The prediction cache's W1 hot path (prediction_cache_bench.cc), this tree's cache against another
# commit's, in the same run: builds the benchmark twice with the same compiler flags (once over
# cpp/cache/ from BASE, once over this tree's), then runs the two alternately, ROUNDS times each.
#
#   bash bench/micro/prediction_cache_ab.sh [BASE (default 634457b, before issue 13's cache work)]
#        [ROUNDS (default 3)] [-- bench options, e.g. --repeats 5 --queries 1000000]
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${1:-634457b}"; rounds="${2:-3}"; shift $(( $# < 2 ? $# : 2 )); [ "${1:-}" = "--" ] && shift
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base/cache"
git show "$base:cpp/cache/prediction_cache.h" > "$work/base/cache/prediction_cache.h"
git show "$base:cpp/cache/prediction_cache.cc" > "$work/base/cache/prediction_cache.cc"
build() {  # build OUTPUT CACHE_SOURCE_DIR (its cache/ shadows cpp/cache/)
  g++ -O2 -DNDEBUG -std=c++20 -I"$2" -Icpp bench/micro/prediction_cache_bench.cc "$2/cache/prediction_cache.cc" \
    cpp/common/cache_key.cc -o "$1" $(pkg-config --cflags --libs absl_raw_hash_set absl_hash libxxhash) -pthread
}
build "$work/base_bench" "$work/base"
build "$work/this_bench" cpp
for round in $(seq "$rounds"); do
  for which in base this; do
    echo "{\"round\": $round, \"cache\": \"$which\", \"result\": $("$work/${which}_bench" "$@" | tr -d '\n')}"
  done
done
