#!/usr/bin/env bash
# Builds the Google Benchmark microbenchmarks (bench/micro/) in build-bench/ and runs them.
# Usage: scripts/bench-micro.sh [NAME_bench ...] [-- benchmark flags]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARAPET_BENCH=ON -DPARAPET_TESTS=OFF >/dev/null
ninja -C build-bench
names=(); flags=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; flags=("$@"); break; fi
  names+=("$1"); shift
done
if [ ${#names[@]} -eq 0 ]; then
  for b in build-bench/bench/*_bench; do names+=("$(basename "$b")"); done
fi
for n in "${names[@]}"; do
  echo "== $n"
  build-bench/bench/"$n" "${flags[@]}"
done
